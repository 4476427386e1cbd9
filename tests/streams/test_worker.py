"""The worker against the real embedded broker: windows, forecasts, anomalies, DLQ."""

from __future__ import annotations

import math

import orjson
import pytest

from streams.producer import AggregatingProducer
from streams.settings import Settings
from tests.conftest import read_topic, send_raw
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0  # a multiple of 10
WINDOW = 10.0


def _produce(broker: str, prefix: str, windows: int, spike_window: int | None = None) -> None:
    settings = Settings(topic_prefix=prefix, broker=broker)
    with AggregatingProducer(broker, interval=1.0, flush_every=0, settings=settings) as p:
        for w in range(windows):
            for s in range(10):
                ts = T0 + w * WINDOW + s
                level = 50 + int(20 * math.sin(2 * math.pi * w / 12))
                p.record_event("svc/a", ts, count=500 if w == spike_window else level)
                p.record_metric("svc/m", 2.0 + (s % 2), ts)  # window mean is exactly 2.5
            if w % 50 == 0:
                p.flush()


def test_windows_forecasts_and_anomalies(broker, prefix, start_worker):
    start_worker(prefix, FORESIGHT_WINDOW_SECONDS="10", FORESIGHT_PERIOD_STEPS="12",
                 FORESIGHT_HORIZON_STEPS="5")
    windows, spike = 420, 400
    _produce(broker, prefix, windows, spike_window=spike)
    # windows close once the watermark passes end + 2 windows of lateness
    closed = windows - 3
    # the two series come from two topics, windowed independently: wait for both
    points = read_topic(broker, f"{prefix}.points",
                        lambda ms: min(sum(m["series"] == s for m in ms) for s in ("svc/a", "svc/m")) >= closed)
    a = sorted((m for m in points if m["series"] == "svc/a"), key=lambda m: m["start"])
    assert len(a) == closed, "one point per closed window, no duplicates"
    assert a[0]["start"] == T0 and a[0]["end"] == T0 + WINDOW
    for i, m in enumerate(a):
        level = 500 if i == spike else 50 + int(20 * math.sin(2 * math.pi * i / 12))
        assert m["count"] == level * 10
        assert m["value"] == pytest.approx(level), "event series value is the rate per second"
    metric = [m for m in points if m["series"] == "svc/m"]
    assert len(metric) == closed and all(m["value"] == pytest.approx(2.5) for m in metric), "metric value is the mean"

    forecasts = read_topic(broker, f"{prefix}.forecasts",
                           lambda ms: sum(m["series"] == "svc/a" for m in ms) >= closed)
    fa = sorted((m for m in forecasts if m["series"] == "svc/a"), key=lambda m: m["issued"])
    assert len(fa) == closed
    last = fa[-1]
    assert len(last["points"]) == 5 and last["points"][0]["ts"] == last["issued"] + WINDOW
    assert all(p["lower"] <= p["yhat"] <= p["upper"] for p in last["points"])
    assert last["warm"] is True, "after hundreds of windows of a clean cycle the model is warm"
    before_spike = [m for m in fa if m["issued"] == T0 + (spike - 1) * WINDOW][0]
    assert before_spike["points"][0]["upper"] < 500, "the spike was not predictable"

    anomalies = read_topic(broker, f"{prefix}.anomalies",
                           lambda ms: any(m["ts"] == T0 + spike * WINDOW for m in ms), timeout=30)
    hit = [m for m in anomalies if m["series"] == "svc/a" and m["ts"] == T0 + spike * WINDOW]
    assert hit, f"the 10x spike was not flagged: {anomalies}"
    assert hit[0]["value"] == 500 and 0 <= hit[0]["score"] <= 1 and hit[0]["score"] >= hit[0]["threshold"]


BAD = [
    (b"malformed_json", b"{not json"),
    (b"missing_field", b'{"ts": 1700000000}'),
    (b"missing_field_ts", b'{"series": "svc/x"}'),
    (b"non_finite", b'{"series": "svc/x", "ts": 1700000000, "value": NaN}'),
    (b"bad_type", b'{"series": "svc/x", "ts": 1700000000, "value": "12"}'),
    (b"bad_timestamp", b'{"series": "svc/x", "ts": "yesterday"}'),
    (b"bad_value", b'{"series": "svc/x", "ts": 1700000000, "count": -3, "interval": 1}'),
]


def test_bad_input_goes_to_dlq_and_worker_keeps_going(broker, prefix, start_worker):
    worker = start_worker(prefix, FORESIGHT_WINDOW_SECONDS="10")
    send_raw(broker, f"{prefix}.events", [(k, v) for k, v in BAD])
    # a batch with one bad element: the good ones are still accepted
    batch = orjson.dumps([
        {"series": "svc/ok", "ts": T0 + 1, "interval": 1.0, "count": 7},
        {"series": "svc/ok", "ts": T0 + 2, "interval": 1.0, "count": "many"},
    ])
    send_raw(broker, f"{prefix}.events", [(b"svc/ok", batch)])  # keyed: same partition
    # then enough good traffic to close windows, then an event for a closed window
    msgs = [(b"svc/ok", orjson.dumps({"series": "svc/ok", "ts": T0 + s})) for s in range(0, 60)]
    send_raw(broker, f"{prefix}.events", msgs)
    send_raw(broker, f"{prefix}.events", [(b"svc/ok", orjson.dumps({"series": "svc/ok", "ts": T0 + 3}))])

    dlq = read_topic(broker, f"{prefix}.events.dlq", lambda ms: len(ms) >= len(BAD) + 2)
    reasons = sorted(m["reason"] for m in dlq)
    assert reasons == sorted(["malformed_json", "missing_field", "missing_field", "non_finite",
                              "bad_type", "bad_timestamp", "bad_value", "bad_type", "late"])
    for m in dlq:
        assert m["topic"] == f"{prefix}.events" and m["error"] and m["raw_b64"]
        assert isinstance(m["offset"], int) and isinstance(m["partition"], int)
    points = read_topic(broker, f"{prefix}.points", lambda ms: len(ms) >= 3)
    first = min((m for m in points if m["series"] == "svc/ok"), key=lambda m: m["start"])
    assert first["start"] == T0 and first["count"] == 10 + 7, "good batch element merged, late one not"
    assert worker.proc.poll() is None, "bad input must never stop the worker"
    # (a window process's counts reach the worker's /metrics in its next report)
    assert wait_for(lambda: "foresight_late_events_total 1.0" in _get(f"http://127.0.0.1:{worker.port}/metrics"), 10)
    metrics = _get(f"http://127.0.0.1:{worker.port}/metrics")
    assert 'foresight_dead_letters_total{reason="late",topic="' in metrics


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback test server
        return r.read().decode()
