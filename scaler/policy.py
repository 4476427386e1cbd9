"""The scaling policy: pure, no clock, no I/O.

``decide(spec, state, forecast, observed, current, now) -> (Decision, state)``

1. Raw recommendation: the larger of
   - the replicas needed for the peak of the forecast's upper bound over the
     lead time ``[now, now + leadTime]`` (pods started now are ready then),
     its half-width above the point forecast widened by ``UPPER_BAND_SCALE``
     (x1.1), and
   - the *reactive floor*: the replicas the load observed now needs, plus the
     forecast band's upper half-width when the forecast is fresh and warm
     ("if the load stays where it is, with the uncertainty the model has").
     After a sudden jump the forecast lags, and this is what keeps the
     provisioning ahead of it; in steady load it costs nothing extra.
     After an *upside surprise* (the load observed above the upper bound the
     previous forecast gave for it), the floor adds that excess once more
     instead, when it is larger: bursts cluster (volatility clustering), so
     the next step is provisioned for a surprise as large as the last one.
     It is keyed to the observation, so re-deciding on the same data gives
     the same answer, and it costs nothing while the forecast holds.

   With a trusted forecast, a drop is then *held*, bounded: the
   recommendation is the highest of the last ``HOLD_STEPS`` (5) forecast
   steps' ones, but at most ``HOLD_HEADROOM`` (30 %) above the current one. A
   dip within that margin is held entirely, as the HPA's window would (noise
   that reverts); after a larger drop, which the forecast and the observed
   load both call real, the hold keeps that margin above the new level instead
   of the old peak, so it costs in proportion to the new level, not to the
   burst that just ended.

   When the forecast is missing, stale, cold, or the series is anomalous, only
   the floor may raise the count; otherwise the count holds (never a
   scale-down on bad data), and the reason says which.
2. Then, in the HPA's order: tolerance dead band, stabilisation over the stored
   raw recommendations (``behavior``), rate policies, min/max.

Which quantile to provision (the forecaster's ``coverage``: an 80 % band, so
its upper bound is the 90th percentile; widening it x1.1 beat a 90 % band,
whose heavier tail is dear on bursty load), the floor's headroom and the
scale-down hold were chosen on ``benchmarks/backtest.py``: the bounded hold
(with no behaviour window in the backtest) took the bursty Twitter trace from
1.071 to 0.985 x the equal-cost HPA's unserved load and the geometric mean
from 0.207 to 0.188, for fewer replica-hours on every trace; margins of 20 %
and 40 % give 0.988 and 0.989 on Twitter. The surprise echo
is the untuned "as large as the last one" (x1): x0.5, x1.5 and x2 give the
bursty Twitter trace 1.079, 1.072 and 1.091 x the equal-cost HPA's unserved
load (x1: 1.071, none: 1.083); the other traces move by less than 0.03.

Example: a forecast peak of 950 (995 with the band widened x1.1 above the
point forecast of 500) with 100 per replica needs 10 replicas.

>>> from detectors.forecast import Forecast, ForecastPoint
>>> from scaler.spec import ScalerSpec, TargetRef
>>> spec = ScalerSpec("web", "web/requests", capacity_per_replica=100, min_replicas=1,
...                   max_replicas=20, lead_time_seconds=180,
...                   target=TargetRef("apps/v1", "Deployment", "web"))
>>> fc = Forecast("web/requests", issued=0, step=60, coverage=0.8, model="m", warm=True,
...               points=tuple(ForecastPoint(60 * i, 500, 400, u)
...                            for i, u in [(1, 600), (2, 950), (3, 700), (4, 800), (5, 2000)]))
>>> d, state = decide(spec, PolicyState(), fc, Observation(0, 300), current=5, now=60)
>>> d.desired, d.reason.value
(10, 'ForecastPeak')
>>> d.message
'forecast peak 950 (band x1.1: 995) within 180s needs 10 replicas (observed 300 + headroom 450 needs 8)'

A load already above the forecast raises the floor above the peak:

>>> d = decide(spec, PolicyState(), fc, Observation(0, 700), current=8, now=60)[0]
>>> d.desired, d.reason.value
(12, 'ReactiveFloor')

The next observation, 1,000, is 400 above the upper bound (600) that forecast
gave for its window: a surprise. The floor provisions for one as large again
(the new band's half-width alone would add 200):

>>> fc2 = Forecast("web/requests", issued=60, step=60, coverage=0.8, model="m", warm=True,
...                points=tuple(ForecastPoint(60 + 60 * i, 900, 700, 1100) for i in range(1, 6)))
>>> d, s2 = decide(spec, state, fc2, Observation(60, 1000), current=10, now=120)
>>> d.desired, d.reason.value, s2.surprise
(14, 'ReactiveFloor', (60, 400))
>>> d.message
'observed 1000 + surprise 400 needs 14 replicas, more than forecast peak 1100 (band x1.1: 1120) (12)'

When the load and the forecast fall back (to 6 replicas), the policy's own
hold keeps at most 30 % above that for 5 steps, not the old 14 (this spec's
behaviour, the HPA's default 300 s window, would still hold 14; the backtest
sets none):

>>> from dataclasses import replace
>>> from scaler.spec import ScalingRules
>>> low = Forecast("web/requests", issued=120, step=60, coverage=0.8, model="m", warm=True,
...                points=tuple(ForecastPoint(120 + 60 * i, 400, 300, 500) for i in range(1, 6)))
>>> no_window = replace(spec, scale_down=ScalingRules(0, (), "Max"))
>>> d = decide(no_window, s2, low, Observation(120, 380), current=14, now=180)[0]
>>> d.desired, d.reason.value
(8, 'ScaleDownStabilized')
>>> d.message.split("; ")[1]
"scale-down held at 8: the highest of the last 5 steps' recommendations (14), at most 30% above 6"

With no forecast the count holds, unless the observed load needs more:

>>> decide(spec, state, None, Observation(120, 300), current=10, now=180)[0].desired
10
>>> d = decide(spec, state, None, Observation(120, 1430), current=10, now=180)[0]
>>> d.desired, d.reason.value
(15, 'ReactiveFloor')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from detectors.forecast import Forecast, ForecastPoint
from scaler.decision import FALLBACK_REASONS, Decision, Reason
from scaler.spec import ScalerSpec, ScalingRules

#: a forecast older than this many of its steps is stale (unless the spec says)
STALE_STEPS = 3
#: the reactive floor provisions observed + this x the forecast band's upper half-width
FLOOR_HEADROOM = 1.0
#: ... or observed + this x the last upside surprise (load above the upper bound
#: forecast for it), when larger: "the next surprise may be as large as the last"
SURPRISE_ECHO = 1.0
#: the forecast peak provisioned: yhat + this x (upper - yhat), the band's upper
#: half-width a little widened past the calibrated 90th percentile
UPPER_BAND_SCALE = 1.1
#: the policy's own scale-down hold: the highest recommendation of the last
#: HOLD_STEPS forecast steps, but at most HOLD_HEADROOM above the current one
HOLD_STEPS = 5
HOLD_HEADROOM = 0.3


@dataclass(frozen=True, slots=True)
class Observation:
    """The latest observed value of the driving series (event time ``ts``).

    ``anomalous`` is the detector's flag for that value: the policy then never
    scales down.

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
    longest rate-policy period; ``expected``: (window start, upper bound) the
    last usable forecast gave for the next window; ``surprise``: (observation
    ts, load above that bound) for the latest observation, so that deciding
    again on the same data gives the same floor; ``held``: (ts, raw
    recommendation) of trusted decisions within ``HOLD_STEPS`` forecast steps,
    for the policy's own bounded hold.
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    scale_events: tuple[tuple[float, int], ...] = field(default=())
    expected: tuple[float, float] | None = None
    surprise: tuple[float, float] | None = None
    held: tuple[tuple[float, int], ...] = ()

    def record_scale(self, ts: float, change: int) -> PolicyState:
        """Remember an applied change (called by the reconciler after actuating).

        >>> PolicyState().record_scale(60.0, 3).record_scale(120.0, 0).scale_events
        ((60.0, 3),)
        """
        if change == 0:
            return self
        return replace(self, scale_events=self.scale_events + ((ts, change),))


