from __future__ import annotations

import pickle

import pytest

from detectors.defaults import make_series_model
from streams.checkpoint import Checkpointer, UntrustedCheckpoint, load_or_create_key


def test_model_round_trips_and_resumes_identically():
    c = Checkpointer(b"0123456789abcdef0123")
    m = make_series_model(60, 12)
    for i in range(50):
        m.update(100.0 + (i % 12), 60.0 * i)
    restored = c.loads(c.dumps(m, b"a/rps"), b"a/rps")
    a = m.update(105.0, 60.0 * 50)
    b = restored.update(105.0, 60.0 * 50)
    assert a == b


def test_forged_or_plain_pickles_are_refused(tmp_path):
    c = Checkpointer(b"0123456789abcdef0123")
    blob = bytearray(c.dumps({"x": 1}, b"a/rps"))
    blob[-1] ^= 1
    with pytest.raises(UntrustedCheckpoint):
        c.loads(bytes(blob), b"a/rps")
    with pytest.raises(UntrustedCheckpoint):
        c.loads(pickle.dumps({"x": 1}), b"a/rps")
    key = load_or_create_key("", tmp_path)
    assert key == load_or_create_key("", tmp_path) and len(key) >= 32
    assert (tmp_path / "model.key").stat().st_mode & 0o077 == 0


def test_bank_row_checkpoints_verify_and_forged_ones_are_refused():
    """A raw bank-row checkpoint is signed over its format, step, layout and bytes: any change,
    or a pickle checkpoint's body passed off as a row record (and back), does not verify."""
    from streams.checkpoint import ROW_MAGIC, RowCheckpoint

    c = Checkpointer(b"0123456789abcdef0123")
    keys = [b"a/rps", b"b/rps"]
    blobs = c.dumps_rows(60.0, b"L" * 16, keys, [b"row-0", b"row-1"])
    assert [c.loads(b, k) for b, k in zip(blobs, keys, strict=True)] == [RowCheckpoint(60.0, b"L" * 16, b"row-0"),
                                                            RowCheckpoint(60.0, b"L" * 16, b"row-1")]
    for i in range(4, len(blobs[0])):
        forged = bytearray(blobs[0])
        forged[i] ^= 1
        with pytest.raises(UntrustedCheckpoint):
            c.loads(bytes(forged), b"a/rps")
    with pytest.raises(UntrustedCheckpoint):
        Checkpointer(b"another-key-0123456789").loads(blobs[0], b"a/rps")
    pickled = c.dumps({"x": 1}, b"a/rps")
    with pytest.raises(UntrustedCheckpoint):
        c.loads(ROW_MAGIC + pickled[4:], b"a/rps")  # a signed pickle is not a signed row record
    with pytest.raises(UntrustedCheckpoint):
        c.loads(b"FSM2" + blobs[0][4:], b"a/rps")  # nor the other way round: never unpickled


def test_a_checkpoint_is_bound_to_its_series():
    """A signed checkpoint copied under another series' key (or one of an earlier version, whose
    signature did not cover the series) is refused: the series starts cold."""
    import hashlib
    import hmac

    c = Checkpointer(b"0123456789abcdef0123")
    [row] = c.dumps_rows(60.0, b"L" * 16, [b"a/rps"], [b"row-0"])
    pickled = c.dumps({"x": 1}, b"a/rps")
    for blob in (row, pickled):
        with pytest.raises(UntrustedCheckpoint, match="does not verify"):
            c.loads(blob, b"b/rps")
    # the earlier row format, signed over the row alone (valid then): refused now
    body = row[4 + 32:]
    old = b"FSB1" + hmac.new(b"0123456789abcdef0123", b"FSB1" + body, hashlib.sha256).digest() + body
    with pytest.raises(UntrustedCheckpoint, match="earlier version"):
        c.loads(old, b"a/rps")


def _signed(key: bytes, magic: bytes, series: bytes, body: bytes) -> bytes:
    """A record signed as :class:`Checkpointer` signs (magic, series, body), built by hand."""
    import hashlib
    import hmac

    h = hmac.new(key, magic, hashlib.sha256)
    h.update(len(series).to_bytes(4, "big") + series)
    h.update(body)
    return magic + h.digest() + body


def test_row_checkpoints_are_stored_compressed_and_earlier_uncompressed_ones_still_restore():
    """A bank row is written LZ4-compressed (``FSB3``) and restored to the same bytes; a row record
    of the earlier, uncompressed form (``FSB2``, signed the same way) still restores."""
    import struct

    import numpy as np

    from streams.checkpoint import RAW_ROW_MAGIC, ROW_MAGIC, RowCheckpoint

    key = b"0123456789abcdef0123"
    c = Checkpointer(key)
    state = np.concatenate([np.linspace(0.0, 1.0, 2000), np.zeros(2000)]).tobytes()
    [blob] = c.dumps_rows(60.0, b"L" * 16, [b"a/rps"], [state])
    assert blob[:4] == ROW_MAGIC and len(blob) < len(state) / 2, "stored compressed"
    assert c.loads(blob, b"a/rps") == RowCheckpoint(60.0, b"L" * 16, state)
    old = _signed(key, RAW_ROW_MAGIC, b"a/rps", struct.pack("<d16s", 60.0, b"L" * 16) + state)
    assert c.loads(old, b"a/rps") == RowCheckpoint(60.0, b"L" * 16, state)
    with pytest.raises(UntrustedCheckpoint):
        c.loads(old, b"b/rps")



