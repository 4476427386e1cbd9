"""The scaling policy: pure, no clock, no I/O.

``decide(spec, state, forecast, observed, current, now) -> (Decision, state)``
is a short composition of stages, each returning ``(replicas, reason,
message)`` as the HPA's ``normalizeDesiredReplicas`` and friends do. Per
signal (``spec.signals``; :func:`signal_stage`), on that signal's own series,
capacity and lead time:

1. :func:`trusted_forecast`: the forecast's points over the lead window
   ``[now, now + leadTime]``, or why it cannot be used (missing, stale, cold,
   too short to cover the lead window, or the series' latest data anomalous).
2. :func:`learn`: once per observed window, every contender of the signal's
   adaptive policy (:mod:`scaler.adaptive`) steps through the window in
   shadow, and the one that recently served best within the spec's cost
   budget (``budgetUtilization``) becomes the acting one.
3. :func:`recommend`: the acting contender's count; when the forecast cannot
   be trusted, only the load observed now may raise the count, else it holds
   (never a scale-down on bad data).
4. For a Kafka topic signal, :func:`consumer_lag`: the consumer group's lag,
   activation to and from zero, the partition cap.

Then for the target: :func:`highest` (the maximum over the signals, as the
HPA takes over its metrics), :func:`scheduled` (a scheduled minimum in force
raises it), and in the HPA's order :func:`tolerance` (the fallback path's),
:func:`stabilize` (over the stored raw recommendations, ``behavior``),
:func:`rate_limit`, :func:`bound` (min/max, the minimum raised by a schedule).

A story. Until a contender has shown it does better, a fresh target is
provisioned for the forecast's upper bound at ``capacityPerReplica`` (never
less than the load observed needs): 330 with 100 per replica needs 4.

>>> from detectors.forecast import Forecast, ForecastPoint
>>> from scaler.spec import ScalerSpec, ScalingRules, TargetRef
>>> spec = ScalerSpec("web", "web/requests", capacity_per_replica=100, min_replicas=1,
...                   max_replicas=20, lead_time_seconds=120,
...                   target=TargetRef("apps/v1", "Deployment", "web"),
...                   scale_up=ScalingRules(0, (), "Max"), scale_down=ScalingRules(0, (), "Max"))
>>> def fc(i, peak):  # windows of 60 s; the forecast knows a burst every 10 windows
...     return Forecast("web/requests", issued=60.0 * i, step=60, coverage=0.8, model="m",
...         warm=True, points=tuple(ForecastPoint(60.0 * (i + h), load(i + h), 0,
...                                               load(i + h) * 1.1) for h in (1, 2, 3)))
>>> def load(i):
...     return 900.0 if i % 10 in (7, 8) else 300.0
>>> d, state = decide(spec, PolicyState(), fc(0, 0), Observation(0.0, 300.0), current=5, now=60.0)
>>> d.desired, d.reason.value
(4, 'ForecastPeak')
>>> d.message
'hpa@100%+forecast(band x1) acts (no evidence yet that another does better): forecast peak 330 within 120s needs 4 replicas at 100% of 100 each (observed 300)'

Bursts come every 10 windows. The contenders run beside it in shadow: the
reactive ones are a lead time late every time, the forecast ones are not, so
none beats the acting one by enough to take over, and it provisions for the
next burst two windows ahead:

>>> current = 5
>>> for i in range(1, 25):
...     d, state = decide(spec, state, fc(i, 0), Observation(60.0 * i, load(i)), current,
...                       60.0 * (i + 1))
...     current = d.desired
>>> d.reason.value, d.desired
('ForecastPeak', 10)
>>> d.message
'hpa@100%+forecast(band x1) acts (hpa@100%+forecast(band x0), window x0.4 did a little better recently, not by the margin a switch needs): forecast peak 990 within 120s needs 10 replicas at 100% of 100 each (observed 300)'

With no forecast the count holds, unless the observed load needs more (at the
acting contender's utilisation):

>>> decide(spec, state, None, Observation(60.0 * 25, 300.0), 10, 60.0 * 26)[0].reason.value
'NoForecast'
>>> d = decide(spec, state, None, Observation(60.0 * 25, 1300.0), 10, 60.0 * 26)[0]
>>> d.desired, d.reason.value
(13, 'ReactiveFloor')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from detectors.forecast import Forecast, ForecastPoint
from scaler.adaptive import Adaptive
from scaler.decision import FALLBACK_REASONS, Decision, Direction, Reason, SignalFigures
from scaler.schedule import scheduled_floor
from scaler.shadow import need
from scaler.spec import KafkaTopicSource, ScalerSpec, ScalingRules

#: a forecast older than this many of its steps is stale (unless the spec says)
STALE_STEPS = 3

#: what a stage returns: (replicas, reason, message), as the HPA's stages do
Stage = tuple[int, Reason, str]


@dataclass(frozen=True, slots=True)
class Observation:
    """The latest observed value of the driving series (event time ``ts``).

    ``anomalous`` is the detector's flag for that value (or the model's
    distrust of it): the policy then never scales down.

    >>> Observation(ts=540.0, value=1200.0, anomalous=True).anomalous
    True
    """

    ts: float
    value: float
    anomalous: bool = False


@dataclass(frozen=True, slots=True)
class PolicyState:
    """What the policy remembers between decisions for one target.

    ``recommendations``: (ts, raw recommendation) within the longest
    stabilisation window; ``scale_events``: (ts, change in replicas) within the
    longest rate-policy period; ``adaptives``: per signal, the adaptive policy's
    contenders and their tallies (learnt in place, once per observed window, so deciding
    again on the same data gives the same answer).
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    scale_events: tuple[tuple[float, int], ...] = field(default=())
    #: by signal name: each signal learns on its own load
    adaptives: Mapping[str, Adaptive] = field(default_factory=dict)

    @property
    def adaptive(self) -> Adaptive | None:
        """The first signal's adaptive policy (the only one of a one-signal spec).

        >>> PolicyState().adaptive is None
        True
        """
        return next(iter(self.adaptives.values()), None)

    def record_scale(self, ts: float, change: int) -> PolicyState:
        """Remember an applied change (called by the reconciler after actuating).

        >>> PolicyState().record_scale(60.0, 3).record_scale(120.0, 0).scale_events
        ((60.0, 3),)
        """
        if change == 0:
            return self
        return replace(self, scale_events=self.scale_events + ((ts, change),))


