""":class:`~detectors.forecasting.SeasonalEnsemble` for many series at once, as arrays.

The state of one ``SeasonalEnsemble`` (its :class:`~detectors.seasonal.SeasonalProfile`
bins, its :class:`~detectors.conformal.ConformalBand` ring buffers, its pending
forecasts) is one row of fixed-size arrays; :meth:`EnsembleBank.learn` and
:meth:`EnsembleBank.forecast` do for every given row, in one call, what
``learn_one`` and ``forecast`` do for one series. Branches per series are masks;
the only Python loops run over horizons, members and periods, in the order the
reference runs them, so that the arithmetic is the same operation for operation.

Storage matches the reference's: profile bins are 4-byte floats (``array("f")``
there), conformal errors 2-byte floats (the reference's :func:`~detectors.conformal.half`),
other floats 8-byte; a ring's count and position
(below its length) are 2-byte integers where the length fits, other integers 8-byte. A ring buffer's slots
are laid out as the reference's (the k-th error pushed lands in slot
``k % window``) and unused slots hold ``+inf``, so a sort puts them last.

Used through :class:`detectors.bank.SeriesBank`.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from detectors._bank_columns import Columns, params, py_max, py_min
from detectors.conformal import WARMUP, Z_MAX, ConformalBand
from detectors.forecasting import ADAPT_RATE, SeasonalEnsemble

#: a pending slot that holds no forecast (the reference's ``None``)
NO_ISSUE = np.iinfo(np.int64).min


def _pow(x: np.ndarray, p: float) -> np.ndarray:
    # x ** p; 0.5 is a square root (correctly rounded, where Python's ** calls libm's
    # pow, within an ulp of it)
    if p == 0.5:
        return np.sqrt(x)
    if p == 1.0:
        return x
    return np.power(x, p)



def _rows_of(rings: np.ndarray, window: int, lin: np.ndarray) -> np.ndarray:
    """A copy of the ring buffers at flat index ``lin`` (rows of ``window``): ``np.take``
    copies whole rows, ~1.6x faster than fancy indexing."""
    return np.take(rings.reshape(-1, window), lin, axis=0)

#: rings longer than this are sorted as integer keys (:func:`_sort_keyed`): measured on
#: (12,288, W) rings, numpy 2.4, AVX-512: 256 slots 7.3 -> 3.2 ms; 128 slots 1.3 -> 1.5 ms
KEYED_SORT = 128

#: the key of -inf (:func:`_sort_keyed`): a smaller key is a NaN with its sign bit set
_KEY_NEG_INF = int(np.array([-np.inf], np.float16).view(np.int16)[0] ^ 0x7FFF)


def _sort_keyed(z: np.ndarray) -> np.ndarray:
    """Rows of 2-byte floats ``z`` sorted in place as numpy sorts them (NaN last), returned.

    A float16's bits as an int16, its 15 low bits flipped where it is negative, order as the
    floats do (-0 just below +0: equal values either way) but for a NaN with its sign bit set,
    which sorts first: such rows (none unless an error overflowed) are sorted as floats.
    """
    k = z.view(np.int16)
    s = k >> 15
    s &= 0x7FFF
    k ^= s
    k.sort(axis=-1)
    bad = k[:, 0] < _KEY_NEG_INF
    s = k >> 15
    s &= 0x7FFF
    k ^= s  # back to the floats' bits
    if bad.any():
        zb = z[bad]
        zb.sort(axis=-1)
        z[bad] = zb
    return z


class EnsembleBank:
    """Rows of :class:`~detectors.forecasting.SeasonalEnsemble` state sharing one configuration."""

    def __init__(self, template: SeasonalEnsemble, capacity: int = 0) -> None:
        f = template
        band = f._band
        self.step = float(f.step_seconds)
        self.periods = tuple(f.periods)
        self.H = int(f.horizon)
        self.K = 1 + len(self.periods)
        self.level_alpha = f.level_alpha
        self.season_alpha = f.season_alpha
        self.error_alpha = f.error_alpha
        self.min_samples = f.min_samples
        self.median_point = f.median_point
        # d = damping ** h, by repeated multiplication as in _members
        d, self.damp = 1.0, []
        for _ in range(self.H):
            d *= f.damping
            self.damp.append(d)
        self.damp_arr = np.array(self.damp)
        self.prof_bins = [p._bins for p in f._profiles]
        self.prof_width = [p._width for p in f._profiles]
        # the members' errors per phase (none: off)
        pe = f._phase_err
        self.phase_alpha = pe[0].alpha if pe else 0.0
        self.phase_period = pe[0].period if pe else 1
        self.phase_bins = pe[0]._bins if pe else 0
        self.phase_width = pe[0]._width if pe else 1.0
        # the band
        self.coverage = band.coverage
        self.window = band.window
        self.scale_alpha = band.scale_alpha
        self.scale_clip = band.scale_clip
        self.power = band.power
        self.edges = tuple(band.edges)
        self.G = len(self.edges) + 1 if self.edges else 0
        self.group_window = band.group_window
        self.min_group = band.min_group
        tail = (1.0 - self.coverage) / 2.0
        self.q_lo, self.q_hi = tail, 1.0 - tail
        H, K, P = self.H, self.K, len(self.periods)
        # a ring's count and position are below its length: 2 bytes where that fits
        cnt = np.int16 if max(self.window, self.group_window) <= np.iinfo(np.int16).max else np.int32
        spec = {
            "idx": ((), np.int64, -1),
            "level": ((), np.float64, 0.0),
            "last": ((), np.float64, 0.0),
            "dev": ((P,), np.float64, 0.0),
            "resid": ((P,), np.float64, 0.0),
            "boost": ((), np.int64, 0),
            "palpha": ((P,), np.float64, self.season_alpha),
            "mse": ((K, H), np.float64, -1.0),
            "yhat": ((H,), np.float64, 0.0),
            "group": ((), np.int8, 0),
            "nonneg": ((), np.bool_, True),
            "pend_idx": ((H,), np.int64, NO_ISSUE),
            "pend_mem": ((H, K, H), np.float64, 0.0),
            "pend_ens": ((H, H), np.float64, 0.0),
            "pend_grp": ((H,), np.int8, 0),
            "b_mean": ((), np.float64, 0.0),
            "b_surprise": ((), np.float64, 0.0),
            "b_scale": ((H,), np.float64, 0.0),
            "zp": ((H, self.window), np.float16, np.inf),
            "zp_n": ((H,), cnt, 0),
            "zp_pos": ((H,), cnt, 0),
        }
        for j, bins in enumerate(self.prof_bins):
            spec[f"prof{j}"] = ((bins,), np.float32, np.nan)
        if self.phase_bins:
            spec["perr"] = ((K, self.phase_bins), np.float32, np.nan)
        if self.G:
            spec["zg"] = ((self.G, H, self.group_window), np.float16, np.inf)
            spec["zg_n"] = ((self.G, H), cnt, 0)
            spec["zg_pos"] = ((self.G, H), cnt, 0)
        self.cols = Columns(spec, capacity)
        self._hs0 = np.arange(H)
        self._ks = np.arange(K)
        self._rank_tables: dict[int, np.ndarray] = {}

    # -- helpers ------------------------------------------------------------
    def _bin(self, j: int, idx: np.ndarray) -> np.ndarray:
        return self._phase(idx, self.periods[j], self.prof_width[j], self.prof_bins[j])

    @staticmethod
    def _phase(idx: np.ndarray, period: int, width: float, bins: int) -> np.ndarray:
        """``SeasonalProfile._bin``: the bin of step ``idx``."""
        return np.minimum(((idx % period) / width).astype(np.int64), bins - 1)

    def _unit(self, yhat: np.ndarray, mean: np.ndarray) -> np.ndarray:
        if not self.power:
            return np.ones_like(yhat)
        return _pow(np.abs(yhat) + 0.1 * mean + 1e-9, self.power)

    def _members(self, rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
        c = self.cols
        out = np.empty((len(rows), self.K, self.H))
        out[:, 0, :] = c["level"][rows][:, None]
        hs = self._hs0 + 1
        for j in range(len(self.periods)):
            at = (rows * self.prof_bins[j])[:, None] + self._bin(j, idx[:, None] + hs)
            s = np.take(c[f"prof{j}"], at).astype(np.float64)  # prof[rows, bins of each step]
            dev = c["dev"][rows, j]
            out[:, 1 + j, :] = s + dev[:, None] * self.damp_arr  # NaN where never seen
        return out

    def _combine(self, rows: np.ndarray, idx: np.ndarray, members: np.ndarray) -> np.ndarray:
        mse = self.cols["mse"][rows]
        num = np.zeros((len(rows), self.H))
        den = np.zeros((len(rows), self.H))
        use = ~(mse < 0.0) & ~np.isnan(members)  # (m, K, H)
        if self.phase_bins:  # each member's error at each forecast step's phase
            b = self._phase(idx[:, None] + self._hs0 + 1, self.phase_period,
                            self.phase_width, self.phase_bins)
            pb = self.phase_bins  # perr[row, k, b]: flat indices, (m, K, H)
            at = (rows * (self.K * pb))[:, None, None] + (self._ks * pb)[:, None] + b[:, None, :]
            perr = np.take(self.cols["perr"], at).astype(np.float64)  # (m, K, H)
            # the weights use them where every member with a forecast has one at the phase
            # (per member: a reduction over so short an axis is slower than the loop)
            some, missing = use[:, 0, :], use[:, 0, :] & np.isnan(perr[:, 0, :])
            for k in range(1, self.K):
                some = some | use[:, k, :]
                missing = missing | (use[:, k, :] & np.isnan(perr[:, k, :]))
            by_phase = some & ~missing  # (m, H)
        with np.errstate(divide="ignore", invalid="ignore"):
            for k in range(self.K):
                v = members[:, k, :]
                w = 1.0 / (mse[:, k, :] + 1e-12)
                if self.phase_bins:
                    w = np.where(by_phase, w / (perr[:, k, :] + 1e-12), w)
                num = np.where(use[:, k, :], num + w * v, num)
                den = np.where(use[:, k, :], den + w, den)
            return np.where(den > 0.0, num / den, members[:, 0, :])

    def _group(self, rows: np.ndarray) -> np.ndarray:
        s = self.cols["b_surprise"][rows]
        g = np.zeros(len(rows), np.int8)
        for e in self.edges:  # bisect_right: edges not above the surprise (NaN: all)
            g += ~(s < e)
        return g

    @staticmethod
    def _push(buf: np.ndarray, n_: np.ndarray, pos_: np.ndarray, lin: np.ndarray, z: np.ndarray,
              window: int) -> None:
        """Append ``z`` to the ring buffers at flat index ``lin`` (``ConformalBand._push``)."""
        cnt, ps = n_.reshape(-1), pos_.reshape(-1)
        n, pos = cnt[lin], ps[lin]
        notfull = n < window
        if notfull.any():  # a count moves where the ring is not full, a position where it is
            slot = np.where(notfull, n, pos)
            cnt[lin[notfull]] = n[notfull] + 1
            full = ~notfull
            ps[lin[full]] = (pos[full] + 1) % window
        else:
            slot = pos
            ps[lin] = (pos + 1) % window
        buf.reshape(-1)[lin * window + slot] = z

    # -- the band -------------------------------------------------------------
    def _band_learn(self, r: np.ndarray, hi: np.ndarray, yhat: np.ndarray, y: np.ndarray,
                    group: np.ndarray) -> None:
        """``ConformalBand.learn_one(h, yhat, y, group)`` for pairs (row ``r``, horizon ``hi + 1``).

        A row's horizons are independent but for the mean level, which its
        one-step error updates first (the reference learns h = 1 first).
        """
        c = self.cols
        one = hi == 0
        if one.any():
            r1 = r[one]
            mean = c["b_mean"][r1]
            c["b_mean"][r1] = mean + np.where(mean != 0.0, 0.01, 1.0) * (np.abs(y[one]) - mean)
        err = (y - yhat) / self._unit(yhat, c["b_mean"][r])
        s = c["b_scale"][r, hi]
        pos = s > 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            z = err / s
        new = np.where(np.abs(err) != 0.0, np.abs(err), 1e-9 * (np.abs(y) + 1.0))
        if pos.any():
            rp, hp, zp, sp, ep = r[pos], hi[pos], z[pos], s[pos], err[pos]
            first = one[pos]
            c["b_surprise"][rp[first]] = zp[first]
            z16 = py_min(py_max(zp, -Z_MAX), Z_MAX).astype(np.float16)  # conformal.half
            lin = rp * self.H + hp
            self._push(c["zp"], c["zp_n"], c["zp_pos"], lin, z16, self.window)
            if self.G:
                g = group[pos].astype(np.int64)
                self._push(c["zg"], c["zg_n"], c["zg_pos"], (rp * self.G + g) * self.H + hp, z16,
                           self.group_window)
            n = c["zp_n"].reshape(-1)[lin]
            alpha = py_max(self.scale_alpha, 1.0 / (n + 1))
            ae = np.abs(ep)
            if self.scale_clip is None:
                a = ae
            else:
                a = np.where(n < WARMUP, ae, py_min(ae, self.scale_clip * sp))
            new[pos] = sp + alpha * (a - sp)
        c["b_scale"][r, hi] = new

    def _quantiles(self, rows: np.ndarray, group: np.ndarray) -> np.ndarray:
        """(m, H, 3) lower, median, upper normalised error quantiles per horizon.

        Per (row, horizon): the current group's errors once it holds ``min_group``,
        else the pooled ones; each buffer sorted (its unused slots are +inf, last).
        """
        c = self.cols
        H = self.H
        m = len(rows)
        lin = (rows[:, None] * H + self._hs0).ravel()  # (row, horizon) -> flat buffer index
        q = np.empty((m * H, 3))
        if self.G:
            glin = ((rows * self.G + group.astype(np.int64))[:, None] * H + self._hs0).ravel()
            gn = c["zg_n"].reshape(-1)[glin]
            sel = gn >= self.min_group
            if sel.all():
                return self._order_stats(_rows_of(c["zg"], self.group_window, glin), gn,
                                         self.group_window).reshape(m, H, 3)
            if sel.any():
                q[sel] = self._order_stats(_rows_of(c["zg"], self.group_window, glin[sel]), gn[sel],
                                           self.group_window)
                pooled = ~sel
                q[pooled] = self._order_stats(_rows_of(c["zp"], self.window, lin[pooled]),
                                              c["zp_n"].reshape(-1)[lin[pooled]], self.window)
                return q.reshape(m, H, 3)
        return self._order_stats(_rows_of(c["zp"], self.window, lin), c["zp_n"].reshape(-1)[lin],
                                 self.window).reshape(m, H, 3)

    def _ranks(self, n: np.ndarray) -> np.ndarray:
        """(k, 3): the ranks of the lower, median and upper quantiles among ``n`` errors
        (``conformal._quantile``; 0 where ``n`` is 0)."""
        n = n.astype(np.int64)
        last = np.maximum(n - 1, 0)
        return np.stack([
            np.clip(np.ceil(self.q_lo * (n + 1)).astype(np.int64) - 1, 0, last),
            np.minimum(n // 2, last),
            np.clip(np.ceil(self.q_hi * (n + 1)).astype(np.int64) - 1, 0, last),
        ], axis=-1)

    def _order_stats(self, z: np.ndarray, n: np.ndarray, window: int) -> np.ndarray:
        """(k, 3): ConformalBand.quantiles of each row of ``z`` (a copy, sorted here; rings of
        ``window``) holding ``n`` errors.

        Rings of more than :data:`KEYED_SORT` slots are sorted as 2-byte integers that order as
        their floats (:func:`_sort_keyed`; numpy sorts those ~2x faster than 2-byte floats), the others
        as floats. Full rings (the common case) share their three ranks: one gather of columns.
        """
        if window > KEYED_SORT:
            z = _sort_keyed(z)
        else:
            z.sort(axis=-1)
        table = self._rank_table(window)
        if (n == window).all():
            return z[:, table[window]].astype(np.float64)
        # flat indices: np.take is ~3x faster than take_along_axis here
        at = table[n] + (np.arange(len(z)) * window)[:, None]
        q = np.take(z, at).astype(np.float64)
        q[n == 0] = 0.0
        return q

    def _rank_table(self, window: int) -> np.ndarray:
        """(window + 1, 3): :meth:`_ranks` of every count a ring of ``window`` can hold."""
        t = self._rank_tables.get(window)
        if t is None:
            t = self._rank_tables[window] = self._ranks(np.arange(window + 1))
        return t

    # -- the ensemble ---------------------------------------------------------
    def learn(self, rows: np.ndarray, y: np.ndarray, t: np.ndarray) -> None:
        """``learn_one(y, t)`` for each row (rows unique; ``y`` finite: callers filter)."""
        if not len(rows):
            return
        c = self.cols
        cur = c["idx"][rows]
        idx = np.floor_divide(t, self.step).astype(np.int64)
        idx = np.where(idx <= cur, cur + 1, idx)
        self._score_pending(rows, idx, y)
        c["nonneg"][rows] &= y >= 0.0
        a = self.level_alpha
        lvl = c["level"][rows]
        c["level"][rows] = np.where(cur < 0, y, lvl + a * (y - lvl))
        c["last"][rows] = y
        P = len(self.periods)
        for j in range(P):
            prof = c[f"prof{j}"].reshape(-1)
            at = rows * self.prof_bins[j] + self._bin(j, idx)  # prof[rows, bin]
            v = prof[at].astype(np.float64)
            seen = ~np.isnan(v)
            rj = rows * P + j  # dev, resid, palpha [rows, j]
            dev = c["dev"].reshape(-1)[rj]
            c["dev"].reshape(-1)[rj] = np.where(seen, dev + a * ((y - v) - dev), dev)
            resid = c["resid"].reshape(-1)
            resid[rj] = np.where(seen, y - v, resid[rj])
            rate = c["palpha"].reshape(-1)[rj] / self.prof_width[j]
            prof[at] = np.where(seen, v + rate * (y - v), y).astype(np.float32)
        c["idx"][rows] = idx
        boost = c["boost"][rows]
        c["boost"][rows] = np.where(boost != 0, boost - 1, boost)
        ended = rows[boost == 1]
        if len(ended):
            c["palpha"][ended] = self.season_alpha
        members = self._members(rows, idx)
        yhat = self._combine(rows, idx, members)
        group = self._group(rows)
        c["yhat"][rows] = yhat
        c["group"][rows] = group
        H = self.H
        ps = rows * H + idx % H  # [rows, slot]
        c["pend_idx"].reshape(-1)[ps] = idx
        c["pend_mem"].reshape(-1, self.K * H)[ps] = members.reshape(len(rows), -1)
        c["pend_ens"].reshape(-1, H)[ps] = yhat
        c["pend_grp"].reshape(-1)[ps] = group

    def _score_pending(self, rows: np.ndarray, idx: np.ndarray, y: np.ndarray) -> None:
        """Score the forecasts issued at the last H steps against ``y`` (every horizon at once)."""
        c = self.cols
        H, K = self.H, self.K
        hs = self._hs0 + 1
        issued = idx[:, None] - hs
        slot = issued % H
        ps = rows[:, None] * H + slot  # flat (row, slot)
        ok = np.take(c["pend_idx"], ps) == issued
        if ok.all():  # the common case: every horizon pending, pairs in (row, horizon) order
            ri = np.repeat(np.arange(len(rows)), H)
            hi = np.tile(self._hs0, len(rows))
            ps, yy, dense = ps.ravel(), np.repeat(y, H), True
        elif not ok.any():
            return
        else:
            ri, hi = np.nonzero(ok)
            ps, yy, dense = ps[ri, hi], y[ri], False
        r = rows[ri]
        ks = self._ks
        # each member's forecast for now: pend_mem[r, slot, :, h], (pairs, K)
        v = np.take(c["pend_mem"], (ps * (K * H) + hi)[:, None] + ks * H)
        e2 = (yy[:, None] - v) ** 2
        mi = (r * (K * H) + hi)[:, None] + ks * H  # mse[r, :, h]
        mse = c["mse"].reshape(-1)
        m = mse[mi]
        new = np.where(m < 0.0, e2, m + self.error_alpha * (e2 - m))
        mse[mi] = np.where(np.isnan(v), m, new)
        if self.phase_bins:
            self._learn_phase(rows, idx, ri, hi, e2, dense)
        self._band_learn(r, hi, np.take(c["pend_ens"], ps * H + hi), yy,
                         np.take(c["pend_grp"], ps))

    def _learn_phase(self, rows: np.ndarray, idx: np.ndarray, ri: np.ndarray, hi: np.ndarray,
                     e2: np.ndarray, dense: bool = False) -> None:
        """Each member's mean squared error over the horizons scored now (pairs ``ri``, ``hi``,
        summed in the order of the horizons, as the reference), learnt at the phase of now.
        ``dense``: the pairs are every (row, horizon), in that order."""
        n, H, K = len(rows), self.H, self.K
        valid = ~np.isnan(e2)
        if dense:
            esum = np.where(valid, e2, 0.0).reshape(n, H, K)
            cnt_k = valid.reshape(n, H, K).sum(axis=1)
        else:
            esum = np.zeros((n * H, K))
            cnt = np.zeros((n * H, K), np.int64)
            at = ri * H + hi
            esum[at] = np.where(valid, e2, 0.0)
            cnt[at] = valid
            esum = esum.reshape(n, H, K)
            cnt_k = cnt.reshape(n, H, K).sum(axis=1)
        tot = np.zeros((n, K))
        for h in range(H):  # in horizon order: the reference's sum, operation for operation
            tot = tot + esum[:, h, :]
        have = cnt_k > 0
        if not have.any():
            return
        with np.errstate(divide="ignore", invalid="ignore"):
            sample = tot / cnt_k
        b = self._phase(idx, self.phase_period, self.phase_width, self.phase_bins)
        perr = self.cols["perr"].reshape(-1)
        at = (rows * (K * self.phase_bins) + b)[:, None] + self._ks * self.phase_bins  # perr[r, :, b]
        old = perr[at].astype(np.float64)  # (n, K)
        rate = self.phase_alpha / self.phase_width
        new = np.where(np.isnan(old), sample, old + rate * (sample - old))
        perr[at] = np.where(have, new, old).astype(np.float32)

    def adapt(self, rows: np.ndarray) -> None:
        """``adapt()`` (no offset) for each row: re-base after a drift."""
        if not len(rows):
            return
        c = self.cols
        fast = min(1.0, ADAPT_RATE * self.season_alpha)
        for j in range(len(self.periods)):
            prof = c[f"prof{j}"]
            delta = c["resid"][rows, j]
            prof[rows] = (prof[rows].astype(np.float64) + delta[:, None]).astype(np.float32)
            c["palpha"][rows, j] = fast
            c["dev"][rows, j] = 0.0
        c["resid"][rows] = 0.0
        c["boost"][rows] = min(self.periods, default=0)
        idx = c["idx"][rows]
        c["level"][rows] = np.where(idx >= 0, c["last"][rows], c["level"][rows])
        c["pend_idx"][rows] = NO_ISSUE
        have = rows[idx >= 0]
        if len(have):
            i = c["idx"][have]
            c["yhat"][have] = self._combine(have, i, self._members(have, i))

    def forecast(self, rows: np.ndarray) -> np.ndarray:
        """``forecast(H)`` for each row: (m, H, 3) of (yhat, lower, upper)."""
        c = self.cols
        out = np.zeros((len(rows), self.H, 3))
        if not len(rows):
            return out
        yhat = c["yhat"][rows]
        q = self._quantiles(rows, c["group"][rows])
        s = c["b_scale"][rows] * self._unit(yhat, c["b_mean"][rows][:, None])
        qlo, qmid, qhi = q[..., 0], q[..., 1], q[..., 2]
        lo = yhat + py_min(qlo, 0.0) * s
        hi = yhat + py_max(qhi, 0.0) * s
        point = yhat + qmid * s if self.median_point else yhat
        nonneg = c["nonneg"][rows][:, None]
        lo = np.where(nonneg, py_max(lo, 0.0), lo)
        point = np.where(nonneg, py_max(point, 0.0), point)
        hi = np.where(nonneg, py_max(hi, 0.0), hi)
        learnt = (c["idx"][rows] >= 0)[:, None]
        out[..., 0] = np.where(learnt, point, 0.0)
        out[..., 1] = np.where(learnt, lo, 0.0)
        out[..., 2] = np.where(learnt, hi, 0.0)
        return out

    def warm(self, rows: np.ndarray) -> np.ndarray:
        return self.cols["zp_n"][rows].min(axis=1) >= self.min_samples

    def error(self, rows: np.ndarray) -> np.ndarray:
        """The forecaster's ``error``; NaN where it is None."""
        c = self.cols
        known = (c["idx"][rows] >= 0) & (c["zp_n"][rows, 0] > 0)
        y0 = c["yhat"][rows, 0]
        e = c["b_scale"][rows, 0] * self._unit(y0, c["b_mean"][rows]) / (np.abs(c["level"][rows]) + 1e-9)
        return np.where(known, e, np.nan)

    # -- rows <-> objects -----------------------------------------------------
    def export(self, row: int, f: SeasonalEnsemble) -> None:
        """Write row ``row`` into the fresh forecaster ``f`` (same configuration)."""
        c = self.cols
        learnt = int(c["idx"][row]) >= 0
        for j, prof in enumerate(f._profiles):
            prof._values = array("f", c[f"prof{j}"][row].tobytes())
            prof.alpha = float(c["palpha"][row, j])
        f._dev = [float(v) for v in c["dev"][row]]
        f._resid = [float(v) for v in c["resid"][row]]
        f._boost = int(c["boost"][row])
        f._last = float(c["last"][row]) if learnt else None
        f._level = float(c["level"][row]) if learnt else None
        f._idx = int(c["idx"][row])
        f._mse = [[float(v) for v in r] for r in c["mse"][row]]
        for k, prof in enumerate(f._phase_err):
            prof._values = array("f", c["perr"][row, k].tobytes())
        pend: list = []
        for s in range(self.H):
            issue = int(c["pend_idx"][row, s])
            if issue == NO_ISSUE:
                pend.append(None)
                continue
            mem = [[float(v) for v in r] for r in c["pend_mem"][row, s]]
            pend.append((issue, mem, [float(v) for v in c["pend_ens"][row, s]],
                         int(c["pend_grp"][row, s])))
        f._pending = pend
        f._group = int(c["group"][row])
        f._yhat = [float(v) for v in c["yhat"][row]] if learnt else []
        f._nonneg = bool(c["nonneg"][row])
        b = f._band
        b._mean = float(c["b_mean"][row])
        b._surprise = float(c["b_surprise"][row])
        b._scale = [float(v) for v in c["b_scale"][row]]
        bufs = [(c["zp"][row], c["zp_n"][row], c["zp_pos"][row])]
        if self.G:
            bufs += [(c["zg"][row, g], c["zg_n"][row, g], c["zg_pos"][row, g]) for g in range(self.G)]
        b._z = [[array("f", z[i, : n[i]].astype(np.float32).tobytes()) for i in range(self.H)]
                for z, n, _ in bufs]
        b._pos = [[int(p[i]) for i in range(self.H)] for _, _, p in bufs]
        b._q = [[None] * self.H for _ in bufs]

    def state(self, f: SeasonalEnsemble) -> dict[str, Any]:
        """Every field's value for forecaster ``f`` (same configuration): a row's content."""
        H, K = self.H, self.K
        pend_idx = [NO_ISSUE] * H
        pend_mem = np.zeros((H, K, H))
        pend_ens = np.zeros((H, H))
        pend_grp = [0] * H
        for s, p in enumerate(f._pending):
            if p is not None:
                pend_idx[s], pend_mem[s], pend_ens[s], pend_grp[s] = p[0], p[1], p[2], p[3]
        last = getattr(f, "_last", None)
        b = f._band
        out: dict[str, Any] = {
            "idx": f._idx,
            "level": 0.0 if f._level is None else f._level,
            "last": 0.0 if last is None else last,
            "dev": f._dev,
            "resid": getattr(f, "_resid", f._dev),
            "boost": getattr(f, "_boost", 0),
            "palpha": [p.alpha for p in f._profiles],
            "mse": f._mse,
            "yhat": f._yhat or [0.0] * H,
            "group": f._group,
            "nonneg": getattr(f, "_nonneg", True),
            "pend_idx": pend_idx, "pend_mem": pend_mem, "pend_ens": pend_ens, "pend_grp": pend_grp,
            "b_mean": b._mean, "b_surprise": b._surprise, "b_scale": b._scale,
        }
        for j, prof in enumerate(f._profiles):
            out[f"prof{j}"] = np.frombuffer(prof._values, np.float32)
        if self.phase_bins:  # a forecaster from before the phase errors: none learnt yet
            pe = getattr(f, "_phase_err", [])
            out["perr"] = ([np.frombuffer(p._values, np.float32) for p in pe] if pe
                           else np.full((self.K, self.phase_bins), np.nan, np.float32))

        def ring(bufs: list, window: int) -> np.ndarray:
            z = np.full((H, window), np.inf, np.float16)
            for i, buf in enumerate(bufs):
                if len(buf):  # 2-byte floats kept as 4-byte ones: exact
                    z[i, : len(buf)] = np.frombuffer(buf, np.float32)
            return z

        out["zp"] = ring(b._z[0], self.window)
        out["zp_n"] = [len(buf) for buf in b._z[0]]
        out["zp_pos"] = b._pos[0]
        if self.G:
            out["zg"] = [ring(b._z[1 + g], self.group_window) for g in range(self.G)]
            out["zg_n"] = [[len(buf) for buf in b._z[1 + g]] for g in range(self.G)]
            out["zg_pos"] = b._pos[1:]
        return out


def config(f: SeasonalEnsemble) -> tuple:
    """What must be equal for two forecasters to share a bank."""
    band: ConformalBand = f._band
    return (type(f), params(f), type(band), params(band),
            tuple((p.period, p.max_bins, p._bins) for p in f._profiles),
            tuple((p.period, p.max_bins, p._bins) for p in getattr(f, "_phase_err", [])))
