"""The bank gives the per-series models' numbers: on the shared traces, on synthetic series
with anomalies, stuck sensors, level shifts, gaps and NaN, with rows updated in mixed
subsets; rows convert to ``SeriesModel`` and back exactly; freed rows start cold."""

from __future__ import annotations

import csv
import math
import pickle
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from detectors._bank_detector import FusionBank, ObjectBank, make_detector_bank
from detectors.anomaly import RecordFusionDetector
from detectors.bank import SeriesBank
from detectors.defaults import make_series_model
from detectors.flatline import FlatlineDetector
from detectors.forecasting import default_forecaster
from detectors.series import SeriesModel, SeriesUpdate

TRACES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "traces"
TOL = 1e-9


def assert_same(b: SeriesUpdate, r: SeriesUpdate, where: str) -> None:
    """Bank entry ``b`` equals reference update ``r``: flags exactly, numbers to 1e-9."""
    assert (b.anomalous, b.warm, b.untrusted, b.drifting, b.drift_started) == (
        r.anomalous, r.warm, r.untrusted, r.drifting, r.drift_started), where
    assert b.score == pytest.approx(r.score, rel=TOL, abs=TOL), where
    assert (b.error is None) == (r.error is None), where
    if r.error is not None:
        assert b.error == pytest.approx(r.error, rel=TOL, abs=TOL), where
    assert len(b.intervals) == len(r.intervals), where
    got = np.array([(i.yhat, i.lower, i.upper) for i in b.intervals])
    want = np.array([(i.yhat, i.lower, i.upper) for i in r.intervals])
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL, err_msg=where)


FLAGS = ("anomalous", "warm", "untrusted", "drifting", "drift_started")


def as_arrays(us: list[SeriesUpdate]) -> dict[str, np.ndarray]:
    """Reference updates as the bank's arrays (``error`` None -> NaN)."""
    return {
        "score": np.array([u.score for u in us], float),
        **{f: np.array([getattr(u, f) for u in us], bool) for f in FLAGS},
        "error": np.array([np.nan if u.error is None else u.error for u in us], float),
        "intervals": np.array([[(i.yhat, i.lower, i.upper) for i in u.intervals] for u in us], float),
    }


def close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per entry: every number within 1e-9 (relative or absolute), NaN where NaN."""
    ok = (np.abs(a - b) <= TOL * np.maximum(1.0, np.abs(b))) | (np.isnan(a) & np.isnan(b))
    return ok.reshape(len(a), -1).all(axis=1)


def run_both(bank: SeriesBank, models: dict[int, SeriesModel], calls: list, label: str) -> dict:
    """Each call (rows, values, ts) through the bank and through the per-row models, compared
    entry by entry (flags exactly, numbers to 1e-9); tallies of the reference's flags."""
    got: list[dict] = []
    want: list[SeriesUpdate] = []
    where: list[str] = []
    for k, (rows, xs, ts) in enumerate(calls):
        u = bank.update(np.array(rows), np.array(xs, float), np.array(ts, float))
        got.append({f: getattr(u, f) for f in ("score", *FLAGS, "error", "intervals")})
        for row, x, t in zip(rows, xs, ts, strict=True):
            want.append(models[row].update(x, t))
            where.append(f"{label}: call {k}, row {row}, x={x}, t={t}")
    b = {f: np.concatenate([g[f] for g in got]) for f in got[0]}
    r = as_arrays(want)
    ok = close(b["score"], r["score"]) & close(b["error"], r["error"])
    ok &= close(b["intervals"], r["intervals"])
    for f in FLAGS:
        ok &= b[f] == r[f]
    if not ok.all():
        i = int(np.argmin(ok))
        pytest.fail(f"{where[i]}: bank {({f: b[f][i] for f in b})} != reference {want[i]}")
    return {
        "anomalous": int(r["anomalous"].sum()), "untrusted": int(r["untrusted"].sum()),
        "drift_started": int(r["drift_started"].sum()), "warm": int(r["warm"].sum()),
        "error_none": int(np.isnan(r["error"]).sum()),
    }


# -- the shared traces ---------------------------------------------------------------

def read_trace(path: Path) -> tuple[list[float], list[float]]:
    ts, vs = [], []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            ts.append(datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).timestamp())
            vs.append(float(row["value"]))
    return ts, vs


