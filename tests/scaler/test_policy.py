"""The scaling policy, table-driven: one row per rule, asserting count and reason."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest

from detectors.forecast import Forecast, ForecastPoint
from scaler.adaptive import Adaptive
from scaler.decision import FALLBACK_REASONS, Reason
from scaler.policy import Observation, PolicyState, decide, replicas_for
from scaler.schedule import Schedule
from scaler.spec import KafkaTopicSource, RatePolicy, ScalerSpec, ScalingRules, Signal, TargetRef

STEP = 60.0
NOW = 600.0  # watermark: the window [540, 600) has just closed

#: windows a test forecast covers: the lead window [now, now + 180 s] (4 windows) and one
#: more, as the worker's horizon (FORESIGHT_HORIZON_SECONDS + 2 windows) does
WINDOWS = 5

# scale-up and scale-down without rate limits or windows, unless a case says so
FREE_UP = ScalingRules(0, (), "Max")
FREE_DOWN = ScalingRules(0, (), "Max")


def make_spec(**kw: object) -> ScalerSpec:
    base = dict(
        name="web",
        series="web/rps",
        capacity_per_replica=100.0,
        min_replicas=1,
        max_replicas=50,
        lead_time_seconds=180.0,
        target=TargetRef("apps/v1", "Deployment", "web"),
        scale_up=FREE_UP,
        scale_down=FREE_DOWN,
    )
    base.update(kw)
    return ScalerSpec(**base)  # type: ignore[arg-type]


def make_forecast(
    uppers: list[float],
    *,
    yhat: float | None = None,
    issued: float = NOW - STEP,
    warm: bool = True,
    windows: int = WINDOWS,
) -> Forecast:
    """Points start at issued + step; the band's lower bound is irrelevant to the policy.

    Fewer than ``windows`` uppers continue flat (same peak), so that the forecast
    covers the lead window as the worker's does; ``windows=0`` keeps them as given.
    """
    uppers = uppers + uppers[-1:] * (windows - len(uppers))
    return Forecast(
        "web/rps",
        issued=issued,
        step=STEP,
        points=tuple(
            ForecastPoint(issued + (i + 1) * STEP, u if yhat is None else yhat, 0.0, u)
            for i, u in enumerate(uppers)
        ),
        coverage=0.8,
        model="test",
        warm=warm,
    )


@dataclass
class Case:
    name: str
    forecast: Forecast | None
    observed: Observation | None
    current: int
    desired: int
    reason: Reason
    spec: ScalerSpec | None = None


OBS_LOW = Observation(NOW - STEP, 150.0)
#: the contender the table's cases act with: the HPA at 100 %, raised to the
#: forecast's upper bound (band x1), with the HPA's own scale-down window
FORECASTER = "hpa@100%+forecast(band x1)"


def acting(name: str = FORECASTER) -> PolicyState:
    """A fresh policy state whose adaptive policy acts with contender ``name``."""
    a = Adaptive.start(0.6)
    a.acting = [c.name for c in a.contenders].index(name)
    return PolicyState(adaptives={"web/rps": a})

CASES = [
    # the lead window [now, now + 180 s] holds the first four points (the 4th is the
    # first window the pods decided now can serve); the 5th is ignored
    Case("lead-time peak", make_forecast([300, 1040, 500, 600, 5000]), OBS_LOW, 5, 11, Reason.FORECAST_PEAK),
    Case("peak beyond lead ignored", make_forecast([300, 400, 450, 500, 5000]), OBS_LOW, 3, 5, Reason.FORECAST_PEAK),
    Case("scale down to the peak", make_forecast([300, 400, 420]), OBS_LOW, 10, 5, Reason.FORECAST_PEAK),
    # observed 900, band half-width 0 (yhat == upper): the floor is the observed load
    Case(
        "reactive floor above forecast",
        make_forecast([500, 500, 500], yhat=500),
        Observation(NOW - STEP, 900.0),
        5,
        9,
        Reason.REACTIVE_FLOOR,
    ),
    # band x1: the forecast's upper bound, not its point forecast
    Case(
        "band margin above the point forecast",
        make_forecast([600, 600, 600], yhat=400),
        OBS_LOW,
        5,
        6,
        Reason.FORECAST_PEAK,
    ),
    # the HPA's tolerance is the acting contender's, on its own simulated cluster (tested in
    # scaler.shadow): a fresh one has 2 replicas, so 2,050 is a change, not within 10 %
    Case("tolerance is the contender's", make_forecast([2050, 2050, 2050]), OBS_LOW, 20, 21,
         Reason.FORECAST_PEAK),
    Case(
        "bounded by maxReplicas",
        make_forecast([9000, 9000, 9000]),
        OBS_LOW,
        10,
        50,
        Reason.BOUNDED,
    ),
    Case(
        "bounded by minReplicas",
        make_forecast([10, 10, 10]),
        Observation(NOW - STEP, 10.0),
        6,
        4,
        Reason.BOUNDED,
        make_spec(min_replicas=4),
    ),
    Case(
        "scale-up rate limited",
        make_forecast([3000, 3000, 3000]),
        OBS_LOW,
        10,
        14,
        Reason.RATE_LIMITED,
        make_spec(scale_up=ScalingRules(0, (RatePolicy("Pods", 4, 60),), "Max")),
    ),
    Case(
        "scale-down rate limited",
        make_forecast([100, 100, 100]),
        Observation(NOW - STEP, 100.0),
        20,
        10,
        Reason.RATE_LIMITED,
        make_spec(scale_down=ScalingRules(0, (RatePolicy("Percent", 50, 60),), "Max")),
    ),
    # fallbacks: the forecast would allow 2 replicas, but the count holds
    Case("missing forecast holds", None, OBS_LOW, 10, 10, Reason.NO_FORECAST),
    Case(
        "stale forecast holds",
        make_forecast([150, 150, 150, 150, 150, 150], issued=NOW - 10 * STEP),
        OBS_LOW,
        10,
        10,
        Reason.STALE_FORECAST,
    ),
    Case("cold forecast holds", make_forecast([150, 150, 150], warm=False), OBS_LOW, 10, 10, Reason.COLD_FORECAST),
    Case(
        "anomalous series holds",
        make_forecast([150, 150, 150]),
        Observation(NOW - STEP, 150.0, anomalous=True),
        10,
        10,
        Reason.ANOMALOUS_SERIES,
    ),
    Case(
        "forecast ending before now is stale",
        make_forecast([150], issued=NOW - 2 * STEP, windows=1),
        OBS_LOW,
        10,
        10,
        Reason.STALE_FORECAST,
    ),
    # the lead window needs a point starting at now + 180 s (NOW + 3 steps)
    Case("horizon shorter than the lead time holds", make_forecast([150] * 3, windows=0), OBS_LOW, 10, 10,
         Reason.HORIZON_TOO_SHORT),
    Case("horizon reaching now + lead time is used", make_forecast([150] * 4, windows=0), OBS_LOW, 10, 2,
         Reason.FORECAST_PEAK),
    Case("a window late, a long horizon still covers", make_forecast([150], issued=NOW - 2 * STEP), OBS_LOW,
         10, 2, Reason.FORECAST_PEAK),
    Case(
        "a window late, a just-long-enough horizon is too short",
        make_forecast([150] * 4, issued=NOW - 2 * STEP, windows=0),
        OBS_LOW,
        10,
        10,
        Reason.HORIZON_TOO_SHORT,
    ),
    # fallbacks still scale up for the observed load (at the acting contender's 100 %)
    Case("missing forecast, floor scales up", None, Observation(NOW - STEP, 1420.0), 10, 15, Reason.REACTIVE_FLOOR),
    Case(
        "cold forecast, floor scales up",
        make_forecast([150, 150, 150], warm=False),
        Observation(NOW - STEP, 1420.0),
        10,
        15,
        Reason.REACTIVE_FLOOR,
    ),
    Case(
        "horizon too short, floor scales up",
        make_forecast([150] * 3, windows=0),
        Observation(NOW - STEP, 1420.0),
        10,
        15,
        Reason.REACTIVE_FLOOR,
    ),
    Case(
        "anomalous series, floor scales up",
        make_forecast([150, 150, 150]),
        Observation(NOW - STEP, 1420.0, anomalous=True),
        10,
        15,
        Reason.REACTIVE_FLOOR,
    ),
    Case(
        "stale observation is no floor",
        None,
        Observation(NOW - 20 * STEP, 5000.0),
        10,
        10,
        Reason.NO_FORECAST,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide_table(case: Case) -> None:
    spec = case.spec or make_spec()
    d, _ = decide(spec, acting(), case.forecast, case.observed, case.current, NOW)
    assert (d.desired, d.reason) == (case.desired, case.reason), d.message
    assert d.current == case.current and d.ts == NOW and d.message
    if case.reason is Reason.FORECAST_PEAK:
        assert d.message.startswith(f"{FORECASTER} acts")


def test_a_horizon_shorter_than_the_lead_time_says_both() -> None:
    """A spec asking for 600 s ahead fed 20 windows of 10 s: the forecast's peak (low) is
    not used, the count holds, and the message names the lead time and the horizon."""
    spec = make_spec(lead_time_seconds=600.0)
    short = Forecast("web/rps", issued=NOW - 10, step=10.0, coverage=0.8, model="test", warm=True,
                     points=tuple(ForecastPoint(NOW + 10 * i, 250, 0, 250) for i in range(20)))
    for current, observed, desired, reason in ((10, 150.0, 10, Reason.HORIZON_TOO_SHORT),
                                               (10, 1420.0, 15, Reason.REACTIVE_FLOOR)):
        d, _ = decide(spec, acting(), short, Observation(NOW - 10, observed), current, NOW)
        assert (d.desired, d.reason, d.fallback) == (desired, reason, Reason.HORIZON_TOO_SHORT)
        assert d.forecast_peak is None
        assert "leadTimeSeconds 600" in d.message and "starts 190s ahead" in d.message, d.message
        assert "FORESIGHT_HORIZON_SECONDS" in d.message
    assert Reason.HORIZON_TOO_SHORT in FALLBACK_REASONS
    # one more window reaches now + 600 s: the forecast is used again (and may scale down)
    covering = replace(short, points=short.points + (ForecastPoint(NOW + 600, 250, 0, 250),))
    d, _ = decide(spec, acting(), covering, Observation(NOW - 10, 150.0), 10, NOW)
    assert (d.desired, d.reason, d.fallback) == (3, Reason.FORECAST_PEAK, None), d.message


def test_a_fresh_target_provisions_for_the_forecasts_upper_bound() -> None:
    # until a contender has shown it does better: the upper bound at capacityPerReplica
    d, state = decide(make_spec(), PolicyState(), make_forecast([1000] * 3), OBS_LOW, 1, NOW)
    assert (d.desired, d.reason) == (10, Reason.FORECAST_PEAK), d.message
    assert d.message.startswith(f"{FORECASTER} acts (no evidence yet")


def test_stabilisation_window_holds_then_releases() -> None:
    spec = make_spec(scale_down=ScalingRules(300, (), "Max"))
    high = make_forecast([1000, 1000, 1000])
    d, state = decide(spec, acting(), high, OBS_LOW, 5, NOW)
    assert (d.desired, d.reason) == (10, Reason.FORECAST_PEAK)
    low_at = lambda now: make_forecast([300, 300, 300], issued=now - STEP)  # noqa: E731
    obs_at = lambda now: Observation(now - STEP, 150.0)  # noqa: E731
    # within 300 s the highest recommendation (10) holds
    for k in range(1, 5):
        now = NOW + k * STEP
        d, state = decide(spec, state, low_at(now), obs_at(now), 10, now)
        assert (d.desired, d.reason) == (10, Reason.SCALE_DOWN_STABILIZED), k
    # once it has left the window, the count follows the forecast
    now = NOW + 5 * STEP
    d, state = decide(spec, state, low_at(now), obs_at(now), 10, now)
    assert (d.desired, d.reason) == (3, Reason.FORECAST_PEAK)


def test_the_acting_contender_holds_a_drop_for_its_own_window() -> None:
    # no behaviour window: the contender's own (the HPA's 300 s, x0.4 = 120 s here)
    spec = make_spec()
    d, state = decide(spec, acting(FORECASTER + ", window x0.4"), make_forecast([1000] * 3),
                      OBS_LOW, 5, NOW)
    assert d.desired == 10
    out, current = [], 10
    for k in range(1, 5):
        now = NOW + k * STEP
        fc = make_forecast([300] * 3, issued=now - STEP)
        d, state = decide(spec, state, fc, Observation(now - STEP, 150.0), current, now)
        out.append((d.desired, d.reason))
        current = d.desired
    assert out == [(10, Reason.SCALE_DOWN_STABILIZED)] + [(3, Reason.FORECAST_PEAK)] * 3


def test_rate_limit_counts_recorded_changes() -> None:
    spec = make_spec(scale_up=ScalingRules(0, (RatePolicy("Pods", 4, 120),), "Max"))
    state = replace(acting(), scale_events=((NOW - STEP, 3),))
    d, _ = decide(spec, state, make_forecast([3000, 3000, 3000]), OBS_LOW, 13, NOW)
    # 13 now, 10 at the start of the 120 s period: at most 14
    assert (d.desired, d.reason) == (14, Reason.RATE_LIMITED)


@pytest.mark.parametrize("seed", range(5))
def test_bad_data_never_scales_down(seed: int) -> None:
    """Random forecasts and loads: under every fallback the count never drops."""
    rng = random.Random(seed)
    spec = make_spec(min_replicas=0)
    for _ in range(200):
        current = rng.randint(0, 40)
        uppers = [rng.uniform(0, 5000) for _ in range(6)]
        kind = rng.choice(["none", "stale", "cold", "anomalous"])
        fc: Forecast | None = make_forecast(uppers)
        obs = Observation(NOW - STEP, rng.uniform(0, 5000))
        if kind == "none":
            fc = None
        elif kind == "stale":
            fc = make_forecast(uppers, issued=NOW - 10 * STEP)
        elif kind == "cold":
            fc = make_forecast(uppers, warm=False)
        else:
            obs = replace(obs, anomalous=True)
        d, _ = decide(spec, acting(), fc, obs, current, NOW)
        assert d.desired >= current, (kind, d.message)
        if d.desired > current:
            assert d.reason is Reason.REACTIVE_FLOOR
            assert d.desired == replicas_for(obs.value, spec.capacity_per_replica)
        else:  # held; a floor just above the count may be held by the tolerance band
            assert d.reason in FALLBACK_REASONS | {Reason.WITHIN_TOLERANCE}


def test_state_keeps_only_the_window() -> None:
    spec = make_spec(scale_down=ScalingRules(300, (), "Max"))
    state = PolicyState()
    for k in range(20):
        now = NOW + k * STEP
        _, state = decide(spec, state, make_forecast([500] * 3, issued=now - STEP), OBS_LOW, 5, now)
    # the longest scale-down window of any contender: 2.4 x 300 s = 12 windows of 60 s
    assert len(state.recommendations) <= 13


def _periodic(state: PolicyState, spec: ScalerSpec, windows: int, current: int = 5,
              start: int = 0) -> tuple[PolicyState, int, list]:
    """Windows of 60 s: 300, with a burst to 1,500 every 10th window and the one after,
    and a forecast that knows it."""
    def load(i: int) -> float:
        return 1500.0 if i % 10 in (7, 8) else 300.0

    out = []
    for i in range(start, start + windows):
        fc = Forecast("web/rps", 60.0 * i, STEP, tuple(
            ForecastPoint(60.0 * (i + h), load(i + h), 0.0, load(i + h)) for h in (1, 2, 3, 4)),
            0.8, "test", True)
        d, state = decide(spec, state, fc, Observation(60.0 * i, load(i)), current, 60.0 * (i + 1))
        out.append(d)
        current = d.desired
    return state, current, out


def test_a_forecast_contender_takes_over_where_the_hpa_is_late() -> None:
    spec = make_spec()
    state, _, out = _periodic(acting("hpa@60%"), spec, 60)
    assert out[0].message.startswith("hpa@60% acts")
    assert state.adaptive is not None and state.adaptive.acting_contender().margin is not None
    late = out[-10:]
    # two windows before each burst the count is already up, on the forecast
    assert any(d.reason is Reason.FORECAST_PEAK and d.desired >= 15 for d in late), [
        (d.desired, d.reason.value) for d in late]
    # and it did better than the HPA it replaced, for less: the shadow comparison says so
    rolling, _ = state.adaptive.report()
    assert rolling is not None and rolling.unserved < rolling.hpa_equal_cost_unserved


def test_deciding_again_on_the_same_window_learns_nothing_new() -> None:
    spec = make_spec()
    state, current, _ = _periodic(PolicyState(), spec, 30)
    a = state.adaptive
    assert a is not None
    before = [(c.total.unserved, c.total.replica_seconds) for c in a.contenders]
    last = a.last_ts
    fc = make_forecast([500] * 4, issued=last)
    d1, state = decide(spec, state, fc, Observation(last, 300.0), current, last + STEP)
    d2, state = decide(spec, state, fc, Observation(last, 300.0), current, last + STEP + 1)
    assert [(c.total.unserved, c.total.replica_seconds) for c in a.contenders] == before
    assert d1.desired == d2.desired


def test_policy_state_pickles_and_resumes_the_same() -> None:
    import pickle

    spec = make_spec()
    state, current, _ = _periodic(PolicyState(), spec, 40)
    blob = pickle.dumps(state)
    assert len(blob) < 64_000, len(blob)
    twin = pickle.loads(blob)
    _, _, a = _periodic(state, spec, 20, current, start=40)
    _, _, b = _periodic(twin, spec, 20, current, start=40)
    assert [(d.desired, d.reason, d.message) for d in a] == [(d.desired, d.reason, d.message) for d in b]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_data_never_scales_down(bad: float) -> None:
    spec = make_spec()
    d, _ = decide(spec, acting(), make_forecast([bad] * 3), OBS_LOW, 7, NOW)
    assert d.desired >= 7 and d.fallback is Reason.ANOMALOUS_SERIES, d.message
    d, _ = decide(spec, acting(), make_forecast([100] * 3), Observation(NOW - STEP, bad), 7, NOW)
    assert d.desired >= 7 and d.fallback is Reason.ANOMALOUS_SERIES, d.message


def test_a_drifting_series_is_scaled_reactively_and_may_scale_down() -> None:
    """A forecast the model marks drifting is ignored: the HPA's rules on the observed load."""
    spec = make_spec()
    drifting = replace(make_forecast([5000] * 3), drifting=True)
    d, _ = decide(spec, acting(), drifting, OBS_LOW, 10, NOW)
    # the forecast says 50 replicas; the observed 150 needs 2 (a real drop is followed)
    assert (d.desired, d.reason) == (2, Reason.REACTIVE_FLOOR), d.message
    assert d.message.startswith("series drifting, forecast ignored") and d.fallback is None
    d, _ = decide(spec, acting(), make_forecast([5000] * 3), OBS_LOW, 10, NOW)
    assert (d.desired, d.reason) == (50, Reason.FORECAST_PEAK), d.message


