"""The changelog writer against the real embedded broker, at the worker's producer batch size."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import faust
import pytest

from streams.tablestore import store_url
from streams.worker.changelog import ChangelogWriter, Put
from streams.worker.context import PRODUCER_MAX_BATCH_BYTES
from tests.streams.test_web import changelog_ends


async def _write_rounds(broker: str, datadir: Path, writer: ChangelogWriter | None,
                        store: str = "memory", compression: str | None = None) -> tuple[str, dict]:
    """Two tasks writing rounds of 1 KB records to two partitions of a table's changelog at
    once (as the model agent and the eviction timer do), a round of 100 then one of a record
    per partition, with ``writer`` or straight to the producer; the changelog topic and the
    table's data (in the table ``store``, streams/tablestore.py); the producer's batches
    compressed with ``compression``."""
    app = faust.App(f"cl-{os.urandom(4).hex()}", broker=f"kafka://{broker}", store=store_url(store),
                    datadir=str(datadir), producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
                    producer_linger_ms=5, producer_compression_type=compression)
    table = app.Table("models", key_type=bytes, value_type=bytes, partitions=2)
    topic = table.changelog_topic.get_topic_name()
    producer = app.producer
    await producer.start()

    async def rounds(task: int) -> None:
        for r in range(3):
            for n in (100, 2):
                puts = [Put(table, i % 2, f"k{task}-{i}".encode(), os.urandom(1000) + bytes([r]))
                        for i in range(n)]
                if writer is not None:
                    await writer.write(producer, puts)
                else:
                    for p in puts:
                        await producer.send(topic, p.key, p.value, p.partition, None, None)

    try:
        await asyncio.gather(rounds(0), rounds(1))
        await producer.flush()
    finally:
        await producer.stop()
    return topic, dict(table.data.items())


@pytest.mark.integration
@pytest.mark.parametrize(("store", "compression"), [("memory", None), ("disk", None), ("disk", "zstd")])
def test_the_end_offset_covers_every_record_the_writer_wrote(broker, tmp_path, store, compression):
    # the premise: in batches this large, the broker's end offset misses records sent back to back
    topic, _ = asyncio.run(_write_rounds(broker, tmp_path / "a", None))
    ends = changelog_ends(broker, topic, 2)
    assert all(read == 306 for read, _ in ends.values()) and any(end < read for read, end in ends.values()), ends

    # (a compressed batch is still one batch to the broker: the same end offset)
    topic, data = asyncio.run(_write_rounds(broker, tmp_path / "b", ChangelogWriter(), store, compression))
    ends = changelog_ends(broker, topic, 2)
    assert ends == {0: (306, 306), 1: (306, 306)}, "(offset after the last record, end offset) per partition"
    assert len(data) == 200 and all(v[-1] == 2 for v in data.values()), "the table holds each key's last value"
