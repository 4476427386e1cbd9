"""foresight: streaming anomaly detection and predictive autoscaling.

Every setting is a FORESIGHT_* environment variable and a --flag of the same
name on each command that uses it (flags win).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import traceback
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from streams.settings import Settings, SettingsError, describe

SUBCOMMANDS = ("demo", "worker", "scaler", "produce", "broker", "detect", "backtest", "dlq", "ingest",
               "backfill")

EPILOG = """\
errors:
  a known error prints one line: what is wrong (the file, setting or address) and what to do.
  --debug (or FORESIGHT_LOG_LEVEL=debug) prints the traceback as well.

exit codes:
  0  success
  1  a run-time failure: broker or Kubernetes API server unreachable, a failed write
  2  a problem with what you gave: a flag, setting, file, CSV or spec (fix it and run again)

Run 'foresight COMMAND --help' for a command's flags.
"""

#: placeholders in ``--help`` for settings whose type alone says too little
METAVARS = {"broker": "HOST:PORT", "scalers": "FILE", "data_dir": "DIR", "model_key": "KEY",
            "web_host": "ADDR", "health_host": "ADDR", "lease_namespace": "NAMESPACE",
            **{f"kafka_{f}": "FILE" for f in ("sasl_password_file", "ssl_cafile", "ssl_certfile", "ssl_keyfile",
                                              "ssl_key_password_file")},
            "kafka_sasl_username": "USER"}
#: seconds to wait for a TCP connection to the broker before saying it is unreachable
BROKER_CONNECT_TIMEOUT = 5.0


class CliError(Exception):
    """A known error: one line for the user and the exit code."""

    code = 1


class UsageError(CliError):
    """Something the user gave (flag, setting, file, spec) cannot be used: exit 2."""

    code = 2


class RunError(CliError):
    """Something failed at run time (unreachable server, failed write): exit 1."""

    code = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is a one-line :class:`UsageError` (exit 2) like every other."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _Formatter(argparse.HelpFormatter):
    """Wraps one-line descriptions, keeps multi-line text (the epilog) as written, shows defaults."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        h = action.help or ""
        if (action.option_strings and not any(action.default is v for v in (None, False, argparse.SUPPRESS))
                and "%(default)" not in h and "default:" not in h):
            h += " (default: %(default)s)"
        return h


def _version() -> str:
    try:
        return metadata.version("foresight-autoscaler")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "unknown"


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if value == "" else str(value)


def add_settings_flags(p: argparse.ArgumentParser, command: str) -> None:
    """One flag per :class:`Settings` field the command uses, from the settings table."""
    g = p.add_argument_group("settings (each flag is also the FORESIGHT_<NAME> variable; flags win)")
    for info in describe():
        if command not in info.commands:
            continue
        help_text = f"{info.help} [{info.env}; default: {_default_text(info.default)}]".replace("%", "%%")
        kw: dict[str, Any] = {"dest": info.name, "default": None, "help": help_text}
        if info.type is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = info.type
            kw["metavar"] = None if info.choices else METAVARS.get(
                info.name, {int: "N", float: "NUM"}.get(info.type, "TEXT"))
            if info.choices:
                kw["choices"] = [c for c in info.choices if c]  # "" is the default, not typed
        g.add_argument(info.flag, **kw)


def _debug_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, print the traceback as well")


