"""Split-conformal prediction intervals from a forecaster's own recent errors.

One :class:`ConformalBand` per forecaster keeps, for every horizon ``h``, the
last ``window`` out-of-sample errors of the ``h``-step forecast, each divided by
the local error scale (an exponentially weighted mean absolute error) *before*
that error was learnt. The band at horizon ``h`` is then
``yhat + scale[h] * quantile(z[h], q)`` — locally adaptive (wide in a noisy
peak, narrow in a quiet night) and calibrated by construction on exchangeable
errors. Upper and lower quantiles are taken separately, so the band is
asymmetric when errors are (bursty load: rare, large under-forecasts).

References
----------
Vovk, Gammerman, Shafer, *Algorithmic Learning in a Random World* (2005);
Lei et al., "Distribution-free predictive inference for regression" (2018),
locally weighted conformal scores.
"""

from __future__ import annotations

import math
import struct
from array import array
from bisect import bisect_right

from river import base

#: errors per horizon before the scale is exponentially weighted and clipped
WARMUP = 20
#: the largest normalised error kept (the largest finite 2-byte float); beyond it an error
#: is kept as Z_MAX (a bound resting on such errors is Z_MAX local error scales wide already)
Z_MAX = 65504.0


def half(z: float) -> float:
    """``z`` as the ring keeps it: clipped to ``[-Z_MAX, Z_MAX]`` and rounded to the nearest
    2-byte float (IEEE binary16, ties to even).

    A normalised error is a multiple of the local error scale, so the rounding moves a band's
    bound by at most 2**-11 (0.05 %) of its distance from the forecast (and by less than
    ``6e-8`` scales where ``|z| < 2**-14``): far below the quantile's own sampling error,
    and half the memory of a 4-byte float.

    >>> half(1.0), half(0.1), half(1e9), half(-1e9), half(2049.0)
    (1.0, 0.0999755859375, 65504.0, -65504.0, 2048.0)
    >>> abs(half(3.14159) - 3.14159) <= 2 ** -11 * 3.14159
    True
    """
    return struct.unpack("<e", struct.pack("<e", min(max(z, -Z_MAX), Z_MAX)))[0]


