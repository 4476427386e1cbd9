"""NAB-style benchmark of the worker's anomaly detector, on every corpus we have.

Runs ``foresight detect``'s code path (:func:`scaler.detect.score_rows` over a
:class:`~detectors.series.SeriesModel` built by :func:`scaler.detect.new_model`)
over every CSV of each corpus (``../shared/data/nab`` and
``../shared/data/anomaly_extra``, both in NAB's layout), scores the results with
the shared NAB scorer (``../shared/tools/nab/nab_score.py``, imported, so its
rules are the ones applied) and prints, then one line of JSON:

* per corpus and per category: the standard score at the optimised threshold
  (as the NAB scoreboard) and at the worker's fixed threshold (0.9);
* **leave-one-category-out** (LOCO): for every category but
  ``artificialNoAnomaly`` (no windows: it always stays in the tuning set), every
  setting chosen by looking at scores -- the threshold, and the detector
  configuration among :data:`CANDIDATES` -- is chosen on all the *other*
  categories of both corpora pooled, then the held-out category is scored with
  it; the mean and the worst held-out category are printed;
* false alarms per 1,000 points at the worker's threshold, per corpus: an alert
  onset (first point of a run at or above the threshold) outside every labelled
  window, counted over the scored (post-probation) rows;
* cost: µs per point of ``SeriesModel.score`` and bytes held live per detector.

Without ``../shared/data`` the benchmark runs on a small synthetic corpus it
generates itself (``--synthetic``); without the scorer it prints a skip message.

    python benchmarks/nab.py [--data-root ../shared/data] [--out build/nab-results]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from types import ModuleType

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from detectors import defaults  # noqa: E402
from detectors.series import SeriesModel  # noqa: E402
from scaler import detect  # noqa: E402

DEFAULT_DATA_ROOT = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
DEFAULT_SCORER = os.path.normpath(
    os.path.join(ROOT, "..", "shared", "tools", "nab", "nab_score.py")
)
CORPORA = ("nab", "anomaly_extra")
#: a category without windows: never held out, always in the tuning set
NEVER_HELD_OUT = ("artificialNoAnomaly",)
STANDARD = {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}

#: detector configurations the LOCO protocol chooses among (by the pooled
#: standard score of the tuning categories); keyword overrides of the default
#: detector's parameters. The first is the shipped default. ``relax`` (how fast
#: an incident's peak relaxes back to the normal record) and ``quiet`` (which
#: points let it relax and end an incident's hold) were chosen by looking at
#: scores, so the values looked at are candidates here and the LOCO figure
#: includes that choice; "before" (relax 0, quiet 0) is the detector before
#: they existed. The hold's cap (``hold``, points) likewise: 50, 100 (the default
#: before), 200 (shipped), 300 and unlimited were looked at.
#: a product requirement fixed before looking at any corpus, which a candidate must meet
#: to be offered to the protocol at all: on pure noise of any distribution and step, at
#: most this many alert onsets per 1,000 points at the worker's threshold (an alarm must
#: mean something on a series nobody labelled): 10 onsets in the 19,000 points after
#: warm-up, the bound tests/detectors/test_anomaly.py has held the detector to since
#: before ``relax`` and ``quiet`` existed.
NOISE_FALSE_ALARMS_PER_1000 = 0.53
NOISES: dict[str, Callable[[random.Random], float]] = {
    "gauss": lambda r: r.gauss(0.0, 1.0),
    "laplace": lambda r: r.expovariate(1.0) * (1 if r.random() < 0.5 else -1),
    "uniform": lambda r: r.random(),
    "lognormal": lambda r: r.lognormvariate(0.0, 1.0),
}


def noise_false_alarms(overrides: dict, threshold: float, n: int = 20_000, skip: int = 1_000) -> float:
    """The worst alert onsets per 1,000 points over :data:`NOISES` at 1-minute and 1-hour steps."""
    worst = 0.0
    for draw in NOISES.values():
        for step in (60.0, 3600.0):
            rng = random.Random(0)
            det = defaults.make_detector()
            if overrides:
                det = det.clone(overrides)
            onsets, prev = 0, False
            for i in range(n):
                x = draw(rng)
                hit = det.score_one(x, i * step) >= threshold
                det.learn_one(x, i * step)
                if i >= skip:
                    onsets += hit and not prev
                prev = hit
            worst = max(worst, 1000.0 * onsets / (n - skip))
    return worst


CANDIDATES: dict[str, dict] = {
    "default": {},
    "before": {"relax": 0.0, "quiet": 0.0},
    "relax0": {"relax": 0.0},
    "relax2e-4": {"relax": 2e-4},
    "relax1e-3": {"relax": 1e-3},
    "relax2e-3": {"relax": 2e-3},
    "quiet0.3": {"quiet": 0.3},
    "quiet0.8": {"quiet": 0.8},
    "quiet1": {"quiet": 1.0},
    "hold50": {"hold": 50},
    "hold100": {"hold": 100},
    "hold300": {"hold": 300},
    "hold_unlimited": {"hold": 1_000_000_000},
    # the step view (mean of the last k values against the k before, in units of the
    # mean absolute step; shipped k=3, gain 0.85): off, and the k and gains looked at
    "step_off": {"step": 0},
    "step2": {"step": 2},
    "step4": {"step": 4},
    "step5": {"step": 5},
    "step6": {"step": 6},
    "step8": {"step": 8},
    "step_gain1": {"step_gain": 1.0},
    "step_gain0.9": {"step_gain": 0.9},
    "step_gain0.8": {"step_gain": 0.8},
    "step_gain0.7": {"step_gain": 0.7},
    "step2_gain0.8": {"step": 2, "step_gain": 0.8},
    "step4_gain0.8": {"step": 4, "step_gain": 0.8},
    "step4_gain0.7": {"step": 4, "step_gain": 0.7},
    # the profile's local scale (the residual also in units of its bin's own mean absolute
    # deviation, where the bins' deviations are below ``profile_local`` times the series'):
    # off, and the shares looked at (shipped 0.7, the protocol's choice with nothing held out)
    "local_off": {"profile_local": 0.0},
    "local0.5": {"profile_local": 0.5},
    "local0.6": {"profile_local": 0.6},
    "local0.8": {"profile_local": 0.8},
    "local0.9": {"profile_local": 0.9},
    "local1": {"profile_local": 1.0},
}


# -- data ------------------------------------------------------------------


def load_scorer(path: str) -> ModuleType | None:
    if not os.path.isfile(path):
        return None
    spec = importlib.util.spec_from_file_location("nab_score", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def load_corpus(scorer: ModuleType, name: str, root: str) -> list:
    """The scorer's ``DataFile`` objects of a corpus, tagged with the corpus and CSV path."""
    windows = os.path.join(root, "labels", "combined_windows.json")
    files = scorer.load_corpus(root, windows)
    csv_root = os.path.join(root, "data")
    for df in files:
        df.corpus = name
        df.path = os.path.join(csv_root, df.rel)
    return files


