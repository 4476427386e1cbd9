"""The read model behind the API and dashboard: per series and per target, what a worker serves.

:class:`ViewStore` keeps, per series this worker owns, a bounded recent
history (points, one-step-ahead forecasts, anomalies, the latest forecast)
fed by the model agent, and per scaling target the replica history and the
decision log fed by the decisions agent. Both are snapshotted to
changelog-backed tables (``series_view`` every checkpoint, ``targets`` on
every logged decision) so a restarted or rebalanced worker serves the
history it took over.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson

from detectors.forecast import Forecast
from streams import records
from streams.checkpoint import Signer, UntrustedCheckpoint
from streams.metrics import Metrics, SeriesSelector
from streams.ratelog import RateLimitedLog
from streams.settings import Settings

log = logging.getLogger("foresight.web")

#: settings the web layer reads (with these defaults until Settings has them)
DEFAULT_VIEW_POINTS = 360
DECISION_LOG = 200
TARGET_HISTORY = 720
ANOMALY_HISTORY = 100


class Anomaly(NamedTuple):
    """A window the detector flagged, as the view keeps it (the ``anomalies`` record's fields)."""

    ts: float
    value: float
    score: float
    threshold: float
    detector: str


def view_points(settings: Settings) -> int:
    return int(settings.view_points or DEFAULT_VIEW_POINTS)



def unit_of(kind: str) -> str:
    """The unit of a series' values: event series are rates."""
    return "events/s" if kind == "events" else ""


class SeriesView:
    """Recent history of one series, compact: a ring of the last ``size``
    windows indexed by window number (window starts are epoch-aligned
    multiples of the step). Per window the observed value (float64, exactly
    what went on the ``points`` topic) and the one-step-ahead forecast made
    for it (yhat, lower, upper as float32: a view, 7 significant digits); NaN
    where missing: 20 bytes a window. The latest forecast is kept as the model
    agent's array (float64, as published), anomalies and drift starts (rare) in
    short deques made on the first one.

    >>> from dataclasses import replace
    >>> from detectors.forecast import Forecast, ForecastPoint
    >>> v = SeriesView("a/b", size=4, kind="events")
    >>> fc = Forecast("a/b", 20.0, 10.0, (ForecastPoint(30.0, 7.0, 6.0, 8.0),), 0.8, "m", True, 0.5)
    >>> v.add(20.0, 6.5, fc, 0.1, False, None)
    True
    >>> d = v.detail()
    >>> d["points"], d["fitted"], d["unit"]
    ([{'ts': 20.0, 'value': 6.5}], [{'ts': 30.0, 'yhat': 7.0, 'lower': 6.0, 'upper': 8.0}], 'events/s')
    >>> v.add(30.0, 7.5, replace(fc, issued=30.0, points=(ForecastPoint(40.0, 8.1, 7.0, 9.0),)),
    ...       0.2, False, None)
    True
    >>> [f["ts"] for f in v.detail()["fitted"]], v.add(20.0, 1.0, fc, 0.0, False, None)
    ([30.0, 40.0], False)

    A fitted value is shown at float32's precision, by its shortest decimal form (8.1, not
    8.100000381469727); the latest forecast exactly as published:

    >>> v.add(40.0, 8.0, replace(fc, issued=40.0, points=(ForecastPoint(50.0, 9.0, 8.0, 10.0),)),
    ...       0.2, False, None)
    True
    >>> v.detail()["fitted"][1]
    {'ts': 40.0, 'yhat': 8.1, 'lower': 7.0, 'upper': 9.0}
    """

    __slots__ = ("series", "size", "kind", "step", "hi", "values", "fitted", "fc_meta", "fc_points",
                 "anomalies", "score", "anomalous", "drifting", "drifts", "learnt", "history")

    def __init__(self, series: str, size: int, kind: str = "") -> None:
        self.series = series
        self.size = max(2, int(size))
        self.kind = kind
        self.step = 0.0
        self.hi = -1  # newest window number held (-1: none)
        #: per window: the observed value, and the one-step-ahead (yhat, lower, upper) made for it
        self.values = np.full(self.size, np.nan)
        self.fitted = np.full((self.size, 3), np.nan, dtype=np.float32)
        #: latest forecast: (issued, step, coverage, model, warm, error) and its points (H x 4)
        self.fc_meta: tuple[float, float, float, str, bool, float | None] | None = None
        self.fc_points = _NO_POINTS
        #: (ts, value, score, threshold, detector); None until the first
        self.anomalies: deque[tuple[float, float, float, float, str]] | None = None
        self.score: float | None = None
        self.anomalous = False
        #: the model says its errors changed regime; ``drifts``: when each spell started (None
        #: until the first)
        self.drifting = False
        self.drifts: deque[float] | None = None
        #: windows the series' model has learnt in all, and of those from a history backfill
        self.learnt = 0
        self.history = 0

    def _index(self, ts: float) -> int:
        return int(round(ts / self.step))

    def add(self, ts: float, value: float, forecast: Forecast, score: float | None,
            anomalous: bool, anomaly: Anomaly | None) -> bool:
        """Record a closed window and the forecast issued after it; False if
        the window is not newer than the newest held (a replay)."""
        points = np.array([[p.ts, p.yhat, p.lower, p.upper] for p in forecast.points],
                          dtype=float).reshape(-1, 4)
        err = forecast.error
        return self.add_arrays(ts, value, float(forecast.step or 0.0), points,
                               (float(forecast.issued), float(forecast.coverage or 0.0),
                                str(forecast.model or ""), bool(forecast.warm),
                                None if err is None else float(err)),
                               score, anomalous, bool(forecast.drifting), anomaly)

    def add_arrays(self, ts: float, value: float, step: float, points: np.ndarray,
                   meta: tuple[float, float, str, bool, float | None], score: float | None,
                   anomalous: bool, drifting: bool, anomaly: Anomaly | None) -> bool:
        """:meth:`add` with the forecast as arrays (the model agent's, without a
        :class:`Forecast`): ``points`` its ``(ts, yhat, lower, upper)`` rows (kept, not
        copied), ``meta`` its ``(issued, coverage, model, warm, error)``."""
        if not self.step:
            self.step = step
            if self.step <= 0:
                return False
        elif (step or self.step) != self.step:
            self._rebase(step)  # the series is modelled at a new step
        k = self._index(ts)
        if k <= self.hi:
            return False
        n = self.size
        if self.hi >= 0 and k - self.hi < n:
            gaps = np.arange(self.hi + 1, k) % n  # windows with no point
            self.values[gaps] = np.nan
            self.fitted[gaps] = np.nan
        else:
            self.values[:] = np.nan
            self.fitted[:] = np.nan
        i = k % n
        self.values[i] = value
        if self.fc_meta is not None and len(self.fc_points) and self._index(self.fc_points[0, 0]) == k:
            self.fitted[i] = self.fc_points[0, 1:]
        else:
            self.fitted[i] = np.nan
        self.hi = k
        self.fc_points = points
        issued, coverage, model, warm, error = meta
        self.fc_meta = (issued, self.step, coverage, model, warm, error)
        self.score, self.anomalous = score, anomalous
        if drifting and not self.drifting:
            if self.drifts is None:
                self.drifts = deque(maxlen=ANOMALY_HISTORY)
            self.drifts.append(ts)
        self.drifting = drifting
        if anomaly is not None:
            if self.anomalies is None:
                self.anomalies = deque(maxlen=ANOMALY_HISTORY)
            self.anomalies.append((float(anomaly.ts), float(anomaly.value), float(anomaly.score),
                                   float(anomaly.threshold), str(anomaly.detector)))
        return True

    def _rebase(self, step: float) -> None:
        """Re-index the held windows at ``step`` (the series' own step, streams/steps.py), so the
        ring holds ``size`` points at that step rather than gaps between them.

        >>> from detectors.forecast import Forecast
        >>> v = SeriesView("m", size=100, kind="metrics")
        >>> fc = lambda t, step: Forecast("m", t, step, (), 0.8, "m", True)
        >>> for t in (0.0, 300.0, 600.0):
        ...     _ = v.add(t, t / 100, fc(t, 10.0), None, False, None)
        >>> v.add(900.0, 9.0, fc(900.0, 300.0), None, False, None), v.step
        (True, 300.0)
        >>> [p["ts"] for p in v.detail()["points"]], v.detail()["step"]
        ([0.0, 300.0, 600.0, 900.0], 300.0)
        """
        held = [(k * self.step, self.values[i], self.fitted[i].copy())
                for k, i in self._held() if self.values[i] == self.values[i]]  # windows with a point
        self.step = step
        self.values[:] = np.nan
        self.fitted[:] = np.nan
        self.hi = max((self._index(t) for t, _, _ in held), default=-1)
        for t, value, fitted in held:
            k = self._index(t)
            if k > self.hi - self.size:  # older ones no longer fit the ring
                self.values[k % self.size] = value
                self.fitted[k % self.size] = fitted

    def _held(self) -> list[tuple[int, int]]:
        """(window number, ring index) of the windows held, oldest first."""
        if self.hi < 0:
            return []
        return [(k, k % self.size) for k in range(max(0, self.hi - self.size + 1), self.hi + 1)]

    def _order(self) -> np.ndarray:
        """Ring indices of the windows held, oldest first."""
        if self.hi < 0:
            return np.empty(0, np.intp)
        return np.arange(max(0, self.hi - self.size + 1), self.hi + 1) % self.size

    @property
    def latest(self) -> tuple[float, float] | None:
        if self.hi < 0:
            return None
        return self.hi * self.step, float(self.values[self.hi % self.size])

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
            "anomalies": len(self.anomalies or ()),
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
        held = [(k * self.step, i) for k, i in self._held() if k * self.step > lo]
        values = self.values.tolist()
        fitted = _shortest(self.fitted)
        out["points"] = [{"ts": t, "value": values[i]} for t, i in held if values[i] == values[i]]
        shown = [{"ts": t, "yhat": fitted[i][0], "lower": fitted[i][1], "upper": fitted[i][2]}
                 for t, i in held if fitted[i][0] == fitted[i][0]]
        if len(self.fc_points) and self.fc_points[0, 0] > lo:
            t, y, a, b = self.fc_points[0].tolist()
            shown.append({"ts": t, "yhat": y, "lower": a, "upper": b})
        out["fitted"] = shown
        out["anomalies"] = [{"ts": t, "value": v, "score": s, "threshold": th, "detector": d}
                            for t, v, s, th, d in self.anomalies or () if t > lo]
        out["forecast"] = self.forecast()
        out["drift"] = {"drifting": self.drifting, "started": [t for t in self.drifts or () if t > lo]}
        return out

    def dumps(self) -> bytes:
        """Snapshot for the ``series_view`` table: a JSON header, then the held windows' values
        (float64), their one-step-ahead forecasts (float32 x 3) and the latest forecast's points
        (float64 x 4), raw, little-endian (about 9.5 KB for 360 windows and 62 points; version 1
        kept four float64 a window and the points as JSON, about 16 KB)."""
        order = self._order()
        points = np.ascontiguousarray(self.fc_points, dtype="<f8")
        meta = orjson.dumps({
            "v": 2, "kind": self.kind, "step": self.step, "hi": self.hi, "rows": len(order),
            "points": len(points), "fc_meta": self.fc_meta,
            "anomalies": list(self.anomalies or ()), "score": self.score, "anomalous": self.anomalous,
            "drifting": self.drifting, "drifts": list(self.drifts or ()),
            "learnt": self.learnt, "history": self.history,
        })
        return b"".join((len(meta).to_bytes(4, "big"), meta, self.values[order].astype("<f8").tobytes(),
                         self.fitted[order].astype("<f4").tobytes(), points.tobytes()))

    @classmethod
    def loads(cls, series: str, size: int, raw: bytes) -> SeriesView:
        """A view from :meth:`dumps` (version 2, or version 1 as written before it)."""
        n = int.from_bytes(raw[:4], "big")
        o = orjson.loads(raw[4:4 + n])
        body, rows = memoryview(raw)[4 + n:], int(o["rows"])
        if o.get("v") == 1:
            if len(body) != rows * 32:
                raise ValueError("truncated view snapshot")
            held = np.frombuffer(body, dtype="<f8").reshape(-1, 4)
            values, fitted = held[:, 0], held[:, 1:]
            points = np.array(o.get("fc_points") or [], dtype=float).reshape(-1, 4)
        elif o.get("v") == 2:
            h = int(o["points"])
            if len(body) != rows * 8 + rows * 12 + h * 32:
                raise ValueError("truncated view snapshot")
            values = np.frombuffer(body, "<f8", rows)
            fitted = np.frombuffer(body, "<f4", rows * 3, rows * 8).reshape(rows, 3)
            points = np.frombuffer(body, "<f8", h * 4, rows * 20).reshape(h, 4).astype(float)
        else:
            raise ValueError(f"unknown view snapshot version {o.get('v')!r}")
        v = cls(series, size, kind=str(o.get("kind", "")))
        v.step, v.hi = float(o["step"]), int(o["hi"])
        keep = min(rows, v.size)
        if keep:
            at = np.arange(v.hi - keep + 1, v.hi + 1) % v.size
            v.values[at] = values[rows - keep:]
            v.fitted[at] = fitted[rows - keep:]
        meta = o.get("fc_meta")
        v.fc_meta = None if meta is None else (float(meta[0]), float(meta[1]), float(meta[2]), str(meta[3]),
                                                bool(meta[4]), None if meta[5] is None else float(meta[5]))
        v.fc_points = points if len(points) else _NO_POINTS
        if o.get("anomalies"):
            v.anomalies = deque(((float(a[0]), float(a[1]), float(a[2]), float(a[3]), str(a[4]))
                                 for a in o["anomalies"]), maxlen=ANOMALY_HISTORY)
        v.score, v.anomalous = o.get("score"), bool(o.get("anomalous"))
        v.drifting = bool(o.get("drifting"))
        if o.get("drifts"):
            v.drifts = deque((float(t) for t in o["drifts"]), maxlen=ANOMALY_HISTORY)
        v.learnt, v.history = int(o.get("learnt", 0)), int(o.get("history", 0))
        return v


#: the latest forecast of a view that has none (shared: never written to)
_NO_POINTS = np.empty((0, 4))
_NO_POINTS.flags.writeable = False


def _shortest(a: np.ndarray) -> list[list[float]]:
    """A float32 array as Python floats by their shortest decimal form (what the float32 holds
    to its 7 digits: 8.1, not 8.100000381469727); NaN stays NaN."""
    return a.astype(str).astype(float).tolist()


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
        #: series evicted as idle and not back since: the API's sync from the ``series_view``
        #: table leaves them there (they come back when the series does, see :meth:`wanted`)
        self.evicted: set[str] = set()

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
            self.evicted.discard(series)
            self.metrics.series_tracked.set(len(self.series))
        return v

    def wanted(self, series: str) -> bool:
        """Whether the API should restore ``series``' view from the table (not evicted as idle)."""
        return series not in self.evicted

    def on_window(self, series: str, ts: float, value: float, forecast: Forecast,
                  score: float | None, anomalous: bool, anomaly: Anomaly | None) -> SeriesView:
        """A closed window of ``series``, the forecast issued after it and its anomaly, if any."""
        v = self.view(series)
        if not v.add(ts, value, forecast, score, anomalous, anomaly):
            return v  # a window replayed after a rebalance or restart: already shown
        pts = forecast.points
        if self.selector is not None:
            first = (pts[0].yhat, pts[0].lower, pts[0].upper) if pts else None
            peak = max((p.upper for p in pts), default=None)
            self.selector.observe(series, value, score, first, peak)
        return v

    def on_window_arrays(self, series: str, ts: float, value: float, step: float, points: np.ndarray,
                         meta: tuple[float, float, str, bool, float | None], score: float | None,
                         anomalous: bool, drifting: bool, anomaly: Anomaly | None,
                         learnt: int) -> SeriesView:
        """:meth:`on_window` and :meth:`note_learnt` with the forecast as arrays (the model
        agent's, see :meth:`SeriesView.add_arrays`)."""
        v = self.view(series)
        v.learnt = learnt
        if not v.add_arrays(ts, value, step, points, meta, score, anomalous, drifting, anomaly):
            return v  # a window replayed after a rebalance or restart: already shown
        if self.selector is not None:
            first = tuple(points[0, 1:].tolist()) if len(points) else None
            self.selector.observe(series, value, score, first,  # type: ignore[arg-type]
                                  max(points[:, 3].tolist(), default=None))
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
        self.evicted.discard(series)
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
        self.evicted.add(series)
        if self.selector is not None:
            self.selector.forget(series)
        self.metrics.series_tracked.set(len(self.series))
        return v

    def forget(self, keep_series: Callable[[str], bool], keep_target: Callable[[str], bool]) -> None:
        """Drop what this worker no longer owns (called with each new assignment)."""
        self.evicted = {s for s in self.evicted if keep_series(s)}
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
