"""History: backfilled samples, learnt by the worker in event time before live data.

History is older than the live watermark by nature, so it takes its own path. It is sent
(``foresight backfill``, ``foresight ingest``) to ``<prefix>.history`` in the input wire
format, keyed by series, and the worker's history agent (wired in :mod:`streams.worker.models`):

- validates each message with :func:`streams.records.parse_input`, like any input (bad
  elements go to ``<prefix>.history.dlq`` with their reason, counted);
- windows it on its own :class:`~streams.windowing.Windower` (the window length of the live
  path, exempt from lateness: the whole message is closed at once), never merged into the
  live windows;
- learns the windows, in event time, into the series' model, the one the model agent
  updates on live points; windows not newer than what the model has already learnt are
  skipped and counted (so a backfill sent twice, or after live data, is harmless), and the
  model agent does not learn a live point of a window history taught (or an older one) again
  (:mod:`streams.worker.models`);
- checkpoints the model (signed) and the series' view, and answers with one
  :class:`~streams.records.HistoryReceipt` per message on ``<prefix>.history.learnt``,
  naming the message it answers (its partition and offset: the sender's key for it).

It publishes no forecasts or anomalies for history windows: a controller never acts on
the past. The first live window's forecast is the first one published, warm if history
made it so. The API shows ``points_learnt`` and ``history_points`` per series.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from detectors.series import SeriesModel
from scaler.inputs import inputs_from_update
from streams import records
from streams.records import DeadLetter, HistoryReceipt, InvalidRecord, Point
from streams.windowing import Windower

#: outcomes of a history window (the ``outcome`` label of ``foresight_history_points_total``)
OUTCOMES = ("learnt", "skipped", "rejected")


class HistoryMetrics:
    """``foresight_history_points_total{outcome}`` and ``foresight_history_seconds_total``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.points = Counter("foresight_history_points", "History windows by outcome: learnt, "
                              "skipped (not newer than the model), rejected (invalid)", ["outcome"],
                              registry=registry)
        self.seconds = Counter("foresight_history_seconds", "Seconds spent learning history",
                               registry=registry)
        for o in OUTCOMES:
            self.points.labels(o)


@dataclass
class Learnt:
    """What :func:`learn` did with one series' history windows."""

    learnt: int = 0
    skipped: int = 0
    first: float | None = None
    last: float | None = None


def history_points(raw: bytes, step: float) -> tuple[list[Point], DeadLetter | None]:
    """Validate a ``history`` message and window it at ``step``, exempt from lateness.

    Returns the closed windows in time order per series, and the dead letter of its bad
    elements (None if all were good).

    >>> from streams.records import Aggregate, history_message
    >>> raw = history_message([Aggregate("a", 0.0, 0.0, 1, 4.0, 4.0, 4.0),
    ...                        Aggregate("a", 5.0, 0.0, 1, 6.0, 6.0, 6.0),
    ...                        Aggregate("a", 10.0, 20.0, 1, 1.0, 1.0, 1.0)])
    >>> pts, dead = history_points(raw, 10.0)
    >>> [(p.start, p.value) for p in pts], dead.reason
    ([(0.0, 5.0)], 'bad_value')
    """
    # rows, or a columnar batch (records.InputColumns), as the window agent reads its input: a
    # bad element of either is rejected alone
    parsed = records.parse_input_message(raw)
    rows = parsed.rows() if isinstance(parsed, records.InputColumns) else parsed.items
    # one windower per message: no lateness (history is older than anything live) and no
    # partition clock (a message may hold any stretch of the past)
    w = Windower(step, lateness_windows=10**9, max_future=math.inf)
    for k, exc in w.add_rows(rows, "metrics", [None] * len(rows)):
        if isinstance(exc, InvalidRecord):
            parsed.reject(k, exc.reason, exc.error)
        else:
            parsed.reject(k, "processing_error", f"{type(exc).__name__}: {exc}")
    points = sorted(w.close_all(), key=lambda p: (p.series, p.start))
    return points, parsed.dead


def learn(model_for: Callable[[Point], SeriesModel], points: list[Point], after: float | None,
          on_point: Callable[[Point, Any], None] | None = None) -> Learnt:
    """Learn ``points`` (one series, in time order), skipping windows that start at or before
    ``after`` (what the model has already learnt). ``model_for(point)`` gives the model that
    learns the point (the worker's: at the series' own step, see :mod:`streams.steps`);
    ``on_point(point, update)`` is called after each learnt window.

    >>> from detectors.defaults import make_series_model
    >>> m = make_series_model(60.0, horizon=3)
    >>> pts = [Point("a", 60.0 * i, 60.0 * i + 60, 1, 1.0, 1.0, 1.0, 1.0) for i in range(5)]
    >>> r = learn(lambda p: m, pts, after=60.0)
    >>> r.learnt, r.skipped, r.first, r.last, m.updates
    (3, 2, 120.0, 240.0, 3)
    """
    out = Learnt()
    for p in points:
        if after is not None and p.start <= after:
            out.skipped += 1
            continue
        u = model_for(p).update(p.value, p.start)
        out.learnt += 1
        out.first = p.start if out.first is None else out.first
        out.last = after = p.start
        if on_point is not None:
            on_point(p, u)
    return out


