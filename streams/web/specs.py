"""What the PredictiveScaler file (``settings.scalers``) tells the web layer and the worker."""

from __future__ import annotations

import logging
from typing import Any

from streams.metrics import Metrics, SeriesSelector
from streams.settings import Settings

log = logging.getLogger("foresight.web")


def target_specs(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per target key, what the dashboard shows of its spec (from ``settings.scalers``, if any)."""
    if not settings.scalers:
        return {}
    try:
        from scaler.spec import load_specs

        specs = load_specs(settings.scalers)
    except Exception as exc:  # noqa: BLE001 - the dashboard shows "–" instead, the worker runs on
        log.warning("dashboard: cannot read %s: %s", settings.scalers, exc)
        return {}
    return {s.key: {"series": s.series, "capacity_per_replica": s.capacity_per_replica,
                    "min_replicas": s.min_replicas, "max_replicas": s.max_replicas,
                    "lead_time_seconds": s.lead_time_seconds, "mode": s.mode,
                    "signals": [{"name": g.label, "series": g.series,
                                 "capacity_per_replica": g.capacity_per_replica,
                                 "lead_time_seconds": (s.lead_time_seconds
                                                       if g.lead_time_seconds is None
                                                       else g.lead_time_seconds)}
                                for g in s.signals],
                    "schedules": [sch.name for sch in s.schedules]} for s in specs}


def scaler_series(settings: Settings, what: str = "per-series metrics") -> set[str]:
    """Every series named by the PredictiveScaler file (``settings.scalers``); empty if none or unreadable."""
    if not settings.scalers:
        return set()
    try:
        from scaler.spec import load_specs

        return {n for s in load_specs(settings.scalers) for n in s.all_series}
    except Exception as exc:  # noqa: BLE001 - optional for the worker, which runs on
        log.warning("%s: cannot read %s: %s", what, settings.scalers, exc)
        return set()


def load_selector(settings: Settings, metrics: Metrics) -> SeriesSelector:
    """Series named by the PredictiveScaler file plus the allow-list, capped."""
    names = scaler_series(settings)
    allow = settings.metrics_series
    patterns = [p.strip() for p in allow.split(",") if p.strip()]
    cap = settings.metrics_series_cap
    return SeriesSelector(metrics, names, patterns, cap)
