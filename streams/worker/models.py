"""The model agent and the history agent: closed windows -> per-series models.

- model agent: ``points`` -> per-series :class:`~detectors.series.SeriesModel`
  -> ``forecasts`` and ``anomalies`` (models checkpointed, signed, to the
  ``models`` table every N updates, the series' view to ``series_view``);
- history agent: ``history`` -> backfilled windows learnt in event time
  (:mod:`streams.history`), receipts to ``history.learnt``.

Each series is modelled at its natural step (:mod:`streams.steps`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from detectors.defaults import make_series_model
from detectors.series import SeriesModel
from scaler.inputs import inputs_from_update
from streams import records
from streams.checkpoint import UntrustedCheckpoint
from streams.history import HistoryLearner, HistoryMetrics
from streams.lifecycle import delivered
from streams.records import Point
from streams.steps import StepEstimator, model_shape
from streams.web.readmodel import Anomaly
from streams.worker.context import Cached, WorkerContext, horizon_steps
from streams.worker.deadletters import dead_letter, processing_error

log = logging.getLogger("foresight.worker")


class Models:
    """The cache of per-series models over the ``models`` table, and what updates them."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.horizon = horizon_steps(ctx.settings)
        self.period = ctx.settings.period_steps or None
        self.anomalies_delivered = delivered(ctx.metrics.anomalies_out)

    def model_for(self, series: str) -> Cached:
        ctx = self.ctx
        cached = ctx.state.models.get(series)
        if cached is None:
            blob = ctx.tables.models.get(series.encode())
            model = None
            if blob:
                try:
                    model = ctx.checkpointer.loads(blob)
                    ctx.metrics.restored_checkpoints.inc()
                except UntrustedCheckpoint as exc:
                    ctx.metrics.untrusted_checkpoints.inc()
                    log.warning("series %s: refusing model checkpoint (%s); starting cold", series, exc)
                except Exception as exc:  # noqa: BLE001 - signed but unloadable (an older version): cold
                    ctx.metrics.untrusted_state.labels("models").inc()
                    log.warning("series %s: unloadable model checkpoint (%s: %s); starting cold",
                                series, type(exc).__name__, exc)
            if model is None:
                model = make_series_model(ctx.step, self.period, self.horizon, ctx.settings.anomaly_threshold)
            cached = ctx.state.models[series] = Cached(model, getattr(model.forecaster, "step_seconds", ctx.step))
        return cached

    def at_own_step(self, series: str, cached: Cached, t: float, value: float) -> Cached:
        """The series' model at its natural step (streams/steps.py): when the estimate of the
        step changes, a model at the new step learns the kept points again and takes over."""
        ctx = self.ctx
        est = ctx.state.steps.get(series)
        if est is None:  # a restored model keeps its step unless the recent intervals disagree
            est = ctx.state.steps[series] = StepEstimator(ctx.step, step=cached.step if cached.model.updates else None)
        new_step = est.observe(t, value)
        if new_step is None or new_step == cached.step:
            return cached
        p, h = model_shape(ctx.settings, new_step)
        model = make_series_model(new_step, p, h, ctx.settings.anomaly_threshold)
        for ts, v in est.replay()[:-1]:
            model.update(v, ts)
        log.info("series %s: a point every %gs: modelled at that step from now on (was %gs)",
                 series, new_step, cached.step)
        cached = ctx.state.models[series] = Cached(model, new_step)
        return cached

    def learner_model(self, series: str, t: float, value: float) -> Cached:
        """The model that learns ``series``' window at ``t`` (live or from history)."""
        return self.at_own_step(series, self.model_for(series), t, value)

    def restore_view(self, series: str) -> None:
        """Restore a series' view from its ``series_view`` record, if it has one."""
        raw = self.ctx.tables.series_view.get(series.encode())
        if raw:
            self.ctx.store.restore_series(series, raw)  # a forged or unreadable snapshot is skipped and counted

    async def model_message(self, msg: Any) -> None:
        """A points message (one point or a batch): every point updates its series' models, the
        forecasts go out as one message (batches) on the same partition; a point whose processing
        raises goes, with any unreadable one, into the message's one dead letter."""
        ctx = self.ctx
        parsed = records.parse_points(msg.value or b"")
        forecasts: list[bytes] = []
        for k, point in enumerate(parsed.items):
            try:
                forecasts.append(await self.model_point(point))
            except Exception as exc:  # noqa: BLE001 - one point never stops the others
                ctx.metrics.processing_errors.labels("model").inc()
                log.warning("model: %s in %s[%d]@%d raised %s: %s (dead-lettered)", point.series[:100],
                            msg.topic, msg.partition, msg.offset, type(exc).__name__, exc)
                parsed.reject(k, "processing_error", f"{type(exc).__name__}: {exc}")
        for n, body in records.batches(forecasts):
            await ctx.out[ctx.topics.forecasts].send(key=None, value=body, partition=msg.partition,
                                                     callback=delivered(ctx.metrics.forecasts_out, n))
        if parsed.dead is not None:
            await dead_letter(ctx, ctx.topics.points, msg, parsed.dead)

    async def model_point(self, point: Point) -> bytes:
        """Update one series' models with one closed window; its forecast message element."""
        ctx, metrics, store, tables = self.ctx, self.ctx.metrics, self.ctx.store, self.ctx.tables
        cached = self.learner_model(point.series, point.start, point.value)
        t0 = time.perf_counter()
        u = cached.model.update(point.value, point.start)
        metrics.model_update_seconds.observe(time.perf_counter() - t0)
        fc, obs, _ = inputs_from_update(cached.model, point.series, point.start, cached.step,
                                        point.value, u)
        key = point.series.encode()
        anomaly = None
        if u.drift_started:
            metrics.drift_events.inc()
            log.info("series %s: forecast errors changed regime at %s (drift); acting "
                     "reactively until the model has adapted", point.series, point.start)
        if u.anomalous:
            anomaly = Anomaly(point.start, point.value, u.score, cached.model.threshold,
                              type(cached.model.detector).__name__)
            body = records.anomaly_to_json(point.series, *anomaly)
            await ctx.out[ctx.topics.anomalies].send(key=key, value=records.dumps(body),
                                                     callback=self.anomalies_delivered)
        if point.series not in store.series and key in tables.series_view:
            self.restore_view(point.series)
        view = store.on_window(point.series, point.start, point.value, fc, u.score, u.anomalous, anomaly)
        store.note_learnt(point.series, cached.model.updates)
        cached.since_checkpoint += 1
        if cached.since_checkpoint >= ctx.settings.checkpoint_every:
            tables.models[key] = ctx.checkpointer.dumps(cached.model)
            tables.series_view[key] = store.snapshot_series(view)
            cached.since_checkpoint = 0
            metrics.checkpoints.inc()
        return records.dumps(records.forecast_to_json(fc, obs.value, obs.anomalous, u.score))

    def save_history(self, series: str, model: SeriesModel, view: Any) -> None:
        """Checkpoint a series' model and view after a history message taught it."""
        ctx = self.ctx
        ctx.tables.models[series.encode()] = ctx.checkpointer.dumps(model)
        ctx.tables.series_view[series.encode()] = ctx.store.snapshot_series(view)
        ctx.metrics.checkpoints.inc()


