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
import os
import struct
import tempfile
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


#: the newest windows of a view held in memory (its tail); the older ones are in its ring in
#: :class:`Rings` (a file of the worker's data directory, or memory)
TAIL = 32
#: views a block of tails (and of in-memory rings) holds: a store allocates a block at a time
BLOCK = 1024
#: bytes of a window: its observed value (float64) and the one-step-ahead forecast made for it
#: (yhat, lower, upper as float32)
WINDOW_BYTES = 20
#: a version 3 ``series_view`` snapshot's first 4 bytes (:meth:`SeriesView.dumps`); an earlier
#: one starts with its JSON header's length (big-endian: never this)
_V3 = b"\xffFV3"
#: its fixed header: magic, step, newest window, windows, forecast points, columns a point (3:
#: float32 at issued + k step; 4: float64 with ts), flags (1 a forecast, 2 warm, 4 anomalous,
#: 8 drifting, 16 a score, 32 an error), issued, the forecast's step, coverage, error, score,
#: windows learnt, from history; then the byte lengths of the kind, the model name, the drift
#: starts (a count of float64) and the anomalies (JSON)
_V3_HEAD = struct.Struct("<4sdqIIBBdddddqqHHII")
_NAN8 = np.array(np.nan).tobytes()
_NAN12 = np.full(3, np.nan, np.float32).tobytes()


