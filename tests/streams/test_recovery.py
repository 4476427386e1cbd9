"""A worker killed with SIGKILL mid-stream: its successor loses nothing it had accepted.

Open windows are rebuilt by re-reading input that was never acknowledged;
models come back, warm, from the signed checkpoints in the changelog-backed
table.
"""

from __future__ import annotations

import signal

import orjson
import pytest

from streams.admin import ensure_topics
from streams.producer import AggregatingProducer
from streams.records import Point
from streams.settings import Settings
from streams.topics import Topics
from streams.web import partition_for
from tests.conftest import read_topic
from tests.streams.test_model_bank import committed_all, metric
from tests.waiting import wait_for

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
    # its checkpoints are written off the forecasts' path (once the model agent is idle)
    assert wait_for(lambda: metric(a.port, "foresight_checkpoints_total") >= 1, 30)
    a.stop(signal.SIGKILL)

    produce(broker, prefix, 60, 100)
    b = start_worker(prefix, **env)
    assert wait_for(lambda: metric(b.port, "foresight_tables_ready") == 1, 60), "its tables read back"
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


def test_windows_the_next_owner_publishes_again_are_not_learnt_again(broker, prefix, start_worker):
    """A takeover: the input's next owner re-reads from the committed offset, which an open window
    holds back, and publishes again windows the old owner had published; the series' model, restored
    from its checkpoint, has learnt them and does not learn them again: it carries on as the model
    of a worker that never handed over (each window learnt once), forecast for forecast.

    ``batch/y`` opens a window and goes quiet (its producer's clock stalls), which keeps the
    input partition's committed offset below it, while ``svc/x`` on the same partition closes and
    learns 38 windows after it."""
    from tests.streams.test_app import send as send_to
    from tests.streams.test_model_bank import ENV, forecasts_of, metric, reference, same

    x, y = "svc/x", "batch/y"
    part = partition_for(x, Settings().partitions)
    assert partition_for(y, Settings().partitions) == part
    ensure_topics(broker, Topics.from_settings(Settings(topic_prefix=prefix)).all(), Settings().partitions)

    def send(series: str, windows: range, count: int | None = None) -> None:
        """One aggregate a window, in order: ``count`` events, or the level of the window's."""
        send_to(broker, f"{prefix}.events", [orjson.dumps({
            "series": series, "ts": T0 + w * WINDOW + 1, "interval": 1.0,
            "count": level(w) * 10 if count is None else count}) for w in windows], part, series.encode())

    a = start_worker(prefix, **ENV)
    send(y, range(1), count=1)
    send(x, range(41))  # x's windows 0..37 close (its newest is 40)
    done = [Point(x, T0 + w * WINDOW, T0 + (w + 1) * WINDOW, 1, 0, 0, 0, 0) for w in range(38)]
    assert len(forecasts_of(broker, prefix, done, timeout=120)) == len(done)
    assert wait_for(lambda: committed_all(broker, f"{prefix}-app", f"{prefix}.points"), 60)
    a.stop(signal.SIGTERM)

    send(y, range(39, 40), count=1)
    send(x, range(41, 51))  # x's windows 38..47 close
    b = start_worker(prefix, **ENV)
    ms = read_topic(broker, f"{prefix}.points",
                    lambda ms: {m["start"] for m in ms if m["series"] == x} >= {T0 + w * WINDOW for w in range(48)},
                    timeout=120)
    xs = [m for m in ms if m["series"] == x]
    by_start = {m["start"]: m for m in xs}
    assert len(xs) - len(by_start) == len(done), "the takeover published x's windows 0..37 again"
    assert all(m["value"] == by_start[m["start"]]["value"] for m in xs)
    pts = [Point.from_json(by_start[s]) for s in sorted(by_start)]
    want = reference(pts)
    got = forecasts_of(broker, prefix, pts, timeout=120)
    mine = {k: v for k, v in got.items() if k[0] == x}
    assert set(mine) == {(x, p.start) for p in pts}
    wrong = sorted(int((t - T0) / WINDOW) for (_, t), v in mine.items() if not all(same(m, want[(x, t)]) for m in v))
    assert not wrong, f"forecasts unlike a model that learnt each window once, windows {wrong}"
    twice = sorted(w for (_, t), v in mine.items() if len(v) > 1 for w in [int((t - T0) / WINDOW)])
    assert not twice, f"windows learnt again (their forecasts published again): {twice}"
    assert metric(b.port, "foresight_points_relearn_skipped_total") == len(done)
    assert metric(b.port, "foresight_restored_checkpoints_total") >= 1
    series = orjson.loads(_get(f"http://127.0.0.1:{b.port}/api/series/svc%2Fx"))
    assert series["points_learnt"] == len(pts), "x's model learnt each of its windows once"
