"""The disk table store: a mapping over sqlite that behaves as a dict, and a Faust store that
recovers and rebalances exactly as Faust's memory store does."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import faust
import pytest
from faust.events import Event
from faust.types import TP, Message

from streams.settings import Settings
from streams.tablestore import DiskStore, SqliteMapping, store_url
from streams.worker.context import faust_app


def test_mapping_behaves_as_a_dict_under_random_operations(tmp_path: Path) -> None:
    rng = random.Random(7)
    m, d = SqliteMapping(tmp_path), {}
    keys = [f"k{i}".encode() for i in range(40)]
    for _ in range(2000):
        k = rng.choice(keys)
        op = rng.random()
        if op < 0.4:
            v = rng.randbytes(rng.choice([0, 5, 40_000]))
            m[k] = d[k] = v
        elif op < 0.5:  # a batch (pairs, a key perhaps twice: the last wins; or a mapping)
            batch = [(rng.choice(keys), rng.randbytes(rng.choice([0, 5, 40_000]))) for _ in range(rng.randint(0, 4))]
            arg = dict(batch) if rng.random() < 0.3 else batch
            m.update(arg)
            d.update(arg)
        elif op < 0.7:
            assert (k in m) == (k in d)
            if k in d:
                del m[k], d[k]
            else:
                with pytest.raises(KeyError):
                    del m[k]
        elif op < 0.9:
            assert m.get(k) == d.get(k)
        else:
            assert m.pop(k, None) == d.pop(k, None)
        assert len(m) == len(d)
    assert dict(m.items()) == d and sorted(m) == sorted(d)
    with pytest.raises(KeyError):
        m[b"absent"]
    assert (1, 2) not in m  # a key sqlite cannot hold is simply not there
    m.clear()
    assert len(m) == 0 and list(m) == []


def test_iterating_while_changing_the_mapping_sees_the_keys_of_its_start() -> None:
    m = SqliteMapping(None)
    for i in range(5):
        m[bytes([i])] = b"x"
    for k in m:
        del m[k]
        m[k + b"!"] = b"y"
    assert sorted(m) == sorted(bytes([i]) + b"!" for i in range(5))


def test_the_database_file_is_gone_from_the_directory_as_soon_as_it_is_open(tmp_path: Path) -> None:
    m = SqliteMapping(tmp_path / "tables")
    m[b"k"] = b"v" * 100_000
    assert list((tmp_path / "tables").iterdir()) == []  # unlinked: it cannot outlive the process
    deleted = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}")]
    assert any(str(tmp_path / "tables") in p and p.endswith("(deleted)") for p in deleted)
    assert m[b"k"] == b"v" * 100_000
    m.close()


def _app(tmp_path: Path, store: str) -> faust.App:
    return faust.App(f"t-{store.split(':')[0]}", store=store, datadir=str(tmp_path / store.split(":")[0]))


def _event(app: faust.App, partition: int, key: bytes, value: bytes | None) -> Event:
    msg = Message("t-changelog", partition, 0, 0.0, 0, None, key, value, None)
    return Event(app, key, value, None, msg)


def test_the_disk_store_recovers_and_rebalances_as_the_memory_store(tmp_path: Path) -> None:
    """The same changelog batches (sets, overwrites, tombstones, a tombstone then a set in one
    batch), local writes and a recovery that keeps only some partitions leave the same table."""
    tables = {}
    for url in ("memory://", store_url("disk")):
        app = _app(tmp_path, url)
        table = app.Table("models", default=None, key_type=bytes, value_type=bytes, partitions=4)
        assert isinstance(table.data, DiskStore) == (url != "memory://")
        table.apply_changelog_batch([_event(app, p, f"s{p}-{i}".encode(), f"v{i}".encode())
                                     for p in range(4) for i in range(3)])
        table.apply_changelog_batch([
            _event(app, 0, b"s0-0", b"new"),             # overwritten
            _event(app, 1, b"s1-0", None),               # deleted
            _event(app, 2, b"s2-0", None), _event(app, 2, b"s2-0", b"back"),  # deleted, then set again
            _event(app, 3, b"s3-1", b"a"), _event(app, 3, b"s3-1", None),     # set, then deleted
        ])
        table.data[b"local"] = b"written here"      # not from a changelog: kept by recovery
        table.data[b"s3-2"] = b"written over"        # read from partition 3, then written here
        assert table.data.persisted_offset(TP("t-changelog", 0)) is None  # recovery reads it all
        asyncio.run(table.data.on_recovery_completed({TP("x", 0), TP("x", 2)}, {TP("x", 1)}))
        tables[url] = dict(table.data.items())
    memory_copy, disk_copy = tables.values()
    assert disk_copy == memory_copy
    assert disk_copy == {b"s0-0": b"new", b"s0-1": b"v1", b"s0-2": b"v2", b"s2-0": b"back",
                         b"s2-1": b"v1", b"s2-2": b"v2", b"local": b"written here"}


def test_the_worker_app_uses_the_store_its_settings_name(tmp_path: Path) -> None:
    for kind, store in (("disk", DiskStore), ("memory", faust.stores.memory.Store)):
        app = faust_app(Settings(data_dir=str(tmp_path / kind), table_store=kind, app_id=f"w-{kind}"))
        table = app.Table("models", default=None, key_type=bytes, value_type=bytes)
        assert type(table.data) is store
        table.data[b"k"] = b"v"
        assert table[b"k"] == b"v" and table.get(b"missing") is None and b"k" in table
    assert not list((tmp_path / "disk").rglob("*.sqlite"))  # the file lives only while open
    with pytest.raises(ValueError, match="'disk' or 'memory'"):
        store_url("rocksdb")
