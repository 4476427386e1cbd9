"""The ``foresight ingest`` and ``foresight backfill`` commands: flags, checks, one-line errors.

Local inputs (the sources file, the CSV, the Prometheus settings and credential files) are
checked before any connection; a problem there exits 2, an unreachable broker or
Prometheus exits 1 (see ``foresight --help``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from streams.settings import Settings

if TYPE_CHECKING:
    from streams.ingest import IngestSettings
    from streams.prometheus import PrometheusSettings


def add_ingest_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sources", metavar="FILE",
                   help="YAML file with a 'sources:' list of {series, query, step[, days]} "
                        "[FORESIGHT_INGEST_SOURCES]")
    p.add_argument("--scalers", metavar="FILE",
                   help="PredictiveScaler YAML: every 'prometheus: {query}' signal is a source too, "
                        "at the window's step [FORESIGHT_SCALERS]")
    p.add_argument("--no-backfill", action="store_true",
                   help="go live at once, without reading each source's history first")
    p.add_argument("--kube", action="store_true",
                   help="in Kubernetes: only the holder of the foresight-ingest Lease (in "
                        "FORESIGHT_LEASE_NAMESPACE) ingests, the others are standbys; and, unless "
                        "--scalers is given, the 'prometheus: {query}' signals of the PredictiveScalers "
                        "in the API are sources too, followed as they are added, changed or deleted")
    p.add_argument("--namespace", action="append", dest="namespaces", metavar="NAMESPACE",
                   help="namespace whose PredictiveScalers --kube watches (repeatable; default: all)")
    _common(p)
    p.add_argument("--metrics-port", type=int, metavar="N",
                   help="serve the ingest's /metrics on this port, 0: off [FORESIGHT_INGEST_METRICS_PORT; default: 0]")
    p.add_argument("--metrics-host", metavar="ADDR",
                   help="address of /metrics [FORESIGHT_INGEST_METRICS_HOST; default: 127.0.0.1]")


def add_backfill_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--series", required=True, help="the Foresight series id to train")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--query", help="PromQL expression returning one series")
    what.add_argument("--input", metavar="CSV", help="a timestamp,value CSV instead of Prometheus")
    p.add_argument("--step", type=float, metavar="SECONDS",
                   help="query_range step (default: the window, --window-seconds)")
    _common(p)


def add_prometheus_url_flag(p: argparse.ArgumentParser | argparse._ArgumentGroup, when: str = "") -> None:
    """``--prometheus-url`` (ingest, backfill, ``demo --sources``), ``when`` prefixing its help."""
    p.add_argument("--prometheus-url", metavar="URL",
                   help=f"{when}Prometheus HTTP API base URL [FORESIGHT_PROMETHEUS_URL; default: "
                        "http://127.0.0.1:9090]; credentials only from FORESIGHT_PROMETHEUS_* "
                        "variables or *_FILE files")


def _common(p: argparse.ArgumentParser) -> None:
    add_prometheus_url_flag(p)
    p.add_argument("--days", type=float, metavar="N",
                   help="days of history to read [FORESIGHT_BACKFILL_DAYS; default: 14]")
    p.add_argument("--wait-seconds", type=float, metavar="S",
                   help="how long to wait for the worker to learn the history, 0: do not wait "
                        "[FORESIGHT_BACKFILL_WAIT_SECONDS; default: 300]")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli import UsageError, _input_file, _require_broker, check_broker
    from streams.ingest import IngestSettings, SourcesError, load_sources
    from streams.prometheus import PrometheusConfigError, PrometheusError, PrometheusSettings

    flags = {k: getattr(args, k, None) for k in ("sources", "days", "wait_seconds", "metrics_host",
                                                  "metrics_port")}
    try:
        ingest = IngestSettings.from_env(os.environ, **flags)
        prom = None
        if args.command == "ingest" or args.query is not None:
            prom = PrometheusSettings.from_env(url=args.prometheus_url)
        if args.command == "ingest":
            if not ingest.sources and not settings.scalers and not args.kube:
                raise UsageError("give --sources FILE (or FORESIGHT_INGEST_SOURCES): a YAML 'sources:' "
                                 "list of {series, query, step}, and/or --scalers FILE whose "
                                 "PredictiveScalers have prometheus signals, or --kube to watch them "
                                 "in Kubernetes")
            if args.namespaces and not args.kube:
                raise UsageError("--namespace goes with --kube")
            listed = []
            if ingest.sources:
                _input_file(ingest.sources, "--sources", "a sources YAML file")
                # every problem reported before any connection
                listed = load_sources(ingest.sources, allow_empty=args.kube)
            if settings.scalers:
                from streams.cli import _load_specs
                from streams.ingest import sources_from_specs

                if not sources_from_specs(_load_specs(settings.scalers), settings.window_seconds) \
                        and not listed:
                    raise UsageError(f"--scalers {settings.scalers}: no PredictiveScaler has a "
                                     "'prometheus: {query}' signal, and no --sources given")
    except (SourcesError, PrometheusConfigError) as exc:
        raise UsageError(str(exc)) from None
    if args.command == "ingest":
        from streams.ingest import run_ingest

        _require_broker(settings, "ingest")
        check_broker(settings.broker)
        try:
            return run_ingest(settings, ingest, prom, backfill_history=not args.no_backfill,
                              kube=args.kube, namespaces=args.namespaces)
        except PrometheusError as exc:  # reading a source's history at start
            raise _prometheus_error(exc, prom.url if prom is not None else "?") from None
    return _backfill(args, settings, ingest, prom)


def _prometheus_error(exc: Exception, url: str) -> Exception:
    """A query that failed at start: exit 2 if what was given is wrong (query, credentials,
    CA), else exit 1."""
    from streams.cli import RunError, UsageError

    reason = getattr(exc, "reason", "")
    cls = UsageError if reason in ("bad_query", "tls") else RunError
    return cls(f"Prometheus at {url}: {reason}: {exc}")


def _backfill(args: argparse.Namespace, settings: Settings, ingest: IngestSettings,
              prom: PrometheusSettings | None) -> int:
    import math

    from scaler.traces import read_trace
    from streams import records
    from streams.admin import ensure_topics
    from streams.backfill import HistorySender, backfill, describe_problems, read_prometheus, report
    from streams.cli import RunError, UsageError, _input_file, _require_broker, check_broker
    from streams.prometheus import PrometheusClient, PrometheusError
    from streams.topics import Topics

    try:
        records.check_series(args.series)
    except records.InvalidRecord as exc:
        raise UsageError(f"--series: {exc}") from None
    step = args.step or settings.window_seconds
    if not step > 0:
        raise UsageError("--step must be > 0 seconds")
    if args.input is not None:
        _input_file(args.input, "--input", "a timestamp,value CSV")
        ts, values, _ = read_trace(args.input)  # the whole file is checked before any connection
        samples = list(zip(ts, values, strict=True))
        read = f"{len(samples):,} points from {Path(args.input).name}"
        _require_broker(settings, "backfill")
        check_broker(settings.broker)
    else:
        _require_broker(settings, "backfill")
        check_broker(settings.broker)
        assert prom is not None  # read in run() for --query
        client = PrometheusClient(prom)
        end = math.floor(time.time() / step) * step - step
        start = end - ingest.days * 86400 + step
        try:
            history = read_prometheus(client, args.query, start, end, step)
        except PrometheusError as exc:
            raise _prometheus_error(exc, client.settings.url) from None
        samples = history.samples
        problems = describe_problems(history.problems)
        read = (f"{len(samples):,} points from Prometheus in {history.queries} queries, "
                f"{history.seconds:.1f} s" + (f" ({problems})" if problems else ""))
        if not samples:
            raise RunError(f"{args.series}: the query gave no usable points over {ingest.days:g} days "
                           f"({problems or 'no data'}); check --query and --days")
    ensure_topics(settings, Topics.from_settings(settings).all(), settings.partitions)
    sender = HistorySender(settings)
    try:
        sent, learnt = backfill(sender, args.series, samples, ingest.wait_seconds)
    finally:
        sender.close()
    print(f"foresight backfill: {report(args.series, read, sent, learnt)}", file=sys.stderr, flush=True)
    return 0 if learnt is None or learnt.complete else 1
