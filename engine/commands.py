"""What each ``engine`` command does with its parsed arguments (``engine/cli.py`` declares them): a few library
calls each, which users can also make from Python."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.chain import Chain
    from engine.config import Config
    from engine.limits import Limits


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


def _limits(args: argparse.Namespace) -> Limits:
    from engine.limits import Limits

    return Limits(message_rate=args.message_rate, upload_total=args.upload_total,
                  upload_in_flight=args.upload_in_flight)


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
                      ship=args.ship, limits=_limits(args),
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
                           cache_dir=args.cache, max_trials=args.max_trials, parent_pid=args.parent_pid,
                           once=args.once, idle_exit=args.idle_exit)
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
                          bind=args.bind, pub=args.pub, keys=args.keys, progress=progress, ship=args.ship,
                          limits=_limits(args))
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
        trainers = engine.get("trainers", 0)
        print(f"engine: serving at {engine['router']} (pid {engine['pid']}) to {trainers} trainer"
              f"{'' if trainers == 1 else 's'}; refused or dropped so far: {describe(engine.get('refused', {}))}")
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
    from engine.chain import ChainBroken
    from engine.runs import state_at
    from replay.report import render_status, state_dict, strict_json
    from replay.verify import Mismatch, verify

    if args.verify:
        try:
            result = verify(args.run, at=args.at)
        except (ChainBroken, Mismatch) as exc:
            print(f"engine replay --verify: FAILED: {exc}", file=sys.stderr)
            return 3
        stops = f", {result.stops} stop decisions" if result.stops else ""
        stops += f", {result.promotions} promotions" if result.promotions else ""
        print(f"verified: {result.proposals} proposals{stops} in {result.events} events reproduce exactly "
              f"({result.seconds:.2f}s)")
        print(_chain_line(result.chain))
        return 0
    started = time.perf_counter()
    state = state_at(args.run, args.at)
    if args.json:
        print(strict_json(state_dict(state)))
    else:
        print(render_status(state, args.top))
        print(f"(replayed {state.seq} events in {time.perf_counter() - started:.2f}s)", file=sys.stderr)
    return 0


def _chain_line(linked: Chain) -> str:
    if linked.first is None:
        return "hash chain: none (the log was written before Lineage linked its events)"
    span = f"events {linked.first}-{linked.events}" if linked.first > 1 else f"all {linked.events} events"
    return f"hash chain: {span} linked; head {linked.head} (keep it to tell a rewritten log later)"


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
    from trainers.export import Pick, export_model

    out = export_model(args.run, args.out, args.trial, Pick(args.pick))
    print(f"exported {out}/model.keras and {out}/saved_model (see {out}/lineage.json)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from replay.report import strict_json
    from trainers.export import load_model, predict

    for row in predict(load_model(args.model), args.input):
        if args.json:
            print(strict_json(row))
        else:
            answer = row.get("class", row.get("value"))
            print(f"{row['file']}: {answer}" if "file" in row else answer)
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
    from blocks.registry import TAKES

    print(f"{'block':<26} {'family':<9} {'input order matters':<20} {'keeps order'}")
    for name in names():
        spec = lookup(name)
        print(f"{name:<26} {spec.family:<9} {'yes' if spec.order_matters else 'no':<20} "
              f"{'yes' if spec.keeps_order else 'no'}")
    print("\nwhat each family takes:")
    for family, takes in TAKES.items():
        print(f"  {family:<9} {takes}")
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
