"""The ``PredictiveScaler`` spec (CRD ``foresight.dev/v1alpha1`` or a YAML file).

Field names and defaults follow DESIGN.md; ``behavior`` has the meaning and the
defaults of the HPA's ``autoscaling/v2`` behavior.

Parsing is strict, as the CRD's schema is: an unknown field is an error that
names the nearest valid one (a misspelt ``maxReplica`` never silently falls
back to the default), numbers must be numbers, finite and within the CRD's
ranges, and every problem of a spec is reported at once.
"""

from __future__ import annotations

import difflib
import math
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


#: Kubernetes' replica counts are int32
MAX_INT32 = 2**31 - 1
#: the CRD's ranges (deploy/crd.yaml)
MAX_LEAD_TIME_SECONDS = 86400
MAX_STABILIZATION_SECONDS = 3600
MAX_PERIOD_SECONDS = 1800
MAX_STALE_AFTER_SECONDS = 7 * 86400
#: the largest capacityPerReplica (any unit): beyond it, a unit mistake
MAX_CAPACITY = 1e15

DOC_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
SPEC_FIELDS = ("scaleTargetRef", "series", "capacityPerReplica", "minReplicas", "maxReplicas",
               "leadTimeSeconds", "mode", "behavior", "tolerance", "staleAfterSeconds",
               "budgetUtilization")
