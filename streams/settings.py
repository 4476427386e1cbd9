"""One typed settings object, read once at start-up from ``FORESIGHT_*``
environment variables, then overridden by command-line flags.

Every field is both ``FORESIGHT_<NAME>`` and ``--<name>`` (underscores as
dashes) on each command that uses it: :func:`describe` is the one table the
CLI generates its flags from. A field's help text is its ``#:`` comment (or
``metadata={"help": ...}``); which commands take it is :data:`COMMANDS`
(or ``metadata={"commands": (...)}``), else :data:`DEFAULT_COMMANDS`. So a new
field is a documented flag without touching the CLI.

>>> s = Settings.from_env({"FORESIGHT_WINDOW_SECONDS": "60", "FORESIGHT_BROKER": "k:9092"})
>>> s.window_seconds, s.broker, s.web_host
(60.0, 'k:9092', '127.0.0.1')
>>> Settings.from_env({"FORESIGHT_WINDOW_SECONDS": "10s"})
Traceback (most recent call last):
...
streams.settings.SettingsError: FORESIGHT_WINDOW_SECONDS='10s' is not a number; set e.g. FORESIGHT_WINDOW_SECONDS=10.0 (window length in event-time seconds)
>>> [i.flag for i in describe() if "produce" in i.commands][:3]
['--broker', '--topic-prefix', '--partitions']
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any


class SettingsError(ValueError):
    """A setting (variable or flag) with a value that cannot be used; the message says which."""


@dataclass(frozen=True)
class Settings:
    #: Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]; empty: only `foresight demo` starts its own
    broker: str = ""
    #: Faust application id (consumer group and table names)
    app_id: str = "foresight"
    #: topics are named <prefix>.events, <prefix>.points, ...
    topic_prefix: str = "foresight"
    #: partitions of the topics Foresight creates
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
    #: how far ahead forecasts reach, in event-time seconds: the longest leadTimeSeconds a
    #: PredictiveScaler on these series can use (a longer one reports HorizonTooShort)
    horizon_seconds: float = 600.0
    #: forecast horizon in windows; 0 = derive from horizon_seconds (+ 2 windows)
    horizon_steps: int = 0
    #: write a series' model to its changelog-backed table every N updates
    checkpoint_every: int = 10
    #: anomaly score (0..1) at or above which a point is published as an anomaly
    anomaly_threshold: float = 0.9
    #: HMAC key for model checkpoints (hex or text); empty = key file in data_dir
    model_key: str = ""
    #: local state: the worker's table stores and the model key file
    data_dir: str = ".foresight"
    #: address the web server (API, dashboard, /metrics) binds to
    web_host: str = "127.0.0.1"
    #: port of the web server (API, dashboard, /metrics)
    web_port: int = 6066
    #: serve the API, dashboard and /metrics
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
    #: clock of the Kafka topic signals' sampler: "" = the wall clock; a replay's event time as
    #: event=<epoch s>,wall=<epoch s>,speed=<x> (event time at that wall time, and its speed)
    signal_clock: str = ""
    #: simulated pod start-up delay (event-time seconds)
    startup_seconds: float = 180.0
    #: controller mode override: "" (per spec), Active or ForecastOnly
    mode: str = ""
    #: Kubernetes controller: namespace of its leader-election Lease
    lease_namespace: str = "foresight-system"
    #: Kubernetes controller: address of /healthz, /readyz and /metrics
    health_host: str = "127.0.0.1"
    #: Kubernetes controller: port of /healthz, /readyz and /metrics (0 = off)
    health_port: int = 8000
    #: debug, info, warning or error (debug also shows tracebacks of CLI errors)
    log_level: str = "info"

    # -- Kafka: security and durability (streams/kafka_config.py builds every client from these) --
    # Secrets come from a file (a mounted Kubernetes secret) or an environment variable, never a
    # flag: the ``*_password`` fields are no command's flag (:data:`COMMANDS`) and not in repr.
    #: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS)
    kafka_security_protocol: str = "PLAINTEXT"
    #: SASL mechanism (with SASL_PLAINTEXT / SASL_SSL): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    kafka_sasl_mechanism: str = "PLAIN"
    #: SASL user name
    kafka_sasl_username: str = ""
    #: file holding the SASL password (a mounted secret); or FORESIGHT_KAFKA_SASL_PASSWORD
    kafka_sasl_password_file: str = ""
    #: SASL password, from the environment only (prefer kafka_sasl_password_file)
    kafka_sasl_password: str = field(default="", repr=False)
    #: TLS: PEM file of the CA(s) that signed the brokers' certificates; "" = the system's CAs
    kafka_ssl_cafile: str = ""
    #: TLS client certificate (PEM), for brokers that require one (mutual TLS)
    kafka_ssl_certfile: str = ""
    #: TLS client private key (PEM) of kafka_ssl_certfile ("" = in the certificate file)
    kafka_ssl_keyfile: str = ""
    #: file holding the password of an encrypted kafka_ssl_keyfile; or FORESIGHT_KAFKA_SSL_KEY_PASSWORD
    kafka_ssl_key_password_file: str = ""
    #: password of kafka_ssl_keyfile, from the environment only
    kafka_ssl_key_password: str = field(default="", repr=False)
    #: TLS: check that the broker's certificate names the host connected to
    kafka_ssl_check_hostname: bool = True
    #: replicas of every topic Foresight or Faust creates (changelogs too); 0 = min(3, brokers)
    replication_factor: int = 0
    #: min.insync.replicas of those topics; 0 = min(2, replication factor)
    min_insync_replicas: int = 0

    # -- bounded memory: how many series one worker holds, and for how long when idle --
    # (streams/budget.py; README "Sizing a worker")
    #: most series one worker tracks (windows, models, view history); a new series beyond it is
    #: dead-lettered as series_limit. PredictiveScaler series are always taken. 0 = derive from
    #: memory_limit_mb (see max_series_limit)
    max_series: int = 0
    #: memory budget of one worker in MiB, from which max_series is derived (in Kubernetes: the
    #: container's memory limit, through the downward API)
    memory_limit_mb: int = 2048
    #: wall seconds without input after which a series is evicted from memory (windows closed,
    #: model and view checkpointed first: it comes back warm); 0 = never
    series_idle_seconds: float = 900.0
    #: where the worker's changelog-backed tables (model checkpoints, view snapshots, targets)
    #: keep their copy: disk (a sqlite file in data_dir, deleted with the process; rebuilt from
    #: the changelogs at every start, as memory is) or memory (a dict: about 40 KiB more
    #: resident a series)
    table_store: str = "disk"
    #: run the window agent (the input topics parsed and windowed into points) in a process of
    #: its own beside the worker's, so ingest and the models each have a core (about 75 MB more
    #: resident; false: one process; streams/worker/window_process.py, README "Cores")
    window_process: bool = True
    #: window processes (with window_process): each reads a share of the input topics'
    #: partitions (one consumer group) and holds the series limit's equal share; 0 = one per
    #: CPU the worker may use (its CPU affinity and cgroup CPU quota), at most the partitions.
    #: Each one beyond the first: about 75 MB more resident (README "Cores")
    window_processes: int = 0

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

    def problems(self) -> list[str]:
        """Every value that is out of range, as ``FLAG/VARIABLE: what is wrong`` sentences.

        >>> for p in Settings(window_seconds=0, mode="active").problems():
        ...     print(p)
        --window-seconds / FORESIGHT_WINDOW_SECONDS must be > 0, got 0
        --mode / FORESIGHT_MODE must be one of '', 'Active', 'ForecastOnly', got 'active'
        """
        out = []
        for info in describe():
            v = getattr(self, info.name)
            where = f"{info.flag} / {info.env}"
            if info.choices and v not in info.choices and not (
                    info.name == "log_level" and str(v).lower() in info.choices):
                out.append(f"{where} must be one of {', '.join(map(repr, info.choices))}, got {v!r}")
            lo = MINIMUM.get(info.name)
            if lo is not None and v < lo[0]:
                out.append(f"{where} must be {lo[1]}, got {v!r}")
        if not 0.0 < self.anomaly_threshold <= 1.0:
            out.append("--anomaly-threshold / FORESIGHT_ANOMALY_THRESHOLD must be in (0, 1], "
                       f"got {self.anomaly_threshold!r}")
        if self.window_seconds > 0 and self.forecast_horizon_steps() > MAX_HORIZON_STEPS:
            out.append(f"--horizon-seconds / FORESIGHT_HORIZON_SECONDS of {self.horizon_seconds:g} "
                       f"(or --horizon-steps) at {self.window_seconds:g}s windows needs "
                       f"{self.forecast_horizon_steps()} forecast points per series and window; at "
                       f"most {MAX_HORIZON_STEPS}")
        if 0 < self.replication_factor < self.min_insync_replicas:
            out.append(f"--min-insync-replicas / FORESIGHT_MIN_INSYNC_REPLICAS of {self.min_insync_replicas} "
                       f"is more than the replication factor {self.replication_factor}: no write could "
                       "ever succeed")
        try:
            from streams.clock import SignalClock

            SignalClock.parse(self.signal_clock)
        except ValueError as exc:
            out.append(f"--signal-clock / FORESIGHT_SIGNAL_CLOCK: {exc}")
        for port in ("web_port", "health_port"):
            if getattr(self, port) > 65535:
                out.append(f"--{port.replace('_', '-')} / FORESIGHT_{port.upper()} must be <= 65535")
        return out

    def series_bytes(self) -> int:
        """Resident bytes of one warm series: :data:`SERIES_BYTES`, plus
        :data:`MEMORY_TABLE_BYTES` when the tables keep their copy in memory (``table_store``).

        >>> Settings().series_bytes() // 1024, Settings(table_store="memory").series_bytes() // 1024
        (80, 152)
        """
        return SERIES_BYTES + (MEMORY_TABLE_BYTES if self.table_store == "memory" else 0)

    def max_series_limit(self) -> int:
        """Series one worker tracks: ``max_series`` if set, else what ``memory_limit_mb`` holds
        after the worker's own :data:`WORKER_BASE_MB`, at :meth:`series_bytes` a series, keeping
        :data:`MEMORY_HEADROOM` of it free (at least 100).

        Each window process beyond the first takes :data:`WINDOW_PROCESS_MB` of it first.

        >>> one = Settings(window_processes=1)
        >>> one.max_series_limit(), one.replace(memory_limit_mb=1024).max_series_limit()
        (18350, 7864)
        >>> one.replace(table_store="memory").max_series_limit(), one.replace(window_processes=2).max_series_limit()
        (9657, 17582)
        >>> Settings(max_series=50).max_series_limit()
        50
        """
        if self.max_series > 0:
            return self.max_series
        base = WORKER_BASE_MB + WINDOW_PROCESS_MB * max(0, self.window_process_count() - 1)
        usable = max(0, self.memory_limit_mb - base) * 2**20 * (1 - MEMORY_HEADROOM)
        return max(100, int(usable // self.series_bytes()))

    def window_process_count(self, cpus: int | None = None) -> int:
        """Window processes the worker starts: none without ``window_process``; else
        ``window_processes`` if set; else one per CPU the worker may use (``cpus``, else
        :func:`usable_cpus`), at most ``partitions`` (one beyond them would read none), at least one.

        >>> Settings(window_processes=3).window_process_count(), Settings(window_process=False).window_process_count()
        (3, 0)
        >>> Settings().window_process_count(cpus=2), Settings(partitions=2).window_process_count(cpus=16)
        (2, 2)
        """
        if not self.window_process:
            return 0
        if self.window_processes > 0:
            return self.window_processes
        return max(1, min(usable_cpus() if cpus is None else cpus, self.partitions))

    def forecast_horizon_steps(self) -> int:
        """Windows each forecast covers: ``horizon_steps`` if set, else enough for a lead time
        of ``horizon_seconds``, i.e. windows starting at now .. now + horizon_seconds, and one
        more for a decision taken a window late (at least 6).

        >>> Settings().forecast_horizon_steps(), Settings(window_seconds=60).forecast_horizon_steps()
        (62, 12)
        >>> Settings(horizon_seconds=180).forecast_horizon_steps(), Settings(horizon_steps=9).forecast_horizon_steps()
        (20, 9)
        """
        if self.horizon_steps > 0:
            return self.horizon_steps
        if self.window_seconds <= 0:  # reported by problems()
            return 6
        return max(6, math.ceil(self.horizon_seconds / self.window_seconds - 1e-9) + 2)

    def to_env(self) -> dict[str, str]:
        """Every field as ``FORESIGHT_*`` variables (what a child process reads back).

        >>> s = Settings(window_seconds=60.0, web_enabled=False)
        >>> Settings.from_env(s.to_env()) == s
        True
        """
        return {f"FORESIGHT_{f.name.upper()}": _to_text(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"


#: which commands take a field as a flag (a field's ``metadata["commands"]`` wins);
#: a field in neither gets :data:`DEFAULT_COMMANDS`
KAFKA_COMMANDS = ("demo", "worker", "scaler", "produce")
WORKER_COMMANDS = ("demo", "worker")
SCALER_COMMANDS = ("scaler",)
DEFAULT_COMMANDS = ("demo", "worker", "scaler")
COMMANDS: dict[str, tuple[str, ...]] = {
    "broker": KAFKA_COMMANDS,
    "topic_prefix": KAFKA_COMMANDS,
    "partitions": KAFKA_COMMANDS,
    "window_seconds": KAFKA_COMMANDS,
    "log_level": KAFKA_COMMANDS,
    "app_id": WORKER_COMMANDS,
    "allowed_lateness_windows": WORKER_COMMANDS,
    "period_steps": WORKER_COMMANDS,
    "horizon_seconds": WORKER_COMMANDS,
    "horizon_steps": WORKER_COMMANDS,
    "checkpoint_every": WORKER_COMMANDS,
    "anomaly_threshold": WORKER_COMMANDS,
    "model_key": WORKER_COMMANDS,
    "data_dir": WORKER_COMMANDS,
    "web_host": WORKER_COMMANDS,
    "web_port": WORKER_COMMANDS,
    "web_enabled": ("worker",),
    "web_advertise_host": ("worker",),
    "metrics_series": WORKER_COMMANDS,
    "metrics_series_cap": WORKER_COMMANDS,
    "view_points": WORKER_COMMANDS,
    "scalers": ("worker", "scaler"),
    "signal_clock": ("worker",),
    "startup_seconds": SCALER_COMMANDS,
    "mode": SCALER_COMMANDS,
    "lease_namespace": SCALER_COMMANDS,
    "health_host": SCALER_COMMANDS,
    "health_port": SCALER_COMMANDS,
    "max_series": WORKER_COMMANDS,
    "memory_limit_mb": WORKER_COMMANDS,
    "series_idle_seconds": WORKER_COMMANDS,
    "table_store": WORKER_COMMANDS,
    "window_process": WORKER_COMMANDS,
    "window_processes": WORKER_COMMANDS,
    **{name: KAFKA_COMMANDS for name in (
        "kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username",
        "kafka_sasl_password_file", "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
        "kafka_ssl_key_password_file", "kafka_ssl_check_hostname", "replication_factor",
        "min_insync_replicas")},
    # secrets: a variable (or the *_file setting), never a flag
    "kafka_sasl_password": (),
    "kafka_ssl_key_password": (),
}
#: allowed values (a field's ``metadata["choices"]`` wins)
CHOICES: dict[str, tuple[str, ...]] = {
    "mode": ("", "Active", "ForecastOnly"),
    "log_level": ("debug", "info", "warning", "error"),
    "table_store": ("disk", "memory"),
    "kafka_security_protocol": ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    "kafka_sasl_mechanism": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
}
#: lower bounds: field -> (bound, how to say it)
MINIMUM: dict[str, tuple[float, str]] = {
    "partitions": (1, ">= 1"),
    "window_seconds": (1e-9, "> 0"),
    "allowed_lateness_windows": (0, ">= 0"),
    "period_steps": (0, ">= 0 (0: derive)"),
    "horizon_seconds": (1e-9, "> 0"),
    "horizon_steps": (0, ">= 0 (0: derive)"),
    "checkpoint_every": (1, ">= 1"),
    "web_port": (0, ">= 0"),
    "health_port": (0, ">= 0 (0: off)"),
    "metrics_series_cap": (0, ">= 0"),
    "view_points": (1, ">= 1"),
    "startup_seconds": (0, ">= 0"),
    "replication_factor": (0, ">= 0 (0: min(3, brokers))"),
    "min_insync_replicas": (0, ">= 0 (0: min(2, replication factor))"),
    "max_series": (0, ">= 0 (0: derive from the memory limit)"),
    "memory_limit_mb": (1, ">= 1"),
    "series_idle_seconds": (0, ">= 0 (0: never evict)"),
    "window_processes": (0, ">= 0 (0: one per CPU)"),
}

#: resident memory of one tracked, warm series (bytes), its tables' copies on disk
#: (``table_store`` disk): its model bank row (about 30 KiB, and up to a quarter of that again
#: unused while the bank grows), view history (360 windows and the latest forecast, about 12 KiB),
#: window and step state, and the allocator's share. Measured by ``make bench`` with warm models:
#: 66-68 KB a series at 10,000 series (busy machine; 84 KB under tracemalloc), its bank then
#: 19 % unused (a quarter at worst: +2 KB), rounded up with room for run-to-run spread.
SERIES_BYTES = 80 * 1024
#: what a series adds when the tables keep their copy in memory (``table_store`` memory): its
#: signed checkpoint (about 29 KiB) and view snapshot (about 9.5 KiB) as bytes, and the heap
#: they fragment. Measured by ``make bench`` as the difference of the two stores at 10,000
#: series: 138 - 68 = 70 KB, rounded up.
MEMORY_TABLE_BYTES = 72 * 1024
#: resident memory of a worker with no series (Python, Faust, River, numpy, aiohttp, buffers), MiB
WORKER_BASE_MB = 256
#: resident memory of a window process beyond the first (``window_processes``), MiB: an idle one
#: measured ~75 MB (its windows are the series it holds, counted in SERIES_BYTES)
WINDOW_PROCESS_MB = 75
#: share of the budget left free for bursts (a backlog's buffers, garbage not yet collected)
MEMORY_HEADROOM = 0.2


def usable_cpus() -> int:
    """CPUs this process may use: those of its CPU affinity, at most its cgroup's CPU quota
    (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) rounded up.

    >>> 1 <= usable_cpus() <= os.cpu_count()
    True
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota is not None else max(1, cpus)


