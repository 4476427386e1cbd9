"""Every write to the worker's changelog-backed tables, recoverable to the broker's end offset.

The embedded broker (Tansu) reports a partition's end offset as the first offset of its
newest record batch + 1 (README, "The embedded broker"), where Kafka reports the offset
after the last record, and a table's changelog recovery reads to that end: records after
the first of a batch at the end of a changelog partition are not restored by a worker
taking the partition over (or restarting). So every writer of a changelog (the model
agent's checkpoints, the history agent's, the eviction timer's, the decisions agent's
``targets`` snapshots) hands a round of records to :meth:`ChangelogWriter.write`, which
ends each changelog partition it writes with a record batch holding just its last record.

It builds the record batches itself (aiokafka's batch API, ``create_batch`` / ``send_batch``,
which Faust's producer does not wrap) and seals each before handing it over, so no other
record ever joins one: per changelog partition, the round's other records in as few batches
as the producer's batch size allows (``streams/worker/context.py``
``PRODUCER_MAX_BATCH_BYTES``), then its last record in a batch of its own. The producer
sends a partition's batches in order, one request in flight per broker, so that batch is
the partition's newest once the round is delivered, whatever the batch size and whether or
not the batches are compressed (on the embedded broker a compressed batch is still one
batch: the same end offset). Rounds are serialised (a lock), so one round's batches of a
partition never interleave with another's. Within a round the partitions go side by side: the
producer holds one batch a partition, so each waits only for its own previous one to go out.

The round returns once its batches are handed to the producer, not delivered: the model
agent's next forecasts need not wait for them (the commit flushes the producer); a batch
that is not delivered is logged. A batch rather than a ``send`` per record also saves the
producer's per-record work (a future, a partition lookup and an accumulator call per
record).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
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

    #: one round at a time: a partition's batches of two rounds never interleave
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def write(self, producer: Any, puts: Sequence[Put]) -> None:
        """Send ``puts`` (in order per partition) to their changelogs and set them in the tables;
        returns once all are handed to ``producer`` (Faust's, or aiokafka's).

        Each record is set in its table once its batch is handed over (per batch, one
        ``update`` per table: one transaction of the disk store, streams/tablestore.py)."""
        if not puts:
            return
        client = _aiokafka(producer)
        topics = {id(p.table): p.table.changelog_topic.get_topic_name() for p in puts}
        by_tp: dict[tuple[str, int], list[Put]] = {}
        for p in puts:
            by_tp.setdefault((topics[id(p.table)], p.partition), []).append(p)
        async with self.lock:  # the partitions' rounds side by side: each waits for its own batches
            await asyncio.gather(*(
                send_round(client, topic, partition, [(p.key, p.value) for p in group],
                           lambda first, end, group=group: _set(group[first:end]))
                for (topic, partition), group in by_tp.items()))


async def send_round(client: Any, topic: str, partition: int, records: Sequence[tuple[bytes, bytes]],
                     handed: Callable[[int, int], None] | None = None) -> None:
    """Send ``records`` (key, value) to ``topic``'s ``partition`` with aiokafka's ``client``, in
    order: in sealed batches, the last record in a batch of its own, so the end offset the broker
    reports covers it (module docstring). ``handed(first, end)``: ``records[first:end]`` were
    handed over, one call per batch. A batch that is not delivered is logged."""
    if not records:
        return
    batch, first = client.create_batch(), 0
    for i, (key, value) in enumerate(records[:-1]):
        if batch.append(key=key, value=value, timestamp=None) is None:  # full
            await _hand_over(client, batch, topic, partition, first, i, handed)
            batch, first = client.create_batch(), i
            batch.append(key=key, value=value, timestamp=None)  # a batch takes its first
    end = len(records) - 1
    if end > 0:
        await _hand_over(client, batch, topic, partition, first, end, handed)
    last = client.create_batch()
    key, value = records[-1]
    last.append(key=key, value=value, timestamp=None)
    await _hand_over(client, last, topic, partition, end, end + 1, handed)


def _aiokafka(producer: Any) -> Any:
    """aiokafka's producer: ``producer`` itself, or the one under Faust's producer."""
    ensure = getattr(producer, "_ensure_producer", None)  # Faust's: raises NotReady before it starts
    return ensure() if ensure is not None else producer


async def _hand_over(client: Any, batch: Any, topic: str, partition: int, first: int, end: int,
                     handed: Callable[[int, int], None] | None) -> None:
    """Seal ``batch`` (the round's records ``first`` to ``end``), queue it for ``topic``'s
    ``partition`` and tell ``handed``; a batch that is not delivered is logged."""
    batch.close()  # nothing more joins it (not even a ``send`` to the same partition)
    fut = await client.send_batch(batch, topic, partition=partition)
    fut.add_done_callback(lambda f: _warn_failed(f, topic, partition, end - first))
    if handed is not None:
        handed(first, end)


def _set(puts: Sequence[Put]) -> None:
    """Set ``puts`` in their tables (one ``update`` per table)."""
    tables: dict[int, tuple[Any, list[tuple[bytes, bytes]]]] = {}
    for p in puts:
        tables.setdefault(id(p.table), (p.table, []))[1].append((p.key, p.value))
    for table, pairs in tables.values():
        table.data.update(pairs)


def _warn_failed(fut: asyncio.Future, topic: str, partition: int, records: int) -> None:
    exc = None if fut.cancelled() else fut.exception()
    if exc is not None:
        log.warning("a batch of %d changelog records to %s[%d] was not delivered (%s: %s)", records, topic,
                    partition, type(exc).__name__, exc)
