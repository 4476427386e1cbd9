"""Every write to the worker's changelog-backed tables, recoverable to the broker's end offset.

The embedded broker (Tansu) reports a partition's end offset as the first offset of its
newest record batch + 1 (README, "The embedded broker"), where Kafka reports the offset
after the last record, and a table's changelog recovery reads to that end: records after
the first of a batch at the end of a changelog partition are not restored by a worker
taking the partition over (or restarting). So every writer of a changelog (the model
agent's checkpoints, the history agent's, the eviction timer's, the decisions agent's
``targets`` snapshots) hands a round of records to :meth:`ChangelogWriter.write`, which
ends each changelog partition it writes with a record batch holding just its last record:

- the round's other records are sent and delivered first (their batches are closed);
- then the last record of each partition is sent: it starts a batch, and nothing is sent to
  that partition until that batch is delivered (the next round waits for it, under the
  same lock: writers are serialised), so no record ever joins it.

The round returns once its last records are handed to the producer, not delivered: the model
agent's next forecasts need not wait for them (the commit flushes the producer). On Kafka
this costs a wait for the round's records but the last ones. It holds at any producer batch
size (``streams/worker/context.py`` ``PRODUCER_MAX_BATCH_BYTES``), where the round's records
would otherwise share a batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

log = logging.getLogger("foresight.worker")


class Put(NamedTuple):
    """``table[key] = value``, its changelog record on ``partition``."""

    table: Any
    partition: int
    key: bytes
    value: bytes


@dataclass
class ChangelogWriter:
    """Writes rounds of table records so that the end offset the broker reports for each
    changelog partition covers its last record (module docstring)."""

    #: one round at a time: a round's last records must not share a batch with another's
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: per changelog (topic, partition): the delivery of its last record, a batch of its own
    pending: dict[tuple[str, int], asyncio.Future] = field(default_factory=dict)

    async def write(self, producer: Any, puts: Sequence[Put]) -> None:
        """Send ``puts`` (in order per partition) to their changelogs and set them in the tables;
        returns once all are handed to ``producer`` (Faust's), the non-last ones delivered.

        Straight to the app's producer (the tables' keys and values are raw bytes): a changelog
        topic's ``send`` builds a Faust message, its future and a debug log line per record,
        and Faust's ``send_soon`` buffer sends at its own pace, joining any batch. The tables
        are set once per table for the records sent (``update``: one transaction of the disk
        store, streams/tablestore.py), each record's value once it is handed to the producer."""
        if not puts:
            return
        topics = {id(p.table): p.table.changelog_topic.get_topic_name() for p in puts}
        last: dict[tuple[str, int], int] = {}
        for i, p in enumerate(puts):
            last[(topics[id(p.table)], p.partition)] = i
        final = set(last.values())
        async with self.lock:
            waits = [f for tp in last if (f := self.pending.pop(tp, None)) is not None]
            if waits:
                await asyncio.wait(waits)
                _warn_failed(waits)
            rest = [p for i, p in enumerate(puts) if i not in final]
            sent = await _send(producer, topics, rest)
            if sent:
                await asyncio.wait(sent)
                _warn_failed(sent)
            for tp, fut in zip(last, await _send(producer, topics, [puts[i] for i in last.values()]), strict=True):
                self.pending[tp] = fut


async def _send(producer: Any, topics: dict[int, str], puts: list[Put]) -> list[asyncio.Future]:
    """Hand ``puts`` to ``producer`` in order, then set them in their tables (the values of
    those handed over, should the producer fail part-way); their deliveries."""
    futures: list[asyncio.Future] = []
    try:
        for p in puts:
            futures.append(await producer.send(topics[id(p.table)], p.key, p.value, p.partition, None, None))
    finally:
        tables: dict[int, tuple[Any, list[tuple[bytes, bytes]]]] = {}
        for p in puts[: len(futures)]:
            tables.setdefault(id(p.table), (p.table, []))[1].append((p.key, p.value))
        for table, pairs in tables.values():
            table.data.update(pairs)
    return futures


def _warn_failed(futures: list[asyncio.Future]) -> None:
    failed = [e for f in futures if not f.cancelled() and (e := f.exception()) is not None]
    if failed:
        log.warning("%d of %d changelog records were not delivered (%s: %s)", len(failed), len(futures),
                    type(failed[0]).__name__, failed[0])
