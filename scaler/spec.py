"""The ``PredictiveScaler`` spec (CRD ``foresight.dev/v1alpha1`` or a YAML file).

Field names and defaults follow DESIGN.md; ``behavior`` has the meaning and the
defaults of the HPA's ``autoscaling/v2`` behavior.

Parsing is strict, as the CRD's schema is: an unknown field is an error that
names the nearest valid one (a misspelt ``maxReplica`` never silently falls
back to the default), numbers must be numbers, finite and within the CRD's
ranges, and every problem of a spec is reported at once.

A target scales on one or more :class:`Signal` (``spec.signals``; ``series`` +
``capacityPerReplica`` is the one-signal shorthand, converted on reading) and
may have scheduled minimums (``spec.schedules``, :mod:`scaler.schedule`).
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from scaler.schedule import Schedule, parse_local

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
SPEC_FIELDS = ("scaleTargetRef", "series", "capacityPerReplica", "signals", "schedules",
               "minReplicas", "maxReplicas", "leadTimeSeconds", "mode", "behavior", "tolerance",
               "staleAfterSeconds", "budgetUtilization")
SIGNAL_FIELDS = ("name", "series", "prometheus", "kafkaTopic", "capacityPerReplica",
                 "leadTimeSeconds")
#: a signal's source: exactly one of these keys
SOURCES = ("series", "prometheus", "kafkaTopic")
PROMETHEUS_FIELDS = ("query",)
KAFKA_TOPIC_FIELDS = ("topic", "consumerGroup", "lagThreshold", "activationLagThreshold")
SCHEDULE_FIELDS = ("name", "cron", "durationSeconds", "start", "end", "timezone", "minReplicas")
#: the most signals and schedules one target may have (the CRD's maxItems)
MAX_SIGNALS = 16
MAX_SCHEDULES = 32
#: KEDA's default ``lagThreshold`` (messages of lag one consumer replica takes)
DEFAULT_LAG_THRESHOLD = 10.0
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


def prometheus_series(query: str) -> str:
    """The Foresight series a ``prometheus: {query}`` signal reads: derived from the query.

    ``prometheus/`` and the first 16 hex digits of the SHA-256 of the query's
    text (UTF-8, leading and trailing whitespace removed; nothing else is
    normalised, so two spellings of one query are two series). The Prometheus
    ingest process names the series it feeds for a query the same way, with
    this function.

    >>> prometheus_series('sum(rate(http_requests_total{job="checkout"}[1m]))')
    'prometheus/e61613b0bbd6c203'
    >>> prometheus_series("  up ") == prometheus_series("up")
    True
    """
    return "prometheus/" + hashlib.sha256(query.strip().encode("utf-8")).hexdigest()[:16]


def kafka_topic_series(topic: str, consumer_group: str) -> tuple[str, str, str]:
    """The series a ``kafkaTopic`` signal reads, as the Kafka sampler
    (:mod:`streams.kafka_signal`) names them: (the topic's incoming rate in
    messages/s, the consumer group's lag in messages, the topic's partition count).

    >>> kafka_topic_series("orders", "billing")
    ('kafka/orders/rate', 'kafka/orders/lag/billing', 'kafka/orders/partitions')
    """
    return f"kafka/{topic}/rate", f"kafka/{topic}/lag/{consumer_group}", f"kafka/{topic}/partitions"


@dataclass(frozen=True, slots=True)
class PrometheusSource:
    """A PromQL query whose result the Prometheus ingest feeds as a series."""

    query: str


@dataclass(frozen=True, slots=True)
class KafkaTopicSource:
    """A Kafka topic's incoming rate and a consumer group's lag (KEDA's Kafka trigger)."""

    topic: str
    consumer_group: str
    lag_threshold: float = DEFAULT_LAG_THRESHOLD
    activation_lag_threshold: float = 0.0

    @property
    def series(self) -> tuple[str, str, str]:
        """(rate, lag, partitions) series names (:func:`kafka_topic_series`)."""
        return kafka_topic_series(self.topic, self.consumer_group)


@dataclass(frozen=True, slots=True)
class Signal:
    """One load signal of a target: its series, the load one replica serves, its lead time.

    ``series`` is what the policy reads (for a Prometheus source, derived from
    the query by :func:`prometheus_series`); ``lead_time_seconds`` None means
    the spec's; ``name`` is how status, events and the dashboard call it
    (default: the series).

    >>> Signal("checkout/requests", 120).label
    'checkout/requests'
    >>> Signal(prometheus_series("up"), 5, source=PrometheusSource("up"), name="up").label
    'up'
    """

    series: str
    capacity_per_replica: float
    lead_time_seconds: float | None = None
    source: PrometheusSource | KafkaTopicSource | None = None  # None: a Foresight series
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.series

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every series this signal reads (a Kafka topic's: its rate, lag and partitions).

        >>> Signal("kafka/o/rate", 5, source=KafkaTopicSource("o", "g")).inputs
        ('kafka/o/rate', 'kafka/o/lag/g', 'kafka/o/partitions')
        """
        if isinstance(self.source, KafkaTopicSource):
            return self.source.series
        return (self.series,)

    @property
    def kind(self) -> str:
        """``series``, ``prometheus`` or ``kafkaTopic``."""
        if isinstance(self.source, PrometheusSource):
            return "prometheus"
        if isinstance(self.source, KafkaTopicSource):
            return "kafkaTopic"
        return "series"


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
    #: the one knob: the HPA target utilisation the policy acts as when the forecast does not help
    budget_utilization: float = 0.6
    #: every load signal; empty: one, ``series`` at ``capacity_per_replica`` (the shorthand).
    #: After construction never empty, and ``series`` / ``capacity_per_replica`` are the
    #: first signal's
    signals: tuple[Signal, ...] = ()
    #: scheduled minimums (``spec.schedules``)
    schedules: tuple[Schedule, ...] = ()
    #: the one signal came from ``series`` + ``capacityPerReplica`` (problems are named so)
    shorthand: bool = field(default=False, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.signals:
            object.__setattr__(self, "signals", (Signal(self.series, self.capacity_per_replica),))
            object.__setattr__(self, "shorthand", True)
        else:
            first = self.signals[0]
            object.__setattr__(self, "series", first.series)
            object.__setattr__(self, "capacity_per_replica", first.capacity_per_replica)

    def for_signal(self, signal: Signal) -> ScalerSpec:
        """This spec as if ``signal`` were its only one (its series, capacity and lead time):
        what the per-signal stages of the policy read.

        >>> s = ScalerSpec("a", "", 0, lead_time_seconds=120,
        ...                signals=(Signal("a/rps", 10), Signal("a/queue", 50, 300.0)))
        >>> v = s.for_signal(s.signals[1])
        >>> v.series, v.capacity_per_replica, v.lead_time_seconds, len(v.signals)
        ('a/queue', 50, 300.0, 1)
        """
        lead = self.lead_time_seconds if signal.lead_time_seconds is None else signal.lead_time_seconds
        return replace(self, series=signal.series, capacity_per_replica=signal.capacity_per_replica,
                       lead_time_seconds=lead, signals=(signal,))

    @property
    def all_series(self) -> tuple[str, ...]:
        """The series every signal reads (each once, in order; a Kafka topic signal reads
        three)."""
        return tuple(dict.fromkeys(n for s in self.signals for n in s.inputs))

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
        if not self.target.name:
            out.append("spec.scaleTargetRef.name is required")
        out += self._signal_problems()
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
        if len(self.schedules) > MAX_SCHEDULES:
            out.append(f"spec.schedules: at most {MAX_SCHEDULES}")
        names = [s.name for s in self.schedules]
        for i, sch in enumerate(self.schedules):
            out += sch.problems(f"spec.schedules[{i}]")
            if sch.name and names.index(sch.name) != i:
                out.append(f"spec.schedules[{i}].name {sch.name!r} is not unique")
            if sch.min_replicas > self.max_replicas:
                out.append(f"spec.schedules[{i}].minReplicas ({sch.min_replicas}) > "
                           f"spec.maxReplicas ({self.max_replicas})")
        return out

    def _signal_problems(self) -> list[str]:
        if self.shorthand:
            return self._one_signal_problems(self.signals[0], "spec.")
        out = []
        if len(self.signals) > MAX_SIGNALS:
            out.append(f"spec.signals: at most {MAX_SIGNALS}")
        labels = [s.label for s in self.signals]
        for i, sig in enumerate(self.signals):
            out += self._one_signal_problems(sig, f"spec.signals[{i}].")
            if sig.label and labels.index(sig.label) != i:
                out.append(f"spec.signals[{i}]: {sig.label!r} is already a signal of this "
                           "target (give it a distinct name)")
        return out

    def _one_signal_problems(self, sig: Signal, prefix: str) -> list[str]:
        out = []
        if not sig.series:
            out.append("spec.series is required (or spec.signals)" if prefix == "spec." else
                       f"{prefix}series, prometheus or kafkaTopic is required")
        if not 0 < sig.capacity_per_replica <= MAX_CAPACITY:  # also refuses NaN
            out.append(f"{prefix}capacityPerReplica must be > 0 and <= {MAX_CAPACITY:g}")
        lead = sig.lead_time_seconds
        if lead is not None and not 0 <= lead <= MAX_LEAD_TIME_SECONDS:
            out.append(f"{prefix}leadTimeSeconds must be >= 0 and <= {MAX_LEAD_TIME_SECONDS}")
        if isinstance(sig.source, PrometheusSource) and not sig.source.query.strip():
            out.append(f"{prefix}prometheus.query is required")
        if isinstance(sig.source, KafkaTopicSource):
            k = sig.source
            if not k.topic or not k.consumer_group:
                out.append(f"{prefix}kafkaTopic needs topic and consumerGroup")
            if not k.lag_threshold > 0 or not k.activation_lag_threshold >= 0:
                out.append(f"{prefix}kafkaTopic needs lagThreshold > 0 and "
                           "activationLagThreshold >= 0")
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
        signals = _signals(r, spec)
        out = cls(
            name=name,
            namespace=namespace,
            series=r.string(spec, "series", "spec.series", ""),
            capacity_per_replica=r.number(spec, "capacityPerReplica", "spec.capacityPerReplica", 0.0),
            signals=signals,
            schedules=_schedules(r, spec),
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


def _signals(r: _Reader, spec: Mapping[str, Any]) -> tuple[Signal, ...]:
    """``spec.signals`` (empty when absent: the ``series`` + ``capacityPerReplica`` shorthand)."""
    raw = spec.get("signals")
    if raw is None:
        return ()
    shorthand = [k for k in ("series", "capacityPerReplica") if k in spec]
    if shorthand:
        r._bad("spec.signals", f"and spec.{' / spec.'.join(shorthand)} are two forms of one "
                               "thing: give spec.signals, or spec.series with "
                               "spec.capacityPerReplica, not both")
    if not isinstance(raw, list) or not raw:
        r._bad("spec.signals", "must be a non-empty list")
        return ()
    out = []
    for i, item in enumerate(raw):
        path = f"spec.signals[{i}]"
        if not isinstance(item, Mapping):
            r._bad(path, "must be a mapping")
            continue
        r.known(item, SIGNAL_FIELDS, path + ".")
        sources = [k for k in SOURCES if item.get(k) is not None]
        if len(sources) != 1:
            r._bad(path, f"needs exactly one source of series, prometheus or kafkaTopic, "
                         f"not {len(sources)}{': ' + ', '.join(sources) if sources else ''}")
            continue
        series = ""
        source: PrometheusSource | KafkaTopicSource | None = None
        if sources[0] == "series":
            series = r.string(item, "series", f"{path}.series", "")
        elif sources[0] == "prometheus":
            prom = r.mapping(item, "prometheus", f"{path}.prometheus")
            r.known(prom, PROMETHEUS_FIELDS, f"{path}.prometheus.")
            query = r.string(prom, "query", f"{path}.prometheus.query", "")
            source = PrometheusSource(query)
            series = prometheus_series(query) if query.strip() else ""
        else:
            kt = r.mapping(item, "kafkaTopic", f"{path}.kafkaTopic")
            r.known(kt, KAFKA_TOPIC_FIELDS, f"{path}.kafkaTopic.")
            source = KafkaTopicSource(
                r.string(kt, "topic", f"{path}.kafkaTopic.topic", ""),
                r.string(kt, "consumerGroup", f"{path}.kafkaTopic.consumerGroup", ""),
                r.number(kt, "lagThreshold", f"{path}.kafkaTopic.lagThreshold",
                         DEFAULT_LAG_THRESHOLD),
                r.number(kt, "activationLagThreshold",
                         f"{path}.kafkaTopic.activationLagThreshold", 0.0),
            )
            series = kafka_topic_series(source.topic, source.consumer_group)[0]
        out.append(Signal(
            series=series,
            capacity_per_replica=r.number(item, "capacityPerReplica",
                                          f"{path}.capacityPerReplica", 0.0),
            lead_time_seconds=r.number(item, "leadTimeSeconds", f"{path}.leadTimeSeconds", None),
            source=source,
            name=r.string(item, "name", f"{path}.name", ""),
        ))
    return tuple(out)


def _schedules(r: _Reader, spec: Mapping[str, Any]) -> tuple[Schedule, ...]:
    raw = spec.get("schedules")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        r._bad("spec.schedules", "must be a list")
        return ()
    out = []
    for i, item in enumerate(raw):
        path = f"spec.schedules[{i}]"
        if not isinstance(item, Mapping):
            r._bad(path, "must be a mapping")
            continue
        out.append(read_schedule(r, item, path))
    return tuple(out)


def read_schedule(r: _Reader, item: Mapping[str, Any], path: str) -> Schedule:
    """One schedule (``spec.schedules[i]``, or an entry of ``foresight backtest --schedule``)."""
    r.known(item, SCHEDULE_FIELDS, path + ".")
    tz = r.string(item, "timezone", f"{path}.timezone", "UTC")
    when: dict[str, float | None] = {}
    for key in ("start", "end"):
        v = item.get(key)
        if v is None:
            when[key] = None
        elif not isinstance(v, str):  # YAML reads an unquoted date-time as a datetime
            text = v.isoformat() if hasattr(v, "isoformat") else None
            when[key] = _local(r, text, tz, f"{path}.{key}") if text else None
            if text is None:
                r._bad(f"{path}.{key}", f"must be an ISO-8601 date-time, not {v!r:.40}")
        else:
            when[key] = _local(r, v, tz, f"{path}.{key}")
    return Schedule(
        name=r.string(item, "name", f"{path}.name", ""),
        min_replicas=r.integer(item, "minReplicas", f"{path}.minReplicas", 0),
        cron=r.string(item, "cron", f"{path}.cron", ""),
        duration_seconds=r.number(item, "durationSeconds", f"{path}.durationSeconds", 0.0),
        start=when["start"],
        end=when["end"],
        timezone=tz,
    )


def _local(r: _Reader, text: str, tz: str, path: str) -> float | None:
    try:
        return parse_local(text, tz)
    except ValueError as exc:
        if "time zone" not in str(exc):  # an unknown zone is reported once, by problems()
            r._bad(path, str(exc))
        return None


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


def load_schedules(path: str | Path) -> tuple[Schedule, ...]:
    """Read scheduled minimums from a YAML file: a list shaped like ``spec.schedules``, or a
    mapping with that list under ``schedules`` (SpecError naming the file if unusable).

    Used by ``foresight backtest --schedule FILE``.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise SpecError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if isinstance(doc, Mapping):
        r0 = _Reader()
        r0.known(doc, ("schedules",), "")
        if r0.problems:
            raise SpecError(f"{path}: " + "; ".join(r0.problems))
        doc = doc.get("schedules")
    if not isinstance(doc, list) or not doc:
        raise SpecError(f"{path}: expected a non-empty list of schedules "
                        "(each {name, minReplicas, cron + durationSeconds or start + end, "
                        "timezone})")
    r = _Reader()
    out = []
    for i, item in enumerate(doc):
        if not isinstance(item, Mapping):
            r._bad(f"schedules[{i}]", "must be a mapping")
            continue
        out.append(read_schedule(r, item, f"schedules[{i}]"))
    names = [s.name for s in out]
    problems = list(r.problems)
    for i, s in enumerate(out):
        problems += [p for p in s.problems(f"schedules[{i}]")
                     if not any(p.startswith(q) for q in r.fields)]
        if s.name and names.index(s.name) != i:
            problems.append(f"schedules[{i}].name {s.name!r} is not unique")
    if problems:
        raise SpecError(f"{path}: " + "; ".join(problems))
    return tuple(out)
