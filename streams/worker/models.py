"""The model agent and the history agent: closed windows -> per-series models.

- model agent: ``points`` -> the series' models -> ``forecasts`` and
  ``anomalies`` (the messages waiting taken and learnt together, :data:`TAKE_MESSAGES`;
  the forecasts sent by their outbox, :mod:`streams.worker.outbox`, while the agent
  learns on, and a message acknowledged once its forecasts are delivered; models
  checkpointed, signed, to the ``models`` table every N updates and at most every
  :data:`CHECKPOINT_MIN_SECONDS`, the series' view to
  ``series_view``; the checkpoints are handed to the producer before the points
  message that made them due is acknowledged, but off the forecasts' path: once
  the agent is idle, or within :data:`CHECKPOINT_DEFER_SECONDS` by a task of their
  own while the agent learns on, see :class:`PendingCheckpoints`);
- history agent: ``history`` -> backfilled windows learnt in event time
  (:mod:`streams.history`), receipts to ``history.learnt``.

Models live in banks (:class:`~detectors.bank.SeriesBank`): one per
configuration (the series' step, its seasonal period and horizon in that step),
one row per series. A points message's points are grouped by bank and each
bank is updated in one vectorised call; a series with two windows in one
message goes into successive calls, in window order. The bank reproduces
:class:`~detectors.series.SeriesModel` per series (tests/detectors/test_bank.py),
and a row leaves and enters as a ``SeriesModel``: checkpoints stay the signed
per-series record (``bank.export(row)``), restored with ``bank.load`` (after a
rebalance, a message's series together with ``bank.load_many``). The history
learner works on the objects: a row is checked out (exported), taught, and
checked back in.

Each series is modelled at its natural step (:mod:`streams.steps`): when it
changes, a ``SeriesModel`` at the new step learns the kept points again and
moves into the bank of that step.

Each window is learnt once. Delivery is at-least-once: after a rebalance or a
crash, an input partition's next owner publishes again the windows closed since
its committed offset, and a points message whose offset was not committed is
delivered again. A model does not learn a point whose window starts at or before
the newest window it has learnt (its forecaster would take the repeated window as
the next step and run that many steps ahead of event time from then on, and its
counts, drift and detector statistics would count it twice): the point is skipped,
counted in ``foresight_points_relearn_skipped_total`` and logged at most once a
minute; it publishes no forecast or anomaly (those went out when the window was
learnt) and is no dead letter (nothing is wrong with it). The same holds for a
window older than the newest learnt that was never learnt (live there is none: a
series' windows close in order; before, it was learnt as the next step, out of
place). Per bank row, in memory, the newest window learnt (one comparison per bank
update); a restored model's is the newest window of the series' ``series_view``
record, which is written with every model checkpoint in the same changelog write
(:meth:`Models._save`, eviction, history), so it is the checkpointed model's: the
windows the old owner learnt after its last checkpoint are learnt again (its
forecasts again, the same numbers), those before are not. No checkpoint format
changed: without a usable view record (none, refused) a restored model learns what
it is given, as before. Windows learnt from history (in event time) count too: a
live point of a window history taught is not learnt again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import faust
import numpy as np

from detectors.bank import SeriesBank
from detectors.defaults import make_series_model
from detectors.series import SeriesModel
from streams import kafka_config, records
from streams.checkpoint import RowCheckpoint, UntrustedCheckpoint
from streams.history import HistoryLearner, HistoryMetrics
from streams.lifecycle import delivered
from streams.ratelog import RateLimitedLog
from streams.records import PointColumns
from streams.steps import StepEstimator, model_shape
from streams.tablestore import keys_present
from streams.web.readmodel import Anomaly
from streams.worker.changelog import Put
from streams.worker.context import BankKey, Cached, WorkerContext
from streams.worker.deadletters import dead_letter, processing_error
from streams.worker.outbox import Outbox

log = logging.getLogger("foresight.worker")

#: rows a bank is created with (it doubles when full): allocating the whole series limit up
#: front would make it resident at start-up (the bank's arrays are filled when allocated)
INITIAL_ROWS = 1024
#: seconds between two checkpoints of a series at least (wall clock), besides its
#: ``checkpoint_every`` updates (when that is above 1): draining a backlog, a series learns a
#: window every fraction of a second, and a checkpoint (a bank row of ~21 KB, signed, to the
#: changelog) every ``checkpoint_every`` of them costs about as much as the updates; live, with a
#: window every 10 s or more, ``checkpoint_every`` updates take longer than this anyway. A series'
#: first checkpoint by this worker is never held back, nor is any with ``checkpoint_every`` 1
#: (every update checkpointed: a successor's models are exactly the ones it took over). A series
#: held back is checkpointed at its next staggered turn once free (within ``checkpoint_every``
#: updates), so the series of a backlog are not all checkpointed in one window after it.
CHECKPOINT_MIN_SECONDS = 30.0
#: seconds the model agent has had no points message to learn before the checkpoints due are
#: written (:class:`PendingCheckpoints`): a window's points arrive together, and their
#: forecasts should not wait behind checkpoints of the same window's series
CHECKPOINT_IDLE_SECONDS = 0.2
#: seconds a due checkpoint waits at most (a busy agent: a backlog, or more series than one
#: window's time holds): then a task writes the checkpoints due while the agent learns on
CHECKPOINT_DEFER_SECONDS = 5.0
#: points messages held unacknowledged at most for their checkpoints (then written at once)
CHECKPOINT_HELD_MESSAGES = 1_000
#: series checkpointed in one go before the event loop runs again
CHECKPOINT_CHUNK = 2_000
#: points messages the model agent takes at once at most (those waiting, or those that come within
#: :data:`TAKE_SECONDS`), learnt together in groups of :data:`LEARN_BYTES` (:func:`learn_groups`):
#: a bank update costs ~1 ms whatever its rows, so 250 series a message (1,000 series over 4
#: partitions) paid ~4 µs an update more than rows of 1,000 (a microbenchmark of
#: ``SeriesBank.update`` on 20,000 warm rows, session 20: 10.8 against 7.4 µs an update)
TAKE_MESSAGES = 64
#: seconds the model agent waits for more points messages once it has one (a window's messages
#: come together: its forecasts are at most this much later)
TAKE_SECONDS = 0.02
#: bytes of points messages learnt in one go at most (one message at least): the size a points
#: message is cut at (``records.MAX_BATCH_BYTES``), so that small messages (250 points of 1,000
#: series over 4 partitions) are learnt ~12 at a time, and a full one (~3,500 points) alone, as
#: before. A bank update's results hold ~1.5 KB a series (62 horizons of 3 float64): groups of
#: 1 MB made a worker of 10,000 series ~9 KB a series larger (54 against 45 KB, with a 64 MB
#: outbox), at no measurable gain in rate
LEARN_BYTES = records.MAX_BATCH_BYTES
#: how long the first look at a points partition waits for where it starts, and how long
#: reading the records a gap skipped waits for them (:meth:`Models._read_range`)
START_OFFSET_TIMEOUT_SECONDS = 10.0
#: seconds a points partition may show records after the next one to learn (its highwater)
#: without the agent getting to it, the agent idle as long, before they are read from the broker
#: (:meth:`Models.catch_up_stalled`)
STALLED_SECONDS = 3.0
#: seconds between two looks at the points partitions for records Faust did not hand over
CATCH_UP_SECONDS = 1.0


@dataclass
class Stalls:
    """Points partitions whose next record to learn exists (below the highwater) but has not come
    for :data:`STALLED_SECONDS`: Faust dropped it (fetched while its flow was stopped, at a start
    or a rebalance) and no later record of the partition came to show the gap
    (:meth:`Models.in_order`), e.g. the last points of a backlog.

    >>> st = Stalls()
    >>> st.stalled(("p", 0), 5, 9, now=10.0), st.stalled(("p", 0), 5, 9, now=12.9)
    (False, False)
    >>> st.stalled(("p", 0), 5, 9, now=13.0)  # no progress for STALLED_SECONDS
    True
    >>> st.stalled(("p", 0), 6, 9, now=14.0), st.stalled(("p", 0), 9, 9, now=99.0)  # progress; caught up
    (False, False)
    """

    #: per partition: the next offset it had when first seen behind, and when
    seen: dict[tuple[str, int], tuple[int | None, float]] = field(default_factory=dict)

    def stalled(self, source: tuple[str, int], expected: int | None, end: int, now: float) -> bool:
        """Whether ``source``, expecting offset ``expected`` (None: nothing learnt yet) with
        records up to before ``end``, has made no progress for :data:`STALLED_SECONDS`."""
        if expected is not None and end <= expected:
            self.seen.pop(source, None)
            return False
        mark = self.seen.get(source)
        if mark is None or mark[0] != expected:
            self.seen[source] = (expected, now)
            return False
        return now - mark[1] >= STALLED_SECONDS


@dataclass
class Learnt:
    """What a batch of points did: per points partition, the forecasts issued (one
    :class:`~streams.records.ForecastColumns` per bank update, in update order) and the series
    due for a checkpoint; per point in batch order the exception its processing raised, if any;
    and the anomaly messages (key, body) to send."""

    forecasts: dict[int, list[records.ForecastColumns]] = field(default_factory=dict)
    #: series due for a checkpoint (written once the forecasts are sent: :class:`PendingCheckpoints`)
    due: dict[int, dict[str, Cached]] = field(default_factory=dict)
    errors: dict[int, Exception] = field(default_factory=dict)
    anomalies: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass
class PendingCheckpoints:
    """The checkpoints due but not written yet, and the points messages whose acknowledgement
    waits for them.

    A points message's forecasts go out as soon as it is learnt (handed to the forecasts'
    :class:`~streams.worker.outbox.Outbox`, which sends them while the agent learns on); the
    message is acknowledged only once the broker has taken them (``sent``: their deliveries'
    futures), and never if one failed. The checkpoints it made due
    (a series' every ``checkpoint_every`` updates) are written once the model agent is idle
    (:data:`CHECKPOINT_IDLE_SECONDS` without a message to learn: a window's points arrive
    together, so after the window's forecasts), or once the oldest has waited
    :data:`CHECKPOINT_DEFER_SECONDS` or :data:`CHECKPOINT_HELD_MESSAGES` messages are held: then
    by a task of its own (:meth:`Models.finished`), while the agent learns on (in a backlog, the
    agent's event loop would otherwise sit idle while the producer drains each changelog batch
    before it takes the next); if the previous write is still under way then, the agent waits
    for it first. A message that made none due is acknowledged at once; one that did once its
    checkpoints are handed to the producer. The committed offset is the acknowledged prefix
    of a partition, so it never passes a message whose checkpoints are not written, as when they
    were written before its acknowledgement. A rebalance forgets both: the held messages are
    delivered again to the partition's next owner, which learns them again from the checkpoints
    before (nothing more than ``checkpoint_every - 1`` windows a series lost, as before).

    >>> p = PendingCheckpoints()
    >>> p.start()
    >>> p.add({}, 0, now=1.0); p.made_due
    False
    >>> p.add({"a": "cached"}, 3, now=2.0); p.made_due, p.idle(now=9.0)
    (True, False)
    >>> p.busy, p.last_done = False, 2.0  # the message finished (Models.finished)
    >>> p.idle(now=2.1), p.idle(now=2.2), p.overdue(now=6.9), p.overdue(now=7.0)
    (False, True, False, True)
    >>> p.take(), p.due, p.overdue(now=99.0)
    (({'a': ('cached', 3)}, []), {}, False)
    """

    #: series -> (its models, its points partition), in the order they came due
    due: dict[str, tuple[Any, int]] = field(default_factory=dict)
    #: (stream, event, its forecasts' deliveries) of the points messages to acknowledge once
    #: ``due`` is written
    held: list[tuple[Any, Any, list[Any]]] = field(default_factory=list)
    #: the deliveries of the forecasts of the message the agent is on (:meth:`Outbox.send`'s futures)
    sent: list[Any] = field(default_factory=list)
    #: monotonic time the oldest of ``due`` came due
    since: float = math.inf
    #: monotonic time the agent last finished a message, whether it is on one now, and whether
    #: that one made checkpoints due
    last_done: float = -math.inf
    busy: bool = False
    made_due: bool = False
    #: a write of checkpoints is under way (its ``due`` and ``held`` taken out of these)
    writing: bool = False

    def start(self) -> None:
        """The agent is on a points message (nothing is written while it is)."""
        self.busy, self.made_due, self.sent = True, False, []

    def add(self, due: dict[str, Any], partition: int, now: float) -> None:
        """Series of ``partition`` came due at ``now`` (in the message the agent is on)."""
        if not due:
            return
        if not self.due:
            self.since = now
        self.due.update((series, (cached, partition)) for series, cached in due.items())
        self.made_due = True

    def idle(self, now: float) -> bool:
        """Something to write or acknowledge, and no message learnt for CHECKPOINT_IDLE_SECONDS."""
        return bool(self.due or self.held) and not self.busy and now - self.last_done >= CHECKPOINT_IDLE_SECONDS

    def overdue(self, now: float) -> bool:
        """The oldest due has waited CHECKPOINT_DEFER_SECONDS, or too many messages are held."""
        return bool(self.due) and (now - self.since >= CHECKPOINT_DEFER_SECONDS
                                   or len(self.held) >= CHECKPOINT_HELD_MESSAGES)

    def take(self) -> tuple[dict[str, tuple[Any, int]], list[tuple[Any, Any, list[Any]]]]:
        """What is due and held, now out of these (to write, or forgotten at a rebalance)."""
        due, held = self.due, self.held
        self.due, self.held, self.since = {}, [], math.inf
        return due, held


class Models:
    """The series' rows in the model banks, over the ``models`` table, and what updates them."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.anomalies_delivered = delivered(ctx.metrics.anomalies_out)
        self._warned: set[BankKey] = set()
        #: where points partitions of the assignment start (:meth:`_start_offset`), until used
        self._starts: dict[tuple[str, int], int | None] = {}
        self._revocations = 0
        #: checkpoints the history learner took, to write (:meth:`write_history`)
        self._history_puts: list[tuple[bytes, bytes, bytes]] = []
        #: per bank, per row: the start of the newest window the row's model has learnt (-inf:
        #: none known); a point not after it is not learnt again (:meth:`_update`)
        self._learnt: weakref.WeakKeyDictionary[SeriesBank, np.ndarray] = weakref.WeakKeyDictionary()
        self._rl = RateLimitedLog(log, interval=60.0)
        #: checkpoints due, and the messages waiting for them (:class:`PendingCheckpoints`)
        self.pending = PendingCheckpoints()
        #: held while points are learnt: by the agent, or by :meth:`catch_up`
        self.lock = asyncio.Lock()
        self.stalls = Stalls()
        #: the forecasts' producer, on a thread of its own (streams/worker/outbox.py)
        self.outbox = Outbox(ctx.settings, ctx.metrics.forecasts_out.inc)
        ctx.on_exit.append(self.outbox.stop)
        #: acknowledgements waiting for their forecasts' deliveries (:meth:`_ack`)
        self._acking: set[asyncio.Task[None]] = set()
        #: the task writing overdue checkpoints while the agent learns on (:meth:`finished`)
        self.writer: asyncio.Task[None] | None = None

    # -- banks and rows ----------------------------------------------------
    def _factory(self, step: float) -> tuple[BankKey, Any]:
        """The bank key of ``step`` and a factory of its series' models."""
        period, horizon = model_shape(self.ctx.settings, step)
        threshold = self.ctx.settings.anomaly_threshold
        return (step, period, horizon), lambda: make_series_model(step, period, horizon, threshold)

    def prepare(self, step: float) -> None:
        """Run the one-time checks a bank of ``step`` makes when first built (that its
        vectorised detector scores as the per-series class does: ~0.6 s of Python on 2
        busy cores, cached per configuration), so that they are paid as the worker starts
        rather than by the first points message; no rows are allocated."""
        SeriesBank(self._factory(step)[1], capacity=0)

    def bank_for(self, step: float) -> SeriesBank:
        """The bank of series modelled at ``step`` (created on first use)."""
        ctx = self.ctx
        key, factory = self._factory(step)
        bank = ctx.state.banks.get(key)
        if bank is None:
            bank = ctx.state.banks[key] = SeriesBank(factory, capacity=min(INITIAL_ROWS, ctx.budget.limit))
            if not bank.detector.vectorised and key not in self._warned:
                self._warned.add(key)
                log.warning("the model bank of step %gs does not vectorise the detector %s: one "
                            "detector object per series (exact, slower)", step,
                            type(bank.template.detector).__name__)
        return bank

    def learnt_of(self, bank: SeriesBank) -> np.ndarray:
        """Per row of ``bank``: the start of the newest window its series' model has learnt
        (-inf: none known, everything is learnt)."""
        marks = self._learnt.get(bank)
        if marks is None or len(marks) < bank.capacity:
            grown = np.full(max(bank.capacity, 1), -np.inf)
            if marks is not None:
                grown[:len(marks)] = marks
            marks = self._learnt[bank] = grown
        return marks

    def _add_rows(self, bank: SeriesBank, learnt: list[float]) -> list[int]:
        """Free rows of ``bank`` (one growth at most: a first window brings thousands of series),
        row ``i`` for a model that has learnt the windows up to ``learnt[i]``."""
        rows = bank.add_many(len(learnt))
        self.learnt_of(bank)[rows] = learnt
        return rows

    def _checkpointed_until(self, series: str) -> float:
        """The start of the newest window of the series' ``series_view`` record: the last window
        its checkpointed model learnt (the view is written with each model checkpoint, in the
        same changelog write, :meth:`_save`). -inf if it has none or it does not verify or parse
        (then the restored model learns every point it is given, as before this guard).

        The record, not a view this worker holds: after a rebalance that can be newer than the
        checkpoint the model is restored from (the models are dropped, the views are kept)."""
        raw = self.ctx.tables.series_view.get(series.encode())
        return self.ctx.store.newest_forecast(series, raw) if raw else -math.inf

    def _checkpoint(self, series: str) -> SeriesModel | RowCheckpoint | None:
        """The series' model from its signed checkpoint (a ``SeriesModel``, or a bank row's
        state); None (logged, counted) if it has none or it is refused or unloadable."""
        ctx = self.ctx
        blob = ctx.tables.models.get(series.encode())
        if not blob:
            return None
        try:
            model = ctx.checkpointer.loads(blob, series.encode())
        except UntrustedCheckpoint as exc:
            ctx.metrics.untrusted_checkpoints.inc()
            log.warning("series %s: refusing model checkpoint (%s); starting cold", series, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - signed but unloadable (an older version): cold
            self._unloadable(series, exc)
            return None
        if not isinstance(model, SeriesModel | RowCheckpoint):
            self._unloadable(series, TypeError(f"a {type(model).__name__}, not a SeriesModel"))
            return None
        return model

    def _unloadable(self, series: str, exc: Exception) -> None:
        self.ctx.metrics.untrusted_state.labels("models").inc()
        log.warning("series %s: unloadable model checkpoint (%s: %s); starting cold",
                    series, type(exc).__name__, exc)

    def restore(self, names: Iterable[str]) -> None:
        """Give every series of ``names`` not held yet a row: restored from its checkpoint (one
        ``load_many`` / ``load_row_bytes`` per bank), else cold at the worker's window."""
        ctx = self.ctx
        held = ctx.state.models
        groups: dict[tuple[int, bool], tuple[SeriesBank, float, list[str], list[Any]]] = {}
        cold: list[str] = []
        names = [s for s in dict.fromkeys(names) if s not in held]  # (each once)
        keys = [s.encode() for s in names]
        saved = keys_present(ctx.tables.models, keys)  # (one query, not one each)
        for series, key in zip(names, keys, strict=True):
            model = self._checkpoint(series) if key in saved else None
            if isinstance(model, RowCheckpoint):
                step = model.step
                bank = self.bank_for(step) if math.isfinite(step) and step > 0 else None
                if bank is None or model.layout != bank.layout:
                    self._unloadable(series, ValueError("a bank row of another configuration"))
                    model = None
            if model is None:
                cold.append(series)
                continue
            if isinstance(model, SeriesModel):
                step = float(getattr(model.forecaster, "step_seconds", ctx.step))
                bank = self.bank_for(step)
            g = groups.setdefault((id(bank), isinstance(model, RowCheckpoint)), (bank, step, [], []))
            g[2].append(series)
            g[3].append(model)
        for (_, raw), (bank, step, group, models) in groups.items():
            rows = self._add_rows(bank, [self._checkpointed_until(series) for series in group])
            try:
                _load(bank, raw, rows, models)
                restored = len(rows)
            except Exception:  # noqa: BLE001 - one does not fit: each on its own, the rest cold
                restored = 0
                for i, (series, model) in enumerate(zip(group, models, strict=True)):
                    try:
                        _load(bank, raw, [rows[i]], [model])
                        restored += 1
                    except Exception as exc:  # noqa: BLE001 - another configuration or version: cold
                        self._unloadable(series, exc)
                        bank.remove(rows[i])
                        rows[i] = self._add_rows(bank, [-math.inf])[0]  # reset: cold
            for series, row in zip(group, rows, strict=True):
                held[series] = Cached(bank, row, step)
            ctx.metrics.restored_checkpoints.inc(restored)
        if cold:
            bank, step = self.bank_for(ctx.step), ctx.step
            rows = self._add_rows(bank, [-math.inf] * len(cold))
            held.update(zip(cold, map(Cached, repeat(bank), rows, repeat(step)), strict=True))

    def model_for(self, series: str) -> Cached:
        """The series' row (restored from its checkpoint, or cold, if not held)."""
        cached = self.ctx.state.models.get(series)
        if cached is None:
            self.restore((series,))
            cached = self.ctx.state.models[series]
        return cached

    def _move(self, cached: Cached, step: float, model: SeriesModel) -> None:
        """Put ``model`` (at ``step``) in the bank of that step, freeing the series' old row."""
        bank = self.bank_for(step)
        row = self._add_rows(bank, [float(self.learnt_of(cached.bank)[cached.row])])[0]
        try:
            bank.load(row, model)
        except Exception:
            bank.remove(row)
            raise
        cached.release()
        cached.bank, cached.row, cached.step = bank, row, step

    def at_own_step(self, series: str, cached: Cached, t: float, value: float) -> Cached:
        """The series' model at its natural step (streams/steps.py): when the estimate of the
        step changes, a model at the new step learns the kept points again and takes over."""
        ctx = self.ctx
        est = ctx.state.steps.get(series)
        if est is None:  # a restored model keeps its step unless the recent intervals disagree
            learnt = cached.model.updates if cached.model is not None else cached.bank.updates([cached.row])[0]
            est = ctx.state.steps[series] = StepEstimator(ctx.step, step=cached.step if learnt else None)
        new_step = est.observe(t, value)
        if new_step is None or new_step == cached.step:
            return cached
        p, h = model_shape(ctx.settings, new_step)
        model = make_series_model(new_step, p, h, ctx.settings.anomaly_threshold)
        for ts, v in est.replay()[:-1]:
            model.update(v, ts)
        log.info("series %s: a point every %gs: modelled at that step from now on (was %gs)",
                 series, new_step, cached.step)
        if cached.model is not None:  # checked out (history): moves when checked in
            cached.model, cached.step = model, new_step
        else:
            self._move(cached, new_step, model)
        return cached

    # -- history: objects checked out of the banks ---------------------------
    def history_model(self, series: str, t: float, value: float) -> Cached:
        """The series' model checked out of its bank as an object (``.model``), at its own step,
        to learn the window at ``t`` from history; :meth:`checkin` puts it back."""
        cached = self.model_for(series)
        if cached.model is None:
            cached.model = cached.bank.export(cached.row)
        cached = self.at_own_step(series, cached, t, value)
        # learnt now (in event time: the history learner skips windows not after the view's
        # newest): a live point of that window or an older one is not learnt again
        marks = self.learnt_of(cached.bank)
        marks[cached.row] = max(marks[cached.row], t)
        return cached

    def current_model(self, series: str) -> SeriesModel:
        """A copy of the series' model as it is (restored if not held), learning nothing."""
        return self.model_for(series).export()

    def checkin(self, series: str) -> None:
        """Put a checked-out model back into its bank row (the bank of its step)."""
        cached = self.ctx.state.models.get(series)
        if cached is None or cached.model is None:
            return
        model, cached.model = cached.model, None
        bank = self.bank_for(cached.step)
        if bank is cached.bank:
            bank.load(cached.row, model)
        else:
            self._move(cached, cached.step, model)

    def checkin_all(self) -> None:
        for series in [s for s, c in self.ctx.state.models.items() if c.model is not None]:
            self.checkin(series)

    def save_history(self, series: str, model: SeriesModel, view: Any) -> None:
        """Check a series' model back in and checkpoint it and its view after a history
        message taught it (to the changelogs by :meth:`write_history`, once the message is learnt)."""
        ctx, key = self.ctx, series.encode()
        self.checkin(series)
        self._history_puts.append((key, ctx.checkpointer.dumps(model, key), ctx.store.snapshot_series(view)))
        ctx.metrics.checkpoints.inc()

    async def write_history(self, partition: int) -> None:
        """Write the checkpoints :meth:`save_history` took, on ``partition`` (the history
        message's, as a Faust table's own write in its agent would)."""
        tables, saved, self._history_puts = self.ctx.tables, self._history_puts, []
        puts = [p for key, model, view in saved
                for p in (Put(tables.models, partition, key, model), Put(tables.series_view, partition, key, view))]
        await self.ctx.changelog.write(self.ctx.app.producer, puts)

    def restore_view(self, series: str) -> None:
        """Restore a series' view from its ``series_view`` record, if it has one."""
        raw = self.ctx.tables.series_view.get(series.encode())
        if raw:
            self.ctx.store.restore_series(series, raw)  # a forged or unreadable snapshot is skipped and counted

    # -- live points -----------------------------------------------------
    def learn(self, points: PointColumns, partitions: np.ndarray | int) -> Learnt:
        """Update the models with ``points`` (closed windows, as columns; ``partitions``: each
        point's points partition, or one for all); never awaits, so a rebalance cannot drop a
        bank under it. A series' points must be in window order."""
        parts = np.broadcast_to(np.asarray(partitions, np.int64), (len(points),))
        held = self.ctx.state.models
        out = Learnt()
        names = points.series
        missing = [s for s in names if s not in held]
        if missing:
            self.restore(dict.fromkeys(missing))
        # a series' k-th point in the batch goes into the k-th round of bank updates (the window
        # agent's batches: every series once, one round)
        rounds: list[list[int]] = [list(range(len(names)))]
        if len(set(names)) < len(names):
            rounds = [[]]
            seen: dict[str, int] = {}
            for k, series in enumerate(names):
                r = seen.get(series, 0)
                seen[series] = r + 1
                if r == len(rounds):
                    rounds.append([])
                rounds[r].append(k)
        starts, values = points.start.tolist(), points.value.tolist()
        for ks in rounds:
            self._round(points, starts, values, ks, parts, out)
        return out

    def _round(self, points: PointColumns, starts: list[float], values: list[float], ks: list[int],
               partitions: np.ndarray, out: Learnt) -> None:
        """Points ``ks`` (one per series) grouped by bank, each group one bank update
        (``starts``/``values``: the points' columns as lists)."""
        held, names = self.ctx.state.models, points.series
        groups: dict[int, tuple[SeriesBank, list[int], list[Cached]]] = {}
        bank: SeriesBank | None = None
        gk: list[int] = []
        gc: list[Cached] = []
        for k in ks:
            series = names[k]
            try:
                cached = held.get(series) or self.model_for(series)
                if cached.model is not None:
                    self.checkin(series)
                cached = self.at_own_step(series, cached, starts[k], values[k])
            except Exception as exc:  # noqa: BLE001 - one point never stops the others
                out.errors[k] = exc
                continue
            if cached.bank is not bank:
                bank = cached.bank
                g = groups.get(id(bank))
                if g is None:
                    g = groups[id(bank)] = (bank, [], [])
                gk, gc = g[1], g[2]
            gk.append(k)
            gc.append(cached)
        for bank, gk, gc in groups.values():
            self._update(bank, points, gk, gc, partitions, out)

    def _update(self, bank: SeriesBank, points: PointColumns, ks: list[int], held: list[Cached],
                partitions: np.ndarray, out: Learnt) -> None:
        ctx, metrics, store, tables = self.ctx, self.ctx.metrics, self.ctx.store, self.ctx.tables
        n = len(ks)
        rows = np.fromiter((c.row for c in held), np.int64, n)
        at = np.asarray(ks, np.int64)
        ts = points.start[at]
        marks = self.learnt_of(bank)
        fresh = ~(ts <= marks[rows])  # NaN: on to the bank, which refuses it (a dead letter)
        if not fresh.all():
            keep = np.flatnonzero(fresh)
            self._skip_learnt(points, [k for i, k in enumerate(ks) if not fresh[i]], marks, rows[~fresh])
            if not len(keep):
                return
            ks, held, rows, ts, n = [ks[i] for i in keep], [held[i] for i in keep], rows[keep], ts[keep], len(keep)
            at = at[keep]
        values = points.value[at]
        t0 = time.perf_counter()
        try:
            u = bank.update(rows, values, ts)
        except Exception as exc:  # noqa: BLE001 - refused as a whole (nothing changed): one by one
            if n == 1:
                out.errors[ks[0]] = exc
                return
            for k, c in zip(ks, held, strict=True):
                self._update(bank, points, [k], [c], partitions, out)
            return
        metrics.model_update_seconds.observe(time.perf_counter() - t0)  # one bank call
        metrics.model_updates.inc(n)
        marks[rows] = ts
        # the forecasts as arrays (SeriesModel.to_forecast's, placed in event time here): no
        # Forecast object per series; the read model and the forecasts message take the arrays
        step = held[0].step  # a bank's series share its step
        intervals = records.wire_values(u.intervals)  # as published: the read model shows the same
        # the view keeps them as published (float32), at the times ts + k step
        fc_points = intervals.astype(np.float32)
        untrusted = u.anomalous | u.untrusted  # the observation the controller's safety rule reads
        counts = bank.updates(rows)
        coverage = bank.template.forecaster.coverage
        model_name = type(bank.template.forecaster).__name__
        detector = type(bank.template.detector).__name__
        every = ctx.settings.checkpoint_every
        # checkpointed since: not due yet (never with every 1); -inf: never checkpointed
        held_back = time.monotonic() - CHECKPOINT_MIN_SECONDS if every > 1 else math.inf
        names = [points.series[k] for k in ks]
        ok = np.ones(n, np.bool_)
        # drift starts and anomalies: the rows flagged only
        for i in np.flatnonzero(u.drift_started).tolist():
            metrics.drift_events.inc()
            log.info("series %s: forecast errors changed regime at %s (drift); acting "
                     "reactively until the model has adapted", names[i], float(ts[i]))
        anomalies: dict[int, Anomaly] = {}
        for i in np.flatnonzero(u.anomalous).tolist():
            try:
                anomaly = anomalies[i] = Anomaly(float(ts[i]), float(values[i]), float(u.score[i]),
                                                 bank.threshold, detector)
                out.anomalies.append((names[i].encode(),
                                      records.dumps(records.anomaly_to_json(names[i], *anomaly))))
            except Exception as exc:  # noqa: BLE001 - one point never stops the others
                out.errors[ks[i]] = exc
                ok[i] = False
        # views checkpointed with their models: restored first (asked about together: a first
        # window's series are new to the view)
        fresh = [i for i, series in enumerate(names) if series not in store.series]
        if fresh:
            keys = [names[i].encode() for i in fresh]
            viewed = keys_present(tables.series_view, keys)
            for i, key in zip(fresh, keys, strict=True):
                if key in viewed:
                    try:
                        self.restore_view(names[i])
                    except Exception as exc:  # noqa: BLE001 - one point never stops the others
                        out.errors[ks[i]] = exc
                        ok[i] = False
        # the read model, for the batch at once (a row that fails is out of the forecasts)
        take = slice(None) if ok.all() else np.flatnonzero(ok)
        view_rows = np.arange(n)[take]
        failed = store.on_windows_arrays(
            names if ok.all() else [names[i] for i in view_rows.tolist()], ts[take], values[take], step,
            fc_points[take], coverage, model_name, u.warm[take], u.error[take], u.score[take],
            u.anomalous[take], u.drifting[take],
            anomalies if ok.all() else {j: anomalies[i] for j, i in enumerate(view_rows.tolist()) if i in anomalies},
            counts[take])
        for j, exc in failed.items():
            i = int(view_rows[j])
            out.errors[ks[i]] = exc
            ok[i] = False
        # every `every` updates, staggered by row so that a bank's series do not all checkpoint in
        # the same window (a latency spike every `every` windows); a series past its turn (held
        # back, or its count or row changed) at its next turn by its own count, so that series
        # held back together are not all due when free again
        on_turn = ((counts + rows) % every == 0).tolist()
        parts = partitions[at]
        for i in (range(n) if ok.all() else np.flatnonzero(ok).tolist()):
            cached = held[i]
            cached.since_checkpoint = since = cached.since_checkpoint + 1
            if ((on_turn[i] or (since >= every and (since + cached.row) % every == 0))
                    and cached.checkpointed < held_back):
                out.due.setdefault(int(parts[i]), {})[names[i]] = cached
        fc = records.ForecastColumns(names, ts, step, intervals, coverage, model_name, u.warm,
                                     u.error, u.drifting, values, untrusted, u.score)
        if not ok.all():
            fc, parts = fc.take(ok), parts[ok]
        if len(parts) and parts.min() == parts.max():
            out.forecasts.setdefault(int(parts[0]), []).append(fc)
        else:  # points of several partitions: each partition's forecasts go out on it
            for p in np.unique(parts).tolist():
                out.forecasts.setdefault(p, []).append(fc.take(parts == p))

    def _skip_learnt(self, points: PointColumns, ks: list[int], marks: np.ndarray, rows: np.ndarray) -> None:
        """Points ``ks`` are of windows their series' models have learnt (or older ones): not
        learnt again, counted, logged at most once a minute. Not dead letters: nothing is wrong
        with them (a window published again by an input partition's next owner, a points
        message delivered again after a crash); their forecasts went out when they were learnt."""
        self.ctx.metrics.relearn_skipped.inc(len(ks))
        k = ks[0]
        self._rl.log(logging.INFO, "relearn", "model: %d point(s) of windows already learnt not learnt "
                     "again (at-least-once delivery), e.g. series %s window %s (learnt up to %s)",
                     len(ks), points.series[k][:100], float(points.start[k]), float(marks[rows[0]]))

    # -- checkpoints, off the forecasts' path (PendingCheckpoints) --------------
    async def finished(self, stream: Any, events: list[Any]) -> None:
        """The agent is done with ``events`` (learnt together, or dead-lettered): acknowledge them
        once their forecasts are delivered if they made no checkpoint due, else once those are
        written too. If overdue, the checkpoints due are written by a task of their own
        (:attr:`writer`) while the agent learns on; a write still under way then is waited for
        first (so checkpoints, and the messages held for them, trail the agent by at most about
        twice :data:`CHECKPOINT_DEFER_SECONDS`)."""
        pending, now = self.pending, time.monotonic()
        pending.busy, pending.last_done = False, now
        sent, pending.sent = pending.sent, []
        for event in events:
            if pending.made_due:
                pending.held.append((stream, event, sent))
            else:
                await self._ack(stream, event, sent)
        if not pending.overdue(now):
            return
        if self.writer is not None and not self.writer.done():
            await asyncio.shield(self.writer)
        self.write_soon()

    def write_soon(self) -> asyncio.Task[None]:
        """The task writing the checkpoints due (:meth:`write_due`): the one under way, else a new one."""
        if self.writer is None or self.writer.done():
            self.writer = asyncio.ensure_future(self.write_due())
            self.writer.add_done_callback(self._written)
        return self.writer

    def _written(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # write_due logs its writes' failures
            self.ctx.metrics.processing_errors.labels("model").inc()
            log.error("model: the checkpoint writer failed", exc_info=task.exception())

    async def _ack(self, stream: Any, event: Any, sent: list[Any]) -> None:
        """Acknowledge ``event`` now if its forecasts' deliveries ``sent`` are done, else once they
        are (by a task of its own, unless a rebalance came first); never if one of them failed
        (logged, counted: the message is learnt again by the partition's next owner)."""
        if all(f.done() for f in sent):
            if self._delivered(event, sent):
                await stream.ack(event)
            return
        task = asyncio.ensure_future(self._ack_when_sent(stream, event, sent, self._revocations))
        self._acking.add(task)
        task.add_done_callback(self._acking.discard)

    async def _ack_when_sent(self, stream: Any, event: Any, sent: list[Any], revocations: int) -> None:
        await asyncio.wait(sent)
        if self._delivered(event, sent) and revocations == self._revocations:
            await stream.ack(event)

    def _delivered(self, event: Any, sent: list[Any]) -> bool:
        """Whether every delivery of ``sent`` (done) succeeded; if not, logged and counted."""
        failed = [f for f in sent if f.cancelled() or f.exception() is not None]
        if not failed:
            return True
        self.ctx.metrics.processing_errors.labels("model").inc()
        msg = event.message
        why = "cancelled" if failed[0].cancelled() else repr(failed[0].exception())
        self._rl.log(logging.ERROR, "undelivered", "model: the forecasts of %s[%d]@%d were not delivered (%s): "
                     "the message stays unacknowledged (learnt again by the partition's next owner)",
                     msg.topic, msg.partition, msg.offset, why)
        return False

    async def write_due(self) -> None:
        """Write the checkpoints due (:meth:`_save`, :data:`CHECKPOINT_CHUNK` series at a time),
        as the models are now, then acknowledge the messages that waited for them. A series no
        longer held as it was (a rebalance, an eviction or the history learner since) is
        skipped: it is checkpointed by whoever holds it, or at its next update (its count is not
        reset). A write that fails is logged and counted; its series come due again."""
        pending = self.pending
        if pending.writing:
            return
        pending.writing, revocations = True, self._revocations
        due, held = pending.take()
        try:
            items = list(due.items())
            for at in range(0, len(items), CHECKPOINT_CHUNK):
                await self._write_checkpoints(items[at:at + CHECKPOINT_CHUNK])
        except Exception:  # noqa: BLE001 - the forecasts are out: the checkpoints come at the next turn
            self.ctx.metrics.processing_errors.labels("model").inc()
            log.exception("model: writing the checkpoints of %d series failed", len(due))
        finally:
            pending.writing = False
        if revocations == self._revocations:  # else: delivered again to the partitions' next owners
            for stream, event, sent in held:
                await self._ack(stream, event, sent)

    async def _write_checkpoints(self, items: list[tuple[str, tuple[Cached, int]]]) -> None:
        held = self.ctx.state.models
        groups: dict[tuple[int, int], tuple[SeriesBank, float, int, list[Cached], list[tuple[bytes, Any]]]] = {}
        for series, (cached, partition) in items:
            if held.get(series) is not cached or cached.model is not None or not cached.since_checkpoint:
                continue
            g = groups.setdefault((id(cached.bank), partition), (cached.bank, cached.step, partition, [], []))
            g[3].append(cached)
            g[4].append((series.encode(), self.ctx.store.series.get(series)))
        puts = [p for bank, step, partition, cacheds, views in groups.values()
                for p in self._save(bank, step, cacheds, views, partition)]
        await self.ctx.changelog.write(self.ctx.app.producer, puts)

    def _save(self, bank: SeriesBank, step: float, held: list[Cached], views: list[tuple[bytes, Any]],
              partition: int) -> list[Put]:
        """The checkpoints of the models of ``held`` (rows of ``bank``, at ``step``) and their views:
        the rows' state as signed raw records (gathered a chunk at a time: ``SeriesBank.row_tables``), or
        signed ``SeriesModel`` pickles where the bank cannot give bytes."""
        ctx, tables, store = self.ctx, self.ctx.tables, self.ctx.store
        layout, now = bank.layout, time.monotonic()
        keys = [key for key, _ in views]
        if layout is not None:  # the rows gathered a chunk at a time, compressed from the chunk's table
            blobs = []
            for table in bank.row_tables([c.row for c in held]):
                blobs += ctx.checkpointer.dumps_rows(step, layout, keys[len(blobs):len(blobs) + len(table)], table)
        else:
            blobs = [ctx.checkpointer.dumps(bank.export(c.row), key) for c, key in zip(held, keys, strict=True)]
        puts = []
        for cached, (key, view), blob in zip(held, views, blobs, strict=True):
            puts.append(Put(tables.models, partition, key, blob))
            if view is not None:
                puts.append(Put(tables.series_view, partition, key, store.snapshot_series(view)))
            cached.since_checkpoint = 0
            cached.checkpointed = now
        ctx.metrics.checkpoints.inc(len(held))
        return puts

    async def in_order(self, msg: Any) -> list[Any]:
        """The points messages to learn for ``msg``, in offset order: none if it was learnt
        already (delivered again), else ``msg``, preceded by the records between the offset its
        partition expects and ``msg`` if there is a gap.

        The models are state: a points message learnt twice, or never, leaves them unlike the
        per-series reference. Faust drops records fetched while its flow is stopped (the
        recovery after a restart, a rebalance), and seeking its consumer back does not bring
        them reliably (records of the batch in hand, handed over after the seek, move its read
        offset past the sought one, and it drops the records read again below it). So the
        records of a gap are read straight from the broker by a client of its own
        (:meth:`_read_range`); offsets without a record (transaction markers, compaction) are
        simply not among them. The first message expected is the committed offset (with none,
        a new group's, the partition's first offset: a backlog is learnt whole). If the broker
        does not give the gap's records, Faust's consumer is sought back to it and ``msg``
        waits: the partition's next message tries again."""
        source = (msg.topic, msg.partition)
        state = self.ctx.state
        expected = state.points_next.get(source)
        if expected is None:
            expected = await self._start_offset(msg.tp)
        if expected is not None and msg.offset < expected:
            return []  # delivered again: already learnt
        missed: list[Any] | None = []
        if expected is not None and msg.offset > expected:
            log.warning("model: %s[%d]: offsets %d..%d were not delivered: reading them from the broker",
                        *source, expected, msg.offset - 1)
            missed = await self._read_range(msg.topic, msg.partition, expected, msg.offset)
            if missed is None:
                state.points_next[source] = expected
                await self.ctx.app.consumer.seek(msg.tp, expected)
                return []
        state.points_next[source] = msg.offset + 1
        return [*missed, msg]

    def _flowing(self) -> bool:
        """Whether Faust hands over records now (not rebalancing, recovering or paused)."""
        app = self.ctx.app
        if app.rebalancing or getattr(app, "in_recovery", False):
            return False
        return bool(getattr(app.consumer, "flow_active", True))

    async def catch_up_stalled(self, learn: Any) -> None:
        """Read from the broker and ``learn`` the records of every points partition of the
        assignment that :class:`Stalls` finds stalled (:meth:`catch_up`), once the agent has had
        no message for :data:`STALLED_SECONDS` (while it has, those records are queued behind
        others, or the next record of their partition shows the gap)."""
        ctx, now = self.ctx, time.monotonic()
        pending = self.pending
        if pending.busy or now - pending.last_done < STALLED_SECONDS or not self._flowing():
            return  # Faust is handing records over: a gap is in their way, or comes next
        consumer = ctx.app.consumer
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic == ctx.topics.points]
        except Exception:  # noqa: BLE001 - no assignment yet
            return
        for tp in assigned:
            source = (tp.topic, tp.partition)
            try:
                end = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - nothing fetched yet
                continue
            expected = ctx.state.points_next.get(source)
            if end is not None and self.stalls.stalled(source, expected, end, now):
                await self.catch_up(tp, expected, end, learn)

    async def catch_up(self, tp: Any, expected: int | None, end: int, learn: Any) -> int:
        """Learn the records of points partition ``tp`` from the offset it expects (if it still
        is ``expected``: else the agent got there meanwhile) to before ``end``, read from the
        broker (:meth:`_read_range`), in offset order, each through ``learn`` (the agent's own
        step: ``learn([msg])``). Faust hands them over later, if at all, below the offset now
        expected: skipped (:meth:`in_order`). Returns the records learnt."""
        source = (tp.topic, tp.partition)
        state = self.ctx.state
        async with self.lock:
            if state.points_next.get(source) != expected:
                return 0
            revocations = self._revocations
            start = expected if expected is not None else await self._start_offset(tp)
            if start is None:
                return 0
            if start >= end:  # nothing to learn: where the partition starts is known now
                state.points_next[source] = start
                return 0
            log.warning("model: %s[%d]: offsets %d..%d were not handed over for %gs: reading them from "
                        "the broker", *source, start, end - 1, STALLED_SECONDS)
            missed = await self._read_range(tp.topic, tp.partition, start, end)
            if missed is None or revocations != self._revocations:
                return 0  # tried again at the next look (or the partition's next owner reads them)
            self.ctx.metrics.points_caught_up.inc(len(missed))
            pending = self.pending
            pending.start()
            try:
                for msg in missed:
                    state.points_next[source] = msg.offset + 1
                    await learn([msg])
                state.points_next[source] = max(end, state.points_next[source])
            finally:
                pending.busy, pending.last_done = False, time.monotonic()
            self.stalls.seen.pop(source, None)
            return len(missed)

    async def _read_range(self, topic: str, partition: int, start: int, end: int) -> list[Any] | None:
        """The records of ``topic[partition]`` from offset ``start`` to before ``end``, read by a
        client of its own (no group); None (logged) if the broker does not give them within
        :data:`START_OFFSET_TIMEOUT_SECONDS`."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        part = TopicPartition(topic, partition)
        client = AIOKafkaConsumer(**kafka_config.client_kwargs(self.ctx.settings), enable_auto_commit=False)
        records: list[Any] = []
        try:
            async with asyncio.timeout(START_OFFSET_TIMEOUT_SECONDS):
                await client.start()
                client.assign([part])
                client.seek(part, start)
                while await client.position(part) < end:
                    got = await client.getmany(part, timeout_ms=500)
                    records.extend(r for r in got.get(part, ()) if start <= r.offset < end)
        except Exception:  # noqa: BLE001 - then Faust's consumer is sought back to it
            log.warning("model: reading %s[%d] offsets %d..%d failed: seeking back to %d",
                        topic, partition, start, end - 1, start, exc_info=True)
            return None
        finally:
            await client.stop()
        return records

    async def _start_offset(self, tp: Any) -> int | None:
        """Where ``tp`` starts for this worker: the group's committed offset, or with none (a new
        group) the first offset the broker still holds; None if the broker cannot say within
        :data:`START_OFFSET_TIMEOUT_SECONDS`. Looked up once for every points partition of the
        assignment not started yet (:meth:`_look_up_starts`); a revocation forgets the answers."""
        source = (tp.topic, tp.partition)
        if source not in self._starts:
            await self._look_up_starts(tp)
        return self._starts.pop(source, None)

    async def _look_up_starts(self, tp: Any) -> None:
        """Where ``tp`` and every other partition of its topic assigned to this worker (and not
        started yet) start, asked in one go by a client of its own (Faust's consumer thread does
        not answer while its agents wait on it, and its own record of committed offsets can be
        empty right after an assignment): one client, its committed offsets, then the first
        offsets of those without one. Kept in ``_starts`` unless a revocation came meanwhile."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        ctx = self.ctx
        try:
            assigned = {p.partition for p in ctx.app.consumer.assignment() if p.topic == tp.topic}
        except Exception:  # noqa: BLE001 - no assignment to read: this partition alone
            assigned = set()
        parts = [TopicPartition(tp.topic, p) for p in sorted(assigned | {tp.partition})
                 if p == tp.partition or (tp.topic, p) not in ctx.state.points_next]
        revocations = self._revocations
        client = AIOKafkaConsumer(**kafka_config.client_kwargs(ctx.settings),
                                  group_id=ctx.app.conf.id, enable_auto_commit=False)
        starts: dict[tuple[str, int], int | None] = {}
        try:
            async with asyncio.timeout(START_OFFSET_TIMEOUT_SECONDS):
                await client.start()
                committed = await asyncio.gather(*(client.committed(p) for p in parts))
                fresh = [p for p, c in zip(parts, committed, strict=True) if c is None]
                first = await client.beginning_offsets(fresh) if fresh else {}
                for p, c in zip(parts, committed, strict=True):
                    starts[(p.topic, p.partition)] = first[p] if c is None else c
        except Exception:  # noqa: BLE001 - then the first message seen starts the partition
            log.warning("model: where %s[%s] start is unknown: starting at the first message seen",
                        tp.topic, ",".join(str(p.partition) for p in parts), exc_info=True)
            starts = {(p.topic, p.partition): None for p in parts}
        finally:
            await client.stop()
        if revocations == self._revocations:  # else: asked again under the new assignment
            self._starts.update(starts)

    def revoked(self) -> None:
        """Partitions were revoked: start offsets looked up before are stale."""
        self._revocations += 1
        self._starts.clear()
        self.pending.take()  # the held messages are delivered again to the partitions' next owners

    async def model_messages(self, msgs: list[Any]) -> None:
        """Points messages (each one point or a batch), learnt together (:meth:`learn`: bank
        updates of every partition's series at once); each partition's forecasts go out on that
        partition of ``forecasts``; a point whose processing raises goes, with any unreadable one,
        into its message's one dead letter."""
        ctx = self.ctx
        parsed = [records.parse_points(msg.value or b"") for msg in msgs]
        items = [p.items for p in parsed]
        sizes = [len(i) for i in items]
        out = self.learn(PointColumns.concat(items), np.repeat([m.partition for m in msgs], sizes))
        if out.errors:
            firsts = np.cumsum([0, *sizes])
            for k, exc in sorted(out.errors.items()):
                j = int(np.searchsorted(firsts, k, side="right")) - 1
                msg, at = msgs[j], k - int(firsts[j])
                ctx.metrics.processing_errors.labels("model").inc()
                log.warning("model: %s in %s[%d]@%d raised %s: %s (dead-lettered)", items[j].series[at][:100],
                            msg.topic, msg.partition, msg.offset, type(exc).__name__, exc)
                parsed[j].reject(at, "processing_error", f"{type(exc).__name__}: {exc}")
        for key, body in out.anomalies:
            await ctx.out[ctx.topics.anomalies].send(key=key, value=body, callback=self.anomalies_delivered)
        for partition, forecasts in out.forecasts.items():
            batches = records.forecast_batches(forecasts)
            if batches:
                t = time.perf_counter()
                self.pending.sent.append(await self.outbox.send(ctx.topics.forecasts, partition, batches))
                ctx.metrics.forecasts_send_seconds.inc(time.perf_counter() - t)
        now = time.monotonic()
        for partition, due in out.due.items():
            self.pending.add(due, partition, now)
        for msg, p in zip(msgs, parsed, strict=True):
            if p.dead is not None:
                await dead_letter(ctx, ctx.topics.points, msg, p.dead)


def learn_groups(msgs: list[Any], limit: int = LEARN_BYTES) -> list[list[Any]]:
    """``msgs`` in order, in groups of at most ``limit`` bytes (a larger message alone).

    >>> M = type("M", (), {})
    >>> def msg(n): m = M(); m.value = b"x" * n; return m
    >>> [[len(m.value) for m in g] for g in learn_groups([msg(3), msg(4), msg(9), msg(1), msg(2)], limit=8)]
    [[3, 4], [9], [1, 2]]
    """
    groups: list[list[Any]] = []
    size = limit
    for msg in msgs:
        n = len(msg.value or b"")
        if size + n > limit:
            groups.append([])
            size = 0
        groups[-1].append(msg)
        size += n
    return groups


def install(ctx: WorkerContext) -> Models:
    """The model agent on ``points``."""
    models = Models(ctx)
    models.prepare(ctx.step)  # the default step's bank checks, before any message is read

    @ctx.app.agent(ctx.raw_topic(ctx.topics.points), name="model-agent")
    async def model_agent(stream: faust.StreamT) -> None:
        # acknowledged by hand: once the broker has the forecasts, and the checkpoints the
        # message made due are written (Models.finished)
        manual = stream.noack()
        async for events in manual.noack_take(TAKE_MESSAGES, within=TAKE_SECONDS):
            async with models.lock:
                models.pending.start()
                try:
                    await learn_events(events)
                finally:
                    await models.finished(manual, events)

    async def learn_events(events: list[Any]) -> None:
        msgs: list[Any] = []
        for event in events:
            try:
                msgs += await models.in_order(event.message)
            except Exception as exc:  # noqa: BLE001 - an agent never crash-loops on data
                await processing_error(ctx, "model", ctx.topics.points, event.message, exc)
        for group in learn_groups(msgs):
            await learn(group)
            # let the event loop run between groups (a take of 64 messages of a first window at
            # 100,000 series is seconds of learning): the window processes' reports, /metrics,
            # the API and the timers are served meanwhile
            await asyncio.sleep(0)

    async def learn(msgs: list[Any]) -> None:
        try:
            await models.model_messages(msgs)
        except Exception as exc:  # noqa: BLE001 - an agent never crash-loops on data
            if len(msgs) > 1:  # each on its own (what the group learnt is not learnt again)
                for msg in msgs:
                    await learn([msg])
                return
            await processing_error(ctx, "model", ctx.topics.points, msgs[0], exc)

    @ctx.app.timer(interval=CATCH_UP_SECONDS)
    async def catch_up_stalled_partitions() -> None:
        try:
            await models.catch_up_stalled(learn)
        except Exception:  # noqa: BLE001 - a timer never dies (it looks again)
            log.exception("model: catching up stalled points partitions failed")

    @ctx.app.timer(interval=CHECKPOINT_IDLE_SECONDS / 2)
    async def write_checkpoints_when_idle() -> None:
        if models.pending.idle(time.monotonic()):
            await asyncio.shield(models.write_soon())

    @ctx.app.on_partitions_revoked.connect
    async def _revoked(app_: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        models.revoked()

    return models


def install_history(ctx: WorkerContext, models: Models) -> None:
    """The history agent on ``history`` (streams.history): backfilled windows learnt in
    event time, its own path, with the model agent's models (checked out of their banks)."""
    learner = HistoryLearner(ctx.step, models.history_model, ctx.store, models.save_history,
                             models.restore_view, HistoryMetrics(ctx.metrics.registry), models.current_model)
    topics = ctx.topics

    @ctx.app.agent(ctx.raw_topic(topics.history), name="history-agent")
    async def history_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                try:
                    receipts, dead = learner.learn_message(msg.value or b"", msg.partition, msg.offset)
                finally:
                    models.checkin_all()  # what was learnt before a failure stays learnt
                    await models.write_history(msg.partition)
                if dead is not None:
                    await dead_letter(ctx, topics.history, msg, dead)
                for r in receipts:
                    await ctx.out[topics.history_learnt].send(key=r.series.encode(),
                                                              value=records.dumps(r.to_json()))
            except Exception as exc:  # noqa: BLE001 - an agent never crash-loops on data
                await processing_error(ctx, "history", topics.history, msg, exc)


def _load(bank: SeriesBank, raw: bool, rows: list[int], models: list[Any]) -> None:
    """Load restored checkpoints into ``rows`` of ``bank``: raw row records
    (:class:`~streams.checkpoint.RowCheckpoint`) if ``raw``, else ``SeriesModel`` objects."""
    if raw:
        bank.load_row_bytes(rows, [m.state for m in models])
    else:
        bank.load_many(rows, models)
