"""The Faust app: window agent and model agent.

- window agent: ``events`` + ``metrics`` -> event-time windows -> ``points``.
  Acknowledgements are tracked here, not left to Faust's gap logic: per input
  partition, messages are acknowledged strictly in offset order and only
  below the lowest offset that still feeds an open window, so the committed
  offset never passes accepted data (a dead-lettered or empty message waits
  its turn). After a crash or a rebalance the open windows are rebuilt by
  re-reading the input: nothing accepted is lost, and no per-message state
  write is needed. Idle live partitions close their windows on the wall
  clock (a timer);
- model agent: ``points`` -> per-series :class:`~detectors.series.SeriesModel`
  -> ``forecasts`` and ``anomalies`` (models checkpointed, signed, to the
  ``models`` table every N updates);
- decisions agent: ``decisions`` -> the targets' replica history and
  decision log (``targets`` table) for the API, dashboard and metrics.

The web API and dashboard (:mod:`streams.web`) serve a bounded recent
history per series, fed by the model agent and snapshotted to the
``series_view`` table at each model checkpoint.

Bad input goes to ``<topic>.dlq`` with a reason and is counted: one record
per message, carrying only its bad elements. A record whose processing raises
anyway goes there as ``processing_error``; no agent ever stops on data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust

from detectors.defaults import make_series_model
from detectors.series import SeriesModel
from scaler.inputs import inputs_from_update
from streams import kafka_config, kafka_signal, records, web
from streams.budget import EVICT_BATCH, SeriesBudget, put_on_partition
from streams.checkpoint import Checkpointer, Signer, UntrustedCheckpoint, load_or_create_key
from streams.lifecycle import ForesightWorker, delivered
from streams.metrics import Metrics
from streams.ratelog import RateLimitedLog
from streams.records import DeadLetter, InvalidRecord, Point
from streams.settings import Settings
from streams.steps import StepEstimator, model_shape
from streams.topics import Topics
from streams.windowing import Windower

log = logging.getLogger("foresight.worker")
#: a re-read partition that has not come back to its offset this long after the seek is
#: sought again (a seek during recovery or a rebalance can be overridden)
REWIND_RETRY_SECONDS = 1.0
#: an input partition with no delivery this long is checked for records fetched but never delivered
UNDELIVERED_AFTER_SECONDS = 2.0


def undelivered(expected: int, end: int | None, handed: int | None) -> bool:
    """Whether a partition has records the agent never saw and never will unless sought.

    ``expected`` is the offset the agent needs next, ``end`` the partition's end offset
    and ``handed`` the last offset the consumer handed to the stream (None: none yet).
    Records exist at ``expected`` (``end > expected``) yet none from there on was handed
    over: they were fetched and dropped. (A record handed over but not yet processed is
    queued, and not re-read.)

    >>> undelivered(0, 100, None)       # fetched during recovery, dropped: re-read
    True
    >>> undelivered(40, 100, 60)        # queued for the agent: wait
    False
    >>> undelivered(100, 100, 99)       # at the end: nothing to read
    False
    >>> undelivered(40, None, None)     # end unknown: no guess
    False
    """
    if end is None or end <= expected:
        return False
    return handed is None or handed < expected


def horizon_steps(settings: Settings) -> int:
    """Windows each forecast covers (``FORESIGHT_HORIZON_SECONDS``, or ``_STEPS``)."""
    return settings.forecast_horizon_steps()


@dataclass
class _Cached:
    model: SeriesModel
    #: the step the series is modelled at (its natural step: streams/steps.py)
    step: float
    since_checkpoint: int = 0


@dataclass
class WorkerState:
    """In-memory state of one worker, rebuilt after a rebalance (windows from
    the re-read input, models from the changelog-backed table)."""

    windowers: dict[tuple[str, int], Windower] = field(default_factory=dict)
    #: per input (topic, partition): events not yet acknowledged, in offset order
    unacked: dict[tuple[str, int], deque[Any]] = field(default_factory=dict)
    #: per input (topic, partition): monotonic time of its last message
    last_input: dict[tuple[str, int], float] = field(default_factory=dict)
    #: per input (topic, partition): the offset its next message must have
    next_offset: dict[tuple[str, int], int] = field(default_factory=dict)
    #: the window agent's (manual-ack) stream
    input_stream: Any = None
    models: dict[str, _Cached] = field(default_factory=dict)
    #: per series: the estimate of its natural step (rebuilt after a rebalance)
    steps: dict[str, StepEstimator] = field(default_factory=dict)


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
        # security and replication as every other client (streams/kafka_config.py, streams/admin.py):
        # changelog topics get the same replication factor and min.insync.replicas as ours
        broker_credentials=kafka_config.faust_credentials(settings),
        topic_replication_factor=settings.replication_factor or 1,
        broker_session_timeout=4,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=4,
        web_enabled=settings.web_enabled,
        web_bind=settings.web_host,
        # how the other workers reach this one (request routing by partition)
        web_host=web.advertised_host(settings),
        web_port=settings.web_port,
        producer_linger_ms=5,
        consumer_auto_offset_reset="earliest",
        # the window agent holds acks until windows close, so waiting for
        # every message to be acked would block a rebalance forever; the
        # unacked input is re-read by the partition's next owner instead
        stream_wait_empty=False,
        # bounded stop: SIGTERM stops the worker within lifecycle.STOP_GRACE_SECONDS
        Worker=ForesightWorker,
    )
    app.foresight_settings = settings  # type: ignore[attr-defined]
    app.foresight_metrics = metrics  # type: ignore[attr-defined]
    state = WorkerState()
    app.foresight_state = state  # type: ignore[attr-defined]
    step = settings.window_seconds
    signing_key = load_or_create_key(settings.model_key, settings.data_dir)
    checkpointer = Checkpointer(signing_key)
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
    # key_type/value_type bytes: Faust decodes a table's changelog on recovery
    # with serializers derived from them (JSON otherwise, which fails on these
    # binary values and leaves a rebalanced or restarted worker cold)
    raw_table = {"default": None, "schema": raw_schema, "key_type": bytes, "value_type": bytes,
                 "partitions": settings.partitions,
                 "extra_topic_configs": {"min.insync.replicas": str(settings.min_insync_replicas or 1)}}
    models = app.Table("models", **raw_table)
    series_view = app.Table("series_view", **raw_table)
    targets = app.Table("targets", **raw_table)
    app.foresight_tables = {  # type: ignore[attr-defined]
        "models": models, "series_view": series_view, "targets": targets,
    }
    store = web.ViewStore(web.view_points(settings), metrics, web.load_selector(settings, metrics),
                          signers={t: Signer(signing_key, t) for t in ("series_view", "targets")})
    app.foresight_view = store  # type: ignore[attr-defined]
    # bounded memory (streams/budget.py): new series beyond the limit are dead-lettered as
    # series_limit; idle ones are evicted (evict_idle_series); PredictiveScaler series never are
    budget = SeriesBudget(settings.max_series_limit(), settings.series_idle_seconds,
                          web.scaler_series(settings, "series limit"))
    app.foresight_budget = budget  # type: ignore[attr-defined]
    metrics.series_limit.set(budget.limit)
    metrics.series_held.set_function(lambda: len(budget))
    limit_log = RateLimitedLog(log, interval=60.0)

    def over_limit(series: str) -> str:
        """The error text of a series refused by the limit (logged at most once a minute)."""
        limit_log.log(logging.WARNING, "series_limit", "series limit: %d series held (limit %d, "
                      "FORESIGHT_MAX_SERIES); new series such as %r are dead-lettered as series_limit",
                      len(budget), budget.limit, series[:100])
        return f"this worker holds {budget.limit} series (FORESIGHT_MAX_SERIES); {series[:100]!r} is new"
    decisions_in = raw_topic(topics.decisions)
    metrics.watch_consumer_lag(web.consumer_lag(
        app, [topics.events, topics.metrics, topics.points, topics.decisions]))

    async def dead_letter(topic: str, msg: Any, d: DeadLetter) -> None:
        """Send one message's dead letter (all of its bad elements) and count it."""
        metrics.dead_letters.labels(topic, d.reason).inc()
        for reason, n in d.reasons.items():
            metrics.dead_letter_elements.labels(topic, reason).inc(n)
        if "late" in d.reasons:
            metrics.late_events.inc(d.reasons["late"])
        body = records.dead_letter_of(d, topic, msg.partition, msg.offset, len(msg.value or b""))
        await out[Topics.dlq(topic)].send(key=msg.key, value=records.dumps(body))

    async def rejected(topic: str, msg: Any, exc: InvalidRecord) -> None:
        d = DeadLetter()
        d.add_whole(exc.reason, exc.error, exc.raw or msg.value or b"")
        await dead_letter(topic, msg, d)

    async def processing_error(agent: str, topic: str, msg: Any, exc: Exception) -> None:
        """A record whose processing raised: DLQ it as ``processing_error``, go on."""
        metrics.processing_errors.labels(agent).inc()
        log.warning("%s: %s[%d]@%d raised %s: %s (dead-lettered)", agent, msg.topic, msg.partition,
                    msg.offset, type(exc).__name__, exc)
        d = DeadLetter()
        d.add_whole("processing_error", f"{type(exc).__name__}: {exc}", msg.value or b"")
        try:
            await dead_letter(topic, msg, d)
        except Exception:  # noqa: BLE001 - the DLQ itself failing must not stop the agent
            log.exception("%s: could not dead-letter %s[%d]@%d", agent, msg.topic, msg.partition,
                          msg.offset)

    def windower_for(topic: str, partition: int) -> Windower:
        # one per input topic and partition: the events and metrics topics
        # have their own event-time watermarks (a backlog on one must not make
        # the other's on-time data late)
        w = state.windowers.get((topic, partition))
        if w is None:
            w = state.windowers[(topic, partition)] = Windower(
                step, settings.allowed_lateness_windows, settings.max_future_seconds)
        return w

    @app.on_partitions_revoked.connect
    async def _revoked(app_: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        # Open windows are not checkpointed: the messages behind them are not
        # acknowledged until their windows close, so whoever owns the partition
        # next re-reads them from the last committed offset and rebuilds them.
        for tp in revoked:
            if tp.topic in (topics.events, topics.metrics):
                state.windowers.pop((tp.topic, tp.partition), None)
                state.unacked.pop((tp.topic, tp.partition), None)
                state.last_input.pop((tp.topic, tp.partition), None)
                state.next_offset.pop((tp.topic, tp.partition), None)
        state.models.clear()  # reloaded from the (changelog-backed) table on demand
        state.steps.clear()

    @app.on_partitions_assigned.connect
    async def _assigned(app_: faust.App, assigned: set[Any], **kwargs: Any) -> None:
        # The read model drops what moved to another worker (whose view is
        # restored there from the series_view / targets tables) and keeps
        # the rest: every rebalance revokes everything first.
        # Input partitions start afresh from their committed offset: drop any
        # window state built from messages that were still in flight while
        # they were revoked (re-reading them into it would count them twice,
        # or find their windows closed and call them late).
        for tp in assigned:
            if tp.topic in (topics.events, topics.metrics):
                state.windowers.pop((tp.topic, tp.partition), None)
                state.unacked.pop((tp.topic, tp.partition), None)
                state.last_input.pop((tp.topic, tp.partition), None)
                state.next_offset.pop((tp.topic, tp.partition), None)
        inputs_p = sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned
                          if tp.topic in (topics.events, topics.metrics))
        log.info("input partitions assigned: %s", ", ".join(inputs_p) or "none")
        points_p = {tp.partition for tp in assigned if tp.topic == topics.points}
        decisions_p = {tp.partition for tp in assigned if tp.topic == topics.decisions}
        n = settings.partitions
        budget.retain(lambda s: web.partition_for(s, n) in points_p)
        store.forget(lambda s: web.partition_for(s, n) in points_p,
                     lambda t: web.partition_for(t, n) in decisions_p)

    # label children bound once, not looked up per message
    messages_in = {k: metrics.messages_in.labels(k) for k in ("events", "metrics")}
    events_in = {k: metrics.events_in.labels(k) for k in ("events", "metrics")}
    window_lock = asyncio.Lock()  # the agent and the wall-clock timer share the windowers

    async def publish_closed(source: tuple[str, int], w: Windower) -> None:
        """Send the points of closed windows, then acknowledge, in offset order,
        every message below the lowest offset an open window still needs."""
        # one message per points partition (the partition of each series' id) per flush
        by_partition: dict[int, list[Point]] = {}
        for point in w.close_ready():
            by_partition.setdefault(web.partition_for(point.series, settings.partitions), []).append(point)
            store.note_kind(point.series, w.kinds.get(point.series, "events"))
        for partition, pts in by_partition.items():
            for n, body in records.points_batches(pts):
                await out[topics.points].send(key=None, value=body, partition=partition,
                                              callback=delivered(metrics.points_out, n))  # when acknowledged
        pending = state.unacked.get(source)
        stream = state.input_stream
        if not pending or stream is None:
            return
        low = w.min_needed()
        while pending and (low is None or pending[0].message.offset < low):
            await stream.ack(pending.popleft())

    async def in_sequence(source: tuple[str, int], msg: Any) -> bool:
        """Whether ``msg`` continues its partition without a gap.

        Offsets of an input partition are consecutive. A gap means a message
        never reached this agent (Faust drops messages fetched before a
        rebalance or recovery that it does not re-deliver), so the open
        windows are incomplete: they are dropped and the partition is re-read
        from its lowest unacknowledged offset. Messages before that offset
        arrives are stale and skipped (they come again). A message below the
        expected offset was delivered again: it is already in the windows, and
        is skipped."""
        expected = state.next_offset.get(source)
        if expected is None:
            log.info("%s[%d]: reading from offset %d", *source, msg.offset)
        if expected is None or msg.offset == expected:
            state.next_offset[source] = msg.offset + 1
            return True
        if source in rewinding and msg.offset != expected:
            await reseek_if_stuck(source)
            return False  # stale, buffered before the seek: it comes again
        if msg.offset < expected:
            # delivered again (a re-read raced a fetch in flight, or the consumer went
            # back on its own): it is already in this partition's windows, skip it
            return False
        gap = (source, expected, msg.offset)
        if msg.offset > expected and gap in gaps_seen:
            # the same gap after a re-read: offsets without records (e.g.
            # transaction markers), not a lost message
            state.next_offset[source] = msg.offset + 1
            return True
        if len(gaps_seen) > 10_000:
            gaps_seen.clear()
        gaps_seen.add(gap)
        pending = state.unacked.pop(source, None)
        state.windowers.pop(source, None)
        start = pending[0].message.offset if pending else expected
        log.warning("%s[%d]: offsets %d..%d never arrived: re-reading from %d",
                    *source, expected, msg.offset - 1, start)
        state.next_offset[source] = start
        rewinding[source] = (msg.tp, time.monotonic())
        await app.consumer.seek(msg.tp, start)
        return False

    #: partitions being re-read: (topic-partition, when the seek was issued)
    rewinding: dict[tuple[str, int], tuple[Any, float]] = {}

    async def reseek_if_stuck(source: tuple[str, int]) -> None:
        """A seek issued while the consumer repositions itself (recovery, rebalance) can be
        overridden: if the partition has not come back to its offset within a second, seek
        again, so a partition never waits forever for a message that does not come."""
        tp, since = rewinding[source]
        if time.monotonic() - since < REWIND_RETRY_SECONDS:
            return
        start = state.next_offset[source]
        log.warning("%s[%d]: still waiting for offset %d after a re-read: seeking again", *source, start)
        rewinding[source] = (tp, time.monotonic())
        await app.consumer.seek(tp, start)
    gaps_seen: set[tuple[tuple[str, int], int, int]] = set()

    #: input partitions seen with undelivered records: (offset expected, when first seen)
    suspects: dict[tuple[str, int], tuple[int, float]] = {}

    async def fetch_undelivered() -> None:
        """Re-read a partition whose records were fetched but never handed to the agent.

        Faust drops the records of a fetch that completes while the flow is stopped
        (recovery, a rebalance) and relies on its seek to the committed offset to fetch
        them again, but that seek leaves a partition with no committed offset where the
        dropped fetch left it. The gap check in :func:`in_sequence` notices the loss at the
        next message; this notices it when no next message comes (the end of a backlog):
        a partition idle for :data:`UNDELIVERED_AFTER_SECONDS` with records at or after the
        offset the agent expects, none of which reached the stream, and still so at a check
        :data:`UNDELIVERED_AFTER_SECONDS` later (a fetch in flight is not a lost one), is
        sought back to it.
        """
        consumer = app.consumer
        now_m = time.monotonic()
        idle = []
        for tp in consumer.assignment():
            source = (tp.topic, tp.partition)
            if tp.topic not in (topics.events, topics.metrics) or source in rewinding:
                continue
            if now_m - state.last_input.get(source, now_m) >= UNDELIVERED_AFTER_SECONDS:
                idle.append(tp)
        if not idle:
            return
        ends = await consumer.highwaters(*idle)
        committed = getattr(consumer, "_committed_offset", {})
        handed = getattr(consumer, "_read_offset", {})
        for tp in idle:
            source = (tp.topic, tp.partition)
            expected = state.next_offset.get(source)
            if expected is None:
                expected = committed.get(tp)
            if expected is None:
                expected = (await consumer.earliest_offsets(tp)).get(tp) or 0
            if not undelivered(expected, ends.get(tp), handed.get(tp)):
                suspects.pop(source, None)
                continue
            seen = suspects.get(source)
            if seen is None or seen[0] != expected:
                suspects[source] = (expected, now_m)
                continue
            if now_m - seen[1] < UNDELIVERED_AFTER_SECONDS:
                continue
            suspects.pop(source, None)
            log.warning("%s[%d]: offsets %d..%d were fetched but never delivered: re-reading from %d",
                        *source, expected, ends[tp] - 1, expected)
            metrics.input_rereads.inc()
            state.last_input[source] = now_m
            await consumer.seek(tp, expected)

    async def window_message(event: Any) -> None:
        msg = event.message
        topic = msg.topic
        source = (topic, msg.partition)
        if not await in_sequence(source, msg):
            return
        rewinding.pop(source, None)
        # queued first: whatever happens below, it is acknowledged in its turn
        state.unacked.setdefault(source, deque()).append(event)
        state.last_input[source] = now_m = time.monotonic()
        kind = "events" if topic == topics.events else "metrics"
        messages_in[kind].inc()
        w = windower_for(topic, msg.partition)
        parsed = records.parse_input(msg.value or b"")
        accepted = 0
        for k, item in enumerate(parsed.items):
            if not budget.admit(item.series, now_m):
                parsed.reject(k, "series_limit", over_limit(item.series))
                continue
            try:
                w.add(item, kind, msg.offset)
            except InvalidRecord as exc:
                parsed.reject(k, exc.reason, exc.error)
                continue
            except Exception as exc:  # noqa: BLE001 - one element never stops the stream
                metrics.processing_errors.labels("window").inc()
                parsed.reject(k, "processing_error", f"{type(exc).__name__}: {exc}")
                continue
            accepted += item.count
        events_in[kind].inc(accepted)
        if parsed.dead is not None:
            await dead_letter(topic, msg, parsed.dead)
        await publish_closed(source, w)

    @app.agent(inputs, name="window-agent")
    async def window_agent(stream: faust.StreamT) -> None:
        manual = state.input_stream = stream.noack()
        async for event in manual.events():
            try:
                async with window_lock:
                    await window_message(event)
            except Exception as exc:  # noqa: BLE001 - an agent never crash-loops on data
                await processing_error("window", event.message.topic, event.message, exc)
                queue = state.unacked.setdefault((event.message.topic, event.message.partition), deque())
                if not queue or queue[-1] is not event:
                    queue.append(event)  # acknowledged in its turn, never a hole in the commits

    idle_after = max(1.0, step)

    @app.timer(interval=max(0.5, min(5.0, step / 4)))
    async def close_idle_partitions() -> None:
        """Live partitions with no input for a window close on the wall clock (and a
        re-read that no message answers is sought again)."""
        for source in list(rewinding):
            try:
                await reseek_if_stuck(source)
            except Exception:  # noqa: BLE001 - a timer never dies on one partition
                log.exception("seeking %s[%d] again failed", *source)
        try:
            await fetch_undelivered()
        except Exception:  # noqa: BLE001 - a timer never dies on a broker hiccup
            log.exception("checking for undelivered input failed")
        now_m, now = time.monotonic(), time.time()
        for source, w in list(state.windowers.items()):
            if now_m - state.last_input.get(source, now_m) < idle_after:
                continue
            try:
                async with window_lock:
                    if state.windowers.get(source) is w:
                        w.tick(now)
                        await publish_closed(source, w)
            except Exception:  # noqa: BLE001 - a timer never dies on one partition
                log.exception("closing idle windows of %s[%d] failed", *source)

    signals = kafka_signal.SignalSampler.from_settings(settings)
    if signals is not None:

        async def send_signal(series: str, ts: float, value: float) -> None:
            await out[topics.metrics].send(key=kafka_signal.series_key(series), value=records.dumps(
                {"series": series, "ts": ts, "value": value}))

        @app.timer(interval=signals.interval, on_leader=True)
        async def sample_kafka_signals() -> None:
            """The leader samples every kafkaTopic signal's offsets once per window of the
            signal clock and publishes the rate, lag and partition series as metrics (any
            worker's window agent then treats them as any producer's)."""
            await signals.tick(send_signal, lambda: max(
                (w.typical for w in state.windowers.values()), default=None))

    def model_for(series: str) -> _Cached:
        cached = state.models.get(series)
        if cached is None:
            blob = models.get(series.encode())
            model = None
            if blob:
                try:
                    model = checkpointer.loads(blob)
                    metrics.restored_checkpoints.inc()
                except UntrustedCheckpoint as exc:
                    metrics.untrusted_checkpoints.inc()
                    log.warning("series %s: refusing model checkpoint (%s); starting cold", series, exc)
                except Exception as exc:  # noqa: BLE001 - signed but unloadable (an older version): cold
                    metrics.untrusted_state.labels("models").inc()
                    log.warning("series %s: unloadable model checkpoint (%s: %s); starting cold",
                                series, type(exc).__name__, exc)
            if model is None:
                model = make_series_model(step, period, horizon, settings.anomaly_threshold)
            cached = state.models[series] = _Cached(model, getattr(model.forecaster, "step_seconds", step))
        return cached

    def at_own_step(series: str, cached: _Cached, t: float, value: float) -> _Cached:
        """The series' model at its natural step (streams/steps.py): when the estimate of the
        step changes, a model at the new step learns the kept points again and takes over."""
        est = state.steps.get(series)
        if est is None:  # a restored model keeps its step unless the recent intervals disagree
            est = state.steps[series] = StepEstimator(step, step=cached.step if cached.model.updates else None)
        new_step = est.observe(t, value)
        if new_step is None or new_step == cached.step:
            return cached
        p, h = model_shape(settings, new_step)
        model = make_series_model(new_step, p, h, settings.anomaly_threshold)
        for ts, v in est.replay()[:-1]:
            model.update(v, ts)
        log.info("series %s: a point every %gs: modelled at that step from now on (was %gs)",
                 series, new_step, cached.step)
        cached = state.models[series] = _Cached(model, new_step)
        return cached

    anomalies_delivered = delivered(metrics.anomalies_out)

    async def model_message(msg: Any) -> None:
        """A points message (one point or a batch): every point updates its series' models, the
        forecasts go out as one message (batches) on the same partition; a point whose processing
        raises goes, with any unreadable one, into the message's one dead letter."""
        parsed = records.parse_points(msg.value or b"")
        forecasts: list[bytes] = []
        for k, point in enumerate(parsed.items):
            try:
                forecasts.append(await model_point(point))
            except Exception as exc:  # noqa: BLE001 - one point never stops the others
                metrics.processing_errors.labels("model").inc()
                log.warning("model: %s in %s[%d]@%d raised %s: %s (dead-lettered)", point.series[:100],
                            msg.topic, msg.partition, msg.offset, type(exc).__name__, exc)
                parsed.reject(k, "processing_error", f"{type(exc).__name__}: {exc}")
        for n, body in records.batches(forecasts):
            await out[topics.forecasts].send(key=None, value=body, partition=msg.partition,
                                             callback=delivered(metrics.forecasts_out, n))
        if parsed.dead is not None:
            await dead_letter(topics.points, msg, parsed.dead)

    async def model_point(point: Point) -> bytes:
        """Update one series' models with one closed window; its forecast message element."""
        cached = at_own_step(point.series, model_for(point.series), point.start, point.value)
        t0 = time.perf_counter()
        u = cached.model.update(point.value, point.start)
        metrics.model_update_seconds.observe(time.perf_counter() - t0)
        fc, obs, _ = inputs_from_update(cached.model, point.series, point.start, cached.step,
                                        point.value, u)
        key = point.series.encode()
        fc_json = records.forecast_to_json(fc, obs.value, obs.anomalous, u.score)
        body = None
        if u.drift_started:
            metrics.drift_events.inc()
            log.info("series %s: forecast errors changed regime at %s (drift); acting "
                     "reactively until the model has adapted", point.series, point.start)
        if u.anomalous:
            body = records.anomaly_to_json(point.series, point.start, point.value, u.score,
                                           cached.model.threshold,
                                           type(cached.model.detector).__name__)
            await out[topics.anomalies].send(key=key, value=records.dumps(body),
                                             callback=anomalies_delivered)
        if point.series not in store.series and key in series_view:
            web_restore(point.series)
        view = store.on_window(point.series, point.start, point.value, fc_json, u.score,
                               u.anomalous, body)
        store.note_learnt(point.series, cached.model.updates)
        cached.since_checkpoint += 1
        if cached.since_checkpoint >= settings.checkpoint_every:
            models[key] = checkpointer.dumps(cached.model)
            series_view[key] = store.snapshot_series(view)
            cached.since_checkpoint = 0
            metrics.checkpoints.inc()
        return records.dumps(fc_json)

    @app.agent(points_in, name="model-agent")
    async def model_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                await model_message(event.message)
            except Exception as exc:  # noqa: BLE001 - an agent never crash-loops on data
                await processing_error("model", topics.points, event.message, exc)

    @app.timer(interval=max(0.5, min(30.0, settings.series_idle_seconds / 4 or 30.0)))
    async def evict_idle_series() -> None:
        """Series idle for FORESIGHT_SERIES_IDLE_SECONDS leave memory: their windows are closed
        (points published, input acknowledged) and their place is freed; then every model and
        view held for a series no longer tracked (those, and any brought back by a late point)
        is checkpointed to the tables first, so it comes back warm if the series does."""
        idle = budget.idle(time.monotonic())[:EVICT_BATCH]
        try:
            if idle:
                async with window_lock:
                    for source, w in list(state.windowers.items()):
                        if [s for s in idle if w.evict(s)]:
                            await publish_closed(source, w)
                for series in idle:
                    budget.forget(series)
                metrics.series_evicted.inc(len(idle))
            held = [s for s in state.models if s not in budget and s not in budget.protected]
            held += [s for s in store.series if s not in budget and s not in budget.protected
                     and s not in state.models]
            for series in held[:EVICT_BATCH]:
                key, part = series.encode(), web.partition_for(series, settings.partitions)
                cached = state.models.pop(series, None)
                view = store.series.get(series)
                if cached is not None and cached.since_checkpoint:
                    put_on_partition(models, part, key, checkpointer.dumps(cached.model))
                    metrics.checkpoints.inc()
                    if view is not None:
                        put_on_partition(series_view, part, key, store.snapshot_series(view))
                store.evict(series)
                state.steps.pop(series, None)
        except Exception:  # noqa: BLE001 - a timer never dies; what is held stays until next time
            log.exception("evicting idle series failed")

    def web_restore(series: str) -> None:
        raw = series_view.get(series.encode())
        if raw:
            store.restore_series(series, raw)  # a forged or unreadable snapshot is skipped and counted

    async def decision_message(msg: Any) -> None:
        try:
            d = records.parse_decision(msg.value or b"")
        except ValueError as exc:  # one dead letter, counted; the agent goes on
            metrics.bad_decisions.inc()
            await rejected(topics.decisions, msg, InvalidRecord("bad_value", str(exc), msg.value or b""))
            return
        key = d["target"].encode()
        if d["target"] not in store.targets and key in targets:
            store.restore_target(d["target"], targets[key])  # a bad snapshot is skipped and counted
        target, logged = store.on_decision(d)
        if logged or target.decisions % 10 == 0:
            targets[key] = store.snapshot_target(target)

    @app.agent(decisions_in, name="decisions-agent")
    async def decisions_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                await decision_message(event.message)
            except Exception as exc:  # noqa: BLE001 - an agent never crash-loops on data
                await processing_error("decisions", topics.decisions, event.message, exc)

    # -- history (streams.history): backfilled windows learnt in event time, its own path --
    from streams.history import HistoryLearner, HistoryMetrics

    def save_history(series: str, model: SeriesModel, view: Any) -> None:
        models[series.encode()] = checkpointer.dumps(model)
        series_view[series.encode()] = store.snapshot_series(view)
        metrics.checkpoints.inc()

    learner = HistoryLearner(step, lambda s, t, v: at_own_step(s, model_for(s), t, v), store,
                             save_history, web_restore, HistoryMetrics(metrics.registry))

    @app.agent(raw_topic(topics.history), name="history-agent")
    async def history_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                receipts, dead = learner.learn_message(msg.value or b"")
                if dead is not None:
                    await dead_letter(topics.history, msg, dead)
                for r in receipts:
                    await out[topics.history_learnt].send(key=r.series.encode(),
                                                          value=records.dumps(r.to_json()))
            except Exception as exc:  # noqa: BLE001 - an agent never crash-loops on data
                await processing_error("history", topics.history, msg, exc)

    web.register(app, settings, topics, store, series_view, targets)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app


