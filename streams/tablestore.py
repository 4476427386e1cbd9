"""A Faust table store whose values live in a sqlite file instead of the heap.

The worker's tables (``models``, ``series_view``, ``targets``) are changelog-backed: the
changelog topic is the source of truth and a worker rebuilds its copy from it at every
start and rebalance. Faust's ``memory://`` store keeps that copy in a dict, so every
signed checkpoint and view snapshot of every series a worker holds (or has held since its
partition was assigned) is resident twice: once as live state, once as bytes in the table.
:class:`DiskStore` is the memory store with its ``data`` swapped for :class:`SqliteMapping`,
a mapping over a sqlite database in a fresh file of the worker's data directory, unlinked
as soon as it is open, so it never outlives the process. It is a cache exactly as the memory
store is: no persisted offsets (recovery reads each changelog partition from its start), no
journal and no syncs, and the same rule after recovery (the keys of partitions no longer
assigned are dropped).

:func:`store_url` names the store for ``faust.App(store=...)`` and registers it in Faust's
store registry (``faust.stores.STORES``) under :data:`SCHEME`.

>>> m = SqliteMapping(None)  # None: an in-memory database, for examples and tests
>>> m[b"a"] = b"1"; m[b"b"] = b"2"
>>> m.put_changelog([(b"c", b"3", 1), (b"a", b"9", 0)])
>>> sorted(m.items()), m.partition_of(b"a"), m.partition_of(b"b")
([(b'a', b'9'), (b'b', b'2'), (b'c', b'3')], 0, None)
>>> m.drop_partitions_except({0}); sorted(m)
[b'a', b'b']
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from faust import stores
from faust.stores import memory
from faust.types import TP, EventT

#: the store's scheme in Faust's store registry (``store="foresight-disk://"``)
SCHEME = "foresight-disk"
#: pages of sqlite's own cache per store, in KiB (sqlite's default: what is read or written
#: often stays near, the rest is the operating system's page cache of the file)
CACHE_KIB = 2048

#: keys one query of :meth:`SqliteMapping.present` asks about at most (sqlite's bound on a
#: statement's parameters is 999 in its older versions)
PRESENT_KEYS = 900

#: a key or value of a table (the worker's tables are raw bytes)
Key = Any
Value = Any


class SqliteMapping(MutableMapping[Key, Value]):
    """A ``MutableMapping`` over one sqlite table ``kv(k, p, v)``: key, the changelog partition
    the key was last read from (``None`` if it was only ever written here), value.

    ``directory``: where the database file is made (a fresh one, unlinked right after it is
    opened: the open connection keeps it; the space is freed when the process ends or the
    mapping is closed); ``None``: an in-memory database.
    """

    def __init__(self, directory: str | Path | None) -> None:
        if directory is None:
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            Path(directory).mkdir(parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix="table-", suffix=".sqlite", dir=directory)
            os.close(fd)
            try:
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            finally:
                os.unlink(path)
        # a cache rebuilt from the changelog at every start: no journal, no syncs
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self._db.execute("CREATE TABLE kv (k PRIMARY KEY, p INTEGER, v)")

    def close(self) -> None:
        """Close the database (its file goes with it)."""
        self._db.close()

    # -- MutableMapping ---------------------------------------------------------
    def __getitem__(self, key: Key) -> Value:
        row = self._db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def __setitem__(self, key: Key, value: Value) -> None:
        self._db.execute("INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                         (key, value))

    def __delitem__(self, key: Key) -> None:
        if self._db.execute("DELETE FROM kv WHERE k = ?", (key,)).rowcount == 0:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        try:
            return self._db.execute("SELECT 1 FROM kv WHERE k = ?", (key,)).fetchone() is not None
        except (sqlite3.InterfaceError, sqlite3.ProgrammingError):  # a key sqlite cannot hold is not in it
            return False

    def present(self, keys: list[Key]) -> set[Key]:
        """The keys of ``keys`` in the mapping: one query per :data:`PRESENT_KEYS` of them, where
        ``in`` is a query per key (a first window of thousands of new series asks about each).

        >>> m = SqliteMapping(None); m[b"a"] = b"1"; m[b"c"] = b"3"
        >>> sorted(m.present([b"a", b"b", b"c", b"a"]))
        [b'a', b'c']
        """
        out: set[Key] = set()
        for i in range(0, len(keys), PRESENT_KEYS):
            part = keys[i:i + PRESENT_KEYS]
            marks = ",".join("?" * len(part))
            out.update(k for (k,) in self._db.execute(f"SELECT k FROM kv WHERE k IN ({marks})", part))
        return out

    def __iter__(self) -> Iterator[Key]:
        # the keys as they are now: the caller may change the mapping while it iterates
        return iter([k for (k,) in self._db.execute("SELECT k FROM kv")])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM kv").fetchone()[0])

    def clear(self) -> None:
        self._db.execute("DELETE FROM kv")

    def update(self, other: Any = (), /, **kwargs: Value) -> None:
        """``dict.update`` in one transaction (a statement per key is a transaction per key): the
        changelog writer sets a round's records at once (streams/worker/changelog.py)."""
        if isinstance(other, Mapping):
            pairs = list(other.items())
        elif hasattr(other, "keys"):
            pairs = [(k, other[k]) for k in other.keys()]
        else:
            pairs = list(other)
        pairs.extend(kwargs.items())
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                                 pairs)
        finally:
            self._db.execute("COMMIT")

    # -- what the store needs -----------------------------------------------------
    def put_changelog(self, entries: Iterable[tuple[Key, Value, int]]) -> None:
        """Set each ``(key, value, partition)`` read from a changelog, in order (the last wins)."""
        self._db.execute("BEGIN")  # one transaction for the batch
        try:
            self._db.executemany("INSERT INTO kv (k, v, p) VALUES (?, ?, ?) "
                                 "ON CONFLICT (k) DO UPDATE SET p = excluded.p, v = excluded.v", entries)
        finally:
            self._db.execute("COMMIT")

    def delete_if_empty(self, keys: Iterable[Key]) -> None:
        """Delete each of ``keys`` whose value is empty (``None`` or zero-length: a tombstone that
        no later record of the same batch overwrote)."""
        self._db.executemany("DELETE FROM kv WHERE k = ? AND (v IS NULL OR length(v) = 0)",
                             ((k,) for k in keys))

    def partition_of(self, key: Key) -> int | None:
        """The changelog partition ``key`` was last read from (``None``: only written here)."""
        row = self._db.execute("SELECT p FROM kv WHERE k = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def drop_partitions_except(self, partitions: Iterable[int]) -> None:
        """Delete every key read from a changelog partition not in ``partitions``."""
        keep = sorted(set(partitions))
        marks = ",".join("?" * len(keep))
        self._db.execute(f"DELETE FROM kv WHERE p IS NOT NULL AND p NOT IN ({marks})", keep)


class DiskStore(memory.Store):
    """Faust's memory store with its ``data`` in a :class:`SqliteMapping` in the app's table
    directory (under the worker's ``data_dir``): the same recovery (no persisted offset, the
    changelog read from the start) and the same keys dropped after a rebalance."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # memory.Store.__post_init__ (run by Service.__init__, before the app is known) made a dict
        self.data: SqliteMapping = SqliteMapping(self.app.conf.tabledir)
        self._key_partition = {}  # unused: the partition of each key is the mapping's column

    def apply_changelog_batch(self, batch: Iterable[EventT], to_key: Any, to_value: Any) -> None:
        """Apply a batch of changelog records (``None`` values are deletions), as the memory store."""
        deleted: list[Key] = []
        entries: list[tuple[Key, Value, int]] = []
        for event in batch:
            key = to_key(event.key)
            if event.message.value is None:
                deleted.append(key)
            entries.append((key, to_value(event.value), event.message.partition))
        self.data.put_changelog(entries)
        self.data.delete_if_empty(deleted)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Drop the keys of every partition this worker is no longer active for."""
        self.data.drop_partitions_except({tp.partition for tp in active_tps})


def keys_present(table: Any, keys: list[Key]) -> set[Key]:
    """The keys of ``keys`` in ``table`` (a Faust table, or any mapping): asked together
    (:meth:`SqliteMapping.present`) when the table's store is a :class:`DiskStore`, else one
    by one; a key the store cannot hold (a query that fails) is asked on its own, and is not in
    it if ``in`` says so.

    >>> keys_present({b"a": 1}, [b"a", b"b"])
    {b'a'}
    """
    data = getattr(getattr(table, "data", None), "data", None)
    if isinstance(data, SqliteMapping):
        try:
            return data.present(keys)
        except (sqlite3.InterfaceError, sqlite3.ProgrammingError):
            pass
    return {k for k in keys if k in table}


def store_url(kind: str) -> str:
    """The ``faust.App(store=...)`` URL of the table store ``kind`` (``disk`` or ``memory``),
    registering :class:`DiskStore` in Faust's store registry first.

    >>> store_url("disk"), store_url("memory")
    ('foresight-disk://', 'memory://')
    >>> stores.by_url(store_url("disk")) is DiskStore
    True
    """
    if kind == "memory":
        return "memory://"
    if kind != "disk":
        raise ValueError(f"table store {kind!r}: 'disk' or 'memory'")
    stores.STORES[SCHEME] = f"{__name__}:DiskStore"
    return f"{SCHEME}://"
