"""The one interface the controller loop drives: forecasts in, reconciled targets out.

:class:`scaler.reconcile.Reconciler` (simulated cluster, backtest) and
:class:`scaler.kube.operator.Operator` (Kubernetes) both implement it;
``streams.controller.ControllerLoop`` and the tests call nothing else.

>>> from scaler.reconcile import Reconciler
>>> from scaler.simulated import SimulatedCluster
>>> r: Reconciling = Reconciler(SimulatedCluster(0))
>>> r.resync(60.0, 10.0)
[]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from detectors.forecast import Forecast
from scaler.decision import Decision
from scaler.policy import Observation
from scaler.spec import ScalerSpec


class Reconciling(Protocol):
    #: called with every decision (e.g. queue it for Kafka); may be set after construction
    on_decision: Callable[[Decision], None] | None

    @property
    def specs(self) -> Mapping[str, ScalerSpec]:
        """The valid specs by target key."""
        ...

    def observe(
        self, forecast: Forecast | None, observation: Observation | None, series: str | None = None
    ) -> None:
        """Record the latest forecast and/or observation of a series (no reconcile)."""
        ...

    def reconcile_series(self, series: str, now: float) -> list[Decision]:
        """Reconcile every target driven by ``series`` at event time ``now``."""
        ...

    def learn_series(self, series: str, now: float) -> None:
        """Learn from the series' latest forecast and observation without acting (a replay of
        history after a restart, or a standby keeping warm)."""
        ...

    def resync(self, now: float, period: float) -> list[Decision]:
        """Reconcile every target not reconciled in the last ``period`` seconds of event time
        (the loop calls it as its low watermark moves, so quiet series fall back safely)."""
        ...
