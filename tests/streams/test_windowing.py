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
    w.add(agg("e", 160), "events")  # e's time 160: closes e's [100,110) .. [130,140)
    w.add(agg("m", 150, value=0.0), "metrics")  # m's time 150: closes m's [100,110) .. [120,130)
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


def test_quiet_event_series_get_zero_rate_points_on_the_partitions_progress():
    from streams.windowing import GAP_FILL_WINDOWS

    w = Windower(step=10, lateness_windows=0)
    w.add(agg("e", 0, count=5), "events")
    w.add(agg("m", 0, value=1.0), "metrics")
    for o in ("o1", "o2", "o3"):  # most series are at 45: the partition's progress is 45
        w.add(agg(o, 45), "events")
    pts = [(p.series, p.start, p.value) for p in w.close_ready()]
    assert ("e", 0.0, 0.5) in pts
    assert [(s, v) for s, t, v in pts if s == "e" and t > 0] == [("e", 0.0)] * 3, "zeros for 10, 20, 30"
    assert ("m", 0.0, 1.0) in pts
    assert not [p for p in pts if p[0] == "m" and p[1] > 0], "metric series are not filled"
    for o in ("o1", "o2", "o3"):
        w.add(agg(o, 10 * (GAP_FILL_WINDOWS + 10)), "events")
    later = [p for p in w.close_ready() if p.series == "e"]
    assert len(later) == GAP_FILL_WINDOWS - 3 and all(p.count == 0 for p in later)
    assert max(p.start for p in later) == 10 * GAP_FILL_WINDOWS
    assert "e" not in w.open and "e" not in w.last_data, "a long-quiet series is forgotten"


def test_a_series_that_goes_quiet_is_closed_once_it_stops_counting_as_active():
    from streams.windowing import RECENT_ADDS

    w = Windower(step=10, lateness_windows=1)
    w.add(agg("quiet", 3, count=4), "events")
    closed_at = None
    for i in range(RECENT_ADDS + 100):
        w.add(agg("busy", 3 + i), "events")
        if any(p.series == "quiet" and p.count == 4 for p in w.close_ready()):
            closed_at = i
            break
    assert closed_at is not None, "the quiet series' window never closed"
    assert closed_at <= RECENT_ADDS + 1


def test_one_skewed_clock_affects_only_its_own_series():
    w = Windower(step=10, lateness_windows=2, max_future=600)
    t0 = 1_700_000_000.0
    rejected = []
    for i in range(100):
        for s in ("a", "b", "c", "d"):
            w.add(agg(s, t0 + i), "events")  # none of these may be late or future
        try:
            w.add(agg("skewed", t0 + 3600 + i), "events")
        except InvalidRecord as e:
            rejected.append(e.reason)
    assert rejected == ["future"] * 100
    w.add(agg("skewed", t0 + 99), "events")  # its clock fixed: accepted again
    pts = w.close_ready()
    assert {p.series for p in pts} == {"a", "b", "c", "d"}
    assert all(p.count == 10 for p in pts)


def test_when_most_series_jump_ahead_together_the_typical_time_follows():
    w = Windower(step=10, lateness_windows=2, max_future=600)
    for s in ("a", "b", "c"):
        w.add(agg(s, 1000), "events")
    reasons = []
    for i in range(5):
        for s in ("a", "b", "c"):
            try:
                w.add(agg(s, 9000 + i), "events")
            except InvalidRecord as e:
                reasons.append(e.reason)
    assert reasons == ["future"], "only the first series to jump waits for the others"


def test_a_new_series_behind_the_partition_floor_is_late():
    w = Windower(step=10, lateness_windows=1)
    for t in range(0, 100, 5):
        w.add(agg("a", t), "events")
    with pytest.raises(InvalidRecord) as e:
        w.add(agg("new", 20), "events")
    assert e.value.reason == "late"
    assert w.add(agg("new", 85), "events") == 80.0


def test_an_idle_live_partition_closes_on_the_wall_clock_only_when_live():
    now = 1_700_000_000.0
    w = Windower(step=10, lateness_windows=2, max_future=600)
    w.add(agg("a", now + 1, count=7), "events")
    w.tick(now + 20)
    assert w.close_ready() == []
    w.tick(now + 45)
    pts = w.close_ready()  # [now, now+10) + 2 windows of lateness + 1 of grace
    assert [(p.start, p.count) for p in pts] == [(now, 7)]
    old = Windower(step=10, lateness_windows=2, max_future=600)
    old.add(agg("a", 1000.0, count=7), "events")  # a replay of old data is never closed by the clock
    old.tick(now)
    assert old.close_ready() == []


def test_min_needed_is_the_lowest_offset_held_by_an_open_window():
    w = Windower(step=10, lateness_windows=0)
    assert w.min_needed() is None
    w.add(agg("a", 1), "events", ref=5)
    w.add(agg("b", 2), "events", ref=6)
    w.add(agg("a", 3), "events", ref=7)
    assert w.min_needed() == 5
    w.add(agg("a", 12), "events", ref=8)  # closes a's [0, 10); b's still open
    assert w.min_needed() == 6
    w.add(agg("b", 15), "events", ref=9)
    assert w.min_needed() == 8
    assert sorted((p.series, p.count) for p in w.close_ready()) == [("a", 2), ("b", 1)]


def test_window_count_overflow_is_out_of_range_not_a_crash():
    from streams.records import MAX_COUNT

    w = Windower(step=10)
    w.add(agg("a", 1, count=MAX_COUNT), "events")
    with pytest.raises(InvalidRecord) as e:
        w.add(agg("a", 2, count=1), "events")
    assert e.value.reason == "out_of_range"
