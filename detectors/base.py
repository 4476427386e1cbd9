"""Base classes: the River protocol for univariate streams.

Our estimators take a float (and optionally its event time ``t`` in epoch
seconds) rather than River's feature dict, because every Foresight series is
univariate. They inherit :class:`river.base.Base`, so ``clone()``, ``repr`` and
parameter introspection work as they do in River.
"""

from __future__ import annotations

import abc

from river import base

from detectors.forecast import Interval


class AnomalyDetector(base.Base, abc.ABC):
    """An online anomaly detector over one univariate series.

    ``score_one`` must not change state; ``learn_one`` must be called after it
    with the same point. Scores are in [0, 1]; higher is more anomalous.
    """

    @abc.abstractmethod
    def learn_one(self, x: float, t: float | None = None) -> None:
        """Update the detector with one observation."""

    @abc.abstractmethod
    def score_one(self, x: float, t: float | None = None) -> float:
        """Anomaly score of ``x`` given everything learnt so far, in [0, 1]."""


class Forecaster(base.Base, abc.ABC):
    """An online forecaster with prediction intervals.

    ``forecast(h)`` returns ``h`` :class:`~detectors.forecast.Interval` for the
    next ``h`` steps. ``warm`` says whether the model has seen enough data to
    be trusted; a cold forecaster must say so rather than guess.
    """

    #: nominal coverage of the [lower, upper] interval
    coverage: float = 0.9

    @abc.abstractmethod
    def learn_one(self, y: float, t: float | None = None) -> None:
        """Update the model with the next value of the series."""

    @abc.abstractmethod
    def forecast(self, horizon: int) -> list[Interval]:
        """Forecast the next ``horizon`` steps."""

    @property
    @abc.abstractmethod
    def warm(self) -> bool:
        """True once the model's forecasts can be trusted."""

    @property
    def error(self) -> float | None:
        """Recent relative error of the one-step forecast, if tracked."""
        return None

    def adapt(self, offset: float | None = None) -> None:
        """The series has drifted: re-base on the new regime (default: nothing).

        ``offset`` is how far the values now sit from the forecasts, when the
        caller measured it (``None``: the forecaster's own estimate).
        """
