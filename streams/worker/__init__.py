"""The worker's wiring: the Faust app, its agents, timers and pages, one module each.

- :mod:`~streams.worker.context`: the :class:`~streams.worker.context.WorkerContext`
  every agent and timer shares (settings, topics, tables, read model, series
  budget, checkpointer, in-memory state, the window lock);
- :mod:`~streams.worker.windows`: the window agent (``events`` + ``metrics`` ->
  ``points``, read in batches by its own consumer, offsets committed only below
  open windows) and its wall-clock timer;
- :mod:`~streams.worker.window_process`: the same window agent in a process of
  its own (``FORESIGHT_WINDOW_PROCESS``), started and watched by the worker;
- :mod:`~streams.worker.rebalance`: partitions revoked and assigned;
- :mod:`~streams.worker.kafka_signals`: the leader's kafkaTopic signal sampler;
- :mod:`~streams.worker.models`: the model agent (``points`` -> ``forecasts`` and
  ``anomalies``) and the history agent;
- :mod:`~streams.worker.eviction`: idle series leave memory;
- :mod:`~streams.worker.decisions`: the decisions agent (the targets' read model);
- :mod:`~streams.worker.deadletters`: bad input to ``<topic>.dlq``, counted.

The web API and dashboard are :mod:`streams.web`'s.
"""

from __future__ import annotations

from typing import Any

from streams.metrics import Metrics
from streams.settings import Settings
from streams.web.routes import register
from streams.worker import (
    decisions,
    eviction,
    kafka_signals,
    models,
    rebalance,
    window_process,
    windows,
)
from streams.worker.context import WorkerContext, build, consumer_lag, faust_app


def build_worker(settings: Settings, metrics: Metrics | None = None) -> WorkerContext:
    """A worker's Faust app with everything installed on it, and the context they share."""
    metrics = metrics or Metrics()
    app = faust_app(settings)
    ctx = build(app, settings, metrics)
    topics = ctx.topics
    rebalance.install(ctx)
    faust_lag = consumer_lag(app, [topics.points, topics.decisions])
    if settings.window_process:
        # the window agent in a process of its own (streams/worker/window_process.py)
        link = window_process.install(ctx)
        metrics.watch_consumer_lag(lambda: {**faust_lag(), **link.lag})
        metrics.series_held.set_function(lambda: link.held)
        kafka_signals.install(ctx, lambda: link.typical)
        eviction.install(ctx, None, link.take_evictions)
    else:
        # the input topics are read by the window agent's own consumer (streams/worker/windows.py)
        window_agent = windows.install(ctx)
        metrics.watch_consumer_lag(lambda: {**faust_lag(), **window_agent.input_lag()})
        state = ctx.state
        kafka_signals.install(ctx, lambda: max((w.typical for w in state.windowers.values()), default=None))
        eviction.install(ctx, window_agent)
    model_agent = models.install(ctx)
    decisions.install(ctx)
    models.install_history(ctx, model_agent)
    register(app, settings, topics, ctx.store, ctx.tables.series_view, ctx.tables.targets)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return ctx
