"""streams.steps: each series modelled at its own step; and the worker doing so, end to end."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request

import pytest

from streams.replay import send_trace
from streams.settings import Settings
from streams.steps import StepEstimator, model_shape, round_up_to_window
from tests.conftest import read_topic
from tests.waiting import retrying

T0 = 1_699_999_800.0  # a multiple of 300: both workers' windows start on the samples' 5 minutes
FIVE_MIN = 300.0


def test_the_step_is_the_median_interval_rounded_up_to_whole_windows():
    e = StepEstimator(window=10.0)
    # point starts are window starts: a sample every ~5 min with jitter lands 290..310 apart
    starts = [0.0, 300.0, 590.0, 900.0, 1210.0]
    assert [e.observe(t, 1.0) for t in starts[:3]] == [None, None, None]
    assert e.observe(starts[3], 1.0) == 300.0  # median (low) of 300, 290, 310
    assert e.observe(starts[4], 1.0) is None, "decided: a jittered interval changes nothing"
    assert round_up_to_window(299.0, 60.0) == 300.0 and round_up_to_window(301.0, 60.0) == 360.0


def test_missing_samples_are_gaps_not_a_new_step():
    e = StepEstimator(window=10.0)
    for t in (0.0, 300.0, 600.0, 900.0):
        e.observe(t, 1.0)
    assert e.step == 300.0
    # every third sample missing: one interval in three is 600 s, the median stays 300 s
    for t in (1200.0, 1500.0, 2100.0, 2400.0, 2700.0, 3300.0, 3600.0, 3900.0, 4500.0):
        assert e.observe(t, 1.0) is None
    assert e.step == 300.0


def test_a_changed_sampling_interval_is_followed_once_the_recent_median_says_so():
    e = StepEstimator(window=10.0)
    t = 0.0
    for _ in range(4):
        e.observe(t, 1.0)
        t += FIVE_MIN
    changes, replayed = [], []
    for i in range(12):  # now every minute
        t += 60.0 if i else 0.0
        changes.append(e.observe(t, float(i)))
        if changes[-1] is not None:
            replayed = e.replay()
    assert changes.index(60.0) == 5, changes  # the 5th one-minute interval tips the median of 9
    assert [c for c in changes if c is not None] == [60.0]
    # the model at the new step learns the last 10 points again, the one that decided last
    assert len(replayed) == 10 and replayed[-1] == (t - 6 * 60.0, 5.0)


def test_an_event_series_with_a_point_every_window_keeps_the_window():
    e = StepEstimator(window=10.0)
    decided = [e.observe(10.0 * i, 5.0) for i in range(20)]
    assert [d for d in decided if d is not None] == [10.0]


def test_replayed_points_say_nothing_about_the_interval():
    e = StepEstimator(window=10.0)
    for t in (0.0, 300.0, 300.0, 0.0, 600.0, 900.0):
        e.observe(t, 1.0)
    assert e.step == 300.0 and list(e.gaps) == [300.0, 300.0, 300.0]


def test_period_and_horizon_are_converted_to_the_series_step():
    assert model_shape(Settings(), 10.0) == (None, Settings().forecast_horizon_steps())
    assert model_shape(Settings(horizon_seconds=1800), 300.0) == (None, 8)  # 6 steps + 2
    assert model_shape(Settings(period_steps=8640), 300.0) == (288, 6)  # a day in 10 s windows
    assert model_shape(Settings(period_steps=7), 300.0) == (None, 6)  # 70 s: no whole period at 5 min


# -- the worker, end to end -------------------------------------------------------------------


def _five_minute_metric(n: int) -> tuple[list[float], list[float]]:
    """A CPU-like metric sampled every 5 minutes: an hourly wave and a little noise."""
    ts = [T0 + i * FIVE_MIN + 7.0 for i in range(n)]  # sampled 7 s into its 5 minutes
    values = [50.0 + 20.0 * math.sin(2 * math.pi * i / 12) + (i * 7919 % 13) / 13.0 for i in range(n)]
    return ts, values


def _api(port: int, series: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/series/{urllib.parse.quote(series, safe='')}"
    def get() -> dict:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback test server
            return json.loads(r.read())

    return retrying(get, lambda exc: isinstance(exc, OSError), 30)


@pytest.mark.integration
def test_a_five_minute_metric_is_warm_with_ten_second_windows_as_soon_as_with_five_minute_ones(
        broker, start_worker):
    n = 60
    # a window closes once its series' time passes its end + 2 windows of lateness: at 10 s
    # windows each sample closes the previous one's; at 5 minutes the last three stay open
    closed = {10.0: n - 1, FIVE_MIN: n - 3}
    ts, values = _five_minute_metric(n)
    runs = {}
    for window in (10.0, FIVE_MIN):
        prefix = f"steps{int(window)}{time.monotonic_ns() % 10**6}"
        w = start_worker(prefix, FORESIGHT_WINDOW_SECONDS=str(window))
        send_trace(Settings(broker=broker, topic_prefix=prefix, window_seconds=window), ts, values, "db/cpu")
        want = closed[window]
        fcs = read_topic(broker, f"{prefix}.forecasts", lambda ms, want=want: len(ms) >= want)
        points = read_topic(broker, f"{prefix}.points", lambda ms, want=want: len(ms) >= want, timeout=10)
        runs[window] = (sorted(fcs, key=lambda m: m["issued"]), points, _api(w.port, "db/cpu"))

    fc10, points10, api10 = runs[10.0]
    fc300, _, api300 = runs[FIVE_MIN]
    assert (len(fc10), len(fc300)) == (closed[10.0], closed[FIVE_MIN])
    # windows without a sample are gaps, not zeros: one point per sample, each the sample itself
    assert len(points10) == n - 1 and sorted(p["value"] for p in points10) == sorted(values[:-1])
    # the 10 s worker found the 5 minute step after three intervals and modelled the series at it
    assert [f["step"] for f in fc10[:3]] == [10.0] * 3 and {f["step"] for f in fc10[3:]} == {FIVE_MIN}
    assert {f["step"] for f in fc300} == {FIVE_MIN}
    first_warm = {w: next(i for i, f in enumerate(fcs) if f["warm"]) + 1
                  for w, fcs in ((10.0, fc10), (FIVE_MIN, fc300))}
    assert first_warm[10.0] == first_warm[FIVE_MIN] < closed[FIVE_MIN], first_warm
    # ... and the same forecast, point for point, once the step is known
    for a, b in zip(fc10[3:], fc300[3:], strict=False):
        assert [p["ts"] for p in a["points"]] == [p["ts"] for p in b["points"]]
        assert [p["yhat"] for p in a["points"]] == pytest.approx([p["yhat"] for p in b["points"]])
    last = fc10[-1]
    assert last["warm"] and last["points"][0]["ts"] == last["issued"] + FIVE_MIN
    # the API says at which step the series is modelled, and shows its points, not the gaps
    assert api10["step"] == api300["step"] == FIVE_MIN
    assert len(api10["points"]) == n - 1 and api10["forecast"]["warm"] is True
