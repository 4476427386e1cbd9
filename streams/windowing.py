"""Event-time tumbling windows over client aggregates, with per-series time (pure, no Kafka).

One :class:`Windower` per input partition. Each aggregate is merged into the
window holding its start. Time is judged per series, so one producer's clock
decides only for its own series:

- a series' window closes once *its own* newest timestamp, or the
  partition's progress, passes the window's end plus the allowed lateness;
  an aggregate for a closed window is *late*: rejected, never merged;
- the partition's *typical time* is the median (low) of the newest
  timestamps of its recently active series (not the maximum). An aggregate
  more than ``max_future`` seconds ahead of it is rejected as ``future``.
  Rejected timestamps still count towards the median, so when most series
  jump ahead together (a gap in a replay), the median follows them;
- the partition's *progress* (never decreasing) is that median, once a
  second series has been seen: it closes
  the windows of series that went quiet, and gives quiet event series their
  zero-rate points. When the partition is live and idle, :meth:`tick` moves
  progress on with the wall clock.

Each open window remembers the lowest input reference (offset) that fed it,
so the caller can commit below :meth:`min_needed` and never past data held in
an open window.

>>> from streams.records import Aggregate
>>> w = Windower(step=10, lateness_windows=1)
>>> w.add(Aggregate("a", 3.0, 1.0, 5, 5.0, 1.0, 1.0), kind="events", ref=0)
0.0
>>> w.add(Aggregate("a", 12.0, 1.0, 20, 20.0, 1.0, 1.0), kind="events", ref=1)
10.0
>>> [p.start for p in w.close_ready()], w.min_needed()   # 12 < 0 + 10 + 10
([], 0)
>>> w.add(Aggregate("a", 25.0, 1.0, 1, 1.0, 1.0, 1.0), kind="events", ref=2)
20.0
>>> [(p.start, p.value) for p in w.close_ready()], w.min_needed()  # 5 events in 10 s
([(0.0, 0.5)], 1)
>>> w.add(Aggregate("a", 8.0, 1.0, 1, 1.0, 1.0, 1.0), kind="events")
Traceback (most recent call last):
...
streams.records.InvalidRecord: late: window [0, 10) of 'a' is closed (series time 25, lateness 1 windows)
>>> w.add(Aggregate("b", 4000.0, 1.0, 1, 1.0, 1.0, 1.0), kind="events")  # "a" is at 25
Traceback (most recent call last):
...
streams.records.InvalidRecord: future: 4000 is 3975s ahead of the partition's typical series time 25 (max 600s)
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from operator import itemgetter

from streams.records import MAX_COUNT, Aggregate, InvalidRecord, Point, Row

#: windows after an event series' last event that still get a zero-rate point
GAP_FILL_WINDOWS = 30
#: default bound on how far ahead of the partition's typical time a timestamp may be
DEFAULT_MAX_FUTURE_SECONDS = 600.0
#: a series counts towards the typical time while it was updated within the
#: last max(RECENT_ADDS, 2 x active series) aggregates of its partition
RECENT_ADDS = 256

#: window starts a windower shares one float object of at most (then it starts again)
MAX_SHARED_STARTS = 1024

#: per open window: [count, sum, min, max, lowest ref that fed it (-1: none)]
Acc = list[float]


_first = itemgetter(0)


def _median_low(values: list[float]) -> float:
    values.sort()
    return values[(len(values) - 1) // 2]


class Windower:
    """Tumbling event-time windows of one input partition (see the module doc).

    Parameters
    ----------
    step
        Window length in seconds.
    lateness_windows
        Windows an aggregate may arrive after its window's end.
    max_future
        Seconds an aggregate may be ahead of the partition's typical time.
    """

    __slots__ = ("step", "lateness", "max_future", "open", "kinds", "wm", "closed_until",
                 "last_data", "recent", "adds", "typical", "_typical_at", "progress", "floor",
                 "_heap", "_refs", "_ready", "_starts")

    def __init__(self, step: float, lateness_windows: int = 2,
                 max_future: float = DEFAULT_MAX_FUTURE_SECONDS) -> None:
        self.step = float(step)
        self.lateness = int(lateness_windows)
        self.max_future = float(max_future)
        self.open: dict[str, dict[float, Acc]] = {}
        self.kinds: dict[str, str] = {}
        self.wm: dict[str, float] = {}  # tracked series -> newest accepted timestamp
        self.closed_until: dict[str, float] = {}  # tracked series -> its windows before this are closed
        self.last_data: dict[str, float] = {}  # event series -> start of its last window with events
        self.recent: OrderedDict[str, list[float]] = OrderedDict()  # series -> [claim, add number]
        self.adds = 0
        self.typical = -math.inf
        self._typical_at = -1
        self.progress = -math.inf
        self.floor = -math.inf  # every series' windows starting before this are closed
        self._heap: list[tuple[float, str]] = []  # (next window start to close, series)
        self._refs: list[tuple[int, str, float]] = []  # (lowest ref, series, window start)
        self._ready: list[Point] = []
        #: one float object per window start, shared by every series' open window and heap
        #: entries (a series' own copies of the same few starts were ~190 bytes of it)
        self._starts: dict[float, float] = {}

    def window_start(self, ts: float) -> float:
        return math.floor(ts / self.step) * self.step

    def _limit(self, t: float) -> float:
        return self.window_start(t) - self.lateness * self.step if t > -math.inf else -math.inf

    # -- time -------------------------------------------------------------
    def _forget_stopped(self) -> None:
        """Forget the series that stopped counting towards the typical time."""
        horizon = self.adds - max(RECENT_ADDS, 2 * len(self.recent))
        recent = self.recent
        while recent:
            oldest = next(iter(recent.values()))
            if oldest[1] >= horizon:
                break
            recent.popitem(last=False)

    def _advance(self, t: float) -> None:
        if t <= self.progress:
            return
        self.progress = t
        floor = self._limit(t)
        if floor <= self.floor:
            return
        self.floor = floor
        while self._heap and self._heap[0][0] < floor:
            _, series = heapq.heappop(self._heap)
            if series in self.closed_until:
                self._close_series(series, floor)

    def tick(self, now: float) -> None:
        """Move progress on with the wall clock ``now`` (epoch s), if the
        partition is live (its typical time within ``max_future`` of now).

        Call it only while the partition is idle: a backlog being read must
        close its windows on its own timestamps. Closed windows are then in
        :meth:`close_ready`.
        """
        if abs(now - self.typical) <= self.max_future:
            self._advance(now - self.step)

    # -- data -------------------------------------------------------------
    def add(self, agg: Aggregate, kind: str, ref: int | None = None) -> float:
        """Merge one aggregate; return its window's start.

        ``ref`` (e.g. the Kafka offset of its message) is remembered until
        the window closes. Raise ``InvalidRecord`` (``future``, ``late``,
        ``bad_value`` or ``out_of_range``) if it cannot be merged.
        """
        return self.add_row((agg.series, agg.ts, agg.interval, agg.count, agg.sum, agg.min, agg.max),
                            kind, ref)

    def add_row(self, row: Row, kind: str, ref: int | None = None) -> float:
        """:meth:`add` of an aggregate given as a row (``streams.records.parse_input_rows``)."""
        bad = self.add_rows((row,), kind, (ref,))
        if bad:
            raise bad[0][1]
        return math.floor(row[1] / self.step) * self.step

    def add_rows(self, rows: Sequence[Row], kind: str, refs: Sequence[int | None],
                 admit: Callable[[str], bool] | None = None) -> list[tuple[int, Exception | None]]:
        """:meth:`add_row` of each of ``rows`` in turn, row ``k`` with the reference ``refs[k]``
        (e.g. messages' elements: one loop, not a call per row); return the rejected ones as
        (position, error), in order: an
        :class:`InvalidRecord`, or any other exception one row raised (the next rows are still
        added). ``admit`` (e.g. the series budget) is asked first for each row (once per series
        it admits: asking again must answer the same): a series it refuses is not touched
        here, and its error is None.

        >>> w = Windower(step=10, lateness_windows=0)
        >>> [(k, e and e.reason) for k, e in w.add_rows([("a", 1.0, 0.0, 1, 0.0, 1.0, 1.0),
        ...     ("a", 12.0, 0.0, 1, 0.0, 1.0, 1.0), ("a", 3.0, 0.0, 1, 0.0, 1.0, 1.0),
        ...     ("b", 4.0, 0.0, 1, 0.0, 1.0, 1.0)], "events", [7, 8, 8, 9], admit=lambda s: s != "b")]
        [(2, 'late'), (3, None)]
        >>> w.min_needed()
        8
        """
        bad: list[tuple[int, Exception | None]] = []
        step, lateness_s, max_future = self.step, self.lateness * self.step, self.max_future
        recent, open_, wms, closed_until, starts = self.recent, self.open, self.wm, self.closed_until, self._starts
        recent_get, open_get, wm_get, move = recent.get, open_.get, wms.get, recent.move_to_end
        floor, inf = math.floor, math.inf
        admitted: set[str] = set()  # admit is asked once per series per call
        # the partition's time, kept in locals (written back before any method that reads it)
        adds, typical_at, typical, progress = self.adds, self._typical_at, self.typical, self.progress
        for k, row in enumerate(rows):
            try:
                series, ts, interval, count, total, lo, hi = row
                if admit is not None and series not in admitted:
                    if not admit(series):
                        bad.append((k, None))
                        continue
                    admitted.add(series)
                # the series' claim on the partition's typical time (rejected timestamps count too)
                adds += 1
                r = recent_get(series)
                if r is None:
                    recent[series] = [ts, adds]
                else:
                    if ts > r[0]:
                        r[0] = ts
                    r[1] = adds
                    move(series)
                if not adds & 31:  # forget series that stopped (amortised)
                    self.adds = adds
                    self._forget_stopped()
                if adds - typical_at > len(recent) >> 3:
                    self.typical = typical = _median_low(list(map(_first, recent.values())))
                    self._typical_at = typical_at = adds
                if ts > typical + max_future:
                    # Windows this series opened while it set the pace (alone on the
                    # partition) would hold commits until the others catch up: close them.
                    if open_get(series):
                        self._close_series(series, max(open_[series]) + step)
                    bad.append((k, InvalidRecord(
                        "future", f"{ts:g} is {ts - typical:g}s ahead of the partition's typical "
                        f"series time {typical:g} (max {max_future:g}s)")))
                    continue
                start = floor(ts / step) * step
                wins = open_get(series)
                acc = wins.get(start) if wins is not None else None
                if acc is None:
                    # a window not open yet (an open window is never below its series' closed bound)
                    closed = closed_until.get(series, self.floor)
                    if start < closed:
                        bad.append((k, InvalidRecord(
                            "late",
                            f"window [{start:g}, {start + step:g}) of {series!r} is closed (series time "
                            f"{max(wm_get(series, -inf), progress):g}, lateness {self.lateness} windows)",
                        )))
                        continue
                if interval > step:
                    bad.append((k, InvalidRecord(
                        "bad_value", f"aggregate interval {interval:g}s is longer than the {step:g}s window")))
                    continue
                if acc is not None:
                    if acc[0] + count > MAX_COUNT:
                        bad.append((k, InvalidRecord(
                            "out_of_range", f"window count of {series!r} would exceed {MAX_COUNT}")))
                        continue
                    acc[0] += count
                    acc[1] += total
                    if lo < acc[2]:
                        acc[2] = lo
                    if hi > acc[3]:
                        acc[3] = hi
                else:
                    if series not in closed_until:
                        closed_until[series] = closed
                        self.kinds[series] = kind
                    if wins is None:
                        wins = open_[series] = {}
                    start = starts.setdefault(start, start)
                    if len(starts) > MAX_SHARED_STARTS:
                        starts.clear()  # long gone windows' (the open ones keep theirs)
                    ref = refs[k]
                    wins[start] = [count, total, lo, hi, -1 if ref is None else ref]
                    heapq.heappush(self._heap, (start, series))
                    if ref is not None:
                        heapq.heappush(self._refs, (ref, series, start))
                wm = wm_get(series, -inf)
                if ts > wm:
                    wms[series] = wm = ts
                limit = floor((wm if wm > progress else progress) / step) * step - lateness_s
                if limit > closed_until[series]:
                    self._close_series(series, limit)
                if typical > progress and (len(recent) > 1 or progress > -inf):
                    # (the first series alone closes its windows on its own time: were
                    # it to set the partition's progress, a skewed clock that happens
                    # to come first, e.g. when a partition is re-read, would make
                    # everybody else late)
                    self._advance(typical)
                    progress = self.progress
            except Exception as exc:  # noqa: BLE001 - one element never stops the others
                bad.append((k, exc))
                progress = self.progress
        self.adds = adds
        return bad

    def close_all(self) -> list[Point]:
        """Close every open window now (the end of a replay) and return the points."""
        for series in list(self.closed_until):
            wins = self.open.get(series)
            if wins:
                self._close_series(series, max(wins) + self.step)
        return self.close_ready()

    def evict(self, series: str) -> bool:
        """Close every open window of ``series`` now and forget it (it went idle).

        Its points are in :meth:`close_ready` (so the offsets that fed them can be
        acknowledged); an event series gets no more zero-rate points. Only the
        bound below which its windows are closed is kept, until the partition's
        floor passes it, so an aggregate for a window already published is still
        ``late``, never a second, partial point. False if the series was not here.

        >>> w = Windower(step=10, lateness_windows=1)
        >>> w.add(Aggregate("a", 3.0, 1.0, 5, 5.0, 1.0, 1.0), kind="events", ref=7)
        0.0
        >>> w.evict("a"), [(p.series, p.start, p.count) for p in w.close_ready()], w.min_needed()
        (True, [('a', 0.0, 5)], None)
        >>> w.add(Aggregate("a", 4.0, 1.0, 1, 1.0, 1.0, 1.0), kind="events")
        Traceback (most recent call last):
        ...
        streams.records.InvalidRecord: late: window [0, 10) of 'a' is closed (series time -inf, lateness 1 windows)
        """
        if series not in self.closed_until:
            return False
        wins = self.open.get(series)
        self.last_data.pop(series, None)  # no zero-rate points after its last window
        if wins:
            self._close_series(series, max(wins) + self.step)
        self.last_data.pop(series, None)
        self.wm.pop(series, None)
        if self.closed_until.get(series, -math.inf) <= self.floor:
            self.closed_until.pop(series, None)
            self.kinds.pop(series, None)
        return True

    def close_ready(self) -> list[Point]:
        """The points of every window closed since the last call.

        An event series that had events recently but none in a closed window
        gets a zero-rate point for it (no events is a rate of 0, not missing
        data), for at most ``GAP_FILL_WINDOWS`` windows after its last event.
        Metric series are not filled: no sample is no data.
        """
        out, self._ready = self._ready, []
        return out

    def min_needed(self) -> int | None:
        """The lowest ``ref`` that fed a still-open window (None: nothing held)."""
        refs = self._refs
        while refs:
            ref, series, start = refs[0]
            acc = self.open.get(series, {}).get(start)
            if acc is not None and acc[4] == ref:
                return ref
            heapq.heappop(refs)
        return None

    def _close_series(self, series: str, limit: float) -> None:
        cu = self.closed_until[series]
        if limit <= cu:
            return
        step = self.step
        wins = self.open.get(series, {})
        events = self.kinds.get(series) == "events"
        last = self.last_data.get(series) if events else None
        pos = cu
        out = self._ready
        for start in sorted(s for s in wins if s < limit):
            if last is not None:
                self._zeros(series, last, max(pos, last + step), start)
            out.append(self._point(series, start, wins.pop(start)))
            if events:
                last = start
            pos = start + step
        if last is not None:
            self._zeros(series, last, max(pos, last + step), limit)
        self.closed_until[series] = limit
        if not wins:
            self.open.pop(series, None)
        if last is not None and limit <= last + GAP_FILL_WINDOWS * step:
            self.last_data[series] = last
            heapq.heappush(self._heap, (limit, series))  # more zeros to come
        else:
            self.last_data.pop(series, None)
            if not wins:
                if limit <= self.floor:  # nothing left that the partition floor does not cover
                    del self.closed_until[series], self.kinds[series]
                    self.wm.pop(series, None)
                else:
                    heapq.heappush(self._heap, (limit, series))  # forget it once the floor passes

    def _zeros(self, series: str, last: float, first: float, end: float) -> None:
        end = min(end, last + (GAP_FILL_WINDOWS + 1) * self.step)
        n = int(round((end - first) / self.step))
        for i in range(max(0, n)):
            s = first + i * self.step
            self._ready.append(Point(series, s, s + self.step, 0, 0.0, math.inf, -math.inf, 0.0))

    def _point(self, series: str, start: float, acc: Acc) -> Point:
        count, total = int(acc[0]), acc[1]
        if self.kinds.get(series) == "metrics":
            value = total / count if count else 0.0
        else:
            value = count / self.step
        return Point(series, start, start + self.step, count, total, acc[2], acc[3], value)
