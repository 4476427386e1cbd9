"""The ``foresight`` command.

Settings come from ``FORESIGHT_*`` environment variables, then flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from streams.settings import Settings

SUBCOMMANDS = ("demo", "worker", "scaler", "produce", "broker", "detect", "backtest", "dlq")


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("common settings (also FORESIGHT_* variables)")
    g.add_argument("--broker", help="Kafka bootstrap servers (default: start the embedded broker where applicable)")
    g.add_argument("--topic-prefix", dest="topic_prefix")
    g.add_argument("--partitions", type=int)
    g.add_argument("--window-seconds", dest="window_seconds", type=float)
    g.add_argument("--period-steps", dest="period_steps", type=int,
                   help="seasonal period in windows (0: derive from the step or the stream)")
    g.add_argument("--data-dir", dest="data_dir")
    g.add_argument("--log-level", dest="log_level")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foresight", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the whole pipeline locally on synthetic traffic")
    _common(p)
    p.add_argument("--duration", type=float, default=300.0, help="wall seconds to run (default 300)")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second (default 60)")
    p.add_argument("--serve", action="store_true", help="keep the worker's web server up after the run (Ctrl-C to stop)")
    p.add_argument("--quiet", action="store_true", help="no live progress line")

    p = sub.add_parser("worker", help="run a Faust worker (window + model agents)")
    _common(p)
    p.add_argument("--web-host", dest="web_host")
    p.add_argument("--web-port", dest="web_port", type=int)
    p.add_argument("--without-web", dest="web_enabled", action="store_const", const=False)
    p.add_argument("--app-id", dest="app_id")
    p.add_argument("--model-key", dest="model_key", help="HMAC key for model checkpoints (prefer FORESIGHT_MODEL_KEY)")

    p = sub.add_parser("scaler", help="run the controller: forecasts in, decisions out")
    _common(p)
    p.add_argument("--scalers", help="YAML file of PredictiveScaler specs (local, simulated cluster)")
    p.add_argument("--startup-seconds", dest="startup_seconds", type=float,
                   help="simulated pod start-up delay in event-time seconds")
    p.add_argument("--mode", choices=["Active", "ForecastOnly"], help="override every spec's mode")
    p.add_argument("--kube", action="store_true", help="watch PredictiveScaler objects in Kubernetes")
    p.add_argument("--namespace", action="append", dest="namespaces",
                   help="namespace to watch (repeatable; default all)")

    p = sub.add_parser("produce", help="replay a timestamp,value CSV through the producer helper")
    _common(p)
    p.add_argument("--input", required=True)
    p.add_argument("--series", help="series id (default: the file name)")
    p.add_argument("--speed", type=float, default=0.0, help="replay speed (0: as fast as possible)")
    p.add_argument("--kind", choices=["events", "metrics"], default="metrics",
                   help="metrics: value is a sample; events: value is a count of events in the row")

    p = sub.add_parser("broker", help="run the embedded Kafka-protocol broker in the foreground")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9092)

    p = sub.add_parser("detect", help="score a timestamp,value CSV with the worker's detector")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)

    sub.add_parser("backtest", help="replay a trace through forecaster + policy vs a reactive HPA",
                   add_help=False)
    sub.add_parser("dlq", help="show dead letters, replay repaired ones", add_help=False)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    keys = {f for f in Settings.__dataclass_fields__}
    return Settings.from_env(**{k: v for k, v in vars(args).items() if k in keys})


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "backtest":  # its own parser lives with the simulator
        from scaler.backtest import main as backtest_main

        return backtest_main(argv[1:])
    if argv and argv[0] == "dlq":  # its own parser lives in streams.dlq
        from streams.dlq import main as dlq_main

        return dlq_main(argv[1:])
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.log_level.lower() != "debug":  # client libraries' connection chatter
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "worker":
            from streams.app import run_worker

            if not settings.broker:
                raise SystemExit("foresight worker: set --broker or FORESIGHT_BROKER")
            run_worker(settings)
            return 0
        if args.command == "scaler":
            from streams.controller import run_controller

            if not settings.broker:
                raise SystemExit("foresight scaler: set --broker or FORESIGHT_BROKER")
            return run_controller(settings, kube=args.kube, namespaces=args.namespaces)
        if args.command == "produce":
            from streams.replay import replay_csv

            if not settings.broker:
                raise SystemExit("foresight produce: set --broker or FORESIGHT_BROKER")
            n = replay_csv(settings, args.input, args.series, args.speed, args.kind)
            print(f"sent {n} rows", file=sys.stderr)
            return 0
        if args.command == "broker":
            from streams.broker import EmbeddedBroker

            with EmbeddedBroker(args.host, args.port) as b:
                print(f"embedded broker listening on {b.bootstrap} (Ctrl-C to stop)", flush=True)
                try:
                    assert b.proc is not None
                    b.proc.wait()
                except KeyboardInterrupt:
                    pass
            return 0
        if args.command == "detect":
            from streams.detect import detect_csv

            n = detect_csv(args.input, args.output)
            print(f"scored {n} rows -> {args.output}", file=sys.stderr)
            return 0
        if args.command == "demo":
            from streams.demo import run_demo

            return run_demo(settings, duration=args.duration, speed=args.speed, serve=args.serve,
                            quiet=args.quiet)
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