# the HPA's documented examples, per direction (KEP-4951): a 75 % target is 75 per replica
# of 100; 50 replicas at 90 % is a usage ratio of 1.2
@pytest.mark.parametrize(("load", "up", "down", "desired", "reason"), [
    (50 * 90, 0.1, 0.1, 60, Reason.REACTIVE_FLOOR),  # ratio 1.2 > 1.1: 60 replicas
    (50 * 90, 0.25, 0.1, 50, Reason.WITHIN_TOLERANCE),  # within a 25 % scale-up tolerance
    (50 * 71, 0.0, 0.05, 48, Reason.REACTIVE_FLOOR),  # ratio 0.947: beyond a 5 % scale-down one
    (50 * 72, 0.0, 0.05, 50, Reason.WITHIN_TOLERANCE),  # ratio 0.96: within it
])
def test_per_direction_tolerance_as_the_hpa_documents(load, up, down, desired, reason) -> None:
    spec = make_spec(max_replicas=100, scale_up=ScalingRules(0, (), "Max", up),
                     scale_down=ScalingRules(0, (), "Max", down))
    state = acting("hpa@75%")  # the plain HPA at 75 % (one of the shadow sweep)
    # its own simulated cluster starts where the target is: 50 replicas
    a = state.adaptive
    a.acting_contender().cluster.add_target("", 50)
    a.acting_contender().desired = 50
    d, _ = decide(spec, state, make_forecast([10] * 3), Observation(NOW - STEP, load), 50, NOW)
    assert (d.desired, d.reason) == (desired, reason), d.message


