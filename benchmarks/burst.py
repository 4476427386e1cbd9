"""Offline reproduction of the demo's Kafka burst: how far ahead the forecast sees each burst.

``python benchmarks/burst.py [--seeds 1-8] [--cycles 6]``: the demo's ``orders`` topic rate
(:data:`streams.workload.KAFKA_PLAN`; a gentle wave around 3.5 messages/s, a burst to 12 every
hour ramping over minutes 10-15) as the worker sees it, with no broker: each 60 s window's
Poisson message count (``Workload.messages``, the demo's own draws) over 60 s, from the live
part's start (the topic has no history), learnt window by window by the worker's model
(:func:`detectors.defaults.make_series_model` at the demo's settings: 60 s windows, period 60
steps, the worker's horizon for 600 s). The decision after a window is stamped at its end
(``Reconciler.decision_time``) and sees the forecast's windows over the next
``LEAD`` = 180 s (windows starting at ``now .. now + 180``).

Per burst cycle it prints, for the rule of the summary (``streams/summary.py``: the first
scale-up decided at least 180 s before the load exceeds the capacity in place, 9 consumers
of 1 message/s):

- ``up@100%``: lead of the first decision whose forecast upper bound over the lead window
  exceeds 9 (the policy's first contender: the upper bound at 100 % utilisation);
- ``yhat@90%``: the same for the point forecast at 90 % (a peak above 8.1);
- ``ramp``: the point forecast, issued 180 s before the first window above capacity, for
  that window, over the window's true rate (1.0: the ramp forecast at its full height).

A lead of ``-`` means no decision before the load itself exceeded the capacity.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detectors.defaults import make_series_model  # noqa: E402
from streams.workload import CYCLE, HISTORY_CYCLES, KAFKA_PLAN, Workload  # noqa: E402

WINDOW = 60.0
PERIOD = int(CYCLE / WINDOW)
LEAD = 180.0
HORIZON = 12  # Settings(window_seconds=60).forecast_horizon_steps()
CAPACITY = KAFKA_PLAN.min_replicas * KAFKA_PLAN.capacity_per_replica


def rate_series(seed: int, cycles: int) -> tuple[Workload, list[tuple[float, float]]]:
    """(window start, messages/s) of the topic from the live part's start."""
    w = Workload(start=0.0, seed=seed)
    t0 = HISTORY_CYCLES * CYCLE
    out = []
    for i in range(int(cycles * CYCLE / WINDOW)):
        s = t0 + i * WINDOW
        out.append((s, sum(w.messages(s + k) for k in range(int(WINDOW))) / WINDOW))
    return w, out


def run(seed: int, cycles: int) -> list[dict[str, float | None]]:
    w, series = rate_series(seed, cycles)
    model = make_series_model(WINDOW, PERIOD, HORIZON)
    forecasts = {}  # decision time -> [(window start, yhat, upper)]
    for s, v in series:
        u = model.update(v, t=s)
        now = s + WINDOW
        forecasts[now] = [(now + WINDOW * h, iv.yhat, iv.upper)
                          for h, iv in enumerate(u.intervals) if WINDOW * h <= LEAD + 1e-6]
    values = dict(series)
    out = []
    for c in range(cycles):
        start = w.burst_start(HISTORY_CYCLES + c)
        exceed = next((s for s in sorted(values) if start - 600 <= s <= start + 900
                       and values[s] > CAPACITY), None)
        row: dict[str, float | None] = {"cycle": c + 1}
        for name, pick, limit in (("up@100%", 2, CAPACITY), ("yhat@90%", 1, 0.9 * CAPACITY)):
            first = next((now for now in sorted(forecasts) if start - 600 < now <= (exceed or 0)
                          and max(p[pick] for p in forecasts[now]) > limit), None)
            row[name] = None if exceed is None or first is None else exceed - first
        issued = forecasts.get(exceed - LEAD) if exceed is not None else None
        hit = [p[1] for p in issued or [] if abs(p[0] - exceed) < 1e-6]
        row["ramp"] = hit[0] / values[exceed] if hit else None
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1-8", help="workload seeds, a range a-b")
    ap.add_argument("--cycles", type=int, default=6)
    args = ap.parse_args(argv)
    a, _, b = args.seeds.partition("-")
    seeds = range(int(a), int(b or a) + 1)
    rows = {seed: run(seed, args.cycles) for seed in seeds}
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    print(f"{'cycle':>5} {'up@100% lead s (per seed)':>40} {'ok':>5}  {'yhat@90% ok':>11}  "
          f"{'ramp fc/true min..median':>24}")
    for c in range(args.cycles):
        leads = [rows[s][c]["up@100%"] for s in seeds]
        ok = sum(v is not None and v >= LEAD for v in leads)
        ok90 = sum((v := rows[s][c]["yhat@90%"]) is not None and v >= LEAD for s in seeds)
        ramps = [r for s in seeds if (r := rows[s][c]["ramp"]) is not None]
        ramp = f"{min(ramps):.2f}..{statistics.median(ramps):.2f}" if ramps else "-"
        print(f"{c + 1:>5} {' '.join(fmt(v, '.0f') for v in leads):>40} "
              f"{ok:>2}/{len(leads)}  {ok90:>5}/{len(leads):<4}  {ramp:>24}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
