"""``foresight demo --sources FILE`` / ``--local-prometheus``: the demo fed from Prometheus.

The same pipeline as :mod:`streams.demo` (the embedded broker unless ``FORESIGHT_BROKER``
is set, a worker, the controller on the simulated cluster, the same child processes and
topic monitor) with ``foresight ingest`` as one more child instead of the synthetic
replay: it backfills each source's history from Prometheus, then polls it live, and the
PredictiveScaler on each series decides on the forecasts. The run shows the history
learnt, whether the model is warm, and the decisions; it prints a JSON summary and exits
0 when every check held (history learnt, model warm, decided on).

Why instead of, not beside, the synthetic replay: the replay runs in simulated time
(2026-01-01, at ``--speed``), the ingest in wall-clock time, and one partition's series
share a typical time (:mod:`streams.windowing`): a live series months ahead of it would
be dead-lettered as ``future``.

``--local-prometheus`` starts Debian's ``prometheus`` on a free loopback port
(:mod:`streams.localprom`, the server the tests use) holding four weeks of NYC taxi
demand (``deploy/compose/nyc_taxi_30min.csv``, 1,344 half-hour rows) **compressed in
time**, one row every :data:`ROW_SECONDS` seconds, so a day is 4 minutes and the history
1.9 hours that end now; an exporter goes on with the same rows (the four weeks repeat),
scraped every second. The source polls it every :data:`ROW_SECONDS`, and a
PredictiveScaler ``demo/taxi-dispatch`` (Active, simulated cluster) scales on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streams.ingest import Source, load_sources, merge_sources, sources_from_specs
from streams.settings import Settings

#: the sample: wall-clock seconds per half-hour row of the taxi trace (a day is 48 rows)
ROW_SECONDS = 5
#: the sample trace, in the repository
SAMPLE_TRACE = Path(__file__).resolve().parent.parent / "deploy" / "compose" / "nyc_taxi_30min.csv"
SAMPLE_METRIC = "nyc_taxi_passengers"
SAMPLE_SERIES = "taxi/passengers"
NAMESPACE = "demo"
#: the sample's lead time and simulated pod start-up (3 rows: an hour and a half of taxi time)
SAMPLE_LEAD_SECONDS = 3 * ROW_SECONDS
#: generated PredictiveScalers (no --scalers): lead time, and replicas for the last day's peak
LEAD_SECONDS = 60.0
PEAK_REPLICAS = 4
#: most seconds after --duration to wait for the first decision on each series
DRAIN_SECONDS = 90.0
#: most seconds for every source to be live (history read and learnt, a first sample sent)
LIVE_WITHIN_SECONDS = 600.0


class DemoError(RuntimeError):
    """The demo cannot start as asked; the message says why and what to do."""


def sample_value(rows: list[float]) -> Callable[[float], float]:
    """The sample as a function of wall time: row ``floor((t - ROW_SECONDS / 2) / ROW_SECONDS)``,
    repeating.

    The rows change half a step between the source's steps (``t = k * ROW_SECONDS``), so
    a query at a step sees one row, never a scrape from either side of a change.

    >>> f = sample_value([1.0, 2.0, 3.0])
    >>> [f(k * ROW_SECONDS) for k in range(5)], f(1.4 * ROW_SECONDS), f(1.6 * ROW_SECONDS)
    ([3.0, 1.0, 2.0, 3.0, 1.0], 1.0, 2.0)
    """
    half = ROW_SECONDS / 2

    def value(t: float) -> float:
        return rows[int(math.floor((t - half) / ROW_SECONDS)) % len(rows)]

    return value


def sample_scaler() -> dict[str, Any]:
    """The sample's PredictiveScaler: the compose example's (1,500 passengers per replica per
    half hour), Active on the simulated cluster, its times compressed like the trace."""
    return {
        "apiVersion": "foresight.dev/v1alpha1", "kind": "PredictiveScaler",
        "metadata": {"name": "taxi-dispatch", "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "taxi-dispatch"},
            "series": SAMPLE_SERIES, "capacityPerReplica": 1500, "minReplicas": 2, "maxReplicas": 30,
            "leadTimeSeconds": SAMPLE_LEAD_SECONDS, "mode": "Active",
            "behavior": {
                "scaleDown": {"stabilizationWindowSeconds": 6 * ROW_SECONDS},
                # as far as the forecast needs in one step (the sample's day is 4 minutes)
                "scaleUp": {"stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Percent", "value": 400, "periodSeconds": ROW_SECONDS}]},
            },
        },
    }


def generated_scaler(source: Source, capacity: float) -> dict[str, Any]:
    """A ForecastOnly PredictiveScaler for a source the user gave no spec for."""
    name = re.sub(r"[^a-z0-9-]+", "-", source.series.lower()).strip("-")[:50] or "series"
    return {
        "apiVersion": "foresight.dev/v1alpha1", "kind": "PredictiveScaler",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "series": source.series, "capacityPerReplica": capacity, "minReplicas": 1,
            "maxReplicas": 10 * PEAK_REPLICAS, "leadTimeSeconds": max(LEAD_SECONDS, 3 * source.step),
            "mode": "ForecastOnly",
        },
    }


@dataclass
class Plan:
    """What the demo will run: the sources, the PredictiveScalers, where Prometheus is."""

    sources: list[Source]
    scalers: list[dict[str, Any]]
    prometheus_url: str
    lead_seconds: float
    notes: list[str] = field(default_factory=list)


def _user_plan(sources_path: str | None, scalers_path: str | None, prom: Any) -> Plan:
    """The user's sources (and specs, else one ForecastOnly spec per source, sized from the
    last day's peak)."""
    from scaler.spec import ScalerSpec
    from streams.prometheus import PrometheusClient, PrometheusError

    listed = load_sources(sources_path) if sources_path else []
    docs: list[dict[str, Any]] = []
    if scalers_path:
        docs = [d for d in yaml.safe_load_all(Path(scalers_path).read_text()) if d]
    specs = [ScalerSpec.from_manifest(d) for d in docs]
    window = min((s.step for s in listed), default=Settings().window_seconds)
    sources = merge_sources(listed, sources_from_specs(specs, window))
    if not sources:
        raise DemoError("nothing to ingest: no sources in --sources and no prometheus signals in --scalers")
    covered = {n for s in specs for n in s.all_series}
    client = PrometheusClient(prom)
    notes = []
    for s in sources:
        if s.series in covered:
            continue
        q = f"max_over_time(({s.query})[1d:{s.step:g}s])"
        try:
            r = client.query(q, time.time())
        except PrometheusError as exc:
            raise DemoError(f"Prometheus at {prom.url}: {exc.reason}: {exc}") from None
        peak = r.samples[0][1] if r.samples else 0.0
        if not peak > 0:
            raise DemoError(f"{s.series}: no positive value in the last day of '{s.query}' to size a "
                            "PredictiveScaler on; give --scalers FILE with one for it")
        cap = float(f"{peak / PEAK_REPLICAS:.3g}")
        docs.append(generated_scaler(s, cap))
        notes.append(f"PredictiveScaler {NAMESPACE}/{docs[-1]['metadata']['name']} on {s.series}: "
                     f"ForecastOnly, capacityPerReplica {cap:g} (the last day's peak {peak:.4g} needs "
                     f"{PEAK_REPLICAS}); give --scalers FILE for your own")
    lead = max(ScalerSpec.from_manifest(d).lead_time_seconds for d in docs)
    return Plan(sources, docs, prom.url, lead, notes)


