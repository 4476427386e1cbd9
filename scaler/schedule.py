"""Scheduled minimums: known events (a sale, a match, a batch window) raise the floor.

A :class:`Schedule` is active either on a recurring ``cron`` expression for
``durationSeconds`` after each of its times, or once, from ``start`` to ``end``;
both in its ``timezone`` (an IANA name, default UTC; daylight saving time is
the zone's). While any is active, the target's floor is the highest
``minReplicas`` among the active ones (never above ``maxReplicas``).

Pure: no clock, the time is passed in (epoch seconds, event time).

>>> sale = Schedule("black-friday", 20, start=parse_local("2026-11-27T00:00", "Europe/Berlin"),
...                 end=parse_local("2026-11-28T00:00", "Europe/Berlin"), timezone="Europe/Berlin")
>>> nightly = Schedule("batch", 6, cron="30 1 * * MON-FRI", duration_seconds=3600)
>>> t = parse_local("2026-11-27T01:45", "UTC")  # a Friday, 01:45 UTC (02:45 in Berlin)
>>> [s.name for s in (sale, nightly) if s.active(t)]
['black-friday', 'batch']
>>> scheduled_floor((sale, nightly), t)
(20, 'black-friday')
>>> scheduled_floor((nightly,), t + 3600)  # 02:45: the batch window is over
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: the longest ``durationSeconds`` of a cron schedule (a weekly event lasting the week)
MAX_DURATION_SECONDS = 7 * 86400

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
#: (name, low, high, names) of the five fields
_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
           ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}


class CronError(ValueError):
    """A cron expression that cannot be read; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A standard five-field cron expression (minute hour day-of-month month day-of-week).

    Lists (``1,15``), ranges (``1-5``), steps (``*/15``, ``9-17/2``), month and
    day names (``JAN``, ``MON-FRI``), 0 or 7 for Sunday and the ``@daily``-style
    macros. As in Vixie cron, when both day fields are restricted a day matches
    either of them.

    >>> c = Cron.parse("*/15 9-17 * * MON-FRI")
    >>> c.matches(datetime(2026, 12, 2, 9, 45)), c.matches(datetime(2026, 12, 5, 9, 45))
    (True, False)
    >>> Cron.parse("0 0 1,15 * FRI").matches(datetime(2026, 12, 4))  # a Friday, not the 1st
    True
    >>> Cron.parse("61 * * * *")
    Traceback (most recent call last):
    ...
    scaler.schedule.CronError: minute: 61 is out of range 0-59
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is *
    any_weekday: bool  # day of week is *

    @classmethod
    def parse(cls, text: str) -> Cron:
        expr = _MACROS.get(text.strip().lower(), text)
        parts = expr.split()
        if len(parts) != 5:
            raise CronError(f"{text!r} has {len(parts)} fields, expected 5 "
                            "(minute hour day-of-month month day-of-week)")
        sets = [_field(p, *f) for p, f in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(sets[0], sets[1], sets[2], sets[3], weekdays,
                   parts[2].startswith("*"), parts[4].startswith("*"))

    def day_matches(self, d: datetime) -> bool:
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def matches(self, t: datetime) -> bool:
        """True if the wall-clock minute of ``t`` is one of the expression's times."""
        return self.day_matches(t) and t.hour in self.hours and t.minute in self.minutes

    def latest(self, t: datetime, within: timedelta) -> datetime | None:
        """The latest wall-clock time at or before ``t`` (naive, local) that matches,
        if there is one within ``within``; else None.

        >>> Cron.parse("30 1 * * *").latest(datetime(2026, 1, 2, 0, 10), timedelta(hours=23))
        datetime.datetime(2026, 1, 1, 1, 30)
        >>> Cron.parse("30 1 * * *").latest(datetime(2026, 1, 2, 0, 10), timedelta(hours=22))
        """
        t = t.replace(second=0, microsecond=0)
        earliest = t - within
        day = t.replace(hour=0, minute=0)
        while day + timedelta(days=1) > earliest:
            if self.day_matches(day):
                for h in sorted(self.hours, reverse=True):
                    for m in sorted(self.minutes, reverse=True):
                        cand = day.replace(hour=h, minute=m)
                        if cand <= t:
                            return cand if cand >= earliest else None
            day -= timedelta(days=1)
        return None


def _field(text: str, name: str, lo: int, hi: int, names: tuple[str, ...]) -> frozenset[int]:
    out: set[int] = set()
    for item in text.split(","):
        rng, _, step_s = item.partition("/")
        step = 1
        if step_s:
            if not step_s.isdigit() or int(step_s) < 1:
                raise CronError(f"{name}: step {step_s!r} must be a positive integer")
            step = int(step_s)
        if rng == "*":
            a, b = lo, hi if name != "day of week" else 6
        elif "-" in rng:
            a_s, _, b_s = rng.partition("-")
            a, b = _value(a_s, name, lo, hi, names), _value(b_s, name, lo, hi, names)
            if a > b:
                raise CronError(f"{name}: range {rng!r} runs backwards")
        else:
            a = _value(rng, name, lo, hi, names)
            b = hi if step_s else a
        out.update(range(a, b + 1, step))
    return frozenset(out)


def _value(text: str, name: str, lo: int, hi: int, names: tuple[str, ...]) -> int:
    up = text.strip().upper()
    if up in names:
        return names.index(up) + (1 if name == "month" else 0)
    if not up.isdigit():
        raise CronError(f"{name}: {text!r} is not a number"
                        + (f" or one of {', '.join(names)}" if names else ""))
    v = int(up)
    if not lo <= v <= hi:
        raise CronError(f"{name}: {v} is out of range {lo}-{hi}")
    return v


@lru_cache(maxsize=256)
def _cron(text: str) -> Cron:
    return Cron.parse(text)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (ValueError naming it if unknown).

    >>> zone("Europe/Berlin").key
    'Europe/Berlin'
    >>> zone("Mars/Olympus")
    Traceback (most recent call last):
    ...
    ValueError: unknown time zone 'Mars/Olympus' (an IANA name such as Europe/Berlin or UTC)
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin "
                         "or UTC)") from None


