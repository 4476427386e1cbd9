"""NAB benchmark of the worker's anomaly detector.

Runs ``foresight detect``'s code (:func:`scaler.detect.detect_csv`) over every
CSV of a NAB data folder, writes the results in NAB's layout under ``--out``,
scores them with the shared NAB scorer (optimised thresholds, as the NAB
scoreboard does, and at the threshold the worker publishes anomalies at), and
prints a table followed by one line of JSON.

    python benchmarks/nab.py [--data ../shared/data/nab] [--out build/nab-results]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from detectors import defaults  # noqa: E402
from detectors.base import AnomalyDetector  # noqa: E402
from detectors.series import SeriesModel  # noqa: E402
from scaler import detect  # noqa: E402

DEFAULT_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "nab"))
DEFAULT_SCORER = os.path.normpath(
    os.path.join(ROOT, "..", "shared", "tools", "nab", "nab_score.py")
)
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def data_files(data_root: str) -> tuple[str, list[str]]:
    """The folder holding ``<category>/<file>.csv`` and the relative paths."""
    csv_root = os.path.join(data_root, "data")
    if not os.path.isdir(csv_root):
        csv_root = data_root
    rels = sorted(
        os.path.relpath(p, csv_root) for p in glob.glob(os.path.join(csv_root, "*", "*.csv"))
    )
    return csv_root, rels


def run_detector(
    csv_root: str,
    rels: list[str],
    out: str,
    factory: Callable[[], AnomalyDetector] | None = None,
) -> dict:
    """Detect every file into ``out``; return rows, seconds and memory figures.

    ``factory`` builds the detector for an ablation; by default each file gets
    the worker's model (:func:`scaler.detect.new_model`).
    """
    rows = 0
    seconds = 0.0
    pickled = []
    for rel in rels:
        src = os.path.join(csv_root, rel)
        dst = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        data = detect.read_rows(src)
        if factory is None:
            model = detect.new_model(detect.median_step(detect.parse_time(r[0]) for r in data))
        else:
            model = SeriesModel(factory(), None)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        n = detect.detect_csv(src, dst, model)
        seconds += time.perf_counter() - t0
        rows += n
        pickled.append(len(pickle.dumps(model.detector)))
    return {"rows": rows, "seconds": seconds, "pickled_max": max(pickled, default=0),
            "pickled_mean": sum(pickled) / len(pickled) if pickled else 0}


def score_speed(csv_root: str, rels: list[str]) -> float:
    """Points/s of ``SeriesModel.score`` alone (no CSV I/O), over the whole folder."""
    series = []
    for rel in rels:
        vals = []
        for ts, raw in detect.read_rows(os.path.join(csv_root, rel)):
            v = detect.parse_value(raw)
            if v is not None:
                vals.append((v, detect.parse_time(ts)))
        series.append(vals)
    n = 0
    t0 = time.perf_counter()
    for vals in series:
        m = detect.new_model()
        score = m.score
        for v, t in vals:
            score(v, t)
        n += len(vals)
    return n / (time.perf_counter() - t0)


def live_memory(csv_root: str, rel: str) -> int:
    """Bytes held by one detector after it has seen ``rel`` (tracemalloc)."""
    vals = []
    for ts, raw in detect.read_rows(os.path.join(csv_root, rel)):
        v = detect.parse_value(raw)
        if v is not None:
            vals.append((v, detect.parse_time(ts)))
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    d = defaults.make_detector()
    for v, t in vals:
        d.score_one(v, t)
        d.learn_one(v, t)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del d
    return used


def run_scorer(scorer: str, results: str, data_root: str, threshold: str | None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        path = fh.name
    cmd = [sys.executable, scorer, "--results", results, "--data", data_root, "--json", path]
    if threshold is not None:
        cmd += ["--threshold", threshold]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"scorer failed:\n{proc.stdout}\n{proc.stderr}")
    with open(path) as fh:
        report = json.load(fh)
    os.unlink(path)
    return report


def summarise(report: dict) -> dict:
    out = {}
    for name in PROFILES:
        p = report["profiles"][name]
        out[name] = {
            "score": round(p["normalized"], 2),
            "threshold": p["threshold"],
            "windows_detected": p["windows_detected"],
            "tp": p["tp"],
            "fp": p["fp"],
            "per_category": {
                c: round(v["normalized"], 2) if v["normalized"] is not None else None
                for c, v in p["per_category"].items()
            },
            "per_category_raw": {c: round(v["raw"], 3) for c, v in p["per_category"].items()},
        }
    out["windows"] = report["windows"]
    return out


def print_table(title: str, s: dict) -> None:
    print(title)
    print(f"  {'profile':<20} {'score':>7} {'threshold':>10} {'windows':>8} {'FP rows':>8}")
    for name in PROFILES:
        p = s[name]
        print(
            f"  {name:<20} {p['score']:>7.2f} {p['threshold']:>10.4g} "
            f"{p['windows_detected']:>4}/{s['windows']:<3} {p['fp']:>8}"
        )
    cats = s["standard"]["per_category"]
    raws = s["standard"]["per_category_raw"]
    print(f"  {'category (standard)':<32} {'score':>7} {'raw':>8}")
    for c, v in cats.items():
        print(f"  {c:<32} {'n/a' if v is None else f'{v:7.2f}':>7} {raws[c]:>8.3f}")


def run_ablation(csv_root: str, rels: list[str], args: argparse.Namespace) -> dict:
    """Standard score of the fused detector without each component, and of each alone."""
    from detectors.anomaly import COMPONENTS, RecordFusionDetector

    variants: dict[str, dict] = {"all": {}}
    for c in COMPONENTS:
        variants[f"without {c}"] = {"components": tuple(x for x in COMPONENTS if x != c)}
    variants["without hold"] = {"hold": 0}
    for c in COMPONENTS:
        variants[f"only {c}"] = {"components": (c,)}
    scores = {}
    for name, kw in variants.items():
        out = os.path.join(args.out + "-ablation", name.replace(" ", "-"))
        run_detector(csv_root, rels, out, lambda kw=kw: RecordFusionDetector(**kw))
        rep = run_scorer(args.scorer, out, args.data, None)
        scores[name] = round(rep["profiles"]["standard"]["normalized"], 2)
    return scores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="NAB folder (data/, labels/, config/)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "nab-results"))
    ap.add_argument("--scorer", default=DEFAULT_SCORER)
    ap.add_argument(
        "--threshold",
        type=float,
        default=defaults.DEFAULT_THRESHOLD,
        help="the worker's publishing threshold (default %(default)s)",
    )
    ap.add_argument(
        "--ablation",
        action="store_true",
        help="also score the default detector without each of its components",
    )
    args = ap.parse_args(argv)

    csv_root, rels = data_files(args.data)
    if not rels:
        print(f"NAB data not found under {args.data}; skipping the NAB benchmark.")
        print(json.dumps({"skipped": True, "reason": f"no NAB data under {args.data}"}))
        return 0
    if not os.path.isfile(args.scorer):
        print(f"NAB scorer not found at {args.scorer}; skipping the NAB benchmark.")
        print(json.dumps({"skipped": True, "reason": f"no scorer at {args.scorer}"}))
        return 0

    run = run_detector(csv_root, rels, args.out)
    speed = score_speed(csv_root, rels)
    biggest = max(rels, key=lambda r: os.path.getsize(os.path.join(csv_root, r)))
    live = live_memory(csv_root, biggest)

    best = summarise(run_scorer(args.scorer, args.out, args.data, None))
    t = args.threshold
    fixed = summarise(
        run_scorer(args.scorer, args.out, args.data, f"standard={t},low_fp={t},low_fn={t}")
    )

    print(f"NAB: {len(rels)} files, {run['rows']} rows, results in {args.out}")
    print_table("optimised thresholds (as the NAB scoreboard):", best)
    print_table(f"at the worker threshold {t}:", fixed)
    print(
        f"speed: {speed:,.0f} points/s (SeriesModel.score only), "
        f"{run['rows'] / run['seconds']:,.0f} points/s (detect_csv with CSV I/O)"
    )
    print(
        f"memory per detector: live {live / 1024:.1f} KB (after {biggest}), "
        f"pickled max {run['pickled_max'] / 1024:.1f} KB, mean {run['pickled_mean'] / 1024:.1f} KB"
    )
    ablation = {}
    if args.ablation:
        ablation = run_ablation(csv_root, rels, args)
        print("ablation (standard profile, optimised threshold):")
        for name, score in ablation.items():
            print(f"  {name:<28} {score:7.2f}")
    result = {
        "benchmark": "nab",
        "detector": repr(defaults.make_detector()),
        "files": len(rels),
        "rows": run["rows"],
        "optimised": best,
        "worker_threshold": {"threshold": t, **fixed},
        "points_per_second": round(speed),
        "points_per_second_with_io": round(run["rows"] / run["seconds"]),
        "memory_live_bytes": live,
        "memory_pickled_max_bytes": run["pickled_max"],
        "memory_pickled_mean_bytes": round(run["pickled_mean"]),
    }
    if ablation:
        result["ablation_standard"] = ablation
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
