"""The Faust app: window agent and model agent.

- window agent: ``events`` + ``metrics`` -> event-time windows -> ``points``
  (open windows kept in the changelog-backed ``windows`` table);
- model agent: ``points`` -> per-series :class:`~detectors.series.SeriesModel`
  -> ``forecasts`` and ``anomalies`` (models checkpointed, signed, to the
  ``models`` table every N updates).

Bad input goes to ``<topic>.dlq`` with a reason and is counted; it never
stops an agent.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import orjson

from detectors.defaults import make_series_model
from detectors.series import SeriesModel
from streams import records
from streams.checkpoint import Checkpointer, UntrustedCheckpoint, load_or_create_key
from streams.metrics import Metrics
from streams.records import InvalidRecord, Point
from streams.settings import Settings
from streams.topics import Topics
from streams.windowing import Windower

log = logging.getLogger("foresight.worker")

#: longest lead time the default forecast horizon is sized for
DEFAULT_MAX_LEAD_SECONDS = 180.0


def horizon_steps(settings: Settings) -> int:
    if settings.horizon_steps > 0:
        return settings.horizon_steps
    return max(6, math.ceil(DEFAULT_MAX_LEAD_SECONDS / settings.window_seconds) + 2)


@dataclass
class _Cached:
    model: SeriesModel
    since_checkpoint: int = 0


@dataclass
class WorkerState:
    """In-memory mirrors of the tables, rebuilt from them after a rebalance."""

    windowers: dict[int, Windower] = field(default_factory=dict)
    models: dict[str, _Cached] = field(default_factory=dict)


def create_app(settings: Settings, metrics: Metrics | None = None) -> faust.App:
    topics = Topics.from_settings(settings)
    metrics = metrics or Metrics()
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.broker}",
        store="memory://",
        datadir=f"{settings.data_dir}/faust",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        broker_session_timeout=4,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=4,
        web_enabled=settings.web_enabled,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        producer_linger_ms=5,
        consumer_auto_offset_reset="earliest",
    )
    app.foresight_settings = settings  # type: ignore[attr-defined]
    app.foresight_metrics = metrics  # type: ignore[attr-defined]
    state = WorkerState()
    app.foresight_state = state  # type: ignore[attr-defined]
    step = settings.window_seconds
    checkpointer = Checkpointer(load_or_create_key(settings.model_key, settings.data_dir))
    horizon = horizon_steps(settings)
    period = settings.period_steps or None

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=settings.partitions)

    inputs = app.topic(topics.events, topics.metrics, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    points_in = raw_topic(topics.points)
    out = {name: raw_topic(name) for name in topics.all()}

    raw_schema = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw")
    windows = app.Table("windows", default=None, schema=raw_schema, partitions=settings.partitions)
    models = app.Table("models", default=None, schema=raw_schema, partitions=settings.partitions)
    app.foresight_tables = {"windows": windows, "models": models}  # type: ignore[attr-defined]

    async def dead_letter(topic: str, msg: Any, exc: InvalidRecord) -> None:
        metrics.dead_letters.labels(topic, exc.reason).inc()
        if exc.reason == "late":
            metrics.late_events.inc()
        body = records.dead_letter_to_json(exc.reason, exc.error, topic, msg.partition, msg.offset,
                                           exc.raw or msg.value or b"")
        await out[Topics.dlq(topic)].send(key=msg.key, value=records.dumps(body))

    def windower_for(partition: int) -> Windower:
        w = state.windowers.get(partition)
        if w is None:
            w = state.windowers[partition] = Windower(step, settings.allowed_lateness_windows)
            restored = 0
            for k, v in list(windows.items()):
                if v is None:
                    continue
                snap = orjson.loads(v)
                if snap.get("p") == partition:
                    w.restore(k.decode(), snap)
                    restored += 1
            if restored:
                log.info("partition %d: restored open windows of %d series", partition, restored)
        return w

    @app.on_partitions_revoked.connect
    async def _revoked(app_: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        for tp in revoked:
            state.windowers.pop(tp.partition, None)
        state.models.clear()  # reloaded from the (changelog-backed) table on demand

    @app.agent(inputs, name="window-agent")
    async def window_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            topic = msg.topic
            kind = "events" if topic == topics.events else "metrics"
            metrics.messages_in.labels(kind).inc()
            w = windower_for(msg.partition)
            touched: set[str] = set()
            accepted = 0
            for item in records.parse_input(msg.value or b""):
                if isinstance(item, InvalidRecord):
                    await dead_letter(topic, msg, item)
                    continue
                try:
                    w.add(item, kind)
                except InvalidRecord as exc:
                    exc.raw = orjson.dumps(item.to_json()) if exc.reason != "late" else (msg.value or b"")
                    await dead_letter(topic, msg, exc)
                    continue
                accepted += item.count
                touched.add(item.series)
            metrics.events_in.labels(kind).inc(accepted)
            for point in w.close_ready():
                touched.add(point.series)
                await out[topics.points].send(key=point.series.encode(),
                                              value=records.dumps(point.to_json()))
                metrics.points_out.inc()
            for series in touched:
                snap = w.snapshot(series)
                key = series.encode()
                if snap is None:
                    if key in windows:
                        del windows[key]
                else:
                    snap["p"] = msg.partition
                    windows[key] = orjson.dumps(snap)

    def model_for(series: str) -> _Cached:
        cached = state.models.get(series)
        if cached is None:
            blob = models.get(series.encode())
            model = None
            if blob:
                try:
                    model = checkpointer.loads(blob)
                except UntrustedCheckpoint as exc:
                    metrics.untrusted_checkpoints.inc()
                    log.warning("series %s: refusing model checkpoint (%s); starting cold", series, exc)
            if model is None:
                model = make_series_model(step, period, horizon, settings.anomaly_threshold)
            cached = state.models[series] = _Cached(model)
        return cached

    @app.agent(points_in, name="model-agent")
    async def model_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                point = Point.parse(msg.value or b"")
            except InvalidRecord as exc:
                await dead_letter(topics.points, msg, exc)
                continue
            cached = model_for(point.series)
            t0 = time.perf_counter()
            u = cached.model.update(point.value, point.start)
            metrics.model_update_seconds.observe(time.perf_counter() - t0)
            fc = cached.model.to_forecast(point.series, point.start, step, u)
            key = point.series.encode()
            await out[topics.forecasts].send(
                key=key, value=records.dumps(records.forecast_to_json(fc, point.value, u.anomalous, u.score))
            )
            metrics.forecasts_out.inc()
            if u.anomalous:
                body = records.anomaly_to_json(point.series, point.start, point.value, u.score,
                                               cached.model.threshold,
                                               type(cached.model.detector).__name__)
                await out[topics.anomalies].send(key=key, value=records.dumps(body))
                metrics.anomalies_out.inc()
            cached.since_checkpoint += 1
            if cached.since_checkpoint >= settings.checkpoint_every:
                models[key] = checkpointer.dumps(cached.model)
                cached.since_checkpoint = 0
                metrics.checkpoints.inc()

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app


def run_worker(settings: Settings) -> None:
    """Run a Faust worker in the foreground until SIGINT/SIGTERM."""
    import sys

    from streams.admin import ensure_topics

    topics = Topics.from_settings(settings)
    ensure_topics(settings.broker, topics.all(), settings.partitions)
    app = create_app(settings)
    argv = ["foresight-worker", "worker", "-l", _faust_level(settings.log_level)]
    if settings.web_enabled:
        argv += ["--web-host", settings.web_host, "--web-port", str(settings.web_port),
                 "--web-bind", settings.web_host]
    else:
        argv += ["--without-web"]
    sys.argv = argv
    app.main()


def _faust_level(level: str) -> str:
    return {"warning": "warn", "critical": "crit"}.get(level.lower(), level.lower())
