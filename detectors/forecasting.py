"""The default load forecaster: seasonal profiles and a level, weighted by their errors.

:class:`SeasonalEnsemble` runs a few cheap forecasters side by side on one
series and combines them, per horizon, with weights inversely proportional to
each one's recent squared error at that horizon, scaled by how that member
usually fares at the forecast step's phase of the cycle:

- ``level``: an exponentially weighted level, flat over the horizon (wins on
  noisy, weakly seasonal series);
- one member per seasonal period (e.g. daily and weekly): the
  :class:`~detectors.seasonal.SeasonalProfile` value at the target phase plus
  the current deviation from the profile, decaying with the horizon (wins on
  cyclic traffic, and follows a level shift within a few steps).

The recent error alone forgets what happens once a cycle: through a long quiet
part the level is as good as a profile, so at a burst's ramp the ensemble was
a blend of both and forecast the ramp at a fraction of its height (after two
cycles of a burst every hour, about 70 %): too low, too late for a scaler.
So each member also keeps its squared error per phase of the shortest period
(at most :data:`PHASE_BINS` bins; smoothed over the phase's visits with
``phase_alpha``, as a :class:`~detectors.seasonal.SeasonalProfile`; one value
per member and bin, pooled over the horizons), and a member's weight for a
step is the inverse of the product of its recent error at the horizon and its
error at the step's phase: two independent pieces of evidence of its skill,
each relative to the other members' (a factor common to all members, such as
a spike that every member missed, cancels out). A member that fails at the
ramp every cycle (the level) loses its weight there, and only there. Where a
member has no error yet at the step's phase, the weights are the recent
errors' alone.

Prediction intervals come from :class:`~detectors.conformal.ConformalBand`:
empirical quantiles of the ensemble's own out-of-sample errors per horizon,
scaled by the local error level and the size of the forecast (noise grows with
load), kept separately after a surprise (Mondrian groups). The point forecast
reported is the band's median, i.e. the ensemble corrected by its recent bias.
``warm`` stays False until the band holds ``min_samples`` errors at every
tracked horizon: the scaler then knows not to trust it.

:func:`default_forecaster` is the one configuration the worker, ``foresight
detect`` and the backtest use. Its settings were chosen on the backtest of
``benchmarks/backtest.py`` (one configuration for every trace).
"""

from __future__ import annotations

import math

from detectors.base import Forecaster
from detectors.conformal import ConformalBand, ring_length
from detectors.forecast import Interval
from detectors.seasonal import SeasonalProfile

DAY = 86_400.0
WEEK = 7 * DAY
#: after a drift, profiles learn this many times faster for one period
ADAPT_RATE = 2.0
#: most phase bins of the members' errors (of the shortest period): a day in 15-minute
#: bins; fixed for memory (4 bytes per member and bin), not tuned
PHASE_BINS = 96
#: the default ``phase_alpha``: chosen leave-one-trace-out on the backtest's 11 shared traces
#: (``python benchmarks/backtest.py --phase``; candidates 0 (off), 0.1, 0.2, 0.35, 0.5; at the
#: shipped policy settings, by the backtest's objective): 0.1 in 10 of 11 folds (off in the
#: 11th), and 0.1 on all 11 (the only candidate with no trace above the equal-cost HPA)
PHASE_ALPHA = 0.1
#: nominal coverage of the forecast's ``[lower, upper]`` (the scaler's upper bound is its
#: ``(1 + COVERAGE) / 2`` quantile)
COVERAGE = 0.8
#: the default forecaster's conformal rings hold ``ring_length(coverage, m)`` errors per
#: horizon, ``m`` = TAIL_ERRORS (pooled ring, rings per group): each bound of the band is the
#: m-th most extreme error (:func:`~detectors.conformal.ring_length`); ``None``: the class's own
#: length (256 pooled, 128 per group). Chosen leave-one-trace-out on the backtest's 11 shared
#: traces (``python benchmarks/backtest.py --rings``, at the shipped policy settings; candidates:
#: every ring of 39, 49, 79 or 129 errors, the rings per group only of 59, 79 or 99, or the pooled
#: ring only of 39, 49, 79 or 129): the class's lengths in 9 of 11 folds. Shorter rings per group
#: lowered the upper bound's coverage (mean 0.902 -> 0.895-0.897, nominal 0.9) and raised MASE
#: (0.564 -> 0.567-0.575) and the cost against the equal-cost HPA; a shorter pooled ring kept
#: coverage and MASE but raised the cost (geometric mean 0.2795 -> 0.2796-0.2923). So the rings
#: keep their length; they are stored in 2-byte floats instead (:func:`~detectors.conformal.half`).
TAIL_ERRORS: tuple[int | None, int | None] = (None, None)
#: the default forecaster's most values per seasonal profile (``max_bins``; a longer period is
#: kept in bins of several steps). Chosen leave-one-trace-out (``python benchmarks/backtest.py
#: --bins``; candidates 2016, 1344, 1008, 672, i.e. a week of 5, 7.5, 10, 15-minute bins): 2016 in
#: 10 of 11 folds (fewer bins put alibaba_cluster_cpu_1min above the equal-cost HPA)
MAX_BINS = 2016


