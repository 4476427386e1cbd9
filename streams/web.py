"""The worker's read-only web API and dashboard (served by Faust's web server).

Read model
    :class:`ViewStore` keeps, per series this worker owns, a bounded recent
    history (points, one-step-ahead forecasts, anomalies, the latest forecast)
    fed by the model agent, and per scaling target the replica history and the
    decision log fed by the decisions agent. Both are snapshotted to
    changelog-backed tables (``series_view`` every checkpoint, ``targets`` on
    every logged decision) so a restarted or rebalanced worker serves the
    history it took over.

Routing
    A series lives on the worker that owns its partition of the ``points``
    topic (the same partition as its models); a target on the owner of its
    ``decisions`` partition. ``/api/series/{id}`` is forwarded to the owner
    (Faust's partition assignment says which worker that is); list endpoints
    ask every worker and merge. A forwarded request carries
    ``X-Foresight-Routed`` and is always answered locally (no loops during a
    rebalance).

Endpoints (JSON unless noted; all GET)
    ``/dashboard/`` (HTML), ``/api/series``, ``/api/series/{id}``,
    ``/api/targets``, ``/api/decisions``; ``/static/`` serves the dashboard's
    assets (shipped as package data, never from a CDN).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import faust
import numpy as np
import orjson
from kafka.partitioner.default import murmur2

from streams import records
from streams.checkpoint import Signer, UntrustedCheckpoint
from streams.metrics import Metrics, SeriesSelector
from streams.ratelog import RateLimitedLog
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger("foresight.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
ROUTED_HEADER = "X-Foresight-Routed"
#: settings the web layer reads (with these defaults until Settings has them)
DEFAULT_VIEW_POINTS = 360
DEFAULT_SERIES_CAP = 200
MAX_PAGE = 500
DECISION_LOG = 200
TARGET_HISTORY = 720
ANOMALY_HISTORY = 100
FORWARD_TIMEOUT = 5.0


def view_points(settings: Settings) -> int:
    return int(settings.view_points or DEFAULT_VIEW_POINTS)


def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as the producers use it.

    >>> partition_for("checkout/requests", 4) == partition_for("checkout/requests", 4)
    True
    """
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def advertised_host(settings: Settings) -> str:
    """The host other workers use to reach this one's web server.

    ``web_advertise_host`` if set; else the bind address, unless that is a
    wildcard (``0.0.0.0`` in a container), where it is this host's address
    (in Kubernetes the pod IP, from the kubelet-managed ``/etc/hosts``).

    >>> advertised_host(Settings(web_host="127.0.0.1"))
    '127.0.0.1'
    """
    host = settings.web_advertise_host or settings.web_host
    if host in ("0.0.0.0", "::", ""):
        import socket

        name = socket.gethostname()
        try:
            host = socket.gethostbyname(name)
        except OSError:
            host = name
    return host


def unit_of(kind: str) -> str:
    """The unit of a series' values: event series are rates."""
    return "events/s" if kind == "events" else ""


# -- read model -----------------------------------------------------------


