"""``foresight ingest``: PromQL queries in, Foresight metric series out.

Each source of the YAML file (``--sources FILE``) is one series::

    sources:
      - series: checkout/rps                                   # the Foresight series id
        query: sum(rate(http_requests_total{job="checkout"}[1m]))
        step: 10                                               # seconds between samples
        days: 14                                               # history to backfill (optional)

On start, each source's history (``days``, default ``--days`` / 14) is read with
``query_range`` and sent to the worker's history path (:mod:`streams.backfill`); the
ingest waits until the worker has learnt it, so the first live forecast is warm. Then,
every ``step`` seconds, the query is evaluated at that step's time (an instant query at
``t``, as ``query_range`` evaluates its points) and the value is sent to the **metrics
input topic through the producer helper** (:meth:`~streams.producer.AggregatingProducer.record_metric`),
the same wire format and validation as any producer.

The sources can also be the ``prometheus: {query}`` signals of PredictiveScalers: from a file
(``--scalers``) or, with ``--kube``, watched in the API server, where a spec added, changed or
deleted changes what is polled while it runs (:mod:`streams.ingest_sources`; a new source is
backfilled first, as at start).

What a result means is decided in :mod:`streams.prometheus`; here each problem is one
log line (rate-limited per series and reason), a count in
``foresight_ingest_problems_total{reason}`` and no sample: missing data, several series
and NaN/Inf are gaps, never zeros. A Prometheus outage is retried at the next step; the
steps it missed stay gaps (``foresight_ingest_missed_steps_total``), and nothing stops.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from streams import records
from streams.prometheus import REASONS, PrometheusClient, PrometheusError
from streams.ratelog import RateLimitedLog

log = logging.getLogger("foresight.ingest")

#: seconds after a step's time before it is queried (the scrape that covers it has landed)
QUERY_LAG_SECONDS = 1.0
#: most rounds of history read before a source goes live (the first reads ``days``, the next
#: ones the steps that passed meanwhile)
CATCH_UP_ROUNDS = 3
#: the Lease that keeps one active ingest per cluster
LEASE_NAME = "foresight-ingest"
#: shortest step a source may have
MIN_STEP_SECONDS = 1.0
_FIELDS = ("series", "query", "step", "days")


class SourcesError(ValueError):
    """A sources file that cannot be used; the message names the file, entry and field."""


@dataclass(frozen=True, slots=True)
class Source:
    series: str
    query: str
    step: float
    #: days of history to backfill; None: the command's default
    days: float | None = None


def parse_sources(doc: Any, allow_empty: bool = False) -> list[Source]:
    """The ``sources:`` list of a YAML document; every problem reported at once. An empty
    list is refused unless ``allow_empty`` (``--kube``: the PredictiveScalers may be all).

    >>> parse_sources({"sources": [{"series": "a/rps", "query": "sum(up)", "step": 15}]})
    [Source(series='a/rps', query='sum(up)', step=15.0, days=None)]
    >>> parse_sources({"sources": [{"series": "", "query": "up", "step": 0, "stpe": 1}]})
    Traceback (most recent call last):
    ...
    streams.ingest.SourcesError: sources[0]: unknown field 'stpe' (fields: series, query, step, days); sources[0].series: bad_series: 'series' must be ...; got ''; sources[0].step must be a number >= 1 (seconds)
    """
    if allow_empty and isinstance(doc, Mapping) and doc.get("sources") == []:
        return []
    if not isinstance(doc, Mapping) or not isinstance(doc.get("sources"), list) or not doc["sources"]:
        raise SourcesError("expected a non-empty 'sources:' list of {series, query, step}")
    problems: list[str] = []
    out: list[Source] = []
    seen: set[str] = set()
    for i, s in enumerate(doc["sources"]):
        before = len(problems)
        at = f"sources[{i}]"
        if not isinstance(s, Mapping):
            problems.append(f"{at}: expected a mapping with series, query and step")
            continue
        problems += [f"{at}: unknown field {k!r} (fields: {', '.join(_FIELDS)})" for k in s if k not in _FIELDS]
        series = s.get("series")
        try:
            records.check_series(series)
        except records.InvalidRecord as exc:
            problems.append(f"{at}.series: {exc}")
            series = None
        if series in seen:
            problems.append(f"{at}.series: {series!r} appears twice")
        seen.add(str(series))
        query = s.get("query")
        if not isinstance(query, str) or not query.strip():
            problems.append(f"{at}.query must be a PromQL expression (a non-empty string)")
        step = s.get("step")
        if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step) or \
                step < MIN_STEP_SECONDS:
            problems.append(f"{at}.step must be a number >= {MIN_STEP_SECONDS:g} (seconds)")
        days = s.get("days")
        if days is not None and (isinstance(days, bool) or not isinstance(days, int | float)
                                 or not 0 <= days <= 366):
            problems.append(f"{at}.days must be a number of days in [0, 366]")
        if len(problems) == before:
            out.append(Source(str(series), str(query), float(step), None if days is None else float(days)))
    if problems:
        raise SourcesError("; ".join(problems))
    return out


def load_sources(path: str | Path, allow_empty: bool = False) -> list[Source]:
    """Read and check a sources YAML file (:func:`parse_sources`)."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SourcesError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    try:
        return parse_sources(doc, allow_empty)
    except SourcesError as exc:
        raise SourcesError(f"{path}: {exc}") from None


