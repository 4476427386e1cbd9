"""Backtest predictive scaling against the equal-cost reactive HPA on every real trace.

``make bench-backtest`` / ``python benchmarks/backtest.py [TRACES_DIR]``: for each
``*.csv`` in ``../shared/data/traces/`` (relative to the repository), capacity
per replica ``C`` = the trace's 99th-percentile load / 20, lead 3 steps, replicas
in [1, 200], through ``scaler.backtest.run_backtest`` (the live model, policy,
Reconciler and SimulatedCluster; the HPA is the policy's own shadow sweep).
Without the shared traces it runs on two synthetic traces generated here (a
daily cycle, and sparse bursts), so it works from the repository alone.

It prints the table at the shipped settings, then the **leave-one-trace-out**
figure: the settings chosen by looking at these results (the default of
``spec.budgetUtilization``, the adaptive policy's memory and switching margin,
see :data:`GRID`) are, for each trace, chosen on the *other* traces (fewest
traces above 1.0x the equal-cost HPA or over the HPA-at-40 % budget, then the
lowest geometric mean) and scored on the one left out. Then the JSON of every
summary.

``python benchmarks/backtest.py --phase [TRACES_DIR]``: the same protocol for the
forecaster's ``phase_alpha`` (:data:`detectors.forecasting.PHASE_ALPHA`, the
smoothing of the members' errors per phase of the cycle; 0 is off, the forecaster
before it), at the shipped policy settings: each candidate's table (unserved vs
the HPA and MASE per trace), then per trace the held-out figure (the candidate
chosen on the other traces) beside the in-sample one and the figure with it off.

``python benchmarks/backtest.py --rings [TRACES_DIR]``: the same for the length of the
forecaster's conformal rings (:data:`detectors.forecasting.TAIL_ERRORS`, the errors beyond
each bound of the band, :func:`detectors.conformal.ring_length`; ``None`` is the rings before
it, 256 errors pooled and 128 per group), with the coverage of the upper bound and of the band
beside each figure: shorter rings for every ring, for the rings per group only, or for the
pooled ring only.
``--bins``: the same for the most values a seasonal profile keeps
(:data:`detectors.forecasting.MAX_BINS`).

Columns: unserved load vs the HPA at equal replica-hours (goal <= 1 on every
trace, geometric mean <= 0.30, ratios floored at 0.02), predictive and
equal-cost HPA unserved fractions, replica-hours vs the HPA at 100 % and at 40 %
(> 1 fails: over budget) and vs the oracle, MASE at the lead time, empirical
and nominal coverage of the forecast's upper bound at the lead time, the share
of steps where the provisioned count covered the lead window's peak load, and
the contender that acted longest.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import detectors.forecasting  # noqa: E402
import scaler.adaptive  # noqa: E402
from scaler.backtest import read_trace, run_backtest  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "data" / "traces"
LEAD_STEPS = 3
RATIO_FLOOR = 0.02
#: the settings chosen by looking at results, and the values tried for each
GRID: dict[str, tuple[float, ...]] = {
    "budget_utilization": (0.5, 0.6, 0.7),
    "MEMORY_SECONDS": (3 * 86_400.0, 10 * 86_400.0),
    "SWITCH_MARGIN": (0.2, 0.5),
}
#: ``--phase``: the values of the forecaster's ``phase_alpha`` tried (0: off)
PHASE_GRID = (0.0, 0.1, 0.2, 0.35, 0.5)
#: ``--rings``: the values of the forecaster's ``TAIL_ERRORS`` tried, (pooled ring, rings per group):
#: the errors beyond each bound, :func:`detectors.conformal.ring_length` (4, 5, 6, 8, 10, 13: rings
#: of 39, 49, 59, 79, 99, 129 errors at 80 % coverage; None: the ring's length before it, 256
#: pooled and 128 per group)
RINGS_GRID: tuple[tuple[int | None, int | None], ...] = (
    (None, None), (4, 4), (5, 5), (8, 8), (13, 13), (None, 6), (None, 8), (None, 10),
    (4, None), (5, None), (8, None), (13, None))
#: ``--bins``: the values of the forecaster's ``MAX_BINS`` tried (a week of 5, 7.5, 10, 15 minutes;
#: 2016: before it)
BINS_GRID = (2016, 1344, 1008, 672)
#: what ships (scaler.spec / scaler.adaptive defaults)
SHIPPED = {
    "budget_utilization": 0.6,
    "MEMORY_SECONDS": scaler.adaptive.MEMORY_SECONDS,
    "SWITCH_MARGIN": scaler.adaptive.SWITCH_MARGIN,
}


def p99(values: list[float]) -> float:
    s = sorted(values)
    pos = 0.99 * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


def synthetic() -> dict[str, tuple[list[float], list[float]]]:
    """Two generated traces (5-minute steps, 10 days): a noisy daily cycle, sparse bursts."""
    rng = random.Random(7)
    n, step = 2880, 300.0
    ts = [1.7e9 + step * i for i in range(n)]
    daily = [max(0.0, 200 + 150 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 15))
             for i in range(n)]
    bursts = [float(rng.choice([0, 0, 0, 1, 2]) + (80 if rng.random() < 0.01 else 0))
              for _ in range(n)]
    return {"synthetic_daily_5min": (ts, daily), "synthetic_bursts_5min": (ts, bursts)}


def load_traces(folder: Path) -> dict[str, tuple[list[float], list[float]]]:
    traces = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not traces:
        print(f"bench-backtest: no traces in {folder} (../shared/data/traces is not here); "
              "running on two synthetic traces instead")
        return synthetic()
    out = {}
    for path in traces:
        ts, load, _ = read_trace(str(path))
        out[path.stem] = (ts, load)
    return out


def run_one(args: tuple[str, list[float], list[float], dict[str, float]]) -> dict[str, Any]:
    name, ts, load, setting = args
    scaler.adaptive.MEMORY_SECONDS = setting["MEMORY_SECONDS"]
    scaler.adaptive.SWITCH_MARGIN = setting["SWITCH_MARGIN"]
    for const in ("PHASE_ALPHA", "TAIL_ERRORS", "MAX_BINS"):
        if const in setting:
            setattr(detectors.forecasting, const, setting[const])
    t0 = time.perf_counter()
    bt = run_backtest(ts, load, p99(load) / 20.0, lead_steps=LEAD_STEPS, name=name,
                      budget_utilization=setting["budget_utilization"])
    s = bt.summary
    s["seconds"] = round(time.perf_counter() - t0, 2)
    s["setting"] = setting
    return s


def ok(s: dict[str, Any]) -> bool:
    return s["unserved_vs_hpa_equal_cost"] <= 1.0 and not s["over_budget"]


def geo(ratios: list[float]) -> float:
    return math.exp(sum(math.log(max(RATIO_FLOOR, r)) for r in ratios) / len(ratios))


def objective(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """The least excess above 1.0x the equal-cost HPA (a trace over the HPA-at-40 % budget
    counts 1), then the lowest geometric mean."""
    excess = sum(max(0.0, min(s["unserved_vs_hpa_equal_cost"], 2.0) - 1.0) + s["over_budget"]
                 for s in rows)
    return (round(excess, 6), geo([s["unserved_vs_hpa_equal_cost"] for s in rows]))


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'trace':32} {'unserved/HPA@cost':>17} {'pred unsrv':>10} {'HPA@cost':>9} "
        f"{'RH/HPA100':>9} {'RH/HPA40':>8} {'RH/oracle':>9} {'MASE':>6} {'cov up/nominal':>14} "
        f"{'prov':>5} {'ok':>3}  acting longest"
    )
    print(head)
    print("-" * len(head))
    for s in rows:
        cov = s["coverage"]
        acting = max(s["acting"].items(), key=lambda kv: kv[1])
        mase = s["mase"] if s["mase"] is not None else float("nan")
        print(
            f"{s['input']:32} {s['unserved_vs_hpa_equal_cost']:17.3f} "
            f"{s['predictive']['unserved_fraction']:10.4%} "
            f"{s['hpa_equal_cost_unserved_fraction']:9.4%} "
            f"{s['replica_hours_vs_hpa']:9.3f} "
            f"{s['predictive']['replica_hours'] / s['hpa_curve'][0]['replica_hours']:8.3f} "
            f"{s['replica_hours_vs_oracle']:9.3f} "
            f"{mase:6.3f} {cov['empirical_upper'] or 0:7.3f}/{cov['nominal_upper']:.3f} "
            f"{cov['provisioned_empirical'] or 0:5.3f} "
            f"{'yes' if ok(s) else 'NO':>3}  {acting[0]} ({acting[1] / s['rows']:.0%})"
        )
    print("-" * len(head))


def run_all(traces: dict[str, tuple[list[float], list[float]]],
            settings: list[dict[str, float]]) -> dict[tuple[int, str], dict[str, Any]]:
    """Every trace at every setting: (setting's index, trace) -> summary."""
    names = sorted(traces)
    jobs = [(n, *traces[n], st) for st in settings for n in names]
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        results = list(pool.map(run_one, jobs))
    return {(i // len(names), s["input"]): s for i, s in enumerate(results)}


def held_out(by: dict[tuple[int, str], dict[str, Any]], n_settings: int,
             names: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """Per trace: the setting chosen on the other traces (by :func:`objective`) and its summary."""
    out = []
    for n in names:
        others = [m for m in names if m != n]
        best = min(range(n_settings), key=lambda i: objective([by[(i, m)] for m in others]))
        out.append((best, by[(best, n)]))
    return out


#: the forecaster settings with a leave-one-trace-out mode: flag -> (module constant, values tried,
#: the value that is "off" / the forecaster before it)
FORECASTER_GRIDS: dict[str, tuple[str, tuple[Any, ...], Any]] = {
    "--phase": ("PHASE_ALPHA", PHASE_GRID, 0.0),
    "--rings": ("TAIL_ERRORS", RINGS_GRID, (None, None)),
    "--bins": ("MAX_BINS", BINS_GRID, 2016),
}


def forecaster_loo(traces: dict[str, tuple[list[float], list[float]]], flag: str) -> int:
    """``--phase`` / ``--rings``: leave-one-trace-out choice of a forecaster setting
    (:data:`FORECASTER_GRIDS`), at the shipped policy settings."""
    const, grid, off_value = FORECASTER_GRIDS[flag]
    names = sorted(traces)
    settings = [dict(SHIPPED, **{const: a}) for a in grid]
    t0 = time.perf_counter()
    by = run_all(traces, settings)
    for i, a in enumerate(grid):
        rows = [by[(i, n)] for n in names]
        print(f"\n{const} {a}{' (off / before)' if a == off_value else ''}: excess over 1.0, "
              f"geometric mean {objective(rows)}, {coverage_line(rows)}")
        print_table(rows)
    off = grid.index(off_value)
    shipped = grid.index(getattr(detectors.forecasting, const))
    best_all = min(range(len(settings)), key=lambda i: objective([by[(i, m)] for m in names]))
    print(f"\nchosen on all traces: {const} {grid[best_all]}; ships {grid[shipped]}")
    print("leave-one-trace-out (unserved vs the equal-cost HPA / MASE at the lead time / coverage "
          "of the upper bound, nominal 0.9, and of the band, nominal 0.8):")
    print(f"  {'trace':32} {'off / before':>27} {'in-sample (ships)':>27} {'held-out':>27}  chosen")
    loo = held_out(by, len(settings), names)
    for n, (best, s) in zip(names, loo, strict=True):
        cells = [by[(off, n)], by[(shipped, n)], s]
        print(f"  {n:32} " + " ".join(cell(c) for c in cells) + f"  {grid[best]}")
    for label, rows in ((f"off / before ({off_value})", [by[(off, n)] for n in names]),
                        (f"in-sample (ships {grid[shipped]})", [by[(shipped, n)] for n in names]),
                        ("held-out", [s for _, s in loo])):
        print(f"  {label:32} excess over 1.0, geometric mean {objective(rows)}; {coverage_line(rows)}")
    print(f"({len(settings) * len(names)} backtests in {time.perf_counter() - t0:.0f} s)")
    return 0


def cell(s: dict[str, Any]) -> str:
    cov = s["coverage"]
    return (f"{s['unserved_vs_hpa_equal_cost']:7.3f}/{s['mase'] or 0:5.3f}/"
            f"{cov['empirical_upper'] or 0:5.3f}/{cov['empirical_band'] or 0:5.3f}")


def coverage_line(rows: list[dict[str, Any]]) -> str:
    """Mean MASE and mean empirical coverage of the upper bound and of the band over ``rows``."""
    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)
    return (f"mean MASE {mean([s['mase'] or 0.0 for s in rows]):.4f}, mean coverage upper "
            f"{mean([s['coverage']['empirical_upper'] or 0.0 for s in rows]):.4f} band "
            f"{mean([s['coverage']['empirical_band'] or 0.0 for s in rows]):.4f}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mode = next((a for a in argv if a in FORECASTER_GRIDS), None)
    argv = [a for a in argv if a not in FORECASTER_GRIDS]
    folder = Path(argv[0]) if argv else DEFAULT_DIR
    traces = load_traces(folder)
    if mode is not None:
        return forecaster_loo(traces, mode)
    names = sorted(traces)
    keys = list(GRID)
    settings = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*GRID.values())]
    if SHIPPED not in settings:
        settings.append(dict(SHIPPED))
    jobs = [(n, *traces[n], st) for st in settings for n in names]
    t0 = time.perf_counter()
    by = run_all(traces, settings)

    shipped = settings.index(SHIPPED)
    rows = [by[(shipped, n)] for n in names]
    print(f"shipped settings: {SHIPPED}")
    print_table(rows)
    g = objective(rows)[1]
    fails = sum(not ok(s) for s in rows)
    worst = max(rows, key=lambda s: s["unserved_vs_hpa_equal_cost"])
    print(f"in-sample: geometric mean {g:.3f} (goal <= 0.30), worst {worst['input']} "
          f"{worst['unserved_vs_hpa_equal_cost']:.3f}, {fails} trace(s) above 1.0 or over budget")
    best_all = min(range(len(settings)), key=lambda i: objective([by[(i, m)] for m in names]))
    print(f"chosen on all traces: {settings[best_all]}"
          f"{' (= shipped)' if settings[best_all] == SHIPPED else ' (NOT what ships)'}")
    for i, st in enumerate(settings):
        o = objective([by[(i, m)] for m in names])
        print(f"  {st}: excess over 1.0 {o[0]:.3f}, geometric mean {o[1]:.3f}")

    print("\nleave-one-trace-out: settings chosen on the other traces, scored on this one")
    loo = []
    for n, (best, s) in zip(names, held_out(by, len(settings), names), strict=True):
        loo.append(s)
        print(f"  {n:32} {s['unserved_vs_hpa_equal_cost']:7.3f} "
              f"{'OVER BUDGET ' if s['over_budget'] else ''}chosen {settings[best]}")
    lg = objective(loo)[1]
    lf = sum(not ok(s) for s in loo)
    lw = max(loo, key=lambda s: s["unserved_vs_hpa_equal_cost"])
    print(f"leave-one-out: geometric mean {lg:.3f} (goal <= 0.30), worst {lw['input']} "
          f"{lw['unserved_vs_hpa_equal_cost']:.3f}, {lf} trace(s) above 1.0 or over budget")
    print(f"({len(jobs)} backtests in {time.perf_counter() - t0:.0f} s)")
    print(json.dumps({
        "shipped": SHIPPED,
        "geometric_mean_unserved_vs_hpa": g,
        "leave_one_out_geometric_mean": lg,
        "leave_one_out": {s["input"]: s["unserved_vs_hpa_equal_cost"] for s in loo},
        "traces": {s["input"]: s for s in rows},
    }, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