class Rings:
    """The history of many views, one row each: per row a ring of ``size`` windows (window
    number ``k`` at ``k % size``: its observed value, float64, and the one-step-ahead forecast
    made for it, float32 x 3; the values of the ring first, then the forecasts) and a tail of
    the newest :data:`TAIL` windows (by ``k`` minus where the tail starts).

    ``directory``: the rings are kept in a fresh file there, unlinked as soon as it is open
    (as the tables' copy, streams/tablestore.py: it never outlives the process), read and
    written with ``pread``/``pwrite``: they are in the operating system's page cache, not in
    the worker's heap. ``None``: in memory, in blocks of ``block`` rows. The tails are always
    in memory (in blocks): a view writes its tail to its ring every :data:`TAIL` windows. What
    a row holds is undefined until its view writes it (a view knows which windows it wrote);
    rows are reused once freed.

    >>> r = Rings(4, block=2)
    >>> a = r.alloc(); r.write(a, 3, np.array([1.0, 5.0]), np.full((2, 3), 2.0, np.float32))
    True
    >>> values, fitted = r.read(a)
    >>> np.frombuffer(values)[[3, 0]].tolist(), len(fitted)   # from position 3 on, wrapping
    ([1.0, 5.0], 48)
    >>> r.free(a); r.alloc() == a
    True
    """

    def __init__(self, size: int, directory: str | Path | None = None, block: int = BLOCK) -> None:
        self.size = int(size)
        self.block = int(block)
        self._tail_v: list[np.ndarray] = []
        self._tail_f: list[np.ndarray] = []
        #: per block, per row: the window number of the first point of the row's forecast in
        #: :meth:`forecasts` (meaningful while its view holds that row: ``SeriesView._slot``)
        self._next: list[np.ndarray] = []
        self._mem_v: list[np.ndarray] = []
        self._mem_f: list[np.ndarray] = []
        self._free: list[int] = []
        #: per horizon, per block: the rows' latest forecasts (:meth:`forecasts`)
        self._fcs: dict[int, list[np.ndarray]] = {}
        self._rows = 0
        self._fd: int | None = None
        self._warned = False
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix="views-", suffix=".rings", dir=directory)
            os.unlink(path)
            self._fd = fd

    def close(self) -> None:
        """Close the file (its space goes with it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def alloc(self) -> int:
        """A free row."""
        if self._free:
            return self._free.pop()
        row, self._rows = self._rows, self._rows + 1
        if row // self.block == len(self._tail_v):
            b = self.block
            self._tail_v.append(np.empty((b, TAIL)))
            self._tail_f.append(np.empty((b, TAIL, 3), np.float32))
            self._next.append(np.empty(b, np.int64))
            if self._fd is None:  # np.empty: not resident until written
                self._mem_v.append(np.empty((b, self.size)))
                self._mem_f.append(np.empty((b, self.size, 3), np.float32))
            else:  # a sparse file: no space until written
                os.ftruncate(self._fd, len(self._tail_v) * b * self.size * WINDOW_BYTES)
        return row

    def free(self, row: int) -> None:
        self._free.append(row)

    def forecasts(self, horizon: int, block: int) -> np.ndarray:
        """Block ``block``'s latest forecasts of ``horizon`` points: ``block`` rows x ``horizon`` x
        (yhat, lower, upper), float32, written in place (:meth:`ViewStore.on_windows_arrays`; a
        view whose latest forecast is there holds a view of its row: no copy a series, and no
        batch kept alive by a series). Allocated on first use, not resident until written."""
        blocks = self._fcs.setdefault(horizon, [])
        while len(blocks) <= block:
            blocks.append(np.empty((self.block, horizon, 3), np.float32))
        return blocks[block]

    def tail(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """The row's tail: values (:data:`TAIL`) and forecasts (:data:`TAIL` x 3), written in place."""
        b, i = divmod(row, self.block)
        return self._tail_v[b][i], self._tail_f[b][i]

    def flush_tails(self, rows: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Write the rows' whole tails (:data:`TAIL` windows each; ``size`` is at least that) into their
        rings from positions ``at`` on, wrapping, and empty the tails: :meth:`write` for many
        rows, the tails read and emptied in a few numpy calls; per row whether its ring took
        them (False, logged: as :meth:`write`)."""
        written = np.ones(len(rows), np.bool_)
        size, width = self.size, TAIL
        for b, sel in _by_block(rows // self.block):
            j, pos = rows[sel] % self.block, at[sel]
            values, fitted = self._tail_v[b][j], self._tail_f[b][j]
            self._tail_v[b][j] = np.nan
            self._tail_f[b][j] = np.nan
            if self._fd is None:
                cols = (pos[:, None] + np.arange(width)) % size
                self._mem_v[b][j[:, None], cols] = values
                self._mem_f[b][j[:, None], cols] = fitted
                continue
            vb, fb = memoryview(values).cast("B"), memoryview(fitted).cast("B")
            for q, (row, p, r) in enumerate(zip(rows[sel].tolist(), pos.tolist(), sel.tolist(), strict=True)):
                base, first = row * size * WINDOW_BYTES, min(width, size - p)
                try:
                    for w, buf, offset in ((8, vb, base), (12, fb, base + size * 8)):
                        lo = q * width * w
                        os.pwrite(self._fd, buf[lo:lo + first * w], offset + p * w)
                        if first < width:
                            os.pwrite(self._fd, buf[lo + first * w:lo + width * w], offset)
                except OSError as exc:
                    self._failed("write", exc)
                    written[r] = False
        return written

    def read(self, row: int) -> tuple[bytes | memoryview, bytes | memoryview]:
        """The row's ring as bytes: its values (``size`` float64), its forecasts (``size`` x 3
        float32); all missing (NaN) if the file cannot be read."""
        if self._fd is None:
            b, i = divmod(row, self.block)
            return self._mem_v[b][i].data.cast("B"), self._mem_f[b][i].data.cast("B")
        n = self.size * WINDOW_BYTES
        try:
            raw = os.pread(self._fd, n, row * n)
        except OSError as exc:
            self._failed("read", exc)
            raw = b""
        if len(raw) < n:
            raw = _NAN8 * self.size + _NAN12 * self.size
        mv = memoryview(raw)
        return mv[:self.size * 8], mv[self.size * 8:]

    def write(self, row: int, at: int, values: np.ndarray, fitted: np.ndarray) -> bool:
        """Write windows (``values``, float64, and ``fitted``, float32 x 3; at most ``size``) into
        the row's ring from position ``at`` on, wrapping; False (logged) if the file refused them
        (the view then holds its tail only: the API shows missing windows, never wrong ones)."""
        n, size = len(values), self.size
        first = min(n, size - at)
        if self._fd is None:
            b, i = divmod(row, self.block)
            for ring, w in ((self._mem_v[b][i], values), (self._mem_f[b][i], fitted)):
                ring[at:at + first] = w[:first]
                ring[:n - first] = w[first:]
            return True
        base = row * size * WINDOW_BYTES
        try:
            for offset, w, width in ((base, values, 8), (base + size * 8, fitted, 12)):
                os.pwrite(self._fd, w[:first].tobytes(), offset + at * width)
                if n > first:
                    os.pwrite(self._fd, w[first:].tobytes(), offset)
        except OSError as exc:
            self._failed("write", exc)
            return False
        return True

    def _failed(self, what: str, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            log.warning("views: cannot %s the views' history file (%s); the views concerned show "
                        "their newest windows only", what, exc)


def _segment(ring: bytes | memoryview, width: int, size: int, lo: int, hi: int) -> list[bytes | memoryview]:
    """The ring's bytes of window numbers ``lo`` to ``hi`` (excluded), ``width`` bytes each."""
    if hi <= lo:
        return []
    a, n = lo % size, hi - lo
    if a + n <= size:
        return [ring[a * width:(a + n) * width]]
    return [ring[a * width:], ring[:(a + n - size) * width]]


