"""The ``PredictiveScaler`` spec (CRD ``foresight.dev/v1alpha1`` or a YAML file).

Field names and defaults follow DESIGN.md; ``behavior`` has the meaning and the
defaults of the HPA's ``autoscaling/v2`` behavior.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

API_VERSION = "foresight.dev/v1alpha1"
KIND = "PredictiveScaler"
MODES = ("Active", "ForecastOnly")
POLICY_TYPES = ("Pods", "Percent")
SELECT_POLICIES = ("Max", "Min", "Disabled")


class SpecError(ValueError):
    """A spec that cannot be used; the message says every problem found."""


@dataclass(frozen=True, slots=True)
class RatePolicy:
    type: str  # Pods | Percent
    value: int
    period_seconds: int


@dataclass(frozen=True, slots=True)
class ScalingRules:
    stabilization_window_seconds: int
    policies: tuple[RatePolicy, ...]
    select_policy: str = "Max"


# HPA defaults (autoscaling/v2): scale up fast, scale down after 5 minutes.
DEFAULT_SCALE_UP = ScalingRules(
    0, (RatePolicy("Percent", 100, 15), RatePolicy("Pods", 4, 15)), "Max"
)
DEFAULT_SCALE_DOWN = ScalingRules(300, (RatePolicy("Percent", 100, 15),), "Max")


@dataclass(frozen=True, slots=True)
class TargetRef:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class ScalerSpec:
    """One ``PredictiveScaler``.

    >>> s = ScalerSpec.from_manifest({
    ...     "metadata": {"name": "checkout", "namespace": "shop"},
    ...     "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "checkout"},
    ...              "series": "checkout/requests", "capacityPerReplica": 120,
    ...              "minReplicas": 2, "maxReplicas": 60, "leadTimeSeconds": 180}})
    >>> s.key, s.mode, s.scale_down.stabilization_window_seconds
    ('shop/checkout', 'Active', 300)
    """

    name: str
    series: str
    capacity_per_replica: float
    min_replicas: int = 1
    max_replicas: int = 10
    lead_time_seconds: float = 180.0
    mode: str = "Active"
    namespace: str = "default"
    target: TargetRef = field(default_factory=lambda: TargetRef("apps/v1", "Deployment", ""))
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN
    tolerance: float = 0.1
    stale_after_seconds: float | None = None  # default: 3 windows, decided by the caller
    #: the one cost knob: spend (recently) no more than an HPA at this target utilisation
    budget_utilization: float = 0.6

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def problems(self) -> list[str]:
        """Every reason this spec cannot be used (empty when valid)."""
        out = []
        if not self.name:
            out.append("metadata.name is required")
        if not self.series:
            out.append("spec.series is required")
        if not self.target.name:
            out.append("spec.scaleTargetRef.name is required")
        if not self.capacity_per_replica > 0:
            out.append("spec.capacityPerReplica must be > 0")
        if self.min_replicas < 0:
            out.append("spec.minReplicas must be >= 0")
        if self.max_replicas < 1:
            out.append("spec.maxReplicas must be >= 1")
        if self.min_replicas > self.max_replicas:
            out.append(
                f"spec.minReplicas ({self.min_replicas}) > spec.maxReplicas ({self.max_replicas})"
            )
        if not 0.4 <= self.budget_utilization <= 1.0:
            out.append("spec.budgetUtilization must be between 0.4 and 1.0")
        if self.lead_time_seconds < 0:
            out.append("spec.leadTimeSeconds must be >= 0")
        if self.mode not in MODES:
            out.append(f"spec.mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        for which, rules in (("scaleUp", self.scale_up), ("scaleDown", self.scale_down)):
            if rules.select_policy not in SELECT_POLICIES:
                out.append(f"spec.behavior.{which}.selectPolicy must be one of {SELECT_POLICIES}")
            for p in rules.policies:
                if p.type not in POLICY_TYPES:
                    out.append(f"spec.behavior.{which}.policies type must be Pods or Percent")
                if p.value <= 0 or p.period_seconds <= 0:
                    out.append(f"spec.behavior.{which}.policies need value > 0 and periodSeconds > 0")
        return out

    def validate(self) -> ScalerSpec:
        """Return self, or raise :class:`SpecError` listing every problem."""
        problems = self.problems()
        if problems:
            raise SpecError(f"PredictiveScaler {self.key}: " + "; ".join(problems))
        return self

    @classmethod
    def from_manifest(cls, doc: Mapping[str, Any]) -> ScalerSpec:
        """Build from a ``PredictiveScaler`` manifest (dict); raise SpecError if invalid."""
        try:
            meta = doc.get("metadata") or {}
            spec = doc.get("spec") or {}
            ref = spec.get("scaleTargetRef") or {}
            behavior = spec.get("behavior") or {}
            out = cls(
                name=str(meta.get("name", "")),
                namespace=str(meta.get("namespace") or "default"),
                series=str(spec.get("series", "")),
                capacity_per_replica=float(spec.get("capacityPerReplica", 0)),
                min_replicas=int(spec.get("minReplicas", 1)),
                max_replicas=int(spec.get("maxReplicas", 10)),
                lead_time_seconds=float(spec.get("leadTimeSeconds", 180)),
                mode=str(spec.get("mode", "Active")),
                target=TargetRef(
                    str(ref.get("apiVersion", "apps/v1")),
                    str(ref.get("kind", "Deployment")),
                    str(ref.get("name", "")),
                ),
                scale_up=_rules(behavior.get("scaleUp"), DEFAULT_SCALE_UP),
                scale_down=_rules(behavior.get("scaleDown"), DEFAULT_SCALE_DOWN),
                tolerance=float(spec.get("tolerance", 0.1)),
                budget_utilization=float(spec.get("budgetUtilization", 0.6)),
                stale_after_seconds=(
                    float(spec["staleAfterSeconds"]) if "staleAfterSeconds" in spec else None
                ),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, Mapping) else "?"
            raise SpecError(f"PredictiveScaler {name}: malformed spec: {exc}") from exc
        return out.validate()


def _rules(raw: Mapping[str, Any] | None, default: ScalingRules) -> ScalingRules:
    if not raw:
        return default
    policies = raw.get("policies")
    return ScalingRules(
        stabilization_window_seconds=int(
            raw.get("stabilizationWindowSeconds", default.stabilization_window_seconds)
        ),
        policies=(
            tuple(
                RatePolicy(str(p["type"]), int(p["value"]), int(p["periodSeconds"]))
                for p in policies
            )
            if policies is not None
            else default.policies
        ),
        select_policy=str(raw.get("selectPolicy", default.select_policy)),
    )


def load_specs(path: str | Path) -> list[ScalerSpec]:
    """Read every ``PredictiveScaler`` document from a YAML file."""
    with open(path, encoding="utf-8") as fh:
        docs: Iterable[Any] = list(yaml.safe_load_all(fh))
    specs = [
        ScalerSpec.from_manifest(d)
        for d in docs
        if isinstance(d, Mapping) and d.get("kind", KIND) == KIND
    ]
    if not specs:
        raise SpecError(f"{path}: no {KIND} documents found")
    return specs