class SeriesView:
    """Recent history of one series, compact: a ring of the last ``size``
    windows indexed by window number (window starts are epoch-aligned
    multiples of the step), one float64 row per window (observed value and
    the one-step-ahead forecast made for it: yhat, lower, upper; NaN where
    missing), about 32 bytes per window. The latest forecast is kept as an
    array too, anomalies (rare) as a short deque.

    >>> v = SeriesView("a/b", size=4, kind="events")
    >>> fc = {"issued": 20.0, "step": 10.0, "coverage": 0.8, "model": "m", "warm": True, "error": 0.5,
    ...       "points": [{"ts": 30.0, "yhat": 7.0, "lower": 6.0, "upper": 8.0}]}
    >>> v.add(20.0, 6.5, fc, 0.1, False, None)
    True
    >>> d = v.detail()
    >>> d["points"], d["fitted"], d["unit"]
    ([{'ts': 20.0, 'value': 6.5}], [{'ts': 30.0, 'yhat': 7.0, 'lower': 6.0, 'upper': 8.0}], 'events/s')
    >>> v.add(30.0, 7.5, {**fc, "issued": 30.0, "points": [{"ts": 40.0, "yhat": 8.0, "lower": 7.0, "upper": 9.0}]},
    ...       0.2, False, None)
    True
    >>> [f["ts"] for f in v.detail()["fitted"]], v.add(20.0, 1.0, fc, 0.0, False, None)
    ([30.0, 40.0], False)
    """

    __slots__ = ("series", "size", "kind", "step", "hi", "rows", "fc_meta", "fc_points", "anomalies",
                 "score", "anomalous", "drifting", "drifts", "learnt", "history")

    def __init__(self, series: str, size: int, kind: str = "") -> None:
        self.series = series
        self.size = max(2, int(size))
        self.kind = kind
        self.step = 0.0
        self.hi = -1  # newest window number held (-1: none)
        self.rows = np.full((self.size, 4), np.nan)
        #: latest forecast: (issued, step, coverage, model, warm, error) and its points (H x 4)
        self.fc_meta: tuple[float, float, float, str, bool, float | None] | None = None
        self.fc_points = np.empty((0, 4))
        #: (ts, value, score, threshold, detector)
        self.anomalies: deque[tuple[float, float, float, float, str]] = deque(maxlen=ANOMALY_HISTORY)
        self.score: float | None = None
        self.anomalous = False
        #: the model says its errors changed regime; ``drifts``: when each spell started
        self.drifting = False
        self.drifts: deque[float] = deque(maxlen=ANOMALY_HISTORY)
        #: windows the series' model has learnt in all, and of those from a history backfill
        self.learnt = 0
        self.history = 0

    def _index(self, ts: float) -> int:
        return int(round(ts / self.step))

    def add(self, ts: float, value: float, forecast: dict[str, Any], score: float | None,
            anomalous: bool, anomaly: dict[str, Any] | None) -> bool:
        """Record a closed window and the forecast issued after it; False if
        the window is not newer than the newest held (a replay)."""
        if not self.step:
            self.step = float(forecast.get("step") or 0.0)
            if self.step <= 0:
                return False
        elif float(forecast.get("step") or self.step) != self.step:
            self._rebase(float(forecast["step"]))  # the series is modelled at a new step
        k = self._index(ts)
        if k <= self.hi:
            return False
        n = self.size
        if self.hi >= 0 and k - self.hi < n:
            for j in range(self.hi + 1, k):  # windows with no point: gaps
                self.rows[j % n] = np.nan
        else:
            self.rows[:] = np.nan
        row = self.rows[k % n]
        row[:] = np.nan
        row[0] = value
        if self.fc_meta is not None and len(self.fc_points) and self._index(self.fc_points[0, 0]) == k:
            row[1:] = self.fc_points[0, 1:]
        self.hi = k
        pts = forecast.get("points") or []
        self.fc_points = np.array([[p["ts"], p["yhat"], p["lower"], p["upper"]] for p in pts],
                                  dtype=float).reshape(-1, 4)
        err = forecast.get("error")
        self.fc_meta = (float(forecast.get("issued", ts)), self.step, float(forecast.get("coverage") or 0.0),
                        str(forecast.get("model") or ""), bool(forecast.get("warm")),
                        None if err is None else float(err))
        self.score, self.anomalous = score, anomalous
        drifting = bool(forecast.get("drifting"))
        if drifting and not self.drifting:
            self.drifts.append(ts)
        self.drifting = drifting
        if anomaly is not None:
            self.anomalies.append((float(anomaly["ts"]), float(anomaly["value"]), float(anomaly["score"]),
                                   float(anomaly["threshold"]), str(anomaly["detector"])))
        return True

    def _rebase(self, step: float) -> None:
        """Re-index the held windows at ``step`` (the series' own step, streams/steps.py), so the
        ring holds ``size`` points at that step rather than gaps between them.

        >>> v = SeriesView("m", size=100, kind="metrics")
        >>> fc = lambda t, step: {"issued": t, "step": step, "points": []}
        >>> for t in (0.0, 300.0, 600.0):
        ...     _ = v.add(t, t / 100, fc(t, 10.0), None, False, None)
        >>> v.add(900.0, 9.0, fc(900.0, 300.0), None, False, None), v.step
        (True, 300.0)
        >>> [p["ts"] for p in v.detail()["points"]], v.detail()["step"]
        ([0.0, 300.0, 600.0, 900.0], 300.0)
        """
        held = [(t, row.copy()) for t, row in self._held() if row[0] == row[0]]  # windows with a point
        self.step = step
        self.rows[:] = np.nan
        self.hi = max((self._index(t) for t, _ in held), default=-1)
        for t, row in held:
            k = self._index(t)
            if k > self.hi - self.size:  # older ones no longer fit the ring
                self.rows[k % self.size] = row

    def _held(self) -> list[tuple[float, np.ndarray]]:
        if self.hi < 0:
            return []
        lo = max(0, self.hi - self.size + 1)
        return [(k * self.step, self.rows[k % self.size]) for k in range(lo, self.hi + 1)]

    @property
    def latest(self) -> tuple[float, float] | None:
        if self.hi < 0:
            return None
        return self.hi * self.step, float(self.rows[self.hi % self.size, 0])

    def forecast(self) -> dict[str, Any] | None:
        if self.fc_meta is None:
            return None
        issued, step, coverage, model, warm, error = self.fc_meta
        return {"issued": issued, "step": step, "coverage": coverage, "model": model, "warm": warm,
                "error": error, "points": [{"ts": t, "yhat": y, "lower": a, "upper": b}
                                           for t, y, a, b in self.fc_points.tolist()]}

    def summary(self) -> dict[str, Any]:
        last = self.latest
        meta = self.fc_meta
        return {
            "series": self.series,
            "kind": self.kind,
            "unit": unit_of(self.kind),
            "ts": last[0] if last else None,
            "value": last[1] if last else None,
            "score": self.score,
            "anomalous": self.anomalous,
            "error": meta[5] if meta else None,
            "warm": meta[4] if meta else None,
            "model": meta[3] if meta else None,
            "anomalies": len(self.anomalies),
            "drifting": self.drifting,
            # the step the series is modelled at: its sampling interval, rounded up to whole windows
            "step": self.step or None,
            "points_learnt": self.learnt,
            "history_points": self.history,
        }

    def detail(self, since: float | None = None) -> dict[str, Any]:
        """Summary plus points, one-step-ahead forecasts (by the window they
        forecast, the newest being the next window), anomalies and the
        latest forecast; ``since``: only entries with ``ts > since``."""
        lo = -math.inf if since is None else since
        out = self.summary()
        out["step"] = self.step or None
        held = [(t, r.tolist()) for t, r in self._held() if t > lo]
        out["points"] = [{"ts": t, "value": r[0]} for t, r in held if r[0] == r[0]]
        fitted = [{"ts": t, "yhat": r[1], "lower": r[2], "upper": r[3]} for t, r in held if r[1] == r[1]]
        if len(self.fc_points) and self.fc_points[0, 0] > lo:
            t, y, a, b = self.fc_points[0].tolist()
            fitted.append({"ts": t, "yhat": y, "lower": a, "upper": b})
        out["fitted"] = fitted
        out["anomalies"] = [{"ts": t, "value": v, "score": s, "threshold": th, "detector": d}
                            for t, v, s, th, d in self.anomalies if t > lo]
        out["forecast"] = self.forecast()
        out["drift"] = {"drifting": self.drifting, "started": [t for t in self.drifts if t > lo]}
        return out

    def dumps(self) -> bytes:
        """Snapshot for the ``series_view`` table: JSON header + raw float64 rows."""
        held = np.array([r for _, r in self._held()], dtype="<f8").reshape(-1, 4)
        meta = orjson.dumps({
            "v": 1, "kind": self.kind, "step": self.step, "hi": self.hi, "rows": len(held),
            "fc_meta": self.fc_meta, "fc_points": self.fc_points.tolist(),
            "anomalies": list(self.anomalies), "score": self.score, "anomalous": self.anomalous,
            "drifting": self.drifting, "drifts": list(self.drifts),
            "learnt": self.learnt, "history": self.history,
        })
        return len(meta).to_bytes(4, "big") + meta + held.tobytes()

    @classmethod
    def loads(cls, series: str, size: int, raw: bytes) -> SeriesView:
        n = int.from_bytes(raw[:4], "big")
        o = orjson.loads(raw[4:4 + n])
        if o.get("v") != 1:
            raise ValueError(f"unknown view snapshot version {o.get('v')!r}")
        held = np.frombuffer(raw[4 + n:], dtype="<f8").reshape(-1, 4)
        if len(held) != int(o["rows"]):
            raise ValueError("truncated view snapshot")
        v = cls(series, size, kind=str(o.get("kind", "")))
        v.step, v.hi = float(o["step"]), int(o["hi"])
        for i, row in enumerate(held[-v.size:]):
            k = v.hi - (len(held[-v.size:]) - 1 - i)
            v.rows[k % v.size] = row
        meta = o.get("fc_meta")
        v.fc_meta = None if meta is None else (float(meta[0]), float(meta[1]), float(meta[2]), str(meta[3]),
                                                bool(meta[4]), None if meta[5] is None else float(meta[5]))
        v.fc_points = np.array(o.get("fc_points") or [], dtype=float).reshape(-1, 4)
        v.anomalies.extend((float(a[0]), float(a[1]), float(a[2]), float(a[3]), str(a[4]))
                           for a in o.get("anomalies", []))
        v.score, v.anomalous = o.get("score"), bool(o.get("anomalous"))
        v.drifting = bool(o.get("drifting"))
        v.drifts.extend(float(t) for t in o.get("drifts", []))
        v.learnt, v.history = int(o.get("learnt", 0)), int(o.get("history", 0))
        return v


