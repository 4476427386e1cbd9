"""The ``PredictiveScaler`` status: fields and HPA-style conditions. Pure functions.

Conditions follow the HPA's conventions (``type``, ``status``, ``reason``,
``message``, ``lastTransitionTime``; the transition time only moves when the
status flips):

- ``Ready``: the spec is valid, the target was found and nothing else owns it;
- ``ForecastAvailable``: a fresh, warm forecast covers the lead time (else the
  reason names the fallback: ``NoForecast``, ``StaleForecast``,
  ``HorizonTooShort`` when the forecasts received end before ``now +
  leadTimeSeconds``, ...);
- ``ScalingActive``: the controller patches the target (False in
  ``ForecastOnly`` mode, on conflict, invalid spec or missing target);
- ``ScalingLimited``: the count was capped (``TooManyReplicas``,
  ``TooFewReplicas``, ``ScaleUpLimit``, ``ScaleDownLimit``, ``Scheduled`` when a
  scheduled minimum raised it; else ``DesiredWithinRange``).

With several signals, ``ForecastAvailable`` is True only when every signal's
forecast is usable, else False naming the first that is not; ``status.signals``
holds each signal's figures (with its own shadow comparison against the HPA,
``comparison``, on its own load and capacity) and ``status.signal`` the deciding
one, whose comparison is ``status.comparison`` (the VS HPA column).

>>> c = [condition("Ready", True, KubeReason.RECONCILED, "ok")]
>>> merged = merge_conditions([], c, "2026-01-01T00:00:00Z")
>>> merged[0]["lastTransitionTime"]
'2026-01-01T00:00:00Z'
>>> merge_conditions(merged, c, "2026-01-01T00:05:00Z")[0]["lastTransitionTime"]
'2026-01-01T00:00:00Z'
>>> flipped = [condition("Ready", False, "InvalidSpec", "bad")]
>>> merge_conditions(merged, flipped, "2026-01-01T00:05:00Z")[0]["lastTransitionTime"]
'2026-01-01T00:05:00Z'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from scaler.decision import Comparison, Decision, Direction, Reason
from scaler.spec import ScalerSpec

CONDITION_TYPES = ("Ready", "ForecastAvailable", "ScalingActive", "ScalingLimited")


class KubeReason(StrEnum):
    """Reasons the operator writes to conditions and Events besides the policy's ``Reason``
    (countable, stable names; the HPA's where it has one)."""

    FAILED_GET_SCALE = "FailedGetScale"  # the target's scale subresource was not found
    FAILED_RESCALE = "FailedRescale"  # an API error while reading or patching the scale
    SUCCESSFUL_RESCALE = "SuccessfulRescale"  # Event: the count was changed
    WOULD_RESCALE = "WouldRescale"  # Event: ForecastOnly would change the count
    RECONCILED = "Reconciled"  # Ready: spec valid, target found, nobody else owns it
    VALID_FORECAST = "ValidForecast"  # ForecastAvailable: a usable forecast
    ACTIVE = "Active"  # ScalingActive: the controller patches the target
    FORECAST_ONLY = "ForecastOnly"  # ScalingActive False: dry run
    TOO_MANY_REPLICAS = "TooManyReplicas"  # ScalingLimited: capped at maxReplicas
    TOO_FEW_REPLICAS = "TooFewReplicas"  # ScalingLimited: raised to minReplicas
    SCALE_UP_LIMIT = "ScaleUpLimit"  # ScalingLimited: behavior.scaleUp rate policy
    SCALE_DOWN_LIMIT = "ScaleDownLimit"  # ScalingLimited: behavior.scaleDown rate policy
    DESIRED_WITHIN_RANGE = "DesiredWithinRange"  # ScalingLimited False
    SERIES_DRIFTING = "SeriesDrifting"  # Event: the series drifted; scaled reactively meanwhile
    DRIFT_RECOVERED = "DriftRecovered"  # Event: the model has adapted; the forecast is used again


#: reasons of the problems that stop a target (Ready False)
ProblemReason = Reason | KubeReason


def rfc3339(ts: float) -> str:
    """Seconds since the epoch as a Kubernetes timestamp.

    >>> rfc3339(0)
    '1970-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(type_: str, status: bool | None, reason: str, message: str) -> dict[str, str]:
    """One condition (``status`` None means ``Unknown``)."""
    return {
        "type": type_,
        "status": "Unknown" if status is None else ("True" if status else "False"),
        "reason": str(reason),
        "message": message,
    }


def merge_conditions(
    old: Iterable[Mapping[str, Any]] | None,
    new: Sequence[Mapping[str, str]],
    now: str,
) -> list[dict[str, str]]:
    """Replace conditions by type, keeping ``lastTransitionTime`` unless the status flips.

    Conditions of other types in ``old`` are kept; order is ``CONDITION_TYPES``.
    """
    before = {str(c.get("type")): dict(c) for c in (old or ()) if isinstance(c, Mapping)}
    out = dict(before)
    for c in new:
        prev = before.get(c["type"])
        merged = dict(c)
        if prev is not None and prev.get("status") == c["status"] and prev.get("lastTransitionTime"):
            merged["lastTransitionTime"] = str(prev["lastTransitionTime"])
        else:
            merged["lastTransitionTime"] = now
        out[c["type"]] = merged
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    return [out[k] for k in sorted(out, key=lambda t: (order.get(t, len(order)), t))]


def limited_condition(decision: Decision, spec: ScalerSpec) -> dict[str, str]:
    """``ScalingLimited`` as the HPA writes it.

    >>> from scaler.spec import TargetRef
    >>> spec = ScalerSpec("w", "s", 10, 1, 5, target=TargetRef("apps/v1", "Deployment", "w"))
    >>> d = Decision("default/w", 0, 3, 5, Reason.BOUNDED, "bounded to maxReplicas 5")
    >>> limited_condition(d, spec)["reason"]
    'TooManyReplicas'
    >>> d = Decision("default/w", 0, 3, 4, Reason.RATE_LIMITED, "limited", limited=Direction.UP)
    >>> limited_condition(d, spec)["reason"]
    'ScaleUpLimit'
    """
    if decision.reason == Reason.BOUNDED:
        k = KubeReason
        reason = k.TOO_MANY_REPLICAS if decision.desired >= spec.max_replicas else k.TOO_FEW_REPLICAS
        return condition("ScalingLimited", True, reason, decision.message)
    if decision.reason == Reason.SCHEDULED:
        return condition("ScalingLimited", True, Reason.SCHEDULED, decision.message)
    if decision.reason == Reason.RATE_LIMITED:
        up = decision.limited == Direction.UP
        reason = KubeReason.SCALE_UP_LIMIT if up else KubeReason.SCALE_DOWN_LIMIT
        return condition("ScalingLimited", True, reason, decision.message)
    return condition(
        "ScalingLimited", False, KubeReason.DESIRED_WITHIN_RANGE,
        "the desired count is within the acceptable range",
    )


def forecast_condition(decision: Decision, fallback: Reason | None) -> dict[str, str]:
    """``ForecastAvailable``: True with the peak, or False naming the fallback.

    >>> d = Decision("shop/w", 0, 4, 4, Reason.HORIZON_TOO_SHORT,
    ...              "forecast horizon too short for leadTimeSeconds 600: ...")
    >>> c = forecast_condition(d, Reason.HORIZON_TOO_SHORT)
    >>> c["status"], c["reason"], c["message"][:46]
    ('False', 'HorizonTooShort', 'forecast horizon too short for leadTimeSeconds')
    """
    if decision.forecast_peak is not None and len(decision.signals) <= 1:
        return condition(
            "ForecastAvailable", True, KubeReason.VALID_FORECAST,
            f"forecast peak {decision.forecast_peak:.4g} within the lead time",
        )
    if len(decision.signals) > 1:
        bad = [f for f in decision.signals if f.fallback is not None]
        if not bad:
            peaks = ", ".join(f"{f.name} {f.forecast_peak:.4g}" for f in decision.signals
                              if f.forecast_peak is not None)
            return condition("ForecastAvailable", True, KubeReason.VALID_FORECAST,
                             f"forecast peaks within the lead time: {peaks}")
        assert bad[0].fallback is not None
        return condition("ForecastAvailable", False, bad[0].fallback,
                         "; ".join(f"signal {f.name}: {f.message}" for f in bad))
    reason = fallback or Reason.NO_FORECAST
    return condition("ForecastAvailable", False, reason, decision.message)


def decision_status(
    decision: Decision,
    spec: ScalerSpec,
    fallback: Reason | None,
    *,
    last_scale_time: str | None,
    observed_generation: int | None,
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Status fields and conditions after a reconcile that produced ``decision``."""
    fields: dict[str, Any] = {
        "observedGeneration": observed_generation,
        "currentReplicas": decision.desired if decision.applied else decision.current,
        "desiredReplicas": decision.desired,
        "lastForecastPeak": (
            round(float(decision.forecast_peak), 6) if decision.forecast_peak is not None else None
        ),
        "reason": decision.reason.value,
        "message": decision.message,
        "mode": spec.mode,
        "reference": f"{spec.target.kind}/{spec.target.name}",
        "signal": decision.signal or spec.signals[0].label,
        "signals": signals_status(decision),
        "schedule": ({"name": decision.schedule[0], "minReplicas": decision.schedule[1]}
                     if decision.schedule is not None else None),
    }
    if last_scale_time is not None:
        fields["lastScaleTime"] = last_scale_time
    if decision.vs_hpa is not None:
        fields["comparison"] = comparison_status(decision)
    if spec.mode == "Active":
        active = condition(
            "ScalingActive", True, KubeReason.ACTIVE,
            f"the controller sets the replicas of {spec.target.kind} {spec.target.name}",
        )
    else:
        active = condition(
            "ScalingActive", False, KubeReason.FORECAST_ONLY,
            "mode is ForecastOnly: decisions are recorded, the target is never patched",
        )
    conditions = [
        condition("Ready", True, KubeReason.RECONCILED, f"reconciled {spec.target.kind} {spec.target.name}"),
        forecast_condition(decision, fallback),
        active,
        limited_condition(decision, spec),
    ]
    return fields, conditions


def signals_status(decision: Decision) -> list[dict[str, Any]]:
    """``status.signals``: each signal's figures, in the CRD's camelCase.

    >>> from scaler.decision import SignalFigures
    >>> d = Decision("shop/a", 0, 2, 4, Reason.FORECAST_PEAK, "m", signal="rps", signals=(
    ...     SignalFigures("rps", "a/rps", 4, Reason.FORECAST_PEAK, "peak", 100, 180, 250.0, 390.0),
    ...     SignalFigures("queue", "a/q", 2, Reason.STALE_FORECAST, "stale", 50, 60, 80.0)))
    >>> [(s["name"], s["desiredReplicas"], s["reason"], s["forecastPeak"]) for s in signals_status(d)]
    [('rps', 4, 'ForecastPeak', 390.0), ('queue', 2, 'StaleForecast', None)]
    """
    def num(x: float | None) -> float | None:
        return round(float(x), 6) if x is not None else None

    return [{"name": f.name, "series": f.series, "desiredReplicas": f.desired,
             "reason": f.reason.value, "message": f.message, "observed": num(f.observed),
             "forecastPeak": num(f.forecast_peak),
             "capacityPerReplica": f.capacity_per_replica,
             "leadTimeSeconds": f.lead_time_seconds,
             **({"lag": num(f.lag)} if f.lag is not None else {}),
             **({"partitions": f.partitions} if f.partitions is not None else {}),
             **({"comparison": comparison_fields(f.vs_hpa)} if f.vs_hpa is not None else {})}
            for f in decision.signals]


def comparison_status(decision: Decision) -> dict[str, Any]:
    """``status.comparison``: the shadow comparison of the signal that decided, in the CRD's
    camelCase (each signal's own is in ``status.signals[].comparison``).

    >>> from scaler.decision import Comparison, Reason
    >>> d = Decision("shop/a", 0, 2, 2, Reason.FORECAST_PEAK, "m", simulated_replicas=3,
    ...              vs_hpa=Comparison(86400, 38, 200, 100, 60, 600, 1040, 1000))
    >>> s = comparison_status(d)
    >>> s["short"], s["hpaEqualCostUnserved"], s["simulatedReplicas"]
    ('-62%', 100, 3)
    """
    assert decision.vs_hpa is not None
    out = comparison_fields(decision.vs_hpa)
    if decision.simulated_replicas is not None:
        out["simulatedReplicas"] = decision.simulated_replicas
    return out


def comparison_fields(c: Comparison) -> dict[str, Any]:
    """One shadow comparison in the CRD's camelCase (``short`` is the VS HPA column)."""
    short = (f"{c.unserved / c.hpa_equal_cost_unserved - 1.0:+.0%}"
             if c.hpa_equal_cost_unserved > 0 else ("0 unserved" if c.unserved == 0 else "n/a"))
    out: dict[str, Any] = {
        "short": short,
        "summary": c.summary(),
        "windowSeconds": round(c.window_seconds, 3),
        "unserved": round(c.unserved, 6),
        "hpaUnserved": round(c.hpa_unserved, 6),
        "hpaEqualCostUnserved": round(c.hpa_equal_cost_unserved, 6),
        "underprovisionedSeconds": round(c.underprovisioned_seconds, 3),
        "hpaUnderprovisionedSeconds": round(c.hpa_underprovisioned_seconds, 3),
        "replicaSeconds": round(c.replica_seconds, 3),
        "hpaReplicaSeconds": round(c.hpa_replica_seconds, 3),
    }
    return out


def problem_status(reason: ProblemReason, message: str) -> list[dict[str, str]]:
    """Conditions when nothing can be done (invalid spec, missing target, conflict)."""
    return [
        condition("Ready", False, reason, message),
        condition("ScalingActive", False, reason, message),
    ]
