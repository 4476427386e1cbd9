"""Stuck-sensor detection: a series that stops changing.

A value repeated for much longer than any run of repeats seen before is the
signature of a stuck sensor, a dead exporter reporting its last value, or a
counter that stopped. A series that has been constant from the start has no
"before" and is never flagged.
"""

from __future__ import annotations

import math

from detectors.base import AnomalyDetector


class FlatlineDetector(AnomalyDetector):
    """Scores runs of identical values that are longer than ever before.

    A run of ``r`` repeats scores 0 until ``limit = max(min_run, factor *
    longest earlier run)``, then ``0.5 + 0.5 * (r - limit) / limit`` (capped at
    1). Nothing is flagged before the series has changed value ``warmup``
    times.

    Parameters
    ----------
    factor
        How many times longer than the longest earlier run a run must be.
    min_run
        Shortest run that can be flagged.
    warmup
        Value changes needed before any flag.

    Examples
    --------
    >>> d = FlatlineDetector(min_run=5)
    >>> for i in range(100):
    ...     d.learn_one(float(i % 10))
    >>> scores = []
    >>> for _ in range(12):
    ...     scores.append(d.score_one(7.0))
    ...     d.learn_one(7.0)
    >>> [round(s, 2) for s in scores]
    [0.0, 0.0, 0.0, 0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0, 1.0]
    >>> c = FlatlineDetector()
    >>> for _ in range(500):
    ...     c.learn_one(1.0)
    >>> c.score_one(1.0)
    0.0
    """

    def __init__(self, factor: float = 3.0, min_run: int = 10, warmup: int = 20) -> None:
        self.factor = factor
        self.min_run = min_run
        self.warmup = warmup
        self._last: float | None = None
        self._run = 0
        self._longest = 0
        self._changes = 0

    def score_one(self, x: float, t: float | None = None) -> float:
        if self._changes < self.warmup or x != self._last:
            return 0.0
        run = self._run + 1
        limit = max(float(self.min_run), self.factor * self._longest)
        if run < limit:
            return 0.0
        s = 0.5 + 0.5 * (run - limit) / limit
        return 1.0 if s > 1.0 else s

    def learn_one(self, x: float, t: float | None = None) -> None:
        if not math.isfinite(x):
            return
        if x == self._last:
            self._run += 1
            return
        if self._last is not None:
            self._changes += 1
            if self._run > self._longest:
                self._longest = self._run
        self._last = x
        self._run = 1