def replicas_for(load: float, capacity: float) -> int:
    """Replicas needed to serve ``load`` at ``capacity`` per replica (bounded).

    A huge or infinite load needs at most 2**31 - 1 (Kubernetes' int32, never a
    float-to-int ``OverflowError``); a NaN load needs none, and the policy never
    trusts non-finite data (:func:`trusted_forecast`).

    >>> replicas_for(241, 120), replicas_for(240, 120), replicas_for(0, 120)
    (3, 2, 0)
    >>> replicas_for(1e308, 0.5) == replicas_for(float("inf"), 120) == 2**31 - 1
    True
    """
    return need(load, capacity)


#: what a caller passes for the forecasts and observations: one (a one-signal spec), or
#: every series' latest by series name (the reconciler's own dicts)
Forecasts = Forecast | Mapping[str, Forecast] | None
Observations = Observation | Mapping[str, Observation] | None


def decide(
    spec: ScalerSpec,
    state: PolicyState,
    forecast: Forecasts,
    observed: Observations,
    current: int,
    now: float,
) -> tuple[Decision, PolicyState]:
    """Decide the desired replica count for one target at event time ``now``.

    ``current`` is the provisioned count (ready + starting); ``now`` is the
    watermark (the end of the last closed window). ``forecast`` and
    ``observed`` are the latest per series (mappings by series name), or, for
    a spec with one signal, that signal's. Returns the decision and the state
    to pass to the next call.

    Each signal goes through :func:`signal_stage` on its own (its own safety
    rule and adaptive policy); the highest recommendation wins, as in the HPA
    (:func:`highest`); then :func:`scheduled` raises it to a scheduled minimum,
    and the target's stages follow.

    >>> from scaler.spec import ScalerSpec, TargetRef
    >>> spec = ScalerSpec("api", "api/rps", capacity_per_replica=50,
    ...                   target=TargetRef("apps/v1", "Deployment", "api"))
    >>> d, state = decide(spec, PolicyState(), None, Observation(0.0, 260.0), current=2, now=10.0)
    >>> d.desired, d.reason.value, len(state.recommendations)
    (6, 'ReactiveFloor', 1)

    Two signals: requests at 50 per replica, and a queue at 400 per replica.
    Neither has a forecast yet, so each may only hold or raise the count (the first
    decides a tie):

    >>> from scaler.spec import Signal
    >>> two = ScalerSpec("api", "", 0, target=TargetRef("apps/v1", "Deployment", "api"),
    ...                  signals=(Signal("api/rps", 50), Signal("api/queue", 400)))
    >>> obs = {"api/rps": Observation(0.0, 100.0), "api/queue": Observation(0.0, 2000.0)}
    >>> d, _ = decide(two, PolicyState(), None, obs, current=8, now=10.0)
    >>> d.desired, d.signal, [(f.name, f.desired, f.reason.value) for f in d.signals]
    (8, 'api/rps', [('api/rps', 8, 'NoForecast'), ('api/queue', 8, 'NoForecast')])
    >>> obs["api/queue"] = Observation(0.0, 4000.0)
    >>> d, _ = decide(two, PolicyState(), None, obs, current=8, now=10.0)
    >>> d.desired, d.reason.value, d.signal
    (10, 'ReactiveFloor', 'api/queue')
    >>> d.message
    'signal api/queue decides (api/rps: 8 NoForecast): no forecast for the series yet; observed 4000 needs 10 at 100% replicas'
    """
    forecasts, observations = _by_series(spec, forecast, observed)
    floor = scheduled_floor(spec.schedules, now)
    lo = spec.min_replicas if floor is None else max(spec.min_replicas, floor[0])
    lo = min(lo, spec.max_replicas)
    adaptives: dict[str, Adaptive] = {}  # in the signals' order; a removed signal's is dropped
    outcomes = []
    for sig in spec.signals:
        fc, obs = forecasts.get(sig.series), observations.get(sig.series)
        out = signal_stage(spec.for_signal(sig), state.adaptives.get(sig.label), fc, obs,
                           current, now, lo, observations)
        adaptives[sig.label] = out.adaptive
        outcomes.append(out)
    win = highest(outcomes)
    stage = scheduled(combined(outcomes, win), floor)
    # the deciding signal's acting contender's own scale-down window, when longer than the
    # spec's; the recommendations are kept for the longest window any contender has
    d = outcomes[win]
    window = d.forecast.step if d.forecast is not None else d.adaptive.window
    longest = max(o.adaptive.longest_hold_seconds(
        o.forecast.step if o.forecast is not None else o.adaptive.window) for o in outcomes)
    stage, recs = stabilize(spec, state.recommendations, stage, current, now,
                            d.adaptive.hold_seconds(window), longest)
    stage, events, limited = rate_limit(spec, state.scale_events, stage, current, now)
    desired, reason, message = bound(spec, stage, floor)
    for o in outcomes:
        if o.forecast is not None:
            o.adaptive.follower.follow(now, desired, o.forecast.step)
    # each signal's own shadow comparison (its load at its capacity); the target's is the
    # deciding signal's, as the reason and message are
    reports = [o.adaptive.report() for o in outcomes]
    vs_hpa, vs_hpa_total = reports[win]
    acting = d.adaptive
    fallback = d.fallback or next((o.fallback for o in outcomes if o.fallback), None)
    decision = Decision(
        target=spec.key,
        ts=now,
        current=current,
        desired=desired,
        reason=reason,
        message=message,
        forecast_peak=d.figures.forecast_peak,
        observed=d.figures.observed,
        mode=spec.mode,
        fallback=fallback,
        limited=limited if reason is Reason.RATE_LIMITED else None,
        vs_hpa=vs_hpa,
        vs_hpa_total=vs_hpa_total,
        simulated_replicas=acting.follower.replicas if acting.follower.started else None,
        drifting=any(o.figures.drifting for o in outcomes),
        observed_ts=d.observation.ts if d.observation is not None else None,
        signal=d.figures.name,
        signals=tuple(replace(o.figures, vs_hpa=r[0]) for o, r in zip(outcomes, reports, strict=True)),
        schedule=(floor[1], floor[0]) if floor is not None else None,
    )
    return decision, PolicyState(recommendations=recs, scale_events=events,
                                 adaptives=adaptives)


