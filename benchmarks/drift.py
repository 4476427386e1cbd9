"""Drift benchmark: how fast the worker's series model notices a change and recovers.

Synthetic daily-cycle series (5-minute steps, level 100, noise 3) change
regime after ten days: a level shift up or down, the cycle's amplitude doubling,
the cycle moving by a quarter of a day. For each, the worker's
:class:`~detectors.series.SeriesModel` (:func:`detectors.defaults.make_series_model`)
is run with drift handling and without it (the drift detector switched off),
and the benchmark prints, in steps:

* ``detected``: steps from the change to the update saying ``drift_started``;
* ``recovered``: steps from the change until the one-step forecast's mean
  absolute error over the last period is back, for good, within 1.5x its
  level over the period before the change (0: it never left that bound);
* ``drifting``: steps the updates said ``drifting``;
* false drifts before the change.

    python benchmarks/drift.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from collections import deque

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from detectors.defaults import make_series_model  # noqa: E402

#: (step seconds, steps per day): 5-minute and 30-minute steps
GRIDS = ((300.0, 288), (1800.0, 48))
DAYS_BEFORE, DAYS_AFTER = 15, 5


def scenario(kind: str, i: int, rng: random.Random, period: int) -> float:
    """Value at step ``i``: a daily cycle, changed after ``DAYS_BEFORE`` days."""
    after = i >= DAYS_BEFORE * period
    level, amp, phase = 100.0, 40.0, 0.0
    if after and kind == "level up":
        level = 160.0
    elif after and kind == "level down":
        level = 50.0
    elif after and kind == "amplitude x2":
        amp = 80.0
    elif after and kind == "phase +6h":
        phase = period / 4
    y = level + amp * math.sin(2 * math.pi * (i + phase) / period)
    return y + rng.gauss(0.0, 3.0)


def run(kind: str, seed: int, adapt: bool, step: float, period: int) -> dict:
    rng = random.Random(seed)
    m = make_series_model(step)
    if not adapt:
        m.drift.threshold = math.inf
    change, after = DAYS_BEFORE * period, DAYS_AFTER * period
    window: deque[float] = deque(maxlen=period)
    before: list[float] = []
    pre = math.inf
    last_bad = -1
    out = {"detected": None, "recovered": None, "drifting_steps": 0, "false_drifts": 0}
    for i in range(change + after):
        y = scenario(kind, i, rng, period)
        nxt = m.forecaster.forecast(1)[0] if m.forecaster.warm else None
        u = m.update(y, t=step * i)
        if nxt is not None:
            window.append(abs(y - nxt.yhat))
            if i >= change - 4 * period:
                before.append(abs(y - nxt.yhat))
        if i == change - 1:
            pre = sum(before) / len(before)  # the error level over 4 days
        if i < change:
            out["false_drifts"] += u.drift_started
            continue
        k = i - change
        out["drifting_steps"] += u.drifting
        if u.drift_started and out["detected"] is None:
            out["detected"] = k
        if sum(window) / len(window) > 1.5 * pre:
            last_bad = k
    # recovered from the step after which the error stays within bound (0: never out)
    out["recovered"] = None if last_bad == after - 1 else last_bad + 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    kinds = ("level up", "level down", "amplitude x2", "phase +6h")
    result: dict = {"benchmark": "drift", "scenarios": {}}
    print(f"daily cycle, change after {DAYS_BEFORE} days; recovered = last-day MAE back "
          f"within 1.5x its level over the 4 days before (never: not within {DAYS_AFTER} days); "
          f"worst of {args.seeds} seeds")
    print(f"  {'scenario':<20} {'mode':<9} {'detected':>9} {'recovered':>10} {'periods':>8} "
          f"{'drifting':>9} {'false':>6}")
    for (step, period), kind in [(g, k) for g in GRIDS for k in kinds]:
        name = f"{kind} ({period}/day)"
        result["scenarios"][name] = {}
        for adapt in (True, False):
            runs = [run(kind, s, adapt, step, period) for s in range(args.seeds)]
            mode = "adapt" if adapt else "no drift"

            def worst(key: str, runs: list[dict] = runs) -> int | None:
                vals = [r[key] for r in runs]
                return None if None in vals else max(vals)

            rec = worst("recovered")
            row = {
                "detected_max": worst("detected"),
                "recovered_max": rec,
                "drifting_steps_max": max(r["drifting_steps"] for r in runs),
                "false_drifts": sum(r["false_drifts"] for r in runs),
            }
            result["scenarios"][name][mode] = row
            det = "-" if row["detected_max"] is None else row["detected_max"]
            print(f"  {name:<20} {mode:<9} {det:>9} {'never' if rec is None else rec:>10} "
                  f"{'' if rec is None else f'{rec / period:.2f}':>8} "
                  f"{row['drifting_steps_max']:>9} {row['false_drifts']:>6}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
