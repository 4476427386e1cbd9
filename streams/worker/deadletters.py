"""Dead letters: bad input goes to ``<topic>.dlq`` with a reason and is counted.

One record per message, carrying only its bad elements. A record whose
processing raises anyway goes there as ``processing_error``; no agent ever
stops on data.
"""

from __future__ import annotations

import logging
from typing import Any

from streams import records
from streams.records import DeadLetter, InvalidRecord
from streams.topics import Topics
from streams.worker.context import InputContext

log = logging.getLogger("foresight.worker")


async def dead_letter(ctx: InputContext, topic: str, msg: Any, d: DeadLetter) -> None:
    """Send one message's dead letter (all of its bad elements) and count it."""
    metrics = ctx.metrics
    metrics.dead_letters.labels(topic, d.reason).inc()
    for reason, n in d.reasons.items():
        metrics.dead_letter_elements.labels(topic, reason).inc(n)
    if "late" in d.reasons:
        metrics.late_events.inc(d.reasons["late"])
    body = records.dead_letter_of(d, topic, msg.partition, msg.offset, len(msg.value or b""))
    await ctx.out[Topics.dlq(topic)].send(key=msg.key, value=records.dumps(body))


async def rejected(ctx: InputContext, topic: str, msg: Any, exc: InvalidRecord) -> None:
    """A whole message refused (``exc.reason``): its one dead letter."""
    d = DeadLetter()
    d.add_whole(exc.reason, exc.error, exc.raw or msg.value or b"")
    await dead_letter(ctx, topic, msg, d)


async def processing_error(ctx: InputContext, agent: str, topic: str, msg: Any, exc: Exception) -> None:
    """A record whose processing raised: DLQ it as ``processing_error``, go on."""
    ctx.metrics.processing_errors.labels(agent).inc()
    log.warning("%s: %s[%d]@%d raised %s: %s (dead-lettered)", agent, msg.topic, msg.partition,
                msg.offset, type(exc).__name__, exc)
    d = DeadLetter()
    d.add_whole("processing_error", f"{type(exc).__name__}: {exc}", msg.value or b"")
    try:
        await dead_letter(ctx, topic, msg, d)
    except Exception:  # noqa: BLE001 - the DLQ itself failing must not stop the agent
        log.exception("%s: could not dead-letter %s[%d]@%d", agent, msg.topic, msg.partition,
                      msg.offset)
