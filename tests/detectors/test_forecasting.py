"""The default forecaster: learning cycles, calibration, cold start, state and the demo's needs."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from detectors.defaults import make_series_model
from detectors.forecasting import SeasonalEnsemble, default_forecaster, seasonal_periods
from scaler.policy import Observation, PolicyState, decide, replicas_for
from scaler.spec import ScalerSpec, TargetRef
from streams.workload import KAFKA_PLAN, Workload

DEMO = Workload(start=0.0)


def cycle(i: int, period: int = 60, peak_at: int = 40, rng: random.Random | None = None) -> float:
    """A quiet base with a sharp, predictable peak once per period."""
    ph = i % period
    noise = rng.gauss(0, 5) if rng is not None else 0.0
    return 100.0 + 400.0 * math.exp(-(((ph - peak_at) / 4.0) ** 2)) + noise


def test_cold_until_enough_errors_then_warm() -> None:
    f = SeasonalEnsemble(step_seconds=60, periods=(60,), horizon=6, min_samples=30)
    assert not f.warm and f.error is None
    assert [iv.yhat for iv in f.forecast(3)] == [0.0, 0.0, 0.0]
    for i in range(30):
        f.learn_one(100.0 + i % 3, t=60.0 * i)
    assert not f.warm  # 30 values give fewer than 30 six-step-ahead errors
    for i in range(30, 40):
        f.learn_one(100.0 + i % 3, t=60.0 * i)
    assert f.warm
    assert f.error is not None and 0.0 <= f.error < 0.1


def test_learns_the_cycle_within_two_periods() -> None:
    rng = random.Random(3)
    f = default_forecaster(60.0, period_steps=60)
    for i in range(120):
        f.learn_one(cycle(i, rng=rng), t=60.0 * i)
    assert f.warm
    # issued at step 119 + k: the peak (step 160) is 3 steps ahead from step 157
    for i in range(120, 158):
        f.learn_one(cycle(i, rng=rng), t=60.0 * i)
    fc = f.forecast(6)
    assert fc[2].yhat == pytest.approx(cycle(160), rel=0.1)
    assert fc[2].upper >= cycle(160) * 0.95


def test_demo_scales_up_a_lead_time_before_the_peak() -> None:
    """60-minute cycle, 60 s windows, horizon 6, lead 180 s: capacity for the third
    peak is requested at least 180 s before its window starts."""
    rng = random.Random(11)
    model = make_series_model(60.0, period_steps=60, horizon=6)
    spec = ScalerSpec("demo", "demo/rps", capacity_per_replica=50.0, min_replicas=1,
                      max_replicas=50, lead_time_seconds=180.0,
                      target=TargetRef("apps/v1", "Deployment", "demo"))
    state, current = PolicyState(), 3
    peak_step = 160
    early = []
    for i in range(peak_step + 1):
        y = cycle(i, rng=rng)
        t = 60.0 * i
        u = model.update(y, t=t)
        fc = model.to_forecast("demo/rps", t, 60.0, u)
        now = t + 60.0
        d, state = decide(spec, state, fc, Observation(t, y, u.anomalous), current, now)
        if d.desired != current:
            state = state.record_scale(now, d.desired - current)
        current = d.desired
        if now <= 60.0 * peak_step - 180.0 and i >= 120:
            early.append(d)
    best = max(early, key=lambda d: d.desired)
    assert best.desired * spec.capacity_per_replica >= 0.9 * cycle(peak_step)
    assert best.reason.value == "ForecastPeak"
    # and the quiet part of the cycle is not provisioned for the peak: no more than the
    # family's most generous reactive HPA (50 % utilisation) holds for the quiet load
    assert min(d.desired for d in early) <= replicas_for(150.0 / 0.5, spec.capacity_per_replica)
    assert min(d.desired for d in early) < best.desired / 2


@pytest.mark.parametrize("seed", [0, 1])
def test_upper_bound_is_calibrated_on_noise(seed: int) -> None:
    rng = random.Random(seed)
    f = SeasonalEnsemble(step_seconds=300, periods=(288,), horizon=3)
    hits = total = 0
    pending: list[float] = []
    for i in range(3000):
        y = 200.0 + 50.0 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 10)
        if len(pending) == 3:
            if f.warm and i > 600:
                total += 1
                hits += y <= pending[0]
            pending.pop(0)
        f.learn_one(y, t=300.0 * i)
        pending.append(f.forecast(3)[2].upper if f.warm else math.inf)
    nominal = (1 + f.coverage) / 2
    assert abs(hits / total - nominal) < 0.04


def test_follows_a_level_shift() -> None:
    f = default_forecaster(60.0, period_steps=60)
    for i in range(200):
        f.learn_one(100.0 + (i % 7), t=60.0 * i)
    for i in range(200, 225):  # within 25 steps of a shift
        f.learn_one(300.0 + (i % 7), t=60.0 * i)
    assert f.forecast(3)[2].yhat == pytest.approx(303.0, rel=0.1)


def test_pickle_clone_and_size() -> None:
    f = default_forecaster(60.0)  # daily and weekly profiles of one-minute steps
    assert f.periods == (1440, 10080)
    rng = random.Random(5)
    for i in range(3000):
        f.learn_one(100 + 20 * math.sin(i / 200) + rng.gauss(0, 3), t=60.0 * i)
    blob = pickle.dumps(f)
    assert len(blob) < 45_000
    g = pickle.loads(blob)
    assert g.forecast(6) == f.forecast(6)
    g.learn_one(120.0, t=60.0 * 3000)
    assert g.forecast(1) != f.forecast(1)  # independent copies
    c = f.clone()
    assert c.periods == f.periods and not c.warm


def test_no_timestamps_and_non_finite_values() -> None:
    f = SeasonalEnsemble(periods=(4,), horizon=2, min_samples=5)
    for v in [1, 2, 3, 4] * 10:
        f.learn_one(v)
    before = f.forecast(2)
    f.learn_one(float("nan"))
    assert f.forecast(2) == before
    assert [round(iv.yhat) for iv in before] == [1, 2]


def test_seasonal_periods() -> None:
    assert seasonal_periods(300) == (288, 2016)
    assert seasonal_periods(3600) == (24, 168)
    assert seasonal_periods(10) == (8640,)  # a week of 10 s windows is too long to profile
    assert seasonal_periods(7) == ()


def burst(i: int, rng: random.Random) -> float:
    """The demo's Kafka topic (streams/workload.py), one-minute windows of a 60-minute cycle: a
    gentle wave around 3.5 messages/s, a burst to 12 ramping over minutes 10-15, a plateau, back
    down by minute 25; the noise of a minute's Poisson count."""
    base = DEMO.rate(KAFKA_PLAN.name, 60.0 * i)
    return max(0.0, rng.gauss(base, math.sqrt(base / 60)))


