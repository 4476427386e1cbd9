"""The internal topics carry many series per message (issue 14, item 1), against the real broker.

The window agent publishes one ``points`` message per partition per flush, the
model agent one ``forecasts`` message per ``points`` message; the model agent
still reads single-record points, and one bad point of a batch is the batch's
only dead-letter element.
"""

from __future__ import annotations

import base64

import orjson
import pytest

from streams import records
from streams.web import partition_for
from tests.conftest import read_topic
from tests.streams.test_app import T0, send
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def raw_messages(broker: str, topic: str, until, timeout: float = 60) -> list[bytes]:
    """Every message of ``topic`` as sent (batches not flattened)."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, auto_offset_reset="earliest")
    out: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        parts = wait_for(lambda: c.partitions_for_topic(topic), timeout)
        c.assign([TopicPartition(topic, p) for p in parts or ()])
        while time.monotonic() < deadline and not until(out):
            for msgs in c.poll(timeout_ms=300).values():
                out.extend(m.value for m in msgs)
    finally:
        c.close()
    return out


def test_points_and_forecasts_are_batched_per_partition(broker, prefix, start_worker):
    start_worker(prefix)
    series = [f"svc/{i}" for i in range(40)]
    part = 1
    # every series on one input partition, as one producer batch per second
    send(broker, f"{prefix}.events", [orjson.dumps([{"series": s, "ts": T0 + t, "interval": 1.0, "count": 2}
                                                     for s in series]) for t in range(45)], partition=part)

    def points(msgs: list[bytes]) -> list[records.Point]:
        return [p for m in msgs for p in records.parse_points(m).items]

    want = {(s, T0 + 10 * w) for s in series for w in range(2)}
    msgs = raw_messages(broker, f"{prefix}.points",
                        lambda ms: want <= {(p.series, p.start) for p in points(ms)})
    got = points(msgs)
    assert want <= {(p.series, p.start) for p in got}
    assert all(p.count == 20 for p in got if p.start < T0 + 20), "complete windows"
    assert len(msgs) < len(got) / 5, f"{len(msgs)} messages for {len(got)} points: batched"
    for m in msgs:  # a message holds the series of its own partition (as if keyed by each)
        assert len({partition_for(p.series, 4) for p in records.parse_points(m).items}) == 1

    fcs = raw_messages(broker, f"{prefix}.forecasts",
                       lambda ms: sum(len(records.parse_forecasts(m).items) for m in ms) >= len(want))
    n = sum(len(records.parse_forecasts(m).items) for m in fcs)
    assert n >= len(want) and len(fcs) < n / 5, f"{len(fcs)} forecast messages for {n} forecasts"


def test_the_model_agent_reads_single_records_and_dead_letters_only_bad_points(broker, prefix, start_worker):
    start_worker(prefix)
    single = records.dumps(records.Point("x/one", T0, T0 + 10, 3, 3.0, 1.0, 1.0, 0.3).to_json())
    p2 = partition_for("x/two", 4)
    batch = orjson.dumps([records.Point("x/two", T0, T0 + 10, 5, 5.0, 1.0, 1.0, 0.5).to_json(),
                          {"series": "x/bad", "start": T0}])
    # a columnar batch (what the window agent writes) with a bad point: that point alone is dead
    columnar = orjson.dumps({"series": ["x/three", "x/worse"], "start": T0, "end": T0 + 10,
                             "count": [2, 1], "sum": [2.0, 1.0], "min": [1.0, 1.0], "max": [1.0, 1.0],
                             "value": [0.2, "high"]})
    send(broker, f"{prefix}.points", [single], partition=partition_for("x/one", 4), key=b"x/one")
    send(broker, f"{prefix}.points", [batch], partition=p2, key=b"")
    send(broker, f"{prefix}.points", [columnar], partition=partition_for("x/three", 4), key=b"")
    want = {"x/one", "x/two", "x/three"}
    fcs = read_topic(broker, f"{prefix}.forecasts", lambda ms: {m["series"] for m in ms} >= want)
    assert {m["series"] for m in fcs} == want
    dlq = read_topic(broker, f"{prefix}.points.dlq", lambda ms: len(ms) >= 2)
    assert len(dlq) == 2 and all(d["ranges"] == [[1, 1]] for d in dlq)
    assert sorted(str(d["reasons"]) for d in dlq) == [str({"bad_type": 1}), str({"missing_field": 1})]
    bad, = (orjson.loads(base64.b64decode(d["raw_b64"])) for d in dlq if "bad_type" in d["reasons"])
    assert bad == [{"series": "x/worse", "start": T0, "end": T0 + 10, "count": 1, "sum": 1.0, "min": 1.0,
                    "max": 1.0, "value": "high"}], "the bad point alone, as a single record"