def _cgroup_cpu_quota() -> float | None:
    """The cgroup's CPU quota in CPUs (None: none, or not readable)."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as q, open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as p:
            quota_us, period_us = int(q.read()), int(p.read())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


#: most points a forecast may carry: each forecast message, and the latest forecast every
#: worker keeps per series for the API (4 floats a point), grows with the horizon
MAX_HORIZON_STEPS = 720


@dataclass(frozen=True, slots=True)
class SettingInfo:
    """One row of the settings table: a field as a variable and a flag."""

    name: str
    type: type
    default: Any
    help: str
    commands: tuple[str, ...]
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return f"FORESIGHT_{self.name.upper()}"


_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def _base_type(annotation: Any) -> type:
    """The scalar type of a field's annotation (``"float | None"`` -> float; unknown -> str).

    >>> _base_type("int"), _base_type("float | None"), _base_type(bool), _base_type("list[str]")
    (<class 'int'>, <class 'float'>, <class 'bool'>, <class 'str'>)
    """
    if isinstance(annotation, type):
        return annotation if annotation in _TYPES.values() else str
    parts = [p.strip() for p in str(annotation).split("|") if p.strip() != "None"]
    return _TYPES.get(parts[0], str) if len(parts) == 1 else str


@cache
def describe() -> tuple[SettingInfo, ...]:
    """The settings table, in field order: type, default, help text and commands of every field."""
    comments = _field_comments()
    out = []
    for f in fields(Settings):
        typ = _base_type(f.type)
        text = f.metadata.get("help") or comments.get(f.name) or f"the {f.name.replace('_', ' ')} setting"
        commands = tuple(f.metadata.get("commands") or COMMANDS.get(f.name, DEFAULT_COMMANDS))
        choices = tuple(f.metadata.get("choices") or CHOICES.get(f.name, ()))
        out.append(SettingInfo(f.name, typ, f.default, text, commands, choices))
    return tuple(out)


def _field_comments() -> dict[str, str]:
    """``#:`` comments above each field of :class:`Settings` (Sphinx's convention)."""
    try:
        lines = inspect.getsource(Settings).splitlines()
    except (OSError, TypeError):  # no source (frozen install): fallback help texts
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in lines:
        s = line.strip()
        if s.startswith("#:"):
            pending.append(s[2:].strip())
            continue
        m = re.match(r"([a-z_][a-z0-9_]*)\s*:", s)
        if m and pending:
            out[m.group(1)] = " ".join(pending)
        pending = []
    return out


def _to_text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _convert(name: str, raw: str, typ: Any) -> Any:
    typ = _base_type(typ)
    try:
        if typ is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError
        return typ(raw)
    except ValueError:
        field_name = name.removeprefix("FORESIGHT_").lower()
        info = next((i for i in describe() if i.name == field_name), None)
        example = {bool: "true or false", int: f"{name}=4", float: f"{name}=10.0"}.get(typ, f"{name}=...")
        if info is not None and typ in (int, float) and info.default is not None:
            example = f"{name}={typ(info.default)!r}" if typ is float else f"{name}={info.default}"
        what = {int: "a whole number", float: "a number", bool: "true or false"}.get(typ, typ.__name__)
        hint = f" ({info.help})" if info is not None else ""
        raise SettingsError(f"{name}={raw!r} is not {what}; set e.g. {example}{hint}") from None