def build_parser() -> argparse.ArgumentParser:
    """The ``foresight`` parser: one subcommand each, settings flags from the settings table."""
    parser = _Parser(prog="foresight", description=__doc__.replace("\n\n", " ").replace("\n", " ").strip(),
                     epilog=EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"foresight {_version()}")
    _debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, description: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=description or help_text, epilog=EPILOG,
                           formatter_class=_Formatter)
        _debug_flag(p)
        return p

    p = command("demo", "run the whole pipeline locally on synthetic traffic",
                "Start an embedded broker, a worker and the controller (simulated cluster), replay "
                "4 hours of history fast (so forecasts start warm), then live traffic at --speed; "
                "print a table on stderr and the JSON summary on stdout. The demo's window is 60 s "
                "unless --window-seconds or FORESIGHT_WINDOW_SECONDS says otherwise.")
    p.add_argument("--duration", type=float, default=300.0, help="wall-clock seconds of live replay")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall-clock second")
    p.add_argument("--serve", action="store_true",
                   help="keep the worker's web server (dashboard) up after the run (Ctrl-C to stop)")
    p.add_argument("--quiet", action="store_true", help="no live progress line")
    _demo_source_flags(p)
    add_settings_flags(p, "demo")

    p = command("worker", "run a Faust worker (window and model agents, API, dashboard)")
    p.add_argument("--without-web", dest="web_enabled", action="store_const", const=False,
                   help="same as --no-web-enabled")
    add_settings_flags(p, "worker")

    p = command("scaler", "run the controller: forecasts in, decisions out")
    p.add_argument("--kube", action="store_true",
                   help="watch PredictiveScaler objects in Kubernetes (instead of --scalers)")
    p.add_argument("--namespace", action="append", dest="namespaces", metavar="NAMESPACE",
                   help="namespace to watch with --kube (repeatable; default: all)")
    add_settings_flags(p, "scaler")

    p = command("produce", "replay a timestamp,value CSV through the producer helper")
    p.add_argument("--input", required=True, metavar="CSV",
                   help="the trace: header 'timestamp,value', one row per point")
    p.add_argument("--series", help="series id (default: the file name without .csv)")
    p.add_argument("--speed", type=float, default=0.0,
                   help="simulated seconds per wall-clock second (0: as fast as possible)")
    p.add_argument("--kind", choices=["events", "metrics"], default="metrics",
                   help="metrics: a row's value is one sample; events: a count of events at that time")
    add_settings_flags(p, "produce")

    _source_commands(command)

    p = command("broker", "run the embedded Kafka-protocol broker in the foreground")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=9092, help="port to listen on")

    p = command("detect", "score a timestamp,value CSV with the worker's anomaly detector (offline)")
    p.add_argument("--input", required=True, metavar="CSV",
                   help="the trace: header 'timestamp,value', one row per point")
    p.add_argument("--output", required=True, metavar="CSV",
                   help="where to write timestamp,value,anomaly_score (one row per input row)")

    command("backtest", "replay a trace through forecaster + policy vs a reactive HPA (offline)",
            "Run 'foresight backtest --help' for its flags.").add_argument(
                "rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    command("dlq", "show dead letters, replay repaired ones",
            "Run 'foresight dlq --help' for its flags.").add_argument(
                "rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def settings_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    """``FORESIGHT_*`` variables overridden by flags; a value out of range is a :class:`UsageError`."""
    keys = {i.name for i in describe()}
    try:
        settings = Settings.from_env(env, **{k: v for k, v in vars(args).items() if k in keys})
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    problems = settings.problems()
    if problems:
        raise UsageError("; ".join(problems))
    return settings


def _input_file(path: str, flag: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{flag} {path}: no such file; give the path of {what}")
    if p.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; give the path of {what}")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{flag} {path}: not readable (permissions)")
    return p


def _output_file(path: str, flag: str) -> None:
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: directory {parent} does not exist; create it or pick another path")
    if Path(path).is_dir():
        raise UsageError(f"{flag} {path}: is a directory; give a file name")


def _require_broker(settings: Settings, command: str) -> None:
    if not settings.broker:
        raise UsageError("no broker given: set --broker HOST:PORT or FORESIGHT_BROKER "
                         "('foresight broker' runs one locally; 'foresight demo' starts its own)")
    from streams import kafka_config

    kafka_config.client_kwargs(settings)  # secrets and certificates readable, before any connection


def check_broker(bootstrap: str, timeout: float = BROKER_CONNECT_TIMEOUT) -> None:
    """Raise :class:`RunError` unless one of the bootstrap servers accepts a TCP connection."""
    errors = []
    for addr in filter(None, (a.strip() for a in bootstrap.split(","))):
        host, _, port = addr.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout):
                return
        except ValueError:
            raise UsageError(f"--broker / FORESIGHT_BROKER {addr!r}: expected HOST:PORT") from None
        except OSError as exc:
            errors.append(exc.strerror or type(exc).__name__)
    raise RunError(f"cannot reach the Kafka broker at {bootstrap} ({'; '.join(errors) or 'no address'}); "
                   "check --broker / FORESIGHT_BROKER and that the broker is running")


def _load_specs(path: str) -> list[Any]:
    import yaml

    from scaler.spec import SpecError, load_specs

    _input_file(path, "--scalers", "a PredictiveScaler YAML file")
    try:
        return load_specs(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except SpecError as exc:
        msg = str(exc)
        raise UsageError(msg if msg.startswith(path) else f"{path}: {msg}") from None


def explain(exc: BaseException, settings: Settings | None = None) -> tuple[int, str]:
    """The exit code and the one line for an exception that escaped a command."""
    from scaler.traces import TraceError

    if isinstance(exc, CliError):
        return exc.code, str(exc)
    if isinstance(exc, TraceError):
        hint = "" if "timestamp,value" in str(exc) else " (a trace: header 'timestamp,value', one row per point)"
        return 2, f"{exc}{hint}"
    if isinstance(exc, SettingsError):
        return 2, str(exc)
    module = type(exc).__module__ or ""
    name = type(exc).__name__
    detail = str(exc).removeprefix(f"{name}: ") or name
    if module.startswith(("kafka", "aiokafka")) or name in ("NoBrokersAvailable", "KafkaConnectionError"):
        where = settings.broker if settings is not None and settings.broker else "the configured address"
        return 1, (f"Kafka broker at {where} failed: {name}: {detail}; "
                   "check --broker / FORESIGHT_BROKER and that the broker is running")
    if module.startswith(("kubernetes", "urllib3")):
        return 1, (f"Kubernetes API server failed: {name}: {detail}; "
                   "check the kubeconfig (or the in-cluster service account) and the RBAC rules")
    if isinstance(exc, OSError) and exc.filename:
        return 1, f"{exc.filename}: {exc.strerror or detail}; check the path, free space and permissions"
    if isinstance(exc, ConnectionError | TimeoutError):
        return 1, f"connection failed: {name}: {detail}"
    return 1, f"{detail} ({name}; run again with --debug for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``foresight``; returns the exit code (see ``foresight --help``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("FORESIGHT_LOG_LEVEL", "").lower() == "debug"
    ctx: dict[str, Any] = {"command": next((a for a in argv if a in SUBCOMMANDS), None)}
    try:
        return _run(argv, ctx)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the one error path: one line, an exit code
        code, line = explain(exc, ctx.get("settings"))
        if debug or (ctx.get("settings") is not None and ctx["settings"].log_level.lower() == "debug"):
            traceback.print_exc()
        prog = f"foresight {ctx['command']}" if ctx.get("command") else "foresight"
        print(f"{prog}: {line}", file=sys.stderr, flush=True)
        return code


def _run(argv: list[str], ctx: dict[str, Any]) -> int:
    if argv and argv[0] == "backtest":  # its own parser lives with the simulator
        from scaler.backtest import main as backtest_main

        rest = [a for a in argv[1:] if a != "--debug"]
        trace = _flag_value(rest, "--input")
        if trace is not None:  # the trace is checked here, so a bad file is exit 2 like detect's
            from scaler.traces import read_trace

            _input_file(trace, "--input", "a timestamp,value CSV")
            read_trace(trace)
        return backtest_main(rest)
    if argv and argv[0] == "dlq":  # its own parser lives in streams.dlq
        from streams.dlq import main as dlq_main

        return dlq_main([a for a in argv[1:] if a != "--debug"])
    args, extra = build_parser().parse_known_args(argv)
    ctx["command"] = args.command
    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see 'foresight {args.command} --help')")
    if args.command == "broker":
        return _broker(args)
    if args.command == "detect":
        return _detect(args)
    settings = settings_from_args(args)
    ctx["settings"] = settings
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.log_level.lower() != "debug":  # client libraries' connection chatter
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command == "worker":
        from streams.app import run_worker

        if settings.scalers:
            _load_specs(settings.scalers)
        _require_broker(settings, "worker")
        check_broker(settings.broker)
        run_worker(settings)
        return 0
    if args.command == "scaler":
        from streams.controller import run_controller

        if not args.kube:
            if not settings.scalers:
                raise UsageError("give --scalers FILE (PredictiveScaler YAML, simulated cluster) "
                                 "or --kube (watch PredictiveScaler objects in Kubernetes)")
            _load_specs(settings.scalers)  # a broken spec is reported before any connection
        _require_broker(settings, "scaler")
        check_broker(settings.broker)
        return run_controller(settings, kube=args.kube, namespaces=args.namespaces)
    if args.command == "produce":
        from scaler.traces import read_trace
        from streams.replay import send_trace

        _input_file(args.input, "--input", "a timestamp,value CSV")
        ts, values, _ = read_trace(args.input)  # the whole file is checked before any connection
        _require_broker(settings, "produce")
        check_broker(settings.broker)
        n = send_trace(settings, ts, values, args.series or Path(args.input).stem, args.speed, args.kind)
        print(f"sent {n} rows", file=sys.stderr)
        return 0
    if args.command in ("ingest", "backfill"):
        from streams.sources_cli import run

        return run(args, settings)
    if args.command == "demo" and (args.sources or args.local_prometheus or args.demo_scalers):
        return _demo_from_prometheus(args, settings)
    if args.command == "demo":
        from streams.demo import run_demo

        return run_demo(settings, duration=args.duration, speed=args.speed, serve=args.serve,
                        quiet=args.quiet)
    raise UsageError(f"unknown command {args.command!r}")  # pragma: no cover - argparse checks


def _source_commands(command: Any) -> None:
    """``foresight ingest`` and ``foresight backfill`` (Prometheus or CSV in; see streams.sources_cli)."""
    from streams.sources_cli import add_backfill_flags, add_ingest_flags

    p = command("ingest", "poll PromQL queries and feed them in as metric series (history first)",
                "Read the sources YAML (sources: [{series, query, step}]), backfill each series' "
                "history from Prometheus so its models start warm, then query every step and send "
                "the values to the metrics topic. Credentials only from FORESIGHT_PROMETHEUS_* "
                "variables or files, never flags.")
    add_ingest_flags(p)
    add_settings_flags(p, "produce")
    p = command("backfill", "train a series' models on its history (Prometheus or a CSV)",
                "Read up to --days of a PromQL query's history (query_range, in chunks of at most "
                "11,000 points), or a timestamp,value CSV, send it to the worker's history path and "
                "wait until it has been learnt; print points learnt and points/s.")
    add_backfill_flags(p)
    add_settings_flags(p, "produce")


def _demo_source_flags(p: argparse.ArgumentParser) -> None:
    """``foresight demo --sources FILE`` / ``--local-prometheus`` (see streams.demo_sources)."""
    from streams.sources_cli import add_prometheus_url_flag

    g = p.add_argument_group("from Prometheus (instead of the synthetic workload; --speed does not apply)")
    g.add_argument("--sources", metavar="FILE",
                   help="ingest these sources ('foresight ingest --sources' format) from the Prometheus at "
                        "--prometheus-url / FORESIGHT_PROMETHEUS_URL, with 'foresight ingest' as one more "
                        "child process; --duration is then seconds live after the history is learnt")
    g.add_argument("--scalers", dest="demo_scalers", metavar="FILE",
                   help="with --sources: the PredictiveScalers on those series (default: one ForecastOnly "
                        "per source, sized from the last day's peak)")
    g.add_argument("--local-prometheus", action="store_true",
                   help="start a local Prometheus (Debian's prometheus and promtool) holding four weeks of "
                        "NYC taxi demand, a day every 4 minutes, and run the demo from it (make demo-prometheus)")
    add_prometheus_url_flag(g, "with --sources: the ")


def _demo_from_prometheus(args: argparse.Namespace, settings: Settings) -> int:
    from streams.demo_sources import DemoError, run_sources_demo
    from streams.ingest import SourcesError, load_sources
    from streams.prometheus import PrometheusConfigError, PrometheusError

    if args.local_prometheus and (args.sources or args.demo_scalers):
        raise UsageError("--local-prometheus brings its own source and PredictiveScaler: "
                         "give it without --sources / --scalers")
    if args.demo_scalers and not args.sources:
        raise UsageError("--scalers goes with --sources")
    try:  # local inputs first: every problem reported before anything starts
        if args.sources:
            _input_file(args.sources, "--sources", "a sources YAML file")
            load_sources(args.sources)
        if args.demo_scalers:
            _load_specs(args.demo_scalers)
        return run_sources_demo(settings, sources=args.sources, scalers=args.demo_scalers,
                                local=args.local_prometheus, prometheus_url=args.prometheus_url,
                                duration=args.duration, serve=args.serve, quiet=args.quiet)
    except (SourcesError, PrometheusConfigError) as exc:
        raise UsageError(str(exc)) from None
    except (DemoError, PrometheusError) as exc:
        raise RunError(str(exc)) from None


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value of ``flag`` in ``argv`` (``--flag V`` or ``--flag=V``), else None.

    >>> _flag_value(["--x", "1", "--input", "a.csv"], "--input"), _flag_value(["--input=b"], "--input")
    ('a.csv', 'b')
    """
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def _broker(args: argparse.Namespace) -> int:
    from streams.broker import EmbeddedBroker

    with EmbeddedBroker(args.host, args.port) as b:
        print(f"embedded broker listening on {b.bootstrap} (Ctrl-C to stop)", flush=True)
        try:
            assert b.proc is not None
            b.proc.wait()
        except KeyboardInterrupt:
            pass
    return 0


def _detect(args: argparse.Namespace) -> int:
    from scaler.detect import detect_csv

    _input_file(args.input, "--input", "a timestamp,value CSV")
    _output_file(args.output, "--output")
    try:
        n = detect_csv(args.input, args.output)
    except OSError as exc:  # the input was readable a moment ago: this is the write
        raise RunError(f"--output {args.output}: write failed ({exc.strerror or exc}); "
                       "check free space and permissions") from exc
    print(f"scored {n} rows -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