REF_FIELDS = ("apiVersion", "kind", "name")
BEHAVIOR_FIELDS = ("scaleUp", "scaleDown")
RULES_FIELDS = ("stabilizationWindowSeconds", "selectPolicy", "policies", "tolerance")
POLICY_FIELDS = ("type", "value", "periodSeconds")


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
    #: the HPA's tolerance for this direction (KEP-4951); None: ``spec.tolerance`` (0.1)
    tolerance: float | None = None


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
    def tolerances(self) -> tuple[float, float]:
        """(scale-up, scale-down) tolerance on the usage ratio, the HPA's meaning.

        ``behavior.scaleUp.tolerance`` / ``behavior.scaleDown.tolerance`` where set,
        else ``spec.tolerance`` (default 0.1, the HPA's).

        >>> ScalerSpec("a", "a", 10, scale_down=ScalingRules(300, (), "Max", 0.05)).tolerances
        (0.1, 0.05)
        """
        up = self.scale_up.tolerance
        down = self.scale_down.tolerance
        return (self.tolerance if up is None else up, self.tolerance if down is None else down)

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
        if not 0 < self.capacity_per_replica <= MAX_CAPACITY:  # also refuses NaN
            out.append(f"spec.capacityPerReplica must be > 0 and <= {MAX_CAPACITY:g}")
        if not 0 <= self.min_replicas <= MAX_INT32:
            out.append("spec.minReplicas must be >= 0")
        if not 1 <= self.max_replicas <= MAX_INT32:
            out.append(f"spec.maxReplicas must be >= 1 and <= {MAX_INT32}")
        if self.min_replicas > self.max_replicas:
            out.append(
                f"spec.minReplicas ({self.min_replicas}) > spec.maxReplicas ({self.max_replicas})"
            )
        if not 0.4 <= self.budget_utilization <= 1.0:
            out.append("spec.budgetUtilization must be between 0.4 and 1.0")
        if not 0 <= self.lead_time_seconds <= MAX_LEAD_TIME_SECONDS:
            out.append(f"spec.leadTimeSeconds must be >= 0 and <= {MAX_LEAD_TIME_SECONDS}")
        if not 0 <= self.tolerance <= 1:
            out.append("spec.tolerance must be in [0, 1]")
        if self.stale_after_seconds is not None and not 0 <= self.stale_after_seconds <= MAX_STALE_AFTER_SECONDS:
            out.append(f"spec.staleAfterSeconds must be >= 0 and <= {MAX_STALE_AFTER_SECONDS}")
        if self.mode not in MODES:
            out.append(f"spec.mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        for which, rules in (("scaleUp", self.scale_up), ("scaleDown", self.scale_down)):
            if rules.select_policy not in SELECT_POLICIES:
                out.append(f"spec.behavior.{which}.selectPolicy must be one of {SELECT_POLICIES}")
            if not 0 <= rules.stabilization_window_seconds <= MAX_STABILIZATION_SECONDS:
                out.append(f"spec.behavior.{which}.stabilizationWindowSeconds must be >= 0 "
                           f"and <= {MAX_STABILIZATION_SECONDS}")
            if rules.tolerance is not None and not 0 <= rules.tolerance <= 1:
                out.append(f"spec.behavior.{which}.tolerance must be in [0, 1]")
            for p in rules.policies:
                if p.type not in POLICY_TYPES:
                    out.append(f"spec.behavior.{which}.policies type must be Pods or Percent")
                if not (0 < p.value <= MAX_INT32 and 0 < p.period_seconds <= MAX_PERIOD_SECONDS):
                    out.append(f"spec.behavior.{which}.policies need value > 0 and "
                               f"periodSeconds in (0, {MAX_PERIOD_SECONDS}]")
        return out

    def validate(self) -> ScalerSpec:
        """Return self, or raise :class:`SpecError` listing every problem."""
        problems = self.problems()
        if problems:
            raise SpecError(f"PredictiveScaler {self.key}: " + "; ".join(problems))
        return self

    @classmethod
    def from_manifest(cls, doc: Mapping[str, Any]) -> ScalerSpec:
        """Build from a ``PredictiveScaler`` manifest (dict); raise SpecError if invalid.

        >>> ScalerSpec.from_manifest({"metadata": {"name": "a"}, "spec": {
        ...     "scaleTargetRef": {"name": "a"}, "series": "a/rps", "capacityPerReplica": 10,
        ...     "maxReplica": 3, "leadTimeSeconds": float("nan")}})
        Traceback (most recent call last):
        ...
        scaler.spec.SpecError: PredictiveScaler default/a: unknown field spec.maxReplica (did you mean maxReplicas?); spec.leadTimeSeconds must be a finite number, not nan
        """
        if not isinstance(doc, Mapping):
            raise SpecError(f"a {KIND} must be a mapping, not {type(doc).__name__}")
        r = _Reader()
        meta = r.mapping(doc, "metadata", "metadata")
        spec = r.mapping(doc, "spec", "spec")
        r.known(doc, DOC_FIELDS, "")
        r.known(spec, SPEC_FIELDS, "spec.")
        ref = r.mapping(spec, "scaleTargetRef", "spec.scaleTargetRef")
        r.known(ref, REF_FIELDS, "spec.scaleTargetRef.")
        behavior = r.mapping(spec, "behavior", "spec.behavior")
        r.known(behavior, BEHAVIOR_FIELDS, "spec.behavior.")
        name = r.string(meta, "name", "metadata.name", "")
        namespace = r.string(meta, "namespace", "metadata.namespace", "") or "default"
        stale = r.number(spec, "staleAfterSeconds", "spec.staleAfterSeconds", None)
        out = cls(
            name=name,
            namespace=namespace,
            series=r.string(spec, "series", "spec.series", ""),
            capacity_per_replica=r.number(spec, "capacityPerReplica", "spec.capacityPerReplica", 0.0),
            min_replicas=r.integer(spec, "minReplicas", "spec.minReplicas", 1),
            max_replicas=r.integer(spec, "maxReplicas", "spec.maxReplicas", 10),
            lead_time_seconds=r.number(spec, "leadTimeSeconds", "spec.leadTimeSeconds", 180.0),
            mode=r.string(spec, "mode", "spec.mode", "Active"),
            target=TargetRef(
                r.string(ref, "apiVersion", "spec.scaleTargetRef.apiVersion", "apps/v1"),
                r.string(ref, "kind", "spec.scaleTargetRef.kind", "Deployment"),
                r.string(ref, "name", "spec.scaleTargetRef.name", ""),
            ),
            scale_up=_rules(r, behavior, "scaleUp", DEFAULT_SCALE_UP),
            scale_down=_rules(r, behavior, "scaleDown", DEFAULT_SCALE_DOWN),
            tolerance=r.number(spec, "tolerance", "spec.tolerance", 0.1),
            budget_utilization=r.number(spec, "budgetUtilization", "spec.budgetUtilization", 0.6),
            stale_after_seconds=stale,
        )
        problems = r.problems + [p for p in out.problems() if not any(p.startswith(q) for q in r.fields)]
        if problems:
            raise SpecError(f"PredictiveScaler {out.key}: " + "; ".join(problems))
        return out


class _Reader:
    """Reads manifest fields, collecting every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.fields: list[str] = []  # paths already reported (problems() would repeat them)

    def _bad(self, path: str, problem: str) -> None:
        self.problems.append(f"{path} {problem}")
        self.fields.append(path)

    def known(self, obj: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for k in obj:
            if k not in allowed:
                near = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f" (did you mean {near[0]}?)" if near else f" (valid: {', '.join(allowed)})"
                self.problems.append(f"unknown field {prefix}{k}{hint}")

    def mapping(self, obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        v = obj.get(key)
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            self._bad(path, f"must be a mapping, not {type(v).__name__}")
            return {}
        return v

    def string(self, obj: Mapping[str, Any], key: str, path: str, default: str) -> str:
        v = obj.get(key)
        if v is None:
            return default
        if not isinstance(v, str):
            self._bad(path, f"must be a string, not {v!r:.40}")
            return default
        return v

    def number(self, obj: Mapping[str, Any], key: str, path: str, default: Any) -> Any:
        v = obj.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float):
            self._bad(path, f"must be a number, not {v!r:.40}")
            return default
        try:
            f = float(v)
        except OverflowError:
            f = math.inf
        if not math.isfinite(f):
            self._bad(path, f"must be a finite number, not {v!r}")
            return default
        return f

    def integer(self, obj: Mapping[str, Any], key: str, path: str, default: int) -> int:
        v = obj.get(key)
        if v is None:
            return default
        f = self.number(obj, key, path, None)
        if f is None:
            return default
        if f != int(f):
            self._bad(path, f"must be an integer, not {v!r}")
            return default
        if not -MAX_INT32 <= f <= MAX_INT32:
            self._bad(path, f"is out of range ({v!r})")
            return default
        return int(f)


def _rules(r: _Reader, behavior: Mapping[str, Any], which: str, default: ScalingRules) -> ScalingRules:
    prefix = f"spec.behavior.{which}"
    raw = r.mapping(behavior, which, prefix)
    if not raw:
        return default
    r.known(raw, RULES_FIELDS, prefix + ".")
    policies = raw.get("policies")
    parsed = default.policies
    if policies is not None:
        if not isinstance(policies, list):
            r._bad(f"{prefix}.policies", "must be a list")
        else:
            out = []
            for i, p in enumerate(policies):
                path = f"{prefix}.policies[{i}]"
                if not isinstance(p, Mapping):
                    r._bad(path, "must be a mapping")
                    continue
                r.known(p, POLICY_FIELDS, path + ".")
                missing = [k for k in POLICY_FIELDS if k not in p]
                if missing:
                    r._bad(path, f"needs {', '.join(missing)}")
                    continue
                out.append(RatePolicy(r.string(p, "type", f"{path}.type", ""),
                                      r.integer(p, "value", f"{path}.value", 0),
                                      r.integer(p, "periodSeconds", f"{path}.periodSeconds", 0)))
            parsed = tuple(out)
    return ScalingRules(
        stabilization_window_seconds=r.integer(
            raw, "stabilizationWindowSeconds", f"{prefix}.stabilizationWindowSeconds",
            default.stabilization_window_seconds),
        policies=parsed,
        select_policy=r.string(raw, "selectPolicy", f"{prefix}.selectPolicy", default.select_policy),
        tolerance=r.number(raw, "tolerance", f"{prefix}.tolerance", None),
    )


def load_specs(path: str | Path) -> list[ScalerSpec]:
    """Read every ``PredictiveScaler`` document from a YAML file (SpecError if unusable)."""
    try:
        with open(path, encoding="utf-8") as fh:
            docs: Iterable[Any] = list(yaml.safe_load_all(fh))
    except OSError as exc:
        raise SpecError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    specs = [
        ScalerSpec.from_manifest(d)
        for d in docs
        if isinstance(d, Mapping) and d.get("kind", KIND) == KIND
    ]
    if not specs:
        raise SpecError(f"{path}: no {KIND} documents found")
    return specs
