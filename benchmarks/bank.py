"""Model compute: the vectorised :class:`~detectors.bank.SeriesBank` vs the per-series classes.

Warm models first: ``--seeds`` synthetic series (a daily cycle, noise, a few
spikes; each its own level) are trained through ``--warmup`` windows, so that
every ring buffer is full, and checkpointed (pickled, as the worker's signed
checkpoints are). For each series count, a bank is filled from those
checkpoints (:meth:`~detectors.bank.SeriesBank.load`, the restore path after a
rebalance), then every series gets ``--windows`` closed windows, one
:meth:`~detectors.bank.SeriesBank.update` call per window for all series. The
per-series classes (``SeriesModel.update`` in a loop, as the model agent does
today) run the same windows in the same run, interleaved window by window with
the bank (so that both see the same load on a shared machine), on at most ``--ref-max`` of the
series (their rate does not depend on how many there are; their memory would
not fit at 100,000). The configuration is the worker's default: 10 s windows,
the daily period derived from the step, a horizon of 62 windows.

Prints JSON: per series count, bank and per-series updates/s (one core) and
their ratio, restores/s (``load_many``), and bytes per series of the bank's
arrays (with the share of each kind of state); the cost per series of a
checkpoint and of a restore, per series and per bank shard.

    python benchmarks/bank.py [--series 1000 10000 100000] [--windows 10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from detectors.bank import SeriesBank  # noqa: E402
from detectors.defaults import make_series_model  # noqa: E402

T0 = 1_700_000_000.0


def values(seed: int, i: int, step: float) -> float:
    """Window ``i`` of synthetic series ``seed``: a daily cycle with noise and rare spikes."""
    rng = np.random.default_rng(seed * 1_000_003 + i)
    t = T0 + i * step
    level = 50.0 + 30.0 * (seed % 17)
    y = level * (1.0 + 0.4 * math.sin(2 * math.pi * t / 86400.0)) + rng.normal(0.0, 0.05 * level)
    return y * (4.0 if rng.random() < 0.002 else 1.0)


def breakdown(bank: SeriesBank) -> dict[str, int]:
    """Bytes per series by kind of state."""
    f = bank.forecaster.cols
    kinds = {"seasonal_profile_bins": 0, "conformal_pooled_ring": 0, "conformal_group_rings": 0,
             "pending_forecasts": 0, "forecaster_other": 0}
    for k, (shape, dtype, _) in f.spec.items():
        b = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if k.startswith("prof"):
            kinds["seasonal_profile_bins"] += b
        elif k.startswith("zp"):
            kinds["conformal_pooled_ring"] += b
        elif k.startswith("zg"):
            kinds["conformal_group_rings"] += b
        elif k.startswith("pend"):
            kinds["pending_forecasts"] += b
        else:
            kinds["forecaster_other"] += b
    kinds["detector"] = bank.detector.row_bytes()
    kinds["series_model_other"] = bank.cols.row_bytes()
    return kinds


def checkpoint_costs(bank: SeriesBank, rows: np.ndarray, shard_rows: int = 32) -> dict[str, float]:
    """Microseconds per series to checkpoint and restore: per series (``export`` + pickle,
    unpickle + ``load_many``) and per bank shard of ``shard_rows`` (``shard`` + pickle,
    unpickle + ``load_shard``). Signing (HMAC-SHA256 of the bytes) comes on top of both."""
    n = len(rows)
    t = time.perf_counter()
    blobs = [pickle.dumps(bank.export(int(r)), protocol=pickle.HIGHEST_PROTOCOL) for r in rows]
    export_s = time.perf_counter() - t
    t = time.perf_counter()
    bank.load_many(rows, [pickle.loads(b) for b in blobs])
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    shards = [pickle.dumps(bank.shard(rows[i : i + shard_rows]), protocol=pickle.HIGHEST_PROTOCOL)
              for i in range(0, n, shard_rows)]
    shard_s = time.perf_counter() - t
    t = time.perf_counter()
    for i, blob in zip(range(0, n, shard_rows), shards, strict=True):
        bank.load_shard(rows[i : i + shard_rows], pickle.loads(blob))
    load_shard_s = time.perf_counter() - t
    return {
        "export_and_pickle": round(export_s / n * 1e6, 1),
        "unpickle_and_load_many": round(load_s / n * 1e6, 1),
        "shard_and_pickle": round(shard_s / n * 1e6, 1),
        "unpickle_and_load_shard": round(load_shard_s / n * 1e6, 1),
        "pickled_series_model_bytes": round(float(np.mean([len(b) for b in blobs]))),
        "pickled_shard_bytes_per_series": round(float(np.mean([len(b) for b in shards])) / shard_rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--windows", type=int, default=10, help="timed windows per series count")
    ap.add_argument("--warmup", type=int, default=300, help="windows learnt before checkpointing")
    ap.add_argument("--seeds", type=int, default=64, help="distinct trained series")
    ap.add_argument("--ref-max", type=int, default=2000, help="most per-series models timed")
    ap.add_argument("--step", type=float, default=10.0)
    ap.add_argument("--horizon", type=int, default=62)
    args = ap.parse_args()
    step, horizon = args.step, args.horizon

    def factory():
        return make_series_model(step, None, horizon)

    # warm models, trained through the bank itself (the same numbers as the classes)
    warm = SeriesBank(factory, capacity=args.seeds)
    seeds = np.array([warm.add() for _ in range(args.seeds)])
    t_warm = time.perf_counter()
    for i in range(args.warmup):
        warm.update(seeds, np.array([values(s, i, step) for s in range(args.seeds)]),
                    np.full(args.seeds, T0 + i * step))
    t_warm = time.perf_counter() - t_warm
    blobs = [pickle.dumps(warm.export(int(r)), protocol=pickle.HIGHEST_PROTOCOL) for r in seeds]
    checkpoints = [pickle.loads(b) for b in blobs]
    costs = [checkpoint_costs(warm, seeds) for _ in range(3)]  # the best of three (a shared machine)
    checkpointing = {k: min(c[k] for c in costs) for k in costs[0]}
    out: dict[str, object] = {
        "config": {"step_seconds": step, "horizon": horizon, "periods": list(checkpoints[0].forecaster.periods),
                   "warmup_windows": args.warmup, "timed_windows": args.windows, "cpu_count": os.cpu_count(),
                   "vectorised_detector": warm.detector.vectorised},
        "warmed_all_warm": bool(all(m.forecaster.warm for m in checkpoints)),
        "bank_bytes_per_series": warm.row_bytes(),
        "bank_bytes_per_series_by_kind": breakdown(warm),
        "checkpoint_us_per_series": checkpointing,
        "runs": [],
    }
    for n in args.series:
        bank = SeriesBank(factory, capacity=n)
        rows = np.array([bank.add() for _ in range(n)])
        t = time.perf_counter()
        for i in range(0, n, 1000):  # restored checkpoints go in a thousand at a time
            part = rows[i : i + 1000]
            bank.load_many(part, [checkpoints[int(r) % args.seeds] for r in part])
        load_s = time.perf_counter() - t
        seed_of = rows % args.seeds
        windows = [np.array([values(s, args.warmup + w, step) for s in range(args.seeds)])[seed_of]
                   for w in range(args.windows)]
        k = min(n, args.ref_max)
        models = [pickle.loads(blobs[i % args.seeds]) for i in range(k)]
        bank_s = ref_s = 0.0
        for w in range(args.windows):  # interleaved, so that both see the same machine
            ts = T0 + (args.warmup + w) * step
            xs = windows[w]
            t = time.perf_counter()
            bank.update(rows, xs, np.full(n, ts))
            bank_s += time.perf_counter() - t
            t = time.perf_counter()
            for i, m in enumerate(models):
                m.update(float(xs[i]), ts)
            ref_s += time.perf_counter() - t
        bank_rate = n * args.windows / bank_s
        ref_rate = k * args.windows / ref_s
        out["runs"].append({  # type: ignore[union-attr]
            "series": n,
            "bank_updates_per_s": round(bank_rate),
            "per_series_updates_per_s": round(ref_rate),
            "per_series_models_timed": k,
            "ratio_bank_vs_per_series": round(bank_rate / ref_rate, 2),
            "bank_restores_per_s": round(n / load_s),
            "bank_array_bytes_per_series": round(bank.nbytes() / n),
        })
        del bank, models
    out["warmup_seconds"] = round(t_warm, 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