def _demo_settings(settings: Settings, plan: Plan, local: bool) -> Settings:
    """The window is the shortest source step (unless set); the sample's season is a day."""
    if "FORESIGHT_WINDOW_SECONDS" not in os.environ and settings.window_seconds == Settings().window_seconds:
        settings = settings.replace(window_seconds=min(s.step for s in plan.sources))
    if local and not settings.period_steps:
        settings = settings.replace(period_steps=int(48 * ROW_SECONDS / settings.window_seconds))
    reach = plan.lead_seconds + 2 * settings.window_seconds  # as far as the scalers look ahead
    if settings.horizon_seconds < reach or ("FORESIGHT_HORIZON_SECONDS" not in os.environ
                                            and settings.horizon_seconds == Settings().horizon_seconds):
        settings = settings.replace(horizon_seconds=reach)
    from streams.demo import with_free_web_port

    return with_free_web_port(settings)


def intro(plan: Plan, settings: Settings, duration: float, local: bool) -> str:
    lines = ["Foresight demo from Prometheus: the whole pipeline on this machine, fed by PromQL queries.",
             f"  Prometheus: {plan.prometheus_url}" + (
                 f" (started here: 4 weeks of NYC taxi demand, one half-hour row every {ROW_SECONDS} s, "
                 f"so a day is {48 * ROW_SECONDS / 60:g} minutes; the history ends now and the rows go "
                 "on live)" if local else "")]
    lines += [f"  source {s.series}: {s.query} every {s.step:g} s" for s in plan.sources]
    lines += [f"  {n}" for n in plan.notes]
    lines += [
        f"  1. start {'the broker at ' + settings.broker if settings.broker else 'an embedded Kafka broker'}, "
        "a worker, the controller (simulated cluster) and 'foresight ingest';",
        "  2. the ingest reads each source's history (query_range) and the worker learns it: no cold start;",
        f"  3. live for {duration:g} s: a sample per step, a forecast per window, a decision per window;",
        "  4. end: per series the history learnt, whether the model is warm, the decisions; JSON on stdout.",
    ]
    return "\n".join(lines) + "\n"


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:  # noqa: S310 - the demo's own loopback server
            return json.load(r)
    except (OSError, ValueError):
        return None


