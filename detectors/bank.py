"""Many series' :class:`~detectors.series.SeriesModel` as arrays, updated in one call.

A :class:`SeriesBank` holds, for every series sharing one configuration
(step, seasonal period, horizon, threshold), exactly the state of a
:class:`~detectors.series.SeriesModel`: one row per series in a struct of numpy
arrays (:mod:`detectors._bank_columns`). :meth:`SeriesBank.update` does for every
given row, in one vectorised call, what ``SeriesModel.update`` does for one
series, and returns the same numbers (see "Equivalence" below). The per-series
classes stay the readable reference; the bank mirrors them step by step:

- the detector: :mod:`detectors._bank_detector` (a vectorised
  :class:`~detectors.anomaly.RecordFusionDetector`, or the per-series objects
  themselves for a detector it does not mirror);
- the forecaster: :mod:`detectors._bank_forecaster` (``SeasonalEnsemble`` with its
  ``SeasonalProfile`` and ``ConformalBand``);
- here: ``SeriesModel``'s own logic (the stuck-sensor check, clipping an
  anomalous episode into the band, ``max_skip``, drift and recovery with
  :class:`~detectors.drift.ErrorDrift`).

Rows come and go: :meth:`SeriesBank.add` takes a free row (reused rows start
cold), :meth:`SeriesBank.remove` frees one; the arrays grow by a quarter
(``detectors/_bank_columns.py``: at most a quarter of the rows unused; give
``capacity`` up front to avoid the slack and the growing, which moves the
arrays in place where the allocator can, else holds the old and the new at once). :meth:`SeriesBank.export` turns a row into a
``SeriesModel`` and :meth:`SeriesBank.load` / :meth:`SeriesBank.load_many` a
``SeriesModel`` into a row, exactly, so per-series signed checkpoints
(``streams/checkpoint.py``) are written and restored as before, and a bank is
rebuilt from them after a rebalance. :meth:`SeriesBank.shard` /
:meth:`SeriesBank.load_shard` do the same for a group of rows as arrays, about
eight times cheaper (a bank-shard checkpoint).

Equivalence: the same operations in the same order as the reference, in
float64, with the reference's 4-byte storage where it has it. Two exceptions,
each within an ulp: ``x ** 2`` and ``x ** 0.5`` are ``x * x`` and ``sqrt`` here,
where Python calls libm's ``pow``. ``error`` is NaN where the reference says
None (from finite values the reference's error is never NaN). Timestamps are
required and finite (the reference's ``t=None`` counts steps; the worker always
has them); values may be NaN, with the reference's semantics.

>>> import math
>>> from detectors.defaults import make_series_model
>>> bank = SeriesBank.for_config(step_seconds=60.0, period_steps=10, horizon=3)
>>> rows = np.array([bank.add(), bank.add()])
>>> ref = make_series_model(60.0, 10, 3)
>>> for i in range(120):
...     y = 100 + 10 * math.sin(2 * math.pi * i / 10)
...     u = bank.update(rows, np.array([y, 2 * y]), np.full(2, 60.0 * i))
...     r = ref.update(y, 60.0 * i)
>>> u.intervals.shape, bool(u.warm[0]), r.warm
((2, 3, 3), True, True)
>>> bool(abs(u.intervals[0, 2, 2] - r.intervals[2].upper) < 1e-9), bool(abs(u.score[0] - r.score) < 1e-9)
(True, True)
>>> m = bank.export(int(rows[0]))   # a SeriesModel, e.g. to checkpoint
>>> m.update(100.0, 7200.0) == bank.update(rows[:1], np.array([100.0]), np.array([7200.0])).series_update(0)
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors._bank_columns import Columns, params, py_max, py_min
from detectors._bank_detector import DetectorBank, make_detector_bank
from detectors._bank_forecaster import EnsembleBank
from detectors._bank_forecaster import config as forecaster_config
from detectors.forecast import Forecast, Interval
from detectors.forecasting import SeasonalEnsemble
from detectors.series import SeriesModel, SeriesUpdate

#: rows updated per vectorised pass: bounds the temporary arrays (about 10 KB a row) and keeps
#: them in cache (1,024 to 8,192 measured on 20,000 series: 2,048 about the fastest)
CHUNK = 2048
#: rows of a :meth:`SeriesBank.row_tables` table: ~21 KB a row, 128 rows (~2.7 MB) stay in the
#: cache between the gather and the caller's use (2,000 rows gathered at once and copied out a
#: row at a time: 25 us a row gathered and LZ4-compressed; 128 at a time, into one buffer, 13)
ROW_TABLE_CHUNK = 128


@dataclass(frozen=True, slots=True)
class BankUpdate:
    """What :meth:`SeriesBank.update` returns: one entry per row updated, in call order.

    The fields are :class:`~detectors.series.SeriesUpdate`'s as arrays;
    ``error`` is NaN where ``SeriesUpdate.error`` is None, and ``intervals[i, h]``
    is ``(yhat, lower, upper)`` of step ``h + 1``.

    >>> u = BankUpdate(np.array([0.95]), np.array([True]), np.array([[[10.0, 8.0, 13.0]]]),
    ...                np.array([True]), np.array([np.nan]), np.array([True]),
    ...                np.array([False]), np.array([False]))
    >>> s = u.series_update(0)
    >>> s.anomalous, s.intervals[0].upper, s.error
    (True, 13.0, None)
    """

    score: np.ndarray
    anomalous: np.ndarray
    intervals: np.ndarray
    warm: np.ndarray
    error: np.ndarray
    untrusted: np.ndarray
    drifting: np.ndarray
    drift_started: np.ndarray

    def series_update(self, i: int) -> SeriesUpdate:
        """Entry ``i`` as the reference's :class:`~detectors.series.SeriesUpdate`."""
        e = float(self.error[i])
        return SeriesUpdate(
            float(self.score[i]), bool(self.anomalous[i]),
            tuple(Interval(float(a), float(b), float(c)) for a, b, c in self.intervals[i]),
            bool(self.warm[i]), None if np.isnan(e) else e, bool(self.untrusted[i]),
            bool(self.drifting[i]), bool(self.drift_started[i]))


