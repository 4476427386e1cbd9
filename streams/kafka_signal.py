"""Kafka as a signal: a topic's incoming rate, a consumer group's lag, the partition count.

For every ``kafkaTopic`` signal of the PredictiveScalers (``spec.signals``),
once per window, one process (the leader of the workers) reads the topic's
end offsets and the group's committed offsets and publishes three metric
series on the ``metrics`` topic, like any producer (same validation, same
windows), named by :func:`scaler.spec.kafka_topic_series`:

- ``kafka/<topic>/rate``: messages/s into the topic since the previous sample
  (the sum of end offsets' growth over the elapsed seconds; none on the first
  sample, and none when an end offset went backwards: a recreated topic);
- ``kafka/<topic>/lag/<group>``: the sum over partitions of ``end - committed``
  (at least 0); a partition the group has never committed counts whole
  (``end``: the group would start from the earliest offset);
- ``kafka/<topic>/partitions``: the partition count (a consumer beyond it is
  idle: the policy caps the signal's count there).

The rate is forecast like any series; the policy decides on
``max(forecast rate / capacityPerReplica, lag / lagThreshold)`` capped at the
partitions (:func:`scaler.policy.consumer_lag`).

The embedded broker's quirk: it reports a partition's end offset as the first
offset of its newest record batch + 1, not the offset after the last record,
so a producer that batches (several records per produce request) makes both
the rate and the lag read low by up to one batch per partition, until the next
batch. A real Kafka reports the offset after the last record.

>>> s = OffsetSampler()
>>> s.points(100.0, "orders", {"billing"}, {0: 40, 1: 60}, {"billing": {0: 30, 1: None}})
[('kafka/orders/lag/billing', 100.0, 70.0), ('kafka/orders/partitions', 100.0, 2.0)]
>>> s.points(110.0, "orders", {"billing"}, {0: 90, 1: 110}, {"billing": {0: 80, 1: 100}})[0]
('kafka/orders/rate', 110.0, 10.0)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scaler.spec import KafkaTopicSource, ScalerSpec, kafka_topic_series, load_specs
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
            out.append((kafka_topic_series(topic, "")[0], ts, (total - before[1]) / (ts - before[0])))
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

    A group's committed offsets are read by a consumer of that ``group_id``
    that never subscribes (so it never joins the group nor disturbs its
    members) and never commits: one per group, kept between samples.
    """

    def __init__(self, bootstrap_servers: str, **client: Any) -> None:
        #: connection settings (TLS, SASL) of every client, as :func:`streams.kafka_config.client_kwargs`
        self.client = {**client, "bootstrap_servers": bootstrap_servers}
        self._consumer: Any = None
        self._groups: dict[str, Any] = {}

    @property
    def started(self) -> bool:
        return self._consumer is not None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        self._consumer = AIOKafkaConsumer(enable_auto_commit=False, **self.client)
        await self._consumer.start()

    async def stop(self) -> None:
        for c in [self._consumer, *self._groups.values()]:
            if c is not None:
                await c.stop()
        self._consumer, self._groups = None, {}

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Partition -> end offset (empty if the topic does not exist)."""
        from aiokafka.structs import TopicPartition

        await self._consumer.topics()  # refresh the metadata
        parts = self._consumer.partitions_for_topic(topic) or set()
        if not parts:
            return {}
        ends = await self._consumer.end_offsets([TopicPartition(topic, p) for p in sorted(parts)])
        return {tp.partition: int(o) for tp, o in ends.items()}

    async def committed(self, group: str, topic: str, partitions: Iterable[int]) -> dict[int, int | None]:
        """Partition -> the group's committed offset on ``topic`` (None: never committed)."""
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition

        c = self._groups.get(group)
        if c is None:
            c = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **self.client)
            await c.start()
            self._groups[group] = c
        out: dict[int, int | None] = {}
        for p in partitions:
            o = await c.committed(TopicPartition(topic, p))
            out[p] = int(o) if o is not None and o >= 0 else None
        return out


async def sample(reader: KafkaOffsets, sampler: OffsetSampler, sources: Mapping[str, set[str]],
                 ts: float) -> list[tuple[str, float, float]]:
    """One sample of every topic and group; a topic that cannot be read is logged and skipped
    (its series go quiet, so the policy holds: never a scale-down on missing data)."""
    out: list[tuple[str, float, float]] = []
    for topic, groups in sorted(sources.items()):
        try:
            ends = await reader.end_offsets(topic)
            committed = {g: await reader.committed(g, topic, ends) for g in groups}
        except Exception as exc:  # noqa: BLE001 - one topic never stops the others
            log.warning("kafka signal: cannot read the offsets of %s: %s", topic, exc)
            continue
        if not ends:
            log.warning("kafka signal: topic %s has no partitions (does it exist?)", topic)
            continue
        out += sampler.points(ts, topic, groups, ends, committed)
    return out