@dataclass(slots=True)
class SignalOutcome:
    """What :func:`signal_stage` found for one signal."""

    stage: Stage
    figures: SignalFigures
    fallback: Reason | None
    adaptive: Adaptive
    forecast: Forecast | None
    observation: Observation | None


def signal_stage(
    view: ScalerSpec,
    adaptive: Adaptive | None,
    forecast: Forecast | None,
    observed: Observation | None,
    current: int,
    now: float,
    lo: int | None = None,
    observations: Mapping[str, Observation] | None = None,
) -> SignalOutcome:
    """One signal's raw recommendation, its own safety rule applied.

    ``view`` is the spec as if this signal were its only one
    (:meth:`~scaler.spec.ScalerSpec.for_signal`); ``lo`` the floor in force
    (minReplicas, raised by a schedule), which the shadow contenders respect
    too. The stages :func:`trusted_forecast`, :func:`learn`,
    :func:`recommend` and, on the fallback path, :func:`tolerance`; for a Kafka
    topic signal then :func:`consumer_lag` (``observations``: the latest of every
    series, where its lag and partition count are).
    """
    pts, fallback = trusted_forecast(view, forecast, observed, now)
    adaptive = learn(view, adaptive, forecast, observed, pts, current, now, lo)
    drifting = forecast is not None and forecast.drifting
    unusable = fallback_text(view, forecast, fallback, now) if fallback is not None else None
    stage = recommend(view, adaptive, fallback, observed, current, now,
                      _stale_after(view, forecast), drifting, unusable)
    if fallback is not None:  # the contenders apply the HPA's tolerance themselves
        stage = tolerance(view, stage, current)
    sig = view.signals[0]
    peak = max(p.upper for p in pts) if pts else None
    lag = parts = None
    if isinstance(sig.source, KafkaTopicSource):
        _, lag_series, parts_series = sig.source.series
        lag = (observations or {}).get(lag_series)
        parts = (observations or {}).get(parts_series)
        expected = max(p.yhat for p in pts) if pts else None  # the point forecast, not the band
        stage, fallback = consumer_lag(view, stage, fallback, lag, parts, expected, observed,
                                       current, now, _stale_after(view, forecast))
    figures = SignalFigures(
        name=sig.label, series=sig.series, desired=stage[0], reason=stage[1], message=stage[2],
        capacity_per_replica=view.capacity_per_replica,
        lead_time_seconds=view.lead_time_seconds,
        observed=observed.value if observed is not None else None,
        forecast_peak=peak, fallback=fallback, drifting=drifting,
        lag=lag.value if lag is not None else None,
        partitions=_partitions(parts),
    )
    return SignalOutcome(stage, figures, fallback, adaptive, forecast, observed)


