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

import math
from collections.abc import Callable, Iterable
from dataclasses import replace

from detectors.forecast import Forecast
from scaler.actuator import Actuator
from scaler.decision import Decision
from scaler.policy import Observation, PolicyState, decide, stale_after
from scaler.schedule import scheduled_floor
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
        self._swept: float | None = None  # the time of the previous sweep
        self._learnt: dict[str, float] = {}  # per target: the time it was last learnt at
        for s in specs:
            self.set_spec(s)

    def set_spec(self, spec: ScalerSpec) -> None:
        self.specs[spec.key] = spec
        self.states.setdefault(spec.key, PolicyState())

    def remove_spec(self, key: str) -> None:
        self.specs.pop(key, None)
        self.states.pop(key, None)
        self.last.pop(key, None)
        self._learnt.pop(key, None)

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
        """Reconcile every target one of whose signals reads ``series``, each at the time of
        its signals' inputs (:meth:`decision_time`)."""
        return [self.reconcile(s, self.decision_time(s, now)) for s in self.driven_by(series)]

    def _time(self, series: str) -> float | None:
        """How far ``series`` is known: the end of the window its latest forecast was issued
        after (None before its first forecast)."""
        f = self.forecasts.get(series)
        return None if f is None else f.issued + f.step

    def decision_time(self, spec: ScalerSpec, now: float) -> float:
        """When an input arriving at ``now`` is decided for ``spec``: at the newest time of its
        signals' own series (what each signal forecasts), not later.

        A Kafka topic signal also reads its consumer group's lag and the topic's partition
        count, series of their own that a model batch may bring a few windows before or
        after the rate: decided at their time, the rate's forecast would look older than it
        is (stale, its lead window cut short) or newer (its lead window starting before its
        first point), and the decision would be stamped at a time its forecast was not made
        for. So they are read at the signals' time and never move the target's clock --
        unless the signals' series have gone quiet (further behind the newest series than a
        forecast stays fresh, and behind the last :meth:`sweep` as far: a signal only a model
        batch behind is on its way, not quiet): then the newest input's time, so the policy
        holds on the stale signal and the lag still acts. A one-series target decides at
        ``now``.
        """
        times = [t for sig in spec.signals if (t := self._time(sig.series)) is not None]
        if not times:
            return now
        t = max(times)
        newest = max(x for s in spec.all_series if (x := self._time(s)) is not None)
        if self._swept is not None:
            newest = min(newest, self._swept)  # behind at the last sweep: not only a batch apart
        if newest - t > stale_after(spec, self._any_forecast(spec)):
            return now
        return min(now, t)

    def _any_forecast(self, spec: ScalerSpec) -> Forecast | None:
        return next((f for s in spec.all_series if (f := self.forecasts.get(s)) is not None), None)

    def driven_by(self, series: str) -> list[ScalerSpec]:
        """The specs one of whose signals reads ``series``."""
        return [s for s in list(self.specs.values()) if series in s.all_series]

    def reconcile_all(self, now: float) -> list[Decision]:
        return [self.reconcile(s, now) for s in list(self.specs.values())]

    def learn_series(self, series: str, now: float) -> None:
        """Learn from a series' latest forecast and observation without acting, each target at
        the time :meth:`reconcile_series` would decide it (:meth:`decision_time`).

        The policy decides as if its decisions had been applied to a simulated
        cluster (its shadow follower), so the adaptive policy's contenders and
        the comparison are rebuilt; nothing is scaled, published or recorded as
        the target's last decision. Used to replay history after a restart, and
        by a standby controller to stay warm.
        """
        for spec in self.driven_by(series):
            # at the time the leader decides it (reconcile_series), never running backwards
            at = max(self.decision_time(spec, now), self._learnt.get(spec.key, -math.inf))
            self._learnt[spec.key] = at
            state = self.states.get(spec.key, PolicyState())
            a = state.adaptive
            current = a.follower.replicas if a is not None and a.follower.started else spec.min_replicas
            _, self.states[spec.key] = decide(spec, state, self.forecasts, self.observations,
                                              current, at)

    def resync(self, now: float, period: float) -> list[Decision]:
        """Reconcile every target :meth:`sweep` finds due, at :meth:`sweep_time`."""
        def last(key: str) -> float | None:
            return d.ts if (d := self.last.get(key)) is not None else None

        return [self.reconcile(s, self.sweep_time(s, now, last(s.key))) for s in self.sweep(now, period, last)]

    def sweep(self, now: float, period: float, last: Callable[[str], float | None]) -> list[ScalerSpec]:
        """The targets a sweep at ``now`` re-decides (the rule of every controller): those never
        decided (``last(key)`` None), and those without a decision in the last ``period``
        seconds whose series have all been quiet for longer than a forecast stays fresh
        already at the previous sweep (or that never had one), or whose scheduled minimum
        changed since their last decision.

        A target whose inputs are merely behind the others' (a model batch still on its way)
        is left to be decided when they arrive, at their time: decided at ``now``, ahead of
        them, its forecast would look stale, and time never runs back for a target. Quiet at
        two sweeps in a row, not one: the forecasts of a model batch come in messages, and a
        replay at high speed (``foresight demo`` at 240x) moves the low watermark further
        between two of them than a forecast stays fresh, so series whose message is the next
        one looked quiet at the sweep between.
        """
        before, self._swept = self._swept, now
        quiet_at = now if before is None else min(now, before)
        return [s for s in list(self.specs.values()) if self._due(s, now, period, last(s.key), quiet_at)]

    def sweep_time(self, spec: ScalerSpec, now: float, last: float | None) -> float:
        """When a sweep at ``now`` decides ``spec``, one of the targets :meth:`sweep` found due
        (``last``: its last decision's time): a target never decided (new, or every target
        after a controller wins its Lease) at its signals' time (:meth:`decision_time`), as
        its next input would have it decided; one due for being quiet, or for its scheduled
        minimum, at ``now``."""
        return self.decision_time(spec, now) if last is None else now

    def _due(self, spec: ScalerSpec, now: float, period: float, last: float | None, quiet_at: float) -> bool:
        if last is None:
            return True
        if now - last < period:
            return False
        times = [t for s in spec.all_series if (t := self._time(s)) is not None]
        if not times or quiet_at - max(times) > stale_after(spec, self._any_forecast(spec)):
            return True
        return scheduled_floor(spec.schedules, now) != scheduled_floor(spec.schedules, last)

    def remember(self, key: str, replicas: int, ts: float) -> None:
        """Start a target's policy memory from a recorded count, if it has none yet
        (after a restart or fail-over, so a scale-down window still holds)."""
        state = self.states.get(key)
        if state is not None and not state.recommendations:
            self.states[key] = replace(state, recommendations=((ts, replicas),))
