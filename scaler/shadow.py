"""Autoscalers run in shadow: what each would have provisioned, and what it would have cost.

A :class:`Contender` is one simple autoscaler (the Kubernetes HPA at a target
utilisation, optionally raised to a forecast's need) acting on its own
:class:`~scaler.simulated.SimulatedCluster`, where new pods become ready only
after the spec's lead time. Fed the same windows as the real target, it keeps a
:class:`Tally` of what it would have left unserved and what it would have cost.
The adaptive policy (:mod:`scaler.adaptive`) chooses among contenders by these
tallies, and the shadow comparison (the HPA sweep beside every target) reports
them; the backtest reads the very same tallies.

Definitions, per window of ``w`` seconds with observed load ``y`` (in the
series' unit) and ``ready`` replicas of ``C`` each at the window's start:
unserved = ``max(0, y - ready * C) * w``; under-provisioned seconds = ``w`` when
that is positive; replica-seconds = provisioned replicas after the decision x ``w``.

>>> c = Contender("hpa@100%", utilisation=1.0, margin=None)
>>> for i, y in enumerate([100, 100, 400, 400, 400, 100]):
...     _ = c.step(ts=60.0 * i, load=y, window=60, capacity=100, lead=120, lo=1, hi=10,
...                hold=300, forecast=None)
>>> c.total.unserved, c.total.replica_seconds  # 3 windows 300 short while pods start
(54000.0, 1080.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from detectors.forecast import ForecastPoint
from scaler.simulated import SimulatedCluster

#: the HPA's default tolerance on the usage ratio
HPA_TOLERANCE = 0.1
#: the HPA's default scale-down stabilisation window, seconds ...
HPA_STABILIZATION_SECONDS = 300.0
#: ... at least this many windows, when windows are long (one decision per window)
HPA_STABILIZATION_MIN_WINDOWS = 5
#: HPA target utilisations of the shadow sweep (the equal-cost curve)
HPA_SWEEP = tuple(round(0.40 + 0.05 * i, 2) for i in range(13))


def hpa_hold_seconds(window: float) -> float:
    """The shadow HPA's scale-down window for decisions once per ``window`` seconds.

    >>> hpa_hold_seconds(10), hpa_hold_seconds(60), hpa_hold_seconds(300)
    (300.0, 300.0, 1500.0)
    """
    return max(HPA_STABILIZATION_SECONDS, HPA_STABILIZATION_MIN_WINDOWS * float(window))


def need(load: float, capacity: float) -> int:
    """Replicas of ``capacity`` each needed for ``load`` (bounded, never overflows).

    >>> need(241, 120), need(240, 120), need(0, 120), need(1e308, 1e-300)
    (3, 2, 0, 2147483647)
    """
    if not load > 0:
        return 0
    r = load / capacity
    if not r < 2**31 - 1:
        return 2**31 - 1
    return math.ceil(r - 1e-9)


@dataclass(slots=True)
class Tally:
    """Unserved load-seconds, under-provisioned seconds, replica-seconds and load-seconds."""

    unserved: float = 0.0
    under_seconds: float = 0.0
    replica_seconds: float = 0.0
    load_seconds: float = 0.0

    def add(self, unserved: float, under: float, replica_s: float, load_s: float,
            decay: float = 1.0) -> None:
        self.unserved = self.unserved * decay + unserved
        self.under_seconds = self.under_seconds * decay + under
        self.replica_seconds = self.replica_seconds * decay + replica_s
        self.load_seconds = self.load_seconds * decay + load_s


@dataclass(slots=True)
class Rolling:
    """A :class:`Tally` over the last ``span`` seconds of event time, in ``buckets`` slices.

    >>> r = Rolling(span=3600, buckets=4)
    >>> for i in range(8):
    ...     r.add(900.0 * i, unserved=1.0, under=0.0, replica_s=10.0, load_s=5.0)
    >>> r.sum().replica_seconds  # the last four 15-minute slices
    40.0
    """

    span: float = 86_400.0
    buckets: int = 24
    slots: list[tuple[int, Tally]] = field(default_factory=list)
    acc: Tally = field(default_factory=Tally)  # the sum of the slots, kept as they change

    def add(self, ts: float, unserved: float, under: float, replica_s: float,
            load_s: float) -> None:
        b = math.floor(ts / (self.span / self.buckets))
        if not self.slots or self.slots[-1][0] < b:
            self.slots.append((b, Tally()))
            while self.slots[0][0] <= b - self.buckets:
                _, old = self.slots.pop(0)
                self.acc.add(-old.unserved, -old.under_seconds, -old.replica_seconds,
                             -old.load_seconds)
        self.slots[-1][1].add(unserved, under, replica_s, load_s)
        self.acc.add(unserved, under, replica_s, load_s)

    def sum(self) -> Tally:
        a = self.acc
        return Tally(max(0.0, a.unserved), max(0.0, a.under_seconds),
                     max(0.0, a.replica_seconds), max(0.0, a.load_seconds))


@dataclass(slots=True)
class Contender:
    """One shadow autoscaler: the HPA at ``utilisation``, raised to the forecast's need.

    ``margin`` None is the plain HPA (reactive). Otherwise its raw
    recommendation is also at least the replicas, at the same utilisation,
    for the highest of ``yhat + margin x (upper - yhat)`` over the lead
    window, when the forecast is trusted. Then the HPA's rules: a raw count
    within the tolerance keeps the count; a lower one waits for the highest
    raw count within the scale-down window (``hold`` seconds); then min/max.
    """

    name: str
    utilisation: float
    margin: float | None
    cluster: SimulatedCluster = field(default_factory=SimulatedCluster)
    raws: list[tuple[float, int]] = field(default_factory=list)
    total: Tally = field(default_factory=Tally)
    recent: Tally = field(default_factory=Tally)
    desired: int = 0
    #: why the last desired count: "load", "forecast", "tolerance" or "held"
    why: str = "load"
    #: the last raw count (before the scale-down window and min/max) and why
    raw: int = 0
    raw_why: str = "load"
    #: the forecast load it provisioned for at the last step (None: reactive)
    peak: float | None = None
    #: kept for the shadow comparison's rolling window (the HPA sweep only)
    rolling: Rolling | None = None

    def step(self, ts: float, load: float, window: float, capacity: float, lead: float,
             lo: int, hi: int, hold: float, forecast: Sequence[ForecastPoint] | None,
             decay: float = 1.0,
             tolerance: tuple[float, float] = (HPA_TOLERANCE, HPA_TOLERANCE)) -> int:
        """Account window ``[ts, ts + window)`` and decide at its end; returns the desired count."""
        c = self.cluster
        c.startup_seconds = lead
        if not self.desired:
            c.add_target("", _clamp(need(load, capacity), lo, hi))
        ready = c.ready("", ts)
        unserved = max(0.0, load - ready * capacity) * window
        now = ts + window
        provisioned = c.provisioned("")
        raw, why = self.recommend(load, ready, provisioned, capacity, tolerance, forecast)
        self.raws = [(t, r) for t, r in self.raws if t > now - hold]
        self.raws.append((now, raw))
        self.raw, self.raw_why = raw, why
        desired = _clamp(self.hold(raw, provisioned), lo, hi)
        self.why = why if desired == raw else "held"
        c.scale_to("", desired, now)
        self.desired = desired
        self.total.add(unserved, window if unserved > 0 else 0.0, desired * window, load * window)
        self.recent.add(unserved, window if unserved > 0 else 0.0, desired * window,
                        load * window, decay)
        if self.rolling is not None:
            self.rolling.add(ts, unserved, window if unserved > 0 else 0.0, desired * window,
                             load * window)
        return desired

    def recommend(self, load: float, ready: int, provisioned: int, capacity: float,
                  tolerance: tuple[float, float], forecast: Sequence[ForecastPoint] | None,
                  ) -> tuple[int, str]:
        """The raw count for ``load`` on a cluster with ``ready``/``provisioned`` replicas.

        ``tolerance`` is (scale-up, scale-down), the HPA's per-direction tolerance
        on the usage ratio. Sets ``peak`` (the forecast load provisioned for, None
        when reactive). Returns (raw, why) with why one of "tolerance", "load",
        "forecast".

        >>> c = Contender("x", utilisation=0.5, margin=1.0)
        >>> from detectors.forecast import ForecastPoint
        >>> c.recommend(400, 8, 8, 100, (0.1, 0.1), None)
        (8, 'tolerance')
        >>> c.recommend(400, 8, 8, 100, (0.1, 0.1), [ForecastPoint(60, 900, 800, 1000)])
        (20, 'forecast')
        >>> c.recommend(400, 8, 19, 100, (0.1, 0.1), [ForecastPoint(60, 900, 800, 1000)])
        (19, 'tolerance')

        The HPA's documented example: 50 replicas at a 75 % target, now at 90 %
        (ratio 1.2): 60 replicas, unless the scale-up tolerance is above 20 %.

        >>> hpa = Contender("hpa", utilisation=0.75, margin=None)
        >>> hpa.recommend(50 * 90, 50, 50, 100, (0.1, 0.1), None)
        (60, 'load')
        >>> hpa.recommend(50 * 90, 50, 50, 100, (0.25, 0.1), None)
        (50, 'tolerance')
        >>> hpa.recommend(50 * 71, 50, 50, 100, (0.0, 0.05), None)  # 5 % scale-down tolerance
        (48, 'load')
        >>> hpa.recommend(50 * 72, 50, 50, 100, (0.0, 0.05), None)
        (50, 'tolerance')
        """
        per = self.utilisation * capacity
        up, down = tolerance
        ratio = load / (ready * per) if ready > 0 else math.inf
        if ready > 0 and (ratio - 1.0 <= up if ratio >= 1.0 else 1.0 - ratio <= down):
            raw, why = provisioned, "tolerance"
        else:
            raw, why = need(load, per), "load"
        self.peak = None
        if self.margin is not None and forecast:
            m = self.margin
            self.peak = max(p.yhat + m * max(p.upper - p.yhat, 0.0) for p in forecast)
            ahead = need(self.peak, per)
            if ahead >= raw:  # within the tolerance of the count in place, that count
                r = ahead / provisioned if provisioned > 0 else math.inf
                if ahead != provisioned > 0 and (r - 1.0 <= up if r > 1.0 else 1.0 - r <= down):
                    raw, why = max(raw, provisioned), "tolerance"
                else:
                    raw, why = ahead, "forecast"
        return raw, why

    def hold(self, raw: int, provisioned: int) -> int:
        """The HPA's scale-down stabilisation over the raw counts in the window (``raws``)."""
        if raw >= provisioned:
            return raw
        return min(provisioned, max([raw] + [r for _, r in self.raws]))


