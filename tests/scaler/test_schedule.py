"""Scheduled minimums: the cron matcher, one-off windows, time zones and daylight saving."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from scaler.schedule import Cron, CronError, Schedule, parse_local, scheduled_floor


@pytest.mark.parametrize("expr, when, matches", [
    ("* * * * *", "2026-12-02T14:07", True),
    ("7 14 * * *", "2026-12-02T14:07", True),
    ("7 14 * * *", "2026-12-02T14:08", False),
    ("*/15 * * * *", "2026-12-02T14:45", True),
    ("*/15 * * * *", "2026-12-02T14:50", False),
    ("5/20 * * * *", "2026-12-02T14:45", True),  # 5, 25, 45
    ("0 9-17/4 * * *", "2026-12-02T13:00", True),  # 9, 13, 17
    ("0 9-17/4 * * *", "2026-12-02T15:00", False),
    ("0 0 * * MON-FRI", "2026-12-05T00:00", False),  # a Saturday
    ("0 0 * * 0", "2026-12-06T00:00", True),  # Sunday as 0 ...
    ("0 0 * * 7", "2026-12-06T00:00", True),  # ... and as 7
    ("0 0 * * sun", "2026-12-06T00:00", True),
    ("0 0 1 JAN,jul *", "2026-07-01T00:00", True),
    ("0 0 1 JAN,jul *", "2026-08-01T00:00", False),
    # both day fields restricted: either matches (Vixie cron)
    ("0 0 13 * FRI", "2026-12-13T00:00", True),  # the 13th, a Sunday
    ("0 0 13 * FRI", "2026-12-04T00:00", True),  # a Friday
    ("0 0 13 * FRI", "2026-12-05T00:00", False),
    # one restricted: both must match (the other is *)
    ("0 0 * 12 FRI", "2026-12-04T00:00", True),
    ("0 0 * 11 FRI", "2026-12-04T00:00", False),
    ("@daily", "2026-12-02T00:00", True),
    ("@hourly", "2026-12-02T14:01", False),
])
def test_cron_matches(expr: str, when: str, matches: bool) -> None:
    assert Cron.parse(expr).matches(datetime.fromisoformat(when)) is matches


@pytest.mark.parametrize("expr, message", [
    ("* * * *", "has 4 fields"),
    ("60 * * * *", "minute: 60 is out of range 0-59"),
    ("* * 0 * *", "day of month: 0 is out of range 1-31"),
    ("* * * 13 *", "month: 13 is out of range 1-12"),
    ("* * * * 8", "day of week: 8 is out of range 0-7"),
    ("*/0 * * * *", "minute: step '0' must be a positive integer"),
    ("5-1 * * * *", "minute: range '5-1' runs backwards"),
    ("* * * * FUN", "day of week: 'FUN' is not a number or one of SUN, MON"),
])
def test_bad_cron_says_why(expr: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        Cron.parse(expr)


def test_latest_finds_the_last_start_within_reach() -> None:
    c = Cron.parse("0 22 * * FRI")
    t = datetime(2026, 12, 7, 3, 0)  # Monday 03:00
    assert c.latest(t, timedelta(days=3)) == datetime(2026, 12, 4, 22, 0)
    assert c.latest(t, timedelta(days=2)) is None


def at(text: str, tz: str = "UTC") -> float:
    return parse_local(text, tz)


def test_a_cron_window_is_active_for_its_duration_after_each_start() -> None:
    s = Schedule("rush", 10, cron="0 17 * * MON-FRI", duration_seconds=7200,
                 timezone="America/New_York")
    assert s.active(at("2026-12-02T17:00", "America/New_York"))
    assert s.active(at("2026-12-02T18:59", "America/New_York"))
    assert not s.active(at("2026-12-02T19:00", "America/New_York"))
    assert not s.active(at("2026-12-02T16:59", "America/New_York"))
    assert not s.active(at("2026-12-05T17:30", "America/New_York"))  # Saturday
    # a window running past midnight, into a day that does not match itself
    late = Schedule("late", 3, cron="0 23 * * FRI", duration_seconds=3 * 3600)
    assert late.active(at("2026-12-05T01:30")) and not late.active(at("2026-12-05T02:00"))


def test_a_week_long_duration() -> None:
    s = Schedule("week", 2, cron="0 0 * * MON", duration_seconds=7 * 86400)
    assert all(s.active(at("2026-12-07T00:00") + h * 3600) for h in range(0, 7 * 24, 5))


def test_wall_clock_time_across_daylight_saving() -> None:
    """09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer."""
    s = Schedule("open", 4, cron="0 9 * * *", duration_seconds=1800, timezone="Europe/Berlin")
    assert s.active(at("2026-01-15T08:10")) and not s.active(at("2026-01-15T07:10"))
    assert s.active(at("2026-07-15T07:10")) and not s.active(at("2026-07-15T08:10"))
    # the night the clocks go back (25 October 2026): 02:30 happens twice; each start holds
    # for its own 20 minutes
    twice = Schedule("fold", 4, cron="30 2 * * *", duration_seconds=1200,
                     timezone="Europe/Berlin")
    assert twice.active(at("2026-10-25T00:40"))  # 02:40 CEST
    assert not twice.active(at("2026-10-25T01:55"))  # 02:55 CET, the second 02:30 + 25 min


def test_a_one_off_window_is_start_inclusive_end_exclusive() -> None:
    start, end = at("2026-11-27T00:00", "Europe/Berlin"), at("2026-11-28T00:00", "Europe/Berlin")
    s = Schedule("sale", 20, start=start, end=end, timezone="Europe/Berlin")
    assert (s.active(start - 1), s.active(start), s.active(end - 1), s.active(end)) == (
        False, True, True, False)
    assert not s.active(float("nan"))


def test_the_highest_active_floor_wins() -> None:
    a = Schedule("a", 5, start=0, end=100)
    b = Schedule("b", 9, start=50, end=150)
    assert [scheduled_floor((a, b), t) for t in (10, 60, 120, 200)] == [
        (5, "a"), (9, "b"), (9, "b"), None]


@pytest.mark.parametrize("schedule, problem", [
    (Schedule("x", 1), "needs either cron (with durationSeconds) or start and end"),
    (Schedule("x", 1, cron="@daily", start=0, end=5), "needs either cron"),
    (Schedule("x", 1, start=0), "needs both start and end"),
    (Schedule("x", 1, start=5, end=5), "start must be before end"),
    (Schedule("x", 1, start=0, end=5, duration_seconds=60), "durationSeconds goes with cron"),
    (Schedule("x", 1, cron="@daily", duration_seconds=8 * 86400), "durationSeconds must be > 0"),
    (Schedule("x", -1, cron="@daily", duration_seconds=60), "minReplicas must be >= 0"),
])
def test_schedule_problems(schedule: Schedule, problem: str) -> None:
    assert any(problem in p for p in schedule.problems("s")), schedule.problems("s")
    assert Schedule("x", 1, cron="@daily", duration_seconds=60).problems("s") == []
