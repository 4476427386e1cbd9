"""Each series at its own step: the worker models a series at its natural step, not the window.

A metric sampled every 5 minutes, windowed at 10 s, is one point every 30
windows with gaps in between (no sample is no data, never a zero: see
:mod:`streams.windowing`). Modelled at 10 s, its forecaster would track
horizons of 10 s that no point ever scores, and stay cold forever. So the
worker estimates each series' **natural step** online from the series itself:
the median (low) of its recent intervals between points, which are whole
multiples of the window (points start on window boundaries), so the step is
the sampling interval rounded up to a multiple of the window. Event series get
a point every window while active (windows without events are zero-rate
points), so their step is the window.

:class:`StepEstimator` is the pure part, one per series: it decides the step
after :data:`FIRST_ESTIMATE_GAPS` intervals and keeps the last few points, so
the model built at that step learns them again and no point is lost: a series
sampled every 5 minutes is warm after as many points as with 5-minute windows.
Afterwards the step changes only when the median over the last
:data:`KEEP_GAPS` intervals says so (the sampling interval changed); the model
then starts again at the new step from those points.

>>> e = StepEstimator(window=10.0)
>>> [e.observe(t, 1.0) for t in (0.0, 300.0, 600.0)]    # two intervals: not yet
[None, None, None]
>>> e.observe(900.0, 1.0)                                 # the third decides: 300 s
300.0
>>> e.replay()                                            # what the new model learns first
[(0.0, 1.0), (300.0, 1.0), (600.0, 1.0), (900.0, 1.0)]
>>> e.observe(1200.0, 1.0) is None, e.observe(1800.0, 1.0) is None   # a missing sample is a gap
(True, True)
"""

from __future__ import annotations

import math
from array import array

from streams.settings import Settings

#: intervals between points before a series' step is decided (the points before are
#: kept and learnt again by the model at that step)
FIRST_ESTIMATE_GAPS = 3
#: intervals the step is re-estimated over once decided; the last KEEP_GAPS + 1 points are kept
KEEP_GAPS = 9


def round_up_to_window(seconds: float, window: float) -> float:
    """``seconds`` rounded up to a whole number of windows (at least one).

    >>> round_up_to_window(300.0, 10.0), round_up_to_window(301.0, 10.0), round_up_to_window(3.0, 10.0)
    (300.0, 310.0, 10.0)
    """
    return max(1, math.ceil(seconds / window - 1e-9)) * window


class StepEstimator:
    """The natural step of one series, estimated from the starts of its points.

    Parameters
    ----------
    window
        The worker's window length (seconds): steps are whole multiples of it.
    first_after
        Intervals seen before the first estimate.
    keep
        Intervals the estimate is made over afterwards.

    ``observe`` returns the new step when the model should be (re)built at it,
    else None; :meth:`replay` then gives the kept points, oldest first, the
    current one last.

    One is held per series a worker models, so it is small: the last ``keep + 1``
    points' starts and values in one ring of doubles (an ``array``, about 330 bytes
    with the object; the intervals are the differences of the starts), not deques of
    tuples (about 2.4 KB).

    >>> import sys
    >>> e = StepEstimator(10.0)
    >>> for t in range(30):
    ...     _ = e.observe(10.0 * t, 1.0)
    >>> sys.getsizeof(e) + sys.getsizeof(e._ring) < 400, e.gaps[-3:], e.replay()[-1]
    (True, [10.0, 10.0, 10.0], (290.0, 1.0))
    """

    __slots__ = ("window", "first_after", "keep", "step", "_ring", "_n", "_head", "_settled")

    def __init__(self, window: float, first_after: int = FIRST_ESTIMATE_GAPS, keep: int = KEEP_GAPS,
                 step: float | None = None) -> None:
        self.window = float(window)
        self.first_after = first_after
        self.keep = keep
        #: the decided step (None: not yet)
        self.step = step
        #: the kept points: starts at [0, keep + 1), values at [keep + 1, 2 (keep + 1)), a ring
        #: whose oldest point is at ``_head``; ``_n`` points held
        self._ring = array("d", [0.0]) * (2 * (keep + 1))
        self._n = 0
        self._head = 0
        #: the median of the last ``keep`` intervals (all kept) gave ``step``
        self._settled = False

    def _starts(self) -> list[float]:
        """The kept points' starts, oldest first."""
        size, ring, head = self.keep + 1, self._ring, self._head
        return [ring[(head + i) % size] for i in range(self._n)]

    @property
    def gaps(self) -> list[float]:
        """The intervals between the kept points, oldest first."""
        t = self._starts()
        return [t[i + 1] - t[i] for i in range(len(t) - 1)]

    def observe(self, t: float, value: float) -> float | None:
        """Note the point starting at ``t``; the step to rebuild the model at, if it changed."""
        size, ring, n = self.keep + 1, self._ring, self._n
        if n:
            gap = t - ring[(self._head + n - 1) % size]
            if gap <= 0:
                return None  # a replayed or out-of-order point: it says nothing about the interval
        if n < size:
            at = (self._head + n) % size
            self._n = n = n + 1
        else:  # full: the newest takes the oldest's place
            at = self._head
            self._head = (at + 1) % size
        ring[at] = t
        ring[size + at] = value
        if self._settled and (gap == self.step or round_up_to_window(gap, self.window) == self.step):
            # the median of the last ``keep`` intervals was the step's; one of them replaced by an
            # interval of that step leaves the median between the two: the same step (the common
            # case, every point, checked without sorting)
            return None
        needed = self.first_after if self.step is None else self.keep
        self._settled = False
        if n - 1 < needed:
            return None
        recent = sorted(self.gaps[-needed:])
        estimate = round_up_to_window(recent[(len(recent) - 1) // 2], self.window)
        self._settled = needed == self.keep and n - 1 == needed and estimate == self.step
        if estimate == self.step:
            return None
        self.step = estimate
        return estimate

    def replay(self) -> list[tuple[float, float]]:
        """The kept points (start, value), oldest first: what a model built now learns first."""
        size, ring, head = self.keep + 1, self._ring, self._head
        return [(ring[(head + i) % size], ring[size + (head + i) % size]) for i in range(self._n)]


def model_shape(settings: Settings, step: float) -> tuple[int | None, int]:
    """(seasonal period in steps or None to derive it, forecast horizon in steps) of a series
    modelled at ``step``: the settings' period and horizon (given in windows or seconds) in
    that step.

    >>> model_shape(Settings(), 10.0), model_shape(Settings(), 300.0)   # horizon 600 s
    ((None, 62), (None, 6))
    >>> model_shape(Settings(period_steps=8640), 300.0)   # a day of 10 s windows: 288 steps of 5 min
    (288, 6)
    >>> model_shape(Settings(horizon_steps=120), 60.0)    # 120 windows of 10 s: 20 steps of a minute
    (None, 20)
    """
    window = settings.window_seconds
    period = None
    if settings.period_steps:
        p = settings.period_steps * window / step
        period = round(p) if p >= 2 and abs(p - round(p)) < 1e-6 else None
    if settings.horizon_steps > 0:
        horizon = max(1, math.ceil(settings.horizon_steps * window / step - 1e-9))
    else:
        horizon = settings.replace(window_seconds=step).forecast_horizon_steps()
    return period, horizon
