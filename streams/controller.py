"""The controller's Kafka loop: ``forecasts`` in, decisions out.

It reads every partition of ``foresight.forecasts`` (no consumer group: one
active controller reads everything). A forecast is decided on at its own
event time (the end of the window it was issued after), never earlier than
the target's previous decision. Targets whose series has gone quiet are
re-decided once per window as the *low watermark* moves -- the slowest
partition's event time, ignoring partitions idle for ``IDLE_SECONDS`` of wall
time, as stream processors do -- so a stale forecast falls back to the
reactive rule (never a scale-down), while partitions read at different
speeds (a backlog, a backfill) never make each other's forecasts look stale.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from scaler.decision import Decision
from scaler.inputs import policy_inputs
from scaler.reconcile import Reconciler
from scaler.reconciling import Reconciling
from scaler.simulated import SimulatedCluster
from scaler.spec import load_specs
from streams import records
from streams.records import InvalidRecord
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger("foresight.controller")

#: wall seconds after which a silent partition stops holding the low watermark back
IDLE_SECONDS = 30.0


class ControllerLoop:
    """Consume forecasts, reconcile, publish decisions, until :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        reconciler: Reconciling,
        from_beginning: bool = True,
        on_forecast: Callable[[records.ForecastMessage, float], None] | None = None,
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
        reconciler.on_decision = self._pending.append

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.broker,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self.from_beginning else "latest",
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.broker, acks="all", linger_ms=5)
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
                values = [(m.partition, m.value or b"") for msgs in batch.values() for m in msgs]
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
        replay = AIOKafkaConsumer(bootstrap_servers=self.settings.broker,
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
            try:
                fm = records.parse_forecast(raw)
            except InvalidRecord:
                self.bad_messages += 1
                continue
            f, obs, now = policy_inputs(fm.forecast, fm.observed, fm.anomalous)
            self.reconciler.observe(f, obs)
            self.reconciler.learn_series(f.series, now)
        self.replayed += len(values)

    def _handle_all(self, values: list[tuple[int, bytes]]) -> None:
        for partition, raw in values:
            self._handle(raw, partition)

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

    def _handle(self, raw: bytes, partition: int = 0) -> None:
        try:
            fm = records.parse_forecast(raw)
        except InvalidRecord as exc:
            self.bad_messages += 1
            log.warning("skipping bad forecast message: %s", exc)
            return
        f, obs, now = policy_inputs(fm.forecast, fm.observed, fm.anomalous)
        self.watermark = max(self.watermark, now)
        self._partition_time[partition] = max(self._partition_time.get(partition, -math.inf), now)
        self._partition_seen[partition] = time.monotonic()
        self.reconciler.observe(f, obs)
        if self.on_forecast is not None:
            self.on_forecast(fm, now)
        self.reconciler.reconcile_series(f.series, now)
        self._sweep(f.step)

    def _sweep(self, step: float) -> None:
        """Once per window of low-watermark progress, re-decide targets whose series is quiet."""
        low = self.low_watermark()
        if low == -math.inf or low - self._last_sweep < step:
            return
        self._last_sweep = low
        self.reconciler.resync(low, step)

    async def _publish(self, producer: AIOKafkaProducer) -> None:
        if not self._pending:
            return
        pending = self._pending[:]  # decisions may also arrive from the operator's threads
        del self._pending[: len(pending)]
        for d in pending:
            await producer.send(self.topics.decisions, key=d.target.encode(),
                                value=records.dumps(records.decision_to_json(d)))
            self.decisions += 1
            if d.applied or d.desired != d.current:
                log.info("%s: %d -> %d (%s) %s", d.target, d.current, d.desired, d.reason.value, d.message)
        await producer.flush()


def run_controller(settings: Settings, kube: bool = False, namespaces: list[str] | None = None) -> int:
    """Run the controller in the foreground until SIGINT/SIGTERM."""
    from streams.admin import ensure_topics

    topics = Topics.from_settings(settings)
    ensure_topics(settings.broker, topics.all(), settings.partitions)
    closer: Callable[[], None] | None = None
    if kube:
        from scaler.kube.config import start_operator

        op = start_operator(namespaces=namespaces, lease_namespace=settings.lease_namespace,
                            health_port=settings.health_port or None, health_host=settings.health_host,
                            mode_override=settings.mode or None)
        loop = ControllerLoop(settings, op, from_beginning=False)
        closer = op.stop
    else:
        if not settings.scalers:
            raise SystemExit("foresight scaler: --scalers FILE (PredictiveScaler YAML) or --kube is required")
        specs = load_specs(settings.scalers)
        if settings.mode:
            import dataclasses

            specs = [dataclasses.replace(s, mode=settings.mode) for s in specs]
        cluster = SimulatedCluster(settings.startup_seconds)
        for s in specs:
            cluster.add_target(s.key, s.min_replicas)
        reconciler = Reconciler(cluster, specs)
        loop = ControllerLoop(settings, reconciler, from_beginning=True)

    async def main() -> None:
        ev = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            ev.add_signal_handler(sig, loop.stop)
        await loop.run()

    try:
        asyncio.run(main())
    finally:
        if closer is not None:
            closer()
    return 0
