"""Signed model checkpoints and signed table records.

Models are pickled, and unpickling is code execution, so a checkpoint read
back from a topic is loaded only if its HMAC-SHA256 signature verifies with
the worker's key. A forged or corrupted checkpoint is refused (the series
starts cold) and counted, never unpickled.

The other tables a worker restores from (``series_view``, ``targets``) hold
JSON and arrays, not pickles, but anyone who can write to their changelogs
could otherwise feed the worker any shape of data: their records are signed
too, by a :class:`Signer` bound to the table and the record's key (a record
copied to another key or table does not verify).

>>> c = Checkpointer(b"k" * 32)
>>> blob = c.dumps({"a": 1})
>>> c.loads(blob)
{'a': 1}
>>> Checkpointer(b"x" * 32).loads(blob)
Traceback (most recent call last):
...
streams.checkpoint.UntrustedCheckpoint: checkpoint signature does not verify
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import secrets
from pathlib import Path
from typing import Any

MAGIC = b"FSM1"
_SIG = hashlib.sha256().digest_size


class UntrustedCheckpoint(ValueError):
    pass


class Checkpointer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("model signing key must be at least 16 bytes")
        self._key = key

    def dumps(self, obj: Any) -> bytes:
        body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        return MAGIC + hmac.new(self._key, body, hashlib.sha256).digest() + body

    def loads(self, blob: bytes) -> Any:
        if not isinstance(blob, bytes | bytearray) or blob[:4] != MAGIC or len(blob) < 4 + _SIG:
            raise UntrustedCheckpoint("not a Foresight checkpoint")
        sig, body = blob[4 : 4 + _SIG], blob[4 + _SIG :]
        if not hmac.compare_digest(sig, hmac.new(self._key, body, hashlib.sha256).digest()):
            raise UntrustedCheckpoint("checkpoint signature does not verify")
        return pickle.loads(body)  # noqa: S301 - authenticated above


class Signer:
    """HMAC-SHA256 over ``(table, key, body)``; ``verify`` returns the body or raises.

    >>> s = Signer(b"k" * 32, "series_view")
    >>> blob = s.sign(b"a/rps", b"{}")
    >>> s.verify(b"a/rps", blob)
    b'{}'
    >>> s.verify(b"b/rps", blob)
    Traceback (most recent call last):
    ...
    streams.checkpoint.UntrustedCheckpoint: series_view record for b'b/rps': signature does not verify
    >>> Signer(b"k" * 32, "targets").verify(b"a/rps", blob)
    Traceback (most recent call last):
    ...
    streams.checkpoint.UntrustedCheckpoint: targets record for b'a/rps': signature does not verify
    """

    MAGIC = b"FSR1"

    def __init__(self, key: bytes, table: str) -> None:
        if len(key) < 16:
            raise ValueError("signing key must be at least 16 bytes")
        self._key = key
        self.table = table

    def _mac(self, key: bytes, body: bytes) -> bytes:
        h = hmac.new(self._key, self.table.encode() + b"\0", hashlib.sha256)
        h.update(len(key).to_bytes(4, "big") + key)
        h.update(body)
        return h.digest()

    def sign(self, key: bytes, body: bytes) -> bytes:
        return self.MAGIC + self._mac(key, body) + body

    def verify(self, key: bytes, blob: Any) -> bytes:
        if not isinstance(blob, bytes | bytearray) or blob[:4] != self.MAGIC or len(blob) < 4 + _SIG:
            raise UntrustedCheckpoint(f"{self.table} record for {key!r}: not a signed Foresight record")
        sig, body = bytes(blob[4 : 4 + _SIG]), bytes(blob[4 + _SIG :])
        if not hmac.compare_digest(sig, self._mac(key, body)):
            raise UntrustedCheckpoint(f"{self.table} record for {key!r}: signature does not verify")
        return body


def load_or_create_key(configured: str, data_dir: str | os.PathLike[str]) -> bytes:
    """The configured key, else a random key kept in ``data_dir/model.key`` (0600)."""
    if configured:
        return configured.encode()
    path = Path(data_dir) / "model.key"
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key