def test_freshness_follows_the_forecasts_step() -> None:
    """5-minute windows: the observation of the window just closed is 300 s old and fresh."""
    step = 300.0
    fc = Forecast("web/rps", issued=NOW - step, step=step, coverage=0.8, model="m", warm=True,
                  points=tuple(ForecastPoint(NOW - step + step * i, 1000.0, 0.0, 1000.0)
                               for i in range(1, 5)))
    d, _ = decide(make_spec(), acting(), fc, Observation(NOW - step, 150.0), 3, NOW)
    assert (d.desired, d.reason) == (10, Reason.FORECAST_PEAK), d.message


# -- several signals per target -------------------------------------------------------
# web/rps at 100 per replica (lead 180 s, the spec's) and web/queue at 50 per replica

def two_signals(**kw: object) -> ScalerSpec:
    queue = kw.pop("queue", Signal("web/queue", 50.0))
    return make_spec(signals=(Signal("web/rps", 100.0), queue), **kw)


def on(series: str, fc: Forecast | None) -> Forecast | None:
    return None if fc is None else replace(fc, series=series)


STALE = dict(issued=NOW - 10 * STEP)


@dataclass
class Multi:
    name: str
    rps: tuple[Forecast | None, Observation | None]
    queue: tuple[Forecast | None, Observation | None]
    current: int
    desired: int
    reason: Reason
    signal: str
    fallback: Reason | None = None


