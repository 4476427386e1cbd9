"""The decisions agent: ``decisions`` -> the targets' replica history and decision log.

The read model (``targets`` table) behind the API, dashboard and metrics; a
target's snapshot is written on every logged decision and every tenth one.
"""

from __future__ import annotations

from typing import Any

import faust

from streams import records
from streams.records import InvalidRecord
from streams.worker.changelog import Put
from streams.worker.context import WorkerContext
from streams.worker.deadletters import processing_error, rejected


async def decision_message(ctx: WorkerContext, msg: Any) -> None:
    topics, store, targets = ctx.topics, ctx.store, ctx.tables.targets
    try:
        d = records.parse_decision(msg.value or b"")
    except ValueError as exc:  # one dead letter, counted; the agent goes on
        ctx.metrics.bad_decisions.inc()
        await rejected(ctx, topics.decisions, msg, InvalidRecord("bad_value", str(exc), msg.value or b""))
        return
    key = d["target"].encode()
    if d["target"] not in store.targets and key in targets:
        store.restore_target(d["target"], targets[key])  # a bad snapshot is skipped and counted
    target, logged = store.on_decision(d)
    if logged or target.decisions % 10 == 0:
        await ctx.changelog.write(ctx.app.producer, [Put(targets, msg.partition, key, store.snapshot_target(target))])


def install(ctx: WorkerContext) -> None:
    """The decisions agent on ``decisions``."""
    topics = ctx.topics

    @ctx.app.agent(ctx.raw_topic(topics.decisions), name="decisions-agent")
    async def decisions_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                await decision_message(ctx, event.message)
            except Exception as exc:  # noqa: BLE001 - an agent never crash-loops on data
                await processing_error(ctx, "decisions", topics.decisions, event.message, exc)
