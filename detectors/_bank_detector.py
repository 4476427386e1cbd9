"""The anomaly detector of a :class:`~detectors.bank.SeriesBank`: score and learn many rows at once.

Two implementations of one small interface (:class:`DetectorBank`):

- :class:`FusionBank` mirrors :class:`~detectors.anomaly.RecordFusionDetector`
  (with its :class:`~detectors.records.RecordScaler` records and its
  :class:`~detectors.flatline.FlatlineDetector`) as arrays, step by step;
- :class:`ObjectBank` keeps one detector object per row and calls it in a
  loop: exact for any detector, and the fallback while a changed detector is
  not mirrored yet.

:func:`make_detector_bank` picks :class:`FusionBank` only when it reproduces
the detector: the detector is a ``RecordFusionDetector`` of parameters it
mirrors, and a short synthetic series (:func:`_self_check`: warm-up, records,
profile, a spike, a level shift, a stuck stretch) scores the same through both.
So a change to ``detectors/anomaly.py`` cannot make the bank's scores silently
differ: until this module is updated to match, banks fall back to the objects
(slower, exact), and ``tests/detectors/test_bank.py`` says so.

To update the mirror after a detector change: change :class:`FusionBank`
(``_score`` mirrors ``score_one``, ``_learn`` mirrors ``learn_one``, each block
commented with the reference's lines) and :data:`MIRRORED` (the parameters it
knows), then run ``tests/detectors/test_bank.py``.
"""

from __future__ import annotations

import math
from array import array
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from detectors._bank_columns import Columns, grown, py_max
from detectors.anomaly import COMPONENTS, RecordFusionDetector
from detectors.base import AnomalyDetector
from detectors.records import RecordScaler

#: RecordFusionDetector parameters FusionBank mirrors (a detector with another one falls back)
MIRRORED = frozenset({
    "warmup", "record_warmup", "fast", "slow", "level_decay", "range_decay", "period", "bins",
    "profile_alpha", "profile_visits", "profile_gain", "volatility_alpha", "flat_factor",
    "flat_min_run", "hold", "margin", "relax", "quiet", "step", "step_gain", "profile_local",
    "components",
})