def sources_from_specs(specs: list[Any], step: float) -> list[Source]:
    """One source per ``prometheus: {query}`` signal of the PredictiveScalers, feeding the
    series the signal reads (:func:`scaler.spec.prometheus_series`) every ``step`` seconds.

    >>> from scaler.spec import PrometheusSource, ScalerSpec, Signal, TargetRef, prometheus_series
    >>> q = "sum(queue_depth)"
    >>> spec = ScalerSpec("shop/q", TargetRef("apps/v1", "Deployment", "q"), prometheus_series(q), 40,
    ...                   signals=(Signal(prometheus_series(q), 40, source=PrometheusSource(q)),))
    >>> sources_from_specs([spec, spec], 10.0) == [Source(prometheus_series(q), q, 10.0)]
    True
    """
    from scaler.spec import PrometheusSource

    out: dict[str, Source] = {}
    for spec in specs:
        for sig in spec.signals:
            if isinstance(sig.source, PrometheusSource):
                out.setdefault(sig.series, Source(sig.series, sig.source.query, float(step)))
    return list(out.values())


def merge_sources(listed: list[Source], from_specs: list[Source]) -> list[Source]:
    """The sources file's entries, then the specs' queries it does not already feed."""
    have = {s.series for s in listed}
    return listed + [s for s in from_specs if s.series not in have]


class IngestMetrics:
    """The ingest process's counters (its own registry, served on ``/metrics`` if asked)."""

    def __init__(self, registry: CollectorRegistry, sources: list[Source]) -> None:
        self.registry = registry
        self.samples = Counter("foresight_ingest_samples", "Samples sent to the metrics topic",
                               ["series"], registry=registry)
        self.problems = Counter("foresight_ingest_problems", "Queries that gave no sample, by reason",
                                ["reason"], registry=registry)
        self.missed_steps = Counter("foresight_ingest_missed_steps",
                                    "Steps not queried because the ingest was behind (an outage)",
                                    registry=registry)
        self.history_windows = Counter("foresight_ingest_history_windows",
                                       "History windows sent to the worker", ["series"], registry=registry)
        self.last_sample = Gauge("foresight_ingest_last_sample_timestamp_seconds",
                                 "Event time of the latest sample sent", ["series"], registry=registry)
        self.up = Gauge("foresight_ingest_prometheus_up", "1 if the last query reached Prometheus",
                        registry=registry)
        self.polling = Gauge("foresight_ingest_polling", "1 while a series is polled live (0: "
                             "its history is being read, or no source asks for it any more)",
                             ["series"], registry=registry)
        for r in REASONS:
            self.problems.labels(r)
        for s in sources:  # label values come from the operator's sources file only
            self.samples.labels(s.series)


class Sink(Protocol):
    """Where live samples go (an :class:`~streams.producer.AggregatingProducer`)."""

    def record_metric(self, series: str, value: float, ts: float | None = None) -> None: ...

    def flush(self, wait: bool = True) -> int: ...


