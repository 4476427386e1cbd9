"""Kafka as a signal: a topic's incoming rate, a consumer group's lag, the partition count.

For every ``kafkaTopic`` signal of the PredictiveScalers (``spec.signals``),
once per window, one process (the leader of the workers) reads the topic's
end offsets and the group's committed offsets and publishes three metric
series on the ``metrics`` topic, like any producer (same validation, same
windows), named by :func:`scaler.spec.kafka_topic_series`:

- ``kafka/<topic>/rate``: messages/s into the topic since the previous sample
  (the sum of end offsets' growth over the elapsed seconds; none on the first
  sample, and none when an end offset went backwards: a recreated topic),
  stamped at the previous sample's time, the start of the interval it
  measures, so that it lands in the window whose load it is (stamped at its
  end it would trail the load by a window);
- ``kafka/<topic>/lag/<group>``: the sum over partitions of ``end - committed``
  (at least 0); a partition the group has never committed counts whole
  (``end``: the group would start from the earliest offset);
- ``kafka/<topic>/partitions``: the partition count (a consumer beyond it is
  idle: the policy caps the signal's count there).

The rate is forecast like any series; the policy decides on
``max(forecast rate / capacityPerReplica, lag / lagThreshold)`` capped at the
partitions (:func:`scaler.policy.consumer_lag`).

Samples are stamped, and the rate's elapsed seconds measured, by the
sampler's clock (:class:`streams.clock.SignalClock`, ``FORESIGHT_SIGNAL_CLOCK``):
the wall clock live, the replay's event time in ``foresight demo``, read as
a topic's end offsets are asked for (:func:`sample`). The leader's timer ticks
four times per window of that clock and samples once in each window
(:class:`SignalSampler`).

The embedded broker's quirk: it reports a partition's end offset as the first
offset of its newest record batch + 1, not the offset after the last record,
so a producer that batches (several records per produce request) makes both
the rate and the lag read low by up to one batch per partition, until the next
batch. A real Kafka reports the offset after the last record.

>>> s = OffsetSampler()
>>> s.points(100.0, "orders", {"billing"}, {0: 40, 1: 60}, {"billing": {0: 30, 1: None}})
[('kafka/orders/lag/billing', 100.0, 70.0), ('kafka/orders/partitions', 100.0, 2.0)]
>>> s.points(110.0, "orders", {"billing"}, {0: 90, 1: 110}, {"billing": {0: 80, 1: 100}})[0]
('kafka/orders/rate', 100.0, 10.0)
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scaler.spec import KafkaTopicSource, ScalerSpec, kafka_topic_series, load_specs
from streams import kafka_config
from streams.clock import SignalClock
from streams.settings import Settings

log = logging.getLogger("foresight.kafka_signal")


def sources_of(settings: Settings) -> dict[str, set[str]]:
    """The Kafka topic signals of the PredictiveScaler file ``settings.scalers`` (none
    without one, or when it cannot be read: the controller reports that)."""
    if not settings.scalers:
        return {}
    try:
        return kafka_sources(load_specs(settings.scalers))
    except Exception as exc:  # noqa: BLE001 - the worker runs on without the sampler
        log.warning("kafka signals: cannot read %s: %s", settings.scalers, exc)
        return {}


def kafka_sources(specs: Iterable[ScalerSpec]) -> dict[str, set[str]]:
    """Topic -> consumer groups, over every ``kafkaTopic`` signal of ``specs``."""
    out: dict[str, set[str]] = {}
    for spec in specs:
        for sig in spec.signals:
            if isinstance(sig.source, KafkaTopicSource):
                out.setdefault(sig.source.topic, set()).add(sig.source.consumer_group)
    return out


@dataclass
class OffsetSampler:
    """Turns offsets read at time ``ts`` into metric points (pure; keeps the previous
    end offsets per topic for the rate)."""

    previous: dict[str, tuple[float, int]] = field(default_factory=dict)

    def points(
        self,
        ts: float,
        topic: str,
        groups: Iterable[str],
        ends: Mapping[int, int],
        committed: Mapping[str, Mapping[int, int | None]],
    ) -> list[tuple[str, float, float]]:
        """(series, ts, value) for the topic's rate, each group's lag and its partitions."""
        out: list[tuple[str, float, float]] = []
        total = sum(ends.values())
        before = self.previous.get(topic)
        if before is not None and ts > before[0] and total >= before[1]:
            out.append((kafka_topic_series(topic, "")[0], before[0], (total - before[1]) / (ts - before[0])))
        self.previous[topic] = (ts, total)
        for group in sorted(groups):
            offsets = committed.get(group, {})
            lag = 0
            for p, end in ends.items():
                c = offsets.get(p)
                lag += end if c is None or c < 0 else max(0, end - c)
            out.append((kafka_topic_series(topic, group)[1], ts, float(lag)))
        if ends:
            out.append((kafka_topic_series(topic, "")[2], ts, float(len(ends))))
        return out


class KafkaOffsets:
    """Reads end offsets and committed offsets from a Kafka cluster (aiokafka).

    Two requests per topic and one per group, whatever the partition count: the
    end offsets by a consumer that never subscribes (after a metadata refresh,
    so added partitions count), and each group's committed offsets in one
    offset fetch of an admin client, from the group's coordinator (looked up
    once, again after a failed fetch). Nothing joins a group, disturbs its
    members or commits. A sample on a busy event loop waits behind other work at
    every request, so the requests are few: one per partition, a sample of 16
    partitions took longer than its timer's period and skipped windows.
    """

    def __init__(self, bootstrap_servers: str, **client: Any) -> None:
        #: connection settings (TLS, SASL) of every client, as :func:`streams.kafka_config.client_kwargs`
        self.client = {**client, "bootstrap_servers": bootstrap_servers}
        self._consumer: Any = None
        self._admin: Any = None
        self._coordinators: dict[str, int] = {}

    @property
    def started(self) -> bool:
        return self._consumer is not None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        self._consumer = AIOKafkaConsumer(enable_auto_commit=False, **self.client)
        await self._consumer.start()
        self._admin = AIOKafkaAdminClient(**self.client)
        await self._admin.start()

    async def stop(self) -> None:
        """Close every client (one that fails to close is dropped all the same)."""
        consumer, admin = self._consumer, self._admin
        self._consumer, self._admin, self._coordinators = None, None, {}
        for stop in (consumer and consumer.stop, admin and admin.close):
            if stop:
                with contextlib.suppress(Exception):
                    await stop()

    async def end_offsets(self, topic: str, now: Callable[[], float]) -> tuple[dict[int, int], float]:
        """Partition -> end offset (empty if the topic does not exist), and ``now()`` read as
        the offsets request goes out: the broker answers at once, while the reply may wait
        behind other work on a busy event loop before this coroutine sees it."""
        from aiokafka.structs import TopicPartition

        await self._consumer.topics()  # refresh the metadata
        parts = self._consumer.partitions_for_topic(topic) or set()
        ts = now()
        if not parts:
            return {}, ts
        ends = await self._consumer.end_offsets([TopicPartition(topic, p) for p in sorted(parts)])
        return {tp.partition: int(o) for tp, o in ends.items()}, ts

    async def committed(self, group: str, topic: str, partitions: Iterable[int]) -> dict[int, int | None]:
        """Partition -> the group's committed offset on ``topic`` (None: never committed)."""
        from aiokafka.structs import TopicPartition

        parts = sorted(partitions)
        if not parts:
            return {}
        coordinator = self._coordinators.get(group)
        if coordinator is None:
            coordinator = self._coordinators[group] = await self._admin.find_coordinator(group)
        try:
            got = await self._admin.list_consumer_group_offsets(
                group, coordinator, [TopicPartition(topic, p) for p in parts])
        except Exception:
            self._coordinators.pop(group, None)  # it may have moved: looked up again next time
            raise
        out: dict[int, int | None] = dict.fromkeys(parts)
        for tp, meta in got.items():
            if tp.topic == topic and tp.partition in out and meta.offset >= 0:
                out[tp.partition] = int(meta.offset)
        return out