MULTI = [
    Multi("requests decide", (make_forecast([1040]), OBS_LOW),
          (make_forecast([300]), Observation(NOW - STEP, 250.0)), 5, 11, Reason.FORECAST_PEAK,
          "web/rps"),
    Multi("the queue decides", (make_forecast([300]), OBS_LOW),
          (make_forecast([1000]), Observation(NOW - STEP, 250.0)), 5, 20, Reason.FORECAST_PEAK,
          "web/queue"),
    Multi("both lower: down to the higher of the two", (make_forecast([300]), OBS_LOW),
          (make_forecast([200]), Observation(NOW - STEP, 150.0)), 10, 4, Reason.FORECAST_PEAK,
          "web/queue"),
    # per-signal safety: a signal that cannot be trusted holds the count, the other
    # would scale down to 2
    Multi("a stale signal holds", (make_forecast([150]), OBS_LOW),
          (make_forecast([100], **STALE), Observation(NOW - STEP, 100.0)), 10, 10,
          Reason.STALE_FORECAST, "web/queue", Reason.STALE_FORECAST),
    Multi("an anomalous signal holds", (make_forecast([150]), OBS_LOW),
          (make_forecast([100]), Observation(NOW - STEP, 100.0, anomalous=True)), 10, 10,
          Reason.ANOMALOUS_SERIES, "web/queue", Reason.ANOMALOUS_SERIES),
    Multi("a cold signal holds", (make_forecast([150]), OBS_LOW),
          (make_forecast([100], warm=False), Observation(NOW - STEP, 100.0)), 10, 10,
          Reason.COLD_FORECAST, "web/queue", Reason.COLD_FORECAST),
    Multi("a signal with no data at all holds", (make_forecast([150]), OBS_LOW), (None, None),
          10, 10, Reason.NO_FORECAST, "web/queue", Reason.NO_FORECAST),
    # ... but may raise it on the load it observes (its reactive floor): 1500 / 50
    Multi("a stale signal still raises on its load", (make_forecast([150]), OBS_LOW),
          (make_forecast([100], **STALE), Observation(NOW - STEP, 1500.0)), 10, 30,
          Reason.REACTIVE_FLOOR, "web/queue", Reason.STALE_FORECAST),
    # an anomalous signal that holds does not stop the other from raising the count
    Multi("a healthy signal raises past an anomalous one", (make_forecast([150]),
          Observation(NOW - STEP, 150.0, anomalous=True)),
          (make_forecast([600]), Observation(NOW - STEP, 250.0)), 5, 12, Reason.FORECAST_PEAK,
          "web/queue", Reason.ANOMALOUS_SERIES),
    # a tie: the signal whose forecast is usable is named
    Multi("on a tie the trusted signal is named", (make_forecast([1000]), OBS_LOW),
          (None, None), 10, 10, Reason.FORECAST_PEAK, "web/rps", Reason.NO_FORECAST),
]