def trace_groups() -> dict[float, list[Path]]:
    groups: dict[float, list[Path]] = {}
    for p in sorted(TRACES.glob("*.csv")) if TRACES.is_dir() else []:
        ts, _ = read_trace(p)
        groups.setdefault(ts[1] - ts[0], []).append(p)
    return groups


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"the shared traces are not here ({TRACES})")
@pytest.mark.parametrize("step", sorted(trace_groups()) or [0.0])
def test_the_bank_gives_the_series_models_numbers_on_every_shared_trace(step: float) -> None:
    """Every trace of one step in one bank (one row each, all updated at once while they
    last); a horizon of 12 also covers the steps beyond the forecaster's 6."""
    paths = trace_groups()[step]
    bank = SeriesBank.for_config(step, horizon=12)
    traces = [read_trace(p) for p in paths]
    rows = [bank.add() for _ in paths]
    models = {r: make_series_model(step, None, 12) for r in rows}
    calls = []
    for i in range(max(len(ts) for ts, _ in traces)):
        live = [(r, vs[i], ts[i]) for r, (ts, vs) in zip(rows, traces, strict=True) if i < len(ts)]
        calls.append(tuple(map(list, zip(*live, strict=True))))
    seen = run_both(bank, models, calls, ",".join(p.name for p in paths))
    assert seen["warm"] > 0 and seen["anomalous"] > 0


# -- synthetic series, always run ----------------------------------------------------

