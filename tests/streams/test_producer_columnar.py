"""Columnar input batches through the worker (real embedded broker): the producer helper's
columnar=True gives the row format's points, and a columnar batch's bad and late elements are
dead-lettered as the row objects they stand for."""

from __future__ import annotations

import base64

import orjson
import pytest

from streams.admin import ensure_topics
from streams.producer import AggregatingProducer
from streams.records import ROWS_AS_COLUMNS
from streams.settings import Settings
from streams.topics import Topics
from tests.conftest import read_topic, send_raw

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0  # a multiple of 10
WINDOW = 10.0


def test_columnar_producer_windows_as_rows(broker, prefix, start_worker):
    start_worker(prefix, FORESIGHT_WINDOW_SECONDS="10")
    settings = Settings(topic_prefix=prefix, broker=broker)
    series = [f"svc{i}/req" for i in range(30)]
    windows = 12
    with AggregatingProducer(broker, interval=1.0, flush_every=0, settings=settings, columnar=True) as p:
        for w in range(windows):
            for s in range(10):
                for i, name in enumerate(series):
                    p.record_event(name, T0 + w * WINDOW + s, count=i + w)
                p.record_metric("svc0/cpu", 2.0 + (s % 2), T0 + w * WINDOW + s)
            p.flush()
    closed = windows - 3
    points = read_topic(broker, f"{prefix}.points",
                        lambda ms: len({(m["series"], m["start"]) for m in ms}) >= closed * (len(series) + 1))
    got = {(m["series"], m["start"]): m for m in points}
    assert len(got) == len(points), "one point per window"
    for i, name in enumerate(series):
        for w in range(closed):
            m = got[(name, T0 + w * WINDOW)]
            assert (m["count"], m["value"]) == (10 * (i + w), i + w)
    assert all(got[("svc0/cpu", T0 + w * WINDOW)]["value"] == 2.5 for w in range(closed))


def test_a_columnar_batch_dead_letters_its_bad_and_late_elements_as_rows(broker, prefix, start_worker):
    start_worker(prefix, FORESIGHT_WINDOW_SECONDS="10")
    topic = f"{prefix}.events"
    # one series on one partition (keyed): 60 seconds of events move its time on
    good = {"series": ["svc/ok"] * 60, "ts": [T0 + s for s in range(60)], "interval": 1.0,
            "count": [2] * 60}
    send_raw(broker, topic, [(b"svc/ok", orjson.dumps(good))])
    # then a batch with a bad count, a bad series, a late element and a good one
    mixed = {"series": ["svc/ok", "bad\nid", "svc/ok", "svc/ok"], "ts": [T0 + 61, T0 + 61, T0 + 3, T0 + 62],
             "interval": 1.0, "count": [-1, 1, 5, 4]}
    send_raw(broker, topic, [(b"svc/ok", orjson.dumps(mixed)),
                             (b"svc/ok", b'{"series": ["svc/ok"], "ts": [1, 2], "count": [1]}')])
    dlq = read_topic(broker, f"{topic}.dlq", lambda ms: len(ms) >= 2)
    by_count = sorted(dlq, key=lambda m: m["count"])
    whole, mixed_dl = by_count
    assert whole["reason"] == "bad_type" and whole["count"] == 1
    assert mixed_dl["count"] == 3 and mixed_dl["ranges"] == [[0, 2]]
    assert "bad_value" in mixed_dl["error"] and "bad_series" in mixed_dl["error"] and "late" in mixed_dl["error"]
    rows = orjson.loads(base64.b64decode(mixed_dl["raw_b64"]))
    assert [r["ts"] for r in rows] == [T0 + 61, T0 + 61, T0 + 3], "the bad elements, as row objects"
    # the series' time is at T0 + 62: with two windows of lateness, the windows up to T0 + 30 close
    points = read_topic(broker, f"{prefix}.points", lambda ms: any(m["start"] == T0 + 30 for m in ms))
    first = {m["start"]: m["count"] for m in points}
    assert T0 + 30 in first, "the windows the batches closed were published"
    assert first[T0] == 20, "the late element is not merged"


def test_rows_amid_columnar_batches_window_and_dead_letter_as_rows(broker, prefix, start_worker):
    """A short row-format array and a single object between columnar batches (in one fetch:
    sent before the worker starts) are windowed with them: their late elements are dead-lettered
    as the rows' path does (the array's bad element; the single object whole), the rest merged."""
    settings = Settings(topic_prefix=prefix, broker=broker)
    ensure_topics(settings, Topics.from_settings(settings).all(), settings.partitions)
    topic = f"{prefix}.events"
    key = b"svc/ok"

    def columnar(first: int, last: int) -> bytes:
        secs = range(first, last)
        return orjson.dumps({"series": ["svc/ok"] * len(secs), "ts": [T0 + s for s in secs],
                             "interval": 1.0, "count": [2] * len(secs)})

    short = [{"series": "svc/ok", "ts": T0 + 61, "interval": 1.0, "count": 2},
             {"series": "svc/ok", "ts": T0 + 4, "interval": 1.0, "count": 5}]  # late
    assert len(short) < ROWS_AS_COLUMNS
    one = {"series": "svc/ok", "ts": T0 + 5, "count": 7}  # late
    send_raw(broker, topic, [(key, columnar(0, 61)), (key, orjson.dumps(short)), (key, columnar(62, 70)),
                             (key, orjson.dumps(one)), (key, columnar(70, 80))])
    start_worker(prefix, FORESIGHT_WINDOW_SECONDS="10")
    dlq = read_topic(broker, f"{topic}.dlq", lambda ms: len(ms) >= 2)
    by_offset = sorted(dlq, key=lambda m: m["offset"])
    assert [(m["offset"], m["reason"], m["count"]) for m in by_offset] == [(1, "late", 1), (3, "late", 1)]
    assert by_offset[0]["ranges"] == [[1, 1]]
    assert orjson.loads(base64.b64decode(by_offset[0]["raw_b64"])) == [short[1]]
    assert orjson.loads(base64.b64decode(by_offset[1]["raw_b64"])) == one, "the single object, whole"
    # the series' time is at T0 + 79: with two windows of lateness, the windows up to T0 + 40 close
    points = read_topic(broker, f"{prefix}.points", lambda ms: any(m["start"] == T0 + 40 for m in ms))
    got = {m["start"]: m["count"] for m in points}
    assert [got[T0 + w * WINDOW] for w in range(5)] == [20] * 5, "no late element merged"
