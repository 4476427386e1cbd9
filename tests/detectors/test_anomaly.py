"""Behaviour of the default anomaly detector (detectors.anomaly)."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from detectors.anomaly import COMPONENTS, RecordFusionDetector, default_detector
from detectors.base import AnomalyDetector

STEP = 300.0  # 5-minute points, as in NAB
ALARM = 0.9  # the worker's publishing threshold


def noisy_cycle(n: int, seed: int = 0, period: int = 288, noise: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [50 + 20 * math.sin(2 * math.pi * i / period) + rng.gauss(0, noise) for i in range(n)]


def run(values: list[float], det: AnomalyDetector | None = None, t0: float = 0.0) -> list[float]:
    det = det if det is not None else default_detector()
    out = []
    for i, x in enumerate(values):
        t = t0 + i * STEP
        out.append(det.score_one(x, t))
        det.learn_one(x, t)
    return out


def first_alarm(scores: list[float], start: int) -> int | None:
    for i in range(start, len(scores)):
        if scores[i] >= ALARM:
            return i - start
    return None


def test_default_detector_is_the_fusion_detector():
    assert isinstance(default_detector(), RecordFusionDetector)


@pytest.mark.parametrize("timestamps", [True, False])
def test_clean_sine_scores_low(timestamps):
    det = default_detector()
    scores = []
    for i in range(3000):
        x = 50 + 20 * math.sin(2 * math.pi * i / 288)
        t = i * STEP if timestamps else None
        scores.append(det.score_one(x, t))
        det.learn_one(x, t)
    assert max(scores[300:]) < 0.6


def test_spike_scores_high_at_once():
    values = noisy_cycle(3000)
    values[2500] += 60.0
    scores = run(values)
    assert first_alarm(scores, 2500) == 0


def test_level_shift_scores_high_within_a_few_points():
    values = noisy_cycle(3000)
    for i in range(2500, 3000):
        values[i] += 45.0
    scores = run(values)
    lag = first_alarm(scores, 2500)
    assert lag is not None and lag <= 5


def test_level_shift_inside_the_range_is_caught_by_the_level_view():
    rng = random.Random(3)
    values = [10 + rng.gauss(0, 1) for _ in range(3000)]
    values += [13 + rng.gauss(0, 1) for _ in range(300)]
    det = RecordFusionDetector(components=("level",))
    scores = run(values, det)
    lag = first_alarm(scores, 3000)
    assert lag is not None and lag <= 30
    # records on stationary noise are rare, not impossible
    assert sum(s >= ALARM for s in scores[1000:3000]) <= 3


def test_series_that_becomes_constant_scores_high_within_a_few_points():
    values = noisy_cycle(2500)
    values += [values[-1]] * 100  # a stuck sensor repeating its last reading
    scores = run(values)
    lag = first_alarm(scores, 2500)
    assert lag is not None and lag <= 12


def test_sensor_stuck_at_zero_after_a_normal_cycle_scores_high():
    values = noisy_cycle(2500) + [0.0] * 50
    assert first_alarm(run(values), 2500) == 0


def test_constant_series_from_the_start_scores_low():
    scores = run([7.0] * 3000)
    assert max(scores) < 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_are_finite_and_in_unit_interval(seed):
    rng = random.Random(seed)
    values = []
    for _ in range(3000):
        r = rng.random()
        if r < 0.01:
            values.append(rng.choice([1e12, -1e12, 0.0]))
        elif r < 0.1:
            values.append(values[-1] if values else 0.0)
        else:
            values.append(rng.lognormvariate(0, 2))
    for s in run(values):
        assert math.isfinite(s) and 0.0 <= s <= 1.0


def test_non_finite_input_is_ignored():
    det = default_detector()
    run(noisy_cycle(500), det)
    before = pickle.dumps(det)
    assert det.score_one(float("nan"), 0.0) == 0.0
    det.learn_one(float("nan"), 0.0)
    det.learn_one(float("inf"), 0.0)
    assert pickle.loads(before).score_one(50.0, 500 * STEP) == det.score_one(50.0, 500 * STEP)


def test_pickle_round_trip_mid_stream_gives_identical_next_scores():
    values = noisy_cycle(4000, seed=5)
    values[3500] += 80.0
    det = default_detector()
    run(values[:2000], det)
    copy = pickle.loads(pickle.dumps(det))
    a = run(values[2000:], det, t0=2000 * STEP)
    b = run(values[2000:], copy, t0=2000 * STEP)
    assert a == b
    assert max(a) >= ALARM  # the comparison covers an alarm, not only zeros


def test_score_one_does_not_change_state():
    det = default_detector()
    run(noisy_cycle(1000), det)
    state = pickle.dumps(det)
    det.score_one(1e6, 1000 * STEP)
    det.score_one(-3.0, 1000 * STEP)
    other = pickle.loads(state)
    x, t = 51.0, 1000 * STEP
    assert det.score_one(x, t) == other.score_one(x, t)
    det.learn_one(x, t)
    other.learn_one(x, t)
    assert det.score_one(60.0, t + STEP) == other.score_one(60.0, t + STEP)


def test_learn_without_score_matches_score_then_learn():
    values = noisy_cycle(1500)
    a, b = default_detector(), default_detector()
    for i, x in enumerate(values):
        a.score_one(x, i * STEP)
        a.learn_one(x, i * STEP)
        b.learn_one(x, i * STEP)
    assert a.score_one(200.0, 1500 * STEP) == b.score_one(200.0, 1500 * STEP)


def test_clone_gives_a_fresh_detector_with_the_same_parameters():
    det = RecordFusionDetector(hold=10, components=("spatial", "level"))
    run(noisy_cycle(500), det)
    fresh = det.clone()
    assert fresh.hold == 10 and fresh.components == ("spatial", "level")
    assert fresh.score_one(1e9) == 0.0  # cold: nothing learnt yet


def test_each_component_can_be_switched_off():
    values = noisy_cycle(3000)
    values[2500] += 60.0
    for name in COMPONENTS:
        rest = tuple(c for c in COMPONENTS if c != name)
        scores = run(values, RecordFusionDetector(components=rest))
        assert all(0.0 <= s <= 1.0 for s in scores)


def test_unknown_component_is_rejected():
    with pytest.raises(ValueError):
        RecordFusionDetector(components=("spatial", "magic"))


def test_one_alarm_per_incident():
    values = noisy_cycle(3000)
    for i in range(2500, 2540):
        values[i] += 60.0
    scores = run(values)
    alarms = [i for i in range(2500, 2540) if scores[i] >= ALARM]
    assert alarms == [2500]


def test_in_incident_covers_the_hold_after_an_alarm():
    values = noisy_cycle(3000)
    values[2500] += 60.0
    det = default_detector()
    run(values[:2500], det)
    assert not det.in_incident
    scores = run(values[2500:2510], det, t0=2500 * STEP)
    assert scores[0] >= ALARM and det.in_incident
    run(values[2510:2700], det, t0=2510 * STEP)
    assert not det.in_incident


def test_first_change_of_a_series_constant_so_far_scores_high():
    scores = run([0.0] * 2000 + [5.0] + [0.0] * 10)
    assert max(scores[:2000]) < 0.5
    assert scores[2000] >= ALARM


# -- calibration: the worker's one threshold means the same on every series --


def alarm_onsets(scores: list[float], start: int) -> int:
    onsets, prev = 0, False
    for s in scores[start:]:
        hit = s >= ALARM
        onsets += hit and not prev
        prev = hit
    return onsets


def test_scores_do_not_depend_on_the_series_unit_or_offset():
    values = noisy_cycle(3000, seed=3)
    values[2500] += 40.0
    base = run(values)
    scaled = run([1000.0 * v + 5e4 for v in values])
    assert max(abs(a - b) for a, b in zip(base, scaled, strict=True)) < 1e-6
    assert first_alarm(scaled, 2500) == 0


NOISES = {
    "gauss": lambda r: r.gauss(0.0, 1.0),
    "laplace": lambda r: r.expovariate(1.0) * (1 if r.random() < 0.5 else -1),
    "uniform": lambda r: r.random(),
    "lognormal": lambda r: r.lognormvariate(0.0, 1.0),
}


@pytest.mark.parametrize("noise", sorted(NOISES))
@pytest.mark.parametrize("step", [60.0, 3600.0])
def test_false_alarm_rate_on_pure_noise_is_low_whatever_its_distribution_and_step(noise, step):
    # alarms come from records, whose rate on exchangeable data (~1/n) does
    # not depend on the distribution: the corpora run at 0.3-0.4 per 1,000
    rng = random.Random(0)
    det = default_detector()
    scores = []
    for i in range(20000):
        x = NOISES[noise](rng)
        scores.append(det.score_one(x, i * step))
        det.learn_one(x, i * step)
    assert alarm_onsets(scores, 1000) <= 10  # < 0.53 per 1,000 points


@pytest.mark.parametrize("relax, flagged", [(0.0, False), (None, True)])
def test_a_first_incident_does_not_mask_a_second_one_of_about_the_same_size(relax, flagged):
    # the incident's peak relaxes back to the normal record (``relax``); with
    # all-time records (relax=0) the second, slightly smaller spike is missed
    values = noisy_cycle(6000)
    values[2500] += 60.0
    second = 2500 + 9 * 288  # nine cycles later, at the same phase
    values[second] += 50.0
    det = default_detector() if relax is None else RecordFusionDetector(relax=relax)
    scores = run(values, det)
    assert first_alarm(scores, 2500) == 0
    assert (scores[second] >= ALARM) is flagged


def test_a_lasting_new_regime_is_absorbed_after_the_incident():
    # values after the hold are learnt as the new normal: an alert at the shift
    # and at most one more (as the slow mean catches up), not one per hold
    values = noisy_cycle(8000)
    for i in range(3000, 8000):
        values[i] += 40.0
    scores = run(values)
    assert first_alarm(scores, 3000) == 0
    assert alarm_onsets(scores, 3000) <= 2


def test_a_checkpoint_from_before_relax_restores_and_relaxes():
    values = noisy_cycle(3000)
    det = default_detector()
    run(values[:2000], det)
    state = dict(det.__dict__)
    for k in ("relax", "quiet", "_plo", "_phi"):
        del state[k]
    for k in ("_level_rec", "_profile_rec", "_vol_rec"):
        rec = state[k] = pickle.loads(pickle.dumps(state[k]))
        rec.__setstate__((rec.warmup, rec.decay, rec.gain, rec.record, rec.n))  # the old layout
    old = RecordFusionDetector.__new__(RecordFusionDetector)
    old.__setstate__(state)
    assert old.relax == default_detector().relax and old._level_rec.relax == old.relax
    assert old.quiet == default_detector().quiet and old._vol_rec.quiet == old.quiet
    scores = run(values[2000:], old, t0=2000 * STEP)
    assert all(0.0 <= s <= 1.0 for s in scores)


@pytest.mark.parametrize("quiet, flagged", [(None, True), (0.0, False)])
def test_the_hold_ends_once_the_series_is_quiet_again(quiet, flagged):
    # a second spike 60 points after the first: once every view is quiet again the
    # first incident's hold is over and the second alarms; never quiet (0), it is held
    rng = random.Random(0)
    values = [50 + rng.gauss(0, 1) for _ in range(3000)]
    values[2500] += 10.0
    values[2560] += 15.0
    det = default_detector() if quiet is None else RecordFusionDetector(quiet=quiet)
    scores = run(values, det)
    assert first_alarm(scores, 2500) == 0
    assert (scores[2560] >= ALARM) is flagged


def bounded_cycle_with_a_step(seed: int) -> tuple[list[float], int]:
    """A [0, 1] cycle with single-point spikes and an earlier slide to 0, then an
    abrupt drop of 0.3 that stays inside the range already seen (an old magnitude)."""
    rng = random.Random(seed)
    v = [0.5 + 0.2 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 0.02) for i in range(6000)]
    for i in range(300, 3000, 250):
        v[i + rng.randrange(50)] += rng.choice((-0.2, 0.2))
    for j in range(200):  # an earlier incident: a slow slide to 0 and back
        v[2000 + j] -= (0.5 + 0.2 * math.sin(2 * math.pi * (2000 + j) / 288)) * math.sin(math.pi * j / 200)
    at = 5000 + 72 - 5000 % 288  # near a top of the cycle
    for i in range(at, at + 100):
        v[i] -= 0.3
    assert min(v[:at]) < min(v[at:at + 100])  # no new extreme
    return v, at


def test_an_abrupt_step_inside_the_old_range_is_flagged_by_the_step_view():
    # no value leaves the range and the volatility barely moves; only the step view
    # (mean of the last 3 values against the 3 before, in units of the mean absolute
    # step) sees it. Without it, none of the ten series alarms near the step.
    with_step = without = 0
    for seed in range(10):
        values, at = bounded_cycle_with_a_step(seed)
        hit = run_untimed(values, default_detector())
        miss = run_untimed(values, RecordFusionDetector(step=0))
        with_step += first_alarm(hit[: at + 4], at) is not None
        without += first_alarm(miss[: at + 4], at) is not None
    assert without == 0
    assert with_step >= 5


def run_untimed(values: list[float], det: AnomalyDetector) -> list[float]:
    out = []
    for x in values:
        out.append(det.score_one(x))
        det.learn_one(x)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_the_step_view_alone_stays_quiet_on_pure_noise(seed):
    # the step view's own alarms on noise: it is scored against its own record with
    # a gain below 1, so noise rarely beats it by the margin
    rng = random.Random(seed)
    det = RecordFusionDetector(components=("step",))
    scores = run([rng.gauss(0, 1) for _ in range(20_000)], det)
    assert alarm_onsets(scores, 1_000) <= 3


def test_the_step_view_survives_a_constant_stretch():
    # a series constant so far has no mean absolute step to scale by: the step view
    # is not computed (rather than dividing by 0 and keeping an infinite record)
    det = default_detector()
    run([5.0] * 500, det)
    assert det.last_parts[COMPONENTS.index("step")] is None
    rng = random.Random(0)
    scores = run([5.0 + rng.gauss(0, 1) for _ in range(3000)], det, t0=500 * STEP)
    assert math.isfinite(det._step_rec.record)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_a_checkpoint_from_before_the_step_view_restores_and_learns_it():
    values = noisy_cycle(4000)
    det = default_detector()
    run(values[:2000], det)
    state = dict(det.__dict__)
    for k in ("step", "step_gain", "_ring", "_ri", "_n_step", "_s_old", "_s_new", "_step_rec"):
        del state[k]
    state["components"] = COMPONENTS[:5]
    state["_use"] = (True,) * 5
    state["last_parts"] = state["last_parts"][:5]
    state["_stats"] = state["_stats"][:5]
    old = RecordFusionDetector.__new__(RecordFusionDetector)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert old.step == default_detector().step and "step" in old.components
    scores = run(values[2000:], old, t0=2000 * STEP)
    assert all(0.0 <= s <= 1.0 for s in scores)
    # the step view warmed up on the new points only (its ring started empty)
    assert old._step_rec.n == 2000 - 2 * old.step


def cycle_with_quiet_nights(seed: int, at: int, size: float) -> list[float]:
    """A daily cycle, noisy by day (sd 3) and quiet by night (sd 0.3), with a ramp of
    ``size`` for 20 points from ``at``: smaller than the day's noise, inside the range."""
    rng = random.Random(seed)
    v = []
    for i in range(5000):
        ph = math.sin(2 * math.pi * i / 288)
        v.append(50 + 20 * ph + rng.gauss(0, 3.0 if ph > -0.3 else 0.3))
    for i in range(at, at + 20):
        v[i] += size * min(1.0, (i - at + 1) / 5)
    return v


