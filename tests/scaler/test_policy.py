"""The scaling policy, table-driven: one row per rule, asserting count and reason."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest

import scaler.policy
from detectors.forecast import Forecast, ForecastPoint
from scaler.decision import FALLBACK_REASONS, Reason
from scaler.policy import (
    FLOOR_HEADROOM,
    HOLD_HEADROOM,
    HOLD_STEPS,
    UPPER_BAND_SCALE,
    Observation,
    PolicyState,
    decide,
    replicas_for,
)
from scaler.spec import RatePolicy, ScalerSpec, ScalingRules, TargetRef

STEP = 60.0
NOW = 600.0  # watermark: the window [540, 600) has just closed

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
) -> Forecast:
    """Points start at issued + step; the band's lower bound is irrelevant to the policy."""
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
    # observed 560 + band half-width (600 - 400 = 200) = 760 > forecast peak 600,
    # provisioned as 400 + 1.1 x 200 = 620 (7 replicas)
    Case(
        "floor headroom from the band",
        make_forecast([600, 600, 600], yhat=400),
        Observation(NOW - STEP, 560.0),
        5,
        8,
        Reason.REACTIVE_FLOOR,
    ),
    Case(
        "band widened above the point forecast",
        make_forecast([600, 600, 600], yhat=400),
        OBS_LOW,
        5,
        7,
        Reason.FORECAST_PEAK,
    ),
    Case("within tolerance", make_forecast([2050, 2050, 2050]), OBS_LOW, 20, 20, Reason.WITHIN_TOLERANCE),
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
        "horizon too short is stale",
        make_forecast([150], issued=NOW - 2 * STEP),
        OBS_LOW,
        10,
        10,
        Reason.STALE_FORECAST,
    ),
    # fallbacks still scale up for the observed load (no headroom from an untrusted band)
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
    d, _ = decide(spec, PolicyState(), case.forecast, case.observed, case.current, NOW)
    assert (d.desired, d.reason) == (case.desired, case.reason), d.message
    assert d.current == case.current and d.ts == NOW and d.message


def test_floor_headroom_is_the_documented_rule() -> None:
    # the headroom, band and hold cases rely on these settings
    assert (FLOOR_HEADROOM, UPPER_BAND_SCALE) == (1.0, 1.1)
    assert (HOLD_STEPS, HOLD_HEADROOM) == (5, 0.3)


def test_stabilisation_window_holds_then_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    # the behaviour's window alone (the policy's own hold is tested below)
    monkeypatch.setattr(scaler.policy, "HOLD_STEPS", 0)
    spec = make_spec(scale_down=ScalingRules(300, (), "Max"))
    state = PolicyState()
    high = make_forecast([1000, 1000, 1000])
    d, state = decide(spec, state, high, OBS_LOW, 5, NOW)
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


def _hold_run(low_upper: float, steps: int) -> list[tuple[int, Reason, str]]:
    """10 replicas for a forecast of 1,000, then ``steps`` decisions on a lower one."""
    spec = make_spec()  # no behaviour window: the policy's own hold alone
    d, state = decide(spec, PolicyState(), make_forecast([1000] * 3), OBS_LOW, 5, NOW)
    assert d.desired == 10
    out, current = [], 10
    for k in range(1, steps + 1):
        now = NOW + k * STEP
        fc = make_forecast([low_upper] * 3, issued=now - STEP)
        d, state = decide(spec, state, fc, Observation(now - STEP, 150.0), current, now)
        out.append((d.desired, d.reason, d.message))
        current = d.desired
    assert len(state.held) <= HOLD_STEPS
    return out


def test_own_hold_keeps_a_bounded_margin_above_a_drop() -> None:
    # 10 -> 3: the old 10 is held for 5 steps, but at most 30 % above 3, i.e. 4
    run = _hold_run(300, 6)
    assert [(n, r) for n, r, _ in run[:4]] == [(4, Reason.SCALE_DOWN_STABILIZED)] * 4
    assert "held at 4" in run[0][2] and "(10), at most 30% above 3" in run[0][2]
    assert [(n, r) for n, r, _ in run[4:]] == [(3, Reason.FORECAST_PEAK)] * 2


def test_own_hold_keeps_a_small_dip_entirely() -> None:
    # 10 -> 8 is within 30 % (8 x 1.3 = 10.4): held at 10 as long as 10 is recent
    run = _hold_run(800, 6)
    assert [(n, r) for n, r, _ in run[:4]] == [(10, Reason.SCALE_DOWN_STABILIZED)] * 4
    assert [(n, r) for n, r, _ in run[4:]] == [(8, Reason.FORECAST_PEAK)] * 2