def consumer_lag(
    view: ScalerSpec,
    stage: Stage,
    fallback: Reason | None,
    lag: Observation | None,
    partitions: Observation | None,
    peak: float | None,
    rate: Observation | None,
    current: int,
    now: float,
    stale_after: float,
) -> tuple[Stage, Reason | None]:
    """A Kafka topic signal: the consumer group's lag, activation and the partition cap.

    As KEDA's Kafka scaler: the lag needs ``ceil(lag / lagThreshold)`` replicas,
    and the signal's recommendation is the higher of that and the rate's (the
    forecast rate at ``capacityPerReplica``, the stages before). At or below
    ``activationLagThreshold`` (lag, and the forecast and observed rate) the
    topic is idle (``peak``: the point forecast's peak over the lead window):
    0 replicas (``Inactive``; ``minReplicas`` decides whether
    the target may go to zero), never on a rate or lag that cannot be trusted.
    Above the topic's partition count a consumer would be idle (KEDA's
    ``allowIdleConsumers: false``): capped there, but never below the current
    count while the signal's data cannot be trusted. A lag missing, stale or
    anomalous holds the count (it may not lower it).

    >>> from scaler.spec import KafkaTopicSource, ScalerSpec, Signal
    >>> src = KafkaTopicSource("orders", "billing", lag_threshold=100)
    >>> v = ScalerSpec("a", "", 0, min_replicas=0,
    ...                signals=(Signal("kafka/orders/rate", 50, source=src),))
    >>> s = (2, Reason.FORECAST_PEAK, "forecast peak 90 needs 2")
    >>> consumer_lag(v, s, None, Observation(0, 1250), Observation(0, 8), 90, None, 2, 10, 30)[0]
    (8, <Reason.CONSUMER_LAG: 'ConsumerLag'>, 'consumer group billing lag 1250 needs 13 replicas at lagThreshold 100 (forecast peak 90 needs 2); capped at the 8 partitions of orders (a consumer beyond them is idle)')
    >>> consumer_lag(v, (1, Reason.FORECAST_PEAK, "m"), None, Observation(0, 0), None, 0.0,
    ...              Observation(0, 0), 1, 10, 30)[0][:2]
    (0, <Reason.INACTIVE: 'Inactive'>)
    >>> consumer_lag(v, (1, Reason.FORECAST_PEAK, "m"), None, None, None, 0.0, None, 3, 10, 30)
    ((3, <Reason.NO_FORECAST: 'NoForecast'>, 'm; no consumer lag yet for group billing: holding 3 replicas'), <Reason.NO_FORECAST: 'NoForecast'>)
    """
    src = view.signals[0].source
    assert isinstance(src, KafkaTopicSource)
    raw, reason, message = stage
    group = src.consumer_group
    bad: Reason | None = None
    if lag is None:
        bad, why = Reason.NO_FORECAST, f"no consumer lag yet for group {group}"
    elif lag.anomalous or not math.isfinite(lag.value) or lag.value < 0:
        bad, why = Reason.ANOMALOUS_SERIES, f"consumer lag of group {group} is anomalous"
    elif now - lag.ts > stale_after:
        bad, why = Reason.STALE_FORECAST, f"consumer lag of group {group} is stale"
    if bad is not None:
        fallback = fallback or bad
        if raw <= current:
            raw, reason, message = current, bad, f"{message}; {why}: holding {current} replicas"
    else:
        assert lag is not None
        n = need(lag.value, src.lag_threshold)
        act = src.activation_lag_threshold
        flow = max(peak or 0.0, rate.value if rate is not None and math.isfinite(rate.value) else 0.0)
        if fallback is None and lag.value <= act and flow <= act:
            raw, reason, message = 0, Reason.INACTIVE, (
                f"topic {src.topic} idle: lag {lag.value:.4g} and rate {flow:.4g} at or below "
                f"activationLagThreshold {act:g}, no consumer needed")
        elif n > raw:
            raw, reason, message = n, Reason.CONSUMER_LAG, (
                f"consumer group {group} lag {lag.value:.4g} needs {n} replicas at lagThreshold "
                f"{src.lag_threshold:g} ({message})")
    cap = _partitions(partitions)
    if cap is not None and raw > cap:
        capped = cap if fallback is None else max(cap, current)
        if capped < raw:
            raw, message = capped, (f"{message}; capped at the {cap} partitions of {src.topic} "
                                    "(a consumer beyond them is idle)")
    return (raw, reason, message), fallback


def _partitions(obs: Observation | None) -> int | None:
    """The topic's partition count from its series (None if unknown or nonsense)."""
    if obs is None or not math.isfinite(obs.value) or obs.value < 1:
        return None
    return int(obs.value)


def highest(outcomes: Sequence[SignalOutcome]) -> int:
    """Index of the deciding signal: the highest recommendation, as the HPA takes the
    maximum over its metrics. On a tie, a signal whose forecast is usable, then the first.

    A signal that cannot be trusted recommends at least the current count
    (:func:`recommend`), so the maximum never goes below it: a stale or
    anomalous signal can raise the count but never lets it fall.
    """
    return max(range(len(outcomes)),
               key=lambda i: (outcomes[i].stage[0], outcomes[i].fallback is None, -i))