def _ingest_metrics(port: int) -> dict[tuple[str, str], float]:
    """(metric, series label) -> value from the ingest's /metrics ({} if not up yet)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:  # noqa: S310
            text = r.read().decode()
    except OSError:
        return {}
    return {(s.name, s.labels.get("series", "")): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def series_state(settings: Settings, series: str, ingest: dict[tuple[str, str], float],
                 decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """What the worker's API, the ingest's metrics and the decisions say about one series."""
    detail = _get_json(f"http://{settings.web_host}:{settings.web_port}/api/series/"
                       + urllib.parse.quote(series, safe="")) or {}
    reasons = Counter(d["reason"] for d in decisions)
    last = decisions[-1] if decisions else None
    return {
        "series": series,
        "step": detail.get("step"),
        "history_windows_sent": int(ingest.get(("foresight_ingest_history_windows_total", series), 0)),
        "history_points": detail.get("history_points") or 0,
        "points_learnt": detail.get("points_learnt") or 0,
        "warm": bool(detail.get("warm")),
        "live_samples": int(ingest.get(("foresight_ingest_samples_total", series), 0)),
        "decisions": len(decisions),
        "reasons": dict(reasons.most_common()),
        "replicas": None if last is None else f"{last['current']}->{last['desired']}",
        "last_reason": None if last is None else last["reason"],
        "last_message": None if last is None else last.get("message"),
    }


def _line(states: list[dict[str, Any]], live_for: float | None) -> str:
    parts = ["backfill" if live_for is None else f"live {live_for:.0f}s"]
    for s in states:
        hist = f"history {s['history_points']:,} windows" + (" (warm)" if s["warm"] else "")
        dec = f"decisions {s['decisions']}"
        if s["replicas"]:
            dec += f" (last {s['last_reason']}, replicas {s['replicas']})"
        parts.append(f"{s['series']}: {hist}, live samples {s['live_samples']}, {dec}")
    return " | ".join(parts)


async def _run(settings: Settings, plan: Plan, workdir: Path, children: Any, duration: float,
               serve: bool, quiet: bool) -> dict[str, Any]:
    from streams.admin import ensure_topics_async
    from streams.broker import free_port, wait_for_port
    from streams.demo import Monitor
    from streams.topics import Topics

    topics = Topics.from_settings(settings)
    await ensure_topics_async(settings, topics.all(), settings.partitions)
    scalers = workdir / "scalers.yaml"
    scalers.write_text(yaml.safe_dump_all(plan.scalers, sort_keys=False))
    sources = workdir / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [
        {"series": s.series, "query": s.query, "step": s.step} | ({} if s.days is None else {"days": s.days})
        for s in plan.sources]}, sort_keys=False))
    metrics_port = free_port()
    env = {
        **os.environ,
        **settings.to_env(),  # every setting given to the demo reaches its children
        "FORESIGHT_DATA_DIR": str(workdir / "worker"),
        "FORESIGHT_LOG_LEVEL": "info",
        "FORESIGHT_SCALERS": str(scalers),
        "FORESIGHT_PROMETHEUS_URL": plan.prometheus_url,
        "FORESIGHT_INGEST_METRICS_PORT": str(metrics_port),
    }
    py = [sys.executable, "-m", "streams"]
    worker = children.start("worker", py + ["worker"], env, workdir / "worker.log")
    children.start("controller", py + ["scaler", "--scalers", str(scalers), "--startup-seconds",
                                       str(plan.lead_seconds)], env, workdir / "controller.log")
    wait_for_port(settings.web_host, settings.web_port, 60, worker)
    children.start("ingest", py + ["ingest", "--sources", str(sources)], env, workdir / "ingest.log")
    url = f"http://{settings.web_host}:{settings.web_port}/dashboard/"
    print(f"dashboard: {url}  (logs in {workdir})", file=sys.stderr, flush=True)

    specs = [(f"{d['metadata']['namespace']}/{d['metadata']['name']}", d) for d in plan.scalers]
    mon = Monitor(settings, topics)
    mon_task = asyncio.create_task(mon.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tty = sys.stderr.isatty()
    live_from: float | None = None

    def states() -> list[dict[str, Any]]:
        ingest = _ingest_metrics(metrics_port)
        out = []
        for s in plan.sources:
            decs = sorted((d for key, spec in specs if _reads(spec, s.series)
                           for d in mon.obs.decisions.get(key, [])), key=lambda d: d["ts"])
            out.append(series_state(settings, s.series, ingest, decs))
        return out

    started = time.monotonic()
    try:
        while not stop.is_set():
            try:
                children.check()
            except RuntimeError as exc:  # e.g. the ingest refused a query: say why, from its log
                name = str(exc).split()[0]
                raise DemoError(f"{exc}: {_last_line(workdir / f'{name}.log')} (logs in {workdir})") from None
            now = states()
            if live_from is None and all(s["live_samples"] for s in now):
                live_from = time.monotonic()
            live_for = None if live_from is None else time.monotonic() - live_from
            if not quiet:
                line = _line(now, live_for)
                print(("\r\x1b[K" + line[:220]) if tty else line, end="" if tty else "\n", file=sys.stderr,
                      flush=True)
            # after --duration live, drain: until every series was decided on (its first live
            # window closes after the allowed lateness), at most DRAIN_SECONDS more
            if live_for is not None and live_for >= duration and (
                    all(s["decisions"] for s in now) or live_for >= duration + DRAIN_SECONDS):
                break
            if live_from is None and time.monotonic() - started > LIVE_WITHIN_SECONDS:
                print(f"\nnot live after {LIVE_WITHIN_SECONDS:g} s (is Prometheus reachable, does every "
                      f"query return data?): see {workdir / 'ingest.log'}", file=sys.stderr, flush=True)
                break
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
        if tty and not quiet:
            print(file=sys.stderr)
        final = states()
        summary = summarize(final, mon.obs.counts, live_from is not None)
        summary["prometheus"] = plan.prometheus_url
        summary["dashboard"] = url
        print(render(summary), file=sys.stderr, flush=True)
        if serve and not stop.is_set():
            print(json.dumps(summary, indent=2), flush=True)
            print(f"serving {url} - Ctrl-C to stop", file=sys.stderr, flush=True)
            await stop.wait()
            summary["_printed"] = True
        return summary
    finally:
        stop.set()
        mon.stop()
        await asyncio.gather(mon_task, return_exceptions=True)


def _last_line(path: Path) -> str:
    """The last non-empty line of a child's log (what it said before it exited)."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][-300:] if lines else "(empty log)"