#: the most replicas any arithmetic here yields (Kubernetes' replicas field is an int32)
MAX_REPLICAS = 2**31 - 1


def replicas_for(load: float, capacity: float) -> int:
    """Replicas needed to serve ``load`` at ``capacity`` per replica.

    Bounded: a huge or infinite load needs :data:`MAX_REPLICAS` (never a
    float-to-int ``OverflowError``); a NaN load or capacity is refused.

    >>> replicas_for(241, 120), replicas_for(240, 120), replicas_for(0, 120)
    (3, 2, 0)
    >>> replicas_for(1e308, 0.5) == replicas_for(float("inf"), 120) == MAX_REPLICAS
    True
    >>> replicas_for(float("nan"), 120)
    Traceback (most recent call last):
    ...
    ValueError: replicas_for: load nan / capacity 120 is not a number
    """
    if math.isnan(load) or math.isnan(capacity) or not capacity > 0:
        raise ValueError(f"replicas_for: load {load} / capacity {capacity} is not a number")
    if not load > 0:
        return 0
    ratio = load / capacity - 1e-9
    if not ratio < MAX_REPLICAS:
        return MAX_REPLICAS
    return math.ceil(ratio)


def decide(
    spec: ScalerSpec,
    state: PolicyState,
    forecast: Forecast | None,
    observed: Observation | None,
    current: int,
    now: float,
) -> tuple[Decision, PolicyState]:
    """Decide the desired replica count for one target at event time ``now``.

    ``current`` is the provisioned count (ready + starting); ``now`` is the
    watermark (the end of the last closed window). Returns the decision and
    the state to pass to the next call.

    >>> from scaler.spec import ScalerSpec, TargetRef
    >>> spec = ScalerSpec("api", "api/rps", capacity_per_replica=50,
    ...                   target=TargetRef("apps/v1", "Deployment", "api"))
    >>> d, state = decide(spec, PolicyState(), None, Observation(0.0, 260.0), current=2, now=10.0)
    >>> d.desired, d.reason.value, len(state.recommendations)
    (6, 'ReactiveFloor', 1)
    """
    cap = spec.capacity_per_replica
    stale_after = spec.stale_after_seconds or _default_stale(forecast, spec)
    fresh_obs = observed is not None and now - observed.ts <= stale_after

    problem = _forecast_problem(spec, forecast, now)
    pts: tuple[ForecastPoint, ...] = ()
    if problem is None:
        assert forecast is not None
        # every window that starts before the pods decided now are ready, and
        # the first one they serve: [now, now + leadTime]
        pts = forecast.window(now, now + spec.lead_time_seconds + 1e-9)
        if not pts:  # forecast horizon does not reach: treat as stale
            problem = Reason.STALE_FORECAST
    anomalous = observed is not None and observed.anomalous
    fallback = Reason.ANOMALOUS_SERIES if anomalous else problem

    floor = None
    floor_txt = "no fresh observation"
    surprise = state.surprise
    if fresh_obs:
        assert observed is not None
        load = observed.value
        surprise = _surprise(state, observed)
        extra = _floor_headroom(pts) if pts else 0.0
        echo = SURPRISE_ECHO * surprise[1]
        what = "headroom"
        if echo > extra:
            extra, what = echo, "surprise"
        floor = replicas_for(load + extra, cap)
        floor_txt = (
            f"observed {load:.4g} + {what} {extra:.4g} needs {floor}"
            if extra > 0
            else f"observed {load:.4g} needs {floor}"
        )
    # what the forecast expects of the next window, to measure its surprise by
    expected = (pts[0].ts, pts[0].upper) if pts else state.expected

    peak = None
    if fallback is None:
        peak = max(p.upper for p in pts)
        target = max(p.yhat + UPPER_BAND_SCALE * max(p.upper - p.yhat, 0.0) for p in pts)
        need = replicas_for(target, cap)
        peak_txt = f"forecast peak {peak:.4g}"
        if abs(target - peak) > 1e-9 * max(1.0, abs(peak)):
            peak_txt += f" (band x{UPPER_BAND_SCALE:g}: {target:.4g})"
        if floor is not None and floor > need:
            raw, reason = floor, Reason.REACTIVE_FLOOR
            message = f"{floor_txt} replicas, more than {peak_txt} ({need})"
        else:
            raw, reason = need, Reason.FORECAST_PEAK
            message = (
                f"{peak_txt} within {spec.lead_time_seconds:.0f}s needs "
                f"{need} replicas ({floor_txt})"
            )
        # the policy's own hold: keep up to HOLD_HEADROOM above a drop for a while
        window = HOLD_STEPS * forecast.step  # type: ignore[union-attr]
        held = tuple((t, r) for t, r in state.held if t > now - window)
        top = max([r for _, r in held] + [raw])
        bounded = _bounded_hold(top, raw)
        held += ((now, raw),)
        if bounded > raw:
            message = (
                f"{message}; scale-down held at {bounded}: the highest of the last "
                f"{HOLD_STEPS} steps' recommendations ({top}), at most "
                f"{HOLD_HEADROOM:.0%} above {raw}"
            )
            raw, reason = bounded, Reason.SCALE_DOWN_STABILIZED
    else:
        held = state.held
        if floor is not None and floor > current:
            raw, reason = floor, Reason.REACTIVE_FLOOR
            message = f"{_FALLBACK_TEXT[fallback]}; {floor_txt} replicas"
        else:
            raw, reason = current, fallback
            message = f"{_FALLBACK_TEXT[fallback]}: holding {current} replicas ({floor_txt})"

    # 1. tolerance dead band (as the HPA's usage ratio)
    if current > 0 and raw != current and abs(raw / current - 1.0) <= spec.tolerance:
        if reason not in FALLBACK_REASONS:
            message = f"{message}; change within tolerance {spec.tolerance:.0%}"
            reason = Reason.WITHIN_TOLERANCE
        raw = current

    # 2. stabilisation over stored raw recommendations
    up, down = spec.scale_up, spec.scale_down
    keep = max(up.stabilization_window_seconds, down.stabilization_window_seconds)
    # earlier recommendations strictly inside each window, plus this one (a
    # zero-second window is this recommendation alone, even when several
    # decisions share one event time)
    prior = tuple((t, r) for t, r in state.recommendations if t > now - keep)
    recs = prior + ((now, raw),)
    up_rec = min([r for t, r in prior if t > now - up.stabilization_window_seconds] + [raw])
    down_rec = max([r for t, r in prior if t > now - down.stabilization_window_seconds] + [raw])
    stabilized = current
    if stabilized < up_rec:
        stabilized = up_rec
    if stabilized > down_rec:
        stabilized = down_rec
    if stabilized != raw:
        if raw < current:
            reason = Reason.SCALE_DOWN_STABILIZED
            message = (
                f"{message}; scale-down held at {stabilized} by the "
                f"{down.stabilization_window_seconds}s stabilization window"
            )
        else:
            reason = Reason.SCALE_UP_STABILIZED
            message = (
                f"{message}; scale-up held at {stabilized} by the "
                f"{up.stabilization_window_seconds}s stabilization window"
            )

    # 3. rate policies
    period = max((p.period_seconds for p in up.policies + down.policies), default=0)
    events = tuple((t, c) for t, c in state.scale_events if t > now - period)
    desired = stabilized
    if desired > current:
        limit = _up_limit(current, events, now, up)
        if desired > limit:
            desired = limit
            reason = Reason.RATE_LIMITED
            message = f"{message}; scale-up limited to {limit} by behavior.scaleUp policies"
    elif desired < current:
        limit = _down_limit(current, events, now, down)
        if desired < limit:
            desired = limit
            reason = Reason.RATE_LIMITED
            message = f"{message}; scale-down limited to {limit} by behavior.scaleDown policies"

    # 4. min / max
    bounded = min(max(desired, spec.min_replicas), spec.max_replicas)
    if bounded != desired:
        side = "minReplicas" if bounded > desired else "maxReplicas"
        message = f"{message}; bounded to {side} {bounded}"
        reason = Reason.BOUNDED
        desired = bounded

    decision = Decision(
        target=spec.key,
        ts=now,
        current=current,
        desired=desired,
        reason=reason,
        message=message,
        forecast_peak=peak,
        observed=observed.value if observed is not None else None,
        mode=spec.mode,
        fallback=fallback,
    )
    return decision, PolicyState(recommendations=recs, scale_events=events,
                                 expected=expected, surprise=surprise, held=held)


