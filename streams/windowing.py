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
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, compress, repeat
from operator import itemgetter
from typing import Any

import numpy as np

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
_second = itemgetter(1)


def _median_low(values: list[float]) -> float:
    values.sort()
    return values[(len(values) - 1) // 2]


def _typical(recent: OrderedDict[str, list[float]]) -> float:
    """The median (low) of the claims in ``recent`` (numpy's partition: a third of a sort's time
    at thousands of series, most of them with equal claims)."""
    n = len(recent)
    if n < 64:
        return _median_low(list(map(_first, recent.values())))
    k = (n - 1) // 2
    return float(np.partition(np.fromiter(map(_first, recent.values()), float, n), k)[k])


def _push_keyed(lists: dict[Any, list[Any]], keys: list[Any], key: Any, item: Any) -> None:
    """Add ``item`` to ``lists[key]``, the key pushed on the heap ``keys`` when new (a heap of
    distinct keys with a list per key: many items share a key)."""
    got = lists.get(key)
    if got is None:
        lists[key] = [item]
        heapq.heappush(keys, key)
    else:
        got.append(item)


def _extend_keyed(lists: dict[Any, list[Any]], keys: list[Any], key: Any, items: list[Any]) -> None:
    """:func:`_push_keyed` of each of ``items`` (a list the call hands over: it may be kept)."""
    got = lists.get(key)
    if got is None:
        lists[key] = items
        heapq.heappush(keys, key)
    else:
        got.extend(items)


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
                 "last_data", "_recent", "adds", "typical", "_typical_at", "progress", "floor",
                 "_due", "_due_keys", "_held", "_held_keys", "_ready", "_starts", "merged",
                 "_slot", "_names", "_claim", "_add", "_stale")

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
        self._recent: OrderedDict[str, list[float]] = OrderedDict()  # (see recent)
        self.adds = 0
        self.typical = -math.inf
        self._typical_at = -1
        self.progress = -math.inf
        self.floor = -math.inf  # every series' windows starting before this are closed
        # (Two heaps of (start, series) and (ref, series, start) were mostly string comparisons: a
        # window start or a message's offset is shared by thousands of entries. Each is a heap of
        # the distinct keys and a list per key instead.)
        #: per time: the series to close when the partition's floor passes it (their next window
        #: start, or their bound: more zeros to come, or forgetting); a heap of its keys
        self._due: dict[float, list[str]] = {}
        self._due_keys: list[float] = []
        #: per input reference: the accumulators of the windows it was the lowest ref of when
        #: opened (stale once the window closed: its ref is then NaN); a heap of its keys
        self._held: dict[int, list[Acc]] = {}
        self._held_keys: list[int] = []
        self._ready: list[Point] = []
        #: one float object per window start, shared by every series' open window and heap
        #: entries (a series' own copies of the same few starts were ~190 bytes of it)
        self._starts: dict[float, float] = {}
        #: elements :meth:`add_columns` merged with its group-by (the others went row by row)
        self.merged = 0
        # recent as arrays, for the group-by (None: not built since recent last changed): the
        # series' slots (their positions in ``_names``), and per slot its claim and add number.
        # The group-by updates the arrays only: recent's values and order are then ``_stale``,
        # brought up to date (recent) only when read, e.g. by add_rows (which then drops them).
        self._slot: dict[str, int] | None = None
        self._names: list[str] = []
        self._claim = np.empty(0)
        self._add = np.empty(0, np.int64)
        self._stale = False

    @property
    def recent(self) -> OrderedDict[str, list[float]]:
        """The series counting towards the typical time -> [claim, add number], the least
        recently added first."""
        if self._stale:
            by = np.argsort(self._add, kind="stable")
            names = self._names
            self._recent = OrderedDict(zip(map(names.__getitem__, by.tolist()),
                                           map(list, zip(self._claim[by].tolist(), self._add[by].tolist(), strict=True)),
                                           strict=True))
            self._stale = False
        return self._recent

    def _slots(self) -> dict[str, int]:
        """The series' slots in the arrays of recent (built from recent if it changed)."""
        slot = self._slot
        if slot is None:
            recent = self._recent  # (never stale without arrays)
            names = self._names = list(recent)
            slot = self._slot = dict(zip(names, range(len(names)), strict=True))
            values = list(recent.values())
            self._claim = np.fromiter(map(_first, values), float, len(values))
            self._add = np.fromiter(map(_second, values), np.int64, len(values))
        return slot

    def window_start(self, ts: float) -> float:
        return math.floor(ts / self.step) * self.step

    def _limit(self, t: float) -> float:
        return self.window_start(t) - self.lateness * self.step if t > -math.inf else -math.inf

    # -- time -------------------------------------------------------------
    def _forget_stopped(self) -> None:
        """Forget the series that stopped counting towards the typical time."""
        horizon = self.adds - max(RECENT_ADDS, 2 * len(self._recent))
        recent = self._recent
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
        keys, due, closed_until, close = self._due_keys, self._due, self.closed_until, self._close_series
        while keys and keys[0] < floor:
            # in (time, series) order, as one heap of (time, series) entries pops them
            for series in sorted(due.pop(heapq.heappop(keys))):
                cu = closed_until.get(series)
                if cu is not None and cu < floor:  # (else closed already: no call)
                    close(series, floor)

    def _queue(self, at: float, series: str) -> None:
        """Close ``series`` up to the floor once the partition's floor passes ``at``."""
        _push_keyed(self._due, self._due_keys, at, series)

    def _hold(self, ref: int, acc: Acc) -> None:
        """``ref`` is the lowest of the new window ``acc`` (:meth:`min_needed`)."""
        _push_keyed(self._held, self._held_keys, ref, acc)

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
                 admit: Callable[[str], bool] | None = None,
                 admit_all: Callable[[Iterable[str]], bool] | None = None) -> list[tuple[int, Exception | None]]:
        """:meth:`add_row` of each of ``rows`` in turn, row ``k`` with the reference ``refs[k]``
        (e.g. messages' elements: one loop, not a call per row); return the rejected ones as
        (position, error), in order: an
        :class:`InvalidRecord`, or any other exception one row raised (the next rows are still
        added). ``admit`` (e.g. the series budget) is asked first for each row (once per series
        it admits: asking again must answer the same): a series it refuses is not touched
        here, and its error is None. ``admit_all`` (e.g. the budget's ``admit_tracked``), if
        given, is asked before ``admit`` to admit the rows' series all at once (as in
        :meth:`add_columns`); if it does (True), ``admit`` is not asked.

        >>> w = Windower(step=10, lateness_windows=0)
        >>> [(k, e and e.reason) for k, e in w.add_rows([("a", 1.0, 0.0, 1, 0.0, 1.0, 1.0),
        ...     ("a", 12.0, 0.0, 1, 0.0, 1.0, 1.0), ("a", 3.0, 0.0, 1, 0.0, 1.0, 1.0),
        ...     ("b", 4.0, 0.0, 1, 0.0, 1.0, 1.0)], "events", [7, 8, 8, 9], admit=lambda s: s != "b")]
        [(2, 'late'), (3, None)]
        >>> w.min_needed()
        8
        """
        if self._stale and rows:
            # the group-by keeps recent in its arrays (columnar traffic): these rows too, rather
            # than bring recent up to date now and the arrays again at the next batch (each a
            # pass over every series of the partition). Rows of other types: one by one.
            try:
                series, ts, interval, count, total, lo, hi = map(list, zip(*rows, strict=True))
                cols = (np.array(ts, float), np.array(interval, float), np.array(count, np.int64),
                        np.array(total, float), np.array(lo, float), np.array(hi, float),
                        np.fromiter((-1 if r is None else r for r in refs), np.int64, len(refs)))
            except (TypeError, ValueError, OverflowError):
                cols = None
            if (cols is not None and cols[0].ndim == 1 and all(map(str.__instancecheck__, series))
                    and cols[2].tolist() == count):  # (whole counts only, as rows take them)
                return self.add_columns(series, *cols, kind, admit, admit_all)
        if admit_all is not None and admit_all(map(_first, rows)):
            admit = None
        return self._add_rows(rows, kind, refs, admit)

    def _add_rows(self, rows: Sequence[Row], kind: str, refs: Sequence[int | None],
                  admit: Callable[[str], bool] | None = None) -> list[tuple[int, Exception | None]]:
        """:meth:`add_rows`, one row after the other."""
        bad: list[tuple[int, Exception | None]] = []
        step, lateness_s, max_future = self.step, self.lateness * self.step, self.max_future
        recent, open_, wms, closed_until, starts = self.recent, self.open, self.wm, self.closed_until, self._starts
        self._slot = None  # (the arrays of recent: rebuilt when next needed)
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
                    self.typical = typical = _typical(recent)
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
                    wins[start] = acc = [count, total, lo, hi, -1 if ref is None else ref]
                    self._queue(start, series)
                    if ref is not None:
                        self._hold(ref, acc)
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

    # -- columnar batches ---------------------------------------------------
    def add_columns(self, series: list[str], ts: np.ndarray, interval: np.ndarray, count: np.ndarray,
                    total: np.ndarray, lo: np.ndarray, hi: np.ndarray, refs: np.ndarray, kind: str,
                    admit: Callable[[str], bool] | None = None,
                    admit_all: Callable[[Iterable[str]], bool] | None = None) -> list[tuple[int, Exception | None]]:
        """:meth:`add_rows` of aggregates given as columns (element ``k``: ``series[k]``,
        ``ts[k]``, ... with the reference ``refs[k]``), with the same result: the same windows,
        points (each series' in the same order), rejections and :meth:`min_needed`.

        ``admit_all`` (e.g. the series budget's ``admit_tracked``), if given, is asked first with
        the batch's series: each one once when the partition knows them all (the steady state: a
        batch holds each series several times), else every element's. If it admits them all at
        once (True), ``admit`` is not asked; else ``admit`` is, as without it.

        Where it can tell the row-by-row semantics from the columns alone (every series already
        known to the partition, no element late or ahead of the typical time, no series
        forgotten or dropped midway: the steady state), the elements are merged with one
        vectorised group-by per (series, window) and only the windows' and the typical time's
        steps run one by one (:meth:`_merge_columns`); any other part of the batch goes
        through :meth:`add_rows`.

        >>> w = Windower(step=10, lateness_windows=0)
        >>> a = np.array
        >>> bad = w.add_columns(["a", "a", "a", "b"], a([1.0, 12.0, 3.0, 4.0]), a([0.0] * 4),
        ...     a([1, 1, 1, 1]), a([0.0] * 4), a([1.0] * 4), a([1.0] * 4), a([7, 8, 8, 9]), "events",
        ...     admit=lambda s: s != "b")
        >>> [(k, e and e.reason) for k, e in bad], w.min_needed()
        ([(2, 'late'), (3, None)], 8)
        """
        n = len(series)
        bad: list[tuple[int, Exception | None]] = []
        if not n:
            return bad
        slots: np.ndarray | None = None
        batch: tuple[np.ndarray, np.ndarray, list[str]] | None = None
        if admit_all is not None:
            slots = self._slots_of(series)
            if slots.min() >= 0:
                batch = self._batch_series(slots)
            if admit_all(series if batch is None else batch[2]):
                admit = None
        keep: np.ndarray | None = None
        if admit is not None:
            refused = {s for s in dict.fromkeys(series) if not admit(s)}
            if refused:
                # the rows' path asks again for each element of a refused series (each is a refusal)
                keep = np.fromiter((s not in refused for s in series), bool, n)
                seen: set[str] = set()
                for k in np.flatnonzero(~keep).tolist():
                    s = series[k]
                    if s in seen:
                        admit(s)
                    seen.add(s)
                    bad.append((k, None))
        if keep is not None:
            pos = np.flatnonzero(keep)
            series = [series[k] for k in pos.tolist()]
            ts, interval, count, total = ts[pos], interval[pos], count[pos], total[pos]
            lo, hi, refs = lo[pos], hi[pos], refs[pos]
        cols = (ts, interval, count, total, lo, hi, refs)
        got = self._add_admitted(series, cols, kind, *((slots, batch) if keep is None else ()))
        if keep is not None:
            got = [(int(pos[k]), e) for k, e in got]
            bad = sorted(bad + got, key=_first)
        else:
            bad = got
        return bad

    def _slots_of(self, series: list[str]) -> np.ndarray:
        """Each element's series' slot in the arrays of recent (-1: not in recent)."""
        return np.fromiter(map(self._slots().get, series, repeat(-1)), np.int64, len(series))

    def _batch_series(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The distinct series of a batch whose elements' series have ``slots`` (all in recent),
        numbered in the order of their slots: each element's series' number, each one's slot
        and its name."""
        present = np.zeros(len(self._names), bool)
        present[slots] = True
        su = np.flatnonzero(present)
        return (np.cumsum(present) - 1)[slots], su, list(map(self._names.__getitem__, su.tolist()))

    def _add_admitted(self, series: list[str], cols: tuple[np.ndarray, ...], kind: str,
                      slots: np.ndarray | None = None,
                      batch: tuple[np.ndarray, np.ndarray, list[str]] | None = None
                      ) -> list[tuple[int, Exception | None]]:
        """``slots`` and ``batch``: :meth:`_slots_of` and :meth:`_batch_series` of ``series``,
        if known already."""
        n = len(series)
        out: list[tuple[int, Exception | None]] = []
        start = 0
        for attempt in range(2):
            if start >= n:
                break
            part = series[start:] if start else series
            pcols = tuple(c[start:] for c in cols) if start else cols
            if slots is None or attempt:
                slots, batch = self._slots_of(part), None
            known = bool(slots.min() >= 0)
            cut = len(part)
            if not known and attempt == 0:
                # series new to the partition: row by row up to the last of their first elements
                firsts: dict[str, int] = {}
                for k in np.flatnonzero(slots < 0).tolist():
                    firsts.setdefault(part[k], k)
                cut = max(firsts.values()) + 1
            elif known:
                got = self._merge_columns(part, batch or self._batch_series(slots), pcols, kind)
                if got is not None:
                    out += [(k + start, e) for k, e in got]
                    return out
            got = self._rows(part[:cut], tuple(c[:cut] for c in pcols), kind)
            out += [(k + start, e) for k, e in got]
            start += cut
        return out

    def _rows(self, series: list[str], cols: tuple[np.ndarray, ...],
              kind: str) -> list[tuple[int, Exception | None]]:
        ts, interval, count, total, lo, hi, refs = (c.tolist() for c in cols)
        rows = list(zip(series, ts, interval, count, total, lo, hi, strict=True))
        return self._add_rows(rows, kind, refs)

    def _merge_columns(self, series: list[str], batch: tuple[np.ndarray, np.ndarray, list[str]],
                       cols: tuple[np.ndarray, ...], kind: str) -> list[tuple[int, Exception | None]] | None:
        """The vectorised :meth:`add_rows` of admitted elements of series all in ``recent``
        (``batch``: :meth:`_batch_series` of their slots), or None (nothing changed) where the
        columns cannot tell that it gives the same result."""
        ts, interval, count, total, lo, hi, refs = cols
        closed_until, open_ = self.closed_until, self.open
        n, r_all = len(series), len(self._recent)
        if r_all < 2:
            return None
        step, inf = self.step, math.inf
        # the batch's series (uniq), numbered (codes) in the order of their slots (su)
        codes, su, uniq = batch
        u = len(su)
        # each one's windows before this are closed (NaN: not tracked)
        cu0 = np.fromiter(map(closed_until.get, uniq, repeat(math.nan, u)), float, u)
        if np.isnan(cu0).any():
            return None
        last0 = self._add[su]
        adds0 = self.adds
        adds = adds0 + 1 + np.arange(n)
        adds_end = adds0 + n
        # no series forgotten midway (each one's adds within the horizon of the one before)
        horizon = max(RECENT_ADDS, 2 * r_all)
        order = np.argsort(codes, kind="stable")
        sc = codes[order]
        first_of = np.ones(n, bool)
        first_of[1:] = sc[1:] != sc[:-1]
        last_of = np.ones(n, bool)
        last_of[:-1] = first_of[1:]
        prev = np.empty(n)
        prev[1:] = adds[order][:-1]
        prev[first_of] = last0[sc[first_of]]
        if np.any(adds[order] - 1 - prev > horizon) or np.any(adds[order][last_of] < adds_end - horizon):
            return None
        if u < r_all:  # the oldest series the batch does not touch
            untouched = self._add.copy()
            untouched[su] = adds_end
            if untouched.min() < adds_end - horizon:
                return None
        # the typical time: recomputed every (len(recent) >> 3) + 1 adds, over every claim
        claims = self._claim.copy()
        slots = su[codes]
        mid = (r_all - 1) // 2
        typical, typical_at = self.typical, self._typical_at
        typ = np.empty(n)
        every = (r_all >> 3) + 1
        at = max(adds0 + 1, typical_at + every)
        done = 0
        while at <= adds_end:
            i = at - adds0 - 1
            typ[done:i] = typical
            np.maximum.at(claims, slots[done:i + 1], ts[done:i + 1])
            typical = float(np.partition(claims, mid)[mid])
            typ[i] = typical
            typical_at = at
            done = i + 1
            at += every
        typ[done:] = typical
        if done < n:
            np.maximum.at(claims, slots[done:], ts[done:])
        if np.any(ts > typ + self.max_future):
            return None
        # the partition's progress and floor before each element's windows are judged
        ok = interval <= step
        run = np.maximum.accumulate(np.where(ok, typ, -inf))
        p_before = np.empty(n)
        p_before[0] = -inf
        p_before[1:] = run[:-1]
        p_before = np.maximum(p_before, self.progress)
        floor_before = np.maximum(self._limits(p_before), self.floor)
        # each series' newest accepted timestamp before (and with) each element
        wm0 = np.fromiter(map(self.wm.get, uniq, repeat(-inf, u)), float, u)
        v = np.where(ok, ts, -inf)[order]
        if np.all((v[1:] >= v[:-1]) | first_of[1:]):
            incl = v  # (each series' in time order: the steady state)
        else:
            rank_order = np.argsort(v, kind="stable")
            rank = np.empty(n, np.int64)
            rank[rank_order] = np.arange(n)
            gid = np.cumsum(first_of) - 1
            incl = v[rank_order][np.maximum.accumulate(gid * (n + 1) + rank) - gid * (n + 1)]
        excl = np.empty(n)
        excl[0] = -inf
        excl[1:] = incl[:-1]
        excl[first_of] = -inf
        wm_before, wm_with = np.empty(n), np.empty(n)
        wm_before[order] = np.maximum(excl, wm0[sc])
        wm_with[order] = np.maximum(incl, wm0[sc])
        starts_all = np.floor(ts / step) * step
        # no element late: each window at or after its series' closed bound at its time, at most
        bound = np.maximum(np.maximum(cu0[codes], self._limits(wm_before)), floor_before)
        if np.any(starts_all < bound):
            return None
        # no series dropped midway: each keeps an open window at or after the floor before each
        # of its elements (its newest window at the start, or its newest element's before)
        wins_of = list(map(open_.get, uniq, repeat({}, u)))  # (read only)
        # their starts, series by series (and each one's series' code)
        o_len = np.fromiter(map(len, wins_of), np.int64, u)
        o_start = np.fromiter(chain.from_iterable(wins_of), float, int(o_len.sum()))
        o_code = np.repeat(np.arange(u), o_len)
        open0 = np.full(u, -inf)
        np.maximum.at(open0, o_code, o_start)
        newest = np.empty(n)
        newest[order] = np.floor(excl / step) * step
        if np.any(ok & (np.maximum(open0[codes], newest) < floor_before)):
            return None
        # one accumulator update per (series, window)
        acc_idx = np.flatnonzero(ok)
        bad: list[tuple[int, Exception | None]] = [
            (k, InvalidRecord("bad_value", f"aggregate interval {interval[k]:g}s is longer than the "
                                           f"{step:g}s window")) for k in np.flatnonzero(~ok).tolist()]
        merged = self._group_merge(acc_idx, codes, starts_all, wins_of, o_start, o_code, cols)
        if merged is None:
            return None
        # ... from here on the windower changes
        self._open_windows(uniq, *merged)
        # the series' time
        wm_final = np.full(u, -inf)
        np.maximum.at(wm_final, codes[acc_idx], ts[acc_idx])
        wm_new = np.maximum(wm_final, wm0)
        has = wm_new > -inf
        if has.all():
            self.wm.update(zip(uniq, wm_new.tolist(), strict=True))
        else:
            self.wm.update(zip(compress(uniq, has.tolist()), wm_new[has].tolist(), strict=True))
        # the series' claims and last adds: in the arrays only (recent is brought up to date when read)
        self._claim = claims
        self._add[su] = adds[order][last_of]
        self._stale = True
        self.adds = adds_end
        self.typical, self._typical_at = typical, typical_at
        self.merged += n
        # the windows' closes and the partition's progress, in the elements' order
        lim = self._limits(np.maximum(wm_with, p_before))
        sa = order[ok[order]]  # accepted elements by series, then order
        lim_s = lim[sa]
        ca = codes[sa]
        rise = np.ones(len(sa), bool)
        rise[1:] = (ca[1:] != ca[:-1]) | (lim_s[1:] > lim_s[:-1])
        rise &= lim_s > cu0[ca]  # (a series' bound only rises: at or below its first, no close)
        adv = acc_idx[typ[acc_idx] > p_before[acc_idx]]
        at = np.concatenate([sa[rise], adv])
        what = np.concatenate([ca[rise], np.full(len(adv), -1)])
        value = np.concatenate([lim_s[rise], typ[adv]])
        by_time = np.lexsort((what < 0, at))  # a row's own close, then the progress it brings
        close, advance = self._close_series, self._advance
        for c, x in zip(what[by_time].tolist(), value[by_time].tolist(), strict=True):
            if c < 0:
                advance(x)
            else:
                s = uniq[c]
                if x > closed_until[s]:
                    close(s, x)
        return bad

    def _limits(self, t: np.ndarray) -> np.ndarray:
        """:meth:`_limit` of each of ``t``."""
        return np.floor(t / self.step) * self.step - self.lateness * self.step

    def _group_merge(self, acc_idx: np.ndarray, codes: np.ndarray, starts: np.ndarray,
                     wins: list[dict[float, Acc]], o_start: np.ndarray, o_code: np.ndarray,
                     cols: tuple[np.ndarray, ...]
                     ) -> tuple[np.ndarray, np.ndarray, list[float], list[Acc], np.ndarray] | None:
        """Merge the accepted elements into their windows, one update per (series, window): the
        windows open already (``wins``: each series' by code; ``o_start``: their starts in that
        order, ``o_code``: each one's series' code) updated in place, the new ones
        returned (in (series, start) order) as their series' codes, window numbers (start /
        step), starts, accumulators and lowest refs; None (nothing changed) if a window's count
        could pass MAX_COUNT."""
        ts, interval, count, total, lo, hi, refs = cols
        if not len(acc_idx):
            return np.empty(0, np.int64), np.empty(0, np.int64), [], [], np.empty(0, np.int64)
        c = codes[acc_idx]
        widx = np.floor(ts[acc_idx] / self.step)
        w0 = widx.min()
        width = int(widx.max() - w0) + 1
        key = c * width + (widx - w0).astype(np.int64)
        # (np.unique's, from one stable argsort: the first of each group in the elements' order)
        by_key = np.argsort(key, kind="stable")
        sk = key[by_key]
        starts_g = np.ones(len(sk), bool)
        starts_g[1:] = sk[1:] != sk[:-1]
        ukey, first = sk[starts_g], by_key[starts_g]
        inv = np.empty(len(key), np.int64)
        inv[by_key] = np.cumsum(starts_g) - 1
        g = len(first)
        counts = np.bincount(inv, weights=count[acc_idx].astype(float), minlength=g)
        if counts.max() > 2.0**52:
            return None
        # the open windows of the batch's series, as keys of the same (series, window) numbering
        # (every window start is floor(ts / step) * step: its number is start / step, rounded)
        have = np.zeros(g, bool)
        old: list[Acc] = []
        if len(o_start):
            o_w = np.rint(o_start / self.step) - w0
            o_in = np.flatnonzero((o_w >= 0) & (o_w < width))
            o_key = o_code[o_in] * width + o_w[o_in].astype(np.int64)
            pos = np.minimum(np.searchsorted(ukey, o_key), g - 1)
            hit = ukey[pos] == o_key
            if hit.any():
                o_acc = list(chain.from_iterable(w.values() for w in wins))
                at = pos[hit]
                by = np.argsort(at)
                have[at] = True
                old = [o_acc[k] for k in o_in[hit][by].tolist()]
        cnt = np.zeros(g, np.int64)
        sums = np.full(g, -0.0)
        mins = np.full(g, math.inf)
        maxs = np.full(g, -math.inf)
        if old:
            cnt[have] = [a[0] for a in old]
            if (cnt[have].astype(float) + counts[have]).max() > 2.0**52:
                return None
            sums[have] = [a[1] for a in old]
            mins[have] = [a[2] for a in old]
            maxs[have] = [a[3] for a in old]
        np.add.at(cnt, inv, count[acc_idx])
        np.add.at(sums, inv, total[acc_idx])
        np.minimum.at(mins, inv, lo[acc_idx])
        np.maximum.at(maxs, inv, hi[acc_idx])
        if old:
            for a, n_, s_, l_, h_ in zip(old, cnt[have].tolist(), sums[have].tolist(), mins[have].tolist(),
                                         maxs[have].tolist(), strict=True):
                a[0], a[1], a[2], a[3] = n_, s_, l_, h_
            new = np.flatnonzero(~have)
            first = first[new]
            cnt, sums, mins, maxs = cnt[new], sums[new], mins[new], maxs[new]
        g_ref = refs[acc_idx][first]
        accs = list(map(list, zip(cnt.tolist(), sums.tolist(), mins.tolist(), maxs.tolist(), g_ref.tolist(),
                                  strict=True)))
        g_widx = widx[first].astype(np.int64)
        return c[first], g_widx, starts[acc_idx][first].tolist(), accs, g_ref

    def _open_windows(self, uniq: list[str], g_code: np.ndarray, g_widx: np.ndarray, g_start: list[float],
                      accs: list[Acc], g_ref: np.ndarray) -> None:
        """Open the new windows :meth:`_group_merge` made: each queued at its start, and held by
        its lowest ref (when it has one): one list extend per distinct start and ref."""
        if not accs:
            return
        names = np.array(uniq, dtype=object)[g_code]
        # one float object per window start (as add_rows shares them)
        shared = {}
        starts = self._starts
        for st in dict.fromkeys(g_start):
            shared[st] = starts.setdefault(st, st)
            if len(starts) > MAX_SHARED_STARTS:
                starts.clear()
        g_start = list(map(shared.__getitem__, g_start))
        open_ = self.open
        open_get = open_.get
        for s, st, acc in zip(names.tolist(), g_start, accs, strict=True):
            wins = open_get(s)
            if wins is None:
                wins = open_[s] = {}
            wins[st] = acc
        # queued by start
        due, due_keys = self._due, self._due_keys
        by = np.argsort(g_widx, kind="stable")
        w = g_widx[by]
        cuts = np.flatnonzero(w[1:] != w[:-1]) + 1
        names_by = names[by].tolist()
        for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(w)], strict=True):
            _extend_keyed(due, due_keys, g_start[int(by[a])], names_by[a:b])
        # held by ref
        held, held_keys = self._held, self._held_keys
        by = np.argsort(g_ref, kind="stable")
        r = g_ref[by]
        cuts = np.flatnonzero(r[1:] != r[:-1]) + 1
        r_l = r.tolist()
        entries = [accs[k] for k in by.tolist()]
        for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(r)], strict=True):
            ref = r_l[a]
            if ref >= 0:
                _extend_keyed(held, held_keys, ref, entries[a:b])

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
        keys, held = self._held_keys, self._held
        while keys:
            ref = keys[0]
            entries = held[ref]
            while entries:
                if entries[-1][4] == ref:  # (a closed window's is NaN)
                    return ref
                entries.pop()
            heapq.heappop(keys)
            del held[ref]
        return None

    def _close_series(self, series: str, limit: float) -> None:
        closed_until = self.closed_until
        cu = closed_until[series]
        if limit <= cu:
            return
        step = self.step
        open_ = self.open
        wins = open_.get(series)
        kind = self.kinds.get(series)
        events = kind == "events"
        last = self.last_data.get(series) if events else None
        pos = cu
        if wins:
            todo = [s for s in wins if s < limit]
            if len(todo) > 1:
                todo.sort()
            out = self._ready
            for start in todo:
                if last is not None:
                    first = max(pos, last + step)
                    if first < start:  # (else no zeros: skip the call)
                        self._zeros(series, last, first, start)
                acc = wins.pop(start)
                acc[4] = math.nan  # (stale in _held)
                count, total = int(acc[0]), acc[1]
                if kind == "metrics":
                    value = total / count if count else 0.0
                else:
                    value = count / step
                out.append(Point(series, start, start + step, count, total, acc[2], acc[3], value))
                if events:
                    last = start
                pos = start + step
        if wins is not None and not wins:
            del open_[series]
        if last is not None:
            first = max(pos, last + step)
            if first < limit:
                self._zeros(series, last, first, limit)
        closed_until[series] = limit
        if last is not None and limit <= last + GAP_FILL_WINDOWS * step:
            self.last_data[series] = last
            # more zeros to come (unless its window at the limit is open: queued at the limit
            # when it opened, still, as the floor has not passed it; a second entry does nothing)
            if not wins or limit not in wins:
                _push_keyed(self._due, self._due_keys, limit, series)
        else:
            self.last_data.pop(series, None)
            if not wins:
                if limit <= self.floor:  # nothing left that the partition floor does not cover
                    del closed_until[series], self.kinds[series]
                    self.wm.pop(series, None)
                else:
                    _push_keyed(self._due, self._due_keys, limit, series)  # forget it once the floor passes

    def _zeros(self, series: str, last: float, first: float, end: float) -> None:
        end = min(end, last + (GAP_FILL_WINDOWS + 1) * self.step)
        n = int(round((end - first) / self.step))
        for i in range(max(0, n)):
            s = first + i * self.step
            self._ready.append(Point(series, s, s + self.step, 0, 0.0, math.inf, -math.inf, 0.0))

