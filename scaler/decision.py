"""The ``Decision`` domain type and its fixed vocabulary of reasons."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Why the desired count is what it is (countable, stable names)."""

    FORECAST_PEAK = "ForecastPeak"  # provisioned for the forecast peak within the lead time
    REACTIVE_FLOOR = "ReactiveFloor"  # observed load needs more than the forecast
    WITHIN_TOLERANCE = "WithinTolerance"  # change smaller than the tolerance band
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"  # held by the scale-down window
    SCALE_UP_STABILIZED = "ScaleUpStabilized"  # held by the scale-up window
    RATE_LIMITED = "RateLimited"  # capped by a behavior rate policy
    BOUNDED = "Bounded"  # clamped to minReplicas / maxReplicas
    SCHEDULED = "Scheduled"  # raised to a scheduled minimum (spec.schedules)
    CONSUMER_LAG = "ConsumerLag"  # a Kafka consumer group's lag needs more (lag / lagThreshold)
    INACTIVE = "Inactive"  # a Kafka topic signal at or below its activation threshold: 0
    STALE_FORECAST = "StaleForecast"  # forecast too old: no scale-down
    NO_FORECAST = "NoForecast"  # no forecast yet: no scale-down
    COLD_FORECAST = "ColdForecast"  # model still warming up: no scale-down
    ANOMALOUS_SERIES = "AnomalousSeries"  # latest data flagged anomalous: no scale-down
    HORIZON_TOO_SHORT = "HorizonTooShort"  # forecast ends inside the lead window: no scale-down
    INVALID_SPEC = "InvalidSpec"  # spec cannot be used: nothing done
    CONFLICT = "ConflictingAutoscaler"  # another autoscaler owns the target: nothing done


class Direction(StrEnum):
    """Which way a rate policy capped the count (recorded with ``Reason.RATE_LIMITED``)."""

    UP = "Up"
    DOWN = "Down"


#: reasons under which a scale-down is never allowed (safety rule)
FALLBACK_REASONS = frozenset({
    Reason.STALE_FORECAST, Reason.NO_FORECAST, Reason.COLD_FORECAST, Reason.ANOMALOUS_SERIES,
    Reason.HORIZON_TOO_SHORT,
})


@dataclass(frozen=True, slots=True)
class Comparison:
    """The acting policy against the shadow HPA sweep over ``window_seconds`` of event time.

    In the series' unit: ``unserved`` is load x seconds left unserved,
    ``replica_seconds`` provisioned replicas x seconds, ``underprovisioned_seconds``
    the time with some load unserved. ``hpa_*`` is the reactive HPA at 100 %
    target utilisation on the same windows, ``hpa_equal_cost_unserved`` the HPA
    sweep (40-100 %) interpolated at this policy's replica-seconds.
    """

    window_seconds: float
    unserved: float
    hpa_unserved: float
    hpa_equal_cost_unserved: float
    underprovisioned_seconds: float
    hpa_underprovisioned_seconds: float
    replica_seconds: float
    hpa_replica_seconds: float

    def summary(self) -> str:
        """One line for people.

        >>> Comparison(86400, 38, 200, 100, 60, 600, 1040, 1000).summary()
        "unserved 62% below the equal-cost HPA's, at 4% more replica-hours than the HPA at 100%"
        """
        if self.hpa_equal_cost_unserved > 0:
            r = self.unserved / self.hpa_equal_cost_unserved - 1.0
            head = f"unserved {abs(r):.0%} {'below' if r < 0 else 'above'} the equal-cost HPA's"
        elif self.unserved > 0:
            head = "some load unserved where the equal-cost HPA served all"
        else:
            head = "no load unserved"
        if self.hpa_replica_seconds > 0:
            c = self.replica_seconds / self.hpa_replica_seconds - 1.0
            tail = (f"at {abs(c):.0%} {'more' if c >= 0 else 'fewer'} replica-hours than "
                    f"the HPA at 100%")
        else:
            tail = "no replica-hours yet"
        return f"{head}, {tail}"


@dataclass(frozen=True, slots=True)
class SignalFigures:
    """One signal's part in a decision: its own recommendation and why.

    ``desired`` is the signal's raw recommendation (its safety rule applied:
    a signal whose forecast cannot be used holds or raises, never lowers),
    before the target's stabilisation, rate limits and min/max; the target's
    raw count is the highest of its signals'.
    """

    name: str
    series: str
    desired: int
    reason: Reason
    message: str
    capacity_per_replica: float
    lead_time_seconds: float
    observed: float | None = None
    forecast_peak: float | None = None
    fallback: Reason | None = None
    drifting: bool = False
    #: a Kafka topic signal's consumer group lag (messages) and the topic's partitions
    lag: float | None = None
    partitions: int | None = None
    #: this signal's own shadow comparison (rolling window): its load, at its capacity
    vs_hpa: Comparison | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided for one target at event time ``ts``.

    ``desired`` is the count after every limit; ``applied`` is set by the
    reconciler (False in ForecastOnly mode or when nothing changed);
    ``message`` is a sentence for humans.
    """

    target: str
    ts: float
    current: int
    desired: int
    reason: Reason
    message: str
    forecast_peak: float | None = None
    observed: float | None = None
    mode: str = "Active"
    applied: bool = False
    #: event time of the observation behind ``observed`` (set by the reconciler)
    observed_ts: float | None = None
    #: why the forecast could not be used (one of ``FALLBACK_REASONS``), else None;
    #: ``reason`` may say something else (e.g. ``ReactiveFloor``) on the same path
    fallback: Reason | None = None
    #: the direction a ``behavior`` rate policy capped (set with ``Reason.RATE_LIMITED``);
    #: it stays set if min/max then bounds the count, so ``reason`` decides what it means
    limited: Direction | None = None
    #: the shadow comparison over the rolling window and since the target started
    vs_hpa: Comparison | None = None
    vs_hpa_total: Comparison | None = None
    #: the acting side's simulated provisioned replicas (what ForecastOnly would have had)
    simulated_replicas: int | None = None
    #: the series' forecast errors changed regime: decided reactively, its forecast ignored
    drifting: bool = False
    #: the signal whose recommendation decided (the highest; its name), and every signal's
    signal: str = ""
    signals: tuple[SignalFigures, ...] = ()
    #: the scheduled minimum in force at ``ts`` (spec.schedules): (its name, minReplicas)
    schedule: tuple[str, int] | None = None
