"""The one conversion from what the models say to what the policy decides on.

The model agent (after each window's update), the controller (from the
``forecasts`` message) and the backtest (row by row) all build the policy's
inputs here, so that they cannot drift apart: the forecast, the observation of
the window just closed (untrusted when the detector flagged it or the model
distrusts it), and ``now``, the end of that window (the watermark).

>>> from detectors.defaults import make_series_model
>>> m = make_series_model(step_seconds=60)
>>> u = m.update(120.0, t=600.0)
>>> fc, obs, now = inputs_from_update(m, "web/rps", 600.0, 60.0, 120.0, u)
>>> (fc.issued, obs.ts, obs.value, now)
(600.0, 600.0, 120.0, 660.0)
"""

from __future__ import annotations

from detectors.forecast import Forecast
from detectors.series import SeriesModel, SeriesUpdate
from scaler.policy import Observation


def policy_inputs(
    forecast: Forecast, observed: float | None, untrusted: bool
) -> tuple[Forecast, Observation | None, float]:
    """(forecast, observation of the window it was issued after, now).

    >>> from detectors.forecast import ForecastPoint
    >>> f = Forecast("s", 60.0, 60.0, (ForecastPoint(120.0, 1, 0, 2),), 0.8, "m", True)
    >>> policy_inputs(f, 5.0, True)[1:]
    (Observation(ts=60.0, value=5.0, anomalous=True), 120.0)
    """
    obs = None if observed is None else Observation(forecast.issued, observed, untrusted)
    return forecast, obs, forecast.issued + forecast.step


def inputs_from_update(
    model: SeriesModel, series: str, issued: float, step: float, value: float, u: SeriesUpdate
) -> tuple[Forecast, Observation, float]:
    """The policy's inputs after ``model`` learnt ``value`` of window ``[issued, issued + step)``."""
    fc, obs, now = policy_inputs(model.to_forecast(series, issued, step, u), value,
                                 u.anomalous or u.untrusted)
    assert obs is not None
    return fc, obs, now