def run_worker(settings: Settings) -> None:
    """Run a Faust worker in the foreground until SIGINT/SIGTERM, or until its broker is lost.

    Exits with :data:`streams.lifecycle.BROKER_LOST_EXIT_CODE` if the topics
    vanished or the cluster changed (see :class:`streams.lifecycle.BrokerWatch`).
    """
    import sys

    from streams import lifecycle
    from streams.admin import ensure_topics, with_replication

    topics = Topics.from_settings(settings)
    settings = with_replication(settings, ensure_topics(settings, topics.all(), settings.partitions))
    app = create_app(settings)
    watch = lifecycle.BrokerWatch(
        settings, topics.all(), internal_prefix=f"{settings.app_id}-",
        on_lost=lambda why: lifecycle.request_exit(lifecycle.BROKER_LOST_EXIT_CODE, why),
        errors=app.foresight_metrics.broker_errors,  # type: ignore[attr-defined]
    ).start()
    argv = ["foresight-worker", "worker", "-l", _faust_level(settings.log_level)]
    if settings.web_enabled:
        argv += ["--web-host", web.advertised_host(settings), "--web-port", str(settings.web_port),
                 "--web-bind", settings.web_host]
    else:
        argv += ["--without-web"]
    sys.argv = argv
    try:
        app.main()
    finally:
        watch.stop()
        if lifecycle.exit_code() is not None:
            raise SystemExit(lifecycle.exit_code())


def _faust_level(level: str) -> str:
    return {"warning": "warn", "critical": "crit"}.get(level.lower(), level.lower())