def _default_stale(forecast: Forecast | None, spec: ScalerSpec) -> float:
    step = forecast.step if forecast is not None else 60.0
    return STALE_STEPS * step


def _surprise(state: PolicyState, observed: Observation) -> tuple[float, float]:
    """(observation ts, load above the upper bound the last forecast gave for it).

    Zero when no usable forecast covered that window (cold, stale, none) or
    the load stayed within the bound; the same answer for the same observation.

    >>> s = PolicyState(expected=(60.0, 500.0))
    >>> _surprise(s, Observation(60.0, 800.0)), _surprise(s, Observation(60.0, 450.0))
    ((60.0, 300.0), (60.0, 0.0))
    >>> _surprise(s, Observation(120.0, 800.0))  # no expectation for that window
    (120.0, 0.0)
    """
    if state.surprise is not None and state.surprise[0] == observed.ts:
        return state.surprise
    if state.expected is not None and abs(state.expected[0] - observed.ts) < 1e-3:
        return observed.ts, max(0.0, observed.value - state.expected[1])
    return observed.ts, 0.0


def _bounded_hold(held: int, raw: int) -> int:
    """The highest recent recommendation ``held``, at most ``HOLD_HEADROOM`` above ``raw``.

    >>> _bounded_hold(10, 9), _bounded_hold(200, 20), _bounded_hold(12, 12)
    (10, 26, 12)
    """
    return min(held, max(raw, math.ceil(raw * (1.0 + HOLD_HEADROOM) - 1e-9)))


def _floor_headroom(pts: tuple[ForecastPoint, ...]) -> float:
    """Load to add to the observed one: the band's upper half-width, scaled."""
    return FLOOR_HEADROOM * max(max(p.upper - p.yhat, 0.0) for p in pts)


def _forecast_problem(spec: ScalerSpec, forecast: Forecast | None, now: float) -> Reason | None:
    if forecast is None:
        return Reason.NO_FORECAST
    stale_after = spec.stale_after_seconds or _default_stale(forecast, spec)
    if now - (forecast.issued + forecast.step) > stale_after:
        return Reason.STALE_FORECAST
    if not forecast.warm:
        return Reason.COLD_FORECAST
    return None


_FALLBACK_TEXT = {
    Reason.ANOMALOUS_SERIES: "latest data is anomalous, forecast not trusted",
    Reason.NO_FORECAST: "no forecast for the series yet",
    Reason.STALE_FORECAST: "forecast is stale",
    Reason.COLD_FORECAST: "forecaster still warming up",
}


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