def write_synthetic(root: str, seed: int = 0) -> None:
    """A small NAB-layout corpus (two categories with windows, one without)."""
    rng = random.Random(seed)
    windows: dict[str, list] = {}
    t0 = 1_500_000_000
    kinds = {"synthSpike": "spike", "synthShift": "shift", "artificialNoAnomaly": None}
    for cat, kind in kinds.items():
        os.makedirs(os.path.join(root, "data", cat), exist_ok=True)
        for k in range(2):
            n, period, at = 3000, 288, 2000 + 300 * k
            rel = f"{cat}/s{k}.csv"
            stamps = [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t0 + 300 * i)) for i in range(n)]
            with open(os.path.join(root, "data", rel), "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["timestamp", "value"])
                for i in range(n):
                    x = 50 + 20 * math.sin(2 * math.pi * i / period) + rng.gauss(0, 1)
                    if kind == "spike" and i == at:
                        x += 60
                    if kind == "shift" and i >= at:
                        x += 30
                    w.writerow([stamps[i], f"{x:.3f}"])
            windows[rel] = [] if kind is None else [[stamps[at - 50], stamps[at + 50]]]
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    with open(os.path.join(root, "labels", "combined_windows.json"), "w") as fh:
        json.dump(windows, fh)


def read_series(path: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in detect.read_rows(path)]


# -- detection -------------------------------------------------------------


def model_factory(overrides: dict) -> Callable[[float], SeriesModel]:
    """A SeriesModel builder for a file's step: the worker's, or a variant."""
    if not overrides:
        return detect.new_model

    def make(step: float) -> SeriesModel:
        m = detect.new_model(step)
        m.detector = m.detector.clone(overrides)
        return m

    return make


def detect_file(path: str, factory: Callable[[float], SeriesModel], out: str | None) -> np.ndarray:
    rows = detect.read_rows(path)
    model = factory(detect.median_step(detect.parse_time(r[0]) for r in rows))
    scores = [s for _, _, s in detect.score_rows(rows, model)]
    if out is not None:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(detect.HEADER)
            for (ts, raw), s in zip(rows, scores, strict=True):
                w.writerow((ts, raw, repr(s)))
    return np.asarray(scores, dtype=np.float64)


# -- scoring ---------------------------------------------------------------


def score_files(scorer: ModuleType, files: list, scores: dict, threshold: float | None) -> dict:
    """Standard score of ``files`` pooled (optimised threshold if None) and per category."""
    flat = scorer.Flat(files, [scores[df.rel] for df in files])
    curve = scorer.Curve(flat, STANDARD)
    thr = curve.best()[0] if threshold is None else threshold
    per_file, counts, hit = scorer.score_at(flat, STANDARD, thr)
    live = sum(len(df.live) for df in files)
    perfect = float(len(sum((df.windows for df in files), [])))
    null = -float(live)
    raw = float(per_file.sum())
    cats: dict[str, float | None] = {}
    for cat in sorted({df.category for df in files}):
        sel = [i for i, df in enumerate(files) if df.category == cat]
        c_live = sum(len(files[i].live) for i in sel)
        c_perfect = sum(len(files[i].windows) for i in sel)
        c_raw = float(per_file[sel].sum())
        cats[cat] = (
            round(100.0 * (c_raw + c_live) / (c_perfect + c_live), 2) if c_perfect else None
        )
    return {
        "score": round(100.0 * (raw - null) / (perfect - null), 2) if perfect > null else None,
        "threshold": thr,
        "raw": raw,
        "windows_detected": hit,
        "windows": int(perfect),
        "fp_rows": int(counts["fp"].sum()),
        "per_category": cats,
    }


def false_alarms(files: list, scores: dict, threshold: float) -> dict:
    """Alert onsets outside every window, per 1,000 scored points."""
    onsets = points = 0
    rates = []
    for df in files:
        s = scores[df.rel][df.first:]
        hit = s >= threshold
        start = hit & ~np.r_[False, hit[:-1]]
        k = int(np.sum(start & (df.in_win[df.first:] < 0)))
        onsets += k
        points += s.size
        if s.size:
            rates.append(1000.0 * k / s.size)
    return {"onsets": onsets, "points": points,
            "per_1000": round(1000.0 * onsets / points, 3) if points else None,
            "per_file_median": round(float(np.median(rates)), 3) if rates else None,
            "per_file_max": round(max(rates), 3) if rates else None}


def loco(scorer: ModuleType, files: list, runs: dict[str, dict], threshold: float) -> dict:
    """Leave-one-category-out: configuration and threshold chosen on the other categories."""
    cats = sorted({df.category for df in files} - set(NEVER_HELD_OUT))
    out: dict[str, dict] = {}
    for cat in cats:
        tune = [df for df in files if df.category != cat]
        held = [df for df in files if df.category == cat]
        best = None
        for name, scores in runs.items():
            r = score_files(scorer, tune, scores, None)
            if best is None or r["score"] > best[1]:
                best = (name, r["score"], r["threshold"])
        name, tuned, thr = best  # type: ignore[misc]
        at_opt = score_files(scorer, held, runs[name], thr)["score"]
        at_fixed = score_files(scorer, held, runs[name], threshold)["score"]
        out[cat] = {"config": name, "threshold": round(thr, 6), "tuning_score": tuned,
                    "held_out": at_opt, "held_out_fixed": at_fixed}
    vals = [v["held_out"] for v in out.values()]
    fixed = [v["held_out_fixed"] for v in out.values()]
    return {
        "per_category": out,
        "mean": round(sum(vals) / len(vals), 2) if vals else None,
        "worst": min(vals) if vals else None,
        "mean_fixed": round(sum(fixed) / len(fixed), 2) if fixed else None,
        "worst_fixed": min(fixed) if fixed else None,
    }


def check_targets(corpora: dict, lo: dict) -> dict[str, bool]:
    """Issue 12's targets (standard profile), where the corpora they name were run."""
    out: dict[str, bool] = {}
    if lo["mean"] is not None:
        out["LOCO mean >= 65"] = lo["mean"] >= 65.0
        out["LOCO worst >= 50"] = lo["worst"] >= 50.0
    if "nab" in corpora:
        out["NAB subset >= 70"] = corpora["nab"]["optimised"]["score"] >= 70.0
    if "anomaly_extra" in corpora:
        out["anomaly_extra >= 55"] = corpora["anomaly_extra"]["optimised"]["score"] >= 55.0
    gaps = [abs(c["optimised"]["score"] - c["fixed"]["score"]) for c in corpora.values()]
    out["fixed within 1 of optimised"] = max(gaps) <= 1.0
    rates = [c["false_alarms"]["per_1000"] for c in corpora.values()]
    if len(rates) > 1 and min(rates) > 0:
        out["false alarms within 2x across corpora"] = max(rates) <= 2.0 * min(rates)
    return out


# -- cost ------------------------------------------------------------------


def cost(files: list) -> dict:
    """µs per point of ``SeriesModel.score`` (no I/O) and live bytes of one detector."""
    series = []
    for df in files:
        vals = []
        for ts, raw in read_series(df.path):
            v = detect.parse_value(raw)
            if v is not None:
                vals.append((v, detect.parse_time(ts)))
        series.append(vals)
    n = 0
    t0 = time.perf_counter()
    for vals in series:
        score = detect.new_model().score
        for v, t in vals:
            score(v, t)
        n += len(vals)
    us = 1e6 * (time.perf_counter() - t0) / max(n, 1)
    longest = max(series, key=len)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    d = defaults.make_detector()
    for v, t in longest:
        d.score_one(v, t)
        d.learn_one(v, t)
    live = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {"us_per_point": round(us, 2), "live_bytes": live, "points": n}


# -- main ------------------------------------------------------------------


def _cell(x: float | None) -> str:
    return f"{x:10.2f}" if x is not None else f"{'n/a':>10}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                    help=f"folder holding the corpora ({', '.join(CORPORA)})")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "nab-results"),
                    help="results of the default configuration, in NAB's layout")
    ap.add_argument("--scorer", default=DEFAULT_SCORER)
    ap.add_argument("--threshold", type=float, default=defaults.DEFAULT_THRESHOLD,
                    help="the worker's publishing threshold (default %(default)s)")
    ap.add_argument("--synthetic", action="store_true",
                    help="run on a small generated corpus (the default when no data is found)")
    args = ap.parse_args(argv)

    scorer = load_scorer(args.scorer)
    if scorer is None:
        print(f"NAB scorer not found at {args.scorer}; skipping the NAB benchmark.")
        print(json.dumps({"skipped": True, "reason": f"no scorer at {args.scorer}"}))
        return 0
    roots = {c: os.path.join(args.data_root, c) for c in CORPORA}
    roots = {c: r for c, r in roots.items() if os.path.isdir(os.path.join(r, "data"))}
    tmp = None
    if args.synthetic or not roots:
        print(f"no corpus under {args.data_root}: running on a small synthetic corpus "
              "(figures are a smoke test, not a benchmark)")
        tmp = tempfile.TemporaryDirectory()
        write_synthetic(tmp.name)
        roots = {"synthetic": tmp.name}

    files = []
    for name, root in roots.items():
        files += load_corpus(scorer, name, root)
    thr = args.threshold
    noise = {name: round(noise_false_alarms(kw, thr), 3) for name, kw in CANDIDATES.items()}
    admissible = {n for n, v in noise.items() if v <= NOISE_FALSE_ALARMS_PER_1000} | {"default"}
    print(f"false alarms on pure noise at {thr} (worst over {len(NOISES)} distributions x 2 steps, "
          f"per 1,000 points; offered to the protocol if <= {NOISE_FALSE_ALARMS_PER_1000}):")
    print("  " + ", ".join(f"{n} {v}{'' if n in admissible else ' (not offered)'}"
                           for n, v in noise.items()))
    if noise["default"] > NOISE_FALSE_ALARMS_PER_1000:
        print("  (the shipped default does NOT meet the noise requirement)")
    t_run = time.perf_counter()
    runs: dict[str, dict] = {}
    for name, kw in CANDIDATES.items():
        if name not in admissible:
            continue
        factory = model_factory(kw)
        runs[name] = {}
        for df in files:
            out = os.path.join(args.out, df.corpus, df.rel) if name == "default" else None
            runs[name][df.rel] = detect_file(df.path, factory, out)
    t_run = time.perf_counter() - t_run

    default = runs["default"]
    result: dict = {"benchmark": "nab", "detector": repr(defaults.make_detector()),
                    "threshold": thr, "corpora": {}, "noise_false_alarms_per_1000": noise,
                    "offered": sorted(admissible)}
    print(f"detector: {result['detector']}")
    for name in roots:
        cf = [df for df in files if df.corpus == name]
        best = score_files(scorer, cf, default, None)
        fixed = score_files(scorer, cf, default, thr)
        fa = false_alarms(cf, default, thr)
        result["corpora"][name] = {"files": len(cf), "optimised": best, "fixed": fixed,
                                   "false_alarms": fa}
        print(f"\n{name}: {len(cf)} files, {fa['points'] } scored points, {best['windows']} windows")
        print(f"  {'standard':<28} {'optimised':>10} {'at ' + str(thr):>10}")
        print(f"  {'corpus':<28} {best['score']:>10.2f} {fixed['score']:>10.2f}"
              f"   (optimised threshold {best['threshold']:.4g})")
        for cat, v in best["per_category"].items():
            f = fixed["per_category"][cat]
            print(f"  {cat:<28} {_cell(v)} {_cell(f)}")
        print(f"  false alarms at {thr}: {fa['onsets']} onsets, {fa['per_1000']} per 1,000 points "
              f"(per file: median {fa['per_file_median']}, max {fa['per_file_max']})")

    lo = loco(scorer, files, runs, thr)
    result["loco"] = lo
    print("\nleave-one-category-out (threshold"
          + (" and configuration, among those offered," if len(runs) > 1 else "")
          + " chosen on the other categories of all corpora):")
    print(f"  {'held out':<28} {'config':<10} {'threshold':>9} {'held-out':>9} {'at ' + str(thr):>9}")
    for cat, v in lo["per_category"].items():
        print(f"  {cat:<28} {v['config']:<10} {v['threshold']:>9.4g} "
              f"{v['held_out']:>9.2f} {v['held_out_fixed']:>9.2f}")
    print(f"  LOCO mean {lo['mean']}, worst {lo['worst']}  "
          f"(at {thr}: mean {lo['mean_fixed']}, worst {lo['worst_fixed']})")
    if len(runs) > 1:
        # the shipped configuration alone, only the threshold chosen held out: optimistic,
        # since the candidates were looked at; the line above is the protocol's figure
        alone = loco(scorer, files, {"default": default}, thr)
        result["loco_default_only"] = alone
        print(f"  default configuration alone (threshold only): mean {alone['mean']}, "
              f"worst {alone['worst']} (at {thr}: mean {alone['mean_fixed']}, "
              f"worst {alone['worst_fixed']})")
        pooled = {n: score_files(scorer, files, r, None)["score"] for n, r in runs.items()}
        result["pooled_all"] = pooled
        print("  pooled over every category (the protocol's choice with nothing held out): "
              + ", ".join(f"{n} {v:.2f}" for n, v in sorted(pooled.items(), key=lambda kv: -kv[1])))

    # the targets are for the shipped configuration: when the protocol, given every
    # category, would choose another candidate, its LOCO figure describes that
    # procedure, not what ships, and the shipped configuration's own figure is judged
    judged = lo
    if len(runs) > 1 and max(pooled, key=pooled.get) != "default":
        judged = alone
        print("  (the protocol would ship another candidate: the targets below judge the "
              "default configuration's own LOCO figure)")
    targets = check_targets(result["corpora"], judged)
    result["targets"] = targets
    if targets:
        print("\nissue 12 targets: " + ", ".join(
            f"{k} {'met' if ok else 'NOT met'}" for k, ok in targets.items()))

    c = cost(files)
    result["cost"] = c
    result["seconds_detecting"] = round(t_run, 1)
    print(f"\ncost: {c['us_per_point']} µs/point (SeriesModel.score), "
          f"{c['live_bytes'] / 1024:.1f} KB live per detector (after its longest series)")
    print(json.dumps(result))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
