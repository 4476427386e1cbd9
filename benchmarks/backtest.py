"""Backtest predictive scaling against the equal-cost reactive HPA on every real trace.

``make bench-backtest`` / ``python benchmarks/backtest.py [TRACES_DIR]``: for each
``*.csv`` in ``../shared/data/traces/`` (relative to the repository), capacity
per replica ``C`` = the trace's 99th-percentile load / 20, lead 3 steps, replicas
in [1, 200]. Prints one table and then the JSON of every summary plus the
geometric mean of the unserved ratios (each floored at 0.02).

Columns: unserved load vs the HPA at equal replica-hours (goal: geometric mean
<= 0.25, each <= 1), predictive and equal-cost HPA unserved fractions,
replica-hours vs the HPA at 100 % and at 40 % (> 1 fails: over budget) and vs
the oracle, MASE at the lead time (goal < 0.8), empirical/nominal coverage of
the forecast's upper bound at the lead time, and the share of steps where the
provisioned count covered the lead window's peak load.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scaler.backtest import read_trace, run_backtest  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "data" / "traces"
LEAD_STEPS = 3
RATIO_FLOOR = 0.02


def p99(values: list[float]) -> float:
    s = sorted(values)
    pos = 0.99 * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else DEFAULT_DIR
    traces = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not traces:
        print(f"bench-backtest: skipped, no traces found in {folder} (needs ../shared/data/traces)")
        return 0
    rows, summaries = [], {}
    for path in traces:
        ts, load, _ = read_trace(str(path))
        cap = p99(load) / 20.0
        t0 = time.perf_counter()
        bt = run_backtest(ts, load, cap, lead_steps=LEAD_STEPS, name=path.stem)
        s = bt.summary
        s["seconds"] = round(time.perf_counter() - t0, 2)
        summaries[path.stem] = s
        rows.append(s)
    logs = [math.log(max(RATIO_FLOOR, s["unserved_vs_hpa_equal_cost"])) for s in rows]
    geo = math.exp(sum(logs) / len(logs))
    head = (
        f"{'trace':32} {'unserved/HPA@cost':>17} {'pred unsrv':>10} {'HPA@cost':>9} "
        f"{'RH/HPA100':>9} {'RH/HPA40':>8} {'RH/oracle':>9} {'MASE':>6} {'cov up/nominal':>14} {'prov':>5} {'ok':>3}"
    )
    print(head)
    print("-" * len(head))
    for s in rows:
        ok = (
            s["unserved_vs_hpa_equal_cost"] <= 1.0
            and not s["over_budget"]
            and s["mase"] is not None
            and s["mase"] < 0.8
        )
        cov = s["coverage"]
        print(
            f"{s['input']:32} {s['unserved_vs_hpa_equal_cost']:17.3f} "
            f"{s['predictive']['unserved_fraction']:10.4%} "
            f"{s['hpa_equal_cost_unserved_fraction']:9.4%} "
            f"{s['replica_hours_vs_hpa']:9.3f} "
            f"{s['predictive']['replica_hours'] / s['hpa_curve'][0]['replica_hours']:8.3f} "
            f"{s['replica_hours_vs_oracle']:9.3f} "
            f"{s['mase']:6.3f} {cov['empirical_upper']:7.3f}/{cov['nominal_upper']:.3f} "
            f"{cov['provisioned_empirical']:5.3f} "
            f"{'yes' if ok else 'NO':>3}"
        )
    print("-" * len(head))
    print(f"geometric mean of unserved vs equal-cost HPA (floored at {RATIO_FLOOR}): {geo:.3f}"
          f"  (goal <= 0.25)")
    print(json.dumps({"geometric_mean_unserved_vs_hpa": geo, "traces": summaries}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
