from __future__ import annotations

import math

import pytest

from streams.records import Aggregate, InvalidRecord
from streams.windowing import Windower


def agg(series, ts, count=1, value=None, interval=1.0):
    v = 0.0 if value is None else value
    return Aggregate(series, ts, interval, count, v * count, v if value is not None else math.inf,
                     v if value is not None else -math.inf)


def test_event_rate_and_metric_mean_per_window():
    w = Windower(step=10, lateness_windows=2)
    for s in range(30):
        w.add(agg("e", 100 + s, count=3), "events")
        w.add(agg("m", 100 + s, value=float(s % 10)), "metrics")
    w.add(agg("e", 160), "events")  # watermark 160: closes [100,110) .. [130,140)
    pts = {(p.series, p.start): p for p in w.close_ready()}
    # "e" had no events in [130, 140): a zero rate; "m" had no samples: no point
    assert sorted(pts) == [("e", t) for t in (100.0, 110.0, 120.0, 130.0)] + [
        ("m", t) for t in (100.0, 110.0, 120.0)]
    assert pts[("e", 130.0)].value == 0.0 and pts[("e", 130.0)].count == 0
    assert pts[("e", 100.0)].value == 3.0 and pts[("e", 100.0)].count == 30
    assert pts[("m", 110.0)].value == pytest.approx(4.5)
    assert pts[("m", 110.0)].min == 0.0 and pts[("m", 110.0)].max == 9.0
    assert w.close_ready() == [], "windows close once"


def test_late_aggregate_rejected_not_merged():
    w = Windower(step=10, lateness_windows=2)
    w.add(agg("e", 5), "events")
    w.add(agg("e", 29), "events")
    w.add(agg("e", 12), "events")  # still open: within lateness
    w.add(agg("e", 30), "events")
    closed = w.close_ready()
    assert [(p.start, p.count) for p in closed] == [(0.0, 1)]
    with pytest.raises(InvalidRecord) as e:
        w.add(agg("e", 9), "events")
    assert e.value.reason == "late"


def test_interval_longer_than_window_rejected():
    w = Windower(step=10)
    with pytest.raises(InvalidRecord) as e:
        w.add(agg("e", 0, interval=60), "events")
    assert e.value.reason == "bad_value"


def test_quiet_event_series_get_zero_rate_points_for_a_bounded_time():
    from streams.windowing import GAP_FILL_WINDOWS

    w = Windower(step=10, lateness_windows=0)
    w.add(agg("e", 0, count=5), "events")
    w.add(agg("m", 0, value=1.0), "metrics")
    w.add(agg("other", 45), "events")  # watermark 45: windows 0..30 close
    pts = [(p.series, p.start, p.value) for p in w.close_ready()]
    assert ("e", 0.0, 0.5) in pts
    assert [(s, v) for s, t, v in pts if s == "e" and t > 0] == [("e", 0.0)] * 3, "zeros for 10, 20, 30"
    assert not [p for p in pts if p[0] == "m" and p[1] > 0], "metric series are not filled"
    w.add(agg("other", 10 * (GAP_FILL_WINDOWS + 10)), "events")
    later = [p for p in w.close_ready() if p.series == "e"]
    assert len(later) == GAP_FILL_WINDOWS - 3 and all(p.count == 0 for p in later)
    assert max(p.start for p in later) == 10 * GAP_FILL_WINDOWS