def test_own_hold_forgets_untrusted_and_old_recommendations() -> None:
    spec = make_spec()
    _, state = decide(spec, PolicyState(), make_forecast([1000] * 3), OBS_LOW, 5, NOW)
    # a cold forecast holds the count (fallback) and adds nothing to the hold
    _, state = decide(spec, state, make_forecast([300] * 3, warm=False), OBS_LOW, 10, NOW + STEP)
    assert [r for _, r in state.held] == [10]
    # once the 10 is older than 5 steps, a trusted low forecast is followed at once
    now = NOW + 5 * STEP
    d, state = decide(spec, state, make_forecast([300] * 3, issued=now - STEP),
                      Observation(now - STEP, 150.0), 10, now)
    assert (d.desired, d.reason) == (3, Reason.FORECAST_PEAK), d.message
    assert state.held == ((now, 3),)


def test_rate_limit_counts_recorded_changes() -> None:
    spec = make_spec(scale_up=ScalingRules(0, (RatePolicy("Pods", 4, 120),), "Max"))
    state = PolicyState().record_scale(NOW - STEP, 3)
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
        d, _ = decide(spec, PolicyState(), fc, obs, current, NOW)
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
    assert len(state.recommendations) <= 6


# -- the surprise echo: after the load beat the forecast's upper bound for its
# window, the floor provisions for a surprise as large again

def _expecting(upper: float, *, warm: bool = True, issued: float = NOW - STEP) -> PolicyState:
    """The state after deciding on a forecast whose window at NOW has this upper bound."""
    spec = make_spec()
    fc = make_forecast([upper] * 4, issued=issued, warm=warm)
    _, state = decide(spec, PolicyState(), fc, OBS_LOW, 2, NOW)
    return state


NEXT = NOW + STEP
#: the next decision's forecast: yhat == upper, so the band adds no headroom
FC_NEXT = make_forecast([950.0] * 4, issued=NOW)


def test_upside_surprise_is_echoed_in_the_floor() -> None:
    state = _expecting(500.0)
    assert state.expected == (NOW, 500.0)
    obs = Observation(NOW, 900.0)  # 400 above the bound given for this window
    d, after = decide(make_spec(), state, FC_NEXT, obs, 5, NEXT)
    assert (d.desired, d.reason) == (13, Reason.REACTIVE_FLOOR), d.message
    assert "surprise 400" in d.message and after.surprise == (NOW, 400.0)
    # without that expectation the same data needs only the forecast peak
    d0, _ = decide(make_spec(), PolicyState(), FC_NEXT, obs, 5, NEXT)
    assert (d0.desired, d0.reason) == (10, Reason.FORECAST_PEAK), d0.message


def test_deciding_again_on_the_same_observation_keeps_the_echo() -> None:
    spec = make_spec()
    obs = Observation(NOW, 900.0)
    d1, state = decide(spec, _expecting(500.0), FC_NEXT, obs, 5, NEXT)
    # a second reconcile before new data: the expectation now points at the next
    # window, but the surprise is remembered for this observation
    d2, state = decide(spec, state, FC_NEXT, obs, d1.desired, NEXT + 1.0)
    assert d1.desired == d2.desired == 13, (d1.message, d2.message)


@pytest.mark.parametrize(
    ("state", "obs", "why"),
    [
        (_expecting(500.0), Observation(NOW, 480.0), "load within the bound"),
        (_expecting(500.0, warm=False), Observation(NOW, 900.0), "bound from a cold forecast"),
        (_expecting(500.0, issued=NOW - 10 * STEP), Observation(NOW, 900.0), "bound from a stale forecast"),
        (_expecting(500.0), Observation(NOW + STEP, 900.0), "bound was for another window"),
        (PolicyState(), Observation(NOW, 900.0), "no bound at all"),
    ],
)
def test_no_echo_without_a_trusted_surprise(state: PolicyState, obs: Observation, why: str) -> None:
    d, after = decide(make_spec(), state, FC_NEXT, obs, 5, NEXT)
    assert after.surprise is not None and after.surprise[1] == 0.0, why
    assert "surprise" not in d.message, why
    assert d.desired == max(10, replicas_for(obs.value, 100.0)), (why, d.message)


def test_echo_on_bad_data_only_raises_the_count() -> None:
    # anomalous data: the floor (with the echo) may scale up, never down
    obs = Observation(NOW, 900.0, anomalous=True)
    d, _ = decide(make_spec(), _expecting(500.0), FC_NEXT, obs, 20, NEXT)
    assert (d.desired, d.reason) == (20, Reason.ANOMALOUS_SERIES), d.message
    d, _ = decide(make_spec(), _expecting(500.0), FC_NEXT, obs, 5, NEXT)
    assert (d.desired, d.reason) == (13, Reason.REACTIVE_FLOOR), d.message


def test_policy_state_is_small_and_picklable() -> None:
    import pickle

    state = PolicyState()
    for k in range(30):
        now = NOW + k * STEP
        obs = Observation(now - STEP, 900.0 if k % 7 == 3 else 150.0)
        fc = make_forecast([500.0] * 4, issued=now - STEP)
        _, state = decide(make_spec(scale_down=ScalingRules(300, (), "Max")), state, fc, obs, 5, now)
    assert pickle.loads(pickle.dumps(state)) == state
    assert len(state.recommendations) <= 6 and state.expected is not None
