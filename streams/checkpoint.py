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

Model checkpoints are bound to their series too: a checkpoint copied to another series' key
does not verify (it would otherwise give that series another's model).

>>> c = Checkpointer(b"k" * 32)
>>> blob = c.dumps({"a": 1}, b"a/rps")
>>> c.loads(blob, b"a/rps")
{'a': 1}
>>> Checkpointer(b"x" * 32).loads(blob, b"a/rps")
Traceback (most recent call last):
...
streams.checkpoint.UntrustedCheckpoint: checkpoint signature does not verify
>>> c.loads(blob, b"b/rps")
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
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cramjam

MAGIC = b"FSM2"
#: formats of earlier versions, whose signature did not cover the series: refused (cold start)
OLD_MAGICS = (b"FSM1", b"FSB1")
_SIG = hashlib.sha256().digest_size


class UntrustedCheckpoint(ValueError):
    pass


#: a bank-row checkpoint: raw array state, LZ4-compressed (a block with its size), never unpickled
ROW_MAGIC = b"FSB3"
#: the earlier bank-row form, the same but uncompressed: still restored (signed the same way)
RAW_ROW_MAGIC = b"FSB2"
_ROW_HEAD = struct.Struct("<d16s")
#: the largest row state a compressed row record may declare (a bank row is ~21 KB): a signed
#: record declaring more is unloadable, never decompressed
MAX_ROW_BYTES = 64 * 2**20


@dataclass(frozen=True, slots=True)
class RowCheckpoint:
    """A verified bank-row checkpoint (:meth:`Checkpointer.dumps_rows`): the series' step, the
    layout of the bank that wrote it and the row's bytes (``SeriesBank.row_bytes_of``)."""

    step: float
    layout: bytes
    state: bytes


class Checkpointer:
    """Signs and verifies model checkpoints: pickled objects (``FSM2``) and bank rows (``FSB3``,
    :class:`RowCheckpoint`: the model agent's cheap per-series checkpoint, a copy of the row's
    arrays, LZ4-compressed, with no object built or unpickled; ``FSB2``, the same uncompressed,
    is still restored). The MAC covers the format's magic and the series' key, so one format's
    record never verifies as another's, nor one series' checkpoint as another's. A row record
    is signed as stored (compressed) and decompressed only once it verifies.

    A bank row (~21-27 KB with 2-byte conformal rings) compresses to about 0.13 of its size in
    a series a hundred windows old (its buffers are not full), 0.6-0.73 in one that has learnt
    2,000 windows of a real trace (``../shared/data/traces``, horizon 12). Every byte of it is
    hashed, sent, kept by the broker and by the worker's table store: LZ4 (8-13 µs a row) costs
    less than the MAC it saves on a young row and a few µs more on a mature one, for 0.3-0.85
    of its bytes fewer everywhere after.

    >>> c = Checkpointer(b"k" * 32)
    >>> [blob] = c.dumps_rows(60.0, b"L" * 16, [b"a/rps"], [b"state" * 100])
    >>> len(blob) < 500, c.loads(blob, b"a/rps") == RowCheckpoint(60.0, b"L" * 16, b"state" * 100)
    (True, True)
    >>> c.loads(blob[:-1] + b"X", b"a/rps")
    Traceback (most recent call last):
    ...
    streams.checkpoint.UntrustedCheckpoint: checkpoint signature does not verify
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("model signing key must be at least 16 bytes")
        self._key = key
        # the MAC's state once it has taken the key and a format's magic: copied per record
        # (hmac.new keys a fresh HMAC, two hash blocks and its Python, per call)
        self._keyed = {m: hmac.new(key, m, hashlib.sha256) for m in (MAGIC, ROW_MAGIC, RAW_ROW_MAGIC)}

    def _mac(self, magic: bytes, key: bytes, *parts: bytes) -> bytes:
        h = self._keyed[magic].copy()
        h.update(len(key).to_bytes(4, "big") + key)
        for part in parts:
            h.update(part)
        return h.digest()

    def dumps(self, obj: Any, key: bytes) -> bytes:
        """``obj`` pickled and signed for the series ``key``."""
        body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        return MAGIC + self._mac(MAGIC, key, body) + body

    def dumps_rows(self, step: float, layout: bytes, keys: Sequence[bytes], states: Iterable[Any]) -> list[bytes]:
        """One signed :class:`RowCheckpoint` record per row state (rows of one bank), each for its
        series' key: the state LZ4-compressed, then signed as stored. A state is any buffer
        (``bytes``, or a row of ``SeriesBank.row_tables``' table: compressed from where it is)."""
        head = _ROW_HEAD.pack(step, layout)
        mac, lz4, join = self._mac, cramjam.lz4.compress_block, b"".join
        out = []
        for key, state in zip(keys, states, strict=True):
            body = lz4(state)
            out.append(join((ROW_MAGIC, mac(ROW_MAGIC, key, head, body), head, body)))
        return out

    def loads(self, blob: bytes, key: bytes) -> Any:
        """The checkpoint's object (a pickle) or :class:`RowCheckpoint`, once its signature
        verifies for the series ``key``; raises :class:`UntrustedCheckpoint` otherwise (nothing
        unpickled, nothing decompressed)."""
        if not isinstance(blob, bytes | bytearray) or len(blob) < 4 + _SIG:
            raise UntrustedCheckpoint("not a Foresight checkpoint")
        magic, sig, body = bytes(blob[:4]), blob[4 : 4 + _SIG], memoryview(blob)[4 + _SIG :]
        if magic in OLD_MAGICS:
            raise UntrustedCheckpoint("a checkpoint of an earlier version, not bound to its series")
        rows = magic in (ROW_MAGIC, RAW_ROW_MAGIC)
        if (magic != MAGIC and not rows) or (rows and len(body) < _ROW_HEAD.size):
            raise UntrustedCheckpoint("not a Foresight checkpoint")
        if not hmac.compare_digest(sig, self._mac(magic, key, body)):
            raise UntrustedCheckpoint("checkpoint signature does not verify")
        if not rows:
            return pickle.loads(body)  # noqa: S301 - authenticated above
        step, layout = _ROW_HEAD.unpack_from(body)
        state = body[_ROW_HEAD.size :]
        return RowCheckpoint(step, layout, _decompressed(state) if magic == ROW_MAGIC else bytes(state))


def _decompressed(block: memoryview) -> bytes:
    """A verified row record's state: its LZ4 block (its size first, 4 bytes little-endian)
    decompressed. A declared size past :data:`MAX_ROW_BYTES`, or a block that does not
    decompress to it, is a ``ValueError`` (the checkpoint is unloadable: the series starts cold)."""
    size = int.from_bytes(block[:4], "little") if len(block) >= 4 else -1
    if not 0 <= size <= MAX_ROW_BYTES:
        raise ValueError(f"a row record declaring {size} bytes of state")
    try:
        out = bytes(cramjam.lz4.decompress_block(block))
    except cramjam.DecompressionError as exc:
        raise ValueError(f"a row record whose state does not decompress ({exc})") from None
    if len(out) != size:
        raise ValueError(f"a row record whose state decompresses to {len(out)} bytes, not {size}")
    return out


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
        # the MAC's state once it has taken the key and the table: copied per record
        self._keyed = hmac.new(key, table.encode() + b"\0", hashlib.sha256)

    def _mac(self, key: bytes, body: bytes) -> bytes:
        h = self._keyed.copy()
        h.update(len(key).to_bytes(4, "big") + key)
        h.update(body)
        return h.digest()

    def sign(self, key: bytes, body: bytes) -> bytes:
        return b"".join((self.MAGIC, self._mac(key, body), body))

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