@dataclass
class TargetView:
    """Replica history and decision log of one scaling target."""

    target: str
    latest: dict[str, Any]
    #: (ts, current, desired, forecast_peak)
    history: deque[tuple[float, int, int, float | None]] = field(
        default_factory=lambda: deque(maxlen=TARGET_HISTORY))
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=DECISION_LOG))
    decisions: int = 0

    def add(self, d: dict[str, Any]) -> bool:
        """Record a decision; True if it went into the decision log.

        The log keeps changes: a decision that was applied, or whose desired
        count or reason differs from the last logged one.
        """
        self.latest = d
        self.decisions += 1
        self.history.append((d["ts"], d["current"], d["desired"], d.get("forecast_peak")))
        prev = self.log[-1] if self.log else None
        if prev is None or d["applied"] or (d["desired"], d["reason"]) != (prev["desired"], prev["reason"]):
            self.log.append(d)
            return True
        return False

    def summary(self, history: bool = True) -> dict[str, Any]:
        d = self.latest
        out = {k: d.get(k) for k in ("target", "ts", "current", "desired", "applied", "reason",
                                     "message", "forecast_peak", "observed", "mode",
                                     "simulated_replicas", "signal", "schedule")}
        out["signals"] = d.get("signals") or []
        out["vs_hpa"] = records.parse_comparison(d.get("vs_hpa"))
        out["vs_hpa_total"] = records.parse_comparison(d.get("vs_hpa_total"))
        out["decisions"] = self.decisions
        if history:
            out["history"] = [{"ts": t, "current": c, "desired": w, "forecast_peak": p}
                              for t, c, w, p in self.history]
        return out

    def dumps(self) -> bytes:
        return orjson.dumps({"latest": self.latest, "history": list(self.history),
                             "log": list(self.log), "decisions": self.decisions})

    @classmethod
    def loads(cls, target: str, raw: bytes) -> TargetView:
        o = orjson.loads(raw)
        v = cls(target, o["latest"], decisions=int(o.get("decisions", 0)))
        v.history.extend((float(t), int(c), int(w), p) for t, c, w, p in o.get("history", []))
        v.log.extend(o.get("log", []))
        return v


