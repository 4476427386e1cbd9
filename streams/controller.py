"""The controller's Kafka loop: ``forecasts`` in, decisions out.

It reads every partition of ``foresight.forecasts`` (no consumer group: one
active controller reads everything); a message is one forecast or a batch of
them (many series per message: :func:`streams.records.parse_forecasts`). A forecast is decided on at its own
event time (the end of the window it was issued after), never earlier than
the target's previous decision. Targets whose series has gone quiet are
re-decided once per window as the *low watermark* moves -- the slowest
partition's event time, ignoring partitions idle for ``IDLE_SECONDS`` of wall
time, as stream processors do -- so a stale forecast falls back to the
reactive rule (never a scale-down), while partitions read at different
speeds (a backlog, a backfill) never make each other's forecasts look stale.

The forecasts topic is not trusted: a message is parsed strictly
(:func:`streams.records.parse_forecast`) and its time checked by a
:class:`ForecastGate` before it may touch a target; anything refused goes to
``<forecasts>.dlq`` with a reason and is counted. If handling a valid
forecast raises anyway, that forecast is dead-lettered as
``processing_error`` and the loop goes on: the controller never crash-loops
on data.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from scaler.decision import Decision
from scaler.inputs import policy_inputs
from scaler.reconcile import Reconciler
from scaler.reconciling import Reconciling
from scaler.simulated import SimulatedCluster
from scaler.spec import load_specs
from streams import kafka_config, records
from streams.metrics import Metrics
from streams.ratelog import RateLimitedLog
from streams.records import InvalidRecord
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger("foresight.controller")

#: wall seconds after which a silent partition stops holding the low watermark back
IDLE_SECONDS = 30.0
#: a forecast whose event time is more than this many of its steps ahead of
#: its series' (or, for a new series, its partition's) latest accepted one is
#: held back until a later forecast of the series confirms the jump
MAX_JUMP_STEPS = 30
#: a forecast issued more than this many wall seconds in the future is refused
#: outright (replays at --speed run ahead of the wall clock by hours, not days)
MAX_FUTURE_WALL_SECONDS = 7 * 86400.0


class ForecastGate:
    """Decides whether a parsed forecast's event time may move the controller's clocks.

    - more than ``max_future_wall`` seconds ahead of the wall clock: refused
      (``future``), always;
    - more than ``max_jump_steps`` steps ahead of its series' latest accepted
      time (a new series: of its partition's): refused (``future``) unless a
      previous refused forecast of the same series is at or before it -- two
      forecasts agreeing on a jump confirm it (a series that resumes after a
      gap), one forged forecast never moves a target's clock;
    - older than the series' latest: accepted but *superseded* (it must not
      replace the newer forecast).

    >>> g = ForecastGate(max_jump_steps=5, max_future_wall=1e9)
    >>> g.check("a", 60.0, 10.0, partition=0, wall=0.0)
    'ok'
    >>> g.check("a", 3000.0, 10.0, partition=0, wall=0.0)
    Traceback (most recent call last):
    ...
    streams.records.InvalidRecord: future: event time 3000 is 2940s ahead of the series' latest (60); held until a later forecast confirms it
    >>> g.check("a", 70.0, 10.0, partition=0, wall=0.0), g.check("a", 65.0, 10.0, partition=0, wall=0.0)
    ('ok', 'superseded')
    """

    def __init__(self, max_jump_steps: float = MAX_JUMP_STEPS,
                 max_future_wall: float = MAX_FUTURE_WALL_SECONDS) -> None:
        self.max_jump_steps = max_jump_steps
        self.max_future_wall = max_future_wall
        self.latest: dict[str, float] = {}
        self.partition_latest: dict[int, float] = {}
        self.pending: dict[str, float] = {}

    def check(self, series: str, now: float, step: float, partition: int, wall: float) -> str:
        """'ok' or 'superseded'; raise :class:`InvalidRecord` (``future``) if refused."""
        if now > wall + self.max_future_wall:
            raise InvalidRecord("future", f"event time {now:.0f} is {now - wall:.0f}s ahead of the wall clock")
        last = self.latest.get(series)
        ref = last if last is not None else self.partition_latest.get(partition)
        if last is not None and now < last:
            return "superseded"
        if ref is not None and now - ref > self.max_jump_steps * step:
            pending = self.pending.get(series)
            if pending is None or now < pending:
                self.pending[series] = now
                whose = "series'" if last is not None else "partition's"
                raise InvalidRecord("future", f"event time {now:.0f} is {now - ref:.0f}s ahead of the {whose} "
                                              f"latest ({ref:.0f}); held until a later forecast confirms it")
        self.pending.pop(series, None)
        self.latest[series] = now
        self.partition_latest[partition] = max(self.partition_latest.get(partition, now), now)
        return "ok"


class ControllerLoop:
    """Consume forecasts, reconcile, publish decisions, until :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        reconciler: Reconciling,
        from_beginning: bool = True,
        on_forecast: Callable[[records.ForecastMessage, float], None] | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        gate: ForecastGate | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self.reconciler = reconciler
        self.from_beginning = from_beginning
        self.on_forecast = on_forecast
        self.watermark = -math.inf  # the newest event time read, any partition
        self._partition_time: dict[int, float] = {}
        self._partition_seen: dict[int, float] = {}
        self._last_sweep = -math.inf
        self._stopping = asyncio.Event()
        self._pending: list[Decision] = []
        self.decisions = 0
        self.bad_messages = 0
        self.replayed = 0
        self.superseded = 0
        self.accepted = 0
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.gate = gate or ForecastGate()
        self.dlq_topic = Topics.dlq(self.topics.forecasts)
        self._dead: list[tuple[bytes | None, bytes]] = []
        self._rl = RateLimitedLog(log)
        reconciler.on_decision = self._pending.append

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **kafka_config.client_kwargs(self.settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self.from_beginning else "latest",
        )
        producer = AIOKafkaProducer(**kafka_config.client_kwargs(self.settings), acks="all", linger_ms=5)
        await consumer.start()
        await producer.start()
        try:
            parts = None
            while not parts and not self._stopping.is_set():
                parts = consumer.partitions_for_topic(self.topics.forecasts)
                if not parts:
                    await consumer._client.force_metadata_update()  # noqa: SLF001
                    await asyncio.sleep(0.2)
            if self._stopping.is_set():
                return
            assert parts is not None
            tps = [TopicPartition(self.topics.forecasts, p) for p in sorted(parts)]
            consumer.assign(tps)
            if not self.from_beginning:
                await consumer.seek_to_end(*tps)
                start = {tp: await consumer.position(tp) for tp in tps}
                await self._replay(start)
            self.track_partitions(parts)
            log.info("controller reading %s (%d partitions), %d targets",
                     self.topics.forecasts, len(parts), len(self.reconciler.specs))
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                values = [(m.partition, m.offset, m.key, m.value or b"")
                          for msgs in batch.values() for m in msgs]
                if values:
                    # reconciling may block on API calls (Kubernetes): keep the loop responsive
                    await asyncio.to_thread(self._handle_all, values)
                await self._publish(producer)
        finally:
            await self._publish(producer)
            await consumer.stop()
            await producer.stop()

    async def _replay(self, until: dict[TopicPartition, int]) -> None:
        """Learn from the forecasts before ``until`` without acting (after a restart).

        The adaptive policy's learned state and the shadow comparison are
        rebuilt from the retained history; what is acted on starts at ``until``.
        """
        todo = {tp: end for tp, end in until.items() if end > 0}
        if not todo:
            return
        replay = AIOKafkaConsumer(**kafka_config.client_kwargs(self.settings),
                                  enable_auto_commit=False, auto_offset_reset="earliest")
        await replay.start()
        n = 0
        try:
            replay.assign(list(todo))
            await replay.seek_to_beginning(*todo)
            while todo and not self._stopping.is_set():
                batch = await replay.getmany(timeout_ms=500, max_records=2000)
                values = [m.value or b"" for tp, msgs in batch.items() for m in msgs
                          if m.offset < until[tp]]
                if values:
                    await asyncio.to_thread(self._learn_all, values)
                    n += len(values)
                for tp in list(todo):
                    if await replay.position(tp) >= todo[tp]:
                        del todo[tp]
        finally:
            await replay.stop()
        log.info("controller replayed %d forecasts to rebuild what the policy learnt", n)

    def _learn_all(self, values: list[bytes]) -> None:
        for raw in values:
            parsed = records.parse_forecasts(raw)  # one forecast or a batch
            if parsed.dead is not None:
                self.bad_messages += 1
            for fm in parsed.items:
                f, obs, now = policy_inputs(fm.forecast, fm.observed, fm.anomalous)
                self.reconciler.observe(f, obs)
                self.reconciler.learn_series(f.series, now)
        self.replayed += len(values)

    def _handle_all(self, values: list[tuple[int, int, bytes | None, bytes]]) -> None:
        for partition, offset, key, raw in values:
            self._handle(raw, partition, offset, key)

    def track_partitions(self, partitions: set[int] | list[int]) -> None:
        """Partitions that hold the low watermark back until they deliver or go idle."""
        wall = time.monotonic()
        for p in partitions:
            self._partition_time.setdefault(p, -math.inf)
            self._partition_seen.setdefault(p, wall)

    def low_watermark(self, wall: float | None = None) -> float:
        """Event time every non-idle partition has reached."""
        wall = time.monotonic() if wall is None else wall
        active = [t for p, t in self._partition_time.items()
                  if wall - self._partition_seen[p] <= IDLE_SECONDS]
        return min(active) if active else self.watermark

    def _handle(self, raw: bytes, partition: int = 0, offset: int | None = None, key: bytes | None = None) -> None:
        """Validate one forecasts message (one forecast or a batch) and reconcile the targets of
        every forecast accepted in it.

        Refused or failing forecasts of a message become its one dead letter, holding only
        them (the whole message if it was a single forecast); nothing raises.
        """
        parsed = records.parse_forecasts(raw)
        step = None
        for k, fm in enumerate(parsed.items):
            try:
                verdict = self.gate.check(fm.forecast.series, fm.forecast.issued + fm.forecast.step,
                                          fm.forecast.step, partition, self.clock())
            except InvalidRecord as exc:
                parsed.reject(k, exc.reason, exc.error)
                continue
            if verdict == "superseded":  # an older forecast (a replay): never replaces a newer one
                self.superseded += 1
                continue
            try:
                self._apply(fm, partition)
            except Exception as exc:  # noqa: BLE001 - isolation: one record must not stop the controller
                parsed.reject(k, "processing_error", f"{type(exc).__name__}: {exc}")
                continue
            self.accepted += 1
            step = fm.forecast.step
        if step is not None:
            # after the whole message, never between its forecasts: the worker's model batch
            # holds several windows of each series, series after series, and swept halfway the
            # series still to come would look quiet, be decided ahead of their own forecasts,
            # and have those decided at that later time (stale, their lead cut short)
            self._sweep(step)
        if parsed.dead is not None:
            self._dead_letter_of(parsed.dead, partition, offset, key, raw)

    def _apply(self, fm: records.ForecastMessage, partition: int) -> None:
        f, obs, now = policy_inputs(fm.forecast, fm.observed, fm.anomalous)
        self.watermark = max(self.watermark, now)
        self._partition_time[partition] = max(self._partition_time.get(partition, -math.inf), now)
        self._partition_seen[partition] = time.monotonic()
        self.reconciler.observe(f, obs)
        if self.on_forecast is not None:
            self.on_forecast(fm, now)
        self.reconciler.reconcile_series(f.series, now)

    def _dead_letter_of(self, d: records.DeadLetter, partition: int, offset: int | None,
                        key: bytes | None, raw: bytes) -> None:
        """One message's dead letter (its bad forecasts), counted as the input agents count theirs."""
        self.bad_messages += 1
        self.metrics.dead_letters.labels(self.topics.forecasts, d.reason).inc()
        for reason, n in d.reasons.items():
            self.metrics.dead_letter_elements.labels(self.topics.forecasts, reason).inc(n)
        self._rl.log(logging.WARNING, d.reason, "forecasts at %s[%d]@%s dead-lettered (%s): %s",
                     self.topics.forecasts, partition, offset, d.reason, d.error)
        body = records.dead_letter_of(d, self.topics.forecasts, partition, offset, len(raw))
        self._dead.append((key, records.dumps(body)))

    def _sweep(self, step: float) -> None:
        """Once per window of low-watermark progress, re-decide targets whose series is quiet."""
        low = self.low_watermark()
        if low == -math.inf or low - self._last_sweep < step:
            return
        self._last_sweep = low
        try:
            self.reconciler.resync(low, step)
        except Exception as exc:  # noqa: BLE001 - a failed sweep must not stop the controller
            self.metrics.controller_errors.inc()
            self._rl.log(logging.ERROR, "sweep", "re-deciding quiet targets failed: %s: %s",
                         type(exc).__name__, exc)

    async def _publish(self, producer: AIOKafkaProducer) -> None:
        """Send pending decisions and dead letters; count what the broker acknowledged."""
        if not self._pending and not self._dead:
            return
        pending = self._pending[:]  # decisions may also arrive from the operator's threads
        del self._pending[: len(pending)]
        dead = self._dead[:]
        del self._dead[: len(dead)]
        outgoing: list[tuple[str, bytes | None, bytes, Decision | None]] = [
            (self.topics.decisions, d.target.encode(), records.dumps(records.decision_to_json(d)), d)
            for d in pending
        ] + [(self.dlq_topic, key, body, None) for key, body in dead]
        for d in pending:
            if d.applied or d.desired != d.current:
                log.info("%s: %d -> %d (%s) %s", d.target, d.current, d.desired, d.reason.value, d.message)
        sent: list[tuple[Any, str, Decision | None]] = []
        for topic, key, value, d in outgoing:
            try:
                sent.append((await producer.send(topic, key=key, value=value), topic, d))
            except Exception as exc:  # noqa: BLE001 - the broker is away: counted, logged (rate-limited)
                self._publish_failed(topic, exc)
        for fut, topic, d in sent:
            try:
                await fut
            except Exception as exc:  # noqa: BLE001 - the decision is also in status and Events
                self._publish_failed(topic, exc)
                continue
            if d is not None:
                self.decisions += 1

    def _publish_failed(self, topic: str, exc: Exception) -> None:
        self.metrics.controller_errors.inc()
        self._rl.log(logging.ERROR, "publish", "publishing to %s failed: %s: %s", topic, type(exc).__name__, exc)