class Ingestor:
    """Polls every source at its step and records each value as a metric sample.

    Collaborators are passed in: the Prometheus ``client``, the ``sink`` (an
    :class:`~streams.producer.AggregatingProducer`), the ``metrics`` and the ``clock``.
    """

    def __init__(self, sources: list[Source], client: PrometheusClient, sink: Sink,
                 metrics: IngestMetrics, clock: Callable[[], float] = time.time,
                 leading: Callable[[], bool] = lambda: True) -> None:
        self.sources = list(sources)
        for s in self.sources:
            metrics.polling.labels(s.series).set(1)
        #: only the leader queries and sends (one ingest per cluster: a Lease in Kubernetes)
        self.leading = leading
        self.client = client
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self._rl = RateLimitedLog(log)
        #: per series: the next step time to query
        self.next_at: dict[str, float] = {}

    def start_after(self, series: str, t: float) -> None:
        """Live polling of ``series`` starts at the first step after ``t`` (the end of its history)."""
        self.next_at[series] = t

    def add(self, source: Source, after: float | None = None) -> None:
        """Poll ``source`` from now on (from the first step after ``after``, the end of its history)."""
        self.remove(source.series)
        if after is not None:
            self.start_after(source.series, after)
        self.sources = [*self.sources, source]
        self.metrics.polling.labels(source.series).set(1)

    def remove(self, series: str) -> bool:
        """Stop polling ``series``; False if it was not polled."""
        kept = [s for s in self.sources if s.series != series]
        if len(kept) == len(self.sources):
            return False
        self.sources = kept
        self.next_at.pop(series, None)
        self.metrics.polling.labels(series).set(0)
        return True

    def _first(self, s: Source, now: float) -> float:
        t = self.next_at.get(s.series)
        if t is None:
            t = math.floor((now - QUERY_LAG_SECONDS) / s.step) * s.step
        else:
            t = t + s.step
        return t

    def poll_once(self) -> int:
        """Query every source whose step is due; return the samples sent."""
        now = self.clock()
        sent = 0
        if not self.leading():  # a standby: when it takes over, it starts at the current step
            for s in self.sources:
                self.next_at[s.series] = math.floor((now - QUERY_LAG_SECONDS) / s.step) * s.step
            return 0
        for s in self.sources:
            t = self._first(s, now)
            if t > now - QUERY_LAG_SECONDS:
                continue
            latest = math.floor((now - QUERY_LAG_SECONDS) / s.step) * s.step
            if latest > t:  # behind (an outage, a slow query): the missed steps stay gaps
                missed = int(round((latest - t) / s.step))
                self.metrics.missed_steps.inc(missed)
                self._rl.log(logging.WARNING, f"{s.series}:missed", "%s: %d step(s) missed (Prometheus "
                             "was slow or unreachable); they stay gaps", s.series, missed)
                t = latest
            self.next_at[s.series] = t
            sent += self._query(s, t)
        if sent:
            self.sink.flush(wait=False)
        return sent

    def _query(self, s: Source, t: float) -> int:
        try:
            r = self.client.query(s.query, t)
        except PrometheusError as exc:
            self.metrics.up.set(0 if exc.reason == "unreachable" else 1)
            self._problem(s, exc.reason, str(exc))
            return 0
        self.metrics.up.set(1)
        if r.reason is not None:
            detail = {"no_data": "the query returned no series (missing data: a gap, not a zero)",
                      "several_series": f"the query returned {r.series} series; aggregate them "
                                        "(e.g. sum(...) or max(...)) so it returns one",
                      "non_numeric": "the value is NaN, infinite or not a number"}[r.reason]
            self._problem(s, r.reason, detail)
            return 0
        for _, value in r.samples:  # one sample at most (an instant query of one series)
            self.sink.record_metric(s.series, value, t)
            self.metrics.samples.labels(s.series).inc()
            self.metrics.last_sample.labels(s.series).set(t)
        return len(r.samples)

    def _problem(self, s: Source, reason: str, detail: str) -> None:
        self.metrics.problems.labels(reason).inc()
        self._rl.log(logging.WARNING, f"{s.series}:{reason}", "%s: no sample (%s): %s", s.series, reason,
                     detail)

    def next_due(self) -> float:
        """Seconds until the next source is due (0 if one is)."""
        now = self.clock()
        due = min((self._first(s, now) + QUERY_LAG_SECONDS for s in self.sources), default=now + 1.0)
        return max(0.0, due - now)

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set (a clean stop: the current step finishes, nothing is cut)."""
        while not stop.wait(min(1.0, self.next_due())):
            self.poll_once()


# -- the command -------------------------------------------------------------


@dataclass(frozen=True)
class IngestSettings:
    """``foresight ingest`` / ``backfill`` settings beyond :class:`~streams.settings.Settings`
    (``FORESIGHT_INGEST_*``, ``FORESIGHT_BACKFILL_*``; flags win). No credentials here:
    those are :class:`~streams.prometheus.PrometheusSettings`, from files or variables only.

    >>> IngestSettings.from_env({"FORESIGHT_BACKFILL_DAYS": "2"}).days
    2.0
    """

    #: the sources YAML file
    sources: str = ""
    #: days of history backfilled per source before it goes live (0: none)
    days: float = 14.0
    #: seconds to wait for the worker to have learnt a backfill
    wait_seconds: float = 300.0
    #: address and port of the ingest's /metrics (port 0: not served)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str], **flags: Any) -> IngestSettings:
        names = {"sources": "FORESIGHT_INGEST_SOURCES", "days": "FORESIGHT_BACKFILL_DAYS",
                 "wait_seconds": "FORESIGHT_BACKFILL_WAIT_SECONDS",
                 "metrics_host": "FORESIGHT_INGEST_METRICS_HOST",
                 "metrics_port": "FORESIGHT_INGEST_METRICS_PORT"}
        values: dict[str, Any] = {}
        for name, var in names.items():
            typ = type(getattr(cls, name))
            raw = flags.get(name)
            if raw is None and var in env:
                raw = env[var]
            if raw is None:
                continue
            try:
                values[name] = typ(raw)
            except ValueError:
                raise SourcesError(f"{var} / --{name.replace('_', '-')} {raw!r} is not a "
                                   f"{'number' if typ is not str else 'text'}") from None
        s = cls(**values)
        if not 0 <= s.days <= 366:
            raise SourcesError(f"--days / FORESIGHT_BACKFILL_DAYS must be in [0, 366], got {s.days:g}")
        if s.wait_seconds < 0 or not 0 <= s.metrics_port <= 65535:
            raise SourcesError("--wait-seconds must be >= 0 and --metrics-port in [0, 65535]")
        return s


def run_ingest(settings: Any, ingest: IngestSettings, prom: Any, backfill_history: bool = True,
               stop: threading.Event | None = None, kube: bool = False,
               namespaces: list[str] | None = None, api: Any = None,
               registry: CollectorRegistry | None = None) -> int:
    """``foresight ingest``: backfill every source, then poll until SIGINT/SIGTERM (or ``stop``).

    With ``kube``, only the holder of the ``foresight-ingest`` Lease (in
    ``FORESIGHT_LEASE_NAMESPACE``) backfills and polls, the controller's leader election
    (:class:`scaler.kube.lease.LeaderElector`); the others wait as standbys. Unless
    ``settings.scalers`` names a file, the PredictiveScalers in the API (in ``namespaces``,
    default all) are watched: their ``prometheus: {query}`` signals are sources too, added,
    changed and removed as the specs are (:class:`~streams.ingest_sources.WatchedSources`).
    ``api`` is the Kubernetes client (default: in-cluster, else the kubeconfig).
    """
    import signal

    from prometheus_client import start_http_server

    from streams.admin import ensure_topics
    from streams.backfill import HistorySender
    from streams.ingest_sources import SourceSync, WatchedSources
    from streams.producer import AggregatingProducer
    from streams.topics import Topics

    listed = load_sources(ingest.sources, allow_empty=kube) if ingest.sources else []
    if settings.scalers:
        from scaler.spec import load_specs

        listed = merge_sources(listed, sources_from_specs(load_specs(settings.scalers),
                                                          settings.window_seconds))
    watch = kube and not settings.scalers
    if not listed and not watch:
        raise SourcesError("nothing to ingest: no sources in --sources and no prometheus signals "
                           "in --scalers")
    client = PrometheusClient(prom)
    registry = registry if registry is not None else CollectorRegistry()
    metrics = IngestMetrics(registry, listed)
    ensure_topics(settings, Topics.from_settings(settings).all(), settings.partitions)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    if ingest.metrics_port:
        start_http_server(ingest.metrics_port, ingest.metrics_host, registry=registry)
    if kube and api is None:
        from scaler.kube.config import api_client

        api = api_client("foresight-ingest/0.1.0")
    watched = WatchedSources(api, settings.window_seconds, namespaces) if watch else None
    elector = _elector(settings, api) if kube else None
    producer = None
    sender = None
    sync = None
    try:
        if watched is not None:
            watched.start()  # the first list: missing RBAC or CRD fails here
            log.info("watching PredictiveScalers in %s: %d prometheus signal(s)",
                     ", ".join(namespaces) if namespaces else "all namespaces", len(watched.sources()))
        if elector is not None:
            elector.start()
            log.info("waiting for the Lease %s/%s (standby until it is ours)", elector.namespace,
                     elector.name)
            while not stop.is_set() and not elector.is_leader():
                stop.wait(0.5)
        producer = AggregatingProducer(settings.broker, interval=min(1.0, settings.window_seconds),
                                       flush_every=1.0, settings=settings)
        ingestor = Ingestor([], client, producer, metrics,
                            leading=elector.is_leader if elector is not None else lambda: True)
        if backfill_history:
            sender = HistorySender(settings)
        history = (lambda s: _backfill_source(s, ingest, client, sender, metrics, stop)) \
            if sender is not None else None
        sync = SourceSync(ingestor, history, stop)
        sync.start(listed)
        log.info("ingesting %d source(s) from %s: %s", len(listed), prom.url,
                 ", ".join(f"{s.series} every {s.step:g}s" for s in listed) or "none yet")

        def wanted() -> list[Source]:
            return merge_sources(listed, watched.sources()) if watched is not None else listed

        sync.apply(wanted())
        while not stop.wait(min(1.0, ingestor.next_due())):
            sync.apply(wanted())
            ingestor.poll_once()
    finally:
        stop.set()
        if sync is not None:
            sync.close()
        if sender is not None:
            sender.close()
        if producer is not None:
            producer.close()
        if elector is not None:
            elector.stop()
        if watched is not None:
            watched.stop()
    return 0


def _backfill_source(s: Source, ingest: IngestSettings, client: PrometheusClient, sender: Any,
                     metrics: IngestMetrics, stop: threading.Event) -> float | None:
    """Read and send one source's history; the time it reaches (live polling starts after it),
    or None (no history asked for, or stopped)."""
    from streams.backfill import backfill, read_prometheus, report

    days = ingest.days if s.days is None else s.days
    if days <= 0 or stop.is_set():
        return None
    end = math.floor((time.time() - QUERY_LAG_SECONDS) / s.step) * s.step
    start = end - days * 86400 + s.step
    # the steps that passed while the history was learnt are history too: read them the
    # same way (a few short rounds) until live polling takes over
    for _ in range(CATCH_UP_ROUNDS):
        history = _read_until_reachable(read_prometheus, client, s, start, end, stop, metrics)
        if history is None:
            return None
        for reason, n in history.problems.items():
            metrics.problems.labels(reason).inc(n)
        sent, learnt = backfill(sender, s.series, history.samples, ingest.wait_seconds)
        metrics.history_windows.labels(s.series).inc(sent.windows)
        log.info("backfill %s", report(s.series, f"{len(history.samples):,} points "
                                       f"from Prometheus in {history.seconds:.1f} s", sent, learnt))
        now_end = math.floor((time.time() - QUERY_LAG_SECONDS) / s.step) * s.step
        if now_end - end <= s.step:
            break
        start, end = end + s.step, now_end
    return end


def _elector(settings: Any, api: Any) -> Any:
    import socket

    from scaler.kube import LeaderElector

    return LeaderElector(api, identity=socket.gethostname(), name=LEASE_NAME,
                         namespace=settings.lease_namespace)


def _read_until_reachable(read: Callable[..., Any], client: PrometheusClient, s: Source, start: float,
                          end: float, stop: threading.Event, metrics: IngestMetrics) -> Any:
    """Read a source's history; while Prometheus is unreachable, retry every 5 s (until ``stop``)."""
    rl = RateLimitedLog(log)
    while not stop.is_set():
        try:
            return read(client, s.query, start, end, s.step)
        except PrometheusError as exc:
            metrics.problems.labels(exc.reason).inc()
            if exc.reason != "unreachable":
                raise
            rl.log(logging.WARNING, "unreachable", "%s: history not read, retrying: %s", s.series, exc)
            stop.wait(5.0)
    return None