def combined(outcomes: Sequence[SignalOutcome], win: int) -> Stage:
    """The deciding signal's stage; with several signals its message names it and the others.

    >>> f = SignalFigures("a", "a", 3, Reason.FORECAST_PEAK, "m", 10, 60)
    >>> o = SignalOutcome((3, Reason.FORECAST_PEAK, "peak"), f, None, None, None, None)  # type: ignore[arg-type]
    >>> combined([o], 0)
    (3, <Reason.FORECAST_PEAK: 'ForecastPeak'>, 'peak')
    """
    raw, reason, message = outcomes[win].stage
    if len(outcomes) == 1:
        return raw, reason, message
    others = ", ".join(f"{o.figures.name}: {o.stage[0]} {o.stage[1].value}"
                       for i, o in enumerate(outcomes) if i != win)
    return raw, reason, f"signal {outcomes[win].figures.name} decides ({others}): {message}"


def scheduled(stage: Stage, floor: tuple[int, str] | None) -> Stage:
    """Raise the raw recommendation to a scheduled minimum in force (``spec.schedules``).

    It is stored with the recommendations, so when the event ends the count
    comes down through the scale-down stabilisation window, as any lower
    recommendation does.

    >>> scheduled((4, Reason.FORECAST_PEAK, "peak 400 needs 4"), (10, "sale"))
    (10, <Reason.SCHEDULED: 'Scheduled'>, "schedule 'sale' holds at least 10 replicas (peak 400 needs 4)")
    >>> scheduled((12, Reason.FORECAST_PEAK, "peak"), (10, "sale"))[0]
    12
    """
    raw, reason, message = stage
    if floor is not None and floor[0] > raw:
        return floor[0], Reason.SCHEDULED, (
            f"schedule {floor[1]!r} holds at least {floor[0]} replicas ({message})")
    return stage


def _by_series(
    spec: ScalerSpec, forecast: Forecasts, observed: Observations
) -> tuple[Mapping[str, Forecast], Mapping[str, Observation]]:
    first = spec.signals[0].series
    fcs: Mapping[str, Forecast] = (
        {} if forecast is None else {first: forecast} if isinstance(forecast, Forecast)
        else forecast)
    obs: Mapping[str, Observation] = (
        {} if observed is None else {first: observed} if isinstance(observed, Observation)
        else observed)
    return fcs, obs


def trusted_forecast(
    spec: ScalerSpec, forecast: Forecast | None, observed: Observation | None, now: float
) -> tuple[tuple[ForecastPoint, ...], Reason | None]:
    """The forecast's points over ``[now, now + leadTime]``, or why it is not usable.

    Every window that starts before pods decided now are ready, and the first
    one they serve (the one starting at ``now + leadTime``). A forecast that
    does not reach ``now`` is stale; one whose last window starts before
    ``now + leadTime`` does not cover the lead window, and its peak would be
    a truncated one: ``HorizonTooShort`` (the workers' forecast horizon is
    shorter than the spec's lead time).

    >>> from scaler.spec import ScalerSpec, TargetRef
    >>> spec = ScalerSpec("a", "a", 10, lead_time_seconds=60, target=TargetRef("v1", "D", "a"))
    >>> f = Forecast("a", 0, 60, tuple(ForecastPoint(60 * i, 5, 4, 6) for i in (1, 2, 3)), 0.8,
    ...              "m", True)
    >>> [p.ts for p in trusted_forecast(spec, f, None, 60)[0]]
    [60, 120]
    >>> trusted_forecast(spec, f, Observation(0, 5, anomalous=True), 60)[1].value
    'AnomalousSeries'
    >>> trusted_forecast(spec, f, None, 600)[1].value, trusted_forecast(spec, None, None, 60)[1]
    ('StaleForecast', <Reason.NO_FORECAST: 'NoForecast'>)

    A lead time of 180 s needs a window starting at ``now + 180``; this
    forecast's last one starts at ``now + 120``:

    >>> long = replace(spec, lead_time_seconds=180)
    >>> trusted_forecast(long, f, None, 60)
    ((), <Reason.HORIZON_TOO_SHORT: 'HorizonTooShort'>)
    """
    problem = _forecast_problem(spec, forecast, now)
    pts: tuple[ForecastPoint, ...] = ()
    if problem is None:
        assert forecast is not None
        until = now + spec.lead_time_seconds
        # event times are epoch seconds: compare with a margin above their rounding
        eps = 1e-6 * forecast.step
        pts = forecast.window(now, until + eps)
        if not pts:
            problem = Reason.STALE_FORECAST
        elif _last_start(forecast) < until - eps:
            problem = Reason.HORIZON_TOO_SHORT
    if observed is not None and (observed.anomalous or not math.isfinite(observed.value)):
        return (), Reason.ANOMALOUS_SERIES
    if any(not (math.isfinite(p.yhat) and math.isfinite(p.upper)) for p in pts):
        return (), Reason.ANOMALOUS_SERIES  # never trust a non-finite forecast
    return (pts if problem is None else ()), problem


