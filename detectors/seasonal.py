"""A seasonal profile: the exponentially weighted mean of a series at each phase.

The profile of period ``P`` steps keeps one value per phase (or per bin of
phases when ``P`` is larger than ``max_bins``, e.g. a weekly profile of
one-minute steps in 5-minute bins), updated each time the phase comes round.
It is the building block of :class:`detectors.forecasting.SeasonalEnsemble`.
"""

from __future__ import annotations

import math
from array import array

from river import base


class SeasonalProfile(base.Base):
    """EW mean of the series per phase of a period, stored in 4-byte floats.

    Parameters
    ----------
    period
        Period in steps (e.g. 1,440 for a day of one-minute steps).
    alpha
        Weight of a new period's value (per visit of a phase; a bin visited
        ``k`` times per period learns with ``alpha / k`` per visit).
    max_bins
        Upper bound on stored values; phases are grouped into equal bins.

    Examples
    --------
    >>> p = SeasonalProfile(period=4, alpha=0.5)
    >>> for i, y in enumerate([1, 2, 3, 4, 3, 4, 5, 6]):
    ...     p.learn_one(i, y)
    >>> [p.value(i) for i in range(4)]
    [2.0, 3.0, 4.0, 5.0]
    >>> p.seen(9)
    True
    >>> SeasonalProfile(period=10).value(3) is None
    True
    """

    def __init__(self, period: int, alpha: float = 0.2, max_bins: int = 2016) -> None:
        self.period = period
        self.alpha = alpha
        self.max_bins = max_bins
        self._bins = min(period, max_bins)
        self._width = period / self._bins
        self._values = array("f", [math.nan]) * self._bins

    def _bin(self, idx: int) -> int:
        return min(int((idx % self.period) / self._width), self._bins - 1)

    def seen(self, idx: int) -> bool:
        """Whether the phase of step ``idx`` has been learnt at least once."""
        return not math.isnan(self._values[self._bin(idx)])

    def value(self, idx: int) -> float | None:
        """Profile value at the phase of step ``idx`` (``None`` if never seen)."""
        v = self._values[self._bin(idx)]
        return None if math.isnan(v) else v

    def shift(self, delta: float) -> None:
        """Add ``delta`` to every learnt phase (re-base after a level shift).

        >>> p = SeasonalProfile(period=2, alpha=1.0)
        >>> p.learn_one(0, 1.0); p.learn_one(1, 3.0); p.shift(10.0)
        >>> p.value(0), p.value(1)
        (11.0, 13.0)
        """
        vals = self._values
        for b in range(len(vals)):
            vals[b] += delta  # NaN (never seen) stays NaN

    def learn_one(self, idx: int, y: float) -> None:
        """Learn value ``y`` observed at step ``idx``."""
        b = self._bin(idx)
        v = self._values[b]
        if math.isnan(v):
            self._values[b] = y
        else:
            self._values[b] = v + (self.alpha / self._width) * (y - v)