@pytest.mark.parametrize("case", MULTI, ids=[c.name for c in MULTI])
def test_several_signals_table(case: Multi) -> None:
    fcs = {s: f for s, (fc, _) in (("web/rps", case.rps), ("web/queue", case.queue))
           if (f := on(s, fc)) is not None}
    obs = {s: o for s, (_, o) in (("web/rps", case.rps), ("web/queue", case.queue))
           if o is not None}
    d, state = decide(two_signals(), PolicyState(), fcs, obs, case.current, NOW)
    assert (d.desired, d.reason, d.signal) == (case.desired, case.reason, case.signal), d.message
    assert d.fallback is case.fallback
    other = "web/rps" if case.signal == "web/queue" else "web/queue"
    assert d.message.startswith(f"signal {case.signal} decides ({other}: "), d.message
    assert [f.name for f in d.signals] == ["web/rps", "web/queue"]
    decider = next(f for f in d.signals if f.name == case.signal)
    assert decider.desired == d.desired or d.reason is not decider.reason
    assert set(state.adaptives) == {"web/rps", "web/queue"}


def test_each_signal_learns_on_its_own_load() -> None:
    spec = two_signals()
    fcs = {"web/rps": make_forecast([300]), "web/queue": on("web/queue", make_forecast([900]))}
    obs = {"web/rps": OBS_LOW, "web/queue": Observation(NOW - STEP, 700.0)}
    d, state = decide(spec, PolicyState(), fcs, obs, 5, NOW)
    rps, queue = state.adaptives["web/rps"], state.adaptives["web/queue"]
    assert rps is not queue
    assert (rps.last_load, queue.last_load) == (150.0, 700.0)
    # the queue's contenders provision at its own capacity: 900 / 50
    assert queue.acting_contender().raw == 18 and rps.acting_contender().raw == 3
    f = {x.name: x for x in d.signals}
    assert (f["web/queue"].forecast_peak, f["web/queue"].capacity_per_replica) == (900.0, 50.0)
    assert (f["web/rps"].observed, f["web/rps"].desired) == (150.0, 3)
    assert (d.forecast_peak, d.observed) == (900.0, 700.0)  # the deciding signal's
    # a removed signal's learnt state goes with it
    _, state = decide(make_spec(), state, fcs, obs, d.desired, NOW + STEP)
    assert list(state.adaptives) == ["web/rps"] and state.adaptive is rps


