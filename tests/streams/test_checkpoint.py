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