async def sample(reader: KafkaOffsets, sampler: OffsetSampler, sources: Mapping[str, set[str]],
                 now: Callable[[], float]) -> list[tuple[str, float, float]]:
    """One sample of every topic and group; a topic that cannot be read is logged and skipped
    (its series go quiet, so the policy holds: never a scale-down on missing data).

    Each topic's points are stamped ``now()`` as its end offsets are asked for, the time they
    are true: not when the sample was due, nor when the reply is seen. On a busy event loop
    each await waits behind the worker's other work (model batches, windows), and at
    ``foresight demo``'s 240x a tenth of a wall second is 24 event seconds, so stamped when
    due, an interval's messages were divided by the wrong seconds: a burst's first window
    read a fraction of its rate and the next one the rest, and the forecaster saw the burst
    late."""
    out: list[tuple[str, float, float]] = []
    for topic, groups in sorted(sources.items()):
        try:
            ends, ts = await reader.end_offsets(topic, now)
            committed = {g: await reader.committed(g, topic, ends) for g in groups}
        except Exception as exc:  # noqa: BLE001 - one topic never stops the others
            log.warning("kafka signal: cannot read the offsets of %s: %s", topic, exc)
            continue
        if not ends:
            log.warning("kafka signal: topic %s has no partitions (does it exist?)", topic)
            continue
        out += sampler.points(ts, topic, groups, ends, committed)
    return out


