"""ErrorDrift: a lasting rise of the errors is a drift; noise and single spikes are not."""

from __future__ import annotations

import pickle
import random

import pytest

from detectors.drift import ErrorDrift


def errors(n: int, scale: float = 1.0, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [scale * abs(rng.gauss(0.0, 1.0)) for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_no_drift_on_stationary_errors(seed: int) -> None:
    d = ErrorDrift()
    assert not any(d.update(e) for e in errors(20000, seed=seed))


@pytest.mark.parametrize("unit", [1e-6, 1.0, 1e6])
def test_a_tenfold_rise_is_detected_within_a_few_steps_whatever_the_unit(unit: float) -> None:
    d = ErrorDrift()
    for e in errors(500, unit):
        d.update(e)
    hits = [d.update(e) for e in errors(50, 10 * unit, seed=1)]
    assert True in hits
    assert hits.index(True) < 20


def test_a_doubling_of_the_errors_is_not_a_drift() -> None:
    # forecast errors of real load are bursty: only a clear change is a drift
    d = ErrorDrift()
    for e in errors(500):
        d.update(e)
    assert not any(d.update(e) for e in errors(500, 2.0, seed=1))


def test_a_spike_of_a_few_points_is_not_a_drift() -> None:
    d = ErrorDrift()
    for e in errors(500):
        d.update(e)
    assert not any(d.update(1000.0) for _ in range(3))
    assert not any(d.update(e) for e in errors(500, seed=2))


def test_the_baseline_follows_slow_changes_without_a_drift() -> None:
    d = ErrorDrift()
    hits = [d.update(e * (1 + i / 5000)) for i, e in enumerate(errors(10000))]
    assert not any(hits)
    assert 2.0 < d.baseline < 3.0  # mean |N(0,1)| = 0.8, tripled by the end


def test_rebase_takes_a_new_norm() -> None:
    d = ErrorDrift()
    for e in errors(500):
        d.update(e)
    d.rebase(5.0)
    assert not any(d.update(e) for e in errors(500, 5.0, seed=3))


def test_pickles_mid_stream() -> None:
    d = ErrorDrift()
    for e in errors(300):
        d.update(e)
    d2 = pickle.loads(pickle.dumps(d))
    tail = errors(100, 6.0, seed=4)
    assert [d.update(e) for e in tail] == [d2.update(e) for e in tail]
