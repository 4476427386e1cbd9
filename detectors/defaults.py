"""The one configuration used by the worker, ``foresight detect`` and the backtest."""

from __future__ import annotations

from detectors.base import AnomalyDetector, Forecaster
from detectors.series import SeriesModel

#: score at or above which a point is published as an anomaly
DEFAULT_THRESHOLD = 0.9


def make_detector() -> AnomalyDetector:
    """The anomaly detector every series gets (owned by the NAB work)."""
    from detectors.anomaly import default_detector

    return default_detector()


def make_forecaster(step_seconds: float, period_steps: int | None = None) -> Forecaster:
    """The forecaster every series gets (owned by the backtest work).

    ``period_steps`` fixes the seasonal period in steps; ``None`` lets the
    forecaster derive it from the step (daily, weekly) or the stream.
    """
    from detectors.forecasting import default_forecaster

    return default_forecaster(step_seconds, period_steps)


def make_series_model(
    step_seconds: float,
    period_steps: int | None = None,
    horizon: int = 6,
    threshold: float = DEFAULT_THRESHOLD,
) -> SeriesModel:
    return SeriesModel(
        make_detector(), make_forecaster(step_seconds, period_steps), threshold, horizon
    )