class ViewStore:
    """In-memory read model of one worker, mirrored to two tables.

    Snapshots written to the tables are signed (``signers``: one
    :class:`~streams.checkpoint.Signer` per table) and a snapshot read back is
    used only if it verifies and parses; a bad one is skipped and counted in
    ``foresight_untrusted_state_total{table}``, never raised.
    """

    def __init__(self, size: int, metrics: Metrics, selector: SeriesSelector | None = None,
                 signers: Mapping[str, Signer] | None = None) -> None:
        self.size = size
        self.metrics = metrics
        self.selector = selector
        self.signers = dict(signers or {})
        self._rl = RateLimitedLog(log)
        self._seen_refused: set[tuple[str, str, bytes]] = set()
        self.series: dict[str, SeriesView] = {}
        self.targets: dict[str, TargetView] = {}
        self.kinds: dict[str, str] = {}

    # -- feeding (called by the agents) ----------------------------------
    def note_kind(self, series: str, kind: str) -> None:
        if self.kinds.get(series) != kind:
            self.kinds[series] = kind
            v = self.series.get(series)
            if v is not None:
                v.kind = kind

    def view(self, series: str) -> SeriesView:
        v = self.series.get(series)
        if v is None:
            v = self.series[series] = SeriesView(series, self.size, kind=self.kinds.get(series, ""))
            self.metrics.series_tracked.set(len(self.series))
        return v

    def on_window(self, series: str, ts: float, value: float, forecast: dict[str, Any],
                  score: float | None, anomalous: bool, anomaly: dict[str, Any] | None) -> SeriesView:
        v = self.view(series)
        if not v.add(ts, value, forecast, score, anomalous, anomaly):
            return v  # a window replayed after a rebalance or restart: already shown
        pts = forecast.get("points") or []
        if self.selector is not None:
            first = (pts[0]["yhat"], pts[0]["lower"], pts[0]["upper"]) if pts else None
            peak = max((p["upper"] for p in pts), default=None)
            self.selector.observe(series, value, score, first, peak)
        return v

    def note_learnt(self, series: str, updates: int, history: int = 0) -> None:
        """The series' model has learnt ``updates`` windows in all, ``history`` more from a backfill."""
        v = self.view(series)
        v.learnt = updates
        v.history += history

    def on_decision(self, d: dict[str, Any]) -> tuple[TargetView, bool]:
        t = self.targets.get(d["target"])
        if t is None:
            t = self.targets[d["target"]] = TargetView(d["target"], d)
        logged = t.add(d)
        self.metrics.decisions.labels(d["target"], d["reason"]).inc()
        self._target_gauges(d)
        return t, logged

    def _target_gauges(self, d: dict[str, Any]) -> None:
        m = self.metrics
        m.desired_replicas.labels(d["target"]).set(d["desired"])
        m.current_replicas.labels(d["target"]).set(d["current"])
        m.decision_timestamp.labels(d["target"]).set(d["ts"])
        if d.get("forecast_peak") is not None:
            m.forecast_peak.labels(d["target"]).set(d["forecast_peak"])
        vs = d.get("vs_hpa")
        if vs:
            for policy, unserved, replica_s in (
                ("predictive", vs["unserved"], vs["replica_seconds"]),
                ("hpa", vs["hpa_unserved"], vs["hpa_replica_seconds"]),
                ("hpa_equal_cost", vs["hpa_equal_cost_unserved"], vs["replica_seconds"]),
            ):
                m.target_unserved.labels(d["target"], policy).set(unserved)
                m.target_replica_seconds.labels(d["target"], policy).set(replica_s)

    # -- restoring and forgetting ----------------------------------------
    def snapshot_series(self, v: SeriesView) -> bytes:
        """The signed ``series_view`` record of a series."""
        return self._sign("series_view", v.series, v.dumps())

    def snapshot_target(self, t: TargetView) -> bytes:
        """The signed ``targets`` record of a target."""
        return self._sign("targets", t.target, t.dumps())

    def _sign(self, table: str, key: str, body: bytes) -> bytes:
        signer = self.signers.get(table)
        return body if signer is None else signer.sign(key.encode(), body)

    def _verified(self, table: str, key: str, raw: Any) -> bytes | None:
        signer = self.signers.get(table)
        try:
            if signer is None:
                if not isinstance(raw, bytes | bytearray):
                    raise UntrustedCheckpoint(f"{table} record for {key!r} is not bytes")
                return bytes(raw)
            return signer.verify(key.encode(), raw)
        except UntrustedCheckpoint as exc:
            self._refused(table, key, str(exc), raw)
            return None

    def _refused(self, table: str, key: str, why: str, raw: Any = b"") -> None:
        """Count (once per distinct record) and log (rate-limited) a refused snapshot."""
        body = raw if isinstance(raw, bytes | bytearray) else repr(raw).encode()
        seen = (table, key, hashlib.blake2b(body, digest_size=8).digest())
        if seen in self._seen_refused:
            return
        if len(self._seen_refused) > 10_000:
            self._seen_refused.clear()
        self._seen_refused.add(seen)
        self.metrics.untrusted_state.labels(table).inc()
        self._rl.log(logging.WARNING, f"{table}:{key}", "%s: refusing the %s snapshot of %r (%s); starting empty",
                     table, table, key[:100], why)

    def restore_series(self, series: str, raw: Any) -> SeriesView | None:
        """Restore a series' view from its ``series_view`` record; None (counted) if it is not usable."""
        body = self._verified("series_view", series, raw)
        if body is None:
            return None
        try:
            v = SeriesView.loads(series, self.size, body)
        except Exception as exc:  # noqa: BLE001 - any shape of bad snapshot is skipped, never fatal
            self._refused("series_view", series, f"unreadable: {type(exc).__name__}: {exc}", raw)
            return None
        self.series[series] = v
        if series in self.kinds:
            v.kind = self.kinds[series]
        self.metrics.series_tracked.set(len(self.series))
        return v

    def restore_target(self, target: str, raw: Any) -> TargetView | None:
        """Restore a target's view from its ``targets`` record; None (counted) if it is not usable."""
        body = self._verified("targets", target, raw)
        if body is None:
            return None
        try:
            t = TargetView.loads(target, body)
            self._target_gauges(t.latest)  # this worker now exports the target's gauges
        except Exception as exc:  # noqa: BLE001 - any shape of bad snapshot is skipped, never fatal
            self._refused("targets", target, f"unreadable: {type(exc).__name__}: {exc}", raw)
            return None
        self.targets[target] = t
        return t

    def evict(self, series: str) -> SeriesView | None:
        """Drop an idle series' view from memory (the caller snapshots it first); its per-series
        gauges go too. It comes back from its ``series_view`` record when the series does."""
        v = self.series.pop(series, None)
        self.kinds.pop(series, None)
        if self.selector is not None:
            self.selector.forget(series)
        self.metrics.series_tracked.set(len(self.series))
        return v

    def forget(self, keep_series: Callable[[str], bool], keep_target: Callable[[str], bool]) -> None:
        """Drop what this worker no longer owns (called with each new assignment)."""
        for s in [s for s in self.series if not keep_series(s)]:
            del self.series[s]
            self.kinds.pop(s, None)
            if self.selector is not None:
                self.selector.forget(s)
        m = self.metrics
        for t in [t for t in self.targets if not keep_target(t)]:
            self.targets.pop(t)
            for policy in ("predictive", "hpa", "hpa_equal_cost"):
                for g2 in (m.target_unserved, m.target_replica_seconds):
                    try:
                        g2.remove(t, policy)
                    except KeyError:
                        pass
            for g in (m.desired_replicas, m.current_replicas, m.forecast_peak, m.decision_timestamp):
                try:
                    g.remove(t)
                except KeyError:
                    pass
        m.series_tracked.set(len(self.series))


