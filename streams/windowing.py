"""Event-time tumbling windows over client aggregates (pure, no Kafka).

One :class:`Windower` per input partition. Each aggregate is merged into the
window holding its start; a window closes once the partition's watermark (the
largest event time seen) passes its end plus the allowed lateness. An
aggregate for a closed window is *late*: rejected, never merged.

>>> from streams.records import Aggregate
>>> w = Windower(step=10, lateness_windows=1)
>>> w.add(Aggregate("a", 3.0, 1.0, 5, 5.0, 1.0, 1.0), kind="events")
0.0
>>> w.add(Aggregate("a", 12.0, 1.0, 20, 20.0, 1.0, 1.0), kind="events")
10.0
>>> [p.start for p in w.close_ready()]   # watermark 12 < 0 + 10 + 10
[]
>>> w.add(Aggregate("a", 25.0, 1.0, 1, 1.0, 1.0, 1.0), kind="events")
20.0
>>> [(p.start, p.value) for p in w.close_ready()]  # 5 events in 10 s
[(0.0, 0.5)]
>>> w.add(Aggregate("a", 8.0, 1.0, 1, 1.0, 1.0, 1.0), kind="events")
Traceback (most recent call last):
...
streams.records.InvalidRecord: late: window [0, 10) of 'a' closed at watermark 25 (lateness 1 windows)
"""

from __future__ import annotations

import math
from collections import defaultdict

from streams.records import Aggregate, InvalidRecord, Point

#: windows after an event series' last event that still get a zero-rate point
GAP_FILL_WINDOWS = 30

#: per open window: [count, sum, min, max]
Acc = list[float]


class Windower:
    __slots__ = ("step", "lateness", "open", "kinds", "by_start", "watermark", "closed_until",
                 "last_data")

    def __init__(self, step: float, lateness_windows: int = 2) -> None:
        self.step = float(step)
        self.lateness = int(lateness_windows)
        self.open: dict[str, dict[float, Acc]] = {}
        self.kinds: dict[str, str] = {}
        self.by_start: dict[float, set[str]] = defaultdict(set)
        self.watermark = -math.inf
        self.closed_until = -math.inf  # windows starting before this are closed
        self.last_data: dict[str, float] = {}  # event series -> start of its last window with events

    def window_start(self, ts: float) -> float:
        return math.floor(ts / self.step) * self.step

    def add(self, agg: Aggregate, kind: str) -> float:
        """Merge one aggregate; return its window's start.

        Raise ``InvalidRecord('late')`` if that window has closed."""
        start = self.window_start(agg.ts)
        if start < self.closed_until:
            raise InvalidRecord(
                "late",
                f"window [{start:g}, {start + self.step:g}) of {agg.series!r} closed at "
                f"watermark {self.watermark:g} (lateness {self.lateness} windows)",
            )
        if agg.interval > self.step:
            raise InvalidRecord(
                "bad_value", f"aggregate interval {agg.interval:g}s is longer than the {self.step:g}s window"
            )
        wins = self.open.get(agg.series)
        if wins is None:
            wins = self.open[agg.series] = {}
            self.kinds[agg.series] = kind
        acc = wins.get(start)
        if acc is None:
            wins[start] = [agg.count, agg.sum, agg.min, agg.max]
            self.by_start[start].add(agg.series)
        else:
            acc[0] += agg.count
            acc[1] += agg.sum
            if agg.min < acc[2]:
                acc[2] = agg.min
            if agg.max > acc[3]:
                acc[3] = agg.max
        if agg.ts > self.watermark:
            self.watermark = agg.ts
        return start

    def close_ready(self) -> list[Point]:
        """Close every window whose end + lateness is at or before the watermark.

        An event series that had events recently but none in a closed window
        gets a zero-rate point for it (no events is a rate of 0, not missing
        data), for at most ``GAP_FILL_WINDOWS`` windows after its last event.
        Metric series are not filled: no sample is no data.
        """
        limit = self.window_start(self.watermark) - self.lateness * self.step
        if limit <= self.closed_until:
            return []
        starts = {s for s in self.by_start if s < limit}
        has_events = bool(self.last_data) or any(k == "events" for k in self.kinds.values())
        if has_events and (starts or self.last_data):
            # every window from the first one to close up to GAP_FILL_WINDOWS
            # after the newest data, so quiet event series get their zeros
            first = min(starts | {last + self.step for last in self.last_data.values()})
            first = max(first, self.closed_until)
            newest = max(starts | set(self.last_data.values()))
            end = min(limit, newest + (GAP_FILL_WINDOWS + 1) * self.step)
            n = int(round((end - first) / self.step))
            starts.update(first + i * self.step for i in range(max(0, n)))
        out: list[Point] = []
        for start in sorted(starts):
            present = self.by_start.pop(start, set())
            for series in sorted(present):
                acc = self.open[series].pop(start)
                if not self.open[series]:
                    del self.open[series]
                out.append(self._point(series, start, acc))
                if self.kinds.get(series) == "events":
                    self.last_data[series] = start
            for series, last in list(self.last_data.items()):
                if series in present or start <= last:
                    continue
                if start - last > GAP_FILL_WINDOWS * self.step:
                    del self.last_data[series]
                    continue
                out.append(Point(series, start, start + self.step, 0, 0.0, math.inf, -math.inf, 0.0))
        self.closed_until = limit
        return out

    def _point(self, series: str, start: float, acc: Acc) -> Point:
        count, total = int(acc[0]), acc[1]
        if self.kinds.get(series) == "metrics":
            value = total / count if count else 0.0
        else:
            value = count / self.step
        return Point(series, start, start + self.step, count, total, acc[2], acc[3], value)
