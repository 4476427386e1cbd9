"""SeasonalProfile: per-phase EW means, binning, unseen phases."""

from __future__ import annotations

import pickle

import pytest

from detectors.seasonal import SeasonalProfile


def test_profile_converges_to_the_cycle() -> None:
    p = SeasonalProfile(period=5, alpha=0.5)
    cycle = [1.0, 5.0, 2.0, 8.0, 3.0]
    for i in range(100):
        p.learn_one(i, cycle[i % 5])
    assert [p.value(i) for i in range(100, 105)] == pytest.approx(cycle)


def test_unseen_phases_are_none() -> None:
    p = SeasonalProfile(period=10)
    p.learn_one(3, 7.0)
    assert p.value(13) == 7.0 and p.seen(23)
    assert p.value(4) is None and not p.seen(4)


def test_long_periods_are_binned() -> None:
    p = SeasonalProfile(period=10_080, alpha=0.5, max_bins=2016)
    assert len(pickle.dumps(p)) < 10_000  # 2016 four-byte floats, not 10,080
    for i in range(5):  # one 5-step bin, learnt as one value
        p.learn_one(i, 10.0 * (i + 1))
    assert p.value(0) == p.value(4)
    assert 10.0 < p.value(0) < 50.0
    assert p.value(5) is None