def test_a_deviation_in_a_quiet_phase_is_flagged_by_the_profile_local_scale():
    # the residual from the time-of-day profile, in units of its bin's own deviation:
    # a night-time deviation far smaller than the day's noise. Without the local scale
    # (profile_local=0) no view sees it
    at = 4000 + 216 - 4000 % 288  # the bottom of the cycle
    local = plain = 0
    for seed in range(10):
        values = cycle_with_quiet_nights(seed, at, 6.0)
        local += first_alarm(run(values, default_detector())[: at + 20], at) is not None
        plain += first_alarm(run(values, RecordFusionDetector(profile_local=0.0))[: at + 20], at) is not None
    assert plain == 0
    assert local >= 8


@pytest.mark.parametrize("noise", sorted(NOISES))
def test_the_profile_local_scale_is_rarely_used_on_pure_noise(noise):
    # on noise the bins' deviations are the series' own (the profile explains
    # nothing): the local residual is off once they are learnt, and computed for a
    # few per cent of the points at most (early, while few bins are)
    rng = random.Random(0)
    det = default_detector()
    for i in range(20000):
        x = NOISES[noise](rng)
        det.score_one(x, i * 60.0)
        det.learn_one(x, i * 60.0)
    assert det._dev_bins == det.bins
    assert det._dev_sum >= det.profile_local * det._mad * det._dev_bins
    assert det._local_rec.n < 1000