def test_a_signals_own_lead_time() -> None:
    """The queue's pods need only 60 s: its lead window ends at now + 60, so the burst
    forecast 3 windows ahead is not its to provision for yet."""
    spec = two_signals(queue=Signal("web/queue", 50.0, lead_time_seconds=60.0))
    burst = on("web/queue", make_forecast([100, 100, 2000]))
    d, _ = decide(spec, PolicyState(), {"web/rps": make_forecast([300]), "web/queue": burst},
                  {"web/rps": OBS_LOW, "web/queue": Observation(NOW - STEP, 100.0)}, 3, NOW)
    f = {x.name: x for x in d.signals}
    assert (f["web/queue"].desired, f["web/queue"].lead_time_seconds) == (2, 60.0)
    assert (d.desired, d.signal) == (3, "web/rps"), d.message
    # with the spec's 180 s it would be
    d, _ = decide(two_signals(), PolicyState(), {"web/rps": make_forecast([300]),
                  "web/queue": burst}, {"web/rps": OBS_LOW,
                                        "web/queue": Observation(NOW - STEP, 100.0)}, 3, NOW)
    assert (d.desired, d.signal) == (40, "web/queue"), d.message


@pytest.mark.parametrize("seed", range(3))
def test_a_bad_signal_never_lets_the_count_fall(seed: int) -> None:
    """Random loads: one signal healthy, the other stale, cold, anomalous or missing; the
    count never drops below the current one, whatever the healthy one says."""
    rng = random.Random(seed)
    spec = two_signals(min_replicas=0)
    for _ in range(100):
        current = rng.randint(0, 40)
        good = make_forecast([rng.uniform(0, 5000) for _ in range(5)])
        uppers = [rng.uniform(0, 5000) for _ in range(5)]
        kind = rng.choice(["none", "stale", "cold", "anomalous"])
        bad: Forecast | None = {"none": None, "stale": make_forecast(uppers, **STALE),
                                "cold": make_forecast(uppers, warm=False),
                                "anomalous": make_forecast(uppers)}[kind]
        bad_obs = Observation(NOW - STEP, rng.uniform(0, 5000), anomalous=kind == "anomalous")
        order = rng.random() < 0.5  # the bad one first or second
        fcs = {"web/rps": good} if order else {"web/queue": on("web/queue", good)}
        if bad is not None:
            fcs["web/queue" if order else "web/rps"] = on("web/queue" if order else "web/rps",
                                                           bad)  # type: ignore[assignment]
        obs = {"web/rps": OBS_LOW, "web/queue": bad_obs} if order else {
            "web/queue": OBS_LOW, "web/rps": bad_obs}
        d, _ = decide(spec, PolicyState(), fcs, obs, current, NOW)
        assert d.desired >= current, (kind, d.message)
        assert d.fallback is not None


# -- scheduled minimums ---------------------------------------------------------------

SALE = Schedule("sale", 8, start=NOW - 300, end=NOW + 30)  # ends within the next window


@dataclass
class Sched:
    name: str
    forecast: list[float]
    current: int
    desired: int
    reason: Reason
    spec: ScalerSpec