class SeriesView:
    """Recent history of one series, compact: the last ``size`` windows indexed by window
    number (window starts are epoch-aligned multiples of the step). Per window the observed
    value (float64, exactly what went on the ``points`` topic) and the one-step-ahead forecast
    made for it (yhat, lower, upper as float32: a view, 7 significant digits); NaN where
    missing: 20 bytes a window. The newest :data:`TAIL` windows are in memory, the rest in the
    view's row of ``rings`` (:class:`Rings`: a file when its store has a directory, else
    memory; without ``rings``, a ring of its own in memory). The latest forecast is kept as
    given: the model agent's float32 intervals (as the ``forecasts`` topic carries them, at the
    times ``issued + k step``; fed by :meth:`ViewStore.on_windows_arrays`, the view's row of
    its rings' forecasts, :meth:`Rings.forecasts`), or (ts, yhat, lower, upper) rows; anomalies
    and drift starts (rare) in short deques made on the first one.

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

    __slots__ = ("series", "size", "kind", "step", "hi", "base", "since", "fc_meta", "_fc", "_slot", "anomalies",
                 "score", "anomalous", "drifting", "drifts", "learnt", "history", "_rings", "_row")

    def __init__(self, series: str, size: int, kind: str = "", rings: Rings | None = None) -> None:
        self.series = series
        self.size = max(2, int(size))
        self.kind = kind
        self.step = 0.0
        self.hi = -1  # newest window number held (-1: none)
        #: windows from ``base`` to ``hi`` are in the tail (at ``k - base``), older ones from
        #: ``since`` on in the ring; older than ``since``: missing. ``base <= hi`` once one is held
        self.base = 0
        self.since = 0
        if rings is None or rings.size != self.size:
            rings = Rings(self.size, block=1)
        self._rings = rings
        self._row = rings.alloc()
        #: latest forecast: (issued, step, coverage, model, warm, error) and its points
        #: (:attr:`fc_points`; kept as float32 intervals, or as (ts, yhat, lower, upper) rows)
        self.fc_meta: tuple[float, float, float, str, bool, float | None] | None = None
        self._fc = _NO_POINTS
        #: the horizon of the latest forecast if :attr:`_fc` is the view's row of its rings'
        #: forecasts (:meth:`Rings.forecasts`, written in place by the store's batches), else 0
        self._slot = 0
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

    def __del__(self) -> None:
        rings = getattr(self, "_rings", None)
        if rings is not None:
            rings.free(self._row)  # for the next view

    def _index(self, ts: float) -> int:
        return int(round(ts / self.step))

    @property
    def fc_points(self) -> np.ndarray:
        """The latest forecast's points: (ts, yhat, lower, upper) rows, float64."""
        fc = self._fc
        if fc.shape[1] == 4 or self.fc_meta is None:
            return fc
        issued, step = self.fc_meta[0], self.fc_meta[1]
        out = np.empty((len(fc), 4))
        out[:, 0] = issued + np.arange(1, len(fc) + 1) * step  # as the model agent placed them
        out[:, 1:] = fc
        return out

    def _first_forecast(self) -> tuple[float, np.ndarray] | None:
        """(ts, (yhat, lower, upper)) of the latest forecast's first point."""
        fc = self._fc
        if not len(fc) or self.fc_meta is None:
            return None
        if fc.shape[1] == 4:
            return float(fc[0, 0]), fc[0, 1:]
        return self.fc_meta[0] + self.fc_meta[1], fc[0]

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
        :class:`Forecast`): ``points`` (kept, not copied) its ``(ts, yhat, lower, upper)`` rows,
        or its float32 ``(yhat, lower, upper)`` at ``issued + k step`` (k = 1, 2, ...: as the
        model agent publishes them); ``meta`` its ``(issued, coverage, model, warm, error)``."""
        if not self.step:
            self.step = step
            if self.step <= 0:
                return False
        elif (step or self.step) != self.step:
            self._rebase(step)  # the series is modelled at a new step
        k = self._index(ts)
        if k <= self.hi:
            return False
        tail_v, tail_f = self._rings.tail(self._row)
        if self.hi < 0 or k - self.hi >= self.size:  # nothing held, or nothing held still fits
            tail_v.fill(np.nan)
            tail_f.fill(np.nan)
            self.base = self.since = k
        elif k - self.base >= TAIL:  # the tail to the ring, the windows between missing
            self._flush(tail_v, tail_f, k)
        at = k - self.base
        tail_v[at] = value
        first = self._first_forecast()
        tail_f[at] = first[1] if first is not None and self._index(first[0]) == k else np.nan
        self.hi = k
        issued, coverage, model, warm, error = meta
        self._fc = points if len(points) else _NO_POINTS
        self._slot = 0
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

    def _flush(self, tail_v: np.ndarray, tail_f: np.ndarray, k: int) -> None:
        """Write the windows before ``k`` not in the ring yet (from ``base``: the tail's, then
        missing ones; the newest ``size`` of them) to the ring; the tail then starts at ``k``."""
        n = min(k - self.base, self.size)
        lo = k - n  # the first window written
        values, fitted = np.full(n, np.nan), np.full((n, 3), np.nan, np.float32)
        a = max(lo, self.base)
        if self.hi >= a:
            values[a - lo:self.hi - lo + 1] = tail_v[a - self.base:self.hi - self.base + 1]
            fitted[a - lo:self.hi - lo + 1] = tail_f[a - self.base:self.hi - self.base + 1]
        written = self._rings.write(self._row, lo % self.size, values, fitted)
        tail_v.fill(np.nan)
        tail_f.fill(np.nan)
        self.base = k
        if not written:
            self.since = k  # what the ring holds is not these windows: missing

    def _held(self, trim: bool = False) -> tuple[int, bytes, bytes]:
        """(the oldest window number held, the held windows' values as float64 bytes, their
        one-step-ahead forecasts as float32 x 3 bytes), oldest first, NaN where missing;
        ``trim``: from the first window the view may hold on (not the windows before it, missing
        since the view started or was restored)."""
        if self.hi < 0:
            return 0, b"", b""
        size, hi, base = self.size, self.hi, self.base
        lo = max(0, hi - size + 1)
        t0 = max(base, lo)  # the tail's windows shown: t0 .. hi
        r0 = min(max(lo, self.since), base)  # the ring's: r0 .. base - 1; missing before
        missing = max(0, min(r0, t0) - lo)
        if trim:
            lo, missing = lo + missing, 0
        ring_v, ring_f = self._rings.read(self._row) if r0 < base else (b"", b"")
        tail_v, tail_f = self._rings.tail(self._row)
        values = b"".join((_NAN8 * missing, *_segment(ring_v, 8, size, r0, base),
                           tail_v[t0 - base:hi - base + 1].tobytes()))
        fitted = b"".join((_NAN12 * missing, *_segment(ring_f, 12, size, r0, base),
                           tail_f[t0 - base:hi - base + 1].tobytes()))
        return lo, values, fitted

    def _windows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(window numbers, values, one-step-ahead forecasts) held, oldest first."""
        lo, values, fitted = self._held()
        v = np.frombuffer(values)
        return np.arange(lo, lo + len(v)), v, np.frombuffer(fitted, np.float32).reshape(-1, 3)

    def _rebase(self, step: float) -> None:
        """Re-index the held windows at ``step`` (the series' own step, streams/steps.py), so the
        view holds ``size`` points at that step rather than gaps between them.

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
        ks, values, fitted = self._windows()
        has = values == values  # windows with a point
        times = ks[has] * self.step
        self.step = step
        self._place(np.array([self._index(t) for t in times.tolist()], np.int64), values[has], fitted[has])

    def _place(self, ks: np.ndarray, values: np.ndarray, fitted: np.ndarray) -> None:
        """Hold the windows ``values``, ``fitted`` at window numbers ``ks`` (increasing) and
        nothing else (the newest ``size`` of them): the ring written whole, the newest also in
        the tail."""
        self.hi = int(ks[-1]) if len(ks) else -1
        tail_v, tail_f = self._rings.tail(self._row)
        tail_v.fill(np.nan)
        tail_f.fill(np.nan)
        if self.hi < 0:
            self.base = self.since = 0
            return
        ring_v, ring_f = np.full(self.size, np.nan), np.full((self.size, 3), np.nan, np.float32)
        keep = ks > self.hi - self.size
        ring_v[ks[keep] % self.size] = values[keep]
        ring_f[ks[keep] % self.size] = fitted[keep]
        written = self._rings.write(self._row, 0, ring_v, ring_f)
        self.since = self.hi - self.size + 1 if written else self.hi
        self.base = self.hi
        tail_v[0], tail_f[0] = values[-1], fitted[-1]

    @property
    def latest(self) -> tuple[float, float] | None:
        if self.hi < 0:
            return None
        return self.hi * self.step, float(self._rings.tail(self._row)[0][self.hi - self.base])

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
        ks, values, fitted = self._windows()
        times = (ks * self.step).tolist()
        shown_f = _shortest(fitted)
        out["points"] = [{"ts": t, "value": v} for t, v in zip(times, values.tolist(), strict=True)
                         if t > lo and v == v]
        shown = [{"ts": t, "yhat": f[0], "lower": f[1], "upper": f[2]}
                 for t, f in zip(times, shown_f, strict=True) if t > lo and f[0] == f[0]]
        first = self._first_forecast()
        if first is not None and first[0] > lo:
            y, a, b = first[1].tolist()
            shown.append({"ts": first[0], "yhat": y, "lower": a, "upper": b})
        out["fitted"] = shown
        out["anomalies"] = [{"ts": t, "value": v, "score": s, "threshold": th, "detector": d}
                            for t, v, s, th, d in self.anomalies or () if t > lo]
        out["forecast"] = self.forecast()
        out["drift"] = {"drifting": self.drifting, "started": [t for t in self.drifts or () if t > lo]}
        return out

    def dumps(self) -> bytes:
        """Snapshot for the ``series_view`` table (version 3, :data:`_V3`): a fixed binary header
        (:data:`_V3_HEAD`), the kind and the latest forecast's model name, the drift starts
        (float64), the anomalies (JSON, rare), then the windows from the first the view may hold
        (not the ones missing since it started: a series younger than ``size`` windows writes
        only the windows it has) to the newest: values (float64), one-step-ahead forecasts
        (float32 x 3), and the latest forecast's points as the view holds them (float32 x 3 at
        ``issued + k step`` from the model agent, else float64 (ts, yhat, lower, upper)), raw,
        little-endian: 20 bytes a window and 12 a point, about 8 KB for 360 windows and 62
        points (version 2, a JSON header and float64 x 4 points: about 9.5 KB, 360 windows
        always; version 1, four float64 a window, about 16 KB). :meth:`loads` reads all three."""
        lo, values, fitted = self._held(trim=True)
        fc = self._fc
        if fc.ndim == 2 and fc.shape[1] == 3 and fc.dtype == np.float32 and self.fc_meta is not None:
            pcols, h, points = 3, len(fc), np.ascontiguousarray(fc, "<f4").tobytes()
        else:
            pts = self.fc_points
            pcols, h, points = 4, len(pts), np.ascontiguousarray(pts, "<f8").tobytes()
        kind, meta = self.kind.encode(), self.fc_meta
        issued, fc_step, coverage, model, warm, error = meta if meta is not None else (0.0, 0.0, 0.0, "", False, None)
        model_b = model.encode()
        flags = ((meta is not None) | bool(warm) << 1 | bool(self.anomalous) << 2 | bool(self.drifting) << 3
                 | (self.score is not None) << 4 | (error is not None) << 5)
        anomalies = orjson.dumps(list(self.anomalies)) if self.anomalies else b""
        drifts = np.array(self.drifts or (), "<f8").tobytes()
        head = _V3_HEAD.pack(_V3, self.step, self.hi, len(values) // 8, h, pcols, flags,
                             issued, fc_step, coverage, 0.0 if error is None else error,
                             0.0 if self.score is None else self.score, self.learnt, self.history,
                             len(kind), len(model_b), len(drifts) // 8, len(anomalies))
        return b"".join((head, kind, model_b, drifts, anomalies, values, fitted, points))

    @staticmethod
    def header(raw: bytes) -> tuple[int, dict[str, Any]]:
        """A version 1 or 2 :meth:`dumps` record's header: its length and its fields (what
        :meth:`loads` reads before the windows)."""
        n = int.from_bytes(raw[:4], "big")
        return n, orjson.loads(raw[4:4 + n])

    @staticmethod
    def issued_of(raw: bytes) -> float | None:
        """When the latest forecast of a :meth:`dumps` record (any version) was issued, from its
        header alone; None if it has none."""
        if raw[:4] == _V3:
            f = _V3_HEAD.unpack_from(raw)
            return float(f[7]) if f[6] & 1 else None
        meta = SeriesView.header(raw)[1].get("fc_meta")
        return None if meta is None else float(meta[0])

    @classmethod
    def loads(cls, series: str, size: int, raw: bytes, rings: Rings | None = None) -> SeriesView:
        """A view from :meth:`dumps` (version 3, or version 1 or 2 as written before it)."""
        if raw[:4] == _V3:
            return cls._loads_v3(series, size, raw, rings)
        n, o = cls.header(raw)
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
        meta = o.get("fc_meta")
        v = cls(series, size, kind=str(o.get("kind", "")), rings=rings)
        v.step = float(o["step"])
        v._put_windows(int(o["hi"]), rows, values, fitted)
        v._put_state(None if meta is None else (float(meta[0]), float(meta[1]), float(meta[2]), str(meta[3]),
                                                 bool(meta[4]), None if meta[5] is None else float(meta[5])),
                     points, o.get("anomalies"), o.get("score"), bool(o.get("anomalous")),
                     bool(o.get("drifting")), o.get("drifts"), int(o.get("learnt", 0)), int(o.get("history", 0)))
        return v

    def _put_state(self, fc_meta: tuple[float, float, float, str, bool, float | None] | None,
                   points: np.ndarray, anomalies: Sequence[Sequence[Any]] | None, score: float | None,
                   anomalous: bool, drifting: bool, drifts: Sequence[float] | None, learnt: int,
                   history: int) -> None:
        """Hold a snapshot's latest forecast and the series' state (every version's loader)."""
        self.fc_meta = fc_meta
        self._fc = points if len(points) else _NO_POINTS
        if anomalies:
            self.anomalies = deque(((float(a[0]), float(a[1]), float(a[2]), float(a[3]), str(a[4]))
                                    for a in anomalies), maxlen=ANOMALY_HISTORY)
        self.score, self.anomalous, self.drifting = score, anomalous, drifting
        if drifts:
            self.drifts = deque((float(t) for t in drifts), maxlen=ANOMALY_HISTORY)
        self.learnt, self.history = learnt, history

    def _put_windows(self, hi: int, rows: int, values: np.ndarray, fitted: np.ndarray) -> None:
        """Hold a snapshot's ``rows`` windows, the newest ``hi`` (the newest ``size`` of them);
        the windows before them are missing (as they were in the view written)."""
        keep = min(rows, self.size)
        self._place(np.arange(hi - keep + 1, hi + 1), values[rows - keep:], fitted[rows - keep:])
        if hi >= 0 and not keep:  # no windows, yet a newest one: shown missing
            self.hi = self.base = self.since = hi
        elif keep:
            self.since = max(self.since, hi - keep + 1)

    @classmethod
    def _loads_v3(cls, series: str, size: int, raw: bytes, rings: Rings | None) -> SeriesView:
        """A version 3 :meth:`dumps` record (its header checked against its length first)."""
        if len(raw) < _V3_HEAD.size:
            raise ValueError("truncated view snapshot")
        (_, step, hi, rows, h, pcols, flags, issued, fc_step, coverage, error, score, learnt, history,
         n_kind, n_model, n_drifts, n_anomalies) = _V3_HEAD.unpack_from(raw)
        if pcols not in (3, 4):
            raise ValueError(f"a view snapshot of {pcols} columns a point")
        at = _V3_HEAD.size
        width = 12 if pcols == 3 else 32  # bytes a point
        if len(raw) != at + n_kind + n_model + 8 * n_drifts + n_anomalies + 20 * rows + width * h:
            raise ValueError("truncated view snapshot")
        kind = bytes(raw[at:at + n_kind]).decode()
        model = bytes(raw[at + n_kind:at + n_kind + n_model]).decode()
        at += n_kind + n_model
        drifts = np.frombuffer(raw, "<f8", n_drifts, at).tolist()
        at += 8 * n_drifts
        anomalies = orjson.loads(raw[at:at + n_anomalies]) if n_anomalies else []
        at += n_anomalies
        values = np.frombuffer(raw, "<f8", rows, at)
        fitted = np.frombuffer(raw, "<f4", rows * 3, at + 8 * rows).reshape(rows, 3)
        at += 20 * rows
        dt = "<f4" if pcols == 3 else "<f8"
        points = np.frombuffer(raw, dt, h * pcols, at).reshape(h, pcols).astype(np.float32 if pcols == 3 else float)
        if not flags & 1 and pcols == 3 and h:
            raise ValueError("a view snapshot's forecast points without when they were issued")
        v = cls(series, size, kind=kind, rings=rings)
        v.step = float(step)
        v._put_windows(int(hi), int(rows), values, fitted)
        v._put_state((float(issued), float(fc_step), float(coverage), model, bool(flags & 2),
                      float(error) if flags & 32 else None) if flags & 1 else None,
                     points, anomalies, float(score) if flags & 16 else None, bool(flags & 4),
                     bool(flags & 8), drifts, int(learnt), int(history))
        return v


#: the latest forecast of a view that has none (shared: never written to)
_NO_POINTS = np.empty((0, 4))
_NO_POINTS.flags.writeable = False


def _by_block(b: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """The positions of ``b`` (block numbers) by block: (block, positions), blocks increasing.

    >>> [(b, p.tolist()) for b, p in _by_block(np.array([1, 0, 1, 2]))]
    [(0, [1]), (1, [0, 2]), (2, [3])]
    """
    order = np.argsort(b, kind="stable")
    ordered = b[order]
    cuts = (np.flatnonzero(ordered[1:] != ordered[:-1]) + 1).tolist()
    return [(int(ordered[lo]), order[lo:hi]) for lo, hi in zip([0, *cuts], [*cuts, len(b)], strict=True)]


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
    """Read model of one worker, mirrored to two tables.

    The series' views keep their newest windows in memory and the rest of their history in
    :class:`Rings` (``directory``: a file there, in the page cache rather than the heap; None:
    memory).

    Snapshots written to the tables are signed (``signers``: one
    :class:`~streams.checkpoint.Signer` per table) and a snapshot read back is
    used only if it verifies and parses; a bad one is skipped and counted in
    ``foresight_untrusted_state_total{table}``, never raised.
    """

    def __init__(self, size: int, metrics: Metrics, selector: SeriesSelector | None = None,
                 signers: Mapping[str, Signer] | None = None, directory: str | Path | None = None) -> None:
        self.size = size
        #: the views' history (:class:`Rings`): in a file in ``directory``, else in memory
        self.rings = Rings(max(2, int(size)), directory)
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
            v = self.series[series] = SeriesView(series, self.size, kind=self.kinds.get(series, ""),
                                                 rings=self.rings)
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
        """:meth:`on_window` and :meth:`note_learnt` with the forecast as arrays, as the model
        agent gives them: a batch of one (:meth:`on_windows_arrays`), so ``points`` are float32
        ``(yhat, lower, upper)`` rows at ``ts + k step`` (``meta[0]``, when it was issued, is ``ts``)."""
        issued, coverage, model, warm, error = meta
        if issued != ts or points.ndim != 2 or points.shape[1] != 3:
            raise ValueError("on_window_arrays takes float32 (yhat, lower, upper) points issued at ts")
        errors = self.on_windows_arrays(
            [series], np.array([ts]), np.array([value], float), step, points[None], coverage, model,
            np.array([warm]), np.array([np.nan if error is None else error]),
            [score], np.array([anomalous]), np.array([drifting]), {} if anomaly is None else {0: anomaly},
            np.array([learnt]))
        if errors:
            raise errors[0]
        return self.series[series]

    def on_windows_arrays(self, names: Sequence[str], starts: np.ndarray, observed: np.ndarray, step: float,
                          fc_points: np.ndarray, coverage: float, model: str, warm: np.ndarray,
                          error: np.ndarray, scores: np.ndarray | Sequence[float | None], anomalous: np.ndarray,
                          drifting: np.ndarray, anomalies: Mapping[int, Anomaly],
                          learnt: np.ndarray) -> dict[int, Exception]:
        """A batch of closed windows, one a series (the model agent's bank update): row ``i`` is
        series ``names[i]``'s window starting at ``starts[i]``, its value ``observed[i]``, modelled
        at ``step``; the forecast issued after it, ``fc_points[i]`` (horizon x (yhat, lower,
        upper), float32, at ``starts[i] + k step``, k = 1, 2, ...; ``coverage``, ``model``,
        ``warm[i]``, ``error[i]``, NaN for none); its score, anomaly flag and drift flag, its
        anomaly ``anomalies.get(i)`` and the windows its model has learnt in all, ``learnt[i]``.

        Each row does what :meth:`SeriesView.add_arrays` and the selector do for one window
        (the same views, snapshots and gauges: tests/streams/test_web.py), with the batch's
        parts done once: the window numbers in one numpy call; per view, Python on its fields
        only (the window's place in its tail; its previous forecast's first point, if that is
        for this window); then the tails' new windows, the one-step-ahead forecasts and the new
        forecasts written in a few numpy calls for the whole batch. A view's latest forecast is
        its row of ``rings``' forecasts (:meth:`Rings.forecasts`), written in place: no copy
        a series, and no batch array kept alive by a view. Anomalies and drift starts only for
        the rows flagged; the selector reduces the forecasts of the series it admits only. A
        view that starts, jumps past its size or changes step takes
        :meth:`SeriesView.add_arrays` (its forecast copied).

        Returns the rows whose update raised, with what they raised (a row's failure is its
        own: the other rows are updated).
        """
        n = len(names)
        errors: dict[int, Exception] = {}
        if not n:
            return errors
        if len(set(names)) < n:  # a series twice: row by row, in order
            for i in range(n):
                one = {0: anomalies[i]} if i in anomalies else {}
                for exc in self.on_windows_arrays(
                        names[i:i + 1], starts[i:i + 1], observed[i:i + 1], step, fc_points[i:i + 1],
                        coverage, model, warm[i:i + 1], error[i:i + 1], scores[i:i + 1], anomalous[i:i + 1],
                        drifting[i:i + 1], one, learnt[i:i + 1]).values():
                    errors[i] = exc
            return errors
        rings, series, size = self.rings, self.series, self.rings.size
        h = fc_points.shape[1]
        ts_l, v_l, w_l = starts.tolist(), observed.tolist(), warm.tolist()
        e_l = [None if e != e else e for e in error.tolist()]  # NaN: none
        s_l = scores.tolist() if isinstance(scores, np.ndarray) else list(scores)
        a_l, d_l, n_l = anomalous.tolist(), drifting.tolist(), learnt.tolist()
        # the window numbers; None: every row by the view's own code
        ks: list[int] | list[None] = [None] * n
        k_all = np.zeros(n, np.int64)
        if step > 0 and math.isfinite(step) and fc_points.dtype == np.float32 and fc_points.shape[2:] == (3,):
            with np.errstate(invalid="ignore"):
                k_float = np.rint(starts / step)
            if np.isfinite(k_float).all():
                k_all = k_float.astype(np.int64)
                ks = k_all.tolist()
        fitted = np.full((n, 3), np.nan, np.float32)  # the one-step-ahead forecast of each row's window
        fast: list[int] = []  # the rows whose tails are written below, their ring rows and tail places
        rows: list[int] = []
        places: list[int] = []
        #: per horizon of the previous forecast (in the rings' forecasts): the rows, their ring rows
        firsts: dict[int, tuple[list[int], list[int]]] = {}
        #: views whose full tails go to their rings before this batch's windows (the usual flush)
        flushed: list[tuple[SeriesView, int]] = []
        batch_flush = size >= TAIL
        moved: list[SeriesView] = []  # views taking their ring row's forecasts from this batch on
        added: list[int] = []
        for i, name in enumerate(names):
            try:
                v = series.get(name)
                if v is None:
                    v = self.view(name)
                v.learnt = n_l[i]
                k, hi = ks[i], v.hi
                if k is None or v.step != step or hi < 0 or k - hi >= size or v._rings is not rings:
                    if v.add_arrays(ts_l[i], v_l[i], step, fc_points[i].copy(),
                                    (ts_l[i], coverage, model, w_l[i], e_l[i]), s_l[i], a_l[i], d_l[i],
                                    anomalies.get(i)):
                        added.append(i)
                    continue
                if k <= hi:
                    continue  # a window replayed after a rebalance or restart: already shown
                at = k - v.base
                if at >= TAIL:  # the tail to the ring: it starts at k
                    if at == TAIL and batch_flush:  # full: below, for the batch
                        flushed.append((v, k))
                    else:
                        v._flush(*rings.tail(v._row), k)
                    at = 0
                if v._slot:  # its forecast's first point (if for window k: below, for the batch)
                    f = firsts.get(v._slot)
                    if f is None:
                        f = firsts[v._slot] = ([], [])
                    f[0].append(i)
                    f[1].append(v._row)
                elif v.fc_meta is not None:
                    first = v._first_forecast()
                    if first is not None and v._index(first[0]) == k:
                        fitted[i] = first[1]
                v.hi = k
                v.fc_meta = (ts_l[i], step, coverage, model, w_l[i], e_l[i])
                v.score, v.anomalous = s_l[i], a_l[i]
                if d_l[i] and not v.drifting:
                    if v.drifts is None:
                        v.drifts = deque(maxlen=ANOMALY_HISTORY)
                    v.drifts.append(ts_l[i])
                v.drifting = d_l[i]
                if anomalies:
                    anomaly = anomalies.get(i)
                    if anomaly is not None:
                        if v.anomalies is None:
                            v.anomalies = deque(maxlen=ANOMALY_HISTORY)
                        v.anomalies.append((float(anomaly.ts), float(anomaly.value), float(anomaly.score),
                                            float(anomaly.threshold), str(anomaly.detector)))
                if not h:
                    v._fc, v._slot = _NO_POINTS, 0
                elif v._slot != h:
                    moved.append(v)
                fast.append(i)
                rows.append(v._row)
                places.append(at)
                added.append(i)
            except Exception as exc:  # noqa: BLE001 - one series never stops the others
                errors[i] = exc
        if fast:
            try:
                self._write_batch(fast, rows, places, starts, observed, step, k_all, fitted, firsts, flushed,
                                  fc_points, moved)
            except Exception as exc:  # noqa: BLE001 - as one row's failure, for each row written here
                for i in fast:
                    errors[i] = exc
                added = [i for i in added if i not in errors]
        if self.selector is not None and added:
            self.selector.observe_many(names, added, v_l, s_l, fc_points)
        return errors

    def _write_batch(self, fast: list[int], rows: list[int], places: list[int], starts: np.ndarray,
                     observed: np.ndarray, step: float, ks: np.ndarray, fitted: np.ndarray, firsts: dict[int, tuple[list[int], list[int]]],
                     flushed: list[tuple[SeriesView, int]], fc_points: np.ndarray, moved: list[SeriesView]) -> None:
        """:meth:`on_windows_arrays`' numpy part. The ``flushed`` views' full tails to their rings
        (their tails then start at the batch's windows); the batch rows ``fast``' windows (starting at
        ``starts``, window numbers ``ks``) into their views' tails (ring rows ``rows``, at ``places``) with their
        one-step-ahead forecasts (``fitted``; for the rows of ``firsts``, their previous forecast's
        first point if it is for that window, read before it is overwritten); their new forecasts
        into the rings' forecasts, and the window number of each one's first point. ``moved``
        views then hold their row of those."""
        rings, block, h = self.rings, self.rings.block, fc_points.shape[1]
        if flushed:
            frows = np.array([v._row for v, _ in flushed])
            written = rings.flush_tails(frows, np.array([v.base for v, _ in flushed]) % rings.size).tolist()
            for (v, k), ok in zip(flushed, written, strict=True):
                v.base = k  # as SeriesView._flush leaves it
                if not ok:
                    v.since = k
        for hp, (at, prev) in firsts.items():
            pb, pj = np.divmod(np.array(prev), block)
            at_ = np.array(at)
            for b, sel in _by_block(pb):
                j = pj[sel]
                hit = rings._next[b][j] == ks[at_[sel]]
                fitted[at_[sel][hit]] = rings.forecasts(hp, b)[j[hit], 0]
        f = np.array(fast)
        rb, rj = np.divmod(np.array(rows), block)
        places_ = np.array(places)
        values, fits = observed[f], fitted[f]
        if h:  # the window number of each forecast's first point (at issued + step)
            nxt = np.rint((starts[f] + step) / step).astype(np.int64)
        for b, sel in _by_block(rb):
            j, at = rj[sel], places_[sel]
            rings._tail_v[b][j, at] = values[sel]
            rings._tail_f[b][j, at] = fits[sel]
            if h:
                rings.forecasts(h, b)[j] = fc_points[f[sel]]
                rings._next[b][j] = nxt[sel]
        for v in moved:
            b, j = divmod(v._row, block)
            v._fc, v._slot = rings.forecasts(h, b)[j], h

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

    def newest_forecast(self, series: str, raw: Any) -> float:
        """When the latest forecast of a series' ``series_view`` record was issued (the start of
        the newest window learnt when it was written), from its header alone; -inf if it has
        none, or if the record is not usable (counted as :meth:`restore_series` counts it)."""
        body = self._verified("series_view", series, raw)
        if body is None:
            return -math.inf
        try:
            issued = SeriesView.issued_of(body)
            return -math.inf if issued is None else issued
        except Exception as exc:  # noqa: BLE001 - any shape of bad snapshot is skipped, never fatal
            self._refused("series_view", series, f"unreadable: {type(exc).__name__}: {exc}", raw)
            return -math.inf

    def restore_series(self, series: str, raw: Any) -> SeriesView | None:
        """Restore a series' view from its ``series_view`` record; None (counted) if it is not usable."""
        body = self._verified("series_view", series, raw)
        if body is None:
            return None
        try:
            v = SeriesView.loads(series, self.size, body, rings=self.rings)
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