def test_a_checkpoint_from_before_the_profile_local_scale_restores_and_learns_it():
    values = noisy_cycle(6000)
    det = default_detector()
    run(values[:3000], det)
    state = dict(det.__dict__)
    for k in ("profile_local", "_dev", "_dev_sum", "_dev_bins", "_mad", "_local_rec"):
        del state[k]
    state["_stats"] = state["_stats"][:6]
    old = RecordFusionDetector.__new__(RecordFusionDetector)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert old.profile_local == default_detector().profile_local
    assert old._dev_bins == sum(1 for v in old._visits if v >= 2)
    scores = run(values[3000:], old, t0=3000 * STEP)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert old._local_rec.n > 0  # the cycle's profile explains it: the local view learns


def test_the_bins_deviations_are_learnt_per_visit_not_per_point():
    # a 1-minute series visits a half-hour bin for 30 points a day: each visit weighs
    # as much as a 1-hour series' single point, so the bins' deviations average over
    # days of the noise (mean absolute deviation of N(0, 1): 0.80), not over the last
    # few points of the last visit (per point, they spread by 0.16 across the bins)
    rng = random.Random(0)
    det = default_detector()
    day, step = 86400.0, 60.0
    for i in range(int(20 * day / step)):
        t = i * step
        x = 50 + 20 * math.sin(2 * math.pi * t / day) + rng.gauss(0, 1)
        det.score_one(x, t)
        det.learn_one(x, t)
    assert det._per_visit == 30
    devs = [d for d, v in zip(det._dev, det._visits, strict=True) if v >= 2]
    mean = sum(devs) / len(devs)
    spread = math.sqrt(sum((d - mean) ** 2 for d in devs) / len(devs))
    assert len(devs) == det.bins
    assert 0.7 < mean < 1.0
    assert spread < 0.1