def _reads(doc: dict[str, Any], series: str) -> bool:
    from scaler.spec import ScalerSpec

    return series in ScalerSpec.from_manifest(doc).all_series


def summarize(states: list[dict[str, Any]], counts: dict[str, int], went_live: bool) -> dict[str, Any]:
    """The checks: every series' history learnt, its model warm, and decided on live.

    >>> s = {"series": "a", "history_points": 10, "warm": True, "decisions": 2, "live_samples": 3}
    >>> summarize([s], {}, True)["checks"]
    {'history_backfilled': True, 'forecast_warm': True, 'decided': True}
    >>> summarize([s | {"warm": False}], {}, False)["checks"]["forecast_warm"]
    False
    """
    checks = {
        "history_backfilled": all(s["history_points"] > 0 for s in states),
        "forecast_warm": all(s["warm"] for s in states),
        "decided": went_live and all(s["decisions"] > 0 for s in states),
    }
    return {"series": states, "counts": counts, "checks": checks}


def render(summary: dict[str, Any]) -> str:
    """The end-of-run table on the terminal."""
    out = ["", "series                      step  history  learnt  warm  live  decisions (reasons)"]
    for s in summary["series"]:
        reasons = ", ".join(f"{k} {v}" for k, v in s["reasons"].items()) or "-"
        step = f"{s['step']:g}s" if s["step"] else "-"
        out.append(f"{s['series'][:26]:26} {step:>6} {s['history_points']:>8,} {s['points_learnt']:>7,} "
                   f"{'yes' if s['warm'] else 'no':>5} {s['live_samples']:>5}  {s['decisions']} ({reasons})")
        if s["last_message"]:
            out.append(f"  last decision: replicas {s['replicas']}: {s['last_message']}")
    why = {"history_backfilled": "the worker learnt each series' history before it went live",
           "forecast_warm": "each series' model is warm (forecasts from history, not a cold guess)",
           "decided": "the controller decided on each series' live forecasts"}
    out.append("")
    for k, v in summary["checks"].items():
        out.append(f"  [{'ok' if v else 'FAILED'}] {k}: {why[k]}")
    return "\n".join(out)


