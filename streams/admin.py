"""Topic administration: create the topics Foresight uses, with their partitions, replication
factor and ``min.insync.replicas``.

The replication a cluster gets is decided once, by :func:`replication`, and the
same numbers go to Faust for its changelog topics (see ``streams.worker.context``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams import kafka_config
from streams.settings import Settings

log = logging.getLogger("foresight.admin")

#: Kafka's error code for a topic that exists already (another process created it first)
TOPIC_ALREADY_EXISTS = 36


class TopicCreationError(RuntimeError):
    """The broker refused to create a topic (e.g. a replication factor above its broker count)."""


@dataclass(frozen=True, slots=True)
class Replication:
    """Replicas per partition and ``min.insync.replicas`` of the topics Foresight creates."""

    factor: int
    min_insync: int

    def topic_configs(self) -> dict[str, str]:
        return {"min.insync.replicas": str(self.min_insync)}


def replication(settings: Settings, brokers: int) -> Replication:
    """The replication for a cluster of ``brokers``: the settings, or by default
    min(3, brokers) replicas and min(2, replicas) in sync, so that losing one broker
    neither loses data nor blocks writes (``acks=all``).

    >>> replication(Settings(), brokers=1), replication(Settings(), brokers=5)
    (Replication(factor=1, min_insync=1), Replication(factor=3, min_insync=2))
    >>> replication(Settings(replication_factor=2), brokers=5)
    Replication(factor=2, min_insync=2)
    >>> replication(Settings(replication_factor=3, min_insync_replicas=1), brokers=3)
    Replication(factor=3, min_insync=1)
    """
    factor = settings.replication_factor or max(1, min(3, brokers))
    return Replication(factor, settings.min_insync_replicas or min(2, factor))


def refusals(topic_errors: list[tuple[Any, ...]]) -> list[tuple[str, int, str | None]]:
    """The topics a CreateTopics response refused: (name, error code, message); a topic that
    exists already (another process was first) is no refusal.

    >>> refusals([("a", 0, None), ("b", 36, "Topic with this name already exists."),
    ...           ("c", 38, "Replication factor: 3 larger than available brokers: 1.")])
    [('c', 38, 'Replication factor: 3 larger than available brokers: 1.')]
    >>> refusals([("d", 37)])  # CreateTopics v0 has no message
    [('d', 37, None)]
    """
    return [(t[0], t[1], t[2] if len(t) > 2 else None) for t in topic_errors
            if t[1] not in (0, TOPIC_ALREADY_EXISTS)]


def under_replicated(described: list[dict[str, Any]], factor: int) -> list[tuple[str, int]]:
    """(topic, fewest replicas of its partitions) of the described topics below ``factor``.

    >>> under_replicated([{"topic": "a", "partitions": [{"replicas": [1]}, {"replicas": [1, 2]}]},
    ...                   {"topic": "b", "partitions": [{"replicas": [1, 2, 3]}]}], 3)
    [('a', 1)]
    """
    out = []
    for t in described:
        fewest = min((len(p.get("replicas") or ()) for p in t.get("partitions") or ()), default=factor)
        if fewest < factor:
            out.append((t["topic"], fewest))
    return out


def _settings(target: Settings | str) -> Settings:
    return target if isinstance(target, Settings) else Settings(broker=target)


async def ensure_topics_async(target: Settings | str, names: list[str], partitions: int) -> Replication:
    """Create the missing topics among ``names`` (existing ones are left alone) and return
    the replication they were (or would have been) created with.

    ``target`` is the settings (broker, security, replication) or a bare bootstrap address
    (PLAINTEXT, default replication)."""
    settings = _settings(target)
    admin = AIOKafkaAdminClient(**kafka_config.client_kwargs(settings), request_timeout_ms=10000)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        rep = replication(settings, len(cluster.get("brokers") or ()))
        if rep.min_insync > rep.factor:
            raise TopicCreationError(
                f"--min-insync-replicas / FORESIGHT_MIN_INSYNC_REPLICAS of {rep.min_insync} is more than the "
                f"{rep.factor} replica(s) of a cluster of {len(cluster.get('brokers') or ())} broker(s): no write "
                "could ever succeed; lower it or set --replication-factor")
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        present = [n for n in names if n in existing]
        if present:
            fewer = under_replicated(await admin.describe_topics(present), rep.factor)
            if fewer:
                log.warning("%d existing topic(s) have fewer replicas than the %d asked for, e.g. %s "
                            "(%d); existing topics are left as they are: raise their replication with "
                            "Kafka's own tools (kafka-reassign-partitions)", len(fewer), rep.factor,
                            fewer[0][0], fewer[0][1])
        if missing:
            response = await admin.create_topics(
                [NewTopic(n, num_partitions=partitions, replication_factor=rep.factor,
                          topic_configs=rep.topic_configs()) for n in missing])
            refused = refusals(response.topic_errors)
            if refused:
                name, code, message = refused[0]
                raise TopicCreationError(
                    f"the broker at {settings.broker} refused to create {len(refused)} topic(s), e.g. "
                    f"{name} (error {code}: {message or 'no message'}) with replication factor "
                    f"{rep.factor} and min.insync.replicas {rep.min_insync} on {len(cluster.get('brokers') or ())} "
                    "broker(s); check --replication-factor / FORESIGHT_REPLICATION_FACTOR and "
                    "--min-insync-replicas")
        log.info("%s, %d broker(s): replication factor %d, min.insync.replicas %d; %d of %d topics created "
                 "(%d partitions)", kafka_config.describe(settings), len(cluster.get("brokers") or ()),
                 rep.factor, rep.min_insync, len(missing), len(names), partitions)
        return rep
    finally:
        await admin.close()


def ensure_topics(target: Settings | str, names: list[str], partitions: int) -> Replication:
    """Create the missing topics among ``names`` (existing ones are left alone); see
    :func:`ensure_topics_async`."""
    return asyncio.run(ensure_topics_async(target, names, partitions))


def with_replication(settings: Settings, rep: Replication) -> Settings:
    """``settings`` with the replication decided for the cluster written in, so that every
    part of the process (Faust's changelog topics too) uses the same numbers."""
    return settings.replace(replication_factor=rep.factor, min_insync_replicas=rep.min_insync)