SCHEDULES = [
    Sched("the floor raises a low forecast", [300], 3, 8, Reason.SCHEDULED,
          make_spec(schedules=(SALE,))),
    Sched("a higher forecast wins over the floor", [1100], 3, 11, Reason.FORECAST_PEAK,
          make_spec(schedules=(SALE,))),
    Sched("an inactive schedule does nothing", [300], 5, 3, Reason.FORECAST_PEAK,
          make_spec(schedules=(replace(SALE, start=NOW + 60, end=NOW + 600),))),
    Sched("the highest active floor", [300], 3, 12, Reason.SCHEDULED,
          make_spec(schedules=(SALE, replace(SALE, name="match", min_replicas=12)))),
    # a rate policy caps the way up, the floor does not wait for it (it is a minimum)
    Sched("the floor is a minimum, not rate limited", [300], 2, 8, Reason.SCHEDULED,
          make_spec(schedules=(SALE,), scale_up=ScalingRules(0, (RatePolicy("Pods", 1, 60),),
                                                             "Max"))),
    Sched("never above maxReplicas", [300], 3, 6, Reason.BOUNDED,
          make_spec(schedules=(SALE,), max_replicas=6)),
    Sched("a cron schedule in a timezone", [300], 3, 8, Reason.SCHEDULED,
          # NOW is 00:10 UTC on 1970-01-01, 01:10 in Berlin (winter time)
          make_spec(schedules=(Schedule("night", 8, cron="0 1 * * *", duration_seconds=900,
                                        timezone="Europe/Berlin"),))),
    Sched("the same cron, an hour later in New York: inactive", [300], 5, 3, Reason.FORECAST_PEAK,
          make_spec(schedules=(Schedule("night", 8, cron="0 1 * * *", duration_seconds=900,
                                        timezone="America/New_York"),))),
]


@pytest.mark.parametrize("case", SCHEDULES, ids=[c.name for c in SCHEDULES])
def test_scheduled_minimums_table(case: Sched) -> None:
    d, state = decide(case.spec, acting(), make_forecast(case.forecast), OBS_LOW, case.current,
                      NOW)
    assert (d.desired, d.reason) == (case.desired, case.reason), d.message
    if case.reason is Reason.SCHEDULED:
        assert d.schedule is not None and repr(d.schedule[0]) in d.message, d.message
        # the shadow contenders (and the HPA sweep) keep the floor too
        assert state.adaptive is not None
        assert min(c.desired for c in state.adaptive.contenders) >= d.desired


def test_after_the_event_the_count_comes_down_through_the_scale_down_window() -> None:
    spec = make_spec(schedules=(SALE,), scale_down=ScalingRules(120, (), "Max"))
    # the acting contender's own window is 120 s too (the HPA's 300 s x 0.4)
    d, state = decide(spec, acting(FORECASTER + ", window x0.4"), make_forecast([300]), OBS_LOW,
                      3, NOW)
    assert (d.desired, d.reason, d.schedule) == (8, Reason.SCHEDULED, ("sale", 8))
    out = []
    for k in (1, 2):
        now = NOW + k * STEP
        d, state = decide(spec, state, make_forecast([300], issued=now - STEP),
                          Observation(now - STEP, 150.0), d.desired, now)
        out.append((d.desired, d.reason, d.schedule))
    assert out == [(8, Reason.SCALE_DOWN_STABILIZED, None), (3, Reason.FORECAST_PEAK, None)]


def test_bad_data_under_a_schedule_never_goes_below_either() -> None:
    d, _ = decide(make_spec(schedules=(SALE,)), acting(), None, OBS_LOW, 10, NOW)
    assert (d.desired, d.reason) == (10, Reason.NO_FORECAST)
    d, _ = decide(make_spec(schedules=(SALE,)), acting(), None, OBS_LOW, 2, NOW)
    assert (d.desired, d.reason) == (8, Reason.SCHEDULED)


# -- a Kafka topic signal: the rate forecast, the consumer group's lag, the partitions -----

ORDERS = KafkaTopicSource("orders", "billing", lag_threshold=100.0)
RATE, LAG, PARTS = ORDERS.series


def kafka_spec(source: KafkaTopicSource = ORDERS, **kw: object) -> ScalerSpec:
    base: dict[str, object] = {"min_replicas": 0}
    base.update(kw)
    return make_spec(signals=(Signal(RATE, 100.0, source=source),), **base)


@dataclass
class Kafka:
    name: str
    rate: Forecast | None
    rate_obs: float
    lag: Observation | None
    partitions: int | None
    current: int
    desired: int
    reason: Reason
    spec: ScalerSpec | None = None
    rate_anomalous: bool = False


def lag(value: float, **kw: object) -> Observation:
    return Observation(kw.pop("ts", NOW - STEP), value, **kw)  # type: ignore[arg-type]


