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


def test_columnar_batches_carry_the_same_aggregates_on_the_series_partition(broker, prefix):
    """columnar=True: the same aggregates as the row format, as columnar batches (read back by the
    worker's parser), each on its series' partition, several series to a message."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams import records

    settings = Settings(topic_prefix=prefix)
    topics = Topics.from_settings(settings)
    ensure_topics(broker, topics.all(), 4)
    series = [f"svc{i}/requests" for i in range(300)]
    with AggregatingProducer(broker, interval=1.0, flush_every=0, settings=settings, columnar=True) as p:
        for t in range(3):
            for s in series:
                p.record_event(s, 1000.0 + t + 0.5, count=7)
        p.record_metric("svc0/cpu", 0.25, 1000.0)
        p.record_metric("svc0/cpu", 0.75, 1000.2)
    sent = p.sent_messages  # closing flushed everything

    async def read():
        c = AIOKafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        c.assign([TopicPartition(t, q) for t in (topics.events, topics.metrics) for q in range(4)])
        seen = []
        for _ in range(40):
            for tp, ms in (await c.getmany(timeout_ms=300)).items():
                seen += [(tp.topic, tp.partition, m.value) for m in ms]
            if len(seen) >= sent:
                break
        await c.stop()
        return seen

    got: dict[tuple[str, float], int] = {}
    seen = asyncio.run(read())
    assert len(seen) == sent < 300 * 3 / 2, "several series' aggregates share a message"
    for topic, part, raw in seen:
        cols = records.read_input(raw)
        assert isinstance(cols, records.InputColumns) and cols.dead is None
        assert (cols.interval == 1.0).all()
        for s, ts, n in zip(cols.series, cols.ts.tolist(), cols.count.tolist(), strict=True):
            assert (murmur2(s.encode()) & 0x7FFFFFFF) % 4 == part
            if topic == topics.metrics:
                assert (s, n, cols.sum.tolist(), cols.min.tolist(), cols.max.tolist()) == (
                    "svc0/cpu", 2, [1.0], [0.25], [0.75])
            got[(s, ts)] = got.get((s, ts), 0) + n
    assert got == {**{(s, 1000.0 + t): 7 for s in series for t in range(3)}, ("svc0/cpu", 1000.0): 2}


def test_columnar_batches_are_cut_by_size():
    from streams.producer import MAX_COLUMNAR_BATCH, MAX_COLUMNAR_BYTES

    aggs = [{"series": "x" * 1000, "ts": 0.0, "count": 1, "sum": 0.0} for _ in range(300)]
    chunks = AggregatingProducer._columnar_chunks(aggs)
    assert sum(map(len, chunks)) == 300 and len(chunks) > 1
    from streams import records

    assert all(len(records.columnar_message(c, 1.0)) <= MAX_COLUMNAR_BYTES for c in chunks)
    short = [{"series": "s", "ts": 0.0, "count": 1, "sum": 0.0}] * (MAX_COLUMNAR_BATCH + 1)
    assert [len(c) for c in AggregatingProducer._columnar_chunks(short)] == [MAX_COLUMNAR_BATCH, 1]


def test_kafka_python_checksums_record_batches_in_c():
    """kafka-python computes a record batch's CRC32C in pure Python (~3.7 MB/s) unless the
    ``crc32c`` package is installed: the producer helper, backfill and the DLQ tool would spend a
    second of CPU a 4 MB batch. The dependency is there and kafka-python uses it, with the
    checksum Kafka expects (RFC 3720's check value)."""
    from kafka.record import util

    assert util._crc32c is not util.crc32c_py  # what calc_crc32c calls
    assert util.calc_crc32c(b"123456789") == 0xE3069283