def _sample_rows() -> list[float]:
    from scaler.traces import read_trace

    _, values, _ = read_trace(str(SAMPLE_TRACE))
    return [float(v) for v in values]


def run_sources_demo(settings: Settings, *, sources: str | None = None, scalers: str | None = None,
                     local: bool = False, prometheus_url: str | None = None, duration: float = 300.0,
                     serve: bool = False, quiet: bool = False) -> int:
    """Run the demo from Prometheus; print the JSON summary on stdout; 0 if every check held.

    Raises :class:`DemoError` (or a sources/spec/settings error) before starting anything
    when it cannot run as asked, e.g. ``local`` without the binaries.
    """
    from streams import localprom
    from streams.demo import Children, finish, with_broker
    from streams.prometheus import PrometheusSettings

    workdir = Path(tempfile.mkdtemp(prefix="foresight-demo-prometheus-"))
    children = Children()
    with contextlib.ExitStack() as stack:
        stack.callback(children.close)
        if local:
            if localprom.binaries() is None:
                raise DemoError(f"--local-prometheus: {localprom.MISSING}; or run 'foresight demo "
                                "--sources FILE' against your own server (FORESIGHT_PROMETHEUS_URL)")
            if not SAMPLE_TRACE.is_file():
                raise DemoError(f"--local-prometheus: its sample {SAMPLE_TRACE} is not here: run it from "
                                "a checkout of the repository")
            rows = _sample_rows()
            print(f"starting a local Prometheus with {len(rows):,} rows of {SAMPLE_TRACE.name} "
                  f"(promtool builds its storage; a few seconds)", file=sys.stderr, flush=True)
            server = localprom.start_local_prometheus(workdir / "prometheus", SAMPLE_METRIC, sample_value(rows),
                                                      len(rows) * ROW_SECONDS)
            stack.callback(server.close)
            plan = Plan([Source(SAMPLE_SERIES, f"sum({SAMPLE_METRIC})", float(ROW_SECONDS))],
                        [sample_scaler()], server.url, float(SAMPLE_LEAD_SECONDS))
        else:
            prom = PrometheusSettings.from_env(url=prometheus_url)
            plan = _user_plan(sources, scalers, prom)
        settings = _demo_settings(settings, plan, local)
        print(intro(plan, settings, duration, local), file=sys.stderr, flush=True)
        settings = with_broker(settings, workdir, stack)
        summary = asyncio.run(_run(settings, plan, workdir, children, duration, serve, quiet))
    return finish(summary)
