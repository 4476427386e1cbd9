"""The controller loop's event-time handling, without a broker (pure parts)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import orjson
import pytest

from detectors.forecast import Forecast, ForecastPoint
from scaler.reconcile import Reconciler
from scaler.simulated import SimulatedCluster
from scaler.spec import ScalerSpec, TargetRef
from streams import records
from streams.controller import ControllerLoop
from streams.settings import Settings
from tests.conftest import ROOT, read_topic, send_raw

#: seconds between two polls of a condition (each wait has its own deadline)
POLL_SECONDS = 0.05


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
            time.sleep(POLL_SECONDS)  # between polls, under the deadline
        state = r.states["default/a"]
        assert state.adaptive is not None and state.adaptive.last_ts == 60.0 * 39
        assert "default/a" not in r.last, "history is learnt from, never acted on"
        send_raw(broker, topics.forecasts, [(b"a/rps", message("a/rps", 60.0 * 40, 300))])
        while "default/a" not in r.last:
            assert time.monotonic() < deadline, "the live forecast was not decided on"
            time.sleep(POLL_SECONDS)  # between polls, under the deadline
        d = r.last["default/a"]
        assert d.vs_hpa_total is not None and d.vs_hpa_total.window_seconds == 41 * 60.0
    finally:
        loop.stop()
        thread.join(timeout=10)
def poisoned(series: str, issued: float, at: float | None = None, **changes: object) -> bytes:
    """A forecast message as a careless or hostile producer would write it (``at``: a forged time)."""
    body = orjson.loads(message(series, issued if at is None else at, 650))
    for k, v in changes.items():
        if k in ("yhat", "lower", "upper"):
            for p in body["points"]:
                p[k] = v
        else:
            body[k] = v
    return orjson.dumps(body)


BAD_FORECASTS = {
    "nan_strings": (dict(upper="NaN", yhat="NaN", observed="NaN"), "bad_type"),
    "infinity_strings": (dict(upper="Infinity", lower="-Infinity"), "bad_type"),
    "huge_bounds": (dict(upper=1e308, yhat=1e308, lower=-1e308, observed=1e308), "bad_value"),
    "unordered_bounds": (dict(lower=900.0), "bad_value"),
    "year_2090": (dict(at=3_786_912_000.0), "future"),
    "an_hour_ahead": (dict(at=3600.0 * 3), "future"),
}


def _loop_at_seven() -> tuple[ControllerLoop, Reconciler, SimulatedCluster]:
    cluster = SimulatedCluster(0)
    r = Reconciler(cluster, [spec("a")])
    loop = ControllerLoop(Settings(), r, clock=lambda: 1e9)
    for i in range(5):
        loop._handle(message("a/rps", 60.0 * i, 650), partition=0, offset=i)
    assert r.last["default/a"].desired == 7 and cluster.provisioned("default/a") == 7
    return loop, r, cluster


@pytest.mark.parametrize("case", sorted(BAD_FORECASTS))
def test_a_bad_forecast_is_dead_lettered_and_never_moves_the_target(case):
    changes, reason = BAD_FORECASTS[case]
    loop, r, cluster = _loop_at_seven()
    before = r.last["default/a"]
    loop._handle(poisoned("a/rps", 300.0, **changes), partition=0, offset=99)
    assert r.last["default/a"] == before, "a refused forecast decided nothing"
    assert cluster.provisioned("default/a") == 7
    ((_, body),) = loop._dead
    dl = orjson.loads(body)
    assert dl["reason"] == reason and dl["offset"] == 99, dl
    assert loop.metrics.dead_letters.labels(loop.topics.forecasts, reason)._value.get() == 1
    # the next good forecast is decided at its own time: the target's clock did not move
    loop._handle(message("a/rps", 300.0, 650), partition=0, offset=100)
    assert r.last["default/a"].ts == 360.0 and r.last["default/a"].desired == 7


def test_a_batch_of_forecasts_is_decided_on_and_only_its_bad_ones_are_dead_lettered():
    cluster = SimulatedCluster(0)
    r = Reconciler(cluster, [spec("a"), spec("b")])
    loop = ControllerLoop(Settings(), r, clock=lambda: 1e9)
    for i in range(5):  # the worker's format: many series per message (streams/records.py)
        batch = b"[" + message("a/rps", 60.0 * i, 650) + b"," + message("b/rps", 60.0 * i, 250) + b"]"
        loop._handle(batch, partition=0, offset=i)
    assert (r.last["default/a"].desired, r.last["default/b"].desired) == (7, 3)
    assert loop.accepted == 10 and not loop._dead
    bad = poisoned("a/rps", 300.0, **BAD_FORECASTS["year_2090"][0])
    loop._handle(b"[" + bad + b"," + message("b/rps", 300.0, 450) + b"]", partition=0, offset=5)
    assert r.last["default/b"].ts == 360.0 and r.last["default/b"].desired > 3, "the good one is decided on"
    assert r.last["default/a"].desired == 7 and cluster.provisioned("default/a") == 7, "the refused one moved nothing"
    ((_, body),) = loop._dead
    dl = records.parse_dead_letter(body)
    assert (dl.reason, dl.count, dl.offset) == ("future", 1, 5)
    assert orjson.loads(dl.raw) == [orjson.loads(bad)], "the dead letter holds only the refused forecast"
    assert loop.metrics.dead_letters.labels(loop.topics.forecasts, "future")._value.get() == 1


def test_a_jump_confirmed_by_a_second_forecast_is_accepted():
    loop, r, _ = _loop_at_seven()
    loop._handle(message("a/rps", 7200.0, 650), partition=0)  # the series resumes after two hours
    assert r.last["default/a"].ts == 300.0 and [orjson.loads(b)["reason"] for _, b in loop._dead] == ["future"]
    loop._handle(message("a/rps", 7260.0, 650), partition=0)
    assert r.last["default/a"].ts == 7320.0


def test_a_record_whose_handling_raises_is_isolated():
    loop, r, _ = _loop_at_seven()

    class Broken(Exception):
        pass

    def explode(fm, now):
        raise Broken("actuator down")

    loop.on_forecast = explode
    loop._handle(message("a/rps", 300.0, 650), partition=0, offset=7)
    (dl,) = [orjson.loads(b) for _, b in loop._dead]
    assert dl["reason"] == "processing_error" and "actuator down" in dl["error"]
    loop.on_forecast = None
    loop._handle(message("a/rps", 360.0, 650), partition=0, offset=8)
    assert r.last["default/a"].ts == 420.0


T0 = 1_700_000_000.0

SCALERS = """
apiVersion: foresight.dev/v1alpha1
kind: PredictiveScaler
metadata: {name: a}
spec:
  scaleTargetRef: {kind: Deployment, name: a}
  series: a/rps
  capacityPerReplica: 100
  minReplicas: 2
  maxReplicas: 50
  leadTimeSeconds: 120
