"""The ``PredictiveScaler`` operator: the :class:`scaler.reconciling.Reconciling` of Kubernetes.

Wiring (``foresight scaler --kube``; see :func:`scaler.kube.config.start_operator`)::

    op = Operator(api_client, namespaces=None, lease_namespace="foresight-system")
    op.start()     # initial list (fails fast on RBAC/CRD errors), watch + Lease threads
    loop = ControllerLoop(settings, op)   # observe / reconcile_series / resync, as for any
    op.stop()      # stop acting, stop watching, release the Lease

Parts: :class:`~scaler.kube.informer.Informer` (list and watch),
:class:`~scaler.kube.step.ReconcileStep` (one target: decide, act, report),
:class:`~scaler.kube.recorder.Recorder` (status and Events),
:class:`~scaler.kube.conflicts.ConflictCheck` (HPA / ScaledObject on the same
workload), :class:`~scaler.kube.lease.LeaderElector`, one
:class:`~scaler.kube.targets.Target` record per object.

Threads: one watch per scope and the Lease renewer; the ``Reconciling``
methods run on the caller's thread and block on API calls. One lock
serialises reconciles and watch events. Nothing is written (scale, status,
Events) unless this process holds the Lease, checked right before each write.
A newly elected leader reconciles every target at its next ``resync`` and
reports the invalid specs it learnt about as a follower.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes import client

from detectors.forecast import Forecast
from scaler.decision import Decision, Reason
from scaler.kube.actuator import KubeActuator, NotLeaderError, TargetResolutionError
from scaler.kube.conflicts import ConflictCheck
from scaler.kube.health import HealthServer
from scaler.kube.informer import Informer
from scaler.kube.lease import LeaderElector
from scaler.kube.recorder import Recorder
from scaler.kube.step import ReconcileStep
from scaler.kube.targets import Target
from scaler.policy import Observation
from scaler.reconcile import Reconciler
from scaler.spec import ScalerSpec, SpecError

log = logging.getLogger(__name__)


def default_identity() -> str:
    """``<hostname>-<pid>-<random>``: unique per process (the pod name in a cluster)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Operator:
    """Reconciles every ``PredictiveScaler`` in scope against the Kubernetes API.

    ``namespaces`` None watches all; ``leader_election`` False only for a single
    controller; ``lease_duration``, ``renew_deadline``, ``retry_period`` in seconds
    as in client-go; ``conflict_ttl`` caches the HPA / ScaledObject lists;
    ``health_port`` serves /healthz, /readyz (and /metrics with ``metrics_registry``),
    0 picks a free port; ``mode_override="ForecastOnly"`` makes every scaler a dry run.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        namespaces: Sequence[str] | None = None,
        identity: str | None = None,
        lease_name: str = "foresight-controller",
        lease_namespace: str = "foresight-system",
        leader_election: bool = True,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        conflict_ttl: float = 30.0,
        watch_timeout: int = 300,
        request_timeout: float = 10.0,
        on_decision: Callable[[Decision], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        health_port: int | None = None,
        health_host: str = "0.0.0.0",
        metrics_registry: Any | None = None,
        mode_override: str | None = None,
    ) -> None:
        if mode_override not in (None, "", "Active", "ForecastOnly"):
            raise ValueError(f"mode_override must be Active or ForecastOnly, not {mode_override!r}")
        self.mode_override = mode_override or None
        self.identity = identity or default_identity()
        self.on_decision = on_decision
        self.clock = clock
        self.elector: LeaderElector | None = (
            LeaderElector(
                api_client, identity=self.identity, name=lease_name, namespace=lease_namespace,
                lease_duration=lease_duration, renew_deadline=renew_deadline,
                retry_period=retry_period, clock=monotonic,
                on_started_leading=self._on_started_leading, request_timeout=request_timeout,
            )
            if leader_election
            else None
        )
        self.actuator = KubeActuator(api_client, guard=self._check_leader, request_timeout=request_timeout)
        self.reconciler = Reconciler(self.actuator)
        recorder = Recorder(api_client, identity=self.identity, guard=self._check_leader, clock=clock,
                            request_timeout=request_timeout)
        conflicts = ConflictCheck(api_client, ttl=conflict_ttl, request_timeout=request_timeout,
                                  monotonic=monotonic)
        self.step = ReconcileStep(self.reconciler, self.actuator, conflicts, recorder,
                                  publish=self._publish, clock=clock)
        self._lock = threading.RLock()
        self.informer = Informer(api_client, self._on_event, namespaces=namespaces, lock=self._lock,
                                 watch_timeout=watch_timeout, request_timeout=request_timeout)
        self._stop = threading.Event()
        self._targets: dict[str, Target] = {}
        self._now: float | None = None
        self._resync_all = False
        self._listed = False
        self.health: HealthServer | None = (
            HealthServer(self.healthy, self.ready, health_host, health_port, metrics_registry)
            if health_port is not None
            else None
        )

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """List every PredictiveScaler in scope, then watch them and run the Lease."""
        self._stop.clear()
        if self.health is not None:
            self.health.start()
        if self.elector is not None:
            self.elector.start()
        self.informer.start()
        self._listed = True

    def stop(self, release: bool = True) -> None:
        """Stop acting at once, stop the watches, then release the Lease."""
        self._stop.set()
        self.informer.stop()
        if self.elector is not None:
            self.elector.stop(release=release)
        if self.health is not None:
            self.health.stop()

    def healthy(self) -> bool:
        """Liveness: not stopped and every watch thread alive."""
        return not self._stop.is_set() and self.informer.alive()

    def ready(self) -> bool:
        """Readiness: the initial list is loaded and the process is healthy."""
        return self._listed and self.healthy()

    def is_leader(self) -> bool:
        """True when this process may act (holds the Lease, or runs without election)."""
        if self._stop.is_set():
            return False
        return self.elector is None or self.elector.is_leader()

    def _check_leader(self) -> None:
        if self._stop.is_set():
            raise NotLeaderError("operator is stopping")
        if self.elector is not None:
            self.elector.check()

    def _on_started_leading(self) -> None:
        self._resync_all = True  # the next resync refreshes every target

    # -- Reconciling ----------------------------------------------------------------------
    @property
    def specs(self) -> dict[str, ScalerSpec]:
        """Valid specs by key (a snapshot)."""
        with self._lock:
            return dict(self.reconciler.specs)

    @property
    def last(self) -> dict[str, Decision]:
        """The latest decision per target key (a snapshot)."""
        with self._lock:
            return {k: t.last for k, t in self._targets.items() if t.last is not None}

    def observe(
        self, forecast: Forecast | None, observation: Observation | None, series: str | None = None
    ) -> None:
        """Record the latest forecast and/or observation of a series (no reconcile)."""
        with self._lock:
            self.reconciler.observe(forecast, observation, series)

    def reconcile_series(self, series: str, now: float) -> list[Decision]:
        """Reconcile every target driven by ``series`` (nothing unless leader)."""
        with self._lock:
            self._advance(now)
            if not self.is_leader():
                self.reconciler.learn_series(series, now)  # a standby stays warm
                return []
            specs = self.reconciler.driven_by(series)
            return [d for s in specs if (d := self._reconcile(s.key, self.reconciler.decision_time(s, now)))
                    is not None]

    def learn_series(self, series: str, now: float) -> None:
        """Learn without acting (replaying history after a restart)."""
        with self._lock:
            self.reconciler.learn_series(series, now)

    def resync(self, now: float, period: float) -> list[Decision]:
        """Reconcile the targets :meth:`Reconciler.sweep` finds due (not reconciled for
        ``period`` of event time, and their series quiet); after winning the Lease every
        target, and report invalid specs learnt as a follower."""
        with self._lock:
            self._advance(now)
            if not self.is_leader():
                return []
            if self._resync_all:
                self._resync_all = False
                for t in self._targets.values():
                    t.last_reconciled = None
            for t in list(self._targets.values()):
                if t.invalid is not None and t.problem != Reason.INVALID_SPEC:
                    self.step.report_problem(t, Reason.INVALID_SPEC, t.invalid)
            out = []

            def last(key: str) -> float | None:
                return self._targets[key].last_reconciled

            for spec in self.reconciler.sweep(now, period, last):
                d = self._reconcile(spec.key, self.reconciler.sweep_time(spec, now, last(spec.key)))
                if d is not None:
                    out.append(d)
            return out

    def _advance(self, now: float) -> None:
        self._now = now if self._now is None else max(self._now, now)

    def _reconcile(self, key: str, now: float) -> Decision | None:
        spec = self.reconciler.specs.get(key)
        if spec is None:
            return None
        return self.step.run(self._targets[key], spec, now)

    def _publish(self, decision: Decision) -> None:
        if self.on_decision is None:
            return
        try:
            self.on_decision(decision)
        except Exception:  # noqa: BLE001 - publishing must not break reconciling
            log.exception("decision sink failed for %s", decision.target)

    # -- watch events (from the informer, under the lock) ----------------------------------
    def _on_event(self, type_: str, key: str, obj: Mapping[str, Any]) -> None:
        if type_ == "DELETED":
            self._targets.pop(key, None)
            self.reconciler.remove_spec(key)
            self.actuator.forget(key)
        else:
            self._apply(key, dict(obj))

    def _apply(self, key: str, obj: dict[str, Any]) -> None:
        target = self._targets.setdefault(key, Target(key))
        first = target.obj is None
        target.obj = obj
        if first or not self.is_leader():
            target.adopt_status()  # follow what the acting controller reported
        spec_raw = obj.get("spec")
        if not first and spec_raw == target.spec_seen:
            return  # status or metadata only (e.g. our own status patch)
        target.spec_seen = copy.deepcopy(spec_raw)
        try:
            spec = ScalerSpec.from_manifest(obj)
            if self.mode_override is not None:
                spec = dataclasses.replace(spec, mode=self.mode_override)
            self.actuator.resolve(spec.target)
        except (SpecError, TargetResolutionError) as exc:
            target.invalid = str(exc)
            self.reconciler.remove_spec(key)
            if self.is_leader():
                if not first:
                    target.problem = None  # a newly invalid spec is always reported
                self.step.report_problem(target, Reason.INVALID_SPEC, str(exc))
            return
        target.invalid = None
        old = self.reconciler.specs.get(key)
        if old is not None and (old.target != spec.target or old.all_series != spec.all_series):
            self.reconciler.remove_spec(key)  # new workload or series: fresh policy state
            self.actuator.forget(key)
        self.reconciler.set_spec(spec)
        if self.is_leader():
            now = self._now if self._now is not None else self.clock()
            self._reconcile(key, self.reconciler.decision_time(spec, now))
