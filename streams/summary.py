"""The demo's summary: counts, and per target whether the three rules held.

Pure functions over what the demo read back from Kafka (decisions, points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from streams.workload import PLANS, Workload


@dataclass
class Observed:
    """What the demo's monitor read back from the topics."""

    counts: dict[str, int] = field(default_factory=dict)
    points: dict[str, dict[float, float]] = field(default_factory=dict)  # series -> start -> value
    decisions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # target -> records


def _in_place(decisions: list[dict[str, Any]], before: float, default: int) -> int:
    n = default
    for d in decisions:
        if d["ts"] >= before:
            break
        n = d["desired"] if d["applied"] else d["current"]
    return n


def summarize(obs: Observed, workload: Workload, namespace: str, window: float,
              lead: float, sim_end: float) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    checks: dict[str, bool | None] = {}
    for plan in PLANS:
        key = f"{namespace}/{plan.series.split('/')[0]}"
        decs = sorted(obs.decisions.get(key, []), key=lambda d: d["ts"])
        pts = obs.points.get(plan.series, {})
        cap = plan.capacity_per_replica
        info: dict[str, Any] = {
            "series": plan.series,
            "decisions": len(decs),
            "scale_ups": sum(1 for d in decs if d["applied"] and d["desired"] > d["current"]),
            "scale_downs": sum(1 for d in decs if d["applied"] and d["desired"] < d["current"]),
            "final_replicas": (decs[-1]["desired"] if decs else None),
        }
        if plan.series == "checkout/requests":
            peaks = []
            c = 0
            while workload.peak_start(c) + 15 * 60 <= sim_end:
                t_peak = workload.peak_start(c)
                before = _in_place(decs, t_peak - 10 * 60, plan.min_replicas)
                t_exceed = next(
                    (s for s in sorted(pts) if t_peak - 600 <= s <= t_peak + 900 and pts[s] > before * cap),
                    None,
                )
                ups = [d for d in decs if d["applied"] and d["desired"] > d["current"]
                       and t_peak - 600 < d["ts"] <= (t_exceed if t_exceed is not None else t_peak + 900)]
                first = ups[0] if ups else None
                after = max((d["desired"] for d in decs if t_peak <= d["ts"] <= t_peak + 900), default=None)
                entry = {
                    "cycle": c + 1,
                    "peak_start": t_peak,
                    "load_exceeds_capacity_at": t_exceed,
                    "first_scale_up_decided_at": first["ts"] if first else None,
                    "first_scale_up_reason": first["reason"] if first else None,
                    "lead_seconds": (t_exceed - first["ts"]) if (first and t_exceed is not None) else None,
                    "replicas_before": before,
                    "replicas_after": after,
                }
                entry["ok"] = bool(
                    t_exceed is None or (first is not None and t_exceed - first["ts"] >= lead)
                )
                peaks.append(entry)
                c += 1
            info["predictable_peaks"] = peaks
            judged = [p for p in peaks if p["cycle"] >= 3]
            checks["scale_up_before_predictable_peak"] = all(p["ok"] for p in judged) if judged else None
        elif plan.series == "search/requests":
            spike = workload.spike_start
            # the first decision made on an observation of a window inside the spike
            first = next((d for d in decs if d.get("observed_ts") is not None
                          and spike - window < d["observed_ts"] < workload.spike_end), None)
            need = math.ceil(first["observed"] / cap - 1e-9) if first else None
            info["spike"] = {
                "spike_start": spike,
                "first_decision_at": first["ts"] if first else None,
                "observed": first["observed"] if first else None,
                "needed": need,
                "replicas_before": first["current"] if first else None,
                "replicas_after": first["desired"] if first else None,
                "reason": first["reason"] if first else None,
            }
            ok = None if first is None or spike > sim_end else first["desired"] >= need
            info["spike"]["ok"] = ok
            checks["reactive_floor_on_spike"] = ok
        else:
            start, end = workload.stuck_start, workload.stuck_end
            during = [d for d in decs if start < d["ts"] <= end + 3 * window]
            before = _in_place(decs, start, plan.min_replicas)
            downs = [d for d in during if d["desired"] < d["current"]]
            info["stuck_sensor"] = {
                "stuck_start": start,
                "stuck_end": end,
                "replicas_before": before,
                "min_desired_while_stuck": min((d["desired"] for d in during), default=None),
                "scale_downs_while_stuck": len(downs),
                "reasons": sorted({d["reason"] for d in during}),
            }
            ok = None if not during else not downs
            info["stuck_sensor"]["ok"] = ok
            checks["no_scale_down_from_stuck_sensor"] = ok
        targets[key] = info
    return {"counts": dict(obs.counts), "targets": targets, "checks": checks}