# -- queries (pure, used locally and merged across workers) ---------------

SORTS: dict[str, tuple[Callable[[dict[str, Any]], Any], bool]] = {
    "series": (lambda r: r["series"], False),
    "score": (lambda r: (-1.0 if r["score"] is None else r["score"], r["series"]), True),
    "error": (lambda r: (-1.0 if r["error"] is None else r["error"], r["series"]), True),
    "value": (lambda r: (-math.inf if r["value"] is None else r["value"], r["series"]), True),
}


def select_rows(rows: Iterable[dict[str, Any]], q: str, sort: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Filter by substring, sort, keep the first ``limit``; returns (rows, total matched).

    >>> rows = [{"series": s, "score": sc} for s, sc in (("a/x", 0.1), ("b/x", 0.9), ("c/y", None))]
    >>> [r["series"] for r in select_rows(rows, "x", "score", 10)[0]]
    ['b/x', 'a/x']
    """
    ql = q.lower()
    matched = [r for r in rows if ql in r["series"].lower()] if ql else list(rows)
    key, reverse = SORTS.get(sort, SORTS["series"])
    matched.sort(key=key, reverse=reverse)
    return matched[:limit], len(matched)


def _int(request: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return max(lo, min(hi, int(raw)))
    except ValueError:
        raise _BadRequest(f"query parameter {name!r} must be an integer") from None


def _float(request: Any, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        v = float(raw)
    except ValueError:
        raise _BadRequest(f"query parameter {name!r} must be a number (epoch seconds)") from None
    if not math.isfinite(v):
        raise _BadRequest(f"query parameter {name!r} must be finite")
    return v


class _BadRequest(ValueError):
    pass


# -- registration ---------------------------------------------------------


def register(app: faust.App, settings: Settings, topics: Topics, store: ViewStore,
             series_table: faust.Table, targets_table: faust.Table) -> None:
    """Register the dashboard, the static assets and the JSON API on ``app``."""

    def json_response(view: Any, body: Any, status: int = 200) -> Any:
        return view.bytes(orjson.dumps(body), content_type="application/json", status=status,
                          headers={"Cache-Control": "no-store"})

    def error(view: Any, status: int, message: str, **extra: Any) -> Any:
        return json_response(view, {"error": message, "status": status, **extra}, status)

    # -- ownership ----------------------------------------------------------
    def distribution(topic: str) -> dict[str, set[int]]:
        """Worker URL -> partitions of ``topic`` it actively owns."""
        try:
            meta = app.router.external_topics_metadata()
        except Exception:  # noqa: BLE001 - not assigned yet
            return {}
        out: dict[str, set[int]] = {}
        for url, tps in (meta or {}).items():
            parts = set(tps.get(topic, ()))
            if parts:
                out[str(url).rstrip("/")] = parts
        return out

    def self_url() -> str:
        return str(app.conf.canonical_url).rstrip("/")

    def owner(topic: str, key: str) -> tuple[str | None, bool]:
        """(owner URL, is this worker) for ``key`` of ``topic``; (None, True) when unknown."""
        dist = distribution(topic)
        if not dist:
            return None, True
        n = max(settings.partitions, max(max(p) for p in dist.values()) + 1)
        p = partition_for(key, n)
        for url, parts in dist.items():
            if p in parts:
                return url, url == self_url()
        return None, True

    def owned_partitions(topic: str) -> set[int] | None:
        """Partitions of ``topic`` this worker owns (None: no assignment known yet)."""
        try:
            actives = app.assignor.assigned_actives()
        except Exception:  # noqa: BLE001
            return None
        return {tp.partition for tp in actives if tp.topic == topic}

    def owns(topic: str) -> Callable[[str], bool]:
        owned = owned_partitions(topic)
        if owned is None:
            return lambda key: True
        n = max(settings.partitions, max(owned, default=-1) + 1)
        return lambda key: partition_for(key, n) in owned

    # -- restoring from the tables -----------------------------------------
    def sync_series() -> None:
        keep = owns(topics.points)
        for k, v in list(series_table.items()):
            s = _table_key(k)
            if s is None:
                store._refused("series_view", repr(k)[:100], "key is not UTF-8", v)
                continue
            if v is None or s in store.series or not keep(s):
                continue
            store.restore_series(s, v)  # a bad snapshot is skipped and counted

    specs = target_specs(settings)

    def with_spec(summary: dict[str, Any]) -> dict[str, Any]:
        """A target's summary plus its spec (capacity, min, max: to check a count by eye) and unit."""
        spec = specs.get(summary["target"])
        summary["spec"] = spec
        view = store.series.get(spec["series"]) if spec else None
        summary["unit"] = unit_of(view.kind) if view is not None else None
        return summary

    def sync_targets() -> None:
        keep = owns(topics.decisions)
        for k, v in list(targets_table.items()):
            t = _table_key(k)
            if t is None:
                store._refused("targets", repr(k)[:100], "key is not UTF-8", v)
                continue
            if v is None or t in store.targets or not keep(t):
                continue
            store.restore_target(t, v)  # a bad snapshot is skipped and counted

    def local_series(series: str) -> SeriesView | None:
        v = store.series.get(series)
        if v is None:
            raw = series_table.get(series.encode())
            if raw:
                v = store.restore_series(series, raw)
        return v

    # -- asking the other workers -----------------------------------------
    async def forward(url: str, request: Any) -> tuple[int, Any]:
        target = f"{url}{request.rel_url.raw_path}"
        if request.rel_url.raw_query_string:
            target += "?" + request.rel_url.raw_query_string
        timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT)
        async with app.http_client.get(target, headers={ROUTED_HEADER: "1"}, timeout=timeout) as r:
            body = await r.read()
            return r.status, orjson.loads(body)

    async def fan_out(request: Any, local: Callable[[], Any]) -> tuple[list[Any], list[str]]:
        """The local answer plus every other worker's, and the workers that failed."""
        if request.headers.get(ROUTED_HEADER):
            return [local()], []
        me = self_url()
        peers = sorted(u for u in _all_workers() if u != me)
        results: list[Any] = [local()]
        failed: list[str] = []

        async def ask(u: str) -> None:
            try:
                status, body = await forward(u, request)
                if status == 200:
                    results.append(body)
                else:
                    failed.append(u)
            except Exception as exc:  # noqa: BLE001 - a worker down makes the answer partial
                log.warning("worker %s did not answer: %s", u, exc)
                failed.append(u)

        await asyncio.gather(*(ask(u) for u in peers))
        return results, failed

    def _all_workers() -> set[str]:
        try:
            meta = app.router.external_topics_metadata() or {}
        except Exception:  # noqa: BLE001
            return set()
        return {str(u).rstrip("/") for u in meta}

    # -- pages ---------------------------------------------------------------
    app.web.add_static("/static/", STATIC_DIR)
    index_html = (STATIC_DIR / "index.html").read_bytes()

    @app.page("/dashboard/", name="foresight-dashboard")
    async def dashboard_page(view: Any, request: Any) -> Any:
        return view.bytes(index_html, content_type="text/html", headers={"Cache-Control": "no-store"})

    @app.page("/dashboard", name="foresight-dashboard-noslash")
    async def dashboard_noslash(view: Any, request: Any) -> Any:
        return view.bytes(index_html, content_type="text/html", headers={"Cache-Control": "no-store"})

    @app.page("/api/series", name="foresight-api-series")
    async def api_series(view: Any, request: Any) -> Any:
        try:
            q = request.query.get("q", "")
            sort = request.query.get("sort", "series")
            if sort not in SORTS:
                raise _BadRequest(f"sort must be one of {sorted(SORTS)}")
            offset = _int(request, "offset", 0, 0, 10**9)
            limit = _int(request, "limit", 50, 1, MAX_PAGE)
        except _BadRequest as exc:
            return error(view, 400, str(exc))

        def local() -> dict[str, Any]:
            sync_series()
            rows, total = select_rows((v.summary() for v in store.series.values()), q, sort, offset + limit)
            return {"items": rows, "total": total}

        parts, failed = await fan_out(request, local)
        if request.headers.get(ROUTED_HEADER):
            return json_response(view, parts[0])
        merged = [r for p in parts for r in p["items"]]
        rows, _ = select_rows(merged, "", sort, offset + limit)
        total = sum(p["total"] for p in parts)
        return json_response(view, {"items": rows[offset:offset + limit], "total": total,
                                    "offset": offset, "limit": limit, "partial": bool(failed),
                                    "workers": len(parts) + len(failed), "unavailable": failed})

    @app.page("/api/series/{series:.+}", name="foresight-api-series-one")
    async def api_series_one(view: Any, request: Any, series: str) -> Any:
        try:
            since = _float(request, "since")
        except _BadRequest as exc:
            return error(view, 400, str(exc))
        if not request.headers.get(ROUTED_HEADER):
            url, mine = owner(topics.points, series)
            if not mine and url is not None:
                try:
                    status, body = await forward(url, request)
                except Exception as exc:  # noqa: BLE001
                    return error(view, 503, f"the worker owning this series ({url}) did not answer: {exc}",
                                 series=series, owner=url)
                return json_response(view, body, status)
        v = local_series(series)
        if v is None:
            return error(view, 404, "unknown series", series=series)
        body = v.detail(since)
        body["worker"] = self_url()
        return json_response(view, body)

    @app.page("/api/targets", name="foresight-api-targets")
    async def api_targets(view: Any, request: Any) -> Any:
        history = request.query.get("history", "1") not in ("0", "false", "no")

        def local() -> dict[str, Any]:
            sync_targets()
            return {"items": [with_spec(t.summary(history)) for t in store.targets.values()]}

        parts, failed = await fan_out(request, local)
        if request.headers.get(ROUTED_HEADER):
            return json_response(view, parts[0])
        items = sorted((t for p in parts for t in p["items"]), key=lambda t: t["target"])
        return json_response(view, {"items": items, "partial": bool(failed), "unavailable": failed})

    @app.page("/api/decisions", name="foresight-api-decisions")
    async def api_decisions(view: Any, request: Any) -> Any:
        try:
            limit = _int(request, "limit", 50, 1, MAX_PAGE)
            since = _float(request, "since")
        except _BadRequest as exc:
            return error(view, 400, str(exc))
        only = request.query.get("target") or None
        lo = -math.inf if since is None else since

        def local() -> dict[str, Any]:
            sync_targets()
            rows = [d for t in store.targets.values() if only is None or t.target == only
                    for d in t.log if d["ts"] > lo]
            rows.sort(key=lambda d: (d["ts"], d["target"]), reverse=True)
            return {"items": rows[:limit]}

        parts, failed = await fan_out(request, local)
        if request.headers.get(ROUTED_HEADER):
            return json_response(view, parts[0])
        rows = sorted((d for p in parts for d in p["items"]), key=lambda d: (d["ts"], d["target"]),
                      reverse=True)
        return json_response(view, {"items": rows[:limit], "partial": bool(failed), "unavailable": failed})

    app.foresight_web = {  # type: ignore[attr-defined]
        "owner": owner, "owns": owns, "sync_series": sync_series, "sync_targets": sync_targets,
    }


