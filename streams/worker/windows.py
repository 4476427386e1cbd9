"""The window agent: ``events`` + ``metrics`` -> event-time windows -> ``points``.

Acknowledgements are tracked here, not left to Faust's gap logic: per input
partition, messages are acknowledged strictly in offset order and only below
the lowest offset that still feeds an open window, so the committed offset
never passes accepted data (a dead-lettered or empty message waits its turn).
After a crash or a rebalance the open windows are rebuilt by re-reading the
input: nothing accepted is lost, and no per-message state write is needed.
Idle live partitions close their windows on the wall clock (a timer), which
also re-seeks a re-read that no message answers and re-reads records fetched
but never delivered (:func:`undelivered`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import faust

from streams import records
from streams.lifecycle import delivered
from streams.ratelog import RateLimitedLog
from streams.records import InvalidRecord, Point
from streams.web.cluster import partition_for
from streams.windowing import Windower
from streams.worker.context import Source, WorkerContext
from streams.worker.deadletters import dead_letter, processing_error

log = logging.getLogger("foresight.worker")
#: a re-read partition that has not come back to its offset this long after the seek is
#: sought again (a seek during recovery or a rebalance can be overridden)
REWIND_RETRY_SECONDS = 1.0
#: an input partition with no delivery this long is checked for records fetched but never delivered
UNDELIVERED_AFTER_SECONDS = 2.0


def undelivered(expected: int, end: int | None, handed: int | None) -> bool:
    """Whether a partition has records the agent never saw and never will unless sought.

    ``expected`` is the offset the agent needs next, ``end`` the partition's end offset
    and ``handed`` the last offset the consumer handed to the stream (None: none yet).
    Records exist at ``expected`` (``end > expected``) yet none from there on was handed
    over: they were fetched and dropped. (A record handed over but not yet processed is
    queued, and not re-read.)

    >>> undelivered(0, 100, None)       # fetched during recovery, dropped: re-read
    True
    >>> undelivered(40, 100, 60)        # queued for the agent: wait
    False
    >>> undelivered(100, 100, 99)       # at the end: nothing to read
    False
    >>> undelivered(40, None, None)     # end unknown: no guess
    False
    """
    if end is None or end <= expected:
        return False
    return handed is None or handed < expected


class Windows:
    """The window agent's state beyond :class:`~streams.worker.context.WorkerState` and its steps."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        metrics = ctx.metrics
        # label children bound once, not looked up per message
        self.messages_in = {k: metrics.messages_in.labels(k) for k in ("events", "metrics")}
        self.events_in = {k: metrics.events_in.labels(k) for k in ("events", "metrics")}
        self.limit_log = RateLimitedLog(log, interval=60.0)
        #: partitions being re-read: (topic-partition, when the seek was issued)
        self.rewinding: dict[Source, tuple[Any, float]] = {}
        self.gaps_seen: set[tuple[Source, int, int]] = set()
        #: input partitions seen with undelivered records: (offset expected, when first seen)
        self.suspects: dict[Source, tuple[int, float]] = {}
        self.idle_after = max(1.0, ctx.step)

    def over_limit(self, series: str) -> str:
        """The error text of a series refused by the limit (logged at most once a minute)."""
        budget = self.ctx.budget
        self.limit_log.log(logging.WARNING, "series_limit", "series limit: %d series held (limit %d, "
                           "FORESIGHT_MAX_SERIES); new series such as %r are dead-lettered as series_limit",
                           len(budget), budget.limit, series[:100])
        return f"this worker holds {budget.limit} series (FORESIGHT_MAX_SERIES); {series[:100]!r} is new"

    def windower_for(self, topic: str, partition: int) -> Windower:
        # one per input topic and partition: the events and metrics topics
        # have their own event-time watermarks (a backlog on one must not make
        # the other's on-time data late)
        state, settings = self.ctx.state, self.ctx.settings
        w = state.windowers.get((topic, partition))
        if w is None:
            w = state.windowers[(topic, partition)] = Windower(
                self.ctx.step, settings.allowed_lateness_windows, settings.max_future_seconds)
        return w

    async def publish_closed(self, source: Source, w: Windower) -> None:
        """Send the points of closed windows, then acknowledge, in offset order,
        every message below the lowest offset an open window still needs."""
        ctx = self.ctx
        # one message per points partition (the partition of each series' id) per flush
        by_partition: dict[int, list[Point]] = {}
        for point in w.close_ready():
            by_partition.setdefault(partition_for(point.series, ctx.settings.partitions), []).append(point)
            ctx.store.note_kind(point.series, w.kinds.get(point.series, "events"))
        for partition, pts in by_partition.items():
            for n, body in records.points_batches(pts):
                await ctx.out[ctx.topics.points].send(key=None, value=body, partition=partition,
                                                      callback=delivered(ctx.metrics.points_out, n))  # when acknowledged
        pending = ctx.state.unacked.get(source)
        stream = ctx.state.input_stream
        if not pending or stream is None:
            return
        low = w.min_needed()
        while pending and (low is None or pending[0].message.offset < low):
            await stream.ack(pending.popleft())

    async def in_sequence(self, source: Source, msg: Any) -> bool:
        """Whether ``msg`` continues its partition without a gap.

        Offsets of an input partition are consecutive. A gap means a message
        never reached this agent (Faust drops messages fetched before a
        rebalance or recovery that it does not re-deliver), so the open
        windows are incomplete: they are dropped and the partition is re-read
        from its lowest unacknowledged offset. Messages before that offset
        arrives are stale and skipped (they come again). A message below the
        expected offset was delivered again: it is already in the windows, and
        is skipped."""
        state = self.ctx.state
        expected = state.next_offset.get(source)
        if expected is None:
            log.info("%s[%d]: reading from offset %d", *source, msg.offset)
        if expected is None or msg.offset == expected:
            state.next_offset[source] = msg.offset + 1
            return True
        if source in self.rewinding and msg.offset != expected:
            await self.reseek_if_stuck(source)
            return False  # stale, buffered before the seek: it comes again
        if msg.offset < expected:
            # delivered again (a re-read raced a fetch in flight, or the consumer went
            # back on its own): it is already in this partition's windows, skip it
            return False
        gap = (source, expected, msg.offset)
        if msg.offset > expected and gap in self.gaps_seen:
            # the same gap after a re-read: offsets without records (e.g.
            # transaction markers), not a lost message
            state.next_offset[source] = msg.offset + 1
            return True
        if len(self.gaps_seen) > 10_000:
            self.gaps_seen.clear()
        self.gaps_seen.add(gap)
        pending = state.unacked.pop(source, None)
        state.windowers.pop(source, None)
        start = pending[0].message.offset if pending else expected
        log.warning("%s[%d]: offsets %d..%d never arrived: re-reading from %d",
                    *source, expected, msg.offset - 1, start)
        state.next_offset[source] = start
        self.rewinding[source] = (msg.tp, time.monotonic())
        await self.ctx.app.consumer.seek(msg.tp, start)
        return False

    async def reseek_if_stuck(self, source: Source) -> None:
        """A seek issued while the consumer repositions itself (recovery, rebalance) can be
        overridden: if the partition has not come back to its offset within a second, seek
        again, so a partition never waits forever for a message that does not come."""
        tp, since = self.rewinding[source]
        if time.monotonic() - since < REWIND_RETRY_SECONDS:
            return
        start = self.ctx.state.next_offset[source]
        log.warning("%s[%d]: still waiting for offset %d after a re-read: seeking again", *source, start)
        self.rewinding[source] = (tp, time.monotonic())
        await self.ctx.app.consumer.seek(tp, start)

    async def fetch_undelivered(self) -> None:
        """Re-read a partition whose records were fetched but never handed to the agent.

        Faust drops the records of a fetch that completes while the flow is stopped
        (recovery, a rebalance) and relies on its seek to the committed offset to fetch
        them again, but that seek leaves a partition with no committed offset where the
        dropped fetch left it. The gap check in :meth:`in_sequence` notices the loss at the
        next message; this notices it when no next message comes (the end of a backlog):
        a partition idle for :data:`UNDELIVERED_AFTER_SECONDS` with records at or after the
        offset the agent expects, none of which reached the stream, and still so at a check
        :data:`UNDELIVERED_AFTER_SECONDS` later (a fetch in flight is not a lost one), is
        sought back to it.
        """
        ctx, state, suspects = self.ctx, self.ctx.state, self.suspects
        consumer = ctx.app.consumer
        now_m = time.monotonic()
        idle = []
        for tp in consumer.assignment():
            source = (tp.topic, tp.partition)
            if not ctx.is_input(tp.topic) or source in self.rewinding:
                continue
            if now_m - state.last_input.get(source, now_m) >= UNDELIVERED_AFTER_SECONDS:
                idle.append(tp)
        if not idle:
            return
        ends = await consumer.highwaters(*idle)
        committed = getattr(consumer, "_committed_offset", {})
        handed = getattr(consumer, "_read_offset", {})
        for tp in idle:
            source = (tp.topic, tp.partition)
            expected = state.next_offset.get(source)
            if expected is None:
                expected = committed.get(tp)
            if expected is None:
                expected = (await consumer.earliest_offsets(tp)).get(tp) or 0
            if not undelivered(expected, ends.get(tp), handed.get(tp)):
                suspects.pop(source, None)
                continue
            seen = suspects.get(source)
            if seen is None or seen[0] != expected:
                suspects[source] = (expected, now_m)
                continue
            if now_m - seen[1] < UNDELIVERED_AFTER_SECONDS:
                continue
            suspects.pop(source, None)
            log.warning("%s[%d]: offsets %d..%d were fetched but never delivered: re-reading from %d",
                        *source, expected, ends[tp] - 1, expected)
            ctx.metrics.input_rereads.inc()
            state.last_input[source] = now_m
            await consumer.seek(tp, expected)

    async def window_message(self, event: Any) -> None:
        ctx, state = self.ctx, self.ctx.state
        msg = event.message
        topic = msg.topic
        source = (topic, msg.partition)
        if not await self.in_sequence(source, msg):
            return
        self.rewinding.pop(source, None)
        # queued first: whatever happens below, it is acknowledged in its turn
        state.unacked.setdefault(source, deque()).append(event)
        state.last_input[source] = now_m = time.monotonic()
        kind = "events" if topic == ctx.topics.events else "metrics"
        self.messages_in[kind].inc()
        w = self.windower_for(topic, msg.partition)
        parsed = records.parse_input(msg.value or b"")
        accepted = 0
        for k, item in enumerate(parsed.items):
            if not ctx.budget.admit(item.series, now_m):
                parsed.reject(k, "series_limit", self.over_limit(item.series))
                continue
            try:
                w.add(item, kind, msg.offset)
            except InvalidRecord as exc:
                parsed.reject(k, exc.reason, exc.error)
                continue
            except Exception as exc:  # noqa: BLE001 - one element never stops the stream
                ctx.metrics.processing_errors.labels("window").inc()
                parsed.reject(k, "processing_error", f"{type(exc).__name__}: {exc}")
                continue
            accepted += item.count
        self.events_in[kind].inc(accepted)
        if parsed.dead is not None:
            await dead_letter(ctx, topic, msg, parsed.dead)
        await self.publish_closed(source, w)

    async def run(self, stream: faust.StreamT) -> None:
        """The agent's loop: one message at a time under the window lock, acknowledged in its turn."""
        ctx, state = self.ctx, self.ctx.state
        manual = state.input_stream = stream.noack()
        async for event in manual.events():
            try:
                async with ctx.window_lock:
                    await self.window_message(event)
            except Exception as exc:  # noqa: BLE001 - an agent never crash-loops on data
                await processing_error(ctx, "window", event.message.topic, event.message, exc)
                queue = state.unacked.setdefault((event.message.topic, event.message.partition), deque())
                if not queue or queue[-1] is not event:
                    queue.append(event)  # acknowledged in its turn, never a hole in the commits

    async def close_idle_partitions(self) -> None:
        """Live partitions with no input for a window close on the wall clock (and a
        re-read that no message answers is sought again)."""
        ctx, state = self.ctx, self.ctx.state
        for source in list(self.rewinding):
            try:
                await self.reseek_if_stuck(source)
            except Exception:  # noqa: BLE001 - a timer never dies on one partition
                log.exception("seeking %s[%d] again failed", *source)
        try:
            await self.fetch_undelivered()
        except Exception:  # noqa: BLE001 - a timer never dies on a broker hiccup
            log.exception("checking for undelivered input failed")
        now_m, now = time.monotonic(), time.time()
        for source, w in list(state.windowers.items()):
            if now_m - state.last_input.get(source, now_m) < self.idle_after:
                continue
            try:
                async with ctx.window_lock:
                    if state.windowers.get(source) is w:
                        w.tick(now)
                        await self.publish_closed(source, w)
            except Exception:  # noqa: BLE001 - a timer never dies on one partition
                log.exception("closing idle windows of %s[%d] failed", *source)


def install(ctx: WorkerContext) -> Windows:
    """The window agent on the input topics and its wall-clock timer."""
    app, topics, windows = ctx.app, ctx.topics, Windows(ctx)
    inputs = app.topic(topics.events, topics.metrics, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")

    @app.agent(inputs, name="window-agent")
    async def window_agent(stream: faust.StreamT) -> None:
        await windows.run(stream)

    @app.timer(interval=max(0.5, min(5.0, ctx.step / 4)))
    async def close_idle_partitions() -> None:
        await windows.close_idle_partitions()

    return windows