class ConformalBand(base.Base):
    """Per-horizon residual quantiles, normalised by a running error scale.

    Optionally *Mondrian*: errors are also kept per group of the "surprise" at
    issue time (the latest one-step normalised error, cut at ``edges``), and a
    group's own quantiles are used once it holds ``min_group`` errors. After a
    sudden jump the next errors are not those of a quiet hour, and each group
    keeps its own calibration.

    Parameters
    ----------
    horizon
        Number of horizons tracked (1..horizon steps ahead).
    coverage
        Nominal coverage of ``[lower, upper]``; the upper bound is the
        ``(1 + coverage) / 2`` quantile, the lower one ``(1 - coverage) / 2``.
    window
        Errors kept per horizon (a ring buffer; each error rounded to a 2-byte float,
        :func:`half`).
    scale_alpha
        Weight of a new absolute error in the running scale.
    scale_clip
        An absolute error enters the scale capped at this many scales, so one
        burst does not widen the band for long (``None``: no cap).
    power
        Errors are first divided by ``(|yhat| + 0.1 * mean|y|) ** power``: 0
        keeps them absolute, 1 makes them relative to the forecast (load whose
        noise grows with its level: a burst widens the band, a quiet night
        narrows it), 0.5 suits Poisson-like counts.
    edges
        Increasing cut points of the surprise defining the Mondrian groups
        (empty: one group).
    group_window
        Errors kept per horizon and group.
    min_group
        Errors a group needs before its own quantiles are used.

    Examples
    --------
    >>> band = ConformalBand(horizon=2, coverage=0.8, window=50)
    >>> for i in range(200):
    ...     band.learn_one(1, 100.0, 100.0 + (i % 10) - 4.5)
    ...     band.learn_one(2, 100.0, 100.0 + 2 * ((i % 10) - 4.5))
    >>> band.count(1), band.count(2)
    (50, 50)
    >>> lo, mid, hi = band.interval(1, 100.0)
    >>> 94.0 < lo < 97.0 < mid < 103.0 < hi < 106.0
    True
    >>> lo2, _, hi2 = band.interval(2, 100.0)
    >>> hi2 - lo2 > hi - lo
    True
    """

    def __init__(
        self,
        horizon: int = 6,
        coverage: float = 0.9,
        window: int = 256,
        scale_alpha: float = 0.05,
        scale_clip: float | None = None,
        power: float = 0.0,
        edges: tuple[float, ...] = (),
        group_window: int = 128,
        min_group: int = 30,
    ) -> None:
        self.horizon = horizon
        self.coverage = coverage
        self.window = window
        self.scale_alpha = scale_alpha
        self.scale_clip = scale_clip
        self.power = power
        self.edges = tuple(edges)
        self.group_window = group_window
        self.min_group = min_group
        self._mean = 0.0
        self._surprise = 0.0
        n_buf = 1 + (len(self.edges) + 1 if self.edges else 0)
        # buffer 0 pools every error; buffer 1 + g holds group g's
        self._z = [[array("f") for _ in range(horizon)] for _ in range(n_buf)]
        self._pos = [[0] * horizon for _ in range(n_buf)]
        self._scale = [0.0] * horizon
        self._q: list[list[tuple[float, float] | None]] = [[None] * horizon for _ in range(n_buf)]

    def count(self, h: int, group: int | None = None) -> int:
        """How many errors are stored for horizon ``h`` (1-based), pooled or in a group."""
        return len(self._z[0 if group is None else 1 + group][h - 1])

    def scale(self, h: int) -> float:
        """Running mean absolute (normalised) error of the ``h``-step forecast."""
        return self._scale[h - 1]

    def group(self) -> int:
        """The Mondrian group of a forecast issued now (0 without edges).

        >>> b = ConformalBand(horizon=1, edges=(-2.0, 2.0))
        >>> for y in [10, 11, 9, 10, 11, 9, 10, 11, 9, 40]:
        ...     b.learn_one(1, 10.0, y)
        >>> b.group()
        2
        """
        return bisect_right(self.edges, self._surprise)

    def learn_one(self, h: int, yhat: float, y: float, group: int = 0) -> None:
        """Learn that the ``h``-step forecast ``yhat`` (issued in ``group``) met ``y``."""
        i = h - 1
        if h == 1:
            self._mean += (0.01 if self._mean else 1.0) * (abs(y) - self._mean)
        err = (y - yhat) / self._unit(yhat)
        s = self._scale[i]
        if s > 0.0:
            z = err / s
            if h == 1:
                self._surprise = z
            zk = half(z)
            self._push(0, i, zk, self.window)
            if self.edges:
                self._push(1 + group, i, zk, self.group_window)
            n = len(self._z[0][i])
            # a plain running mean while young (the first errors say little), then EW
            alpha = max(self.scale_alpha, 1.0 / (n + 1))
            young = n < WARMUP
            a = abs(err) if self.scale_clip is None or young else min(abs(err), self.scale_clip * s)
            self._scale[i] = s + alpha * (a - s)
        else:
            self._scale[i] = abs(err) or 1e-9 * (abs(y) + 1.0)

    def _push(self, b: int, i: int, z: float, window: int) -> None:
        buf = self._z[b][i]
        if len(buf) < window:
            buf.append(z)
        else:
            pos = self._pos[b]
            buf[pos[i]] = z
            pos[i] = (pos[i] + 1) % window
        self._q[b][i] = None

    def _unit(self, yhat: float) -> float:
        if not self.power:
            return 1.0
        return (abs(yhat) + 0.1 * self._mean + 1e-9) ** self.power

    def quantiles(self, h: int, group: int | None = None) -> tuple[float, float, float]:
        """The (lower, median, upper) normalised error quantiles for horizon ``h``.

        A group's own quantiles once it holds ``min_group`` errors, else the
        pooled ones.
        """
        i = min(h, self.horizon) - 1
        b = 0
        if group is not None and self.edges and len(self._z[1 + group][i]) >= self.min_group:
            b = 1 + group
        q = self._q[b][i]
        if q is None:
            zs = sorted(self._z[b][i])
            if not zs:
                return (0.0, 0.0, 0.0)
            tail = (1.0 - self.coverage) / 2.0
            q = (_quantile(zs, tail), zs[len(zs) // 2], _quantile(zs, 1.0 - tail))
            self._q[b][i] = q
        return q

    def unit(self, h: int, yhat: float) -> float:
        """The error scale at horizon ``h`` around ``yhat``, in the series' unit."""
        return self._scale[min(h, self.horizon) - 1] * self._unit(yhat)

    def interval(
        self, h: int, yhat: float, group: int | None = None
    ) -> tuple[float, float, float]:
        """(lower, median, upper) of the actual around ``yhat`` at horizon ``h``.

        Beyond the tracked horizons, the last one's errors are used. The
        median corrects a forecast that is biased in the current group (e.g.
        lagging after a jump), which lowers its absolute error.
        """
        i = min(h, self.horizon)
        lo, med, hi = self.quantiles(i, group)
        s = self._scale[i - 1] * self._unit(yhat)
        return (yhat + min(lo, 0.0) * s, yhat + med * s, yhat + max(hi, 0.0) * s)


def ring_length(coverage: float, tail_errors: int) -> int:
    """Errors a ring holds so that each bound of a ``coverage`` band is its ``tail_errors``-th
    most extreme error.

    The bounds are the ``(1 -/+ coverage) / 2`` quantiles, each the ``ceil(q (n + 1))``-th
    of ``n`` sorted errors (:func:`_quantile`). With ``n = tail_errors / tail - 1``
    (``tail = (1 - coverage) / 2``) the upper bound is the ``tail_errors``-th largest
    error, the lower one the ``tail_errors``-th smallest, and the band's expected
    coverage on exchangeable errors is exactly ``coverage`` (``(n + 1 - 2 tail_errors) /
    (n + 1)``); a ring of another length over-covers slightly (the ``ceil``). So the
    ring's length says how many observed tail errors each bound rests on: more steady
    the bound, fewer follow a change sooner (and cost less memory).

    >>> ring_length(0.8, 5), ring_length(0.9, 5), ring_length(0.8, 13)
    (49, 99, 129)
    >>> n = ring_length(0.8, 5); n + 1 - math.ceil(0.9 * (n + 1)), math.ceil(0.1 * (n + 1))
    (5, 5)
    """
    if not 0.0 < coverage < 1.0 or tail_errors < 1:
        raise ValueError("coverage must be in (0, 1) and tail_errors at least 1")
    tail = (1.0 - coverage) / 2.0
    return max(1, round(tail_errors / tail) - 1)


def _quantile(sorted_values: list[float], q: float) -> float:
    """Conservative empirical quantile: the ceil(q (n + 1))-th order statistic."""
    n = len(sorted_values)
    k = math.ceil(q * (n + 1)) - 1
    return sorted_values[min(max(k, 0), n - 1)]
