"""``engine``: the command line. A thin layer over library calls users can also make from Python."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config import Config

from engine import __version__

DEFAULT_BIND = "tcp://127.0.0.1:5555"
DEFAULT_PUB = "tcp://127.0.0.1:5556"

DESCRIPTION = """\
Lineage: an event-sourced AutoML engine that searches neural network architectures.

Every proposal, assignment and result is an immutable event in the run's LMDB log; the searcher's
state (trials, beam/top-K, queue, leases) is rebuilt by replaying it. Typical use:

  engine run --run runs/nb --config examples/nb201.toml --trainers 2   # all in one
  engine serve --run runs/nb --config examples/nb201.toml              # or: the engine ...
  engine trainer --connect tcp://127.0.0.1:5555                        # ... and trainers anywhere
  engine status --run runs/nb                                          # while it runs, or after
"""


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _add_run(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--run", type=Path, required=required, metavar="DIR",
                        help="run directory (holds events.lmdb and artifacts/)")


def _add_engine(parser: argparse.ArgumentParser, bind: str, pub: str, example: str) -> None:
    """Options shared by the commands that serve a run: what to search, and where to listen."""
    parser.add_argument("--config", type=Path, metavar="TOML", help="search config (new runs only)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config key of a new run, e.g. {example} (repeatable)")
    parser.add_argument("--trials", type=positive, metavar="N", help="trial budget (also raises a resumed run's)")
    parser.add_argument("--minutes", type=float, metavar="M", help="wall-clock budget in minutes since the run "
                        "began: no new candidate after it (also extends a resumed run's)")
    free = " (port 0: any free port)" if bind.endswith(":0") else ""
    parser.add_argument("--bind", default=bind, help=f"trainer endpoint (default {bind}{free})")
    parser.add_argument("--pub", default=pub, help=f"event publisher endpoint (default {pub}{free})")
    parser.add_argument("--keys", type=Path, metavar="DIR", help="CurveZMQ keys made by `engine keys`")


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print only warnings and errors")
    parser.add_argument("--verbose", action="store_true", help="print debug messages")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="engine", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lineage {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str, description: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_, description=description or help_,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    serve = command("serve", "serve a run to trainer daemons until its budget is spent",
                    "Serve a run to trainer daemons. A new run needs --config; an existing one resumes from its "
                    "log.\nThe engine binds to loopback unless given CurveZMQ keys (see `engine keys`).")
    _add_run(serve)
    _add_engine(serve, DEFAULT_BIND, DEFAULT_PUB, "search.seed=3")
    serve.add_argument("--grace", type=float, default=20.0, metavar="S",
                       help="on a finished run, how long to tell trainers that come back that the search is done "
                            "(default 20)")
    _add_quiet(serve)

    trainer = command("trainer", "run a trainer daemon that evaluates candidates for an engine",
                      "Connect to an engine, evaluate the candidates it hands out, report results. Reconnects "
                      "with backoff\nwhen the engine goes away; exits when the search is finished.")
    trainer.add_argument("--connect", default=DEFAULT_BIND, metavar="ENDPOINT",
                         help=f"the engine's trainer endpoint (default {DEFAULT_BIND})")
    trainer.add_argument("--name", help="trainer name, unique per engine (default host-pid)")
    trainer.add_argument("--prefetch", type=positive, default=1, metavar="N",
                         help="candidates held at once, so the next is ready when one ends (default 1)")
    trainer.add_argument("--max-trials", type=positive, metavar="N", help="exit after evaluating N candidates")
    trainer.add_argument("--server-key", type=Path, metavar="FILE", help="the engine's public key (server.key)")
    trainer.add_argument("--key", type=Path, metavar="FILE", help="this trainer's secret key (trainer.key_secret)")
    trainer.add_argument("--cache", type=Path, metavar="DIR", help="local blob cache (default ~/.cache/lineage)")
    trainer.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    _add_quiet(trainer)

    run = command("run", "serve a run with N local trainers until the budget is spent",
                  "An engine and N local trainer processes in one command. A new run needs --config; an "
                  "existing run\n(or a fork) resumes from its log. Prints progress, then the leaderboard. With "
                  "no arguments it\nsearches MNIST-1D (the built-in example) into a new folder under runs/.")
    run.add_argument("--run", type=Path, metavar="DIR",
                     help="run directory (default: a new folder under runs/)")
    _add_engine(run, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", "search.algorithm=random")
    run.add_argument("--trainers", type=positive, default=2, metavar="N", help="local trainer processes (default 2)")
    run.add_argument("--prefetch", type=positive, default=1, metavar="N",
                     help="candidates each trainer holds (default 1)")
    run.add_argument("--json", action="store_true", help="print the final status as JSON")
    _add_quiet(run)

    status = command("status", "show a run's progress, leaderboard, beam, queue and leases")
    _add_run(status)
    status.add_argument("--top", type=int, default=10, metavar="N", help="leaderboard rows (default 10)")
    status.add_argument("--json", action="store_true", help="print JSON")

    events = command("log", "print a run's events, one per line",
                     "Print the events of a run's log, one per line. --follow keeps printing new ones as the "
                     "engine commits them.")
    _add_run(events)
    events.add_argument("--from", dest="start", type=int, default=1, metavar="SEQ", help="first event (default 1)")
    events.add_argument("--follow", action="store_true", help="keep printing events as they are committed")
    events.add_argument("--type", action="append", metavar="TYPE", help="only events of this type (repeatable)")
    events.add_argument("--json", action="store_true", help="one JSON object per line")

    replay = command("replay", "rebuild a run's state as it was right after an event",
                     "Rebuild the state by folding the log (the searcher is not called). --verify re-runs the "
                     "searcher at\nevery recorded proposal, and the stopping rule at every epoch report and "
                     "promotion, and fails\nat the first decision it does not reproduce.")
    _add_run(replay)
    replay.add_argument("--at", type=int, metavar="SEQ", help="the event to stop after (default: the last)")
    replay.add_argument("--json", action="store_true", help="print the whole state as JSON")
    replay.add_argument("--verify", action="store_true",
                        help="re-derive every recorded proposal, stop decision and promotion (up to --at, when "
                        "given)")
    replay.add_argument("--top", type=int, default=10, metavar="N", help="leaderboard rows (default 10)")

    report = command("report", "write a run's report: one HTML page that opens offline",
                     "Replay the run (up to --at) and draw it: progress, size against score with the Pareto front, "
                     "the\nlineage tree, the best tower and ensemble as blocks, the trainers' leases over time, what "
                     "worked,\nlearning curves and a table of every trial. Works on a run that is being served.")
    _add_run(report)
    report.add_argument("--at", type=int, metavar="SEQ", help="the search as it stood after this event "
                        "(default: the last)")
    report.add_argument("--out", type=Path, metavar="FILE", help="where to write it (default: RUN/report.html)")
    report.add_argument("--compare", type=Path, nargs="+", default=[], metavar="DIR",
                        help="other runs of the same space to draw beside it (a fork beside its parent shows where "
                        "they part)")

    board = command("tensorboard", "write a run's trials as TensorBoard HParams summaries",
                    "One folder per completed trial: its hyperparameters, its architecture as text columns, its "
                    "final metrics\nand its learning curve where trainers reported epochs. Then: tensorboard "
                    "--logdir OUT (tab HPARAMS).")
    _add_run(board)
    board.add_argument("--out", type=Path, required=True, metavar="DIR", help="the folder to write (replaced)")
    board.add_argument("--at", type=int, metavar="SEQ", help="the run as it stood after this event")

    dashboard = command("dashboard", "serve a live, read-only page of a run's views on this machine",
                        "The report's views in a browser page that follows the run (new events show within about "
                        "a second)\nand a slider to move through its history. Read-only: the log is only read, and "
                        "only GET is served.\nBinds to 127.0.0.1 (this machine only) unless --host says otherwise.")
    _add_run(dashboard)
    dashboard.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="address to listen on (default 127.0.0.1; any other exposes the run's config, "
                           "trials and metrics, read-only, to whoever can reach it)")

    fork = command("fork", "start a new run from another run's events 1..SEQ, with overrides",
                   "Copy a run's events 1..SEQ into a new run, append SearchForked with the overrides, and "
                   "leave the\nparent untouched. Candidates in flight at SEQ go back to the queue. Continue the "
                   "fork with\n`engine run --run INTO` (no --config).")
    _add_run(fork)
    fork.add_argument("--at", type=int, required=True, metavar="SEQ", help="the last event to keep")
    fork.add_argument("--into", type=Path, required=True, metavar="DIR", help="the new run's directory")
    fork.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key, e.g. search.algorithm=evolution (repeatable)")

    export = command("export", "write a trained trial as a Keras model and a TensorFlow SavedModel",
                     "Rebuild a trial (the best by default) from its architecture and weights, put the run's\n"
                     "preprocessing in front of it, and write DIR/model.keras, DIR/saved_model/ and "
                     "DIR/lineage.json.")
    _add_run(export)
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the model to")
    export.add_argument("--trial", type=int, metavar="ID", help="the trial to export (default: the best)")
    export.add_argument("--ensemble", action="store_true", help="export the best ensemble (one model whose "
                        "predictions are the ensemble's)")

    predict = command("predict", "predict with an exported model, one line per example",
                      "Read raw examples (CSV rows for a CSV-trained model, image files or a folder of them, or\n"
                      "an .npy/.npz array x) and print one prediction per line.")
    predict.add_argument("--model", type=Path, required=True, metavar="DIR", help="an `engine export` folder")
    predict.add_argument("--input", type=Path, required=True, metavar="FILE", help="the examples to predict")
    predict.add_argument("--json", action="store_true", help="one JSON object per line, with probabilities")

    evaluate = command("evaluate", "score an exported model on its run's held-out test split")
    evaluate.add_argument("--model", type=Path, required=True, metavar="DIR", help="an `engine export` folder")
    evaluate.add_argument("--run", type=Path, metavar="DIR", help="the run whose test split to use (default: "
                          "the one the model came from)")
    evaluate.add_argument("--json", action="store_true", help="print JSON")

    keys = command("keys", "make CurveZMQ keys for an engine and its trainers",
                   "Write server.key (give it to trainers), server.key_secret (keep it with the engine),\n"
                   "trainer.key/trainer.key_secret and authorized/ (public keys of accepted trainers).")
    keys.add_argument("--dir", type=Path, required=True, metavar="DIR", help="where to write the keys")

    command("blocks", "list the registered blocks and their properties")

    config = command("config", "explain the keys of a search config",
                     "Each key's default, what it allows and what it means, from the schema the engine checks "
                     "configs with.\nGive a key (search.beam.k) or a table (search.beam), or nothing for all.")
    config.add_argument("--explain", nargs="?", const="", default="", metavar="KEY",
                        help="the key or table to explain (default: every key)")
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.INFO
    if getattr(args, "quiet", False):
        level = logging.WARNING
    if getattr(args, "verbose", False):
        level = logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("tensorflow").setLevel(max(level, logging.WARNING))


def _load(args: argparse.Namespace) -> Config | None:
    """The resolved config of a new run (None to resume one); ``--set`` only applies to new runs."""
    from engine.config import load_config
    from engine.options import ConfigError
    from engine.runs import is_run
    from engine.spaces import make_space

    if args.set and (args.config is None or is_run(args.run)):
        raise ConfigError("--set applies to new runs (with --config); use `engine fork --set` to change a run")
    if args.config is None:
        return None
    config = load_config(args.config, args.set)
    try:
        make_space(config.space)  # its blocks are looked up now, so a bad one is named with the file
    except ConfigError as exc:
        raise ConfigError(f"{args.config}: {exc}") from None
    return config


def _budget(args: argparse.Namespace) -> dict:
    return {"search.trials": args.trials, "search.minutes": args.minutes}


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.progress import Progress
    from engine.runner import serve
    from replay.report import render_status

    def announce(server) -> None:
        if server.returning:
            print(f"engine: {args.run} is finished ({server.state.finished}); telling trainers that come back for "
                  f"{server.linger:g}s (raise --trials to search on)", file=sys.stderr, flush=True)
        else:
            print(f"engine serving {args.run}: trainers connect to {server.endpoint}; events on "
                  f"{server.pub_endpoint}", file=sys.stderr, flush=True)

    try:
        state = serve(args.run, _load(args), budget=_budget(args), bind=args.bind, pub=args.pub, keys=args.keys,
                      progress=Progress(interval=10.0, enabled=not args.quiet), return_grace=args.grace,
                      on_start=announce)
    except KeyboardInterrupt:
        print(f"\ninterrupted; resume with: engine serve --run {args.run}", file=sys.stderr)
        return 130
    print(render_status(state))
    return 0


def cmd_trainer(args: argparse.Namespace) -> int:
    from engine.keys import trainer_keys
    from trainers.daemon import TrainerDaemon

    curve = None
    if (args.server_key is None) != (args.key is None):
        raise SystemExit("engine trainer: --server-key and --key go together")
    if args.server_key is not None:
        curve = trainer_keys(args.server_key, args.key)
    daemon = TrainerDaemon(args.connect, name=args.name, prefetch=args.prefetch, curve=curve,
                           cache_dir=args.cache, max_trials=args.max_trials, parent_pid=args.parent_pid)
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    code = daemon.run()
    if daemon.busy:
        # A candidate is still training in its thread, and the engine has been told to requeue it:
        # leave now rather than wait for training nobody will use.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def cmd_run(args: argparse.Namespace) -> int:
    from engine.config import DEFAULT_SEARCH, apply_overrides, resolve_config
    from engine.progress import Progress
    from engine.runner import run_local
    from replay.report import render_status, status_dict, strict_json

    config = None

    if args.run is None:  # a new run: the given config, or the built-in MNIST-1D example
        stem = args.config.stem if args.config else "mnist1d"
        args.run = Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        print(f"engine run: searching into {args.run}", file=sys.stderr)
        if args.config is None:
            config = resolve_config(apply_overrides(DEFAULT_SEARCH, args.set))
    if config is None:
        config = _load(args)
    progress = Progress(interval=10.0, enabled=not args.quiet and not args.json)
    try:
        state = run_local(args.run, config, trainers=args.trainers, budget=_budget(args), prefetch=args.prefetch,
                          bind=args.bind, pub=args.pub, keys=args.keys, progress=progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted; resume with: engine run --run {args.run}", file=sys.stderr)
        return 130
    print(strict_json(status_dict(state)) if args.json else render_status(state))
    return 0 if state.finished is not None else 1


def cmd_status(args: argparse.Namespace) -> int:
    from engine.runs import read_endpoints, state_at
    from engine.watch import describe
    from replay.report import render_status, status_dict, strict_json

    state = state_at(args.run)
    engine = read_endpoints(args.run)  # while an engine serves the run: where, and what it refused so far
    if args.json:
        print(strict_json({**status_dict(state, args.top), "engine": engine}))
        return 0
    print(render_status(state, args.top))
    if engine is not None:
        print(f"engine: serving at {engine['router']} (pid {engine['pid']}); refused or dropped so far: "
              f"{describe(engine.get('refused', {}))}")
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from engine.follow import follow
    from replay.report import event_dict, render_event, strict_json

    wanted = set(args.type or [])
    for event in follow(args.run, start=args.start, forever=args.follow):
        if wanted and event.type not in wanted:
            continue
        print(strict_json(event_dict(event)) if args.json else render_event(event), flush=True)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from engine.runs import state_at
    from replay.report import render_status, state_dict, strict_json
    from replay.verify import Mismatch, verify

    if args.verify:
        try:
            result = verify(args.run, at=args.at)
        except Mismatch as exc:
            print(f"engine replay --verify: FAILED: {exc}", file=sys.stderr)
            return 3
        stops = f", {result.stops} stop decisions" if result.stops else ""
        stops += f", {result.promotions} promotions" if result.promotions else ""
        print(f"verified: {result.proposals} proposals{stops} in {result.events} events reproduce exactly "
              f"({result.seconds:.2f}s)")
        return 0
    started = time.perf_counter()
    state = state_at(args.run, args.at)
    if args.json:
        print(strict_json(state_dict(state)))
    else:
        print(render_status(state, args.top))
        print(f"(replayed {state.seq} events in {time.perf_counter() - started:.2f}s)", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from replay.page import write_report

    started = time.perf_counter()
    out = write_report(args.run, args.out, args.at, compare=args.compare)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f}s)")
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    from replay.hparams import write_hparams

    count = write_hparams(args.run, args.out, args.at)
    print(f"wrote {count} trials to {args.out}; see them with: tensorboard --logdir {args.out}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from replay.dashboard import LOOPBACK, Dashboard

    try:
        dashboard = Dashboard(args.run, host=args.host, port=args.port)
    except OSError as exc:
        print(f"engine dashboard: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    with dashboard:
        if args.host != LOOPBACK:
            print(f"engine dashboard: serving {args.run} to anyone who can reach {args.host}: its config, every "
                  "trial and its metrics (read-only)", file=sys.stderr)
        print(f"dashboard of {args.run} at {dashboard.url} (Ctrl-C to stop)", flush=True)
        dashboard.serve_forever()
    return 0


def cmd_fork(args: argparse.Namespace) -> int:
    from replay.fork import fork

    state = fork(args.run, args.at, args.into, args.set)
    print(f"forked {args.run} at event {args.at} into {args.into} (run {state.run_id}); "
          f"{len(state.queue)} candidates queued. Continue it with: engine run --run {args.into}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from trainers.export import export_model

    out = export_model(args.run, args.out, args.trial, ensemble=args.ensemble)
    print(f"exported {out}/model.keras and {out}/saved_model (see {out}/lineage.json)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from replay.report import strict_json
    from trainers.export import load_model, predict

    for row in predict(load_model(args.model), args.input):
        if args.json:
            print(strict_json(row))
        else:
            print(row.get("class", row.get("value")))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from replay.report import strict_json
    from trainers.export import evaluate_model

    report = evaluate_model(args.model, args.run)
    if args.json:
        print(strict_json(report))
    else:
        def score(row: dict) -> str:
            if "accuracy" in row:
                return f"accuracy {row['accuracy']:.4f}"
            return f"mae {row['mae']:.4g}, rmse {row['rmse']:.4g}"

        print(f"test split ({report['examples']} examples): {score(report)}  (trial {report['trial']}: "
              f"{report['candidate']})")
        if "best_single" in report:
            single = report["best_single"]
            print(f"best single member: {score(single)}  (trial {single['trial']}: {single['candidate']})")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from engine.keys import make_keys

    paths = make_keys(args.dir)
    print(f"engine:  engine serve ... --keys {args.dir}   (keep {paths['server_secret']} private)")
    print(f"trainer: engine trainer ... --server-key {paths['server_public']} --key {paths['trainer_secret']}")
    print(f"to accept more trainers, put their public .key files in {paths['authorized']}")
    return 0


def cmd_blocks(args: argparse.Namespace) -> int:
    from blocks import lookup, names

    print(f"{'block':<24} {'family':<9} {'input order matters':<20} {'keeps order'}")
    for name in names():
        spec = lookup(name)
        print(f"{name:<24} {spec.family:<9} {'yes' if spec.order_matters else 'no':<20} "
              f"{'yes' if spec.keeps_order else 'no'}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from engine.config_doc import explain

    print(explain(args.explain or None))
    return 0


COMMANDS = {
    "serve": cmd_serve, "trainer": cmd_trainer, "run": cmd_run, "status": cmd_status, "log": cmd_log,
    "replay": cmd_replay, "report": cmd_report, "dashboard": cmd_dashboard, "tensorboard": cmd_tensorboard,
    "fork": cmd_fork, "export": cmd_export, "predict": cmd_predict, "evaluate": cmd_evaluate, "keys": cmd_keys,
    "blocks": cmd_blocks, "config": cmd_config,
}


def main(argv: list[str] | None = None) -> int:
    from engine.binding import ServerError
    from engine.events import EventError
    from engine.fold import FoldError
    from engine.keys import KeysError
    from engine.log import LogError
    from engine.options import ConfigError
    from engine.runs import ReplayError, RunError
    from engine.spaces import SpaceError
    from replay.fork import ForkError
    from replay.history import CompareError

    args = build_parser().parse_args(argv)
    _configure_logging(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter, where it is loaded
    errors: tuple[type[Exception], ...] = (ConfigError, KeysError, LogError, RunError, ServerError, SpaceError,
                                            ForkError, ReplayError, EventError, FoldError, CompareError)
    if args.command in ("export", "predict", "evaluate"):
        from trainers.datasets import DataError
        from trainers.export import ExportError

        errors += (DataError, ExportError)
    try:
        return COMMANDS[args.command](args)
    except errors as exc:
        print(f"engine {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
