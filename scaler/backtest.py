"""Backtest: replay a load trace through the live pieces, against the HPA.

``foresight backtest --input TRACE.csv --capacity-per-replica C`` (or
``python -m scaler.backtest ...``) replays a ``timestamp,value`` trace one row
(= one window) at a time through the very code that runs live: the model
agent's :class:`~detectors.series.SeriesModel` (from :mod:`detectors.defaults`),
the one conversion to the policy's inputs (:mod:`scaler.inputs`), the
controller's :class:`~scaler.reconcile.Reconciler` with the adaptive policy,
and a :class:`~scaler.simulated.SimulatedCluster` as the actuator. The HPA it
is compared with is the policy's own shadow HPA sweep (:mod:`scaler.shadow`,
targets 40-100 %), run on the same windows; an oracle that knows the future
runs on a second simulated cluster.

The simulation, exactly (``k`` = lead steps, ``clamp`` to [min, max]): the
cluster starts with ``clamp(ceil(load[0] / C))`` ready replicas. At each step t:

1. pods whose start-up ends at t become ready;
2. step t is served by ``ready(t)``: ``unserved(t) = max(0, load[t] - ready(t) * C)``;
3. at the end of step t the policy decides ``desired[t]`` on ``load[0..t]``;
   above the provisioned count (ready + starting) the difference starts now
   and is ready at t + k (start-up time ``leadTimeSeconds = (k - 1) x step``);
   below it, starting pods are cancelled first (newest first), then ready pods
   removed (no longer serving from t + 1);
4. ``cost(t)`` = the provisioned count after that decision.

The HPA at target utilisation ``u`` (:class:`~scaler.shadow.Contender`): raw =
provisioned while ``|load / (ready * u * C) - 1| <= 0.1``, else
``clamp(ceil(load / (u * C)))``; every raw value is stored; one at or above the
provisioned count applies at once, a lower one is replaced by the highest raw
value of the scale-down window (the HPA's 300 s, at least 5 steps) and never
raises the count. The oracle decides ``max(need[t+1 .. min(t+k, n-1)])``.

>>> load = [100, 100, 100, 400, 400, 400, 100, 100, 100, 100]
>>> r = simulate(load, 100, 3, 1, 10, oracle_policy(load, 100, 3, 1, 10))
>>> sum(r.unserved), r.cost
(0.0, [4, 4, 4, 4, 4, 1, 1, 1, 1, 1])
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from detectors.defaults import make_series_model
from scaler.adaptive import Adaptive
from scaler.inputs import inputs_from_update
from scaler.reconcile import Reconciler
from scaler.schedule import Schedule, scheduled_floor
from scaler.shadow import HPA_SWEEP, Tally, equal_cost, need
from scaler.simulated import SimulatedCluster
from scaler.spec import RatePolicy, ScalerSpec, ScalingRules, SpecError, TargetRef, load_schedules
from scaler.traces import parse_time, read_trace  # noqa: F401  (re-exported)

#: HPA target utilisations of the equal-cost curve (the shadow sweep)
HPA_TARGETS = HPA_SWEEP
#: a decision: (step t, ready replicas at t, provisioned before deciding) -> desired
Policy = Callable[[int, int, int], int]


def _clamp(x: int, lo: int, hi: int) -> int:
    return min(max(x, lo), hi)


@dataclass
class Run:
    """Per-step outcome of one simulated autoscaler."""

    desired: list[int] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    cost: list[int] = field(default_factory=list)
    unserved: list[float] = field(default_factory=list)

    def summary(self, load: Sequence[float], step_seconds: float) -> dict[str, float]:
        total = sum(load)
        n = len(self.unserved)
        return {
            "unserved_fraction": sum(self.unserved) / total if total > 0 else 0.0,
            "underprovisioned_fraction": sum(1 for u in self.unserved if u > 0) / n if n else 0.0,
            "replica_hours": sum(self.cost) * step_seconds / 3600.0,
        }


def simulate(
    load: Sequence[float],
    capacity: float,
    lead_steps: int,
    min_replicas: int,
    max_replicas: int,
    policy: Policy,
) -> Run:
    """Run a decision function over ``load`` on a :class:`SimulatedCluster` (one step = 1 s)."""
    run = Run()
    if not load:
        return run
    cluster = SimulatedCluster(startup_seconds=lead_steps - 1)
    cluster.add_target("", _clamp(need(load[0], capacity), min_replicas, max_replicas))
    for t, y in enumerate(load):
        ready = cluster.ready("", t)
        run.ready.append(ready)
        run.unserved.append(max(0.0, float(y) - ready * capacity))
        desired = policy(t, ready, cluster.provisioned(""))
        cluster.scale_to("", desired, t + 1)
        run.desired.append(desired)
        run.cost.append(cluster.provisioned(""))
    return run


def oracle_policy(
    load: Sequence[float], capacity: float, lead_steps: int, min_replicas: int, max_replicas: int,
    floors: Sequence[int] | None = None,
) -> Policy:
    """Knows the future: provisions the largest need of the next ``lead_steps`` steps.

    ``floors``: the scheduled minimum decided at each step (the decision at the
    end of step t), as the predictive run has it; none by default.

    >>> p = oracle_policy([100, 100, 100], 100, 2, 1, 10, floors=[1, 5, 1])
    >>> [p(t, 1, 1) for t in range(3)]
    [1, 5, 1]
    """
    needs = [_clamp(need(y, capacity), min_replicas, max_replicas) for y in load]
    n = len(load)

    def policy(t: int, ready: int, provisioned: int) -> int:
        floor = min(floors[t], max_replicas) if floors is not None else 0
        if t >= n - 1:
            return max(needs[n - 1], floor)
        return max(max(needs[t + 1 : min(t + lead_steps, n - 1) + 1]), floor)

    return policy


def backtest_spec(
    capacity: float, lead_steps: int, step_seconds: float, min_replicas: int, max_replicas: int,
    name: str = "backtest", budget_utilization: float | None = None,
    schedules: Sequence[Schedule] = (),
) -> ScalerSpec:
    """The spec the predictive run uses: no behaviour limits of its own.

    Scale-up is not rate limited within a step (the HPA's 15 s policies allow
    more than a step's worth); scale-down may drop any amount per step and has
    no behaviour stabilisation window: each contender of the adaptive policy
    holds scale-downs with its own window, as the shadow HPA does.

    Pods started after observing step ``t`` are ready for step ``t + k``:
    ``k - 1`` steps after the decision, which is made at the end of step
    ``t``. ``leadTimeSeconds`` is that start-up time, as in a live cluster, and
    the policy provisions for every window starting in ``[now, now + lead]``,
    i.e. steps ``t + 1 .. t + k``, the oracle's look-ahead.

    >>> s = backtest_spec(50, 3, 300, 1, 200)
    >>> s.lead_time_seconds, s.scale_down.stabilization_window_seconds
    (600.0, 0)
    """
    extra = {} if budget_utilization is None else {"budget_utilization": budget_utilization}
    return ScalerSpec(
        name=name,
        series=name,
        capacity_per_replica=capacity,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        lead_time_seconds=float((lead_steps - 1) * step_seconds),
        target=TargetRef("apps/v1", "Deployment", name),
        scale_up=ScalingRules(0, (), "Max"),
        scale_down=ScalingRules(0, (RatePolicy("Percent", 100, max(1, int(step_seconds))),), "Max"),
        stale_after_seconds=3 * step_seconds,
        schedules=tuple(schedules),
        **extra,  # type: ignore[arg-type]
    )


@dataclass
class Recorded:
    """What the live pieces said at each step, for the summary and the plot."""

    yhat: list[list[float]] = field(default_factory=list)
    upper: list[list[float]] = field(default_factory=list)
    lower: list[list[float]] = field(default_factory=list)
    warm: list[bool] = field(default_factory=list)
    peak: list[float | None] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    acting: list[str] = field(default_factory=list)
    hpa_ready: list[int] = field(default_factory=list)
    coverage: float = 0.8


def replay(
    ts: Sequence[float], load: Sequence[float], spec: ScalerSpec, step: float, lead_steps: int,
) -> tuple[Run, Recorded, Adaptive]:
    """Drive the model, the Reconciler and a SimulatedCluster over the trace, row by row."""
    cluster = SimulatedCluster(startup_seconds=spec.lead_time_seconds)
    cluster.add_target(spec.key, _clamp(need(load[0], spec.capacity_per_replica),
                                        spec.min_replicas, spec.max_replicas))
    reconciler = Reconciler(cluster, [spec])
    model = make_series_model(step, horizon=max(6, lead_steps))
    run, rec = Run(), Recorded(coverage=model.forecaster.coverage)
    cap = spec.capacity_per_replica
    for t, y in enumerate(load):
        ready = cluster.ready(spec.key, ts[t])
        run.ready.append(ready)
        run.unserved.append(max(0.0, y - ready * cap))
        u = model.update(y, t=ts[t])
        fc, obs, now = inputs_from_update(model, spec.series, ts[t], step, y, u)
        reconciler.observe(fc, obs)
        d = reconciler.reconcile(spec, now)
        run.desired.append(d.desired)
        run.cost.append(cluster.provisioned(spec.key))
        rec.yhat.append([iv.yhat for iv in u.intervals])
        rec.upper.append([iv.upper for iv in u.intervals])
        rec.lower.append([iv.lower for iv in u.intervals])
        rec.warm.append(u.warm)
        rec.peak.append(d.forecast_peak)
        rec.reasons.append(d.reason.value)
        a = reconciler.states[spec.key].adaptive
        assert a is not None
        rec.acting.append(a.acting_contender().name)
        rec.hpa_ready.append(a.contenders[a.sweep[-1]].cluster.ready("", ts[t]))
    adaptive = reconciler.states[spec.key].adaptive
    assert adaptive is not None
    return run, rec, adaptive


def sweep_summary(tally: Tally, rows: int, step_seconds: float) -> dict[str, float]:
    """A shadow contender's totals as the backtest reports a run."""
    return {
        "unserved_fraction": tally.unserved / tally.load_seconds if tally.load_seconds > 0 else 0.0,
        "underprovisioned_fraction": tally.under_seconds / (rows * step_seconds) if rows else 0.0,
        "replica_hours": tally.replica_seconds / 3600.0,
    }


def equal_cost_unserved(curve: Sequence[dict[str, float]], replica_hours: float) -> tuple[float, bool]:
    """HPA unserved fraction at ``replica_hours`` on its curve; True if over budget.

    >>> c = [{"replica_hours": 10, "unserved_fraction": 0.1},
    ...      {"replica_hours": 20, "unserved_fraction": 0.02}]
    >>> equal_cost_unserved(c, 15), equal_cost_unserved(c, 5), equal_cost_unserved(c, 25)
    ((0.06, False), (0.1, False), (0.02, True))
    """
    return equal_cost([(p["replica_hours"], p["unserved_fraction"]) for p in curve], replica_hours)


def seasonal_lag(step_seconds: float) -> int:
    """One day of rows: the seasonal-naive lag of the MASE.

    >>> seasonal_lag(1800), seasonal_lag(300), seasonal_lag(3600), seasonal_lag(60)
    (48, 288, 24, 1440)
    """
    return max(1, round(86_400 / step_seconds))


def mase(load: Sequence[float], yhat: Sequence[Sequence[float]], k: int, m: int) -> float | None:
    """MAE of the forecast made at t for t + k over MAE of ``y[t+k-m]`` on the same targets.

    >>> y = [float(i % 4) for i in range(40)]
    >>> perfect = [[y[(t + 1) % 40], y[(t + 2) % 40]] for t in range(40)]
    >>> mase(y, perfect, 2, 4)  # seasonal naive is perfect too: undefined
    >>> flat = [[1.5, 1.5] for _ in range(40)]
    >>> mase([v + (t // 4) for t, v in enumerate(y)], flat, 2, 4) > 1
    True
    """
    n = len(load)
    num = den = 0.0
    for t in range(max(0, m - k), n - k):
        y = load[t + k]
        num += abs(y - yhat[t][k - 1])
        den += abs(y - load[t + k - m])
    return num / den if den > 0 else None


def coverage(
    load: Sequence[float], lower: Sequence[Sequence[float]], upper: Sequence[Sequence[float]],
    warm: Sequence[bool], k: int,
) -> tuple[float | None, float | None]:
    """Empirical coverage at horizon ``k`` over warm forecasts: (upper bound, band)."""
    hits_up = hits_band = count = 0
    for t in range(len(load) - k):
        if not warm[t]:
            continue
        y = load[t + k]
        count += 1
        hits_up += y <= upper[t][k - 1]
        hits_band += lower[t][k - 1] <= y <= upper[t][k - 1]
    if not count:
        return None, None
    return hits_up / count, hits_band / count


@dataclass
class Backtest:
    """Everything one backtest produced."""

    ts: list[float]
    load: list[float]
    step_seconds: float
    predictive: Run
    oracle: Run
    recorded: Recorded
    adaptive: Adaptive
    summary: dict[str, Any]


def run_backtest(
    ts: Sequence[float],
    load: Sequence[float],
    capacity: float,
    lead_steps: int = 3,
    min_replicas: int = 1,
    max_replicas: int = 200,
    name: str = "backtest",
    budget_utilization: float | None = None,
    schedules: Sequence[Schedule] = (),
) -> Backtest:
    """Replay ``load`` (one row per step at times ``ts``) through predictive, HPA and oracle.

    ``schedules`` (scheduled minimums) hold for all three: the predictive run
    through the policy itself, the HPA sweep as the shadow contenders respect the
    floor, the oracle as it is given the floor decided at each step.
    """
    if len(ts) < 2:
        raise ValueError("a backtest needs at least two rows")
    step = float(ts[1] - ts[0])
    if step <= 0:
        raise ValueError("timestamps must increase")
    ts, load = list(ts), [float(v) for v in load]
    spec = backtest_spec(capacity, lead_steps, step, min_replicas, max_replicas, name,
                         budget_utilization, schedules)
    pred, rec, adaptive = replay(ts, load, spec, step, lead_steps)
    args = (capacity, lead_steps, min_replicas, max_replicas)
    # the floor decided at the end of step t (the policy decides at ts[t] + step)
    floors = [(f[0] if (f := scheduled_floor(schedules, t + step)) else 0) for t in ts]
    oracle = simulate(load, *args, oracle_policy(load, *args, floors if schedules else None))
    n = len(load)
    curve = [
        {"target": adaptive.contenders[i].utilisation,
         **sweep_summary(adaptive.contenders[i].total, n, step)}
        for i in adaptive.sweep
    ]
    hs = curve[-1]
    ps, os_ = pred.summary(load, step), oracle.summary(load, step)
    eq, over = equal_cost_unserved(curve, ps["replica_hours"])
    if eq > 0:
        ratio = ps["unserved_fraction"] / eq
    else:
        ratio = 0.0 if ps["unserved_fraction"] == 0 else math.inf
    k = lead_steps
    m = seasonal_lag(step)
    cov_up, cov_band = coverage(load, rec.lower, rec.upper, rec.warm, k)
    # what the policy provisioned (desired x C at t) against the lead window's peak load
    covered = [
        max(load[t + 1 : t + k + 1]) <= pred.desired[t] * capacity
        for t in range(len(load) - k)
        if rec.warm[t]
    ]
    summary: dict[str, Any] = {
        "input": name,
        "rows": n,
        "step_seconds": step,
        "capacity_per_replica": capacity,
        "lead_steps": lead_steps,
        "budget_utilization": spec.budget_utilization,
        "predictive": ps,
        "hpa": {k_: v for k_, v in hs.items() if k_ != "target"},
        "oracle": os_,
        "hpa_curve": curve,
        "hpa_equal_cost_unserved_fraction": eq,
        "over_budget": over,
        "unserved_vs_hpa_equal_cost": ratio,
        "replica_hours_vs_hpa": ps["replica_hours"] / hs["replica_hours"] if hs["replica_hours"] else None,
        "replica_hours_vs_oracle": (
            ps["replica_hours"] / os_["replica_hours"] if os_["replica_hours"] else None
        ),
        "mase": mase(load, rec.yhat, k, m),
        "mase_seasonal_lag": m,
        "coverage": {
            "horizon": k,
            "nominal_upper": (1 + rec.coverage) / 2,
            "empirical_upper": cov_up,
            "nominal_band": rec.coverage,
            "empirical_band": cov_band,
            "provisioned_empirical": sum(covered) / len(covered) if covered else None,
        },
        "warm_fraction": sum(rec.warm) / len(rec.warm),
        "scheduled_steps": sum(1 for f in floors if f > 0),
        "reasons": _count(rec.reasons),
        "acting": _count(rec.acting),
    }
    return Backtest(ts, load, step, pred, oracle, rec, adaptive, summary)


def _count(items: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return dict(sorted(out.items()))


def write_decisions(path: str, raw_ts: Sequence[str], load: Sequence[float],
                    desired: Sequence[int], reasons: Sequence[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "load", "desired_replicas", "reason"])
        for t, y, d, r in zip(raw_ts, load, desired, reasons, strict=True):
            w.writerow([t, f"{y:g}", d, r])


def plot(bt: Backtest, path: str, capacity: float, lead_steps: int) -> None:
    """Load, ready capacity (predictive and HPA) and the forecast band, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = lead_steps
    n = len(bt.load)
    x = list(range(n))
    fig, ax = plt.subplots(figsize=(14, 5))
    ax.plot(x, bt.load, color="black", lw=0.7, label="load")
    ax.step(x, [r * capacity for r in bt.predictive.ready], where="post", color="tab:blue",
            lw=0.9, label="ready capacity, predictive")
    ax.step(x, [r * capacity for r in bt.recorded.hpa_ready], where="post", color="tab:red",
            lw=0.9, alpha=0.8, label="ready capacity, HPA 100%")
    fx = [t + k for t in range(n)]
    ax.fill_between(fx, [lo[k - 1] for lo in bt.recorded.lower], [up[k - 1] for up in bt.recorded.upper],
                    color="tab:orange", alpha=0.25, lw=0, label=f"forecast band at +{k} steps")
    ax.set_xlabel(f"step ({bt.step_seconds:g} s)")
    ax.set_ylabel("load")
    s = bt.summary
    ax.set_title(
        f"{s['input']}: unserved {s['predictive']['unserved_fraction']:.2%} vs HPA(equal cost) "
        f"{s['hpa_equal_cost_unserved_fraction']:.2%}, MASE {s['mase'] or float('nan'):.2f}"
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="foresight backtest",
        description="Replay a timestamp,value trace through Foresight and a reactive HPA.",
    )
    p.add_argument("--input", required=True, help="CSV with header timestamp,value; one row per step")
    p.add_argument("--capacity-per-replica", type=float, required=True, dest="capacity")
    p.add_argument("--lead-steps", type=int, default=3, help="pod start-up time in steps (default 3)")
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=200)
    p.add_argument("--budget-utilization", type=float, default=None,
                   help="the HPA target utilisation the policy acts as when no forecast "
                        "contender beats the HPA at its cost (0.4-1.0, default the spec's 0.6)")
    p.add_argument("--schedule", metavar="FILE",
                   help="scheduled minimums, YAML: a list like spec.schedules of a "
                        "PredictiveScaler (or a mapping with that list under 'schedules'); "
                        "the predictive run, the HPA and the oracle all keep the floor")
    p.add_argument("--decisions-out", help="write timestamp,load,desired_replicas,reason here")
    p.add_argument("--json", dest="json_out", help="write the summary JSON here")
    p.add_argument("--plot", help="write a PNG plot here (needs matplotlib)")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``foresight backtest``); returns the exit code."""
    args = build_parser().parse_args(argv)
    problems = []
    if not args.capacity > 0:
        problems.append("--capacity-per-replica must be > 0")
    if args.lead_steps < 1:
        problems.append("--lead-steps must be >= 1")
    if args.min_replicas < 0 or args.max_replicas < max(1, args.min_replicas):
        problems.append("need 0 <= --min-replicas <= --max-replicas, --max-replicas >= 1")
    if args.budget_utilization is not None and not 0.4 <= args.budget_utilization <= 1.0:
        problems.append("--budget-utilization must be between 0.4 and 1.0")
    if problems:
        print("foresight backtest: " + "; ".join(problems), file=sys.stderr)
        return 2
    try:
        schedules = load_schedules(args.schedule) if args.schedule else ()
        for i, sch in enumerate(schedules):
            if sch.min_replicas > args.max_replicas:
                raise SpecError(f"{args.schedule}: schedules[{i}].minReplicas "
                                f"({sch.min_replicas}) > --max-replicas ({args.max_replicas})")
        ts, load, raw = read_trace(args.input)
    except (OSError, ValueError) as exc:  # what the user gave: exit 2
        print(f"foresight backtest: {exc}", file=sys.stderr)
        return 2
    try:
        bt = run_backtest(ts, load, args.capacity, args.lead_steps, args.min_replicas,
                          args.max_replicas, name=args.input,
                          budget_utilization=args.budget_utilization, schedules=schedules)
    except (OSError, ValueError) as exc:
        print(f"foresight backtest: {exc}", file=sys.stderr)
        return 1
    if args.decisions_out:
        write_decisions(args.decisions_out, raw, bt.load, bt.predictive.desired, bt.recorded.reasons)
    text = json.dumps(bt.summary, indent=2)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    if args.plot:
        try:
            plot(bt, args.plot, args.capacity, args.lead_steps)
        except ImportError:
            print("foresight backtest: --plot needs matplotlib (pip install matplotlib)",
                  file=sys.stderr)
            return 1
    s = bt.summary
    print(
        f"{args.input}: unserved predictive {s['predictive']['unserved_fraction']:.3%} "
        f"vs HPA at equal cost {s['hpa_equal_cost_unserved_fraction']:.3%} "
        f"(ratio {s['unserved_vs_hpa_equal_cost']:.3f}{', OVER BUDGET' if s['over_budget'] else ''}); "
        f"replica-hours {s['predictive']['replica_hours']:.1f} "
        f"(HPA 100% {s['hpa']['replica_hours']:.1f}, oracle {s['oracle']['replica_hours']:.1f}); "
        f"MASE {s['mase'] if s['mase'] is None else round(s['mase'], 3)}"
    )
    if not args.json_out:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