def synthetic(kind: int, n: int, step: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """(t, value) of one synthetic series: daily cycle and noise, plus kind's trouble."""
    out = []
    t = 1_700_000_000.0 + kind * 37.0  # not on a step boundary for some
    for i in range(n):
        t += step
        day = 2 * math.pi * (t % 86400.0) / 86400.0
        v = 100.0 + 40.0 * math.sin(day) + rng.normal(0.0, 3.0)
        if kind % 7 == 1 and i % 97 == 50:
            v += 300.0  # spikes
        if kind % 7 == 2 and 500 <= i < 560:
            v = 42.0  # a stuck sensor
        if kind % 7 == 3 and i >= 600:
            v = 3.0 * v + 500.0  # a level shift: a drift
        if kind % 7 == 4 and i % 50 == 7:
            t += step * rng.integers(2, 40)  # gaps
        if kind % 7 == 5 and i % 113 == 3:
            v = math.nan  # a missing value
        if kind % 7 == 6:
            v -= 160.0  # negative values: the forecast is not clipped at 0
        if kind == 7 and i % 89 == 11:
            t -= 3 * step  # a late (repeated) window
        if kind == 8:
            v = float(round(v / 40.0))  # few distinct values: flat runs
        out.append((t, v))
    return out


@pytest.mark.parametrize("step,period,horizon", [
    (1800.0, None, 8),   # daily and weekly profiles, horizon beyond the forecaster's 6
    (60.0, 10, 3),       # one profile, a horizon shorter than the forecaster's
    (7.0, None, 6),      # no profile at all (no whole daily period in 7 s)
])
def test_the_bank_gives_the_series_models_numbers_on_synthetic_series(step, period, horizon) -> None:
    rng = np.random.default_rng(7)
    n_series, n, tail = 16, 1400, 40
    # capacity 3: it grows; chunk 5: large calls run in several passes
    bank = SeriesBank(lambda: make_series_model(step, period, horizon), capacity=3, chunk=5)
    rows = [bank.add() for _ in range(n_series)]
    series = [synthetic(k, n + tail, step, rng) for k in range(n_series)]
    models = {r: make_series_model(step, period, horizon) for r in rows}
    pos = [0] * n_series
    calls = []
    while any(p < n for p in pos):
        # a mixed subset each call: not every series closes a window every time
        pick = [k for k in range(n_series) if pos[k] < n and rng.random() < 0.7]
        if not pick:
            continue
        rng.shuffle(pick)
        call: tuple[list, list, list] = ([], [], [])
        for k in pick:
            t, v = series[k][pos[k]]
            pos[k] += 1
            call[0].append(rows[k])
            call[1].append(v)
            call[2].append(t)
        calls.append(call)
    seen = run_both(bank, models, calls, f"step {step}")
    # the run went through every branch worth checking
    assert seen["anomalous"] and seen["untrusted"] > seen["anomalous"] and seen["warm"]
    assert seen["drift_started"] and seen["error_none"]
    assert bank.detector.vectorised
    # then every row leaves as a SeriesModel, and every model comes into another bank: all
    # four go on with the same numbers (whatever state NaN, gaps or a drift left)
    exported = {r: pickle.loads(pickle.dumps(bank.export(r))) for r in rows}
    other = SeriesBank(lambda: make_series_model(step, period, horizon))
    dest = [other.add() for _ in rows]
    other.load_many(dest, [pickle.loads(pickle.dumps(models[r])) for r in rows])
    for i in range(n, n + tail):
        xs = [series[k][i][1] for k in range(n_series)]
        ts = [series[k][i][0] for k in range(n_series)]
        want = {r: models[r].update(x, t) for r, x, t in zip(rows, xs, ts, strict=True)}
        u = bank.update(np.array(rows), np.array(xs), np.array(ts))
        v = other.update(np.array(dest), np.array(xs), np.array(ts))
        for k, r in enumerate(rows):
            assert_same(u.series_update(k), want[r], f"bank row {r} at {i}")
            assert_same(v.series_update(k), want[r], f"loaded row {r} at {i}")
            assert_same(exported[r].update(xs[k], ts[k]), want[r], f"exported {r} at {i}")


# -- rows <-> SeriesModel --------------------------------------------------------------

def trained_bank(step: float = 1800.0, n: int = 900) -> tuple[SeriesBank, list[int], dict, list]:
    rng = np.random.default_rng(3)
    bank = SeriesBank.for_config(step, horizon=6)
    rows = [bank.add() for _ in range(7)]
    models = {r: make_series_model(step, None, 6) for r in rows}
    series = [synthetic(k, n + 200, step, rng) for k in range(7)]
    for i in range(n):
        xs = [series[k][i][1] for k in range(7)]
        ts = [series[k][i][0] for k in range(7)]
        bank.update(np.array(rows), np.array(xs), np.array(ts))
        for k, r in enumerate(rows):
            models[r].update(xs[k], ts[k])
    return bank, rows, models, series


def test_export_then_load_is_exact_through_a_checkpoint() -> None:
    """A row exported (and pickled, as a signed checkpoint is) goes on as the bank row and
    as the per-series model that lived alongside; loaded into another bank, it too."""
    bank, rows, models, series = trained_bank()
    exported = {r: pickle.loads(pickle.dumps(bank.export(r))) for r in rows}
    other = SeriesBank.for_config(1800.0, horizon=6)
    other_rows = [other.add() for _ in rows]
    # restored after a rebalance: the checkpoints of several series at once, and one alone
    other.load_many(other_rows[:-1], [pickle.loads(pickle.dumps(models[r])) for r in rows[:-1]])
    other.load(other_rows[-1], pickle.loads(pickle.dumps(models[rows[-1]])))
    for i in range(900, 1100):
        xs = np.array([series[k][i][1] for k in range(len(rows))])
        ts = np.array([series[k][i][0] for k in range(len(rows))])
        u = bank.update(np.array(rows), xs, ts)
        v = other.update(np.array(other_rows), xs, ts)
        for k, r in enumerate(rows):
            want = models[r].update(float(xs[k]), float(ts[k]))
            assert_same(u.series_update(k), want, f"bank row {r} at {i}")
            assert_same(v.series_update(k), want, f"loaded row at {i}")
            assert_same(exported[r].update(float(xs[k]), float(ts[k])), want, f"exported {r} at {i}")


def test_a_shard_checkpoint_restores_rows_exactly_elsewhere() -> None:
    """Rows taken as arrays (pickled, as a signed checkpoint is) and put at other rows of
    another bank go on exactly as the per-series models."""
    bank, rows, models, series = trained_bank()
    blob = pickle.dumps(bank.shard(rows[2:]))
    other = SeriesBank.for_config(1800.0, horizon=6)
    spare = [other.add() for _ in range(3)]  # the restored rows land elsewhere
    dest = [other.add() for _ in rows[2:]]
    other.load_shard(dest, pickle.loads(blob))
    for i in range(900, 1000):
        ks = range(2, len(rows))
        xs = np.array([series[k][i][1] for k in ks])
        ts = np.array([series[k][i][0] for k in ks])
        v = other.update(np.array(dest), xs, ts)
        for j, k in enumerate(ks):
            assert_same(v.series_update(j), models[rows[k]].update(float(xs[j]), float(ts[j])),
                        f"shard row {k} at {i}")
    assert not other.updates(spare).any()
    with pytest.raises(ValueError, match="rows"):
        other.load_shard(dest[:-1], pickle.loads(blob))
    wrong = SeriesBank.for_config(1800.0, horizon=7)
    with pytest.raises(ValueError, match="configuration"):
        wrong.load_shard([wrong.add() for _ in dest], pickle.loads(blob))


def test_load_refuses_a_model_of_another_configuration() -> None:
    bank = SeriesBank.for_config(60.0, period_steps=10, horizon=6)
    row = bank.add()
    with pytest.raises(ValueError, match="configuration"):
        bank.load(row, make_series_model(60.0, 12, 6))
    with pytest.raises(ValueError, match="configuration"):
        bank.load(row, make_series_model(60.0, 10, 6, threshold=0.8))


def test_a_freed_row_is_reused_cold_and_the_others_keep_their_state() -> None:
    bank, rows, models, series = trained_bank(n=400)
    before = {r: pickle.dumps(bank.export(r)) for r in rows}
    bank.remove(rows[2])
    with pytest.raises(KeyError):
        bank.export(rows[2])
    again = bank.add()
    assert again == rows[2] and len(bank) == len(rows)
    fresh = make_series_model(1800.0, None, 6)
    for k in range(60):  # the reused row behaves as a new model; the others are untouched
        t, x = series[2][k]
        u = bank.update(np.array([again]), np.array([x]), np.array([t]))
        assert_same(u.series_update(0), fresh.update(x, t), f"reused row at {k}")
    for r in rows:
        if r != again:
            assert pickle.dumps(bank.export(r)) == before[r]
    grown = [bank.add() for _ in range(3 * bank.capacity)]  # growing keeps every row's state
    assert bank.capacity > max(grown)
    for r in rows:
        if r != again:
            assert pickle.dumps(bank.export(r)) == before[r]


def test_update_refuses_rows_not_in_use_and_rows_twice() -> None:
    bank = SeriesBank.for_config(60.0, horizon=6)
    row = bank.add()
    with pytest.raises(KeyError):
        bank.update(np.array([row + 1]), np.array([1.0]), np.array([0.0]))
    with pytest.raises(ValueError, match="twice"):
        bank.update(np.array([row, row]), np.array([1.0, 2.0]), np.array([0.0, 60.0]))
    with pytest.raises(ValueError, match="finite"):
        bank.update(np.array([row]), np.array([1.0]), np.array([np.nan]))
    assert int(bank.updates([row])[0]) == 0  # nothing refused was learnt


def test_other_series_model_settings_are_mirrored_too() -> None:
    """max_skip, recovery and adapt_on_drift come from the factory's model."""
    from detectors.anomaly import default_detector

    for adapt in (False, True):
        def factory(adapt: bool = adapt) -> SeriesModel:
            return SeriesModel(default_detector(), default_forecaster(1800.0), 0.8, 4, max_skip=5,
                               recovery_window=30, recovered_ratio=2.0, adapt_on_drift=adapt)

        rng = np.random.default_rng(11)
        bank = SeriesBank(factory)
        rows = [bank.add() for _ in range(4)]
        models = {r: factory() for r in rows}
        series = [synthetic(k, 900, 1800.0, rng) for k in (1, 2, 3, 10)]
        calls = [(rows, [s[i][1] for s in series], [s[i][0] for s in series]) for i in range(900)]
        seen = run_both(bank, models, calls, f"adapt_on_drift={adapt}")
        assert seen["drift_started"] and seen["anomalous"]


# -- the detector part -----------------------------------------------------------------

def test_the_default_detector_is_vectorised() -> None:
    """Fails when detectors/anomaly.py changed and detectors/_bank_detector.py no longer
    mirrors it: banks then fall back to one detector object per row (exact but slow)."""
    bank = SeriesBank.for_config(60.0)
    assert isinstance(bank.detector, FusionBank), (
        "the bank's vectorised detector no longer reproduces RecordFusionDetector: "
        "update FusionBank in detectors/_bank_detector.py")


def test_a_detector_the_bank_does_not_mirror_runs_as_objects_with_the_same_numbers() -> None:
    def factory() -> SeriesModel:
        return SeriesModel(FlatlineDetector(min_run=4), default_forecaster(60.0, 10), 0.5, 6)

    bank = SeriesBank(factory)
    assert isinstance(bank.detector, ObjectBank)
    assert isinstance(make_detector_bank(RecordFusionDetector(), 0, vectorised=False), ObjectBank)
    rng = np.random.default_rng(1)
    rows = [bank.add() for _ in range(4)]
    models = {r: factory() for r in rows}
    series = [synthetic(k, 700, 60.0, rng) for k in (0, 2, 5, 8)]
    calls = [(rows, [s[i][1] for s in series], [s[i][0] for s in series]) for i in range(700)]
    seen = run_both(bank, models, calls, "flatline detector")
    assert seen["anomalous"]
    m = bank.export(rows[3])
    assert pickle.dumps(m.detector) == pickle.dumps(models[rows[3]].detector)
    other = SeriesBank(factory)
    dest = [other.add() for _ in rows]
    other.load_shard(dest, pickle.loads(pickle.dumps(bank.shard(rows))))
    assert pickle.dumps(other.export(dest[3]).detector) == pickle.dumps(models[rows[3]].detector)


def test_row_bytes_restore_rows_exactly_elsewhere_and_name_their_layout() -> None:
    """Rows as bytes (the model agent's cheap checkpoint) put at other rows of another bank of
    the same configuration go on exactly as the per-series models; a bank of another
    configuration has another layout, and a record of the wrong size is refused."""
    bank, rows, models, series = trained_bank()
    blobs = bank.row_bytes_of(rows[1:])
    assert blobs is not None and all(len(b) == bank.row_bytes() for b in blobs)
    other = SeriesBank.for_config(1800.0, horizon=6)
    spare = [other.add() for _ in range(2)]
    dest = [other.add() for _ in rows[1:]]
    assert other.layout == bank.layout
    other.load_row_bytes(dest, blobs)
    for i in range(900, 1000):
        ks = range(1, len(rows))
        xs = np.array([series[k][i][1] for k in ks])
        ts = np.array([series[k][i][0] for k in ks])
        v = other.update(np.array(dest), xs, ts)
        for j, k in enumerate(ks):
            assert_same(v.series_update(j), models[rows[k]].update(float(xs[j]), float(ts[j])),
                        f"row bytes {k} at {i}")
    assert not other.updates(spare).any()
    assert SeriesBank.for_config(1800.0, horizon=7).layout != bank.layout
    with pytest.raises(ValueError, match="bytes"):
        other.load_row_bytes(spare[:1], [blobs[0][:-1]])


def test_a_bank_of_detector_objects_gives_no_row_bytes() -> None:
    bank = SeriesBank(lambda: SeriesModel(FlatlineDetector(min_run=4), default_forecaster(60.0, 10), 0.5, 6))
    row = bank.add()
    assert bank.layout is None and bank.row_bytes_of([row]) is None
    with pytest.raises(ValueError):
        bank.load_row_bytes([row], [b""])


def test_ring_quantiles_of_full_partial_and_nan_rings_are_those_of_a_sort() -> None:
    """The order statistics of the conformal rings, as ``ConformalBand.quantiles`` takes them
    from its sorted errors: full rings (their shared ranks), partial and empty ones, both ring
    lengths (the longer one sorted as integer keys), signed zeros, the largest 2-byte floats,
    and NaN of either sign (last, as numpy sorts floats)."""
    from detectors.conformal import _quantile

    f = SeriesBank.for_config(step_seconds=10.0, horizon=62).forecaster
    rng = np.random.default_rng(7)
    m = 400
    for window in (f.window, f.group_window):
        z = (rng.normal(size=(m, window)) * rng.choice([1e-6, 1.0, 1e4], size=(m, 1))).astype(np.float16)
        specials = np.array([0.0, -0.0, 65504.0, -65504.0, np.nan, -np.nan], np.float16)
        hit = rng.random(z.shape) < 0.01
        z[hit] = rng.choice(specials, size=int(hit.sum()))
        clean = rng.random(m) < 0.9  # most rows without NaN
        z[clean] = np.where(np.isnan(z[clean]), np.float16(1.0), z[clean])
        n = np.where(np.arange(m) % 2 == 0, window, rng.integers(0, window + 1, m))
        z[np.arange(window) >= n[:, None]] = np.inf  # unused slots
        assert np.signbit(z[np.isnan(z)]).any() and (~np.signbit(z[np.isnan(z)])).any()
        want = np.zeros((m, 3))
        for i in range(m):
            zs = np.sort(z[i, : n[i]].astype(np.float32)).tolist()  # NaN last
            if zs:
                want[i] = (_quantile(zs, f.q_lo), zs[len(zs) // 2], _quantile(zs, f.q_hi))
        full = n == window
        for sel in (np.ones(m, bool), full):
            got = f._order_stats(z[sel].copy(), n[sel].astype(np.int16), window)
            np.testing.assert_array_equal(got, want[sel])