class SeasonalEnsemble(Forecaster):
    """Level + seasonal-profile members, inverse-error weighted, conformal bands.

    Parameters
    ----------
    step_seconds
        Length of one step; maps the event time ``t`` to a step index so that
        phases are known even across gaps (without ``t``, steps are counted).
    periods
        Seasonal periods in steps (empty: level only).
    horizon
        Horizons tracked for errors and intervals; longer forecasts reuse the
        last one's band.
    coverage
        Nominal coverage of ``[lower, upper]``.
    level_alpha
        Smoothing of the level and of each member's deviation from its profile.
    season_alpha
        Smoothing of the seasonal profiles, per period.
    damping
        Per-step decay of a deviation from the profile over the horizon.
    error_alpha
        Smoothing of the members' squared errors (ensemble weights).
    phase_alpha
        Smoothing, per visit of a phase, of each member's squared error at
        that phase of the shortest period (0: weights from the recent errors
        only).
    window
        Errors kept per horizon for the conformal band (pooled over its groups; at least
        ``min_samples``).
    group_window
        Errors kept per horizon and group of the band (``ConformalBand.group_window``).
    min_samples
        Errors per horizon before the forecaster calls itself warm.
    max_bins
        Largest number of stored values per seasonal profile.
    scale_alpha, scale_clip, band_power, band_edges
        The band's error scale smoothing and cap, how its width grows with the
        forecast, and the surprise cut points of its groups (see
        :class:`~detectors.conformal.ConformalBand`).
    median_point
        Report the band's median (the ensemble corrected by the median of its
        recent errors) as the point forecast, rather than the ensemble.

    Examples
    --------
    A cycle of 20 steps is learnt within two cycles; the forecast follows it.

    >>> import math
    >>> f = SeasonalEnsemble(step_seconds=60, periods=(20,), horizon=3, min_samples=10)
    >>> f.warm
    False
    >>> y = lambda i: 100 + 50 * math.sin(2 * math.pi * i / 20)
    >>> for i in range(60):
    ...     f.learn_one(y(i), t=60.0 * i)
    >>> f.warm
    True
    >>> fc = f.forecast(3)
    >>> [round(iv.yhat) for iv in fc], [round(y(i)) for i in (60, 61, 62)]
    ([100, 115, 129], [100, 115, 129])
    >>> all(iv.lower <= iv.yhat <= iv.upper for iv in fc)
    True

    It is usable offline on a list of numbers (no timestamps) and pickles:

    >>> import pickle
    >>> g = SeasonalEnsemble(horizon=2, min_samples=5)
    >>> for v in [10, 12, 11, 13, 12, 11, 12, 13, 12, 11]:
    ...     g.learn_one(v)
    >>> g2 = pickle.loads(pickle.dumps(g))
    >>> g2.forecast(2) == g.forecast(2), g.warm
    (True, True)
    """

    def __init__(
        self,
        step_seconds: float = 60.0,
        periods: tuple[int, ...] = (),
        horizon: int = 6,
        coverage: float = COVERAGE,
        level_alpha: float = 0.3,
        season_alpha: float = 0.35,
        damping: float = 0.8,
        error_alpha: float = 0.15,
        phase_alpha: float = 0.0,
        window: int = 256,
        group_window: int = 128,
        min_samples: int = 30,
        max_bins: int = 2016,
        scale_alpha: float = 0.05,
        scale_clip: float | None = 3.0,
        band_power: float = 0.5,
        band_edges: tuple[float, ...] = (-2.0, 1.0, 3.0),
        median_point: bool = True,
    ) -> None:
        self.step_seconds = step_seconds
        self.periods = tuple(periods)
        self.horizon = horizon
        self.coverage = coverage
        self.level_alpha = level_alpha
        self.season_alpha = season_alpha
        self.damping = damping
        self.error_alpha = error_alpha
        self.phase_alpha = phase_alpha
        self.window = window
        self.group_window = group_window
        self.min_samples = min_samples
        self.max_bins = max_bins
        self.scale_alpha = scale_alpha
        self.scale_clip = scale_clip
        self.band_power = band_power
        self.band_edges = tuple(band_edges)
        self.median_point = median_point

        if window < min_samples:
            raise ValueError(f"a band of {window} errors per horizon is never warm "
                             f"(min_samples={min_samples})")
        self._profiles = [SeasonalProfile(p, season_alpha, max_bins) for p in self.periods]
        self._dev = [0.0] * len(self.periods)
        self._resid = [0.0] * len(self.periods)  # last value minus its profile
        self._boost = 0  # steps left of faster profile learning (after a drift)
        self._last: float | None = None  # the last value learnt
        self._level: float | None = None
        self._idx = -1
        k = 1 + len(self.periods)
        self._mse = [[-1.0] * horizon for _ in range(k)]  # -1: not scored yet
        # per member: its squared error at each phase of the shortest period (none: off)
        self._phase_err = (
            [SeasonalProfile(min(self.periods), phase_alpha, PHASE_BINS) for _ in range(k)]
            if self.periods and phase_alpha > 0.0 else []
        )
        self._band = ConformalBand(
            horizon, coverage, window, scale_alpha, scale_clip, band_power, self.band_edges,
            group_window,
        )
        # forecasts issued at the last `horizon` steps:
        # slot -> (issue idx, members, ensemble, band group)
        self._pending: list[tuple[int, list[list[float]], list[float], int] | None] = [
            None
        ] * horizon
        self._group = 0
        self._yhat: list[float] = []
        self._nonneg = True  # no negative value seen: the forecast is clipped at 0

    # -- River protocol -------------------------------------------------
    def learn_one(self, y: float, t: float | None = None) -> None:
        """Learn the value ``y`` of the step holding event time ``t`` (epoch seconds)."""
        y = float(y)
        if not math.isfinite(y):
            return
        idx = int(t // self.step_seconds) if t is not None else self._idx + 1
        if idx <= self._idx:  # a repeated or late step: learn it as the next one
            idx = self._idx + 1
        self._score_pending(idx, y)
        self._nonneg = self._nonneg and y >= 0.0
        a = self.level_alpha
        self._level = y if self._level is None else self._level + a * (y - self._level)
        self._last = y
        for j, prof in enumerate(self._profiles):
            s = prof.value(idx)
            if s is not None:
                self._dev[j] += a * ((y - s) - self._dev[j])
                self._resid[j] = y - s
            prof.learn_one(idx, y)
        self._idx = idx
        boost = getattr(self, "_boost", 0)
        if boost:  # re-learning after a drift: back to the usual rate after a period
            self._boost = boost - 1
            if boost == 1:
                for prof in self._profiles:
                    prof.alpha = self.season_alpha
        members = self._members(idx)
        self._yhat = self._combine(idx, members)
        self._group = self._band.group()
        self._pending[idx % self.horizon] = (idx, members, self._yhat, self._group)

    def forecast(self, horizon: int) -> list[Interval]:
        """The next ``horizon`` steps (zeros before anything was learnt; see ``warm``)."""
        if not self._yhat:
            return [Interval(0.0, 0.0, 0.0) for _ in range(horizon)]
        out: list[Interval] = []
        for h in range(1, horizon + 1):
            if h > self.horizon:  # beyond the tracked horizons: the last one's, repeated
                out.extend(out[-1:] * (horizon - self.horizon))
                break
            yhat = self._yhat[h - 1]
            lo, mid, hi = self._band.interval(h, yhat, self._group)
            point = mid if self.median_point else yhat
            if self._nonneg:  # load never seen negative: neither is its forecast
                lo, point, hi = max(lo, 0.0), max(point, 0.0), max(hi, 0.0)
            out.append(Interval(point, lo, hi))
        return out

    @property
    def warm(self) -> bool:
        return all(self._band.count(h) >= self.min_samples for h in range(1, self.horizon + 1))

    @property
    def error(self) -> float | None:
        """Mean absolute one-step error relative to the level (None until known)."""
        if self._level is None or self._band.count(1) == 0 or not self._yhat:
            return None
        return self._band.unit(1, self._yhat[0]) / (abs(self._level) + 1e-9)

    def adapt(self, offset: float | None = None) -> None:
        """Re-learn fast after a drift.

        Each seasonal profile is shifted by ``offset`` (by default by the
        last value's deviation from it), so it keeps its shape at the new
        level at once, and learns at :data:`ADAPT_RATE` times its rate for
        the next shortest period, so a changed shape is re-learnt within
        about a period; the level restarts at the last value; the forecasts
        issued before the drift are not scored (their errors belong to the
        change, not to the members).

        >>> f = SeasonalEnsemble(periods=(8,), horizon=1, min_samples=3, median_point=False)
        >>> for i in range(80):
        ...     f.learn_one(10.0 + (i % 8))
        >>> for i in range(80, 86):  # the level jumps by 100
        ...     f.learn_one(110.0 + (i % 8))
        >>> f.adapt()
        >>> f.learn_one(116.0)
        >>> round(f.forecast(1)[0].yhat)  # 117 expected; without adapt() 106
        116
        """
        resid = getattr(self, "_resid", self._dev)  # checkpoints from before drift
        for j, prof in enumerate(self._profiles):
            prof.shift(resid[j] if offset is None else offset)
            prof.alpha = min(1.0, ADAPT_RATE * self.season_alpha)
            self._dev[j] = 0.0
        self._resid = [0.0] * len(self._profiles)
        self._boost = min(self.periods, default=0)
        last = getattr(self, "_last", None)
        if last is not None:
            self._level = last
        self._pending = [None] * self.horizon
        if self._idx >= 0:
            self._yhat = self._combine(self._idx, self._members(self._idx))

    # -- internals ------------------------------------------------------
    def _members(self, idx: int) -> list[list[float]]:
        level = self._level if self._level is not None else 0.0
        out = [[level] * self.horizon]
        for j, prof in enumerate(self._profiles):
            dev = self._dev[j]
            row = []
            d = 1.0
            for h in range(1, self.horizon + 1):
                d *= self.damping
                s = prof.value(idx + h)
                row.append(math.nan if s is None else s + dev * d)
            out.append(row)
        return out

    def _combine(self, idx: int, members: list[list[float]]) -> list[float]:
        phase_err = getattr(self, "_phase_err", [])  # checkpoints from before the phase errors
        out = []
        for h in range(self.horizon):
            # the members with a forecast and a recent error at this horizon
            use = [k for k, row in enumerate(members) if not (self._mse[k][h] < 0.0 or math.isnan(row[h]))]
            pe = [phase_err[k].value(idx + h + 1) for k in use] if phase_err else []
            by_phase = bool(pe) and all(p is not None for p in pe)  # each has one at this phase
            num = den = 0.0
            for i, k in enumerate(use):
                w = 1.0 / (self._mse[k][h] + 1e-12)
                if by_phase:
                    w /= pe[i] + 1e-12  # type: ignore[operator]
                num += w * members[k][h]
                den += w
            out.append(num / den if den > 0.0 else members[0][h])
        return out

    def _score_pending(self, idx: int, y: float) -> None:
        b = self.error_alpha
        phase_err = getattr(self, "_phase_err", [])
        k_ = len(phase_err)
        esum, en = [0.0] * k_, [0] * k_  # each member's squared errors at this step, over horizons
        for h in range(1, self.horizon + 1):
            p = self._pending[(idx - h) % self.horizon]
            if p is None or p[0] != idx - h:
                continue
            _, members, ens, group = p
            for k, row in enumerate(members):
                v = row[h - 1]
                if math.isnan(v):
                    continue
                e2 = (y - v) ** 2
                m = self._mse[k][h - 1]
                if k_:
                    esum[k] += e2
                    en[k] += 1
                self._mse[k][h - 1] = e2 if m < 0.0 else m + b * (e2 - m)
            self._band.learn_one(h, ens[h - 1], y, group)
        for k in range(k_):
            if en[k]:
                phase_err[k].learn_one(idx, esum[k] / en[k])


def seasonal_periods(step_seconds: float, max_period: int = 20_160) -> tuple[int, ...]:
    """Daily and weekly periods in steps, where they are whole and not too long.

    >>> seasonal_periods(1800), seasonal_periods(60), seasonal_periods(86400)
    ((48, 336), (1440, 10080), (7,))
    >>> seasonal_periods(7)  # a day is not a whole number of 7 s steps
    ()
    """
    out = []
    for span in (DAY, WEEK):
        p = span / step_seconds
        if p >= 2 and abs(p - round(p)) < 1e-6 and round(p) <= max_period:
            out.append(round(p))
    return tuple(out)


def default_forecaster(step_seconds: float, period_steps: int | None = None) -> Forecaster:
    """The forecaster every series gets.

    ``period_steps`` fixes the seasonal period; ``None`` uses the daily and
    weekly periods implied by the step. Its conformal rings' lengths are :data:`TAIL_ERRORS`'.

    >>> f = default_forecaster(60.0, period_steps=60)
    >>> f.periods, f.warm, f.window, f.group_window
    ((60,), False, 256, 128)
    >>> default_forecaster(300.0).periods
    (288, 2016)
    """
    periods = (period_steps,) if period_steps else seasonal_periods(step_seconds)
    rings = {name: ring_length(COVERAGE, m)
             for name, m in zip(("window", "group_window"), TAIL_ERRORS, strict=True) if m is not None}
    return SeasonalEnsemble(step_seconds=step_seconds, periods=periods, phase_alpha=PHASE_ALPHA,
                            max_bins=MAX_BINS, **rings)
