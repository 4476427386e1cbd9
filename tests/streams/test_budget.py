"""streams.budget: which series a worker holds (the limit, idleness, protected series)."""

from __future__ import annotations

from streams.budget import SeriesBudget
from streams.settings import MEMORY_TABLE_BYTES, SERIES_BYTES, WORKER_BASE_MB, Settings


def test_new_series_beyond_the_limit_are_refused_and_counted_tracked_ones_never():
    b = SeriesBudget(limit=3)
    assert [b.admit(f"s{i}", now=0) for i in range(5)] == [True, True, True, False, False]
    assert b.refused == 2 and len(b) == 3
    assert all(b.admit(f"s{i}", now=t) for t in (1, 2) for i in range(3)), "tracked: always admitted"
    assert not b.admit("s3", now=3), "still refused while the others are held"
    assert b.refused == 3


def test_protected_series_are_taken_beyond_the_limit_and_never_idle():
    b = SeriesBudget(limit=1, idle_seconds=10, protected={"shop/checkout"})
    assert b.admit("a", now=0)
    assert b.admit("shop/checkout", now=0), "a PredictiveScaler series is never refused"
    assert b.counted == 1 and len(b) == 2
    assert b.idle(now=1000) == ["a"], "a PredictiveScaler series is never evicted"
    b.forget("a")
    assert b.admit("b", now=1000), "the protected series does not take a place"


def test_idle_series_oldest_first_and_forgetting_frees_their_place():
    b = SeriesBudget(limit=3, idle_seconds=60)
    for s, t in (("a", 0), ("b", 10), ("c", 20)):
        b.admit(s, now=t)
    b.admit("a", now=50)  # input again
    assert b.idle(now=79) == ["b"]
    assert b.idle(now=200) == ["b", "c", "a"], "oldest input first"
    assert not b.admit("d", now=200)
    for s in b.idle(now=200)[:2]:
        b.forget(s)
    assert b.admit("d", now=200) and b.admit("b", now=200), "an evicted series is new again"


def test_a_point_does_not_keep_a_series_alive_but_input_does():
    b = SeriesBudget(limit=5, idle_seconds=60)
    b.admit("a", now=0)
    b.admit("a", now=100, touch=False)  # a zero-rate point of a quiet event series
    assert b.idle(now=100) == ["a"]
    b.admit("a", now=100)
    assert b.idle(now=100) == []


def test_no_idle_time_never_evicts():
    b = SeriesBudget(limit=5, idle_seconds=0)
    b.admit("a", now=0)
    assert b.idle(now=1e9) == []


def test_retain_keeps_the_series_still_owned():
    b = SeriesBudget(limit=5, protected={"p"})
    for s in ("a", "b", "p"):
        b.admit(s, now=0)
    b.retain(lambda s: s != "a" and s != "p")
    assert set(b.last) == {"b"} and b.counted == 1


def test_the_default_limit_follows_the_memory_budget():
    assert Settings(max_series=7).max_series_limit() == 7, "set explicitly: as set"
    small, big = Settings(memory_limit_mb=1024), Settings(memory_limit_mb=4096)
    assert big.max_series_limit() > 3 * small.max_series_limit()
    for s in (small, big, Settings(table_store="memory")):  # what the limit holds fits in the budget
        assert WORKER_BASE_MB * 2**20 + s.max_series_limit() * s.series_bytes() <= s.memory_limit_mb * 2**20
    assert Settings(table_store="memory").series_bytes() == SERIES_BYTES + MEMORY_TABLE_BYTES
    assert Settings(table_store="memory").max_series_limit() < Settings().max_series_limit()
    assert Settings(memory_limit_mb=100).max_series_limit() == 100, "never below 100"
    assert Settings(max_series=-1).problems() and Settings(series_idle_seconds=-1).problems()
