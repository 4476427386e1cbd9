"""The controller loop's event-time handling, without a broker (pure parts)."""

from __future__ import annotations

import time

from detectors.forecast import Forecast, ForecastPoint
from scaler.reconcile import Reconciler
from scaler.simulated import SimulatedCluster
from scaler.spec import ScalerSpec, TargetRef
from streams import records
from streams.controller import ControllerLoop
from streams.settings import Settings


def spec(name: str) -> ScalerSpec:
    return ScalerSpec(name, f"{name}/rps", capacity_per_replica=100, min_replicas=2, max_replicas=50,
                      lead_time_seconds=120, target=TargetRef("apps/v1", "Deployment", name))


def message(series: str, issued: float, upper: float) -> bytes:
    f = Forecast(series, issued, 60.0, tuple(ForecastPoint(issued + 60 * i, upper, 0, upper) for i in range(1, 5)),
                 0.8, "m", True)
    return records.dumps(records.forecast_to_json(f, upper, False, 0.0))


def test_a_partition_far_ahead_does_not_make_another_series_stale():
    cluster = SimulatedCluster(120)
    loop = ControllerLoop(Settings(), Reconciler(cluster, [spec("a"), spec("b")]))
    loop.track_partitions([0, 1])
    # partition 0 (series a) is read two hours ahead of partition 1 (series b): a backfill
    for i in range(120):
        loop._handle(message("a/rps", 7200.0 + 60 * i, 300), partition=0)
    for i in range(5):
        loop._handle(message("b/rps", 60.0 * i, 900), partition=1)
    b = loop.reconciler.last["default/b"]
    assert b.reason.value == "ForecastPeak" and b.desired == 9, b
    assert loop.low_watermark() == 5 * 60.0, "the slowest partition holds the low watermark"
    assert all(d.ts >= 60.0 for d in loop.reconciler.last.values())


def test_a_target_never_goes_back_in_time():
    cluster = SimulatedCluster(120)
    r = Reconciler(cluster, [spec("a")])
    loop = ControllerLoop(Settings(), r)
    loop._handle(message("a/rps", 600.0, 300), partition=0)
    loop._handle(message("a/rps", 300.0, 300), partition=0)  # a replayed, older forecast
    assert r.last["default/a"].ts == 660.0


def test_the_live_controller_decides_as_the_backtest_does():
    """One code path: the model's updates go over the wire format to the controller's
    handler, and it makes the decisions the backtest makes on the same series."""
    import math
    import random

    from detectors.defaults import make_series_model
    from scaler.backtest import backtest_spec, run_backtest
    from scaler.inputs import inputs_from_update

    rng = random.Random(3)
    n, step = 700, 300.0
    ts = [1_400_000_100.0 + step * i for i in range(n)]
    load = [max(0.0, round(200 + 150 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 15)
                           + (400 if 500 <= i < 505 else 0))) for i in range(n)]
    cap = 25.0
    bt = run_backtest(ts, load, cap, 3, 1, 200, name="web")

    spec = backtest_spec(cap, 3, step, 1, 200, "web")
    cluster = SimulatedCluster(spec.lead_time_seconds)
    cluster.add_target(spec.key, max(1, min(200, math.ceil(load[0] / cap - 1e-9))))
    r = Reconciler(cluster, [spec])
    loop = ControllerLoop(Settings(), r)
    loop.track_partitions([0])
    model = make_series_model(step, horizon=6)
    live = []
    for t, y in enumerate(load):
        u = model.update(y, t=ts[t])
        fc, obs, _ = inputs_from_update(model, "web", ts[t], step, y, u)
        loop._handle(records.dumps(records.forecast_to_json(fc, obs.value, obs.anomalous, u.score)))
        d = r.last[spec.key]
        live.append((d.desired, d.reason.value))
    assert live == list(zip(bt.predictive.desired, bt.recorded.reasons, strict=True))
    reasons = {reason for _, reason in live}
    assert "ColdForecast" in reasons and len(reasons) >= 3, reasons


def test_a_restarted_controller_rebuilds_what_it_learnt_from_the_topic(broker, prefix):
    """Kubernetes mode reads new forecasts only; on start it replays the retained ones
    to rebuild the adaptive policy and the comparison, without acting on them."""
    import asyncio
    import threading

    from streams.admin import ensure_topics
    from streams.topics import Topics
    from tests.conftest import send_raw

    settings = Settings(broker=broker, topic_prefix=prefix, partitions=1)
    topics = Topics.from_settings(settings)
    ensure_topics(broker, topics.all(), 1)
    history = [message("a/rps", 60.0 * i, 300 + 600 * (i % 10 >= 7)) for i in range(40)]
    # one batch each: the embedded broker reports a topic's end offset as the first offset
    # of its newest batch + 1, which would hide the rest of one big batch from the replay
    for m in history:
        send_raw(broker, topics.forecasts, [(b"a/rps", m)])

    cluster = SimulatedCluster(120)
    r = Reconciler(cluster, [spec("a")])
    loop = ControllerLoop(settings, r, from_beginning=False)
    thread = threading.Thread(target=lambda: asyncio.run(loop.run()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while loop.replayed < len(history):
            assert time.monotonic() < deadline, f"replayed {loop.replayed} of {len(history)}"
            time.sleep(0.05)
        state = r.states["default/a"]
        assert state.adaptive is not None and state.adaptive.last_ts == 60.0 * 39
        assert "default/a" not in r.last, "history is learnt from, never acted on"
        send_raw(broker, topics.forecasts, [(b"a/rps", message("a/rps", 60.0 * 40, 300))])
        while "default/a" not in r.last:
            assert time.monotonic() < deadline, "the live forecast was not decided on"
            time.sleep(0.05)
        d = r.last["default/a"]
        assert d.vs_hpa_total is not None and d.vs_hpa_total.window_seconds == 41 * 60.0
    finally:
        loop.stop()
        thread.join(timeout=10)
