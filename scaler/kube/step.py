"""One reconcile of one ``PredictiveScaler``: decide, act, then report.

Like the HPA's ``reconcileAutoscaler``: another autoscaler on the workload
(``ConflictingAutoscaler``), an unusable target (``InvalidSpec``), a missing
one (``FailedGetScale``) or an API error (``FailedRescale``) are conditions and
Warning Events (the Event on transition), never exceptions. After a decision:
``SuccessfulRescale`` on every applied change, ``WouldRescale`` when a
ForecastOnly recommendation changes, a Warning named after the fallback
(``NoForecast``, ``StaleForecast``, ...) whenever one starts, then the status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from kubernetes.client.exceptions import ApiException

from scaler.decision import Decision, Reason
from scaler.kube.actuator import KubeActuator, NotLeaderError, TargetResolutionError
from scaler.kube.conflicts import ConflictCheck
from scaler.kube.recorder import Recorder
from scaler.kube.status import KubeReason, ProblemReason, decision_status, problem_status, rfc3339
from scaler.kube.targets import Target
from scaler.reconcile import Reconciler
from scaler.spec import ScalerSpec

log = logging.getLogger(__name__)


class ReconcileStep:
    """Runs the reconciler for one target and records the outcome in Kubernetes."""

    def __init__(
        self,
        reconciler: Reconciler,
        actuator: KubeActuator,
        conflicts: ConflictCheck,
        recorder: Recorder,
        *,
        publish: Callable[[Decision], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reconciler = reconciler
        self.actuator = actuator
        self.conflicts = conflicts
        self.recorder = recorder
        self.publish = publish
        self.clock = clock

    def run(self, target: Target, spec: ScalerSpec, now: float) -> Decision | None:
        """Reconcile ``target`` at event time ``now``; None when nothing could be decided."""
        target.last_reconciled = now
        key = target.key
        try:
            conflict = self.conflicts.find(spec)
            if conflict is not None and spec.mode == "Active":
                return self._blocked(target, spec, conflict, now)
            self._seed_policy_state(target, now)
            decision = self.reconciler.reconcile(spec, now)
            if conflict is not None:  # a dry run beside the autoscaler a team already has
                other = conflict.split(" also scales")[0]
                decision = replace(decision, message=(
                    f"{decision.message}; ForecastOnly beside {other}, which keeps the replicas"))
        except NotLeaderError:
            log.info("%s: not the leader any more, not acting", key)
            return None
        except TargetResolutionError as exc:
            self.report_problem(target, Reason.INVALID_SPEC, f"spec.scaleTargetRef: {exc}")
            return None
        except ApiException as exc:
            if exc.status == 404:
                t = spec.target
                self.report_problem(
                    target, KubeReason.FAILED_GET_SCALE,
                    f"the scale subresource of {t.kind} {spec.namespace}/{t.name} was not found",
                )
            else:
                self.report_problem(target, KubeReason.FAILED_RESCALE, f"API error {exc.status}: {exc.reason}")
            return None
        except Exception as exc:  # noqa: BLE001 - one target must never stop the others
            log.exception("%s: reconcile failed", key)
            self.report_problem(target, KubeReason.FAILED_RESCALE, f"{type(exc).__name__}: {exc}")
            return None
        target.last = decision
        try:
            self._after_decision(target, spec, decision)
        except NotLeaderError:
            log.info("%s: lost the lease before writing status", key)
        self.publish(decision)
        return decision

    def _blocked(self, target: Target, spec: ScalerSpec, conflict: str, now: float) -> Decision:
        current = self.actuator.current_replicas(spec, now)
        decision = Decision(
            target=target.key, ts=now, current=current, desired=current,
            reason=Reason.CONFLICT, message=conflict, mode=spec.mode,
        )
        target.last = decision
        self.report_problem(
            target, Reason.CONFLICT, conflict, {"currentReplicas": current, "desiredReplicas": current}
        )
        self.publish(decision)
        return decision

    def _seed_policy_state(self, target: Target, now: float) -> None:
        """After a restart or a fail-over the policy has no memory; start it from the last
        recorded ``desiredReplicas`` so the scale-down stabilization window still holds."""
        desired = ((target.obj or {}).get("status") or {}).get("desiredReplicas")
        if isinstance(desired, int) and desired > 0:
            # just before now: inside any scale-down window, outside a zero scale-up window
            self.reconciler.remember(target.key, desired, now - 1e-3)

    def _after_decision(self, target: Target, spec: ScalerSpec, d: Decision) -> None:
        last_scale_time = None
        if d.applied:
            last_scale_time = rfc3339(self.clock())
            self.recorder.event(
                target, "Normal", KubeReason.SUCCESSFUL_RESCALE,
                f"New size: {d.desired}; reason: {d.reason.value}: {d.message}",
            )
        elif spec.mode != "Active" and d.desired != d.current and target.recommended != d.desired:
            self.recorder.event(
                target, "Normal", KubeReason.WOULD_RESCALE,
                f"ForecastOnly: would scale from {d.current} to {d.desired}; "
                f"reason: {d.reason.value}: {d.message}",
            )
        target.recommended = d.desired
        if d.drifting != target.drifting:
            drifting = ", ".join(f.series for f in d.signals if f.drifting)
            if d.drifting:
                self.recorder.event(
                    target, "Warning", KubeReason.SERIES_DRIFTING,
                    f"series {drifting}: its forecast errors changed regime (a drift); "
                    "scaling reactively on the observed load until the model has adapted",
                )
            else:
                self.recorder.event(target, "Normal", KubeReason.DRIFT_RECOVERED,
                                    f"series {', '.join(spec.all_series)}: the model has adapted; "
                                    "the forecast is used again")
            target.drifting = d.drifting
        if d.fallback is not None and target.fallback != d.fallback:
            bad = [f for f in d.signals if f.fallback is not None] if len(d.signals) > 1 else []
            why = "; ".join(f"signal {f.name}: {f.message}" for f in bad) if bad else d.message
            self.recorder.event(target, "Warning", d.fallback, why)
        target.fallback = d.fallback
        target.problem = None
        fields, conditions = decision_status(
            d, spec, d.fallback, last_scale_time=last_scale_time, observed_generation=target.generation
        )
        self.recorder.write_status(target, fields, conditions)

    def report_problem(
        self, target: Target, reason: ProblemReason, message: str, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Condition + Warning Event (the Event only when the problem is new)."""
        try:
            if target.problem != reason:
                self.recorder.event(target, "Warning", reason, message)
            target.problem = str(reason)
            fields: dict[str, Any] = {
                "reason": str(reason),
                "message": message,
                "observedGeneration": target.generation,
                **(extra or {}),
            }
            self.recorder.write_status(target, fields, problem_status(reason, message))
        except NotLeaderError:
            log.info("%s: lost the lease before reporting %s", target.key, reason)
