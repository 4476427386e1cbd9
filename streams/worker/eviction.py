"""Bounded memory: series idle for ``FORESIGHT_SERIES_IDLE_SECONDS`` leave memory (a timer).

Which series may come in and which have gone idle is :mod:`streams.budget`'s
(pure); this is the worker's side: windows closed, models and views
checkpointed, then dropped (a model's bank row freed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from streams.budget import EVICT_BATCH
from streams.settings import Settings
from streams.web.cluster import partition_for
from streams.worker.changelog import Put
from streams.worker.context import InputContext, WorkerContext
from streams.worker.windows import Windows

log = logging.getLogger("foresight.worker")
#: seconds an evicted series' model and view are still dropped if a late point (one of the
#: windows its eviction closed, on its way through the points topic) brings them back
LATE_SECONDS = 120.0


def interval(settings: Settings) -> float:
    """Seconds between two runs of the eviction timer."""
    return max(0.5, min(30.0, settings.series_idle_seconds / 4 or 30.0))


async def evict_windows(ctx: InputContext, windows: Windows, now: float) -> list[str]:
    """The window agent's side of an eviction: the series idle at ``now`` (at most
    :data:`~streams.budget.EVICT_BATCH`) have their windows closed (points published, input
    acknowledged) and their place in the budget freed; returns them (their models and views
    are the model agent's to checkpoint and drop, and it counts them)."""
    budget = ctx.budget
    idle = budget.idle(now)[:EVICT_BATCH]
    if idle:
        async with ctx.window_lock:
            for source, w in list(ctx.state.windowers.items()):
                if [s for s in idle if w.evict(s)]:
                    await windows.publish_closed(source, w)
        for series in idle:
            budget.forget(series)
    return idle


def install(ctx: WorkerContext, windows: Windows | None,
            elsewhere: Callable[[], tuple[list[str], list[str]]] | None = None) -> None:
    """The eviction timer: idle series' windows (``windows``: the window agent in this process),
    then their models and views. With the window agent in a process of its own
    (streams/worker/window_process.py), ``elsewhere`` says which series it evicted and which
    of those it has admitted again since."""
    settings, state, budget, store, metrics = ctx.settings, ctx.state, ctx.budget, ctx.store, ctx.metrics
    #: series evicted by the window agent: their models and views are
    #: dropped, and again if a late point brings one back, until the series is admitted again or
    #: has stayed gone for LATE_SECONDS. Only those: a worker also models series
    #: whose input another worker windows (the points and input partitions are assigned apart),
    #: which were never in this worker's budget and are not idle.
    evicted: dict[str, float] = {}
    protected = budget.protected

    @ctx.app.timer(interval=interval(settings))
    async def evict_idle_series() -> None:
        """Series idle for FORESIGHT_SERIES_IDLE_SECONDS leave memory: their windows are closed
        (points published, input acknowledged) and their place is freed; then the model and
        view held for each (and for one a late point brought back since) is checkpointed to
        the tables first, so it comes back warm if the series does."""
        now = time.monotonic()
        try:
            back: list[str] = []
            if windows is not None:
                idle = await evict_windows(ctx, windows, now)
            else:
                idle, back = elsewhere() if elsewhere is not None else ([], [])
            for series in idle:
                evicted[series] = now
            metrics.series_evicted.inc(len(idle))
            for series in back:
                evicted.pop(series, None)
            for series, at in list(evicted.items()):
                if series in budget or series in protected or (
                        now - at > LATE_SECONDS and series not in state.models and series not in store.series):
                    del evicted[series]
            held = [s for s in evicted if s in state.models or s in store.series][:EVICT_BATCH]
            puts: list[Put] = []
            for series in held:
                drop(series, puts)
            await ctx.changelog.write(ctx.app.producer, puts)
        except Exception:  # noqa: BLE001 - a timer never dies; what is held stays until next time
            log.exception("evicting idle series failed")

    def drop(series: str, puts: list[Put]) -> None:
        """Checkpoint the series' model and view (if not saved since its last update: to
        ``puts``), then free them."""
        key, part = series.encode(), partition_for(series, settings.partitions)
        cached = state.models.pop(series, None)
        view = store.series.get(series)
        if cached is not None:
            try:
                if cached.since_checkpoint:
                    puts.append(Put(ctx.tables.models, part, key, ctx.checkpointer.dumps(cached.export(), key)))
                    metrics.checkpoints.inc()
                    if view is not None:
                        puts.append(Put(ctx.tables.series_view, part, key, store.snapshot_series(view)))
            finally:
                cached.release()  # its bank row is free for another series
        store.evict(series)
        state.steps.pop(series, None)
