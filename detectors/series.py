"""Everything Foresight learns about one series: a detector and a forecaster.

The worker keeps one :class:`SeriesModel` per series (in a Faust table) and
calls :meth:`SeriesModel.update` once per closed window; ``foresight detect``
and the backtest use the very same object, point by point.

>>> import math
>>> from detectors.defaults import make_series_model
>>> m = make_series_model(step_seconds=60, period_steps=10)
>>> for i in range(100):
...     u = m.update(100 + 10 * math.sin(2 * math.pi * i / 10), t=60.0 * i)
>>> 0.0 <= u.score <= 1.0, len(u.intervals) == m.horizon
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

from detectors.base import AnomalyDetector, Forecaster
from detectors.drift import ErrorDrift
from detectors.flatline import FlatlineDetector
from detectors.forecast import Forecast, ForecastPoint, Interval


@dataclass(frozen=True, slots=True)
class SeriesUpdate:
    """Result of one update: the point's anomaly score and the new forecast.

    >>> from detectors.forecast import Interval
    >>> u = SeriesUpdate(0.2, False, (Interval(10.0, 8.0, 13.0),), True, 0.05)
    >>> u.intervals[0].upper, u.warm
    (13.0, True)
    """

    score: float
    anomalous: bool
    intervals: tuple[Interval, ...]
    warm: bool
    error: float | None
    #: the data is not trusted (an anomalous episode or a stuck sensor): the
    #: controller must not scale down on it, even where ``score`` is low
    untrusted: bool = False
    #: the forecaster's errors changed regime and it is re-learning: its
    #: forecast is not to be trusted until this is False again
    drifting: bool = False
    #: a drift was detected at this very update (the start of a drifting spell)
    drift_started: bool = False


class SeriesModel:
    """A detector and a forecaster for one series, updated once per window.

    A point flagged anomalous does not drag the forecaster: from a flagged
    point on, and while the values stay outside the forecaster's one-step
    prediction interval, a warm forecaster learns them clipped into that
    interval (so it still moves towards them, at the pace of its band). After
    ``max_skip`` such points the values are learnt as they are, so a real
    level shift is learnt within that bound whatever the detector says.

    Drift: the one-step forecast's absolute error, scaled by the series' recent
    level, is watched by :class:`~detectors.drift.ErrorDrift`. When its regime
    rises, the forecaster re-bases on the new regime
    (:meth:`~detectors.base.Forecaster.adapt`), values are learnt as they are
    (no clipping: the new regime is the norm), and updates say ``drifting``
    until the mean error over about ``recovery_window`` steps is back within
    ``recovered_ratio`` times its level before the change, or for at most
    ``recovery_window`` steps (then the new error level is the norm).
    Changes shorter than an anomalous episode (``max_skip``) are anomalies,
    not drifts.

    Parameters
    ----------
    detector
        Scores each value before learning it.
    forecaster
        Forecasts ``horizon`` steps after each value.
    threshold
        Scores at or above it flag the point as anomalous.
    horizon
        Number of steps forecast after each update.
    max_skip
        Longest anomalous episode (in points) that is clipped before values
        are learnt as they are again.
    recovery_window
        Steps over which the error is averaged to judge recovery (default:
        the forecaster's shortest seasonal period, else 60).
    recovered_ratio
        Recent error, relative to the error before the drift, below which
        the series has recovered.
    adapt_on_drift
        Re-base the forecaster and learn values unclipped while drifting
        (False: only report ``drifting``).

    Examples
    --------
    A sensor stuck at zero is flagged, and the forecaster does not follow it
    down until the episode has lasted ``max_skip`` points:

    >>> from detectors.forecasting import SeasonalEnsemble
    >>> class Flags:  # a stand-in detector: flags exact zeros
    ...     def score_one(self, x, t=None): return 1.0 if x == 0 else 0.0
    ...     def learn_one(self, x, t=None): pass
    >>> m = SeriesModel(Flags(), SeasonalEnsemble(horizon=2, min_samples=5), max_skip=10)
    >>> for i in range(50):
    ...     u = m.update(100.0 + (i % 5), t=60.0 * i)
    >>> for i in range(50, 58):
    ...     u = m.update(0.0, t=60.0 * i)
    >>> u.anomalous, u.intervals[0].yhat > 80
    (True, True)
    >>> for i in range(58, 90):
    ...     u = m.update(0.0, t=60.0 * i)
    >>> u.intervals[0].yhat < 20
    True
    """

    __slots__ = (
        "detector",
        "forecaster",
        "threshold",
        "horizon",
        "updates",
        "max_skip",
        "anomalous_run",
        "stuck",
        "drift",
        "drifting",
        "recovery_window",
        "recovered_ratio",
        "adapt_on_drift",
        "_drift_state",
    )

    def __init__(
        self,
        detector: AnomalyDetector,
        forecaster: Forecaster,
        threshold: float = 0.9,
        horizon: int = 6,
        max_skip: int = 20,
        recovery_window: int | None = None,
        recovered_ratio: float = 1.5,
        adapt_on_drift: bool = True,
    ) -> None:
        self.detector = detector
        self.forecaster = forecaster
        self.threshold = threshold
        self.horizon = horizon
        self.max_skip = max_skip
        self.updates = 0
        self.anomalous_run = 0
        # a sensor repeating the exact same value for far longer than ever
        # before is stuck, whatever the detector's warm-up says
        self.stuck = FlatlineDetector(factor=3.0, min_run=3, warmup=20)
        if recovery_window is None:
            periods = [p for p in getattr(forecaster, "periods", ()) if p and p > 1]
            recovery_window = min(periods) if periods else 60
        self.recovery_window = recovery_window
        self.recovered_ratio = recovered_ratio
        self.adapt_on_drift = adapt_on_drift
        self.drift = ErrorDrift()
        self.drifting = False
        # [level of |y|, recent mean scaled error, error before the drift,
        #  steps drifting, 1 if a drift was noticed during an anomalous episode]
        self._drift_state = [0.0, 0.0, 0.0, 0, 0.0]

    def __setstate__(self, state: object) -> None:
        # checkpoints written before ``max_skip`` existed restore with its default
        self.max_skip = 20
        self.anomalous_run = 0
        self.stuck = FlatlineDetector(factor=3.0, min_run=3, warmup=20)
        # ... and before drift was watched
        self.recovery_window = 60
        self.recovered_ratio = 1.5
        self.adapt_on_drift = True
        self.drift = ErrorDrift()
        self.drifting = False
        self._drift_state = [0.0, 0.0, 0.0, 0, 0.0]
        slots = state[1] if isinstance(state, tuple) else state
        for k, v in (slots or {}).items():  # type: ignore[union-attr]
            setattr(self, k, v)

    def score(self, value: float, t: float | None = None) -> float:
        """Score ``value`` and learn it: the one code path of worker and CLI."""
        s = self.detector.score_one(value, t)
        self.detector.learn_one(value, t)
        return s

    def update(self, value: float, t: float | None = None) -> SeriesUpdate:
        """Score ``value``, let the forecaster learn it, and forecast ``horizon`` steps."""
        score = self.score(value, t)
        anomalous = score >= self.threshold
        stuck = self.stuck.score_one(value) >= 0.5
        self.stuck.learn_one(value)
        # the one-step forecast made before this value (None while cold)
        nxt = self.forecaster.forecast(1)[0] if self.forecaster.warm else None
        if self.drifting and self.adapt_on_drift:
            self.anomalous_run = 0
            learnt = value
        else:
            learnt = self._robust(value, anomalous or stuck, nxt)
        # an episode's later points are not trusted, unless they are above the band: a
        # load higher than forecast is real capacity need (the scaler's floor follows it),
        # while a value below it (a dropout, a stuck sensor) must never scale down
        episode = anomalous or stuck or 0 < self.anomalous_run <= self.max_skip
        above = nxt is not None and value > nxt.upper
        untrusted = anomalous or stuck or (episode and not above)
        started = self._watch_drift(value, nxt, episode)
        self.forecaster.learn_one(learnt, t)
        if started and self.adapt_on_drift:
            self.forecaster.adapt()
        self.updates += 1
        intervals = tuple(self.forecaster.forecast(self.horizon))
        return SeriesUpdate(score, anomalous, intervals, self.forecaster.warm, self.forecaster.error,
                            untrusted, self.drifting, started)

    def _watch_drift(self, value: float, nxt: Interval | None, episode: bool) -> bool:
        """Feed the one-step error to the drift detector; True when a drift starts.

        The error is ``|value - forecast|`` over the series' recent mean
        absolute level, so the detector's setting suits every series. Points
        of an anomalous episode (at most ``max_skip`` long) are not fed: a
        short incident is an anomaly, a lasting change is a drift.
        """
        st = self._drift_state
        a = 2.0 / (self.recovery_window + 1.0)
        st[0] += (a if st[0] else 1.0) * (abs(value) - st[0])
        if nxt is None:
            return False
        err = abs(value - nxt.yhat) / (st[0] + 1e-12)
        st[1] += a * (err - st[1]) if self.drift.n else err - st[1]
        if self.drifting:
            st[3] += 1
            if st[1] <= self.recovered_ratio * st[2]:
                self.drifting = False
                self.drift.rebase(st[2])
            elif st[3] >= self.recovery_window:  # a noisier regime: the new norm
                self.drifting = False
                self.drift.rebase(st[1])
            return False
        baseline = self.drift.baseline
        fired = self.drift.update(err)
        if fired and not st[4]:
            st[2] = baseline  # the error level before the change
        if fired and episode:
            st[4] = 1.0  # a drift if it outlasts the anomalous episode
            return False
        if not fired and st[4] and self.anomalous_run <= self.max_skip:
            if not episode:  # the values came back: it was an anomaly
                st[4] = 0.0
                self.drift.rebase(st[2])
            return False
        if not (fired or st[4]):
            return False
        st[3] = st[4] = 0
        self.drifting = True
        return True

    def _robust(self, value: float, anomalous: bool, nxt: Interval | None) -> float:
        """The value the forecaster learns: clipped into its band during an episode.

        An episode starts at a flagged point and lasts while the values stay
        outside the forecaster's one-step band ``nxt`` (a detector may flag
        only the first point of a stuck sensor or a shift), at most
        ``max_skip`` steps.
        """
        if not (anomalous or self.anomalous_run) or nxt is None:
            self.anomalous_run = 0
            return value
        inside = nxt.lower <= value <= nxt.upper
        self.anomalous_run = self.anomalous_run + 1 if anomalous or not inside else 0
        if not self.anomalous_run or self.anomalous_run > self.max_skip:
            return value
        return min(max(value, nxt.lower), nxt.upper)

    def to_forecast(self, series: str, issued: float, step: float, u: SeriesUpdate) -> Forecast:
        """Place an update's intervals in event time as a :class:`Forecast`."""
        return Forecast(
            series=series,
            issued=issued,
            step=step,
            points=tuple(
                ForecastPoint(issued + (i + 1) * step, iv.yhat, iv.lower, iv.upper)
                for i, iv in enumerate(u.intervals)
            ),
            coverage=self.forecaster.coverage,
            model=type(self.forecaster).__name__,
            warm=u.warm,
            error=u.error,
            drifting=u.drifting,
        )
