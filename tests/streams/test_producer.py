from __future__ import annotations

import orjson
import pytest
from kafka.partitioner.default import murmur2

from streams.admin import ensure_topics
from streams.producer import AggregatingProducer
from streams.settings import Settings
from streams.topics import Topics
from tests.conftest import read_topic

pytestmark = pytest.mark.integration


def test_aggregates_per_series_per_interval_and_loses_nothing(broker, prefix):
    settings = Settings(topic_prefix=prefix)
    topics = Topics.from_settings(settings)
    ensure_topics(broker, topics.all(), 4)
    series = [f"svc{i}/requests" for i in range(40)]
    with AggregatingProducer(broker, interval=1.0, flush_every=0.05, settings=settings) as p:
        for t in range(5):
            for s in series:
                for _ in range(25):
                    p.record_event(s, 1000.0 + t + 0.5)
        p.record_metric("svc0/cpu", 0.25, 1000.0)
        p.record_metric("svc0/cpu", 0.75, 1000.2)
    # closing flushed everything: 40 series x 5 intervals x 25 events
    msgs = read_topic(broker, topics.events, lambda ms: sum(
        m["count"] for batch in ms for m in (batch if isinstance(batch, list) else [batch])) >= 5000,
        split=False)
    aggs = [a for m in msgs for a in (m if isinstance(m, list) else [m])]
    assert sum(a["count"] for a in aggs) == 5000
    assert len(msgs) < len(aggs), "several series' aggregates share a message"
    per = {}
    for a in aggs:
        per[(a["series"], a["ts"])] = per.get((a["series"], a["ts"]), 0) + a["count"]
    assert set(per.values()) == {25}
    cpu = read_topic(broker, topics.metrics, lambda ms: len(ms) >= 1)
    (m,) = cpu
    assert (m["count"], m["sum"], m["min"], m["max"]) == (2, 1.0, 0.25, 0.75)


def test_batches_respect_the_series_partition(broker, prefix):
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    settings = Settings(topic_prefix=prefix)
    topics = Topics.from_settings(settings)
    ensure_topics(broker, topics.all(), 4)
    with AggregatingProducer(broker, flush_every=0, settings=settings) as p:
        for i in range(100):
            p.record_event(f"s{i}", 5.0)

    async def read():
        c = AIOKafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        c.assign([TopicPartition(topics.events, q) for q in range(4)])
        seen = []
        for _ in range(20):
            for tp, ms in (await c.getmany(timeout_ms=300)).items():
                seen += [(tp.partition, m.value) for m in ms]
            if sum(len(v if isinstance(v := orjson.loads(raw), list) else [v]) for _, raw in seen) >= 100:
                break
        await c.stop()
        return seen

    for part, raw in asyncio.run(read()):
        body = orjson.loads(raw)
        for a in body if isinstance(body, list) else [body]:
            assert (murmur2(a["series"].encode()) & 0x7FFFFFFF) % 4 == part
