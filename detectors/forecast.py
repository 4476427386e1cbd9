"""The domain type a forecaster produces and the scaler consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Interval:
    """One step of a forecast: the point forecast and its prediction interval.

    >>> Interval(10.0, 8.0, 13.0).upper
    13.0
    """

    yhat: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class ForecastPoint:
    """A forecast step placed in event time (``ts`` is the window start)."""

    ts: float
    yhat: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class Forecast:
    """A forecast for one series, issued at event time ``issued``.

    ``points[i]`` covers the window starting at ``issued + (i + 1) * step``
    (``issued`` is the start of the last observed window). ``coverage`` is the
    nominal coverage of the ``[lower, upper]`` band; ``warm`` is False while the
    model has not seen enough data to be trusted, and the scaler then falls
    back to the reactive rule. ``error`` is the model's recent relative error
    (``None`` when unknown).

    >>> f = Forecast("a", issued=0.0, step=60.0, points=(
    ...     ForecastPoint(60.0, 10.0, 8.0, 12.0),
    ...     ForecastPoint(120.0, 20.0, 15.0, 25.0),
    ...     ForecastPoint(180.0, 30.0, 25.0, 35.0)), coverage=0.9, model="m", warm=True)
    >>> f.peak_upper(until=120.0)
    25.0
    """

    series: str
    issued: float
    step: float
    points: tuple[ForecastPoint, ...]
    coverage: float
    model: str
    warm: bool
    error: float | None = None
    #: the model's errors changed regime (a drift) and it has not recovered yet: the
    #: scaler then acts reactively on the observations instead of on the forecast
    drifting: bool = False

    def window(self, start: float, until: float) -> tuple[ForecastPoint, ...]:
        """Points whose window starts in ``[start, until]``."""
        return tuple(p for p in self.points if start <= p.ts <= until)

    def peak_upper(self, until: float, start: float = float("-inf")) -> float | None:
        """Highest upper bound among points starting in ``[start, until]``."""
        pts = self.window(start, until)
        return max(p.upper for p in pts) if pts else None