class DetectorBank(Protocol):
    """Scores and learns rows of one detector configuration."""

    vectorised: bool

    def score_learn(self, rows: np.ndarray, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``score_one(x, t)`` then ``learn_one(x, t)`` for every row; the scores."""

    def grow(self, need: int) -> None: ...

    def reset(self, rows: np.ndarray) -> None: ...

    def export(self, row: int, detector: AnomalyDetector) -> AnomalyDetector:
        """Row ``row`` as a detector: ``detector`` (a fresh one of the bank's configuration)
        filled with the row's state, or a copy of the row's own object."""

    def load_many(self, rows: np.ndarray, detectors: list[AnomalyDetector]) -> None:
        """Set ``rows[i]`` to ``detectors[i]``'s state."""

    def take(self, rows: np.ndarray) -> Any:
        """The state of ``rows`` (picklable), for :meth:`put` (a shard checkpoint)."""

    def put(self, rows: np.ndarray, state: Any) -> None:
        """Set ``rows`` to a state taken by :meth:`take` (same configuration)."""

    def row_bytes(self) -> int: ...

    def nbytes(self) -> int: ...


class ObjectBank:
    """One detector object per row, called in a Python loop (exact for any detector)."""

    vectorised = False

    def __init__(self, template: AnomalyDetector, capacity: int = 0) -> None:
        self.template = template
        self.objs: list[AnomalyDetector | None] = [None] * capacity

    def _obj(self, row: int) -> AnomalyDetector:
        d = self.objs[row]
        if d is None:
            d = self.objs[row] = self.template.clone()
        return d

    def score_learn(self, rows: np.ndarray, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows))
        for i, (r, xv, tv) in enumerate(zip(rows.tolist(), x.tolist(), t.tolist(), strict=True)):
            d = self._obj(r)
            out[i] = d.score_one(xv, tv)
            d.learn_one(xv, tv)
        return out

    def grow(self, need: int) -> None:
        self.objs.extend([None] * (grown(len(self.objs), need) - len(self.objs)))

    def reset(self, rows: np.ndarray) -> None:
        for r in rows.tolist():
            self.objs[r] = None

    def export(self, row: int, detector: AnomalyDetector) -> AnomalyDetector:
        return _copy(self._obj(row))

    def load_many(self, rows: np.ndarray, detectors: list[AnomalyDetector]) -> None:
        for r, d in zip(rows.tolist(), detectors, strict=True):
            self.objs[r] = _copy(d)

    def take(self, rows: np.ndarray) -> Any:
        return [_copy(self._obj(r)) for r in rows.tolist()]

    def put(self, rows: np.ndarray, state: Any) -> None:
        self.load_many(rows, state)

    def row_bytes(self) -> int:
        return 8  # a list slot; the objects are Python objects, not arrays

    def nbytes(self) -> int:
        return 8 * len(self.objs)


def _copy(obj: Any) -> Any:
    import copy

    return copy.deepcopy(obj)


class FusionBank:
    """:class:`~detectors.anomaly.RecordFusionDetector` rows as arrays."""

    vectorised = True

    def __init__(self, template: RecordFusionDetector, capacity: int = 0) -> None:
        d = template
        self.p = {k: getattr(d, k) for k in MIRRORED}
        self.use = tuple(c in d.components for c in COMPONENTS)
        self.fl = (d._flat.factor, d._flat.min_run, d._flat.warmup)
        recs = {"lv": d._level_rec, "pr": d._profile_rec, "vo": d._vol_rec, "st": d._step_rec,
                "pl": d._local_rec}
        self.rec = {k: (r.warmup, r.decay, r.gain, r.relax, r.quiet) for k, r in recs.items()}
        B = d.bins
        spec = {
            "n": ((), np.int64, 0),
            "lo": ((), np.float64, math.inf),
            "hi": ((), np.float64, -math.inf),
            "plo": ((), np.float64, math.inf),
            "phi": ((), np.float64, -math.inf),
            "prev": ((), np.float64, 0.0),
            "has_prev": ((), np.bool_, False),
            "fast_mean": ((), np.float64, 0.0),
            "slow_mean": ((), np.float64, 0.0),
            "vol": ((), np.float64, 0.0),
            "mean": ((B,), np.float64, 0.0),
            "visits": ((B,), np.int32, 0),  # one a visit of the bin: 2**31 steps before overflow
            # the profile's local scale: each bin's mean absolute deviation, their sum over
            # the bins visited twice, and the series' mean absolute deviation
            "dev": ((B,), np.float64, 0.0),
            "dev_sum": ((), np.float64, 0.0),
            "dev_bins": ((), np.int64, 0),
            "mad": ((), np.float64, 0.0),
            "visit_points": ((), np.int64, 0),  # points so far in the current bin visit
            "per_visit": ((), np.int64, 1),  # points in the last complete one
            "last_bin": ((), np.int64, -1),
            "since": ((), np.int64, d.hold),
            "parts": ((len(COMPONENTS),), np.float64, np.nan),  # last_parts, NaN = None
            "fl_last": ((), np.float64, 0.0),
            "fl_has": ((), np.bool_, False),
            "fl_run": ((), np.int64, 0),
            "fl_longest": ((), np.int64, 0),
            "fl_changes": ((), np.int64, 0),
            # the step view: the last 2k values (oldest at ``ri``), the sums of both halves
            "ring": ((2 * d.step,), np.float64, 0.0),
            "ri": ((), np.int64, 0),
            "n_step": ((), np.int64, 0),
            "s_old": ((), np.float64, 0.0),
            "s_new": ((), np.float64, 0.0),
        }
        for k in recs:
            spec[f"{k}_record"] = ((), np.float64, 0.0)
            spec[f"{k}_n"] = ((), np.int64, 0)
            spec[f"{k}_peak"] = ((), np.float64, 0.0)
        self.cols = Columns(spec, capacity)

    def grow(self, need: int) -> None:
        self.cols.grow(need)

    def reset(self, rows: np.ndarray) -> None:
        self.cols.reset(rows)

    def row_bytes(self) -> int:
        return self.cols.row_bytes()

    def nbytes(self) -> int:
        return self.cols.nbytes()

    # -- RecordScaler ---------------------------------------------------------
    def _rec_score(self, k: str, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        warmup, _, gain, _, _ = self.rec[k]
        c = self.cols
        record, peak, n = c[f"{k}_record"][rows], c[f"{k}_peak"][rows], c[f"{k}_n"][rows]
        rec = np.where(record > peak, record, peak)
        zero = np.where((u > 0.0) & (n >= warmup), 1.0, 0.0)
        ratio = gain * u / rec
        s = ratio - 0.5
        out = np.where(ratio <= 1.0, 0.5 * ratio,
                       np.where(n < warmup, 0.5, np.where(s > 1.0, 1.0, s)))
        return np.where(rec <= 0.0, zero, out)

    def _rec_learn(self, k: str, rows: np.ndarray, u: np.ndarray, incident: np.ndarray) -> None:
        _, decay, _, relax, quiet = self.rec[k]
        c = self.cols
        record, peak = c[f"{k}_record"][rows], c[f"{k}_peak"][rows]
        rec = record * (1.0 - decay)
        if relax:
            peak = np.where((peak > rec) & (u < quiet * rec), peak - relax * (peak - rec), peak)
            inc = incident
        else:
            inc = np.zeros(len(rows), np.bool_)
        c[f"{k}_peak"][rows] = np.where(inc & (u > peak), u, peak)
        c[f"{k}_record"][rows] = np.where(inc, record, np.where(u > rec, u, rec))
        c[f"{k}_n"][rows] += 1

    def _rec_learn_where(self, k: str, ok: np.ndarray, rows: np.ndarray, u: np.ndarray,
                         incident: np.ndarray) -> None:
        """:meth:`_rec_learn` of the rows where ``ok`` (all of them: no gathers)."""
        if ok.all():
            self._rec_learn(k, rows, u, incident)
        elif ok.any():
            self._rec_learn(k, rows[ok], u[ok], incident[ok])

    # -- the detector -----------------------------------------------------------
    def score_learn(self, rows: np.ndarray, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        out = np.zeros(len(rows))
        fin = np.isfinite(x)  # score_one / learn_one: a non-finite value scores 0, is not learnt
        if not fin.all():
            rows, x, t = rows[fin], x[fin], t[fin]
        if not len(rows):
            return out
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            stats = self._compute(rows, x, t)
            score, raw_parts = self._score(rows, x, stats)
            self._learn(rows, x, stats, raw_parts)
        out[fin] = score
        return out

    def _compute(self, rows: np.ndarray, x: np.ndarray, t: np.ndarray) -> tuple:
        """``_compute``: (fast mean, level, profile, volatility, bin, step, local profile); -1 = n/a."""
        p, c = self.p, self.cols
        period, bins, pv = p["period"], p["bins"], p["profile_visits"]
        # _bin(t)
        tf = np.isfinite(t)
        tt = np.where(tf, t, 0.0)
        b = np.where(tf, ((tt % period) / period * bins).astype(np.int64) % bins, -1)
        has = c["has_prev"][rows]
        fm0, prev = c["fast_mean"][rows], c["prev"][rows]
        fm = fm0 + p["fast"] * (x - fm0)
        level = np.abs(fm - c["slow_mean"][rows])
        vol0 = c["vol"][rows]
        vol = vol0 + p["volatility_alpha"] * (np.abs(x - prev) - vol0)
        # the profile view: the bin's mean, or the interpolation between bin centres if smaller
        bb = np.maximum(b, 0)
        # the bins read, not the rows' whole profiles (48 bins of 20 bytes a row)
        visits, mean = c["visits"], c["mean"]
        ar = np.arange(len(rows))
        seen = (b >= 0) & (visits[rows, bb] >= pv)
        prof = np.where(seen, np.abs(x - mean[rows, bb]), -1.0)
        u = (tt % period) / period * bins - 0.5
        fu = np.floor(u)
        i = fu.astype(np.int64)
        j = (i + 1) % bins
        i %= bins
        both = seen & (visits[rows, i] >= pv) & (visits[rows, j] >= pv)
        w = u - fu
        r = np.abs(x - (1.0 - w) * mean[rows, i] - w * mean[rows, j])
        prof = np.where(both & (r < prof), r, prof)
        # the same residual in units of the bin's own scale, where the profile explains the
        # series (its bins' deviations are small beside the series')
        d = c["dev"][rows, bb] + vol0
        nb = c["dev_bins"][rows]
        local = (seen & (d > 0.0) & (nb > 0)
                 & (c["dev_sum"][rows] < p["profile_local"] * c["mad"][rows] * nb))
        loc = np.where(local, prof / d, -1.0)
        # the step view: the mean of the last k values (x included) minus that of the k
        # before, in mean absolute steps so far
        k = p["step"]
        st = np.full(len(rows), -1.0)
        if k:
            ring, ri = c["ring"][rows], c["ri"][rows]
            mid = ring[ar, (ri + k) % (2 * k)]
            new = c["s_new"][rows] + x - mid
            old = c["s_old"][rows] + mid - ring[ar, ri]
            st = np.where((c["n_step"][rows] >= 2 * k) & (vol0 > 0.0),
                          np.abs(new - old) / (k * vol0), -1.0)
        # the first point (``_prev is None``): (x, -1, -1, -1, b, -1)
        fm = np.where(has, fm, x)
        level = np.where(has, level, -1.0)
        prof = np.where(has, prof, -1.0)
        vol = np.where(has, vol, -1.0)
        st = np.where(has, st, -1.0)
        loc = np.where(has, loc, -1.0)
        return fm, level, prof, vol, b, st, loc

    def _score(self, rows: np.ndarray, x: np.ndarray, stats: tuple) -> tuple[np.ndarray, np.ndarray]:
        """``score_one``: the output scores and the parts (NaN: None) for ``learn_one``."""
        p, c = self.p, self.cols
        _, level, prof, vol, _, st, loc = stats
        use_s, use_l, use_p, use_v, use_f, use_st = self.use
        m = len(rows)
        nan = np.full(m, np.nan)
        has = c["has_prev"][rows]
        s_sp = nan
        if use_s:  # spatial: outside the range (the records' and the incidents' peaks)
            lo0, plo = c["lo"][rows], c["plo"][rows]
            hi0, phi = c["hi"][rows], c["phi"][rows]
            lo = np.where(lo0 < plo, lo0, plo)
            hi = np.where(hi0 > phi, hi0, phi)
            out = py_max(x - hi, lo - x)
            e = out / (hi - lo)
            sp = np.where(out <= 0.0, 0.0, np.where(hi > lo, np.where(e > 0.5, 1.0, 0.5 + e), 1.0))
            s_sp = np.where(has, sp, np.nan)
        s_l = np.where(level >= 0.0, self._rec_score("lv", rows, level), np.nan) if use_l else nan
        s_p = nan
        if use_p:  # the larger of the residual's score and its local scale's
            s_p = np.where(prof >= 0.0, self._rec_score("pr", rows, prof), np.nan)
            s_loc = self._rec_score("pl", rows, loc)
            s_p = np.where((prof >= 0.0) & (loc >= 0.0) & (s_loc > s_p), s_loc, s_p)
        s_v = np.where(vol >= 0.0, self._rec_score("vo", rows, vol), np.nan) if use_v else nan
        s_f = self._flat_score(rows, x) if use_f else nan
        s_st = np.where(st >= 0.0, self._rec_score("st", rows, st), np.nan) if use_st else nan
        parts = np.stack([s_sp, s_l, s_p, s_v, s_f, s_st], axis=1)
        c["parts"][rows] = parts  # last_parts, set even during the warm-up
        # _raw(): the largest part present (0 if none); halved within a hold; 0 while warming up
        raw = np.max(np.where(np.isnan(parts), -np.inf, parts), axis=1)
        raw = np.where(np.isneginf(raw), 0.0, raw)
        held = np.where(c["since"][rows] < p["hold"], raw * 0.5, raw)
        score = np.where(c["n"][rows] < p["warmup"], 0.0, self._output(held))
        return score, raw

    def _output(self, raw: np.ndarray) -> np.ndarray:
        m = self.p["margin"]
        out = 0.9 + 0.1 * (raw - 0.5 - m) / (0.5 - m)
        return np.where(raw <= 0.5, raw,
                        np.where(raw <= 0.5 + m, 0.5 + 0.4 * (raw - 0.5) / m,
                                 np.where(out > 1.0, 1.0, out)))

    def _flat_score(self, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        factor, min_run, warmup = self.fl
        c = self.cols
        same = c["fl_has"][rows] & (x == c["fl_last"][rows])
        run = c["fl_run"][rows] + 1
        limit = py_max(float(min_run), factor * c["fl_longest"][rows])
        s = 0.5 + 0.5 * (run - limit) / limit
        s = np.where(s > 1.0, 1.0, s)
        return np.where((c["fl_changes"][rows] < warmup) | ~same | (run < limit), 0.0, s)

    def _flat_learn(self, rows: np.ndarray, x: np.ndarray) -> None:
        c = self.cols
        last, has = c["fl_last"][rows], c["fl_has"][rows]
        run, longest, changes = c["fl_run"][rows], c["fl_longest"][rows], c["fl_changes"][rows]
        same = has & (x == last)
        new = ~same
        c["fl_run"][rows] = np.where(same, run + 1, 1)
        c["fl_changes"][rows] = np.where(new & has, changes + 1, changes)
        c["fl_longest"][rows] = np.where(new & has & (run > longest), run, longest)
        c["fl_last"][rows] = x
        c["fl_has"][rows] = True

    def _learn(self, rows: np.ndarray, x: np.ndarray, stats: tuple, raw_parts: np.ndarray) -> None:
        """``learn_one`` (after ``score_one`` with the same point)."""
        p, c = self.p, self.cols
        fm, level, prof, vol, b, st, loc = stats
        hold, quiet, relax, margin = p["hold"], p["quiet"], p["relax"], p["margin"]
        n = c["n"][rows]
        raw = np.where(n >= p["warmup"], raw_parts, 0.0)
        since = c["since"][rows]
        # the hold: an alarm starts it, a quiet point (below quiet x the records) ends it
        since = np.where(raw > 0.5 + margin, 0,
                         np.where((since < hold) & (raw < 0.5 * quiet), hold, since + 1))
        c["since"][rows] = since
        inc = since < hold  # within an incident, the views raise their peaks, not their records
        for k, u in (("lv", level), ("pr", prof), ("pl", loc), ("vo", vol)):
            self._rec_learn_where(k, u >= 0.0, rows, u, inc)
        c["vol"][rows] = np.where(vol >= 0.0, vol, c["vol"][rows])
        self._flat_learn(rows, x)
        self._rec_learn_where("st", st >= 0.0, rows, st, inc)
        k = p["step"]
        if k:
            ar = np.arange(len(rows))
            ring, i = c["ring"][rows], c["ri"][rows]
            mid = ring[ar, (i + k) % (2 * k)]
            s_new = c["s_new"][rows] + (x - mid)
            s_old = c["s_old"][rows] + (mid - ring[ar, i])
            ring[ar, i] = x
            i = (i + 1) % (2 * k)
            # exact sums once per turn, so rounding does not accumulate (left to right, as sum())
            turn = i == 0
            if turn.any():
                lo_half, hi_half = ring[:, 0].copy(), ring[:, k].copy()
                for j in range(1, k):
                    lo_half += ring[:, j]
                    hi_half += ring[:, k + j]
                s_old = np.where(turn, lo_half, s_old)
                s_new = np.where(turn, hi_half, s_new)
            c["ring"][rows], c["ri"][rows] = ring, i
            c["s_old"][rows], c["s_new"][rows] = s_old, s_new
            c["n_step"][rows] += 1
        n = n + 1
        c["n"][rows] = n
        has = c["has_prev"][rows]
        lo, hi, slow = c["lo"][rows], c["hi"][rows], c["slow_mean"][rows]
        # the range: shrinks towards the slow mean; its incident peak relaxes while the value
        # is in its middle; the value widens the peak (incident) or the range (otherwise)
        rd = p["range_decay"]
        if rd:
            lo = np.where(has, lo + rd * (slow - lo), lo)
            hi = np.where(has, hi - rd * (hi - slow), hi)
        edge = 0.5 * (1.0 - quiet) * (hi - lo)
        plo, phi = c["plo"][rows], c["phi"][rows]
        if relax:
            mid = (lo + edge <= x) & (x <= hi - edge)
            phi = np.where(mid & (phi > hi), phi - relax * (phi - hi), phi)
            plo = np.where(mid & (plo < lo), plo + relax * (lo - plo), plo)
            peak = inc & (lo <= hi)
        else:
            peak = np.zeros(len(rows), np.bool_)
        plo = np.where(peak & (x < plo), x, plo)
        phi = np.where(peak & (x > phi), x, phi)
        lo = np.where(~peak & (x < lo), x, lo)
        hi = np.where(~peak & (x > hi), x, hi)
        c["lo"][rows], c["hi"][rows], c["plo"][rows], c["phi"][rows] = lo, hi, plo, phi
        # the means (the first point sets both), then the time-of-day profile's bin
        slow_a = p["slow"]
        a = np.where(slow_a * n > 1.0, slow_a, 1.0 / n)
        c["fast_mean"][rows] = np.where(has, fm, x)
        mad = c["mad"][rows]
        c["mad"][rows] = np.where(has, mad + a * (np.abs(x - slow) - mad), mad)
        c["slow_mean"][rows] = np.where(has, slow + a * (x - slow), x)
        c["prev"][rows] = x
        c["has_prev"][rows] = True
        ok = b >= 0
        if ok.any():
            r, bb, xv = rows[ok], b[ok], x[ok]
            moved = bb != c["last_bin"][r]
            c["visits"][r[moved], bb[moved]] += 1
            c["last_bin"][r] = bb
            k = c["visits"][r, bb]
            c["dev_bins"][r] += moved & (k == 2)
            vp, per = c["visit_points"][r], c["per_visit"][r]
            per = np.where(moved & (vp > 0), vp, per)
            c["visit_points"][r] = np.where(moved, 0, vp) + 1
            c["per_visit"][r] = per
            pa = p["profile_alpha"]
            a = np.where(pa * k > 1.0, pa, 1.0 / k)
            mb = c["mean"][r, bb]
            dv = a / per * (np.abs(xv - mb) - c["dev"][r, bb])  # per visit, not per point
            dv = np.where(k > 1, dv, 0.0)
            c["dev"][r, bb] += dv
            c["dev_sum"][r] += dv
            c["mean"][r, bb] = mb + a * (xv - mb)

    # -- rows <-> objects -------------------------------------------------------
    def export(self, row: int, d: AnomalyDetector) -> AnomalyDetector:
        assert isinstance(d, RecordFusionDetector)
        c = self.cols
        d._n = int(c["n"][row])
        d._lo, d._hi = float(c["lo"][row]), float(c["hi"][row])
        d._plo, d._phi = float(c["plo"][row]), float(c["phi"][row])
        d._prev = float(c["prev"][row]) if c["has_prev"][row] else None
        d._fast_mean, d._slow_mean = float(c["fast_mean"][row]), float(c["slow_mean"][row])
        d._vol = float(c["vol"][row])
        for k, rec in (("lv", d._level_rec), ("pr", d._profile_rec), ("vo", d._vol_rec),
                       ("st", d._step_rec), ("pl", d._local_rec)):
            rec.record, rec.n, rec.peak = (float(c[f"{k}_record"][row]), int(c[f"{k}_n"][row]),
                                           float(c[f"{k}_peak"][row]))
        d._mean = array("d", c["mean"][row].tolist())
        d._visits = array("l", c["visits"][row].tolist())
        d._dev = array("d", c["dev"][row].tolist())
        d._dev_sum, d._dev_bins = float(c["dev_sum"][row]), int(c["dev_bins"][row])
        d._mad = float(c["mad"][row])
        d._visit_points, d._per_visit = int(c["visit_points"][row]), int(c["per_visit"][row])
        d._last_bin = int(c["last_bin"][row])
        f = d._flat
        f._last = float(c["fl_last"][row]) if c["fl_has"][row] else None
        f._run, f._longest, f._changes = (int(c["fl_run"][row]), int(c["fl_longest"][row]),
                                          int(c["fl_changes"][row]))
        d._since_alarm = int(c["since"][row])
        d._ring = array("d", c["ring"][row].tolist())
        d._ri, d._n_step = int(c["ri"][row]), int(c["n_step"][row])
        d._s_old, d._s_new = float(c["s_old"][row]), float(c["s_new"][row])
        d._key = None
        d.last_parts = tuple(None if math.isnan(v) else float(v) for v in c["parts"][row])
        return d

    def load_many(self, rows: np.ndarray, detectors: list[AnomalyDetector]) -> None:
        self.cols.set_rows(rows, [self._state(d) for d in detectors])

    def take(self, rows: np.ndarray) -> Any:
        return self.cols.take(rows)

    def put(self, rows: np.ndarray, state: Any) -> None:
        self.cols.put(rows, state)

    @staticmethod
    def _state(d: AnomalyDetector) -> dict[str, Any]:
        assert isinstance(d, RecordFusionDetector)
        f = d._flat
        out = {
            "n": d._n, "lo": d._lo, "hi": d._hi, "plo": d._plo, "phi": d._phi,
            "has_prev": d._prev is not None, "prev": 0.0 if d._prev is None else d._prev,
            "fast_mean": d._fast_mean, "slow_mean": d._slow_mean, "vol": d._vol,
            "mean": np.frombuffer(d._mean, np.float64), "visits": d._visits.tolist(),
            "last_bin": d._last_bin, "since": d._since_alarm,
            "parts": [np.nan if v is None else v for v in d.last_parts],
            "fl_has": f._last is not None, "fl_last": 0.0 if f._last is None else f._last,
            "fl_run": f._run, "fl_longest": f._longest, "fl_changes": f._changes,
            "ring": np.frombuffer(d._ring, np.float64), "ri": d._ri, "n_step": d._n_step,
            "s_old": d._s_old, "s_new": d._s_new,
            "dev": np.frombuffer(d._dev, np.float64), "dev_sum": d._dev_sum,
            "dev_bins": d._dev_bins, "mad": d._mad,
            "visit_points": d._visit_points, "per_visit": d._per_visit,
        }
        for k, rec in (("lv", d._level_rec), ("pr", d._profile_rec), ("vo", d._vol_rec),
                       ("st", d._step_rec), ("pl", d._local_rec)):
            out[f"{k}_record"], out[f"{k}_n"], out[f"{k}_peak"] = rec.record, rec.n, rec.peak
        return out


def _self_check(template: RecordFusionDetector) -> bool:
    """Whether :class:`FusionBank` scores a synthetic series as ``template``'s class does."""
    ref = template.clone()
    bank = FusionBank(template, 1)
    rows = np.zeros(1, np.int64)
    step = template.period / template.bins / 2.0  # two points per profile bin
    n = max(4 * template.record_warmup, int(3 * template.profile_visits * 2 * template.bins))
    for i in range(n):
        x = 100.0 + 20.0 * math.sin(2.0 * math.pi * i / (2 * template.bins)) + (i * 7919 % 13) / 3.0
        if i == n // 2:
            x = 400.0  # a spike
        elif i > 3 * n // 4:
            x += 60.0  # a level shift
        if n - 40 < i < n - 5:
            x = 55.5  # stuck
        t = i * step
        s = ref.score_one(x, t)
        ref.learn_one(x, t)
        if abs(float(bank.score_learn(rows, np.array([x]), np.array([t]))[0]) - s) > 1e-9:
            return False
    return True


@lru_cache(maxsize=32)
def _mirrors(cls: type, params: tuple) -> bool:
    d = cls(**dict(params))
    return _self_check(d)


def make_detector_bank(template: AnomalyDetector, capacity: int = 0,
                       vectorised: bool = True) -> DetectorBank:
    """:class:`FusionBank` where it reproduces ``template``, else :class:`ObjectBank`."""
    if vectorised and type(template) is RecordFusionDetector:
        params = template._get_params()
        if set(params) <= MIRRORED and _state_is_plain(template):
            if _mirrors(type(template), tuple(sorted(params.items()))):
                return FusionBank(template, capacity)
    return ObjectBank(template, capacity)


def _state_is_plain(d: RecordFusionDetector) -> bool:
    # the records are RecordScalers as FusionBank knows them
    return all(type(r) is RecordScaler
               for r in (d._level_rec, d._profile_rec, d._vol_rec, d._step_rec, d._local_rec))
