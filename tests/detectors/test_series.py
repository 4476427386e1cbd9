"""SeriesModel: anomalous points do not drag the forecaster; real shifts are learnt in bounded time."""

from __future__ import annotations

import pickle

import pytest

from detectors.defaults import make_series_model
from detectors.forecasting import SeasonalEnsemble
from detectors.series import SeriesModel


class FlagWhen:
    """A stand-in detector: flags the values a predicate picks."""

    def __init__(self, pred) -> None:
        self.pred = pred

    def score_one(self, x: float, t: float | None = None) -> float:
        return 1.0 if self.pred(x) else 0.0

    def learn_one(self, x: float, t: float | None = None) -> None:
        pass


def warm_model(detector, max_skip: int = 10) -> SeriesModel:
    m = SeriesModel(detector, SeasonalEnsemble(horizon=3, min_samples=5), horizon=3, max_skip=max_skip)
    for i in range(60):
        m.update(100.0 + (i % 5), t=60.0 * i)
    assert m.forecaster.warm
    return m


def test_a_single_flagged_spike_does_not_move_the_forecast() -> None:
    m = warm_model(FlagWhen(lambda x: x > 500))
    before = m.forecaster.forecast(1)[0]
    u = m.update(5000.0, t=60.0 * 60)
    assert u.anomalous
    assert u.intervals[0].yhat < before.upper * 1.1
    # the same spike, unflagged, drags the level far up
    plain = warm_model(FlagWhen(lambda x: False))
    assert plain.update(5000.0, t=60.0 * 60).intervals[0].yhat > 1000


def test_stuck_at_zero_is_not_learnt_while_the_episode_lasts() -> None:
    # the detector flags only the first zero; the episode continues while values stay out of band
    flagged = {"done": False}

    def first_zero(x: float) -> bool:
        if x == 0.0 and not flagged["done"]:
            flagged["done"] = True
            return True
        return False

    m = warm_model(FlagWhen(first_zero), max_skip=10)
    for i in range(60, 68):
        u = m.update(0.0, t=60.0 * i)
    assert u.intervals[0].yhat > 80.0
    assert m.anomalous_run == 8


@pytest.mark.parametrize("max_skip", [5, 15])
def test_a_real_level_shift_is_learnt_within_the_bound(max_skip: int) -> None:
    m = warm_model(FlagWhen(lambda x: x > 250), max_skip=max_skip)  # flags the new level forever
    for i in range(60, 60 + max_skip + 15):
        u = m.update(300.0, t=60.0 * i)
    assert u.intervals[0].yhat == pytest.approx(300.0, rel=0.1)


def test_episode_ends_when_values_return_to_the_band() -> None:
    m = warm_model(FlagWhen(lambda x: x > 500))
    m.update(5000.0, t=60.0 * 60)
    assert m.anomalous_run == 1
    m.update(102.0, t=60.0 * 61)
    assert m.anomalous_run == 0


def test_pickles_with_its_state() -> None:
    m = make_series_model(60.0, period_steps=10)
    for i in range(100):
        m.update(100.0 + (i % 10) * 3, t=60.0 * i)
    m.anomalous_run = 2
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.anomalous_run == 2
    assert m2.update(101.0, t=60.0 * 100) == m.update(101.0, t=60.0 * 100)


def test_restores_checkpoints_from_before_max_skip() -> None:
    m = make_series_model(60.0, period_steps=10)
    old = SeriesModel.__new__(SeriesModel)
    state = (None, {k: getattr(m, k) for k in ("detector", "forecaster", "threshold", "horizon", "updates")})
    old.__setstate__(state)
    assert old.max_skip == 20 and old.anomalous_run == 0
    old.update(100.0, t=0.0)


def test_a_stuck_sensor_is_untrusted_from_its_third_repeat_even_when_the_detector_is_cold():
    import random

    from detectors.defaults import make_series_model

    rng = random.Random(3)
    m = make_series_model(step_seconds=60, period_steps=60)
    for i in range(120):  # fewer points than the detector's warm-up: it flags nothing
        u = m.update(300 + rng.gauss(0, 15), t=60.0 * i)
    assert not u.untrusted
    flags = [m.update(0.0, t=60.0 * (120 + i)).untrusted for i in range(15)]
    assert flags[:2] == [False, False] and all(flags[2:]), flags