def learn(
    spec: ScalerSpec,
    adaptive: Adaptive | None,
    forecast: Forecast | None,
    observed: Observation | None,
    pts: tuple[ForecastPoint, ...],
    current: int,
    now: float,
    lo: int | None = None,
) -> Adaptive:
    """Step the adaptive policy through the observed window, once per window.

    The window is the forecast's step; a window needs both an observation and
    a forecast message (the model agent sends them together). Untrusted
    forecasts (``pts`` empty) let the contenders act as plain HPAs.
    """
    if adaptive is None:
        adaptive = Adaptive.start(spec.budget_utilization)
    adaptive.budget_utilization = spec.budget_utilization
    if observed is not None and forecast is not None and _fresh(spec, forecast, observed, now):
        # while the series drifts its forecast is ignored: every contender acts reactively
        usable = pts if pts and not forecast.drifting else None
        floor = spec.min_replicas if lo is None else lo
        adaptive.learn(observed.ts, observed.value, forecast.step, spec.capacity_per_replica,
                       spec.lead_time_seconds, floor, spec.max_replicas, usable,
                       current, spec.tolerances)
    return adaptive


def recommend(
    spec: ScalerSpec,
    adaptive: Adaptive,
    fallback: Reason | None,
    observed: Observation | None,
    current: int,
    now: float,
    stale_after: float,
    drifting: bool = False,
    unusable: str | None = None,
) -> Stage:
    """The raw recommendation: the acting contender's, or the safety rule's.

    ``unusable`` says why the forecast cannot be used (:func:`fallback_text`; by
    default the fallback reason's short sentence).

    With a trusted forecast, the acting contender's count. Otherwise the count
    holds, unless the load observed now needs more at the acting contender's
    utilisation (the reactive floor): bad data never scales down. While the
    series drifts the contenders learn without its forecast, so the acting one
    acts reactively (the HPA's rules, stabilisation included), and a real drop
    in load is still followed.
    """
    c = adaptive.acting_contender()
    per = c.utilisation * spec.capacity_per_replica
    fresh = observed is not None and now - observed.ts <= stale_after
    if fallback is None and observed is not None and fresh and adaptive.last_ts is not None:
        raw, why = adaptive.recommend()
        if observed.value > adaptive.last_load:  # a later, higher reading of the window learnt
            floor = need(observed.value, per)
            if floor > raw:
                raw, why = floor, "load"
        if why == "tolerance" and raw != current:  # the contender keeps a count the target lacks
            why = "forecast" if c.peak is not None and c.peak > observed.value else "load"
        acts = f"{c.name} acts ({_why_acting(adaptive)})"
        if drifting:
            acts = f"series drifting, forecast ignored until it recovers: {acts}"
        obs = f"observed {observed.value:.4g}"
        at = f"at {c.utilisation:.0%} of {spec.capacity_per_replica:g} each"
        peak = (f"forecast peak {c.peak:.4g} within {spec.lead_time_seconds:.0f}s"
                if c.peak is not None else "")
        if why == "forecast":
            return raw, Reason.FORECAST_PEAK, f"{acts}: {peak} needs {raw} replicas {at} ({obs})"
        if why == "tolerance":
            what = peak if peak and c.peak and c.peak > observed.value else obs
            return raw, Reason.WITHIN_TOLERANCE, (
                f"{acts}: {what} is within tolerance of {raw} replicas {at}"
            )
        return raw, Reason.REACTIVE_FLOOR, f"{acts}: {obs} needs {raw} replicas {at}"
    reason = fallback or Reason.NO_FORECAST
    text = unusable or _FALLBACK_TEXT[reason]
    if observed is None or not fresh:
        return current, reason, f"{text}: holding {current} replicas (no fresh observation)"
    floor = need(observed.value, per)
    floor_txt = f"observed {observed.value:.4g} needs {floor} at {c.utilisation:.0%}"
    if floor > current:
        return floor, Reason.REACTIVE_FLOOR, f"{text}; {floor_txt} replicas"
    return current, reason, f"{text}: holding {current} replicas ({floor_txt})"


def fallback_text(spec: ScalerSpec, forecast: Forecast | None, reason: Reason, now: float) -> str:
    """Why the forecast cannot be used, as a sentence (the lead time and the
    forecast's reach when it is too short).

    >>> from scaler.spec import ScalerSpec, TargetRef
    >>> spec = ScalerSpec("a", "a", 10, lead_time_seconds=600, target=TargetRef("v1", "D", "a"))
    >>> f = Forecast("a", 0, 10, tuple(ForecastPoint(10 * i, 5, 4, 6) for i in range(1, 21)),
    ...              0.8, "m", True)
    >>> print(fallback_text(spec, f, Reason.HORIZON_TOO_SHORT, 10))
    forecast horizon too short for leadTimeSeconds 600: its last window starts 190s ahead (20 windows of 10s), so its peak would miss the end of the lead window; raise the workers' FORESIGHT_HORIZON_SECONDS to at least 600 or lower leadTimeSeconds
    >>> fallback_text(spec, None, Reason.NO_FORECAST, 10)
    'no forecast for the series yet'
    """
    if reason is Reason.HORIZON_TOO_SHORT and forecast is not None and forecast.points:
        lead = spec.lead_time_seconds
        return (f"forecast horizon too short for leadTimeSeconds {lead:.0f}: its last window "
                f"starts {_last_start(forecast) - now:.0f}s ahead ({len(forecast.points)} windows "
                f"of {forecast.step:g}s), so its peak would miss the end of the lead window; raise "
                f"the workers' FORESIGHT_HORIZON_SECONDS to at least {lead:.0f} or lower "
                f"leadTimeSeconds")
    return _FALLBACK_TEXT[reason]