def parse_local(text: str, timezone: str = "UTC") -> float:
    """ISO-8601 date-time to epoch seconds; without an offset it is local time in ``timezone``.

    >>> parse_local("2026-07-01T12:00", "Europe/Berlin"), parse_local("2026-07-01T10:00Z")
    (1782900000.0, 1782900000.0)
    """
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 date-time "
                         "(e.g. 2026-11-27T08:00 or 2026-11-27T08:00:00+01:00)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=zone(timezone))
    return t.timestamp()


@dataclass(frozen=True, slots=True)
class Schedule:
    """One scheduled minimum: ``min_replicas`` while active.

    Either ``cron`` (+ ``duration_seconds``) or ``start``/``end`` (epoch seconds,
    active on ``[start, end)``).

    >>> s = Schedule("peak", 5, cron="0 12 * * *", duration_seconds=1800)
    >>> noon = parse_local("2026-03-01T12:00")
    >>> s.active(noon - 1), s.active(noon), s.active(noon + 1799), s.active(noon + 1800)
    (False, True, True, False)
    """

    name: str
    min_replicas: int
    cron: str = ""
    duration_seconds: float = 0.0
    start: float | None = None
    end: float | None = None
    timezone: str = "UTC"

    def problems(self, path: str) -> list[str]:
        """Every reason this schedule cannot be used (``path`` names it in messages)."""
        out = []
        if not self.name:
            out.append(f"{path}.name is required")
        if not 0 <= self.min_replicas <= 2**31 - 1:
            out.append(f"{path}.minReplicas must be >= 0")
        try:
            zone(self.timezone)
        except ValueError as exc:
            out.append(f"{path}.timezone: {exc}")
        once = self.start is not None or self.end is not None
        if bool(self.cron) == once:
            out.append(f"{path} needs either cron (with durationSeconds) or start and end")
        elif self.cron:
            try:
                Cron.parse(self.cron)
            except CronError as exc:
                out.append(f"{path}.cron: {exc}")
            if not 0 < self.duration_seconds <= MAX_DURATION_SECONDS:
                out.append(f"{path}.durationSeconds must be > 0 and <= {MAX_DURATION_SECONDS} "
                           "with cron")
        else:
            if self.start is None or self.end is None:
                out.append(f"{path} needs both start and end")
            elif not self.start < self.end:
                out.append(f"{path}.start must be before end")
            if self.duration_seconds:
                out.append(f"{path}.durationSeconds goes with cron, not with start/end")
        return out

    def active(self, now: float) -> bool:
        """True if the schedule holds at epoch second ``now``."""
        if not math.isfinite(now):
            return False
        if not self.cron:
            return self.start is not None and self.end is not None and self.start <= now < self.end
        tz = zone(self.timezone)
        wall = datetime.fromtimestamp(now, UTC).astimezone(tz).replace(tzinfo=None)
        # wall-clock reach: the duration, plus two hours for a daylight-saving shift
        reach = timedelta(seconds=self.duration_seconds, hours=2)
        cron, cursor = _cron(self.cron), wall
        for _ in range(3):  # a time repeated by a DST fold may start after now: the one before
            found = cron.latest(cursor, reach - (wall - cursor))
            if found is None:
                return False
            began = found.replace(tzinfo=tz).timestamp()
            if began <= now:  # the latest start: an earlier one would have ended earlier
                return now < began + self.duration_seconds
            cursor = found - timedelta(minutes=1)
        return False


def scheduled_floor(schedules: Iterable[Schedule], now: float) -> tuple[int, str] | None:
    """(the highest ``minReplicas`` of the schedules active at ``now``, its name), or None."""
    best: tuple[int, str] | None = None
    for s in schedules:
        if s.active(now) and (best is None or s.min_replicas > best[0]):
            best = (s.min_replicas, s.name)
    return best
