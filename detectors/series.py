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
from detectors.forecast import Forecast, ForecastPoint, Interval


@dataclass(frozen=True, slots=True)
class SeriesUpdate:
    """Result of one update: the point's anomaly score and the new forecast."""

    score: float
    anomalous: bool
    intervals: tuple[Interval, ...]
    warm: bool
    error: float | None


class SeriesModel:
    """A detector and a forecaster for one series, updated once per window.

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
    """

    __slots__ = ("detector", "forecaster", "threshold", "horizon", "updates")

    def __init__(
        self,
        detector: AnomalyDetector,
        forecaster: Forecaster,
        threshold: float = 0.9,
        horizon: int = 6,
    ) -> None:
        self.detector = detector
        self.forecaster = forecaster
        self.threshold = threshold
        self.horizon = horizon
        self.updates = 0

    def score(self, value: float, t: float | None = None) -> float:
        """Score ``value`` and learn it: the one code path of worker and CLI."""
        s = self.detector.score_one(value, t)
        self.detector.learn_one(value, t)
        return s

    def update(self, value: float, t: float | None = None) -> SeriesUpdate:
        score = self.score(value, t)
        anomalous = score >= self.threshold
        self.forecaster.learn_one(value, t)
        self.updates += 1
        intervals = tuple(self.forecaster.forecast(self.horizon))
        return SeriesUpdate(score, anomalous, intervals, self.forecaster.warm, self.forecaster.error)

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
        )
