"""What a rebalance does to a worker's in-memory state.

Open windows are not checkpointed: the messages behind them are not
acknowledged until their windows close, so whoever owns an input partition
next re-reads them from the last committed offset and rebuilds them. Models
(rows of the model banks) are dropped and reloaded from the (changelog-backed)
``models`` table on demand; the read model keeps what this worker still owns.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from streams.web.cluster import partition_for
from streams.worker.context import WorkerContext

log = logging.getLogger("foresight.worker")


def install(ctx: WorkerContext) -> None:
    """Connect the worker's handlers of partitions revoked and assigned."""
    app, state, topics, settings = ctx.app, ctx.state, ctx.topics, ctx.settings

    @app.on_partitions_revoked.connect
    async def _revoked(app_: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        # Open windows are not checkpointed: the messages behind them are not
        # acknowledged until their windows close, so whoever owns the partition
        # next re-reads them from the last committed offset and rebuilds them.
        for tp in revoked:
            if ctx.is_input(tp.topic):
                state.drop_input((tp.topic, tp.partition))
        # models are restored from the (changelog-backed) table on demand, into new bank rows;
        # updates since a series' last checkpoint are not written here (a rebalance must be
        # quick): at most checkpoint_every - 1 windows per series are not in its restored model
        # (draining a backlog, those of the last models.CHECKPOINT_MIN_SECONDS at most); checkpoints
        # due and not written yet are dropped (Models.revoked): the points messages that made them
        # due were not acknowledged, so the partitions' next owners learn them again
        state.drop_models()

    @app.on_partitions_assigned.connect
    async def _assigned(app_: faust.App, assigned: set[Any], **kwargs: Any) -> None:
        # The read model drops what moved to another worker (whose view is
        # restored there from the series_view / targets tables) and keeps
        # the rest: every rebalance revokes everything first.
        # Input partitions start afresh from their committed offset: drop any
        # window state built from messages that were still in flight while
        # they were revoked (re-reading them into it would count them twice,
        # or find their windows closed and call them late).
        for tp in assigned:
            if ctx.is_input(tp.topic):
                state.drop_input((tp.topic, tp.partition))
        points_p = {tp.partition for tp in assigned if tp.topic == topics.points}
        decisions_p = {tp.partition for tp in assigned if tp.topic == topics.decisions}
        n = settings.partitions
        ctx.budget.retain(lambda s: partition_for(s, n) in points_p)
        ctx.store.forget(lambda s: partition_for(s, n) in points_p,
                         lambda t: partition_for(t, n) in decisions_p)
