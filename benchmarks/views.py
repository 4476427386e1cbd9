"""The read model's update alone, in process: what the model agent does to the views after each
bank update, for ``--series`` series x ``--windows`` windows (horizon ``--horizon``), timed.

    python benchmarks/views.py --series 10000 --windows 40

Uses ``ViewStore.on_windows_arrays`` (a batch a bank update) where the code has it, else the
per-series path the model agent took before it (``on_window_arrays`` a series, its forecast
copied), so that the same script measures both (run it with ``PYTHONPATH`` at the older tree).
The views' history in a file, as the worker keeps it (``table_store`` disk). Prints JSON:
``updates_per_s`` and ``us_per_update`` (the best of ``--repeat`` runs, warm views)."""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time

import numpy as np

from streams.metrics import Metrics
from streams.settings import Settings
from streams.web import Anomaly, ViewStore
from streams.web.specs import load_selector

STEP = 10.0
T0 = 1_700_000_000.0


def feed(store: ViewStore, names: list[str], windows: int, first: int, horizon: int, seed: int) -> float:
    """Seconds spent updating ``store`` with ``windows`` windows of every series, from window ``first``."""
    rng = np.random.default_rng(seed)
    n = len(names)
    batch = hasattr(store, "on_windows_arrays")
    spent = 0.0
    for w in range(first, first + windows):
        ts = np.full(n, T0 + STEP * w)
        values = rng.normal(100, 10, n)
        fc = (100 + rng.normal(0, 5, (n, horizon, 3))).astype(np.float32)
        warm = np.ones(n, np.bool_)
        error = rng.random(n)
        score = rng.random(n)
        anomalous = rng.random(n) < 0.01
        drifting = np.zeros(n, np.bool_)
        learnt = np.full(n, w + 1)
        anomalies = {i: Anomaly(float(ts[i]), float(values[i]), float(score[i]), 0.99, "D")
                     for i in np.flatnonzero(anomalous).tolist()}
        t0 = time.perf_counter()
        if batch:
            store.on_windows_arrays(names, ts, values, STEP, fc, 0.8, "M", warm, error, score, anomalous,
                                    drifting, anomalies, learnt)
        else:  # the model agent's loop before the batch path
            starts, observed, err = ts.tolist(), values.tolist(), error.tolist()
            sc, an, dr, wa, le = score.tolist(), anomalous.tolist(), drifting.tolist(), warm.tolist(), learnt.tolist()
            for i, series in enumerate(names):
                e = err[i]
                store.on_window_arrays(series, starts[i], observed[i], STEP, fc[i].copy(),
                                       (starts[i], 0.8, "M", wa[i], None if e != e else e),
                                       sc[i], an[i], dr[i], anomalies.get(i), le[i])
        spent += time.perf_counter() - t0
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--horizon", type=int, default=62)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    names = [f"svc{i // 100}/pod{i % 100}/rps" for i in range(args.series)]
    best = math.inf
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Metrics()
        store = ViewStore(360, metrics, load_selector(Settings(), metrics), directory=tmp)
        feed(store, names, 20, 0, args.horizon, 0)  # warm: views made, rings written
        for r in range(args.repeat):
            best = min(best, feed(store, names, args.windows, 20 + r * args.windows, args.horizon, r + 1))
    n = args.series * args.windows
    print(json.dumps({"series": args.series, "windows": args.windows, "horizon": args.horizon,
                      "path": "batch" if hasattr(ViewStore, "on_windows_arrays") else "per-series",
                      "updates_per_s": round(n / best), "us_per_update": round(best / n * 1e6, 3)}))


if __name__ == "__main__":
    main()
