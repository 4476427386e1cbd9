"""Record calibration: how far a statistic is beyond the largest value it has taken.

A detector statistic (a residual, a level shift, a volatility) has a scale that
differs per series and drifts over time. Rather than assuming a distribution,
:class:`RecordScaler` scores a new value of the statistic by its ratio to the
statistic's running record (its maximum so far, optionally decaying). Scores
share one scale across statistics and series:

* below the record, ``0.5 * ratio`` (so always below 0.5);
* at the record, 0.5;
* beyond it, ``0.5 + (ratio - 1)``, capped at 1;
* 1 for any positive value of a statistic that has always been 0.

The expected number of records in ``n`` exchangeable values grows only as
``log n``, so record-breaking is naturally sparse on stationary data, which is
what an alerting threshold needs.

With ``relax`` > 0, values learnt during an incident raise a separate *peak*
instead of the record; the statistic is scored against the larger of the two,
and the peak relaxes back to the record while the statistic is quiet, so an
incident masks later ones only for a while.
"""

from __future__ import annotations


class RecordScaler:
    """Score a non-negative statistic against its running record.

    Parameters
    ----------
    warmup
        Values learnt before the score may exceed 0.5 (records are frequent
        early in a stream).
    decay
        Relative decay of the record per learnt value (0 keeps the all-time
        maximum).
    gain
        Multiplies the statistic before it is compared with the record; below
        1 it asks for a larger excess before alarming.
    relax
        Values learnt during an incident raise a separate peak that relaxes
        back to the record by this share per quiet value (0: incidents raise
        the record for good).
    quiet
        A value is quiet, and lets the peak relax, when it is below this share
        of the record: an incident is forgotten only while the series is calm.

    Examples
    --------
    >>> r = RecordScaler(warmup=3)
    >>> for u in (1.0, 2.0, 1.5, 2.0):
    ...     r.learn(u)
    >>> r.score(1.0), r.score(2.0), r.score(2.5), r.score(9.0)
    (0.25, 0.5, 0.75, 1.0)

    An incident's peak masks a second incident only until it has relaxed:

    >>> r = RecordScaler(warmup=0, relax=0.01)
    >>> r.learn(1.0)
    >>> r.learn(8.0, incident=True)
    >>> r.score(8.0)
    0.5
    >>> for _ in range(1000):
    ...     r.learn(0.2)
    >>> round(r.peak, 3), r.score(8.0)
    (1.0, 1.0)
    """

    __slots__ = ("warmup", "decay", "gain", "relax", "quiet", "record", "n", "peak")

    def __init__(
        self,
        warmup: int = 300,
        decay: float = 0.0,
        gain: float = 1.0,
        relax: float = 0.0,
        quiet: float = 0.5,
    ) -> None:
        self.warmup = warmup
        self.decay = decay
        self.gain = gain
        self.relax = relax
        self.quiet = quiet
        self.record = 0.0
        self.n = 0
        self.peak = 0.0

    def score(self, u: float) -> float:
        """Score of the statistic value ``u`` (does not learn it)."""
        rec = self.record if self.record > self.peak else self.peak
        if rec <= 0.0:
            # a statistic that has been exactly 0 so far: any change is new
            return 1.0 if u > 0.0 and self.n >= self.warmup else 0.0
        ratio = self.gain * u / rec
        if ratio <= 1.0:
            return 0.5 * ratio
        if self.n < self.warmup:
            return 0.5
        s = ratio - 0.5
        return 1.0 if s > 1.0 else s

    def learn(self, u: float, incident: bool = False) -> None:
        """Update the record with ``u``.

        With ``relax`` > 0, values learnt during an ``incident`` raise a
        separate peak that relaxes back towards the record by ``relax`` per
        quiet value (below ``quiet`` times the record), so one incident does
        not mask the next one of the same size, while values learnt outside
        incidents raise the record for good.
        """
        rec = self.record * (1.0 - self.decay)
        if self.relax and self.peak > rec and u < self.quiet * rec:
            self.peak -= self.relax * (self.peak - rec)
        if incident and self.relax:
            if u > self.peak:
                self.peak = u
        else:
            self.record = u if u > rec else rec
        self.n += 1

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        self.relax = 0.0
        self.quiet = 0.5
        self.peak = 0.0
        names = self.__slots__ if len(state) == len(self.__slots__) else (
            "warmup", "decay", "gain", "record", "n")
        for k, v in zip(names, state, strict=True):
            setattr(self, k, v)

    def __repr__(self) -> str:
        return (f"RecordScaler(warmup={self.warmup}, decay={self.decay}, gain={self.gain}, "
                f"relax={self.relax}, quiet={self.quiet})")
