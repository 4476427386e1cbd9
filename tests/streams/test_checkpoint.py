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
    restored = c.loads(c.dumps(m))
    a = m.update(105.0, 60.0 * 50)
    b = restored.update(105.0, 60.0 * 50)
    assert a == b


def test_forged_or_plain_pickles_are_refused(tmp_path):
    c = Checkpointer(b"0123456789abcdef0123")
    blob = bytearray(c.dumps({"x": 1}))
    blob[-1] ^= 1
    with pytest.raises(UntrustedCheckpoint):
        c.loads(bytes(blob))
    with pytest.raises(UntrustedCheckpoint):
        c.loads(pickle.dumps({"x": 1}))
    key = load_or_create_key("", tmp_path)
    assert key == load_or_create_key("", tmp_path) and len(key) >= 32
    assert (tmp_path / "model.key").stat().st_mode & 0o077 == 0


def test_bank_row_checkpoints_verify_and_forged_ones_are_refused():
    """A raw bank-row checkpoint is signed over its format, step, layout and bytes: any change,
    or a pickle checkpoint's body passed off as a row record (and back), does not verify."""
    from streams.checkpoint import ROW_MAGIC, RowCheckpoint

    c = Checkpointer(b"0123456789abcdef0123")
    blobs = c.dumps_rows(60.0, b"L" * 16, [b"row-0", b"row-1"])
    assert [c.loads(b) for b in blobs] == [RowCheckpoint(60.0, b"L" * 16, b"row-0"),
                                           RowCheckpoint(60.0, b"L" * 16, b"row-1")]
    for i in range(4, len(blobs[0])):
        forged = bytearray(blobs[0])
        forged[i] ^= 1
        with pytest.raises(UntrustedCheckpoint):
            c.loads(bytes(forged))
    with pytest.raises(UntrustedCheckpoint):
        Checkpointer(b"another-key-0123456789").loads(blobs[0])
    pickled = c.dumps({"x": 1})
    with pytest.raises(UntrustedCheckpoint):
        c.loads(ROW_MAGIC + pickled[4:])  # a signed pickle is not a signed row record
    with pytest.raises(UntrustedCheckpoint):
        c.loads(b"FSM1" + blobs[0][4:])  # nor the other way round: never unpickled
