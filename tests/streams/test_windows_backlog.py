"""The window agent's batches while it reads a backlog (``Windows.more_of_a_backlog``), against the
real embedded broker: a partition that is behind takes one more fetch before it is windowed (the
records follow each other), and no more; one that is not behind waits for nothing."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.admin import ensure_topics
from streams.settings import Settings
from streams.worker.windows import BACKLOG_FETCHES, BACKLOG_WAIT_MS, Windows
from tests.conftest import send_raw

pytestmark = pytest.mark.integration

#: messages of 100 kB: 15 MB, three fetches or more (the embedded broker sends 5 MiB of a partition)
MESSAGES = 150


def test_a_partition_behind_takes_one_more_fetch_and_one_at_its_end_waits_for_none(broker, prefix):
    settings = Settings(topic_prefix=prefix, broker=broker)
    topic = f"{prefix}.events"
    ensure_topics(settings, [topic], 1)
    send_raw(broker, topic, [(None, b"x" * 100_000) for _ in range(MESSAGES)])
    tp = TopicPartition(topic, 0)

    async def run() -> tuple[list[int], list[int], list[int], float]:
        c = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, auto_offset_reset="earliest",
                             max_partition_fetch_bytes=1024 * 1024)
        await c.start()
        try:
            c.assign([tp])
            batch: dict = {}
            while not batch:
                batch = await c.getmany(timeout_ms=1000)
            first = [m.offset for m in batch[tp]]
            await Windows.more_of_a_backlog(c, batch)
            merged = [m.offset for m in batch[tp]]
            # read to the end: the partition is then no longer behind
            last: list = []
            deadline = time.monotonic() + 30
            while (not last or last[-1].offset < MESSAGES - 1) and time.monotonic() < deadline:
                last = (await c.getmany(timeout_ms=1000)).get(tp, last)
            end = {tp: last}
            t0 = time.monotonic()
            await Windows.more_of_a_backlog(c, end)
            return first, merged, [m.offset for m in end[tp]], time.monotonic() - t0
        finally:
            await c.stop()

    first, merged, end, waited = asyncio.run(run())
    assert BACKLOG_FETCHES == 2
    assert len(first) < MESSAGES / 2, "the first fetch holds a part of the backlog"
    assert merged[: len(first)] == first and len(first) < len(merged) < MESSAGES, "one more fetch, no more"
    assert merged == list(range(len(merged))), "the records follow each other"
    assert end[-1] == MESSAGES - 1 and waited < BACKLOG_WAIT_MS / 1000 / 2, "at its end: no fetch waited for"