"""


@pytest.mark.integration
def test_poisoned_forecasts_on_the_real_broker_never_scale_down_or_crash_the_controller(broker, prefix, tmp_path):
    from streams.admin import ensure_topics

    ensure_topics(broker, [f"{prefix}.forecasts"], 4)
    scalers = tmp_path / "scalers.yaml"
    scalers.write_text(SCALERS)
    log = tmp_path / "controller.log"
    env = {**os.environ, "FORESIGHT_BROKER": broker, "FORESIGHT_TOPIC_PREFIX": prefix,
           "FORESIGHT_STARTUP_SECONDS": "0"}
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "streams", "scaler", "--scalers", str(scalers)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
    try:
        key = b"a/rps"
        send_raw(broker, f"{prefix}.forecasts", [(key, message("a/rps", T0 + 60 * i, 650)) for i in range(5)])
        read_topic(broker, f"{prefix}.decisions", lambda ms: any(m["desired"] == 7 for m in ms))
        attacks = [
            poisoned("a/rps", T0 + 300, upper="NaN", yhat="NaN", observed="NaN"),
            poisoned("a/rps", T0 + 300, upper="Infinity", lower="-Infinity"),
            poisoned("a/rps", T0 + 300, upper=1e308, yhat=1e308, lower=-1e308, observed=1e308),
            poisoned("a/rps", T0 + 300, at=3_786_912_000.0),  # issued in 2090
            poisoned("a/rps", T0 + 300, at=T0 + 3600),  # an hour ahead
        ]
        good = [message("a/rps", T0 + 300, 650), message("a/rps", T0 + 360, 650)]
        send_raw(broker, f"{prefix}.forecasts", [(key, m) for m in attacks + good])
        decisions = read_topic(broker, f"{prefix}.decisions", lambda ms: any(m["ts"] >= T0 + 420 for m in ms))
        dead = read_topic(broker, f"{prefix}.forecasts.dlq", lambda ms: len(ms) >= len(attacks))
        assert proc.poll() is None, f"the controller died:\n{log.read_text()[-3000:]}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert max(m["ts"] for m in decisions) == T0 + 420, "no forecast moved the target's clock"
    first7 = next(i for i, m in enumerate(decisions) if m["desired"] == 7)
    assert all(m["desired"] >= 7 for m in decisions[first7:]), [(m["desired"], m["reason"]) for m in decisions]
    assert sorted(m["reason"] for m in dead) == ["bad_type", "bad_type", "bad_value", "future", "future"]
    assert all(m["topic"] == f"{prefix}.forecasts" for m in dead)


def test_huge_but_finite_bounds_reach_the_policy_without_overflow():
    """The parser refuses |x| > 1e15; the arithmetic behind it is bounded anyway."""
    cluster = SimulatedCluster(0)
    r = Reconciler(cluster, [spec("a")])
    pts = tuple(ForecastPoint(60.0 * i, 1e308, -1e308, 1e308) for i in range(1, 5))
    r.observe(Forecast("a/rps", 0.0, 60.0, pts, 0.8, "m", True), None)
    (d,) = r.reconcile_series("a/rps", 60.0)
    assert d.desired >= d.current and d.desired <= 50, d


_POOL: list[object] = ["NaN", "Infinity", "-Infinity", "1e400", 1e308, -1e308, 1e16, 10**400, -1, 0, 0.5,
                       True, None, "", "x" * 300, [], {}, [[[[1]]]], "\ud800", 3_786_912_000.0, 1.7e9]


def _mutations(rng: random.Random, n: int) -> Iterator[bytes]:
    base = orjson.loads(message("a/rps", 300.0, 650))
    for _ in range(n):
        body = orjson.loads(orjson.dumps(base))
        for _ in range(rng.randint(1, 3)):
            pts = body.get("points")
            inner = [p for p in pts if isinstance(p, dict) and p] if isinstance(pts, list) else []
            where = rng.choice(inner) if inner and rng.random() < 0.5 else body
            if not where:
                continue
            key = rng.choice(sorted(where))
            if rng.random() < 0.15:
                del where[key]
            else:
                where[key] = rng.choice(_POOL)
        raw = json.dumps(body).encode("utf-8", "surrogatepass")  # json writes NaN/Infinity literals too
        if rng.random() < 0.1:
            raw = raw[: rng.randint(0, len(raw))]
        if rng.random() < 0.05:
            raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        yield raw


def test_any_forecast_message_is_decided_on_or_dead_lettered_exactly_once():
    """A bounded fuzz of the controller's input: no exception, one outcome per message."""
    rng = random.Random(11)
    loop, r, cluster = _loop_at_seven()
    n = 0
    for raw in _mutations(rng, 3000):
        accepted, dead, superseded = loop.accepted, len(loop._dead), loop.superseded
        loop._handle(raw, partition=0, offset=n)
        n += 1
        outcomes = (loop.accepted - accepted) + (len(loop._dead) - dead) + (loop.superseded - superseded)
        assert outcomes == 1, raw
        del loop._pending[:], loop._dead[:]
        assert r.last["default/a"].ts <= 300.0 + 60 * 31, "no forged time beyond the jump bound"
    assert loop.bad_messages > 1000


def test_a_message_is_swept_after_all_its_forecasts_not_between_them():
    """The worker's model batch is one message with several windows of each series, series
    after series. Swept halfway, the series still to come looked quiet (the first ones had
    moved the low watermark several windows on): its target was decided ahead of its own
    forecasts, stale, and those forecasts were then all decided at that later time."""
    r = Reconciler(SimulatedCluster(0), [spec("a"), spec("b")])
    loop = ControllerLoop(Settings(), r, clock=lambda: 1e9)
    loop._handle(b"[" + message("a/rps", 0.0, 250) + b"," + message("b/rps", 0.0, 250) + b"]", partition=0)
    batch = [message(s, 60.0 * i, 250) for s in ("a/rps", "b/rps") for i in range(1, 6)]
    loop._handle(b"[" + b",".join(batch) + b"]", partition=0)
    b = [(d.ts, d.reason.value) for d in loop._pending if d.target == "default/b"]  # to be published
    assert [ts for ts, _ in b] == [60.0 * i for i in range(1, 7)], b
    assert "StaleForecast" not in {reason for _, reason in b}, b
