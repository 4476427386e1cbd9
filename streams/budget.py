"""Bounded memory: which series one worker holds (pure, no Kafka).

A worker tracks at most ``limit`` series (``FORESIGHT_MAX_SERIES``, derived
from its memory limit by default). Each tracked series costs its windows,
models and view history; :class:`SeriesBudget` says which series may come in
and which have gone idle:

- a series already tracked is always admitted (nothing tracked is refused);
- a series named by a PredictiveScaler (``protected``) is always admitted and
  never evicted, and does not count against the limit;
- a new series is admitted while fewer than ``limit`` are tracked; beyond it
  it is refused, and the caller dead-letters its data as ``series_limit``;
- a series with no input for ``idle_seconds`` of wall time is *idle*: the
  caller closes its windows, checkpoints its model and view, drops them from
  memory and calls :meth:`forget`, which frees its place. If it comes back,
  it is a new series again (admitted if there is room, warm from its
  checkpoint).

Time is passed in (monotonic seconds), so the rules are testable without a clock.

>>> b = SeriesBudget(limit=2, idle_seconds=60, protected={"shop/checkout"})
>>> b.admit("a", now=0), b.admit("b", now=0), b.admit("c", now=0)
(True, True, False)
>>> b.admit("shop/checkout", now=0), len(b)           # protected: taken beyond the limit
(True, 3)
>>> b.admit("a", now=50), b.idle(now=100)              # "b" quiet for 100 s, "a" for 50 s
(True, ['b'])
>>> b.forget("b"); b.admit("c", now=100)               # its place is free again
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import repeat

#: most series evicted per timer tick (each one pickles and signs a model: about 1 ms)
EVICT_BATCH = 500


class SeriesBudget:
    """The series one worker tracks, bounded by ``limit`` (see the module doc).

    Parameters
    ----------
    limit
        Most series tracked (protected series are taken beyond it).
    idle_seconds
        Seconds without input after which a series is idle; 0: never.
    protected
        Series that are always admitted and never idle (PredictiveScaler series).
    """

    __slots__ = ("limit", "idle_seconds", "protected", "last", "refused", "_protected_in")

    def __init__(self, limit: int, idle_seconds: float = 0.0, protected: Iterable[str] = ()) -> None:
        self.limit = max(0, int(limit))
        self.idle_seconds = float(idle_seconds)
        self.protected = frozenset(protected)
        #: tracked series -> monotonic time of its last input
        self.last: dict[str, float] = {}
        #: new series refused since start (each refusal is one dead-lettered element)
        self.refused = 0
        self._protected_in = 0  # protected series tracked (not counted against the limit)

    def __len__(self) -> int:
        return len(self.last)

    @property
    def counted(self) -> int:
        """Tracked series that count against the limit (every one but the protected)."""
        return len(self.last) - self._protected_in

    def __contains__(self, series: object) -> bool:
        return series in self.last

    def admit(self, series: str, now: float, touch: bool = True) -> bool:
        """Whether ``series`` may be tracked; a new one admitted is tracked from ``now``.

        ``touch=False`` admits without counting it as input (a closed window's
        point is not a sign of life: a quiet event series gets zero-rate points).
        """
        last = self.last
        if series in last:
            if touch:
                last[series] = now
            return True
        if series in self.protected:
            self._protected_in += 1
            last[series] = now
            return True
        if len(last) - self._protected_in < self.limit:
            last[series] = now
            return True
        self.refused += 1
        return False

    def admit_tracked(self, series: Iterable[str], now: float) -> bool:
        """:meth:`admit` of each of ``series`` (e.g. a batch's elements') in one step when every
        one is tracked already (True: each counted as input at ``now``); else nothing is
        admitted (False: ask :meth:`admit` one by one, in order, which counts the tracked ones at
        ``now`` as this does).

        >>> b = SeriesBudget(limit=2)
        >>> b.admit("a", now=0), b.admit_tracked(["a", "b", "a"], now=5), b.last
        (True, False, {'a': 5})
        >>> b.admit("b", now=0), b.admit_tracked(["b", "a", "b"], now=6), b.last
        (True, True, {'a': 6, 'b': 6})
        """
        last = self.last
        n = len(last)
        last.update(zip(series, repeat(now)))
        new = len(last) - n
        for _ in range(new):  # (the series not tracked: the last keys, in order)
            last.popitem()
        return not new

    def idle(self, now: float) -> list[str]:
        """Tracked series with no input for ``idle_seconds`` (never a protected one), oldest first."""
        if self.idle_seconds <= 0:
            return []
        cut = now - self.idle_seconds
        out = [(t, s) for s, t in self.last.items() if t <= cut and s not in self.protected]
        out.sort()
        return [s for _, s in out]

    def forget(self, series: str) -> None:
        """Stop tracking ``series`` (evicted, or its partition moved to another worker)."""
        if self.last.pop(series, None) is not None and series in self.protected:
            self._protected_in -= 1

    def retain(self, keep: Callable[[str], bool]) -> None:
        """Keep only the series for which ``keep`` is true (after a rebalance)."""
        for s in [s for s in self.last if not keep(s)]:
            self.forget(s)