class SeriesBank:
    """The state of many :class:`~detectors.series.SeriesModel` of one configuration, as arrays.

    Parameters
    ----------
    factory
        Builds a cold ``SeriesModel`` of the bank's configuration (e.g.
        ``lambda: make_series_model(step, period, horizon, threshold)``). The
        bank reads its configuration from one such model; :meth:`export` fills
        fresh ones.
    capacity
        Rows allocated up front (the arrays double when full).
    vector_detector
        Use the vectorised detector where it mirrors the factory's detector
        (False: keep one detector object per row, exact for any detector).
    chunk
        Rows updated per vectorised pass (bounds the temporary arrays).

    Examples
    --------
    Rows are handed out and taken back; a reused row starts cold; a row
    leaves as a ``SeriesModel`` or, with others, as a shard of arrays:

    >>> bank = SeriesBank.for_config(step_seconds=300.0, horizon=6)
    >>> a, b = bank.add(), bank.add()
    >>> u = bank.update(np.array([b, a]), np.array([12.0, 40.0]), np.array([0.0, 0.0]))
    >>> [float(s) for s in u.score], u.intervals.shape, bool(u.warm.any())
    ([0.0, 0.0], (2, 6, 3), False)
    >>> bank.export(a).updates, [int(n) for n in bank.updates([a, b])]
    (1, [1, 1])
    >>> bank.remove(a); bank.add() == a, int(bank.updates([a])[0])
    (True, 0)
    >>> other = SeriesBank.for_config(step_seconds=300.0, horizon=6)
    >>> rows = [other.add(), other.add()]
    >>> other.load_shard(rows, bank.shard([a, b]))
    >>> [int(n) for n in other.updates(rows)]
    [0, 1]
    """

    def __init__(self, factory: Callable[[], SeriesModel], capacity: int = 0,
                 vector_detector: bool = True, chunk: int = CHUNK) -> None:
        self.factory = factory
        self.chunk = max(1, chunk)
        template = factory()
        if not isinstance(template.forecaster, SeasonalEnsemble):
            raise TypeError(f"a bank mirrors SeasonalEnsemble, not {type(template.forecaster).__name__}")
        self.template = template
        self.threshold = template.threshold
        self.horizon = template.horizon
        self.max_skip = template.max_skip
        self.recovery_window = template.recovery_window
        self.recovered_ratio = template.recovered_ratio
        self.adapt_on_drift = template.adapt_on_drift
        self.stuck_params = (template.stuck.factor, template.stuck.min_run, template.stuck.warmup)
        d = template.drift
        self.drift_params = (d.threshold, d.slack, d.cap, d.alpha, d.warmup)
        self._config = _config(template)
        self.forecaster = EnsembleBank(template.forecaster, capacity)
        #: the forecaster's horizon giving each of ours (``intervals[:, k]``)
        self._horizons = np.minimum(np.arange(self.horizon), min(self.horizon, self.forecaster.H) - 1)
        self.detector: DetectorBank = make_detector_bank(template.detector, capacity, vector_detector)
        self.cols = Columns({
            "updates": ((), np.int64, 0),
            "run": ((), np.int64, 0),           # anomalous_run
            "drifting": ((), np.bool_, False),
            "st_level": ((), np.float64, 0.0),  # _drift_state[0..4]
            "st_recent": ((), np.float64, 0.0),
            "st_before": ((), np.float64, 0.0),
            "st_steps": ((), np.int64, 0),
            "st_episode": ((), np.float64, 0.0),
            "d_n": ((), np.int64, 0),           # ErrorDrift
            "d_base": ((), np.float64, 0.0),
            "d_cusum": ((), np.float64, 0.0),
            "d_hit": ((), np.bool_, False),
            "f_last": ((), np.float64, 0.0),    # the stuck-sensor FlatlineDetector
            "f_has": ((), np.bool_, False),
            "f_run": ((), np.int64, 0),
            "f_longest": ((), np.int64, 0),
            "f_changes": ((), np.int64, 0),
            "nxt": ((3,), np.float64, 0.0),     # forecast(1)[0] after the last update
        }, capacity)
        self._free: list[int] = []
        self._used = np.zeros(self.cols.capacity, np.bool_)
        self._slot = np.zeros(self.cols.capacity, np.int64)  # scratch of _distinct (no state)
        self._top = 0  # rows below it have been handed out at least once
        self._layout: bytes | None = None

    @classmethod
    def for_config(cls, step_seconds: float, period_steps: int | None = None, horizon: int = 6,
                   threshold: float | None = None, capacity: int = 0) -> SeriesBank:
        """The bank of :func:`detectors.defaults.make_series_model`'s configuration."""
        from detectors.defaults import DEFAULT_THRESHOLD, make_series_model

        th = DEFAULT_THRESHOLD if threshold is None else threshold
        return cls(lambda: make_series_model(step_seconds, period_steps, horizon, th), capacity)

    # -- rows ---------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.cols.capacity

    def __len__(self) -> int:
        return self._top - len(self._free)

    def add(self) -> int:
        """A free row holding a cold model (a reused row is reset)."""
        return self.add_many(1)[0]

    def add_many(self, n: int) -> list[int]:
        """``n`` free rows holding cold models (the most recently freed first, then new ones),
        growing the bank at most once.

        >>> b = SeriesBank.for_config(10.0)
        >>> rows = b.add_many(3); b.remove(rows[1])
        >>> b.add_many(3), len(b), b.capacity >= 4
        ([1, 3, 4], 5, True)
        """
        k = min(n, len(self._free))
        rows = [self._free.pop() for _ in range(k)]
        top = self._top
        if n > k:
            self._top = top + n - k
            if self._top > self.cols.capacity:
                self._grow(self._top)
            rows += range(top, self._top)
        self._used[rows] = True
        return rows

    def remove(self, row: int) -> None:
        """Free ``row``; its state is dropped (export it first to keep it)."""
        if not (0 <= row < self._top and self._used[row]):
            raise KeyError(f"row {row} is not in use")
        r = np.array([row])
        self.cols.reset(r)
        self.forecaster.cols.reset(r)
        self.detector.reset(r)
        self._used[row] = False
        self._free.append(row)

    def _grow(self, need: int) -> None:
        self.cols.grow(need)
        self.forecaster.cols.grow(need)
        self.detector.grow(need)
        used = np.zeros(self.cols.capacity, np.bool_)
        used[: len(self._used)] = self._used
        self._used = used
        self._slot = np.zeros(self.cols.capacity, np.int64)

    def _distinct(self, rows: np.ndarray) -> bool:
        """Whether no row of ``rows`` (rows below the capacity) appears twice: each row's
        position written to a scratch array, read back (a repeated row reads its last
        position at its first). O(n), where ``np.unique`` sorts."""
        at = np.arange(len(rows))
        self._slot[rows] = at
        return bool((self._slot[rows] == at).all())

    def updates(self, rows: np.ndarray) -> np.ndarray:
        """``SeriesModel.updates`` of each row (points learnt)."""
        return self.cols["updates"][np.asarray(rows, np.int64)].copy()

    def row_bytes(self) -> int:
        """Bytes of array state per series (every field of the bank, the forecaster and the detector)."""
        return self.cols.row_bytes() + self.forecaster.cols.row_bytes() + self.detector.row_bytes()

    def nbytes(self) -> int:
        """Bytes held by the bank's arrays (all rows, used or free)."""
        return self.cols.nbytes() + self.forecaster.cols.nbytes() + self.detector.nbytes()

    # -- rows <-> SeriesModel -----------------------------------------------
    def export(self, row: int) -> SeriesModel:
        """Row ``row`` as a ``SeriesModel`` (e.g. to checkpoint); the row is unchanged."""
        self._check(row)
        m = self.factory()
        c = self.cols
        m.updates = int(c["updates"][row])
        m.anomalous_run = int(c["run"][row])
        m.drifting = bool(c["drifting"][row])
        m._drift_state = [float(c["st_level"][row]), float(c["st_recent"][row]),
                          float(c["st_before"][row]), int(c["st_steps"][row]),
                          float(c["st_episode"][row])]
        d = m.drift
        d.n, d.baseline, d.cusum = int(c["d_n"][row]), float(c["d_base"][row]), float(c["d_cusum"][row])
        d.drift_detected = bool(c["d_hit"][row])
        s = m.stuck
        s._last = float(c["f_last"][row]) if c["f_has"][row] else None
        s._run, s._longest, s._changes = (int(c["f_run"][row]), int(c["f_longest"][row]),
                                          int(c["f_changes"][row]))
        self.forecaster.export(row, m.forecaster)
        m.detector = self.detector.export(row, m.detector)
        return m

    def load(self, row: int, model: SeriesModel) -> None:
        """Set row ``row`` to ``model``'s state (e.g. restored from a checkpoint).

        Raises ``ValueError`` when the model's configuration is not the
        bank's (it belongs in another bank, or stays a per-series object).
        """
        self.load_many([row], [model])

    def _distinct_rows(self, rows: Sequence[int] | np.ndarray, n: int, what: str) -> np.ndarray:
        """``rows`` as an index array, checked: ``n`` of them (one per item of ``what``), each a
        row of this bank, none twice; else ``ValueError``."""
        rows = np.asarray(rows, np.int64)
        if len(rows) != n:
            raise ValueError(f"rows and {what} must have the same length")
        for r in rows.tolist():
            self._check(r)
        if not self._distinct(rows):
            raise ValueError("a row appears twice")
        return rows

    def load_many(self, rows: Sequence[int] | np.ndarray, models: Sequence[SeriesModel]) -> None:
        """:meth:`load` for many rows at once (one array assignment per field: a rebalance's
        restored checkpoints go in together). Nothing is loaded if one model does not fit."""
        rows = self._distinct_rows(rows, len(models), "models")
        for m in models:
            if _config(m) != self._config:
                raise ValueError("the model's configuration is not this bank's")
        self.cols.set_rows(rows, [self._state(m) for m in models])
        self.forecaster.cols.set_rows(rows, [self.forecaster.state(m.forecaster) for m in models])  # type: ignore[arg-type]
        self.detector.load_many(rows, [m.detector for m in models])

    @staticmethod
    def _state(m: SeriesModel) -> dict:
        st, d, s, f = m._drift_state, m.drift, m.stuck, m.forecaster
        nxt = (0.0, 0.0, 0.0)
        if f.warm:
            iv = f.forecast(1)[0]
            nxt = (iv.yhat, iv.lower, iv.upper)
        return {
            "updates": m.updates, "run": m.anomalous_run, "drifting": m.drifting,
            "st_level": st[0], "st_recent": st[1], "st_before": st[2], "st_steps": st[3],
            "st_episode": st[4], "d_n": d.n, "d_base": d.baseline, "d_cusum": d.cusum,
            "d_hit": d.drift_detected, "f_has": s._last is not None,
            "f_last": 0.0 if s._last is None else s._last, "f_run": s._run,
            "f_longest": s._longest, "f_changes": s._changes, "nxt": nxt,
        }

    def shard(self, rows: Sequence[int] | np.ndarray) -> dict[str, Any]:
        """The state of ``rows`` as arrays (picklable): a bank-shard checkpoint.

        Much cheaper than :meth:`export` per row (a copy of the rows' arrays,
        no objects); :meth:`load_shard` puts it back, in this bank or another
        of the same configuration, at any rows. Sign it as any checkpoint
        (``Checkpointer.dumps``). About :meth:`row_bytes` per row, so a Kafka
        record holds a few dozen rows.
        """
        rows = np.asarray(rows, np.int64)
        for r in rows.tolist():
            self._check(r)
        return {"config": self._config, "rows": len(rows), "model": self.cols.take(rows),
                "forecaster": self.forecaster.cols.take(rows), "detector": self.detector.take(rows)}

    def load_shard(self, rows: Sequence[int] | np.ndarray, shard: dict[str, Any]) -> None:
        """Set ``rows`` to a :meth:`shard` (e.g. restored after a rebalance, to new rows).

        Raises ``ValueError`` when it was taken from a bank of another
        configuration or for another number of rows.
        """
        rows = np.asarray(rows, np.int64)
        for r in rows.tolist():
            self._check(r)
        if not self._distinct(rows):
            raise ValueError("a row appears twice")
        if shard.get("config") != self._config:
            raise ValueError("the shard's configuration is not this bank's")
        if shard.get("rows") != len(rows):
            raise ValueError(f"the shard holds {shard.get('rows')} rows, not {len(rows)}")
        self.cols.put(rows, shard["model"])
        self.forecaster.cols.put(rows, shard["forecaster"])
        self.detector.put(rows, shard["detector"])

    # -- rows <-> bytes (cheap per-series checkpoints) ------------------------
    def _row_columns(self) -> list[Columns] | None:
        """Every column store of a row, in a fixed order; None if the detector is not arrays."""
        det = getattr(self.detector, "cols", None)
        return [self.cols, self.forecaster.cols, det] if isinstance(det, Columns) else None

    @property
    def layout(self) -> bytes | None:
        """16 bytes naming the bank's configuration and the byte layout of :meth:`row_bytes_of`
        (None when rows are not all arrays: a per-series detector object)."""
        if self._layout is None:
            cols = self._row_columns()
            if cols is None:
                return None
            spec = [(k, shape, np.dtype(dt).str) for c in cols for k, (shape, dt, _) in c.spec.items()]
            self._layout = hashlib.blake2b(repr((self._config, spec)).encode(), digest_size=16).digest()
        return self._layout

    def row_bytes_of(self, rows: Sequence[int] | np.ndarray) -> list[bytes] | None:
        """Each row's state as bytes (every field, fixed layout: :attr:`layout`), e.g. to
        checkpoint many series at once without a ``SeriesModel`` per row (one gather per field,
        one copy per row); None when the bank cannot (see :attr:`layout`).
        :meth:`load_row_bytes` puts them back, in this bank or another of the same layout.

        >>> a = SeriesBank.for_config(step_seconds=60.0, horizon=3)
        >>> rows = np.array([a.add(), a.add()])
        >>> _ = a.update(rows, np.array([1.0, 2.0]), np.array([0.0, 0.0]))
        >>> blobs = a.row_bytes_of(rows)
        >>> b = SeriesBank.for_config(step_seconds=60.0, horizon=3)
        >>> r = [b.add(), b.add(), b.add()]
        >>> b.load_row_bytes(r[1:], blobs)
        >>> b.export(r[2]).stuck._last, [int(n) for n in b.updates(r)], len(blobs[0]) == a.row_bytes()
        (2.0, [0, 1, 1], True)
        """
        if self._row_columns() is None:
            return None
        return [row.tobytes() for table in self.row_tables(rows) for row in table]

    def row_tables(self, rows: Sequence[int] | np.ndarray, chunk: int = ROW_TABLE_CHUNK) -> Iterator[np.ndarray]:
        """:meth:`row_bytes_of` without a ``bytes`` per row: the rows' states, ``chunk`` rows at a
        time, as a ``uint8`` table (one row a series, in ``rows``' order), each field gathered
        straight into it. The table is one buffer reused from chunk to chunk (small enough to stay
        in the cache): use each before asking for the next. Raises ``ValueError`` when the bank
        cannot (see :attr:`layout`), ``KeyError`` for a row not in use (before any table).

        >>> a = SeriesBank.for_config(step_seconds=60.0, horizon=3)
        >>> rows = [a.add() for _ in range(5)]
        >>> _ = a.update(np.array(rows), np.arange(5.0), np.zeros(5))
        >>> [t.shape[0] for t in a.row_tables(rows, chunk=2)]
        [2, 2, 1]
        >>> [r.tobytes() for t in a.row_tables(rows, chunk=2) for r in t] == a.row_bytes_of(rows)
        True
        """
        cols = self._row_columns()
        if cols is None:
            raise ValueError("this bank's rows are not all arrays")
        rows = np.asarray(rows, np.int64)
        for r in rows.tolist():
            self._check(r)
        fields = [c[k] for c in cols for k in c.spec]
        widths = [int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
                  for c in cols for shape, dt, _ in c.spec.values()]
        table = np.empty((min(chunk, len(rows)), sum(widths)), np.uint8)
        for lo in range(0, len(rows), chunk):
            at_rows = rows[lo:lo + chunk]
            m, at = len(at_rows), 0
            for f, w in zip(fields, widths, strict=True):
                table[:m, at:at + w] = f[at_rows].reshape(m, -1).view(np.uint8)
                at += w
            yield table[:m]

    def load_row_bytes(self, rows: Sequence[int] | np.ndarray, blobs: Sequence[bytes]) -> None:
        """Set ``rows`` to :meth:`row_bytes_of` records (one assignment per field). Raises
        ``ValueError`` when a record is not of this bank's size (nothing is loaded then); the
        caller checks the :attr:`layout` the records were written with."""
        cols = self._row_columns()
        if cols is None:
            raise ValueError("this bank's rows are not all arrays")
        rows = self._distinct_rows(rows, len(blobs), "records")
        size = self.row_bytes()
        if any(len(b) != size for b in blobs):
            raise ValueError(f"a row record is not {size} bytes")
        m = len(rows)
        table = np.frombuffer(b"".join(blobs), np.uint8).reshape(m, size)
        at = 0
        for c in cols:
            for k, (shape, dt, _) in c.spec.items():
                n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
                c[k][rows] = table[:, at:at + n].copy().view(dt).reshape(m, *shape)
                at += n

    def _check(self, row: int) -> None:
        if not (0 <= row < self._top and self._used[row]):
            raise KeyError(f"row {row} is not in use")

    # -- the update ---------------------------------------------------------
    def update(self, rows: np.ndarray, values: np.ndarray, ts: np.ndarray) -> BankUpdate:
        """``SeriesModel.update(values[i], ts[i])`` for every ``rows[i]``, in one call.

        ``rows`` must be distinct rows in use (one point per series per call)
        and ``ts`` finite; a value may be NaN (the reference's semantics: not
        learnt by the detector nor the forecaster). Nothing changes when the
        call is refused.
        """
        rows = np.asarray(rows, np.int64)
        x = np.asarray(values, np.float64)
        t = np.asarray(ts, np.float64)
        if not (len(rows) == len(x) == len(t)):
            raise ValueError("rows, values and ts must have the same length")
        if len(rows) and (rows.min() < 0 or rows.max() >= self._top or not self._used[rows].all()):
            raise KeyError("a row is not in use")
        if not self._distinct(rows):
            raise ValueError("a row appears twice in one update")
        if not np.isfinite(t).all():  # the reference raises on them too (int(nan // step))
            raise ValueError("timestamps must be finite")
        m = len(rows)
        out = BankUpdate(np.empty(m), np.empty(m, np.bool_), np.empty((m, self.horizon, 3)),
                         np.empty(m, np.bool_), np.empty(m), np.empty(m, np.bool_),
                         np.empty(m, np.bool_), np.empty(m, np.bool_))
        for i in range(0, m, self.chunk):
            part = slice(i, i + self.chunk)
            self._update(rows[part], x[part], t[part], out, part)
        return out

    def _update(self, rows: np.ndarray, x: np.ndarray, t: np.ndarray, out: BankUpdate,
                part: slice) -> None:
        c = self.cols
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            score = self.detector.score_learn(rows, x, t)
            anomalous = score >= self.threshold
            stuck = self._stuck(rows, x)
            fc = self.forecaster
            has_nxt = fc.warm(rows)  # a warm forecaster gives the one-step forecast
            nxt = c["nxt"][rows]
            n_yhat, n_lo, n_hi = nxt[:, 0], nxt[:, 1], nxt[:, 2]
            flag = anomalous | stuck
            run = c["run"][rows]
            free = c["drifting"][rows] if self.adapt_on_drift else np.zeros(len(rows), np.bool_)
            # _robust: an episode is clipped into the band, at most max_skip points
            plain = ~(flag | (run != 0)) | ~has_nxt
            inside = (n_lo <= x) & (x <= n_hi)
            run_r = np.where(flag | ~inside, run + 1, 0)
            clip = py_min(py_max(x, n_lo), n_hi)
            learnt_r = np.where((run_r == 0) | (run_r > self.max_skip), x, clip)
            run = np.where(free | plain, 0, run_r)
            learnt = np.where(free | plain, x, learnt_r)
            c["run"][rows] = run
            episode = flag | ((0 < run) & (run <= self.max_skip))
            above = has_nxt & (x > n_hi)
            untrusted = flag | (episode & ~above)
            started = self._watch_drift(rows, x, has_nxt, n_yhat, episode, run)
            ok = np.isfinite(learnt)
            fc.learn(rows[ok], learnt[ok], t[ok])
            if self.adapt_on_drift:
                fc.adapt(rows[started])
            c["updates"][rows] += 1
            iv = fc.forecast(rows)
            warm = fc.warm(rows)
            error = fc.error(rows)
            c["nxt"][rows] = iv[:, 0, :]
        out.score[part], out.anomalous[part], out.warm[part] = score, anomalous, warm
        # beyond the forecaster's horizons: its last, repeated (np.take copies whole (yhat, lower,
        # upper) triples, where a broadcast assignment loops over them: ~3x faster)
        np.take(iv, self._horizons, axis=1, out=out.intervals[part], mode="clip")
        out.error[part], out.untrusted[part] = error, untrusted
        out.drifting[part], out.drift_started[part] = c["drifting"][rows], started

    def _stuck(self, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The stuck-sensor FlatlineDetector: ``score_one(x) >= 0.5``, then ``learn_one(x)``."""
        factor, min_run, warmup = self.stuck_params
        c = self.cols
        last, has = c["f_last"][rows], c["f_has"][rows]
        run, longest, changes = c["f_run"][rows], c["f_longest"][rows], c["f_changes"][rows]
        same = has & (x == last)
        r1 = run + 1
        limit = py_max(float(min_run), factor * longest)
        s = py_min(0.5 + 0.5 * (r1 - limit) / limit, 1.0)
        stuck = (changes >= warmup) & same & ~(r1 < limit) & (s >= 0.5)
        fin = np.isfinite(x)
        rep = fin & same
        new = fin & ~same
        c["f_run"][rows] = np.where(rep, r1, np.where(new, 1, run))
        c["f_changes"][rows] = np.where(new & has, changes + 1, changes)
        c["f_longest"][rows] = np.where(new & has & (run > longest), run, longest)
        c["f_last"][rows] = np.where(new, x, last)
        c["f_has"][rows] = has | new
        return stuck

    def _watch_drift(self, rows: np.ndarray, x: np.ndarray, has_nxt: np.ndarray,
                     n_yhat: np.ndarray, episode: np.ndarray, run: np.ndarray) -> np.ndarray:
        """``SeriesModel._watch_drift`` for every row: True where a drift starts."""
        c = self.cols
        d_th, d_slack, d_cap, d_alpha, d_warm = self.drift_params
        a = 2.0 / (self.recovery_window + 1.0)
        s0 = c["st_level"][rows]
        s0 = s0 + np.where(s0 != 0.0, a, 1.0) * (np.abs(x) - s0)
        c["st_level"][rows] = s0
        started = np.zeros(len(rows), np.bool_)
        if not has_nxt.any():
            return started
        r = rows[has_nxt]
        xv, ep, rn = x[has_nxt], episode[has_nxt], run[has_nxt]
        err = np.abs(xv - n_yhat[has_nxt]) / (s0[has_nxt] + 1e-12)
        dn = c["d_n"][r]
        s1 = c["st_recent"][r]
        s1 = np.where(dn != 0, s1 + a * (err - s1), s1 + (err - s1))
        c["st_recent"][r] = s1
        s2, s3, s4 = c["st_before"][r], c["st_steps"][r], c["st_episode"][r]
        base, cusum, hit = c["d_base"][r], c["d_cusum"][r], c["d_hit"][r]
        drifting = c["drifting"][r]
        # -- drifting: recovered, or a noisier regime that is the new norm
        s3_d = s3 + 1
        recovered = s1 <= self.recovered_ratio * s2
        timeout = ~recovered & (s3_d >= self.recovery_window)
        # -- watching: ErrorDrift.update(err)
        xa = np.abs(err)
        n1 = dn + 1
        young = n1 <= d_warm
        base_young = base + (xa - base) / n1
        ratio = np.where(base > 0.0, py_min(xa / base, d_cap), np.where(xa > 0.0, d_cap, 0.0))
        base_old = np.where(cusum == 0.0, base + d_alpha * (py_min(xa, d_cap * base) - base), base)
        cus = py_max(0.0, cusum + ratio - 1.0 - d_slack)
        fired = ~young & (cus > d_th)
        cus = np.where(fired, 0.0, cus)
        w_base = np.where(young, base_young, base_old)
        w_cusum = np.where(young, cusum, cus)
        s2_w = np.where(fired & (s4 == 0.0), base, s2)   # the error level before the change
        held = fired & ep                                  # a drift if it outlasts the episode
        was_anomaly = ~fired & (s4 != 0.0) & (rn <= self.max_skip)
        came_back = was_anomaly & ~ep                     # it was an anomaly: forget it
        starts = ~held & ~was_anomaly & (fired | (s4 != 0.0))
        s4_w = np.where(held, 1.0, np.where(came_back | starts, 0.0, s4))
        s3_w = np.where(starts, 0, s3)
        w_base = np.where(came_back, s2_w, w_base)
        w_cusum = np.where(came_back, 0.0, w_cusum)
        # -- write back, drifting rows and watching rows
        c["d_n"][r] = np.where(drifting, dn, n1)
        c["d_hit"][r] = np.where(drifting, hit, fired)
        c["d_base"][r] = np.where(drifting, np.where(recovered, s2, np.where(timeout, s1, base)), w_base)
        c["d_cusum"][r] = np.where(drifting, np.where(recovered | timeout, 0.0, cusum), w_cusum)
        c["st_before"][r] = np.where(drifting, s2, s2_w)
        c["st_steps"][r] = np.where(drifting, s3_d, s3_w)
        c["st_episode"][r] = np.where(drifting, s4, s4_w)
        c["drifting"][r] = np.where(drifting, ~(recovered | timeout), starts)
        started[has_nxt] = ~drifting & starts
        return started

    def to_forecast(self, series: str, issued: float, step: float, u: SeriesUpdate) -> Forecast:
        """``SeriesModel.to_forecast`` for an entry of :meth:`update` (one code path)."""
        return self.template.to_forecast(series, issued, step, u)


def _config(m: SeriesModel) -> tuple:
    """What must be equal for two series to share a bank."""
    return (m.threshold, m.horizon, m.max_skip, m.recovery_window, m.recovered_ratio,
            m.adapt_on_drift, type(m.detector), params(m.detector), forecaster_config(m.forecaster),
            params(m.drift), params(m.stuck))