def install(ctx: WorkerContext) -> Models:
    """The model agent on ``points``."""
    models = Models(ctx)

    @ctx.app.agent(ctx.raw_topic(ctx.topics.points), name="model-agent")
    async def model_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                await models.model_message(event.message)
            except Exception as exc:  # noqa: BLE001 - an agent never crash-loops on data
                await processing_error(ctx, "model", ctx.topics.points, event.message, exc)

    return models


def install_history(ctx: WorkerContext, models: Models) -> None:
    """The history agent on ``history`` (streams.history): backfilled windows learnt in
    event time, its own path, with the model agent's models."""
    learner = HistoryLearner(ctx.step, models.learner_model, ctx.store, models.save_history,
                             models.restore_view, HistoryMetrics(ctx.metrics.registry), models.model_for)
    topics = ctx.topics

    @ctx.app.agent(ctx.raw_topic(topics.history), name="history-agent")
    async def history_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                receipts, dead = learner.learn_message(msg.value or b"", msg.partition, msg.offset)
                if dead is not None:
                    await dead_letter(ctx, topics.history, msg, dead)
                for r in receipts:
                    await ctx.out[topics.history_learnt].send(key=r.series.encode(),
                                                              value=records.dumps(r.to_json()))
            except Exception as exc:  # noqa: BLE001 - an agent never crash-loops on data
                await processing_error(ctx, "history", topics.history, msg, exc)