def test_rows_signed_from_the_banks_gathered_tables_are_the_records_of_their_bytes_and_restore():
    """The model agent signs rows straight from ``SeriesBank.row_tables``' reused table (no bytes
    a row): the same records as from ``row_bytes_of``, each restoring its own row, bound to it."""
    import numpy as np

    from detectors.bank import SeriesBank

    c = Checkpointer(b"0123456789abcdef0123")
    bank = SeriesBank.for_config(step_seconds=60.0, horizon=3)
    rows = [bank.add() for _ in range(7)]
    for i in range(30):
        bank.update(np.array(rows), np.arange(7.0) * 10 + i % 5, np.full(7, 60.0 * i))
    keys = [f"s{i}/rps".encode() for i in range(7)]
    blobs: list[bytes] = []
    for table in bank.row_tables(rows, chunk=3):  # 3, 3, 1: the one buffer, reused
        blobs += c.dumps_rows(60.0, bank.layout, keys[len(blobs):len(blobs) + len(table)], table)
    assert blobs == c.dumps_rows(60.0, bank.layout, keys, bank.row_bytes_of(rows))
    other = SeriesBank.for_config(step_seconds=60.0, horizon=3)
    back = [other.add() for _ in rows]
    other.load_row_bytes(back, [c.loads(b, k).state for b, k in zip(blobs, keys, strict=True)])
    assert other.row_bytes_of(back) == bank.row_bytes_of(rows)
    with pytest.raises(UntrustedCheckpoint):
        c.loads(blobs[1], keys[2])


def test_a_signed_row_record_that_does_not_decompress_is_unloadable_not_trusted_blindly():
    """A compressed row record that verifies but whose block is bad, or declares a state larger
    than any bank row, is a ValueError (the series starts cold); never a huge allocation."""
    import struct

    from streams.checkpoint import MAX_ROW_BYTES, ROW_MAGIC

    key = b"0123456789abcdef0123"
    c = Checkpointer(key)
    head = struct.pack("<d16s", 60.0, b"L" * 16)
    for block, why in (((MAX_ROW_BYTES + 1).to_bytes(4, "little") + b"\x00", "declaring"),
                       ((100).to_bytes(4, "little") + b"\xff" * 8, "decompress"),
                       (b"\x01", "declaring")):
        with pytest.raises(ValueError, match=why) as exc:
            c.loads(_signed(key, ROW_MAGIC, b"a/rps", head + block), b"a/rps")
        assert not isinstance(exc.value, UntrustedCheckpoint)


@pytest.mark.integration
def test_a_worker_restores_rows_from_a_changelog_written_in_compressed_batches(broker, prefix, start_worker):
    """Row checkpoints in zstd-compressed record batches (as a producer with ``compression_type``
    writes them) on the embedded broker: a worker's table recovery (Faust) reads them back and the
    model agent restores every series' row, which then forecasts exactly as the per-series
    reference fed every window."""
    import asyncio

    import numpy as np
    from aiokafka import AIOKafkaProducer

    from detectors.bank import SeriesBank
    from streams.admin import ensure_topics
    from streams.settings import Settings
    from streams.steps import model_shape
    from streams.topics import Topics
    from streams.web import partition_for
    from tests.streams.test_model_bank import (
        ENV,
        FAST,
        SETTINGS,
        T0,
        WINDOW,
        forecasts_of,
        metric,
        points,
        reference,
        same,
        send_points,
        value,
    )
    from tests.waiting import wait_for

    ensure_topics(broker, Topics.from_settings(Settings(topic_prefix=prefix)).all(), SETTINGS.partitions)
    period, horizon = model_shape(SETTINGS, WINDOW)
    bank = SeriesBank.for_config(WINDOW, period, horizon, SETTINGS.anomaly_threshold, capacity=len(FAST))
    rows = np.array([bank.add() for _ in FAST])
    for w in range(40):  # the windows of points(0, 40), learnt as the worker would
        bank.update(rows, np.array([value(s, w) for s in FAST]), np.full(len(FAST), T0 + w * WINDOW))
    blobs = Checkpointer(b"test-key-0123456789abcdef").dumps_rows(
        WINDOW, bank.layout, [s.encode() for s in FAST], bank.row_bytes_of(rows))
    changelog = f"{prefix}-app-models-changelog"
    ensure_topics(broker, [changelog], SETTINGS.partitions)

    async def write() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker, compression_type="zstd", linger_ms=50)
        await producer.start()
        try:
            for series, blob in zip(FAST, blobs, strict=True):
                await producer.send(changelog, key=series.encode(), value=blob,
                                    partition=partition_for(series, SETTINGS.partitions))
            await producer.flush()
            # then a record of another series alone on each partition: the broker's end offset
            # (the first of the newest batch + 1) covers the compressed batches before it
            for part in range(SETTINGS.partitions):
                await producer.send_and_wait(changelog, key=f"other{part}".encode(), value=b"x", partition=part)
        finally:
            await producer.stop()

    asyncio.run(write())
    w = start_worker(prefix, **ENV)
    # points once the tables are recovered: a new group's only points message, fetched while Faust
    # recovers (its flow stopped), would be dropped with no later message to show the gap
    assert wait_for(lambda: "Worker ready" in w.log.read_text(errors="replace"), 60), "the worker never recovered"
    fast = [p for p in points(40, 42) if p.series in FAST]
    send_points(broker, prefix, fast)
    want = reference([p for p in points(0, 42) if p.series in FAST])
    got = forecasts_of(broker, prefix, fast, timeout=120)
    assert set(got) == {(p.series, p.start) for p in fast}
    wrong = [k for k, ms in got.items() if not all(same(m, want[k]) for m in ms)]
    assert not wrong, f"restored rows forecast unlike the reference: {wrong[:5]}"
    assert metric(w.port, "foresight_restored_checkpoints_total") == len(FAST)
    assert metric(w.port, "foresight_untrusted_checkpoints_total") == 0