# -- drift -------------------------------------------------------------------

PERIOD = 48  # a day of 30-minute steps


def cycle(i: int, rng, level: float) -> float:
    import math

    return level + 30.0 * math.sin(2 * math.pi * i / PERIOD) + rng.gauss(0.0, 2.0)


@pytest.mark.parametrize("shift", [60.0, -50.0])
def test_a_level_shift_is_a_drift_and_the_forecast_recovers_within_three_periods(shift) -> None:
    import random
    from collections import deque

    rng = random.Random(0)
    m = make_series_model(1800.0)
    change = 15 * PERIOD
    window: deque[float] = deque(maxlen=PERIOD)
    started, drifting, pre, last_bad, pre_errors = [], [], None, None, []
    for i in range(change + 5 * PERIOD):
        y = cycle(i, rng, 100.0 + (shift if i >= change else 0.0))
        nxt = m.forecaster.forecast(1)[0] if m.forecaster.warm else None
        u = m.update(y, t=1800.0 * i)
        if nxt is not None:
            window.append(abs(y - nxt.yhat))
        if u.drift_started:
            started.append(i - change)
        drifting.append(u.drifting)
        if change - 4 * PERIOD <= i < change and nxt is not None:
            pre_errors.append(abs(y - nxt.yhat))
        if i == change - 1:
            pre = sum(pre_errors) / len(pre_errors)  # the level over 4 periods
        if i >= change and sum(window) / len(window) > 1.5 * pre:
            last_bad = i - change
    assert len(started) == 1 and 0 <= started[0] <= m.max_skip + 10  # after the anomaly episode
    assert drifting[change + started[0]] and not any(drifting[:change])
    assert not drifting[-1]  # recovered, and says so
    assert last_bad is not None and last_bad < 3 * PERIOD


def test_no_drift_on_a_steady_cycle() -> None:
    import random

    rng = random.Random(1)
    m = make_series_model(1800.0)
    ups = [m.update(cycle(i, rng, 100.0), t=1800.0 * i) for i in range(30 * PERIOD)]
    assert not any(u.drift_started or u.drifting for u in ups)


def test_a_drift_restarts_the_forecaster_on_the_new_level() -> None:
    import random

    rng = random.Random(2)
    m = make_series_model(1800.0)
    for i in range(15 * PERIOD):
        m.update(cycle(i, rng, 100.0), t=1800.0 * i)
    i = 15 * PERIOD
    while True:
        u = m.update(cycle(i, rng, 200.0), t=1800.0 * i)
        i += 1
        if u.drift_started:
            break
    expected = cycle(i, random.Random(3), 200.0)
    assert abs(u.intervals[0].yhat - expected) < 15.0


def test_restores_checkpoints_from_before_drift_was_watched() -> None:
    m = make_series_model(60.0, period_steps=10)
    old = SeriesModel.__new__(SeriesModel)
    keep = ("detector", "forecaster", "threshold", "horizon", "updates", "max_skip", "anomalous_run", "stuck")
    old.__setstate__((None, {k: getattr(m, k) for k in keep}))
    assert old.drifting is False
    u = old.update(100.0, t=0.0)
    assert u.drifting is False and u.drift_started is False


def test_drift_can_be_reported_without_adapting() -> None:
    import random

    errors, started = {}, {}
    for adapt in (True, False):
        rng = random.Random(0)
        m = make_series_model(1800.0, horizon=1)
        m.adapt_on_drift = adapt
        errs, starts = [], []
        for i in range(17 * PERIOD):
            y = cycle(i, rng, 100.0 + (80.0 if i >= 15 * PERIOD else 0.0))
            nxt = m.forecaster.forecast(1)[0] if m.forecaster.warm else None
            u = m.update(y, t=1800.0 * i)
            if u.drift_started:
                starts.append(i)
            if nxt is not None and starts and i > starts[0]:  # after the drift is noticed
                errs.append(abs(y - nxt.yhat))
        errors[adapt], started[adapt] = sum(errs) / len(errs), starts
    assert started[True] and started[True] == started[False]  # reported either way
    assert errors[True] < 0.8 * errors[False]  # adapting recovers faster