def series_key(series: str) -> bytes:
    """The message key of a sampled point: its topic's series name prefix, so that a topic's
    rate, lag and partitions share a partition of the metrics topic and travel together
    (windowed, forecast and decided on together, never a window apart).

    >>> series_key("kafka/orders/lag/billing") == series_key("kafka/orders/rate")
    True
    """
    return "/".join(series.split("/")[:2]).encode()


#: ``send(series, ts, value)``: publishes one metric point (keyed by :func:`series_key`)
Send = Callable[[str, float, float], Awaitable[Any]]


class SignalSampler:
    """The worker leader's sampler: once per window of its clock, every ``kafkaTopic``
    signal's offsets, handed to ``send`` as metric points.

    A replay clock also waits for its worker: while the worker's own event time
    (``worker_time``, its most advanced input partition) is more than
    ``max_ahead`` seconds behind the clock -- the worker is still catching up on
    a backfill -- a sample would be refused as ``future`` by the windows, so
    none is taken. The wall clock never waits (live, the worker's input may be
    quiet for any length of time).
    """

    def __init__(self, sources: Mapping[str, set[str]], reader: KafkaOffsets, clock: SignalClock,
                 step: float, max_ahead: float) -> None:
        self.sources = sources
        self.reader = reader
        self.clock = clock
        self.step = step
        self.max_ahead = max_ahead
        self.sampler = OffsetSampler()
        self.last_window: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SignalSampler | None:
        """The sampler of the scalers file's ``kafkaTopic`` signals (None without any)."""
        sources = sources_of(settings)
        if not sources:
            return None
        return cls(sources, KafkaOffsets(**kafka_config.client_kwargs(settings)),
                   SignalClock.parse(settings.signal_clock), settings.window_seconds,
                   settings.max_future_seconds / 2)

    @property
    def interval(self) -> float:
        """Wall seconds between the timer's ticks: four per window of the clock."""
        return max(0.05, self.clock.interval(self.step) / 4)

    async def tick(self, send: Send, worker_time: Callable[[], float | None] | None = None,
                   wall: float | None = None) -> int:
        """Sample if the clock entered a new window since the last sample; the number of
        points sent. Never raises: a failed read is logged, its series go quiet (hold) and
        the connections are opened again at the next sample. ``wall`` fixes the wall time
        (tests); else the samples are stamped when their offsets are read."""
        fixed = wall
        wall = time.time() if wall is None else wall
        if not self.clock.started(wall):
            return 0
        now = self.clock.now(wall)
        window = math.floor(now / self.step)
        # sampled in this window already (or in the next: a sample the loop held is stamped
        # when read); a clock set back further samples again
        if self.last_window is not None and 0 <= self.last_window - window <= 1:
            return 0
        if self.clock.replay and worker_time is not None:
            t = worker_time()
            if t is not None and math.isfinite(t) and now - t > self.max_ahead:
                return 0
        self.last_window = window
        try:
            if not self.reader.started:
                await self.reader.start()
            points = await sample(self.reader, self.sampler, self.sources,
                                  self.clock.now if fixed is None else lambda: self.clock.now(fixed))
            # a sample read in the next window (the loop held it) is that window's sample
            self.last_window = max([window, *(math.floor(ts / self.step) for _, ts, _ in points)])
            for series, ts, value in points:
                await send(series, ts, value)
        except Exception:  # noqa: BLE001 - a timer never dies; the series go quiet (hold)
            log.exception("sampling the Kafka topic signals failed")
            await self.reader.stop()
            return 0
        return len(points)
