"""Drift in a forecaster's errors: notice that the model has stopped fitting.

A service changes (a deploy, a new traffic mix, a migrated database) and a
model fitted to the old regime silently loses accuracy. :class:`ErrorDrift`
watches a stream of forecast errors (absolute errors scaled by the series' own
recent level, so one setting suits every series) and reports when their level
has risen for good: a one-sided CUSUM (Page, 1954) on the errors divided by
their own pre-change mean. Each error's contribution is capped, so one
spike (an anomaly, which the anomaly detector reports) does not make a drift;
a sustained rise does, within a few steps.

:class:`ErrorDrift` follows River's drift-detector protocol (``update(x)``, then
``drift_detected``), like :class:`river.drift.PageHinkley`, whose cumulative
test it specialises to non-negative errors of unknown scale.
"""

from __future__ import annotations

from river import base


class ErrorDrift(base.Base):
    """One-sided CUSUM on errors relative to their own running mean.

    Parameters
    ----------
    threshold
        Cumulative excess (in units of the baseline error) that signals a
        drift.
    slack
        Excess tolerated per step (errors up to ``1 + slack`` times the
        baseline add nothing).
    cap
        Largest ratio one error contributes (one spike is not a drift).
    alpha
        Smoothing of the baseline (the errors' mean while no change is
        building up).
    warmup
        Errors that form the first baseline; no drift is reported before.

    Examples
    --------
    Errors around 1, then around 10: the rise is reported within a few
    steps, a single spike is not:

    >>> import random
    >>> rng = random.Random(0)
    >>> d = ErrorDrift()
    >>> hits = [d.update(rng.expovariate(1.0)) for _ in range(300)]
    >>> any(hits)
    False
    >>> d.update(50.0)
    False
    >>> hits = [d.update(10 * rng.expovariate(1.0)) for _ in range(30)]
    >>> 0 < hits.index(True) < 20
    True
    """

    def __init__(
        self,
        threshold: float = 20.0,
        slack: float = 2.0,
        cap: float = 6.0,
        alpha: float = 0.02,
        warmup: int = 30,
    ) -> None:
        self.threshold = threshold
        self.slack = slack
        self.cap = cap
        self.alpha = alpha
        self.warmup = warmup
        self.n = 0
        self.baseline = 0.0
        self.cusum = 0.0
        self.drift_detected = False

    def update(self, x: float) -> bool:
        """Add one error; return (and set ``drift_detected``) whether a drift ends here."""
        self.drift_detected = False
        x = abs(float(x))
        self.n += 1
        if self.n <= self.warmup:
            self.baseline += (x - self.baseline) / self.n
            return False
        if self.baseline > 0.0:
            r = min(x / self.baseline, self.cap)
        else:
            r = self.cap if x > 0.0 else 0.0
        if self.cusum == 0.0:
            # the baseline learns only while no change is building up
            self.baseline += self.alpha * (min(x, self.cap * self.baseline) - self.baseline)
        self.cusum = max(0.0, self.cusum + r - 1.0 - self.slack)
        if self.cusum > self.threshold:
            self.drift_detected = True
            self.cusum = 0.0
        return self.drift_detected

    def rebase(self, level: float) -> None:
        """Take ``level`` as the new baseline error (after the model adapted)."""
        self.baseline = level
        self.cusum = 0.0
