"""The window agent: ``events`` + ``metrics`` -> event-time windows -> ``points``.

The input topics are read by a plain aiokafka consumer of their own group
(:func:`input_group`: ``<app id>-input``), not through Faust's per-message
delivery: one ``getmany`` returns up to :data:`FETCH_RECORDS` records and the
batch is parsed and windowed in one pass per partition, under the window lock
(issue 14: Faust's delivery cost more than the parsing and the windowing
together; see the README's Benchmarks).

Offsets are committed here, per input partition, only below the lowest offset
that still feeds an open window (and never past a message not yet processed),
after the producer has flushed the points and dead letters sent so far, so the
committed offset never passes accepted data (a dead-lettered or empty message
waits its turn). After a crash or a rebalance the next owner of a partition
re-reads it from the committed offset and rebuilds the open windows: nothing
accepted is lost, and no per-message state write is needed. Idle live
partitions close their windows on the wall clock (a timer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from streams import kafka_config, records
from streams.lifecycle import delivered
from streams.ratelog import RateLimitedLog
from streams.records import InvalidRecord, Point
from streams.settings import Settings
from streams.web.cluster import partition_for
from streams.windowing import Windower
from streams.worker.context import (
    BROKER_HEARTBEAT_INTERVAL,
    BROKER_REBALANCE_TIMEOUT,
    BROKER_SESSION_TIMEOUT,
    InputContext,
    Source,
    WorkerContext,
)
from streams.worker.deadletters import dead_letter, processing_error

log = logging.getLogger("foresight.worker")
#: most records one ``getmany`` of the input consumer returns (one batch of the window agent)
FETCH_RECORDS = 20_000
#: elements (and messages) the window agent handles before it lets the event loop run
YIELD_EVERY = 2_000
#: elements of columnar batches the window agent windows at once (one group-by) before it lets the
#: event loop run (a vectorised element costs about a tenth of a row's). The group-by pays once per
#: series of a batch (its open windows, bounds and time are dict lookups), so a batch should hold
#: each series of a partition several times: at 100,000 series a producer that aggregates every
#: second sends each of a partition's 25,000 series once a second, and a batch of 40,000 held each
#: once or twice. 150,000 (about what one fetch of INPUT_PARTITION_FETCH_BYTES holds, or two of a
#: broker that sends 5 MiB: Windows.more_of_a_backlog): about 0.3-0.45 s of the window process
#: before its event loop runs again, only while it reads a backlog (live, a fetch holds what came
#: since the last one)
COLUMNS_YIELD_EVERY = 150_000
#: bytes one fetch takes of an input partition at most: a row-format aggregate is ~85-100 bytes of
#: JSON, so 12 MB hold a batch of COLUMNS_YIELD_EVERY (4 MB held ~48,000). A broker may answer less:
#: the embedded one (Tansu) sends at most 5 MiB of a partition (~62,000 of them)
INPUT_PARTITION_FETCH_BYTES = 12 * 2**20
#: fetches the window agent windows as one batch at most while its partitions are behind
#: (:meth:`Windows.more_of_a_backlog`)
BACKLOG_FETCHES = 2
#: bytes of a partition after which a backlog's batch takes no more fetches
BACKLOG_BATCH_BYTES = 8 * 2**20
#: milliseconds the window agent waits for a backlog's next fetch at most
BACKLOG_WAIT_MS = 200
#: series whose points partition is remembered, at least (or twice the series tracked)
POINTS_PARTITIONS_CACHED = 100_000
#: an input row's event count
_COUNT = itemgetter(3)
#: seconds between offset commits of the input partitions (each flushes the producer first)
COMMIT_SECONDS = 1.0
#: an input partition sought back to an offset that has not come back to it this long after the
#: seek is sought again
REWIND_RETRY_SECONDS = 1.0


def input_group(settings: Settings) -> str:
    """The consumer group of the input topics (``events``, ``metrics``): the app id + ``-input``."""
    return f"{settings.app_id}-input"


class _Rebalance(ConsumerRebalanceListener):
    """The input consumer's rebalances: commit what is safe, then forget the partitions'
    windows (whoever owns a partition next re-reads it from the committed offset)."""

    def __init__(self, windows: Windows) -> None:
        self.windows = windows

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.windows.partitions_changed(set(revoked), commit=True)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.windows.partitions_changed(set(assigned), commit=False)
        names = sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned)
        log.info("input partitions assigned (group %s): %s", input_group(self.windows.ctx.settings),
                 ", ".join(names) or "none")


class Windows:
    """The window agent's state beyond :class:`~streams.worker.context.WorkerState` and its steps."""

    def __init__(self, ctx: InputContext) -> None:
        self.ctx = ctx
        metrics = ctx.metrics
        # label children bound once, not looked up per message
        self.messages_in = {k: metrics.messages_in.labels(k) for k in ("events", "metrics")}
        self.events_in = {k: metrics.events_in.labels(k) for k in ("events", "metrics")}
        self.busy = metrics.window_agent_seconds
        self.limit_log = RateLimitedLog(log, interval=60.0)
        #: partitions being re-read: (topic-partition, when the seek was issued)
        self.rewinding: dict[Source, tuple[Any, float]] = {}
        self.gaps_seen: set[tuple[Source, int, int]] = set()
        self.idle_after = max(1.0, ctx.step)
        #: called after each fetch is windowed and its points sent (the window process reports)
        self.after_fetch: Callable[[], None] | None = None
        #: the input consumer (None until the agent's task starts it)
        self.consumer: AIOKafkaConsumer | None = None
        #: bumped by every rebalance of the input consumer: a batch fetched before it is stale
        self.generation = 0
        #: per input partition: the offset last committed by this worker (or where it started
        #: reading): a re-read after a gap starts there
        self.committed: dict[Source, int] = {}
        #: per series: its points partition (murmur2 is pure Python); cleared when it outgrows
        #: the series tracked
        self.points_partition: dict[str, int] = {}
        self._last_commit = 0.0

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
        """Send the points of the closed windows of ``source`` (:meth:`publish_points`)."""
        await self.publish_points([w])

    async def publish_points(self, windowers: Iterable[Windower]) -> None:
        """Send the points of the closed windows of ``windowers`` (e.g. every input partition of
        a fetch): one message per points partition (the partition of each series' id), so the
        model agent updates many series at once. Their input offsets are committed by
        :meth:`commit`, below the lowest offset an open window still needs."""
        ctx = self.ctx
        by_partition: dict[int, list[Point]] = {}
        n_parts, note = ctx.settings.partitions, ctx.store.note_kind
        cache = self.points_partition
        if len(cache) > max(POINTS_PARTITIONS_CACHED, 2 * len(ctx.budget)):
            cache.clear()
        for w in windowers:
            kinds = w.kinds
            for point in w.close_ready():
                series = point.series
                part = cache.get(series)
                if part is None:
                    part = cache[series] = partition_for(series, n_parts)
                by_partition.setdefault(part, []).append(point)
                note(series, kinds.get(series, "events"))
        for partition, pts in by_partition.items():
            for n, body in records.points_batches(pts):
                await ctx.out[ctx.topics.points].send(key=None, value=body, partition=partition,
                                                      callback=delivered(ctx.metrics.points_out, n))  # when acknowledged

    def safe_offset(self, source: Source) -> int | None:
        """The offset a commit of ``source`` may name: every message below it is processed
        and none of them feeds an open window (None: nothing read yet)."""
        state = self.ctx.state
        nxt = state.next_offset.get(source)
        if nxt is None or source in self.rewinding:
            return None
        w = state.windowers.get(source)
        low = w.min_needed() if w is not None else None
        return nxt if low is None else min(low, nxt)

    async def commit(self, only: set[Source] | None = None, force: bool = False) -> None:
        """Commit the input partitions' safe offsets (at most every :data:`COMMIT_SECONDS`
        unless ``force``), after the producer has flushed what was sent for them."""
        consumer = self.consumer
        now = time.monotonic()
        if consumer is None or (not force and now - self._last_commit < COMMIT_SECONDS):
            return
        self._last_commit = now
        offsets: dict[TopicPartition, int] = {}
        for source in list(self.ctx.state.next_offset):
            if only is not None and source not in only:
                continue
            safe = self.safe_offset(source)
            if safe is not None and safe > self.committed.get(source, -1):
                offsets[TopicPartition(*source)] = safe
        if not offsets:
            return
        await self.ctx.flush()  # the points and dead letters of what is committed
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:  # a rebalance: the next owner re-reads
            log.info("input offsets not committed (%s): they are read again", type(exc).__name__)
            return
        for tp, offset in offsets.items():
            self.committed[(tp.topic, tp.partition)] = offset

    async def partitions_changed(self, tps: set[Any], commit: bool) -> None:
        """Partitions revoked (``commit``: their safe offsets are committed first) or
        assigned: their windows and offsets are forgotten; they are read from the committed offset."""
        self.generation += 1
        sources = {(tp.topic, tp.partition) for tp in tps}
        if commit:
            try:
                await self.commit(only=sources, force=True)
            except Exception:  # noqa: BLE001 - the next owner re-reads what is not committed
                log.exception("committing revoked input partitions failed")
        async with self.ctx.window_lock:
            self.generation += 1
            for source in sources:
                self.ctx.state.drop_input(source)
                self.rewinding.pop(source, None)
                self.committed.pop(source, None)

    def in_sequence(self, source: Source, msg: Any) -> bool:
        """Whether ``msg`` continues its partition without a gap.

        Offsets of an input partition are consecutive but for offsets without a
        record (transaction markers, compaction). A gap seen for the first time
        drops the partition's open windows and re-reads it from its committed
        offset; the same gap seen again after that re-read is taken as offsets
        without records. Messages before the sought offset arrives are stale
        and skipped (they come again). A message below the expected offset was
        delivered again: it is already in the windows, and is skipped."""
        state = self.ctx.state
        expected = state.next_offset.get(source)
        offset = msg.offset
        if expected is None or offset == expected:
            if expected is None:
                log.info("%s[%d]: reading from offset %d", *source, offset)
                self.committed.setdefault(source, offset)  # where a re-read starts
            state.next_offset[source] = offset + 1
            if self.rewinding:
                self.rewinding.pop(source, None)
            return True
        if source in self.rewinding or offset < expected:
            return False  # stale (fetched before the seek), or delivered again
        gap = (source, expected, offset)
        if gap in self.gaps_seen:
            # the same gap after a re-read: offsets without records, not a lost message
            state.next_offset[source] = offset + 1
            return True
        if len(self.gaps_seen) > 10_000:
            self.gaps_seen.clear()
        self.gaps_seen.add(gap)
        state.windowers.pop(source, None)
        start = min(self.committed.get(source, expected), expected)
        log.warning("%s[%d]: offsets %d..%d never arrived: re-reading from %d",
                    *source, expected, offset - 1, start)
        state.next_offset[source] = start
        tp = TopicPartition(*source)
        self.rewinding[source] = (tp, time.monotonic())
        if self.consumer is not None:
            self.consumer.seek(tp, start)
        return False

    def reseek_if_stuck(self, source: Source) -> None:
        """A partition being re-read that has not come back to its offset within
        :data:`REWIND_RETRY_SECONDS` is sought again."""
        tp, since = self.rewinding[source]
        if time.monotonic() - since < REWIND_RETRY_SECONDS or self.consumer is None:
            return
        start = self.ctx.state.next_offset[source]
        log.warning("%s[%d]: still waiting for offset %d after a re-read: seeking again", *source, start)
        self.rewinding[source] = (tp, time.monotonic())
        self.ctx.metrics.input_rereads.inc()
        self.consumer.seek(tp, start)

    async def window_batch(self, topic: str, partition: int, msgs: list[Any]) -> None:
        """Parse and window one partition's part of a fetch and dead-letter its bad elements (one
        dead letter per message); the windows it closed are published with the fetch's
        (:meth:`publish_points`).

        The elements of consecutive messages are windowed together (:meth:`Windower.add_rows`,
        each with its message's offset), at most :data:`YIELD_EVERY` at a time; consecutive
        columnar batches (``streams.records.InputColumns``: columnar messages, and row-format
        arrays of aggregates that ``records.read_input`` reads as columns, and the rows of the
        messages between them) likewise as columns (:meth:`Windower.add_columns`), at most
        :data:`COLUMNS_YIELD_EVERY` elements at a time. A message out of sequence first has those
        before it windowed (a gap drops the partition's windows)."""
        ctx, state = self.ctx, self.ctx.state
        source = (topic, partition)
        kind = "events" if topic == ctx.topics.events else "metrics"
        now_m = time.monotonic()
        budget, budget_admit = ctx.budget, ctx.budget.admit

        def admit(series: str) -> bool:
            return budget_admit(series, now_m)

        def admit_tracked(series: Iterable[str]) -> bool:  # (the steady state: all at once)
            return budget.admit_tracked(series, now_m)

        parse, read = records.parse_input_message, records.read_input
        state.last_input[source] = now_m
        dead: list[tuple[Any, records.DeadLetter]] = []
        counter = self.messages_in[kind]
        #: the messages parsed, not windowed yet: (message, raw, its Parsed if it needed one, its
        #: first row's position in rows); their rows, and per row its message's offset
        pending: list[tuple[Any, bytes, records.Parsed | None, int]] = []
        rows: list[records.Row] = []
        refs: list[int] = []
        #: the positions in pending of the messages with a Parsed (the only ones with dead letters)
        slow: list[int] = []
        #: the columnar batches not windowed yet (message, its columns), and their elements
        columns: list[tuple[Any, records.InputColumns]] = []
        n_columns = 0
        accepted = 0
        busy, t0 = 0.0, time.perf_counter()

        def reason_of(exc: Exception | None, series: str) -> tuple[str, str]:
            if exc is None:
                return "series_limit", self.over_limit(series)
            if isinstance(exc, InvalidRecord):
                return exc.reason, exc.error
            ctx.metrics.processing_errors.labels("window").inc()
            return "processing_error", f"{type(exc).__name__}: {exc}"

        def window() -> None:
            nonlocal accepted, rows, refs
            if not pending:
                return
            w = self.windower_for(topic, partition)
            bad = w.add_rows(rows, kind, refs, admit, admit_tracked)
            accepted += sum(map(_COUNT, rows))
            m = 0
            for k, exc in bad:
                accepted -= rows[k][3]
                while m + 1 < len(pending) and pending[m + 1][3] <= k:
                    m += 1
                msg, raw, parsed, first = pending[m]
                reason, error = reason_of(exc, rows[k][0])
                if parsed is None:  # the same items as the fast read
                    parsed = records.parse_input_rows(raw)
                    pending[m] = (msg, raw, parsed, first)
                    if not slow or slow[-1] != m:
                        slow.append(m)
                parsed.reject(k - first, reason, error)
            dead.extend((msg, parsed.dead) for msg, _, parsed, _ in (pending[m] for m in sorted(slow))
                        if parsed is not None and parsed.dead is not None)
            counter.inc(len(pending))
            slow.clear()
            pending.clear()
            rows, refs = [], []

        def window_columns() -> None:
            nonlocal accepted, n_columns
            if not columns:
                return
            w = self.windower_for(topic, partition)
            parts = [c for _, c in columns]
            lens = np.fromiter(map(len, parts), np.int64, len(parts))
            series = [s for c in parts for s in c.series]
            cat = np.concatenate
            count = cat([c.count for c in parts])
            bad = w.add_columns(series, cat([c.ts for c in parts]), cat([c.interval for c in parts]), count,
                                cat([c.sum for c in parts]), cat([c.min for c in parts]),
                                cat([c.max for c in parts]),
                                np.repeat(np.fromiter((m.offset for m, _ in columns), np.int64, len(columns)),
                                          lens), kind, admit, admit_tracked)
            accepted += int(count.sum())
            if bad:
                firsts = np.cumsum(lens) - lens
                for k, exc in bad:
                    accepted -= int(count[k])
                    m = int(np.searchsorted(firsts, k, side="right")) - 1
                    reason, error = reason_of(exc, series[k])
                    parts[m].reject(k - int(firsts[m]), reason, error)
            dead.extend((msg, c.dead) for msg, c in columns if c.dead is not None)
            counter.inc(len(columns))
            columns.clear()
            n_columns = 0

        next_offset = state.next_offset
        expected = next_offset.get(source)  # kept here while messages follow each other
        for msg in msgs:
            offset = msg.offset
            if (pending and len(rows) + len(pending) >= YIELD_EVERY) or n_columns >= COLUMNS_YIELD_EVERY:
                window()
                window_columns()
                next_offset[source] = expected
                # let the web API, the scrape and the model agent in (the window lock stays held)
                busy += time.perf_counter() - t0
                await asyncio.sleep(0)
                t0 = time.perf_counter()
            if offset == expected and not self.rewinding:
                expected += 1  # in sequence (Windows.in_sequence's common case)
            else:
                window()  # before a gap drops the partition's windows
                window_columns()
                if expected is not None:
                    next_offset[source] = expected
                ok = self.in_sequence(source, msg)
                expected = next_offset.get(source)
                if not ok:
                    continue
            try:
                raw = msg.value or b""
                # the common well-formed shapes are read without a Parsed around them; one is made
                # (the same items) only if an element is rejected
                got = read(raw)
                parsed = None if got is not None else parse(raw)
                if parsed.__class__ is records.InputColumns:
                    got, parsed = parsed, None
                elif parsed is not None:
                    got = parsed.items
            except Exception as exc:  # noqa: BLE001 - an agent never crash-loops on data
                counter.inc()
                next_offset[source] = expected
                busy += time.perf_counter() - t0
                await processing_error(ctx, "window", topic, msg, exc)
                t0 = time.perf_counter()
                continue
            if columns and parsed is None and got.__class__ is not records.InputColumns:
                # rows amid columnar batches (e.g. a producer's short last chunk of a flush): one
                # group-by with them, not a cut in two (a group-by costs once per series in it)
                got = records.InputColumns.of_rows(got, raw)
            if got.__class__ is records.InputColumns:
                window()  # the rows before it first (dead letters and windows in message order)
                columns.append((msg, got))
                n_columns += len(got)
                continue
            window_columns()
            if parsed is not None:
                slow.append(len(pending))
            pending.append((msg, raw, parsed, len(rows)))
            rows += got
            refs += [msg.offset] * len(got)
        window()
        window_columns()
        if expected is not None:
            next_offset[source] = expected
        self.busy.inc(busy + time.perf_counter() - t0)
        self.events_in[kind].inc(accepted)
        for msg, d in dead:
            await dead_letter(ctx, topic, msg, d)

    def input_consumer(self) -> AIOKafkaConsumer:
        """The input topics' consumer: its own group, offsets committed by :meth:`commit`."""
        ctx = self.ctx
        return AIOKafkaConsumer(
            **kafka_config.client_kwargs(ctx.settings),
            group_id=input_group(ctx.settings),
            client_id=f"{ctx.settings.app_id}-input",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(BROKER_SESSION_TIMEOUT * 1000),
            heartbeat_interval_ms=int(BROKER_HEARTBEAT_INTERVAL * 1000),
            rebalance_timeout_ms=int(BROKER_REBALANCE_TIMEOUT * 1000),
            max_partition_fetch_bytes=INPUT_PARTITION_FETCH_BYTES,
        )

    async def run(self) -> None:
        """The agent's loop: ``getmany``, then each partition's records in one batch under the
        window lock; offsets committed every :data:`COMMIT_SECONDS`."""
        ctx = self.ctx
        consumer = self.consumer = self.input_consumer()
        consumer.subscribe([ctx.topics.events, ctx.topics.metrics], listener=_Rebalance(self))
        await consumer.start()
        try:
            while True:
                generation = self.generation
                batch = await consumer.getmany(timeout_ms=500, max_records=FETCH_RECORDS)
                if batch:
                    await self.more_of_a_backlog(consumer, batch)
                    async with ctx.window_lock:
                        if generation != self.generation:
                            # a rebalance since the fetch: its partitions start afresh from the
                            # committed offset (their windows were dropped), this batch is stale
                            await self.reread_from_committed(set(batch))
                            continue
                        for tp, msgs in batch.items():
                            await self.window_batch(tp.topic, tp.partition, msgs)
                        # the fetch's closed windows, every partition's together
                        windowers = ctx.state.windowers
                        await self.publish_points([w for tp in batch
                                                   if (w := windowers.get((tp.topic, tp.partition))) is not None])
                    if self.after_fetch is not None:
                        self.after_fetch()
                await self.commit()
        finally:
            self.consumer = None
            await consumer.stop()

    @staticmethod
    async def more_of_a_backlog(consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]) -> None:
        """Add to ``batch`` (one ``getmany``) up to :data:`BACKLOG_FETCHES` - 1 more fetches of its
        partitions, while each of them is behind (more records wait on the broker: a backlog) and
        under :data:`BACKLOG_BATCH_BYTES`: the window agent's group-by pays once per series of a
        batch, and a broker caps a fetch (Tansu: 5 MiB a partition, ~62,000 aggregates, each of
        the partition's 25,000 series at 100,000 twice or so). Live, a partition is not behind:
        no wait."""
        for _ in range(BACKLOG_FETCHES - 1):
            assigned = consumer.assignment()
            for tp, msgs in batch.items():
                hw = consumer.highwater(tp) if tp in assigned else None
                if (hw is None or hw <= msgs[-1].offset + 1
                        or sum(len(m.value or b"") for m in msgs) >= BACKLOG_BATCH_BYTES):
                    return
            more = await consumer.getmany(*batch, timeout_ms=BACKLOG_WAIT_MS, max_records=FETCH_RECORDS)
            if not more:
                return
            for tp, msgs in more.items():
                batch[tp].extend(msgs)

    async def run_forever(self) -> None:
        """:meth:`run`, restarted a second after it fails (its input is re-read from the commit)."""
        ctx = self.ctx
        while True:
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the agent restarts (its input is re-read from the commit)
                log.exception("the window agent's input consumer failed: restarting it")
                async with ctx.window_lock:
                    for source in set(ctx.state.windowers) | set(ctx.state.next_offset):
                        ctx.state.drop_input(source)
                    self.rewinding.clear()
                    self.committed.clear()
                await asyncio.sleep(1.0)

    @property
    def idle_interval(self) -> float:
        """Seconds between two runs of :meth:`close_idle_partitions`."""
        return max(0.5, min(5.0, self.ctx.step / 4))

    async def reread_from_committed(self, tps: set[TopicPartition]) -> None:
        """Seek the assigned ``tps`` back to their committed offsets (the earliest if none)."""
        consumer = self.consumer
        if consumer is None:
            return
        for tp in tps & consumer.assignment():
            offset = await consumer.committed(tp)
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
            self.ctx.state.drop_input((tp.topic, tp.partition))
            self.committed.pop((tp.topic, tp.partition), None)

    def input_lag(self) -> dict[tuple[str, int], int]:
        """Per input partition: records after the next one this worker reads (read at scrape time)."""
        consumer, out = self.consumer, {}
        if consumer is None:
            return {}
        for tp in consumer.assignment():
            hw = consumer.highwater(tp)
            nxt = self.ctx.state.next_offset.get((tp.topic, tp.partition))
            if hw is not None:
                out[(tp.topic, tp.partition)] = max(0, hw - (nxt if nxt is not None else hw))
        return out

    async def close_idle_partitions(self) -> None:
        """Live partitions with no input for a window close on the wall clock (and a
        re-read that no message answers is sought again)."""
        ctx, state = self.ctx, self.ctx.state
        for source in list(self.rewinding):
            try:
                self.reseek_if_stuck(source)
            except Exception:  # noqa: BLE001 - a timer never dies on one partition
                log.exception("seeking %s[%d] again failed", *source)
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
    """The window agent on the input topics (a task with its own consumer) and its wall-clock timer."""
    app, windows = ctx.app, Windows(ctx)

    @app.task
    async def window_agent() -> None:
        await windows.run_forever()

    @app.timer(interval=windows.idle_interval)
    async def close_idle_partitions() -> None:
        await windows.close_idle_partitions()

    return windows
