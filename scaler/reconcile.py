"""The reconcile step: decide with the pure policy, then act at the edge.

Like the HPA's ``reconcileAutoscaler``: the policy only computes, the
reconciler writes, and only when the count changes (never in ForecastOnly).

>>> from detectors.forecast import Forecast, ForecastPoint
>>> from scaler.simulated import SimulatedCluster
>>> from scaler.spec import ScalerSpec, TargetRef
>>> spec = ScalerSpec("web", "web/rps", capacity_per_replica=100, min_replicas=4,
...                   max_replicas=20, target=TargetRef("apps/v1", "Deployment", "web"))
>>> cluster = SimulatedCluster(startup_seconds=180)
>>> r = Reconciler(cluster, [spec])
>>> r.observe(Forecast("web/rps", 0, 60, tuple(ForecastPoint(60 * i, 500, 400, 650)
...     for i in range(1, 6)), 0.9, "m", True), Observation(0, 420))
>>> [(d.current, d.desired, d.applied, d.reason.value) for d in r.reconcile_series("web/rps", 60)]
[(4, 7, True, 'ForecastPeak')]
>>> cluster.provisioned("default/web")
7
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from detectors.forecast import Forecast
from scaler.actuator import Actuator
from scaler.decision import Decision
from scaler.policy import Observation, PolicyState, decide
from scaler.spec import ScalerSpec


class Reconciler:
    """Holds the specs, the latest forecast per series and per-target policy state."""

    def __init__(
        self,
        actuator: Actuator,
        specs: Iterable[ScalerSpec] = (),
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        self.actuator = actuator
        self.on_decision = on_decision
        self.specs: dict[str, ScalerSpec] = {}
        self.states: dict[str, PolicyState] = {}
        self.forecasts: dict[str, Forecast] = {}
        self.observations: dict[str, Observation] = {}
        self.last: dict[str, Decision] = {}
        for s in specs:
            self.set_spec(s)

    def set_spec(self, spec: ScalerSpec) -> None:
        self.specs[spec.key] = spec
        self.states.setdefault(spec.key, PolicyState())

    def remove_spec(self, key: str) -> None:
        self.specs.pop(key, None)
        self.states.pop(key, None)
        self.last.pop(key, None)

    def observe(self, forecast: Forecast | None, observation: Observation | None, series: str | None = None) -> None:
        """Record the latest forecast and/or observation of a series."""
        name = series or (forecast.series if forecast is not None else None)
        if name is None:
            raise ValueError("observe() needs a forecast or a series name")
        if forecast is not None:
            self.forecasts[name] = forecast
        if observation is not None:
            self.observations[name] = observation

    def reconcile(self, spec: ScalerSpec, now: float) -> Decision:
        """Decide for one target and, in Active mode, apply a changed count.

        Time never runs backwards for a target: ``now`` is raised to the
        target's previous decision time if it is older.
        """
        previous = self.last.get(spec.key)
        if previous is not None and previous.ts > now:
            now = previous.ts
        current = self.actuator.current_replicas(spec, now)
        state = self.states.get(spec.key, PolicyState())
        decision, state = decide(spec, state, self.forecasts, self.observations, current, now)
        if spec.mode == "Active" and decision.desired != current:
            self.actuator.scale(spec, decision.desired, now)
            state = state.record_scale(now, decision.desired - current)
            decision = replace(decision, applied=True)
        self.states[spec.key] = state
        self.last[spec.key] = decision
        if self.on_decision is not None:
            self.on_decision(decision)
        return decision

    def reconcile_series(self, series: str, now: float) -> list[Decision]:
        """Reconcile every target one of whose signals reads ``series``."""
        return [self.reconcile(s, now) for s in self.driven_by(series)]

    def driven_by(self, series: str) -> list[ScalerSpec]:
        """The specs one of whose signals reads ``series``."""
        return [s for s in list(self.specs.values()) if series in s.all_series]

    def reconcile_all(self, now: float) -> list[Decision]:
        return [self.reconcile(s, now) for s in list(self.specs.values())]

    def learn_series(self, series: str, now: float) -> None:
        """Learn from a series' latest forecast and observation without acting.

        The policy decides as if its decisions had been applied to a simulated
        cluster (its shadow follower), so the adaptive policy's contenders and
        the comparison are rebuilt; nothing is scaled, published or recorded as
        the target's last decision. Used to replay history after a restart, and
        by a standby controller to stay warm.
        """
        for spec in self.driven_by(series):
            state = self.states.get(spec.key, PolicyState())
            a = state.adaptive
            current = a.follower.replicas if a is not None and a.follower.started else spec.min_replicas
            _, self.states[spec.key] = decide(spec, state, self.forecasts, self.observations,
                                              current, now)

    def resync(self, now: float, period: float) -> list[Decision]:
        """Reconcile every target without a decision in the last ``period`` seconds."""
        due = [s for s in list(self.specs.values())
               if (last := self.last.get(s.key)) is None or now - last.ts >= period]
        return [self.reconcile(s, now) for s in due]

    def remember(self, key: str, replicas: int, ts: float) -> None:
        """Start a target's policy memory from a recorded count, if it has none yet
        (after a restart or fail-over, so a scale-down window still holds)."""
        state = self.states.get(key)
        if state is not None and not state.recommendations:
            self.states[key] = replace(state, recommendations=((ts, replicas),))
