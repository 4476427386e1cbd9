"""Bounded memory: series idle for ``FORESIGHT_SERIES_IDLE_SECONDS`` leave memory (a timer).

Which series may come in and which have gone idle is :mod:`streams.budget`'s
(pure); this is the worker's side: windows closed, models and views
checkpointed, then dropped (a model's bank row freed).
"""

from __future__ import annotations

import logging
import time

from streams.budget import EVICT_BATCH, put_on_partition
from streams.web.cluster import partition_for
from streams.worker.context import WorkerContext
from streams.worker.windows import Windows

log = logging.getLogger("foresight.worker")


def install(ctx: WorkerContext, windows: Windows) -> None:
    """The eviction timer."""
    settings, state, budget, store, metrics = ctx.settings, ctx.state, ctx.budget, ctx.store, ctx.metrics

    @ctx.app.timer(interval=max(0.5, min(30.0, settings.series_idle_seconds / 4 or 30.0)))
    async def evict_idle_series() -> None:
        """Series idle for FORESIGHT_SERIES_IDLE_SECONDS leave memory: their windows are closed
        (points published, input acknowledged) and their place is freed; then every model and
        view held for a series no longer tracked (those, and any brought back by a late point)
        is checkpointed to the tables first, so it comes back warm if the series does."""
        idle = budget.idle(time.monotonic())[:EVICT_BATCH]
        try:
            if idle:
                async with ctx.window_lock:
                    for source, w in list(state.windowers.items()):
                        if [s for s in idle if w.evict(s)]:
                            await windows.publish_closed(source, w)
                for series in idle:
                    budget.forget(series)
                metrics.series_evicted.inc(len(idle))
            held = [s for s in state.models if s not in budget and s not in budget.protected]
            held += [s for s in store.series if s not in budget and s not in budget.protected
                     and s not in state.models]
            for series in held[:EVICT_BATCH]:
                key, part = series.encode(), partition_for(series, settings.partitions)
                cached = state.models.pop(series, None)
                view = store.series.get(series)
                if cached is not None:
                    try:
                        if cached.since_checkpoint:
                            put_on_partition(ctx.tables.models, part, key,
                                             ctx.checkpointer.dumps(cached.export(), key))
                            metrics.checkpoints.inc()
                            if view is not None:
                                put_on_partition(ctx.tables.series_view, part, key, store.snapshot_series(view))
                    finally:
                        cached.release()  # its bank row is free for another series
                store.evict(series)
                state.steps.pop(series, None)
        except Exception:  # noqa: BLE001 - a timer never dies; what is held stays until next time
            log.exception("evicting idle series failed")