def _table_key(k: Any) -> str | None:
    """A table key as text; None if it is not UTF-8 (only a forged record has such a key)."""
    if isinstance(k, bytes | bytearray):
        try:
            return bytes(k).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return str(k)


def series_path(series: str) -> str:
    """URL path of a series in the API (ids contain '/', which is kept encoded).

    >>> series_path("checkout/requests")
    '/api/series/checkout%2Frequests'
    """
    return "/api/series/" + quote(series, safe="")


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


def consumer_lag(app: faust.App, topics: Iterable[str]) -> Callable[[], Mapping[tuple[str, int], int]]:
    """Per-partition lag of the worker's consumer for ``topics`` (read at scrape time)."""
    wanted = set(topics)

    def lag() -> dict[tuple[str, int], int]:
        c = app.consumer
        out: dict[tuple[str, int], int] = {}
        read = getattr(c, "_read_offset", {})
        committed = getattr(c, "_committed_offset", {})
        for tp in c.assignment():
            if tp.topic not in wanted:
                continue
            try:
                hw = c.highwater(tp)
            except Exception:  # noqa: BLE001 - no fetch yet
                continue
            if hw is None:
                continue
            pos = read.get(tp)
            nxt = pos + 1 if pos is not None else committed.get(tp) or 0
            out[(tp.topic, tp.partition)] = max(0, int(hw) - int(nxt))
        return out

    return lag
