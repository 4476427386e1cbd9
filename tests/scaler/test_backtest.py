"""The backtest simulator against hand-computed numbers, its summary, CLI and causality."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest

from scaler.backtest import (
    Run,
    equal_cost_unserved,
    main,
    mase,
    oracle_policy,
    run_backtest,
    simulate,
)
from scaler.schedule import scheduled_floor
from scaler.shadow import Contender
from scaler.spec import load_schedules

C = 100.0
K = 3
STEP_LOAD = [100, 100, 100, 400, 400, 400, 400, 400]
SPIKE_LOAD = [100, 100, 900, 100, 100, 100, 100, 100, 100, 100]
RAMP_LOAD = [100, 200, 300, 400, 500, 600]


def hpa_run(load: list[int], target: float) -> Run:
    """The shadow HPA (the one the backtest and the controller compare with), step by step."""
    c, r, before = Contender("hpa", target, None), Run(), 0.0
    for i, y in enumerate(load):
        c.step(60.0 * i, y, 60.0, C, (K - 1) * 60.0, 1, 10, 300.0, None)
        r.unserved.append((c.total.unserved - before) / 60.0)
        before = c.total.unserved
        r.cost.append(c.desired)
    return r


def run(load: list[int], policy_name: str, target: float = 1.0) -> Run:
    if policy_name == "oracle":
        return simulate(load, C, K, 1, 10, oracle_policy(load, C, K, 1, 10))
    return hpa_run(load, target)


# (trace, policy, HPA target, unserved per step, cost per step)
HAND = [
    ("step", STEP_LOAD, "oracle", 1.0, [0] * 8, [4] * 8),
    ("step", STEP_LOAD, "hpa", 1.0, [0, 0, 0, 300, 300, 300, 0, 0], [1, 1, 1, 4, 4, 4, 4, 4]),
    # at 50 %: 2 replicas from t0 (ready at t3), 8 from t3 (ready at t6)
    ("step", STEP_LOAD, "hpa", 0.5, [0, 0, 0, 200, 200, 200, 0, 0], [2, 2, 2, 8, 8, 8, 8, 8]),
    # the oracle cannot serve a spike 2 steps away, then drops the starting pods
    ("spike", SPIKE_LOAD, "oracle", 1.0, [0, 0, 800] + [0] * 7, [9, 9] + [1] * 8),
    # the HPA: in-band recommendations keep 9 while ready is 1 and load 100; the
    # 5-step window holds 9 until the last raw 9 (t4) has left it (t9)
    ("spike", SPIKE_LOAD, "hpa", 1.0, [0, 0, 800] + [0] * 7, [1, 1] + [9] * 7 + [1]),
    ("ramp", RAMP_LOAD, "oracle", 1.0, [0, 100, 200, 0, 0, 0], [4, 5, 6, 6, 6, 6]),
    ("ramp", RAMP_LOAD, "hpa", 1.0, [0, 100, 200, 300, 300, 300], [1, 2, 3, 4, 5, 6]),
]


@pytest.mark.parametrize(
    "trace,load,policy,target,unserved,cost",
    HAND,
    ids=[f"{h[0]}-{h[2]}-{h[3]}" for h in HAND],
)
def test_simulator_matches_hand_computation(trace, load, policy, target, unserved, cost) -> None:
    r = run(load, policy, target)
    assert r.unserved == [float(u) for u in unserved]
    assert r.cost == cost
    s = r.summary(load, 60.0)
    assert s["unserved_fraction"] == pytest.approx(sum(unserved) / sum(load))
    assert s["underprovisioned_fraction"] == pytest.approx(sum(u > 0 for u in unserved) / len(load))
    assert s["replica_hours"] == pytest.approx(sum(cost) / 60.0)


def test_scale_down_cancels_newest_starting_pods_first() -> None:
    load = [100] * 8
    plan = iter([5, 8, 6, 2, 2, 2, 2, 2])  # +4 at t0, +3 at t1, -2 at t2 (cancel from t1's), -4 at t3
    r = simulate(load, C, K, 1, 10, lambda t, ready, prov: next(plan))
    # t0's 4 pods are ready at t3; t1's 3 pods (one left after t2) would be ready at t4,
    # but t3 cancels that one and removes 3 of the 5 ready pods
    assert r.ready == [1, 1, 1, 5, 2, 2, 2, 2]
    assert r.cost == [5, 8, 6, 2, 2, 2, 2, 2]


def ts_for(load: list[int]) -> list[float]:
    return [1_700_000_040.0 + 60.0 * i for i in range(len(load))]


# the forecaster is cold on traces this short: the policy provisions only for the
# observed load, and never scales down
PREDICTIVE_COLD = [
    ("step", STEP_LOAD, [0, 0, 0, 300, 300, 300, 0, 0], [1, 1, 1, 4, 4, 4, 4, 4]),
    ("spike", SPIKE_LOAD, [0, 0, 800] + [0] * 7, [1, 1] + [9] * 8),
    ("ramp", RAMP_LOAD, [0, 100, 200, 300, 300, 300], [1, 2, 3, 4, 5, 6]),
]


@pytest.mark.parametrize("name,load,unserved,cost", PREDICTIVE_COLD, ids=[p[0] for p in PREDICTIVE_COLD])
def test_predictive_while_cold_is_the_reactive_floor(name, load, unserved, cost) -> None:
    bt = run_backtest(ts_for(load), load, C, K, 1, 10)
    assert not any(bt.recorded.warm)
    assert bt.predictive.unserved == [float(u) for u in unserved]
    assert bt.predictive.cost == cost
    assert set(bt.recorded.reasons) <= {"ColdForecast", "ReactiveFloor", "AnomalousSeries"}


def test_equal_cost_interpolation() -> None:
    curve = [
        {"target": 0.4, "replica_hours": 40.0, "unserved_fraction": 0.01},
        {"target": 0.7, "replica_hours": 25.0, "unserved_fraction": 0.04},
        {"target": 1.0, "replica_hours": 20.0, "unserved_fraction": 0.10},
    ]
    assert equal_cost_unserved(curve, 22.5) == (pytest.approx(0.07), False)
    assert equal_cost_unserved(curve, 30.0) == (pytest.approx(0.03), False)
    assert equal_cost_unserved(curve, 10.0) == (0.10, False)  # below the cheapest point
    assert equal_cost_unserved(curve, 40.0) == (0.01, False)
    assert equal_cost_unserved(curve, 41.0) == (0.01, True)  # dearer than the HPA at 40 %


def test_mase_by_hand() -> None:
    y = [10.0, 20.0, 10.0, 20.0, 12.0, 24.0]
    m, k = 2, 1
    # forecasts made at t for t + 1; targets y[2..5] (t = 1..4, so that y[t+k-m] exists)
    yhat = [[0.0], [11.0], [21.0], [11.0], [21.0], [0.0]]
    # forecast errors 1, 1, 1, 3; seasonal-naive errors |10-10|, |20-20|, |12-10|, |24-20|
    assert mase(y, yhat, k, m) == pytest.approx(6 / 6)
    assert mase(y, [[v[0] + 3.0] for v in yhat], k, m) == pytest.approx((4 + 4 + 2 + 0) / 6)
    assert mase([5.0] * 6, yhat, k, m) is None  # seasonal naive is perfect: undefined


def synthetic_trace(n: int, seed: int = 7) -> tuple[list[float], list[float]]:
    """5-minute steps, a daily cycle, noise and one burst."""
    rng = random.Random(seed)
    ts = [1_400_000_100.0 + 300.0 * i for i in range(n)]
    load = []
    for i in range(n):
        v = 200 + 150 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 15)
        if 500 <= i < 510:
            v *= 3
        load.append(max(0.0, round(v)))
    return ts, load


def write_csv(path: Path, ts: list[float], load: list[float]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        for t, v in zip(ts, load, strict=True):
            w.writerow([f"{t:.0f}", f"{v:g}"])


def read_decisions(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_causality_prefix_gives_the_same_decisions(tmp_path: Path) -> None:
    ts, load = synthetic_trace(900)
    cut = int(0.6 * len(load))
    write_csv(tmp_path / "full.csv", ts, load)
    write_csv(tmp_path / "head.csv", ts[:cut], load[:cut])
    for name in ("full", "head"):
        rc = main([
            "--input", str(tmp_path / f"{name}.csv"), "--capacity-per-replica", "25",
            "--decisions-out", str(tmp_path / f"{name}-dec.csv"),
            "--json", str(tmp_path / f"{name}.json"),
        ])
        assert rc == 0
    full = read_decisions(tmp_path / "full-dec.csv")
    head = read_decisions(tmp_path / "head-dec.csv")
    assert len(full) == len(load) and len(head) == cut
    assert [r["desired_replicas"] for r in full[:cut]] == [r["desired_replicas"] for r in head]
    assert list(full[0]) == ["timestamp", "load", "desired_replicas", "reason"]
    assert [r["reason"] for r in full[:cut]] == [r["reason"] for r in head]
    # the predictive run got warm and scaled on the forecast in that prefix
    summary = json.loads((tmp_path / "full.json").read_text())
    assert summary["reasons"].get("ForecastPeak", 0) > 0


def test_summary_fields(tmp_path: Path) -> None:
    ts, load = synthetic_trace(700)
    bt = run_backtest(ts, load, 25.0, 3, 1, 200, name="synthetic")
    s = bt.summary
    for key in ("predictive", "hpa", "oracle"):
        assert set(s[key]) == {"unserved_fraction", "underprovisioned_fraction", "replica_hours"}
    assert [c["target"] for c in s["hpa_curve"]] == [round(0.4 + 0.05 * i, 2) for i in range(13)]
    assert s["hpa"] == {k: v for k, v in s["hpa_curve"][-1].items() if k != "target"}
    assert s["oracle"]["unserved_fraction"] <= s["hpa"]["unserved_fraction"]
    assert s["mase_seasonal_lag"] == 288
    assert s["mase"] is not None and s["mase"] > 0
    cov = s["coverage"]
    assert cov["nominal_upper"] == pytest.approx((1 + cov["nominal_band"]) / 2)
    assert 0.0 <= cov["empirical_upper"] <= 1.0
    assert 0.5 < cov["provisioned_empirical"] <= 1.0
    eq, over = equal_cost_unserved(s["hpa_curve"], s["predictive"]["replica_hours"])
    assert s["hpa_equal_cost_unserved_fraction"] == eq and s["over_budget"] == over
    json.dumps(s)  # serialisable


def test_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,load\n1,2\n")
    assert main(["--input", str(bad), "--capacity-per-replica", "10"]) == 2
    assert "timestamp,value" in capsys.readouterr().err
    assert main(["--input", str(bad), "--capacity-per-replica", "0"]) == 2
    assert main(["--input", str(tmp_path / "missing.csv"), "--capacity-per-replica", "10"]) == 2
    assert main(["--input", str(bad), "--capacity-per-replica", "10",
                 "--budget-utilization", "0.2"]) == 2


def test_cli_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    ts, load = synthetic_trace(400)
    write_csv(tmp_path / "t.csv", ts, load)
    out = tmp_path / "plot.png"
    assert main(["--input", str(tmp_path / "t.csv"), "--capacity-per-replica", "25",
                 "--json", str(tmp_path / "s.json"), "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_schedule_file_raises_the_floor_for_all_three(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A nightly batch window (03:00-04:00 UTC, when the synthetic load is low) at 15
    replicas: the predictive run, the HPA sweep and the oracle all keep the floor."""
    ts, load = synthetic_trace(700)
    write_csv(tmp_path / "t.csv", ts, load)
    sched = tmp_path / "batch.yaml"
    sched.write_text("schedules:\n- {name: batch, cron: '0 3 * * *', durationSeconds: 3600,"
                     " minReplicas: 15}\n")
    args = ["--input", str(tmp_path / "t.csv"), "--capacity-per-replica", "25"]
    assert main(args + ["--json", str(tmp_path / "plain.json")]) == 0
    assert main(args + ["--schedule", str(sched), "--json", str(tmp_path / "s.json"),
                        "--decisions-out", str(tmp_path / "dec.csv")]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    s = json.loads((tmp_path / "s.json").read_text())
    (sch,) = load_schedules(sched)
    # decisions at the end of each step (ts + 300 s) in 03:00-04:00: 12 a night, two nights and
    # the first 4 of a third (the trace runs 58 h from 16:55)
    in_force = [scheduled_floor((sch,), t + 300.0) is not None for t in ts]
    assert s["scheduled_steps"] == sum(in_force) == 28 and plain["scheduled_steps"] == 0
    rows = read_decisions(tmp_path / "dec.csv")
    assert all(int(r["desired_replicas"]) >= 15 for r, f in zip(rows, in_force, strict=True) if f)
    assert s["reasons"].get("Scheduled", 0) > 0 and "Scheduled" not in plain["reasons"]
    for run in ("predictive", "hpa", "oracle"):
        assert s[run]["replica_hours"] > plain[run]["replica_hours"], run
    bt = run_backtest(ts, load, 25.0, schedules=(sch,))
    assert all(c >= 15 for c, f in zip(bt.oracle.cost, in_force, strict=True) if f)
    # a floor above --max-replicas, or a bad file, is the user's to fix: exit 2
    assert main(args + ["--schedule", str(sched), "--max-replicas", "10"]) == 2
    assert "minReplicas (15) > --max-replicas (10)" in capsys.readouterr().err
    sched.write_text("- {name: batch, cron: '0 3 * *', durationSeconds: 60, minReplicas: 1}\n")
    assert main(args + ["--schedule", str(sched)]) == 2
    assert "batch.yaml: schedules[0].cron: '0 3 * *' has 4 fields" in capsys.readouterr().err
