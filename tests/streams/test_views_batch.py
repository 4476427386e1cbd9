"""The read model's batch path (``ViewStore.on_windows_arrays``, the model agent's) against the
per-series path it replaced (``SeriesView.add_arrays`` and ``SeriesSelector.observe`` a series at
a time): the same random batches give the same API JSON, snapshots and per-series gauges."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import generate_latest

from streams.metrics import Metrics, SeriesSelector
from streams.web import Anomaly, ViewStore
from streams.web.readmodel import TAIL

T0 = 1_700_000_000.0


def per_series(store: ViewStore, names: list[str], starts: np.ndarray, observed: np.ndarray, step: float,
               fc: np.ndarray, coverage: float, model: str, warm: np.ndarray, error: np.ndarray,
               scores: np.ndarray, anomalous: np.ndarray, drifting: np.ndarray,
               anomalies: dict[int, Anomaly], learnt: np.ndarray) -> dict[int, Exception]:
    """The model agent's loop and ``ViewStore.on_window_arrays`` as they were before the batch path."""
    starts_l, observed_l, error_l = starts.tolist(), observed.tolist(), error.tolist()
    score_l, anomalous_l, drifting_l = scores.tolist(), anomalous.tolist(), drifting.tolist()
    warm_l, learnt_l = warm.tolist(), learnt.tolist()
    errors = {}
    for i, series in enumerate(names):
        try:
            e = error_l[i]
            points = fc[i].copy()
            v = store.view(series)
            v.learnt = learnt_l[i]
            if not v.add_arrays(starts_l[i], observed_l[i], step, points,
                                (starts_l[i], coverage, model, warm_l[i], None if e != e else e),
                                score_l[i], anomalous_l[i], drifting_l[i], anomalies.get(i)):
                continue
            if store.selector is not None:
                intervals = points[:, -3:]
                first = tuple(intervals[0].tolist()) if len(points) else None
                store.selector.observe(series, observed_l[i], score_l[i], first,  # type: ignore[arg-type]
                                       max(intervals[:, 2].tolist(), default=None))
        except Exception as exc:  # noqa: BLE001 - as the model agent: one series never stops the others
            errors[i] = exc
    return errors


def shown(store: ViewStore, series: str) -> tuple[bytes, ...]:
    """What the API serves of a series (summary, detail, detail since a time) and its snapshot."""
    v = store.series[series]
    since = (v.hi - 5) * v.step if v.hi >= 0 else None
    return (orjson.dumps(v.summary()), orjson.dumps(v.detail()), orjson.dumps(v.detail(since)), v.dumps(),
            store.snapshot_series(v))


def gauges(store: ViewStore) -> list[bytes]:
    """The store's metrics as scraped, but when each was created."""
    return [line for line in generate_latest(store.metrics.registry).splitlines() if b"_created" not in line]


def random_batch(rng: random.Random, nrng: np.random.Generator, pool: list[str], hi: dict[str, int],
                 step: float, horizon: int) -> tuple[Any, ...]:
    names = rng.sample(pool, rng.randint(1, len(pool)))
    if rng.random() < 0.1:
        names.append(rng.choice(names))  # a series twice in one batch
    ks = []
    for s in names:
        k = hi.get(s)
        r = rng.random()
        if k is None or r < 0.03:
            k = rng.randint(0, 10_000)  # new, or a jump past the view's size
        elif r < 0.75:
            k += 1
        elif r < 0.9:
            k += rng.randint(2, TAIL + 4)  # a gap (some past the tail's TAIL windows)
        else:
            k -= rng.randint(0, 3)  # a replay
        hi[s] = max(hi.get(s, k), k)
        ks.append(k)
    n = len(names)
    starts = np.array(ks, float) * step
    observed = nrng.normal(100, 20, n)
    observed[nrng.random(n) < 0.05] = np.nan
    fc = (100 + nrng.normal(0, 30, (n, horizon, 3))).astype(np.float32)
    fc[nrng.random((n, horizon, 3)) < 0.03] = np.nan
    warm = nrng.random(n) < 0.8
    error = np.where(nrng.random(n) < 0.2, np.nan, nrng.random(n))
    scores = nrng.random(n)
    anomalous = nrng.random(n) < 0.15
    drifting = nrng.random(n) < 0.3
    anomalies = {i: Anomaly(float(starts[i]), float(observed[i]), float(scores[i]), 0.9, "D")
                 for i in np.flatnonzero(anomalous).tolist()}
    learnt = nrng.integers(0, 10_000, n)
    return (names, starts, observed, step, fc, 0.8, "EnsembleForecaster", warm, error, scores, anomalous,
            drifting, anomalies, learnt)


