"""``engine``: the command line, its options and help (each command's work is in ``engine/commands.py``). A thin
layer over library calls users can also make from Python."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from engine import __version__
from engine.commands import COMMANDS
from engine.limits import Limits, byte_size, describe_bytes

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


def _above_zero(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, not {text}")
    return value


def positive_rate(text: str) -> float:
    """An argparse type: a finite rate above 0."""
    return _above_zero(text, "a number")


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    return _above_zero(text, "a number of seconds")


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
    parser.add_argument("--no-ship", dest="ship", action="store_false",
                        help="a new run does not send its data and block files to its trainers: each reads them "
                        "from its own disk, at the config's paths (default: trainers download them from the engine)")
    defaults = Limits()
    parser.add_argument("--message-rate", type=positive_rate, default=defaults.message_rate, metavar="N",
                        help="messages a second one trainer may send; more are dropped unread, counted and answered "
                        f"with a 'rate' error (default {defaults.message_rate:g}, bursts of twice that)")
    parser.add_argument("--upload-total", type=byte_size, default=defaults.upload_total, metavar="SIZE",
                        help="bytes one trainer may upload to the run while this engine serves it, e.g. 500M, 64G; "
                        f"past it its uploads are refused (default {describe_bytes(defaults.upload_total)})")
    parser.add_argument("--upload-in-flight", type=byte_size, default=defaults.upload_in_flight, metavar="SIZE",
                        help="bytes one trainer may have declared in unfinished uploads "
                        f"(default {describe_bytes(defaults.upload_in_flight)})")


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
                      "with backoff\nwhen the engine goes away. When the run is finished it waits for the "
                      "engine's next run at the\nsame address, as a daemon should: --once leaves instead, "
                      "--idle-exit leaves when no engine has\nanswered for a while. SIGTERM leaves at once (the "
                      "engine requeues what it held).")
    trainer.add_argument("--connect", default=DEFAULT_BIND, metavar="ENDPOINT",
                         help=f"the engine's trainer endpoint (default {DEFAULT_BIND})")
    trainer.add_argument("--name", help="trainer name, unique per engine (default host-pid)")
    trainer.add_argument("--prefetch", type=positive, default=1, metavar="N",
                         help="candidates held at once, so the next is ready when one ends (default 1)")
    trainer.add_argument("--max-trials", type=positive, metavar="N", help="exit after evaluating N candidates")
    trainer.add_argument("--once", action="store_true",
                         help="exit when the run it joined is finished (default: wait for the next run)")
    trainer.add_argument("--idle-exit", type=positive_seconds, metavar="SECONDS",
                         help="exit when no engine has answered for SECONDS (checked every few seconds; "
                         "default: keep waiting)")
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
                     "Rebuild the state by folding the log (the searcher is not called). --verify checks the "
                     "log's hash\nchain (each event holds the hash of the one before it), then re-runs the "
                     "searcher at every\nrecorded proposal, and the stopping rule at every epoch report and "
                     "promotion, and fails at\nthe first event changed or decision it does not reproduce; it "
                     "prints the hash of the last event.")
    _add_run(replay)
    replay.add_argument("--at", type=int, metavar="SEQ", help="the event to stop after (default: the last)")
    replay.add_argument("--json", action="store_true", help="print the whole state as JSON")
    replay.add_argument("--verify", action="store_true",
                        help="check the hash chain and re-derive every recorded proposal, stop decision and "
                        "promotion (up to --at, when given)")
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
                     "Rebuild a trial from its architecture and weights (by default what the search hands back:\n"
                     "its best ensemble if it has one, else its best tower), put the run's preprocessing in front\n"
                     "of it, and write DIR/model.keras, DIR/saved_model/ and DIR/lineage.json.")
    _add_run(export)
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the model to")
    chosen = export.add_mutually_exclusive_group()
    chosen.add_argument("--trial", type=int, metavar="ID", help="the trial (tower or ensemble) to export (default: "
                        "what the search hands back, its best ensemble if it has one, else its best tower)")
    chosen.add_argument("--tower", dest="pick", action="store_const", const="tower", default="best",
                        help="export the best single tower, even where an ensemble beats it")
    chosen.add_argument("--ensemble", dest="pick", action="store_const", const="ensemble",
                        help="export the best ensemble (one model whose predictions are the ensemble's); an error "
                        "where the run has none")

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