def tolerance(spec: ScalerSpec, stage: Stage, current: int) -> Stage:
    """The HPA's dead band, per direction (``spec.tolerances``): a change within it keeps
    the count (the acting contenders apply it to the usage ratio themselves; this stage
    serves the fallback path).

    >>> from scaler.spec import ScalerSpec, TargetRef
    >>> spec = ScalerSpec("a", "a", 10, target=TargetRef("v1", "D", "a"))
    >>> tolerance(spec, (21, Reason.FORECAST_PEAK, "peak"), 20)
    (20, <Reason.WITHIN_TOLERANCE: 'WithinTolerance'>, 'peak; change within tolerance 10%')
    >>> tolerance(spec, (23, Reason.FORECAST_PEAK, "peak"), 20)[0]
    23
    """
    raw, reason, message = stage
    up, down = spec.tolerances
    tol = up if raw > current else down
    if current > 0 and raw != current and abs(raw / current - 1.0) <= tol:
        if reason not in FALLBACK_REASONS:
            message = f"{message}; change within tolerance {tol:.0%}"
            reason = Reason.WITHIN_TOLERANCE
        raw = current
    return raw, reason, message


def stabilize(
    spec: ScalerSpec,
    recommendations: tuple[tuple[float, int], ...],
    stage: Stage,
    current: int,
    now: float,
    down_window: float = 0.0,
    keep_seconds: float = 0.0,
) -> tuple[Stage, tuple[tuple[float, int], ...]]:
    """Stabilisation over the stored raw recommendations (``behavior``), as the HPA.

    The scale-down window is the spec's, or ``down_window`` (the acting
    contender's own) when longer. Returns the stage and the recommendations to
    store (those within the longest window, at least ``keep_seconds``). Earlier recommendations strictly inside each window count, plus
    this one (a zero-second window is this recommendation alone, even when
    several decisions share one event time).

    >>> from scaler.spec import ScalerSpec, TargetRef
    >>> spec = ScalerSpec("a", "a", 10, target=TargetRef("v1", "D", "a"))
    >>> (n, reason, _), recs = stabilize(spec, ((0.0, 9),), (4, Reason.FORECAST_PEAK, "m"), 9, 60.0)
    >>> n, reason.value, recs
    (9, 'ScaleDownStabilized', ((0.0, 9), (60.0, 4)))
    """
    raw, reason, message = stage
    up, down = spec.scale_up, spec.scale_down
    down_s = max(float(down.stabilization_window_seconds), down_window)
    keep = max(up.stabilization_window_seconds, down_s, keep_seconds)
    prior = tuple((t, r) for t, r in recommendations if t > now - keep)
    recs = prior + ((now, raw),)
    up_rec = min([r for t, r in prior if t > now - up.stabilization_window_seconds] + [raw])
    down_rec = max([r for t, r in prior if t > now - down_s] + [raw])
    stabilized = min(max(current, up_rec), down_rec)
    if stabilized != raw:
        if raw < current:
            reason = Reason.SCALE_DOWN_STABILIZED
            message = (f"{message}; scale-down held at {stabilized} by the "
                       f"{down_s:.0f}s stabilization window")
        else:
            reason = Reason.SCALE_UP_STABILIZED
            message = (f"{message}; scale-up held at {stabilized} by the "
                       f"{up.stabilization_window_seconds}s stabilization window")
    return (stabilized, reason, message), recs


def rate_limit(
    spec: ScalerSpec,
    scale_events: tuple[tuple[float, int], ...],
    stage: Stage,
    current: int,
    now: float,
) -> tuple[Stage, tuple[tuple[float, int], ...], Direction | None]:
    """The ``behavior`` rate policies; returns the stage, the events to keep, and the
    direction a policy capped (None when none did)."""
    desired, reason, message = stage
    up, down = spec.scale_up, spec.scale_down
    period = max((p.period_seconds for p in up.policies + down.policies), default=0)
    events = tuple((t, c) for t, c in scale_events if t > now - period)
    limited: Direction | None = None
    if desired > current:
        limit = _up_limit(current, events, now, up)
        if desired > limit:
            desired, reason, limited = limit, Reason.RATE_LIMITED, Direction.UP
            message = f"{message}; scale-up limited to {limit} by behavior.scaleUp policies"
    elif desired < current:
        limit = _down_limit(current, events, now, down)
        if desired < limit:
            desired, reason, limited = limit, Reason.RATE_LIMITED, Direction.DOWN
            message = f"{message}; scale-down limited to {limit} by behavior.scaleDown policies"
    return (desired, reason, message), events, limited