def _clamp(x: int, lo: int, hi: int) -> int:
    return min(max(x, lo), hi)


def equal_cost(curve: Sequence[tuple[float, float]], cost: float) -> tuple[float, bool]:
    """Unserved on a (cost, unserved) curve at ``cost``; True if dearer than its dearest point.

    Linear interpolation; below the cheapest point, that point; above the
    dearest, that point and ``over_budget``.

    >>> c = [(10.0, 0.1), (20.0, 0.02)]
    >>> equal_cost(c, 15), equal_cost(c, 5), equal_cost(c, 25)
    ((0.06, False), (0.1, False), (0.02, True))
    """
    pts = sorted(curve)
    if cost <= pts[0][0]:
        return pts[0][1], False
    if cost > pts[-1][0] * (1 + 1e-9) + 1e-9:
        return pts[-1][1], True
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if x0 <= cost <= x1:
            if x1 - x0 <= 0:
                return min(y0, y1), False
            w = (cost - x0) / (x1 - x0)
            return round(y0 + w * (y1 - y0), 12), False
    return pts[-1][1], False


@dataclass(slots=True)
class Follower:
    """The acting side in shadow: a simulated cluster that follows the decisions made.

    In ``ForecastOnly`` mode nothing is patched, so this is what the policy
    *would* have had ready; in ``Active`` mode it mirrors the target (with the
    spec's lead time as start-up time). Tallied exactly as a :class:`Contender`.

    >>> f = Follower()
    >>> f.account(0.0, 150.0, 60, capacity=100, lead=60, initial=1)
    >>> f.follow(60.0, 2, 60)
    >>> f.account(60.0, 150.0, 60, capacity=100, lead=60, initial=1)  # still 1 ready
    >>> f.follow(120.0, 2, 60)
    >>> f.account(120.0, 150.0, 60, capacity=100, lead=60, initial=1)
    >>> f.total.unserved, f.total.replica_seconds, f.replicas
    (6000.0, 240.0, 2)
    """

    cluster: SimulatedCluster = field(default_factory=SimulatedCluster)
    total: Tally = field(default_factory=Tally)
    pending: tuple[float, int, float] | None = None  # (now, desired, window) of the last decision
    started: bool = False
    rolling: Rolling = field(default_factory=Rolling)

    @property
    def replicas(self) -> int:
        """Provisioned replicas of the simulated acting side."""
        return self.cluster.provisioned("") if self.started else 0

    def account(self, ts: float, load: float, window: float, capacity: float, lead: float,
                initial: int) -> None:
        """Account window ``[ts, ts + window)`` (before its decision)."""
        self._commit()
        self.cluster.startup_seconds = lead
        if not self.started:
            self.cluster.add_target("", initial)
            self.started = True
        unserved = max(0.0, load - self.cluster.ready("", ts) * capacity) * window
        under = window if unserved > 0 else 0.0
        self.total.add(unserved, under, 0.0, load * window)
        self.rolling.add(ts, unserved, under, 0.0, load * window)

    def follow(self, now: float, desired: int, window: float) -> None:
        """Apply a decision made at ``now`` (a later one at the same ``now`` replaces it)."""
        if not self.started:
            return
        self.cluster.scale_to("", desired, now)
        self.pending = (now, desired, window)

    def _commit(self) -> None:
        if self.pending is not None:
            now, desired, window = self.pending
            self.total.replica_seconds += desired * window
            self.rolling.add(now - window, 0.0, 0.0, desired * window, 0.0)
            self.pending = None

    def tallies(self) -> tuple[Tally, Tally]:
        """(total, rolling window) including the latest decision's replica-seconds (copies)."""
        extra = self.pending[1] * self.pending[2] if self.pending is not None else 0.0
        rolling = self.rolling.sum()
        return (
            Tally(self.total.unserved, self.total.under_seconds,
                  self.total.replica_seconds + extra, self.total.load_seconds),
            Tally(rolling.unserved, rolling.under_seconds, rolling.replica_seconds + extra,
                  rolling.load_seconds),
        )