@pytest.mark.parametrize(("size", "on_disk"), [(24, False), (24, True), (8, False), (8, True)])
def test_the_batch_path_serves_and_snapshots_what_the_per_series_path_did(tmp_path: Path, size: int, on_disk: bool):
    """Views of ``size`` windows (8: fewer than a tail's), their history in memory or in a file
    (which refuses writes after a while: both paths then show the same missing windows, not
    what the file held)."""
    rng, nrng = random.Random(7), np.random.default_rng(7)
    pool = [f"svc{i}/rps" for i in range(40)] + ["pick/a", "pick/b", "named/x"]
    stores = []
    for which in ("old", "new"):
        m = Metrics()
        stores.append(ViewStore(size, m, SeriesSelector(m, names={"named/x"}, patterns=["pick/*", "svc1*"], cap=6),
                                directory=tmp_path / which if on_disk else None))
    old, new = stores
    hi: dict[str, int] = {}
    for batch in range(400):
        step = 20.0 if batch % 97 == 50 else 10.0  # now and then a batch at another step (a rebase)
        args = random_batch(rng, nrng, pool, hi, step, rng.choice([5, 5, 5, 3, 0]))
        assert per_series(old, *args) == {}
        assert new.on_windows_arrays(*args) == {}
        fc = args[4]
        assert not any(np.shares_memory(new.series[s]._fc, fc) for s in args[0]), "a view keeps the batch alive"
        if batch % 37 == 36:  # a view restored from its snapshot (its forecast no longer the store's row)
            s = rng.choice(sorted(old.series))
            for store in (old, new):
                store.restore_series(s, store.snapshot_series(store.series[s]))
        if on_disk and batch == 300:  # the history file refuses writes from now on (still read)
            for store in (old, new):
                fd = store.rings._fd
                store.rings._fd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
                os.close(fd)
        if batch % 53 == 52:  # a view evicted, back later
            s = rng.choice(sorted(old.series))
            for store in (old, new):
                store.evict(s)
        assert sorted(new.series) == sorted(old.series)
        # the batch's series every batch, every series every 25 batches (a view changes only when
        # it is updated, evicted, restored, or its history file refuses, checked at batch 300)
        for s in (old.series if batch % 25 == 0 or batch == 399 else old.series.keys() & set(args[0])):
            assert shown(new, s) == shown(old, s), (batch, s)
        assert gauges(new) == gauges(old)
    assert 0 < len(old.selector.exported) == len(new.selector.exported) == 6


def test_a_series_whose_view_update_raises_fails_alone_and_single_windows_are_batches_of_one():
    rng, nrng = random.Random(3), np.random.default_rng(3)
    pool = [f"svc{i}/rps" for i in range(10)]
    old, new = ViewStore(24, Metrics()), ViewStore(24, Metrics())
    hi: dict[str, int] = {}
    for _ in range(30):
        args = random_batch(rng, nrng, pool, hi, 10.0, 4)
        per_series(old, *args)
        new.on_windows_arrays(*args)
    names, starts, observed, step, fc, coverage, model, warm, error, scores, anomalous, drifting, _, learnt = (
        random_batch(rng, nrng, pool, {s: hi[s] + 10_000 for s in hi}, 10.0, 4))  # all new windows
    names = list(dict.fromkeys(names))[:5]
    n = len(names)
    bad = {1: Anomaly("not a time", 1.0, 1.0, 0.9, "D")}  # type: ignore[arg-type]
    batch = (names, starts[:n], observed[:n], step, fc[:n], coverage, model, warm[:n], error[:n], scores[:n],
             anomalous[:n], drifting[:n], bad, learnt[:n])
    assert list(per_series(old, *batch)) == [1]
    failed = new.on_windows_arrays(*batch)
    assert list(failed) == [1] and isinstance(failed[1], ValueError)
    for s in names[:1] + names[2:]:
        assert shown(new, s) == shown(old, s)
    # one window: a batch of one
    s, t = names[0], float(starts[0]) + 10.0
    old.series[s].add_arrays(t, 5.0, 10.0, fc[0].copy(), (t, 0.8, "M", True, None), 0.5, False, False, None)
    old.series[s].learnt = 7
    new.on_window_arrays(s, t, 5.0, 10.0, fc[0], (t, 0.8, "M", True, None), 0.5, False, False, None, 7)
    assert shown(new, s) == shown(old, s)
    with pytest.raises(ValueError, match="issued at ts"):
        new.on_window_arrays(s, t + 10, 5.0, 10.0, fc[0], (t, 0.8, "M", True, None), 0.5, False, False, None, 8)
