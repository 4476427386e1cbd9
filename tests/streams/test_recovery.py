"""A worker killed with SIGKILL mid-stream: its successor loses nothing it had accepted.

Open windows are rebuilt by re-reading input that was never acknowledged;
models come back, warm, from the signed checkpoints in the changelog-backed
table.
"""

from __future__ import annotations

import signal

import pytest

from streams.producer import AggregatingProducer
from streams.settings import Settings
from tests.conftest import read_topic

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0
WINDOW = 10.0


def level(w: int) -> int:
    return 40 + (w % 12) * 5  # events per second in window w: a 12-window cycle


def produce(broker: str, prefix: str, first: int, last: int) -> None:
    settings = Settings(topic_prefix=prefix)
    with AggregatingProducer(broker, interval=1.0, flush_every=0, settings=settings) as p:
        for w in range(first, last):
            for s in range(10):
                p.record_event("svc/a", T0 + w * WINDOW + s, count=level(w))
            p.flush()


def test_sigkilled_worker_is_replaced_without_losing_windows_or_models(broker, prefix, start_worker):
    env = dict(FORESIGHT_WINDOW_SECONDS="10", FORESIGHT_PERIOD_STEPS="12", FORESIGHT_HORIZON_STEPS="3",
               FORESIGHT_CHECKPOINT_EVERY="5")
    a = start_worker(prefix, **env)
    produce(broker, prefix, 0, 60)
    read_topic(broker, f"{prefix}.forecasts", lambda ms: len(ms) >= 50)
    a.stop(signal.SIGKILL)

    produce(broker, prefix, 60, 100)
    b = start_worker(prefix, **env)
    closed = 97  # windows 0..96 close once the watermark is in window 99
    points = read_topic(broker, f"{prefix}.points",
                        lambda ms: {m["start"] for m in ms} >= {T0 + w * WINDOW for w in range(closed)},
                        timeout=120)
    starts = {m["start"] for m in points}
    missing = [w for w in range(closed) if T0 + w * WINDOW not in starts]
    assert not missing, f"windows lost across the crash: {missing}"
    for m in points:  # duplicates are allowed (at-least-once), partial windows are not
        w = int((m["start"] - T0) / WINDOW)
        assert m["count"] == level(w) * 10, f"window {w} has {m['count']} events, not {level(w) * 10}"

    forecasts = read_topic(broker, f"{prefix}.forecasts",
                           lambda ms: any(m["issued"] >= T0 + 96 * WINDOW for m in ms), timeout=120)
    after = [m for m in forecasts if m["issued"] >= T0 + 60 * WINDOW]
    assert after, "the new worker published forecasts"
    assert all(m["warm"] for m in after), "the successor's forecasts are warm"
    metrics = _get(f"http://127.0.0.1:{b.port}/metrics")
    assert "foresight_restored_checkpoints_total 1.0" in metrics, "the model came back from its checkpoint"
    assert "foresight_untrusted_checkpoints_total 0.0" in metrics


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback test server
        return r.read().decode()
