"""The worker's entry points: :func:`create_app` and :func:`run_worker`.

The wiring lives in :mod:`streams.worker`, one module per part:

- window agent (:mod:`streams.worker.windows`): ``events`` + ``metrics`` ->
  event-time windows -> ``points``. Acknowledgements are tracked there, not left
  to Faust's gap logic: per input partition, messages are acknowledged strictly
  in offset order and only below the lowest offset that still feeds an open
  window, so the committed offset never passes accepted data (a dead-lettered
  or empty message waits its turn). After a crash or a rebalance the open
  windows are rebuilt by re-reading the input: nothing accepted is lost, and no
  per-message state write is needed. Idle live partitions close their windows
  on the wall clock (a timer);
- model agent (:mod:`streams.worker.models`): ``points`` -> per-series
  :class:`~detectors.series.SeriesModel` -> ``forecasts`` and ``anomalies``
  (models checkpointed, signed, to the ``models`` table every N updates);
- decisions agent (:mod:`streams.worker.decisions`): ``decisions`` -> the
  targets' replica history and decision log (``targets`` table) for the API,
  dashboard and metrics.

The web API and dashboard (:mod:`streams.web`) serve a bounded recent
history per series, fed by the model agent and snapshotted to the
``series_view`` table at each model checkpoint.

Bad input goes to ``<topic>.dlq`` with a reason and is counted
(:mod:`streams.worker.deadletters`): one record per message, carrying only its
bad elements. A record whose processing raises anyway goes there as
``processing_error``; no agent ever stops on data.
"""

from __future__ import annotations

import faust

from streams.metrics import Metrics
from streams.settings import Settings
from streams.topics import Topics
from streams.web.cluster import advertised_host
from streams.worker import build_worker
from streams.worker.context import Cached, WorkerState, horizon_steps
from streams.worker.windows import REWIND_RETRY_SECONDS

__all__ = ["REWIND_RETRY_SECONDS", "Cached", "WorkerState", "create_app", "horizon_steps", "run_worker"]


def create_app(settings: Settings, metrics: Metrics | None = None) -> faust.App:
    """A worker's Faust app: agents, timers, tables and pages (see :mod:`streams.worker`)."""
    return build_worker(settings, metrics).app


def run_worker(settings: Settings) -> None:
    """Run a Faust worker in the foreground until SIGINT/SIGTERM, or until its broker is lost.

    Exits with :data:`streams.lifecycle.BROKER_LOST_EXIT_CODE` if the topics
    vanished or the cluster changed (see :class:`streams.lifecycle.BrokerWatch`).
    """
    import sys

    from streams import lifecycle
    from streams.admin import ensure_topics, with_replication

    topics = Topics.from_settings(settings)
    settings = with_replication(settings, ensure_topics(settings, topics.all(), settings.partitions))
    ctx = build_worker(settings)
    app = ctx.app
    watch = lifecycle.BrokerWatch(
        settings, topics.all(), internal_prefix=f"{settings.app_id}-",
        on_lost=lambda why: lifecycle.request_exit(lifecycle.BROKER_LOST_EXIT_CODE, why),
        errors=ctx.metrics.broker_errors,
    ).start()
    argv = ["foresight-worker", "worker", "-l", _faust_level(settings.log_level)]
    if settings.web_enabled:
        argv += ["--web-host", advertised_host(settings), "--web-port", str(settings.web_port),
                 "--web-bind", settings.web_host]
    else:
        argv += ["--without-web"]
    sys.argv = argv
    try:
        app.main()
    finally:
        watch.stop()
        for stop in ctx.on_exit:  # the window process (streams/worker/window_process.py)
            stop()
        if lifecycle.exit_code() is not None:
            raise SystemExit(lifecycle.exit_code())


def _faust_level(level: str) -> str:
    return {"warning": "warn", "critical": "crit"}.get(level.lower(), level.lower())
