"""The adaptive policy: a family of simple autoscalers run in shadow, the best one acts.

Fixed constants (how wide a forecast band to provision, how long to hold a
scale-down) suit some load shapes and not others. So the policy does not fix
them: every target runs a small family of :class:`~scaler.shadow.Contender`
autoscalers in shadow on its own observed load, each on its own simulated
cluster with the spec's lead time. The HPA sweep of the shadow comparison
(targets 40-100 %) runs beside them on the same windows, and the one that
*recently* left the least load unserved *relative to the HPA at its own cost*
(the sweep interpolated at its replica-seconds, the measure the shadow
comparison reports) decides the raw recommendation; nothing dearer than the
HPA at 40 % qualifies. The sweep's plain HPAs are at 1 by construction, and
the plain HPA at the spec's ``budgetUtilization`` is the one that acts when
no contender beats the HPA's curve.

The family (:data:`FAMILY`): the HPA at utilisations 50-100 %, each either
plain (reactive) or raised to the forecast's need with the band's upper
half-width scaled by 0, 0.5 or 1, each with the HPA's scale-down window
scaled by 0.4, 1 or 2.4. When the forecast does not help (noise, sparse
bursts) no forecast contender lies below the HPA's curve and the policy is
reactive; when it does help (periodic load) a forecast contender serves more
for the same cost and acts.

"Recently" is an exponential memory of :data:`MEMORY_SECONDS` of event time.

Every setting here was chosen on ``benchmarks/backtest.py`` leave-one-trace-out
(chosen on ten traces, scored on the eleventh; the benchmark prints both).

>>> from detectors.forecast import ForecastPoint
>>> a = Adaptive.start(budget_utilization=0.6)
>>> len(a.contenders) > len(SWEEP), a.acting_contender().name
(True, 'hpa@100%+forecast(band x1)')
>>> a.acting = a.reference()  # say the plain HPA at 60 % acts
>>> def load(i):  # a periodic load the forecast knows exactly
...     return 300.0 + 600.0 * (i % 10 >= 5)
>>> for i in range(50):
...     fc = [ForecastPoint(60.0 * (i + h), load(i + h), 0, 0) for h in (1, 2, 3)]
...     _ = a.learn(60.0 * i, load(i), window=60, capacity=100, lead=120, lo=1, hi=20,
...                 forecast=fc)
>>> a.acting_contender().margin  # the HPA is late at every rise; a forecast one is not
0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from detectors.forecast import ForecastPoint
from scaler.decision import Comparison
from scaler.shadow import (
    HPA_SWEEP,
    Contender,
    Follower,
    Rolling,
    equal_cost,
    hpa_hold_seconds,
)

#: the default of ``spec.budgetUtilization``: spend what an HPA at this target would
DEFAULT_BUDGET_UTILIZATION = 0.6
#: exponential memory of the contenders' tallies, seconds of event time
MEMORY_SECONDS = 10 * 86_400.0
#: another contender takes over only after scoring this many tenths lower than the acting
#: one (its unserved load relative to the HPA's at equal cost): 0.5 is 5 % lower
SWITCH_MARGIN = 0.5
#: the rolling window of the shadow comparison (``vs_hpa``), seconds of event time
COMPARISON_WINDOW_SECONDS = 86_400.0
#: the family: (utilisation, forecast band margin or None, scale-down window factor)
FAMILY = tuple(
    (u, m, h)
    for u in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    for m in (None, 0.0, 0.5, 1.0)
    for h in (0.4, 1.0, 2.4)
)
#: the contender that acts until another has shown it does better: the forecast's
#: upper bound at ``capacityPerReplica`` (utilisation 100 %), and never less than the
#: load observed needs
FIRST = (1.0, 1.0, 1.0)
#: the shadow HPA sweep: plain HPAs at the sweep's targets, the HPA's own window
SWEEP = tuple((u, None, 1.0) for u in HPA_SWEEP)


def _name(u: float, m: float | None, h: float) -> str:
    """A contender's name.

    >>> _name(0.6, None, 1.0), _name(0.8, 0.5, 2.4)
    ('hpa@60%', 'hpa@80%+forecast(band x0.5), window x2.4')
    """
    out = f"hpa@{u:.0%}"
    if m is not None:
        out += f"+forecast(band x{m:g})"
    if h != 1.0:
        out += f", window x{h:g}"
    return out


@dataclass(slots=True)
class Adaptive:
    """Per-target learned state: the contenders, their tallies, the acting one.

    Mutable and picklable; :func:`scaler.policy.decide` owns it through
    ``PolicyState.adaptive`` and calls :meth:`learn` once per observed window.
    """

    budget_utilization: float
    contenders: list[Contender]
    windows: list[float] = field(default_factory=list)  # scale-down window factor per contender
    sweep: list[int] = field(default_factory=list)  # indices of the HPA sweep
    acting: int = 0
    #: the acting side as decided (after every stage), simulated with the same start-up
    follower: Follower = field(default_factory=Follower)
    last_ts: float | None = None
    last_load: float = 0.0
    #: the best contender at the last choice (the acting one unless it did not win by enough)
    best: int | None = None
    started: float | None = None
    _window: float = 0.0

    @classmethod
    def start(cls, budget_utilization: float = DEFAULT_BUDGET_UTILIZATION) -> Adaptive:
        specs: list[tuple[float, float | None, float]] = list(SWEEP)
        specs += [f for f in FAMILY if f not in specs]
        a = cls(budget_utilization, [Contender(_name(*f), f[0], f[1]) for f in specs],
                [f[2] for f in specs], list(range(len(SWEEP))))
        for i in a.sweep:
            a.contenders[i].rolling = Rolling(COMPARISON_WINDOW_SECONDS)
        a.follower.rolling = Rolling(COMPARISON_WINDOW_SECONDS)
        a.acting = specs.index(FIRST)
        return a

    def reference(self) -> int:
        """Index of the plain HPA at the budget utilisation (nearest sweep target)."""
        return min(self.sweep, key=lambda i: abs(self.contenders[i].utilisation
                                                  - self.budget_utilization))

    def acting_contender(self) -> Contender:
        return self.contenders[self.acting]

    def learn(self, ts: float, load: float, window: float, capacity: float, lead: float,
              lo: int, hi: int, forecast: Sequence[ForecastPoint] | None,
              current: int | None = None,
              tolerance: tuple[float, float] = (0.1, 0.1)) -> bool:
        """Step every contender through window ``[ts, ts + window)``, once per window.

        ``forecast`` is the trusted forecast over the lead window (None when
        it cannot be trusted: contenders then act as plain HPAs). Returns
        False (and learns nothing) for a window already learnt.
        """
        if self.last_ts is not None and ts <= self.last_ts:
            return False
        self.last_ts = ts
        self.last_load = load
        self._window = window
        if self.started is None:
            self.started = ts
        decay = math.exp(-window / MEMORY_SECONDS)
        hold = hpa_hold_seconds(window)
        self.follower.account(ts, load, window, capacity, lead,
                              current if current is not None else max(lo, min(hi, 1)))
        for c, h in zip(self.contenders, self.windows, strict=True):
            c.step(ts, load, window, capacity, lead, lo, hi, h * hold,
                   forecast if c.margin is not None else None, decay, tolerance)
        self.acting = self.choose()
        return True

    def recommend(self) -> tuple[int, str]:
        """The acting contender's raw (count, why) for the window just learnt.

        Computed on its own simulated cluster, which knows which pods are
        ready (the usage ratio and the tolerance are the HPA's, over ready
        pods); before any scale-down window (:meth:`hold_seconds`) and
        min/max, which the policy's later stages apply to the target as it
        is. why: "load", "forecast" or "tolerance".
        """
        c = self.acting_contender()
        return c.raw, c.raw_why

    @property
    def window(self) -> float:
        """The length of the last window learnt (0 before the first)."""
        return self._window

    def hold_seconds(self, window: float) -> float:
        """The acting contender's scale-down window for decisions every ``window`` seconds."""
        return self.windows[self.acting] * hpa_hold_seconds(window) if window > 0 else 0.0

    def longest_hold_seconds(self, window: float) -> float:
        """The longest scale-down window of any contender."""
        return max(self.windows) * hpa_hold_seconds(window) if window > 0 else 0.0

    def choose(self) -> int:
        """The contender that recently left the least load unserved relative to the HPA at its cost.

        Each contender is scored by its recent unserved load over what the HPA
        sweep (recent tallies, interpolated) leaves unserved at the contender's own
        replica-seconds: below 1 it beats the HPA at equal cost, as the shadow
        comparison measures. The sweep's plain HPAs score 1 by construction, so
        when the forecast does not help the policy acts as a plain HPA (the one at
        the budget utilisation). Nothing dearer than the HPA at 40 % qualifies.
        The acting contender keeps acting unless another scores lower by
        ``SWITCH_MARGIN`` tenths (so noise does not make it switch).
        """
        if not any(c.recent.unserved > 0 for c in self.contenders):
            return self.acting  # no evidence yet that any does better
        ref = self.reference()
        budget = self.contenders[self.sweep[0]].recent.replica_seconds * (1 + 1e-9)
        curve = [(self.contenders[i].recent.replica_seconds, self.contenders[i].recent.unserved)
                 for i in self.sweep]
        sweep = set(self.sweep)

        def score(i: int) -> float:
            if i in sweep:
                return 1.0
            r = self.contenders[i].recent
            eq = equal_cost(curve, r.replica_seconds)[0]
            return r.unserved / eq if eq > 0 else (1.0 if r.unserved <= 0 else math.inf)

        def within(i: int) -> bool:
            return self.contenders[i].recent.replica_seconds <= budget

        cur = self.acting if within(self.acting) else ref
        best = min((i for i in range(len(self.contenders)) if within(i)),
                   key=lambda i: (score(i), i != ref, self.contenders[i].recent.replica_seconds),
                   default=ref)
        self.best = best
        if score(best) < score(cur) * (1 - 0.1 * SWITCH_MARGIN):
            return best
        return cur

    def report(self) -> tuple[Comparison | None, Comparison | None]:
        """(rolling window, since the start) comparisons for the wire, status and API."""
        if self.started is None or self.last_ts is None:
            return None, None
        total, rolling = self.follower.tallies()
        elapsed = self.last_ts - self.started + self._window
        out = []
        for mine, sweep, span in (
            (rolling, [self.contenders[i].rolling.sum() for i in self.sweep],  # type: ignore[union-attr]
             min(elapsed, COMPARISON_WINDOW_SECONDS)),
            (total, [self.contenders[i].total for i in self.sweep], elapsed),
        ):
            eq, _ = equal_cost([(t.replica_seconds, t.unserved) for t in sweep],
                               mine.replica_seconds)
            hpa = sweep[-1]
            out.append(Comparison(span, mine.unserved, hpa.unserved, eq, mine.under_seconds,
                                  hpa.under_seconds, mine.replica_seconds, hpa.replica_seconds))
        return out[0], out[1]
