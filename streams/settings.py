"""One typed settings object, read once at start-up from ``FORESIGHT_*``
environment variables, then overridden by command-line flags.

>>> s = Settings.from_env({"FORESIGHT_WINDOW_SECONDS": "60", "FORESIGHT_BROKER": "k:9092"})
>>> s.window_seconds, s.broker, s.web_host
(60.0, 'k:9092', '127.0.0.1')
>>> Settings.from_env({"FORESIGHT_WINDOW_SECONDS": "ten"})
Traceback (most recent call last):
...
ValueError: FORESIGHT_WINDOW_SECONDS: expected float, got 'ten'
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Settings:
    #: bootstrap servers of an existing broker; empty = start the embedded one
    broker: str = ""
    app_id: str = "foresight"
    topic_prefix: str = "foresight"
    partitions: int = 4
    #: window length in event-time seconds
    window_seconds: float = 10.0
    #: windows a late event may still be merged into a window
    allowed_lateness_windows: int = 2
    #: seconds an input timestamp may be ahead of its partition's typical series time
    #: (the median over its active series) before it is dead-lettered as ``future``
    max_future_seconds: float = 600.0
    #: seasonal period in windows; 0 = derive from the step (daily/weekly) or the stream
    period_steps: int = 0
    #: forecast horizon in windows; 0 = cover the longest lead time + 2 windows
    horizon_steps: int = 0
    #: write a series' model to its changelog-backed table every N updates
    checkpoint_every: int = 10
    anomaly_threshold: float = 0.9
    #: HMAC key for model checkpoints (hex or text); empty = key file in data_dir
    model_key: str = ""
    data_dir: str = ".foresight"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_enabled: bool = True
    #: host other workers use to reach this one; "" = web_host, or this host's IP if wildcard
    web_advertise_host: str = ""
    #: comma-separated shell patterns: series with per-series gauges (besides PredictiveScaler series)
    metrics_series: str = ""
    #: most series with per-series gauges per worker
    metrics_series_cap: int = 200
    #: closed windows of history per series served by the API and dashboard
    view_points: int = 360
    #: PredictiveScaler YAML for the local controller
    scalers: str = ""
    #: simulated pod start-up delay (event-time seconds)
    startup_seconds: float = 180.0
    #: controller mode override: "" (per spec), Active or ForecastOnly
    mode: str = ""
    #: Kubernetes controller: namespace of its leader-election Lease
    lease_namespace: str = "foresight-system"
    #: Kubernetes controller: /healthz, /readyz and /metrics (0 = off)
    health_host: str = "127.0.0.1"
    health_port: int = 8000
    log_level: str = "info"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f"FORESIGHT_{f.name.upper()}"
            if name in env:
                values[f.name] = _convert(name, env[name], f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"


def _convert(name: str, raw: str, typ: Any) -> Any:
    typ = {"str": str, "int": int, "float": float, "bool": bool}.get(str(typ), typ)
    try:
        if typ is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError
        return typ(raw)
    except ValueError:
        raise ValueError(f"{name}: expected {typ.__name__}, got {raw!r}") from None
