"""ConformalBand: calibration, locality, Mondrian groups, memory bound."""

from __future__ import annotations

import random

import pytest

from detectors.conformal import ConformalBand


def feed(band: ConformalBand, rng: random.Random, n: int, sd: float, group: int = 0) -> None:
    for _ in range(n):
        band.learn_one(1, 100.0, 100.0 + rng.gauss(0, sd), group)


@pytest.mark.parametrize("coverage", [0.5, 0.8, 0.9])
def test_empirical_coverage_matches_nominal(coverage: float) -> None:
    rng = random.Random(1)
    band = ConformalBand(horizon=1, coverage=coverage, window=400)
    hits = total = 0
    for i in range(5000):
        y = 50.0 + rng.gauss(0, 4)
        if i > 500:
            lo, _, hi = band.interval(1, 50.0)
            hits += lo <= y <= hi
            total += 1
        band.learn_one(1, 50.0, y)
    assert abs(hits / total - coverage) < 0.03


def test_band_widens_with_local_noise_and_with_the_forecast() -> None:
    rng = random.Random(2)
    band = ConformalBand(horizon=1, window=200, scale_alpha=0.1)
    feed(band, rng, 300, sd=2.0)
    narrow = band.interval(1, 100.0)
    feed(band, rng, 100, sd=20.0)
    wide = band.interval(1, 100.0)
    assert wide[2] - wide[0] > 4 * (narrow[2] - narrow[0])
    rel = ConformalBand(horizon=1, power=1.0)
    for v in [90.0, 110.0] * 100:
        rel.learn_one(1, 100.0, v)
    lo1, _, hi1 = rel.interval(1, 100.0)
    lo2, _, hi2 = rel.interval(1, 1000.0)
    assert hi2 - lo2 == pytest.approx(10 * (hi1 - lo1), rel=0.15)


def test_mondrian_groups_keep_their_own_errors() -> None:
    band = ConformalBand(horizon=1, coverage=0.8, window=200, edges=(2.0,), min_group=20)
    rng = random.Random(3)
    for i in range(600):
        surprised = i % 10 == 0
        # forecasts issued after a surprise under-forecast by a lot
        y = 100.0 + (60.0 if surprised else 0.0) + rng.gauss(0, 3)
        band.learn_one(1, 100.0, y, group=1 if surprised else 0)
    # the very first error only sets the scale; groups keep group_window (128) errors
    assert band.count(1) == 200 and band.count(1, 0) == 128 and band.count(1, 1) == 59
    quiet, after = band.interval(1, 100.0, 0), band.interval(1, 100.0, 1)
    assert after[1] > quiet[2]  # the median after a surprise is above the quiet band
    assert band.interval(1, 100.0, None) == band.interval(1, 100.0)
    # a thin group falls back to the pooled errors
    thin = ConformalBand(horizon=1, edges=(2.0,), min_group=50)
    for _ in range(30):
        thin.learn_one(1, 10.0, 11.0, group=1)
    assert thin.quantiles(1, 1) == thin.quantiles(1, None)


def test_group_follows_the_latest_one_step_surprise() -> None:
    band = ConformalBand(horizon=2, edges=(-2.0, 1.0, 3.0))
    for v in [10.0, 11.0, 9.0] * 20:
        band.learn_one(1, 10.0, v)
    assert band.group() == 1
    band.learn_one(1, 10.0, 100.0)
    assert band.group() == 3
    band.learn_one(1, 10.0, -50.0)
    assert band.group() == 0


def test_memory_is_bounded_by_the_window() -> None:
    band = ConformalBand(horizon=3, window=50, edges=(0.0,), group_window=20)
    for i in range(1000):
        for h in (1, 2, 3):
            band.learn_one(h, 0.0, float(i % 7), group=i % 2)
    assert band.count(3) == 50 and band.count(3, 0) == 20 and band.count(3, 1) == 20