@pytest.mark.parametrize("seed", range(6))
def test_a_burst_ramp_is_forecast_at_its_height_after_two_cycles(seed: int) -> None:
    """After two cycles, the forecast issued at the third burst's ramp start gives the ramp
    nearly its full height, and its upper bound passes the capacity in place (9 consumers
    of 1 message/s) a lead time (3 windows) before the load does (at minute 14). Weighted by
    their recent errors alone, the level (as good as the profile through the quiet 50
    minutes) and the profile were blended at the ramp: about 70 % of its height."""
    rng = random.Random(seed)
    new = default_forecaster(60.0, period_steps=60)
    old = SeasonalEnsemble(step_seconds=60.0, periods=(60,), phase_alpha=0.0)
    for i in range(120 + 11):  # two cycles, then the third's minutes 0 .. 10
        v = burst(i, rng)
        new.learn_one(v, t=60.0 * i)
        old.learn_one(v, t=60.0 * i)
    lead = new.forecast(6)[:4]  # the windows of minutes 11 .. 14, decided at minute 11
    want = 3.5 * (1 + 0.1 * math.sin(2 * math.pi * 14 / 60))
    want += 4 / 5 * (12.0 - want)  # minute 14 of the ramp, without noise: 10.4
    assert lead[3].yhat >= 0.9 * want, (lead[3], want)
    assert max(iv.upper for iv in lead) > 9.0
    assert old.forecast(6)[3].yhat < 0.85 * want  # what the phase errors change


def test_phase_errors_only_change_the_weights_where_a_phase_has_history() -> None:
    """Within the first cycle no forecast step's phase has been seen: the weights are the
    recent errors' alone, and the forecast is the one without phase errors."""
    rng = random.Random(1)
    on = SeasonalEnsemble(step_seconds=60.0, periods=(60,), phase_alpha=0.2, min_samples=5)
    off = SeasonalEnsemble(step_seconds=60.0, periods=(60,), phase_alpha=0.0, min_samples=5)
    diverged = False
    for i in range(120):
        v = burst(i, rng)
        on.learn_one(v, t=60.0 * i)
        off.learn_one(v, t=60.0 * i)
        a, b = on.forecast(6), off.forecast(6)
        if i < 60 - 6:  # every step forecast is in the first cycle, ahead of what was seen
            assert [iv.yhat for iv in a] == pytest.approx([iv.yhat for iv in b], rel=1e-9)
        elif any(abs(x.yhat - y.yhat) > 1e-6 for x, y in zip(a, b, strict=True)):
            diverged = True
    assert diverged


def test_phase_errors_are_compact_and_off_at_zero() -> None:
    """One 4-byte error per member and phase bin (at most PHASE_BINS bins of the shortest
    period), whatever the horizon; none with ``phase_alpha`` 0 or without a period."""
    from detectors.forecasting import PHASE_BINS

    f = default_forecaster(10.0)  # a daily profile of 10 s windows: 8,640 phases
    assert f.phase_alpha > 0 and len(f._phase_err) == 2
    assert all(len(p._values) * p._values.itemsize == 4 * PHASE_BINS for p in f._phase_err)
    assert SeasonalEnsemble(periods=(60,), phase_alpha=0.0)._phase_err == []
    assert SeasonalEnsemble(periods=(), phase_alpha=0.2)._phase_err == []
