"""The signal clock: the wall clock, or a replay's event time (FORESIGHT_SIGNAL_CLOCK)."""

from __future__ import annotations

import pytest

from streams.clock import SignalClock
from streams.settings import Settings


@pytest.mark.parametrize(("text", "wall", "expected"), [
    ("", 1234.5, 1234.5),
    ("wall", 99.0, 99.0),
    ("event=1767240000,wall=1000,speed=60", 1000.0, 1767240000.0),
    ("event=1767240000,wall=1000,speed=60", 1010.0, 1767240600.0),
    (" speed=240, event=0, wall=10 ", 12.5, 600.0),
])
def test_reads_event_time_at_a_wall_time(text, wall, expected):
    assert SignalClock.parse(text).now(wall) == expected


def test_a_replay_clock_starts_at_its_wall_origin_and_moves_speed_times_faster():
    c = SignalClock(event=5000.0, wall=100.0, speed=60.0)
    assert not c.started(99.9) and c.started(100.0)
    assert c.now(101.0) - c.now(100.0) == 60.0
    assert c.interval(60.0) == 1.0
    assert SignalClock.parse(str(c)) == c
    assert SignalClock().started(0.0) and SignalClock().interval(10.0) == 10.0


@pytest.mark.parametrize(("text", "why"), [
    ("event=1,wall=2", "missing speed"),
    ("event=1,wall=2,speed=0", "speed > 0"),
    ("event=1,wall=x,speed=2", "wall must be a number"),
    ("tomorrow", "expected event="),
    ("event=nan,wall=2,speed=2", "finite"),
])
def test_a_bad_setting_says_what_is_wrong(text, why):
    with pytest.raises(ValueError, match=why):
        SignalClock.parse(text)
    problems = Settings(signal_clock=text).problems()
    assert any(p.startswith("--signal-clock / FORESIGHT_SIGNAL_CLOCK:") and why in p for p in problems), problems


def test_the_setting_reaches_a_child_process_unchanged():
    s = Settings(signal_clock=str(SignalClock(1767240000.0, 1764700000.25, 240.0)))
    assert Settings.from_env(s.to_env()) == s and s.problems() == []