def run_controller(settings: Settings, kube: bool = False, namespaces: list[str] | None = None) -> int:
    """Run the controller in the foreground until SIGINT/SIGTERM."""
    from streams.admin import ensure_topics

    topics = Topics.from_settings(settings)
    closer: Callable[[], None] | None = None
    if not kube:  # a bad scalers file is refused (SpecError) before anything starts
        if not settings.scalers:
            raise SystemExit("foresight scaler: --scalers FILE (PredictiveScaler YAML) or --kube is required")
        specs = load_specs(settings.scalers)
    ensure_topics(settings, topics.all() + [Topics.dlq(topics.forecasts)], settings.partitions)
    if kube:
        from scaler.kube.config import start_operator

        op = start_operator(namespaces=namespaces, lease_namespace=settings.lease_namespace,
                            health_port=settings.health_port or None, health_host=settings.health_host,
                            mode_override=settings.mode or None)
        loop = ControllerLoop(settings, op, from_beginning=False)
        closer = op.stop
    else:
        if settings.mode:
            import dataclasses

            specs = [dataclasses.replace(s, mode=settings.mode) for s in specs]
        cluster = SimulatedCluster(settings.startup_seconds)
        for s in specs:
            cluster.add_target(s.key, s.min_replicas)
        reconciler = Reconciler(cluster, specs)
        loop = ControllerLoop(settings, reconciler, from_beginning=True)

    from streams import lifecycle

    lost: list[str] = []

    async def main() -> None:
        ev = asyncio.get_running_loop()

        def stop(why: str) -> None:
            # a bounded stop: the graceful one gets lifecycle.STOP_GRACE_SECONDS
            lifecycle.hard_exit_after(lifecycle.STOP_GRACE_SECONDS,
                                      lifecycle.BROKER_LOST_EXIT_CODE if lost else lifecycle.STOP_TIMEOUT_EXIT_CODE,
                                      why)
            loop.stop()

        def on_lost(why: str) -> None:
            lost.append(why)
            log.critical("%s; exiting with code %d so that the controller is restarted",
                         why, lifecycle.BROKER_LOST_EXIT_CODE)
            ev.call_soon_threadsafe(stop, why)

        for sig in (signal.SIGINT, signal.SIGTERM):
            ev.add_signal_handler(sig, stop, sig.name)
        watch = lifecycle.BrokerWatch(settings, [topics.forecasts, topics.decisions], on_lost=on_lost,
                                      errors=loop.metrics.broker_errors).start()
        try:
            await loop.run()
        finally:
            watch.stop()

    try:
        asyncio.run(main())
    finally:
        if closer is not None:
            closer()
    return lifecycle.BROKER_LOST_EXIT_CODE if lost else 0