QUIET = make_forecast([0.0], yhat=0.0)
KAFKA = [
    Kafka("the rate forecast decides", make_forecast([450]), 300, lag(200), 12, 3, 5,
          Reason.FORECAST_PEAK),
    Kafka("the lag needs more: lag / lagThreshold", make_forecast([450]), 300, lag(900), 12, 3, 9,
          Reason.CONSUMER_LAG),
    Kafka("capped at the partition count", make_forecast([450]), 300, lag(1300), 12, 3, 12,
          Reason.CONSUMER_LAG),
    Kafka("the forecast capped too", make_forecast([2000]), 300, lag(0), 8, 3, 8,
          Reason.FORECAST_PEAK),
    Kafka("idle: to zero", QUIET, 0, lag(0), 12, 3, 0, Reason.INACTIVE),
    Kafka("idle, minReplicas 1: one", QUIET, 0, lag(0), 12, 3, 1, Reason.BOUNDED,
          kafka_spec(min_replicas=1)),
    Kafka("from zero on a lag above activation", QUIET, 0, lag(5), 12, 0, 1,
          Reason.CONSUMER_LAG),
    Kafka("a lag at the activation threshold stays at zero", QUIET, 0, lag(30), 12, 0, 0,
          Reason.INACTIVE, kafka_spec(replace(ORDERS, activation_lag_threshold=30))),
    Kafka("from zero on a forecast rate above activation", make_forecast([150], yhat=120), 0,
          lag(0), 12, 0, 2, Reason.FORECAST_PEAK),
    # never to zero (or down) on data that cannot be trusted
    Kafka("a stale lag holds", make_forecast([100]), 50, lag(0, ts=NOW - 10 * STEP), 12, 4, 4,
          Reason.STALE_FORECAST),
    Kafka("an anomalous lag holds", QUIET, 0, lag(0, anomalous=True), 12, 4, 4,
          Reason.ANOMALOUS_SERIES),
    Kafka("no lag yet holds", QUIET, 0, None, 12, 4, 4, Reason.NO_FORECAST),
    Kafka("an anomalous rate is never idle", QUIET, 0, lag(0), 12, 3, 3, Reason.ANOMALOUS_SERIES,
          rate_anomalous=True),
    Kafka("a stale rate forecast is never idle", make_forecast([0.0], yhat=0.0, **STALE), 0,
          lag(0), 12, 3, 3, Reason.STALE_FORECAST),
    Kafka("no lag yet, the rate may still raise", make_forecast([450]), 300, None, 12, 0, 5,
          Reason.FORECAST_PEAK),
    Kafka("the cap never lowers the count while data is bad", QUIET, 0, lag(0, anomalous=True),
          12, 15, 15, Reason.ANOMALOUS_SERIES),
    Kafka("unknown partitions: no cap", make_forecast([450]), 300, lag(1600), None, 3, 16,
          Reason.CONSUMER_LAG),
]


@pytest.mark.parametrize("case", KAFKA, ids=[c.name for c in KAFKA])
def test_kafka_topic_signal_table(case: Kafka) -> None:
    fcs = {RATE: replace(case.rate, series=RATE)} if case.rate is not None else {}
    obs = {RATE: Observation(NOW - STEP, case.rate_obs, anomalous=case.rate_anomalous)}
    if case.lag is not None:
        obs[LAG] = case.lag
    if case.partitions is not None:
        obs[PARTS] = Observation(NOW - 30 * STEP, float(case.partitions))  # any age will do
    d, _ = decide(case.spec or kafka_spec(), PolicyState(), fcs, obs, case.current, NOW)
    assert (d.desired, d.reason) == (case.desired, case.reason), d.message
    (f,) = d.signals
    assert f.lag == (case.lag.value if case.lag is not None else None)
    assert f.partitions == case.partitions
    if "capped" in case.name:
        assert f"capped at the {case.partitions} partitions of orders" in d.message


def test_a_kafka_signal_is_reconciled_on_its_lag_too() -> None:
    from scaler.reconcile import Reconciler
    from scaler.simulated import SimulatedCluster

    cluster = SimulatedCluster(0)
    spec = replace(kafka_spec(), name="consumer")
    cluster.add_target(spec.key, 2)
    r = Reconciler(cluster, [spec])
    assert spec.all_series == (RATE, LAG, PARTS)
    r.observe(None, Observation(NOW - STEP, 8.0), PARTS)
    r.observe(replace(make_forecast([150]), series=RATE), Observation(NOW - STEP, 120.0))
    r.observe(None, lag(2500), LAG)
    [d] = r.reconcile_series(LAG, NOW)
    assert (d.desired, d.reason, cluster.provisioned(spec.key)) == (8, Reason.CONSUMER_LAG, 8)


def test_the_shadow_comparison_is_the_deciding_signals_and_each_signal_has_its_own() -> None:
    """Two signals, each tallied against the HPA on its own load at its own capacity: the
    target's comparison (status.comparison, the VS HPA column) is the one that decided."""
    spec = two_signals()
    state, current = PolicyState(), 1
    decisions = []
    for i in range(30):
        now = NOW + i * STEP
        # the queue (50 per replica) decides for the first 15 windows, then the requests do
        rps, queue = (150.0, 900.0) if i < 15 else (2400.0, 100.0)
        fcs = {"web/rps": make_forecast([rps], issued=now - STEP),
               "web/queue": on("web/queue", make_forecast([queue], issued=now - STEP))}
        obs = {"web/rps": Observation(now - STEP, rps), "web/queue": Observation(now - STEP, queue)}
        d, state = decide(spec, state, fcs, obs, current, now)
        current = d.desired
        decisions.append(d)
    for d in (decisions[10], decisions[-1]):
        figures = {f.name: f for f in d.signals}
        assert all(f.vs_hpa is not None for f in d.signals)
        assert figures["web/rps"].vs_hpa != figures["web/queue"].vs_hpa  # tallied apart
        assert d.vs_hpa == figures[d.signal].vs_hpa, d.signal
    # the queue decided first, the requests (not the first signal's tally throughout) later
    assert (decisions[10].signal, decisions[-1].signal) == ("web/queue", "web/rps")
