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