class HistoryLearner:
    """The worker's side: one ``history`` message in, its windows learnt, receipts out.

    Parameters are the worker's collaborators (see :mod:`streams.worker.models`):
    ``model_for(series, t, value)`` gives the cached model that learns the window at ``t``
    (``.model``, a :class:`~detectors.series.SeriesModel`; ``.step``, the series' own step;
    ``.since_checkpoint``), at the series' own step as the model agent's for a live point, so
    history is modelled at the series' own step too (the worker's is checked out of its model
    bank). ``store`` is the :class:`~streams.web.readmodel.ViewStore`, ``save(series, model,
    view)`` checkpoints both (the worker's checks the model back into its bank first),
    ``restore_view(series)`` restores a series' view from its table.
    ``current(series)`` gives the series' model (a copy) without learning anything: what the
    receipt of a message whose windows were all skipped reports (warm, updates).
    ``step`` is the window length: history is windowed at it.
    """

    def __init__(self, step: float, model_for: Callable[[str, float, float], Any], store: Any,
                 save: Callable[[str, SeriesModel, Any], None], restore_view: Callable[[str], None],
                 metrics: HistoryMetrics, current: Callable[[str], Any] | None = None) -> None:
        self.step = step
        self.model_for = model_for
        self.current = current
        self.store = store
        self.save = save
        self.restore_view = restore_view
        self.metrics = metrics
        #: per series: the newest window learnt from history in this process (kept across
        #: rebalances, so a view that could not be restored never makes history learnt twice)
        self.until: dict[str, float] = {}

    def learn_message(self, raw: bytes, partition: int | None = None,
                      offset: int | None = None) -> tuple[list[HistoryReceipt], DeadLetter | None]:
        """Learn one message; the receipts (one per series in it) and its dead letter.

        ``partition`` and ``offset`` are the message's in ``history``: each receipt names them,
        so a sender tells the receipt of a message it sent from one of an earlier message with
        the same windows (a backfill sent again)."""
        t0 = time.perf_counter()
        points, dead = history_points(raw, self.step)
        rejected = dead.count if dead is not None else 0
        by_series: dict[str, list[Point]] = {}
        for p in points:
            by_series.setdefault(p.series, []).append(p)
        receipts = []
        for series, pts in by_series.items():
            receipts.append(self._learn_series(series, pts, rejected if len(by_series) == 1 else 0,
                                               partition, offset))
        if not by_series and dead is not None:
            self.metrics.points.labels("rejected").inc(rejected)
        self.metrics.seconds.inc(time.perf_counter() - t0)
        return receipts, dead

    def _learn_series(self, series: str, pts: list[Point], rejected: int, partition: int | None,
                      offset: int | None) -> HistoryReceipt:
        if series not in self.store.series:
            self.restore_view(series)
        view = self.store.series.get(series)
        marks = [t for t in (view.latest[0] if view is not None and view.latest else None,
                             self.until.get(series)) if t is not None]
        # the view shows the last windows it holds, with the one-step forecasts made for them
        shown = pts[-self.store.size:]
        first_shown = shown[0].start if shown else math.inf
        current: list[Any] = []

        def model_for(p: Point) -> SeriesModel:
            current[:] = [self.model_for(series, p.start, p.value)]
            return current[0].model

        def on_point(p: Point, u: Any) -> None:
            if p.start < first_shown:
                return
            cached = current[0]
            fc, _, _ = inputs_from_update(cached.model, series, p.start, cached.step, p.value, u)
            self.store.on_window(series, p.start, p.value, fc, u.score, u.anomalous, None)

        r = learn(model_for, pts, max(marks) if marks else None, on_point)
        if r.last is not None:
            self.until[series] = r.last
        self.metrics.points.labels("learnt").inc(r.learnt)
        self.metrics.points.labels("skipped").inc(r.skipped)
        self.metrics.points.labels("rejected").inc(rejected)
        cached = current[0] if current else None
        model = cached.model if cached is not None else None  # before save, which may check it in
        if r.learnt and cached is not None and model is not None:
            self.store.note_kind(series, "metrics")
            self.store.note_learnt(series, model.updates, r.learnt)
            self.save(series, model, self.store.series[series])
            cached.since_checkpoint = 0
        if model is None and self.current is not None:  # nothing learnt: still, how far the model is
            model = self.current(series)
        return HistoryReceipt(series, pts[0].start, pts[-1].start, r.first, r.last, r.learnt,
                              r.skipped, rejected, bool(model is not None and model.forecaster.warm),
                              model.updates if model is not None else 0, partition, offset)