def bound(spec: ScalerSpec, stage: Stage, floor: tuple[int, str] | None = None) -> Stage:
    """Clamp to ``[minReplicas, maxReplicas]``, the lower bound raised by a scheduled minimum
    in force (``floor``: its replicas and name).

    >>> from scaler.spec import ScalerSpec, TargetRef
    >>> spec = ScalerSpec("a", "a", 10, min_replicas=2, max_replicas=8,
    ...                   target=TargetRef("v1", "D", "a"))
    >>> bound(spec, (12, Reason.FORECAST_PEAK, "peak"))
    (8, <Reason.BOUNDED: 'Bounded'>, 'peak; bounded to maxReplicas 8')
    >>> bound(spec, (3, Reason.RATE_LIMITED, "limited"), (6, "sale"))
    (6, <Reason.SCHEDULED: 'Scheduled'>, "limited; raised to 6 by schedule 'sale'")
    """
    desired, reason, message = stage
    lo = spec.min_replicas if floor is None else max(spec.min_replicas, floor[0])
    bounded = min(max(desired, lo), spec.max_replicas)
    if bounded != desired:
        if floor is not None and desired < bounded == floor[0] > spec.min_replicas:
            return bounded, Reason.SCHEDULED, f"{message}; raised to {bounded} by schedule {floor[1]!r}"
        side = "minReplicas" if bounded > desired else "maxReplicas"
        return bounded, Reason.BOUNDED, f"{message}; bounded to {side} {bounded}"
    return stage


def _why_acting(adaptive: Adaptive) -> str:
    if not any(c.recent.unserved > 0 for c in adaptive.contenders) or adaptive.best is None:
        return "no evidence yet that another does better"
    if adaptive.best != adaptive.acting:
        return (f"{adaptive.contenders[adaptive.best].name} did a little better recently, "
                f"not by the margin a switch needs")
    if adaptive.acting == adaptive.reference():
        return (f"no contender recently served better than the HPA at its own cost, so the HPA "
                f"at {adaptive.budget_utilization:.0%} (budgetUtilization) acts")
    return "recently left the least load unserved for its cost, relative to the HPA's"


def stale_after(spec: ScalerSpec, forecast: Forecast | None) -> float:
    """Seconds after which a signal's forecast or observation is stale: the spec's
    ``staleAfterSeconds``, else :data:`STALE_STEPS` windows of the forecast's step."""
    return _stale_after(spec, forecast)


def _stale_after(spec: ScalerSpec, forecast: Forecast | None) -> float:
    if spec.stale_after_seconds:
        return spec.stale_after_seconds
    step = forecast.step if forecast is not None else 60.0
    return STALE_STEPS * step


def _fresh(spec: ScalerSpec, forecast: Forecast, observed: Observation, now: float) -> bool:
    return now - observed.ts <= _stale_after(spec, forecast)


def _forecast_problem(spec: ScalerSpec, forecast: Forecast | None, now: float) -> Reason | None:
    if forecast is None:
        return Reason.NO_FORECAST
    if now - (forecast.issued + forecast.step) > _stale_after(spec, forecast):
        return Reason.STALE_FORECAST
    if not forecast.warm:
        return Reason.COLD_FORECAST
    return None


_FALLBACK_TEXT = {
    Reason.ANOMALOUS_SERIES: "latest data is anomalous, forecast not trusted",
    Reason.NO_FORECAST: "no forecast for the series yet",
    Reason.STALE_FORECAST: "forecast is stale",
    Reason.COLD_FORECAST: "forecaster still warming up",
    Reason.HORIZON_TOO_SHORT: "forecast horizon shorter than the lead time",
}


def _last_start(forecast: Forecast) -> float:
    """Start of the forecast's last window (how far it reaches)."""
    return max(p.ts for p in forecast.points)


def _changed_in_period(events: tuple[tuple[float, int], ...], now: float, period: int) -> tuple[int, int]:
    added = sum(c for t, c in events if c > 0 and t > now - period)
    removed = -sum(c for t, c in events if c < 0 and t > now - period)
    return added, removed


def _up_limit(current: int, events: tuple[tuple[float, int], ...], now: float, rules: ScalingRules) -> int:
    if rules.select_policy == "Disabled" or not rules.policies:
        return current if rules.select_policy == "Disabled" else 2**31
    proposals = []
    for p in rules.policies:
        added, removed = _changed_in_period(events, now, p.period_seconds)
        start = current - added + removed
        proposals.append(
            start + p.value if p.type == "Pods" else math.ceil(start * (1 + p.value / 100))
        )
    return min(proposals) if rules.select_policy == "Min" else max(proposals)


def _down_limit(current: int, events: tuple[tuple[float, int], ...], now: float, rules: ScalingRules) -> int:
    if rules.select_policy == "Disabled" or not rules.policies:
        return current if rules.select_policy == "Disabled" else 0
    proposals = []
    for p in rules.policies:
        added, removed = _changed_in_period(events, now, p.period_seconds)
        start = current - added + removed
        proposals.append(
            start - p.value if p.type == "Pods" else int(start * (1 - p.value / 100))
        )
    return max(proposals) if rules.select_policy == "Min" else min(proposals)
