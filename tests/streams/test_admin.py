"""streams.admin: topics created with the replication the settings (or the cluster) ask for,
checked on the real embedded broker."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from streams import kafka_config
from streams.admin import Replication, TopicCreationError, ensure_topics, replication
from streams.settings import Settings
from streams.topics import Topics


def describe_topics(settings: Settings, names: list[str]) -> dict[str, dict[str, Any]]:
    """Per topic: its replica count per partition and its min.insync.replicas, as the broker reports them."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async def run() -> dict[str, dict[str, Any]]:
        admin = AIOKafkaAdminClient(**kafka_config.client_kwargs(settings), request_timeout_ms=10000)
        await admin.start()
        try:
            out: dict[str, dict[str, Any]] = {}
            for t in await admin.describe_topics(names):
                out[t["topic"]] = {"replicas": sorted({len(p["replicas"]) for p in t["partitions"]}),
                                   "partitions": len(t["partitions"])}
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
            for r in responses:
                for res in r.resources:
                    configs = {e[0]: e[1] for e in res[4]}
                    out.setdefault(res[3], {})["min.insync.replicas"] = configs.get("min.insync.replicas")
            return out
        finally:
            await admin.close()

    return asyncio.run(run())


def topic_names(settings: Settings) -> set[str]:
    """The cluster's topics (a metadata request for all topics: none is auto-created by asking)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> set[str]:
        admin = AIOKafkaAdminClient(**kafka_config.client_kwargs(settings), request_timeout_ms=10000)
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(run())


def test_default_replication_is_one_on_a_single_broker(broker, prefix):
    settings = Settings(broker=broker, topic_prefix=prefix)
    names = Topics.from_settings(settings).all()
    assert ensure_topics(settings, names, 2) == Replication(factor=1, min_insync=1)
    found = describe_topics(settings, names)
    for name in names:
        assert found[name] == {"replicas": [1], "partitions": 2, "min.insync.replicas": "1"}, name


def test_configured_replication_and_min_insync_reach_every_topic(broker, prefix):
    # Tansu keeps the requested factor (one broker, three replica entries); Apache Kafka refuses a
    # factor above its broker count, which ensure_topics reports (streams.admin.refusals; Tansu
    # refuses nothing, so that path is covered by its doctest only)
    settings = Settings(broker=broker, topic_prefix=prefix, replication_factor=3, min_insync_replicas=2)
    names = Topics.from_settings(settings).all()
    assert ensure_topics(settings, names, 4) == Replication(factor=3, min_insync=2)
    found = describe_topics(settings, names)
    for name in names:
        assert found[name] == {"replicas": [3], "partitions": 4, "min.insync.replicas": "2"}, name


def test_min_insync_defaults_to_two_below_the_factor(broker, prefix):
    settings = Settings(broker=broker, topic_prefix=prefix, replication_factor=2)
    name = f"{prefix}.events"
    assert ensure_topics(settings, [name], 1) == Replication(factor=2, min_insync=2)
    assert describe_topics(settings, [name])[name]["min.insync.replicas"] == "2"


def test_existing_topics_are_left_alone_with_a_warning_if_under_replicated(broker, prefix, caplog):
    name = f"{prefix}.events"
    ensure_topics(Settings(broker=broker), [name], 2)
    with caplog.at_level(logging.WARNING, logger="foresight.admin"):
        ensure_topics(Settings(broker=broker, replication_factor=3), [name], 4)
    assert describe_topics(Settings(broker=broker), [name])[name] == {
        "replicas": [1], "partitions": 2, "min.insync.replicas": "1"}
    assert f"1 existing topic(s) have fewer replicas than the 3 asked for, e.g. {name} (1)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="foresight.admin"):
        ensure_topics(Settings(broker=broker), [name], 2)  # as asked: nothing to say
    assert caplog.text == ""


def test_more_in_sync_replicas_than_the_cluster_can_hold_is_refused_before_any_topic(broker, prefix):
    settings = Settings(broker=broker, min_insync_replicas=2)  # one broker: one replica by default
    with pytest.raises(TopicCreationError, match=r"MIN_INSYNC_REPLICAS of 2 is more than the 1 replica\(s\) "
                                                 r"of a cluster of 1 broker\(s\)"):
        ensure_topics(settings, [f"{prefix}.events"], 1)
    assert f"{prefix}.events" not in topic_names(Settings(broker=broker)), "nothing was created"


def test_replication_follows_the_cluster_size():
    assert [replication(Settings(), n).factor for n in (1, 2, 3, 7)] == [1, 2, 3, 3]
    assert [replication(Settings(), n).min_insync for n in (1, 2, 3, 7)] == [1, 2, 2, 2]
    assert replication(Settings(replication_factor=5, min_insync_replicas=3), 1) == Replication(5, 3)


def test_min_insync_above_the_factor_is_reported():
    problems = Settings(replication_factor=2, min_insync_replicas=3).problems()
    assert problems == ["--min-insync-replicas / FORESIGHT_MIN_INSYNC_REPLICAS of 3 is more than the "
                        "replication factor 2: no write could ever succeed"]
