from __future__ import annotations

import math

import pytest

from streams.records import Aggregate, InvalidRecord
from streams.windowing import Windower


def agg(series, ts, count=1, value=None, interval=1.0):
    v = 0.0 if value is None else value
    return Aggregate(series, ts, interval, count, v * count, v if value is not None else math.inf,
                     v if value is not None else -math.inf)


def test_event_rate_and_metric_mean_per_window():
    w = Windower(step=10, lateness_windows=2)
    for s in range(30):
        w.add(agg("e", 100 + s, count=3), "events")
        w.add(agg("m", 100 + s, value=float(s % 10)), "metrics")
    w.add(agg("e", 160), "events")  # e's time 160: closes e's [100,110) .. [130,140)
    w.add(agg("m", 150, value=0.0), "metrics")  # m's time 150: closes m's [100,110) .. [120,130)
    pts = {(p.series, p.start): p for p in w.close_ready()}
    # "e" had no events in [130, 140): a zero rate; "m" had no samples: no point
    assert sorted(pts) == [("e", t) for t in (100.0, 110.0, 120.0, 130.0)] + [
        ("m", t) for t in (100.0, 110.0, 120.0)]
    assert pts[("e", 130.0)].value == 0.0 and pts[("e", 130.0)].count == 0
    assert pts[("e", 100.0)].value == 3.0 and pts[("e", 100.0)].count == 30
    assert pts[("m", 110.0)].value == pytest.approx(4.5)
    assert pts[("m", 110.0)].min == 0.0 and pts[("m", 110.0)].max == 9.0
    assert w.close_ready() == [], "windows close once"


def test_late_aggregate_rejected_not_merged():
    w = Windower(step=10, lateness_windows=2)
    w.add(agg("e", 5), "events")
    w.add(agg("e", 29), "events")
    w.add(agg("e", 12), "events")  # still open: within lateness
    w.add(agg("e", 30), "events")
    closed = w.close_ready()
    assert [(p.start, p.count) for p in closed] == [(0.0, 1)]
    with pytest.raises(InvalidRecord) as e:
        w.add(agg("e", 9), "events")
    assert e.value.reason == "late"


def test_interval_longer_than_window_rejected():
    w = Windower(step=10)
    with pytest.raises(InvalidRecord) as e:
        w.add(agg("e", 0, interval=60), "events")
    assert e.value.reason == "bad_value"


def test_quiet_event_series_get_zero_rate_points_on_the_partitions_progress():
    from streams.windowing import GAP_FILL_WINDOWS

    w = Windower(step=10, lateness_windows=0)
    w.add(agg("e", 0, count=5), "events")
    w.add(agg("m", 0, value=1.0), "metrics")
    for o in ("o1", "o2", "o3"):  # most series are at 45: the partition's progress is 45
        w.add(agg(o, 45), "events")
    pts = [(p.series, p.start, p.value) for p in w.close_ready()]
    assert ("e", 0.0, 0.5) in pts
    assert [(s, v) for s, t, v in pts if s == "e" and t > 0] == [("e", 0.0)] * 3, "zeros for 10, 20, 30"
    assert ("m", 0.0, 1.0) in pts
    assert not [p for p in pts if p[0] == "m" and p[1] > 0], "metric series are not filled"
    for o in ("o1", "o2", "o3"):
        w.add(agg(o, 10 * (GAP_FILL_WINDOWS + 10)), "events")
    later = [p for p in w.close_ready() if p.series == "e"]
    assert len(later) == GAP_FILL_WINDOWS - 3 and all(p.count == 0 for p in later)
    assert max(p.start for p in later) == 10 * GAP_FILL_WINDOWS
    assert "e" not in w.open and "e" not in w.last_data, "a long-quiet series is forgotten"


def test_a_series_that_goes_quiet_is_closed_once_it_stops_counting_as_active():
    from streams.windowing import RECENT_ADDS

    w = Windower(step=10, lateness_windows=1)
    w.add(agg("quiet", 3, count=4), "events")
    closed_at = None
    for i in range(RECENT_ADDS + 100):
        w.add(agg("busy", 3 + i), "events")
        if any(p.series == "quiet" and p.count == 4 for p in w.close_ready()):
            closed_at = i
            break
    assert closed_at is not None, "the quiet series' window never closed"
    assert closed_at <= RECENT_ADDS + 64  # pruned every 32 aggregates


def test_one_skewed_clock_affects_only_its_own_series():
    w = Windower(step=10, lateness_windows=2, max_future=600)
    t0 = 1_700_000_000.0
    rejected = []
    for i in range(100):
        for s in ("a", "b", "c", "d"):
            w.add(agg(s, t0 + i), "events")  # none of these may be late or future
        try:
            w.add(agg("skewed", t0 + 3600 + i), "events")
        except InvalidRecord as e:
            rejected.append(e.reason)
    assert rejected == ["future"] * 100
    w.add(agg("skewed", t0 + 99), "events")  # its clock fixed: accepted again
    pts = w.close_ready()
    assert {p.series for p in pts} == {"a", "b", "c", "d"}
    assert all(p.count == 10 for p in pts)


def test_a_skewed_series_that_came_first_does_not_hold_its_windows_open():
    w = Windower(step=10, lateness_windows=2, max_future=600)
    w.add(agg("skewed", 5000, count=3), "events", ref=0)  # alone: it sets the pace
    for i in range(5):
        for s in ("a", "b"):
            w.add(agg(s, 1000 + i), "events", ref=1 + i)
    with pytest.raises(InvalidRecord):
        w.add(agg("skewed", 5001), "events", ref=9)  # now judged against the others: future
    assert ("skewed", 5000.0, 3) in [(p.series, p.start, p.count) for p in w.close_ready()]
    assert w.min_needed() == 1, "its window no longer holds the commit"
    for s in ("a", "b"):  # the others were neither late nor cut into pieces
        w.add(agg(s, 1040), "events")
    assert sorted((p.series, p.start, p.count) for p in w.close_ready() if p.count) == [
        ("a", 1000.0, 5), ("b", 1000.0, 5)]


def test_when_most_series_jump_ahead_together_the_typical_time_follows():
    w = Windower(step=10, lateness_windows=2, max_future=600)
    for s in ("a", "b", "c"):
        w.add(agg(s, 1000), "events")
    reasons = []
    for i in range(5):
        for s in ("a", "b", "c"):
            try:
                w.add(agg(s, 9000 + i), "events")
            except InvalidRecord as e:
                reasons.append(e.reason)
    assert reasons == ["future"], "only the first series to jump waits for the others"


def test_a_new_series_behind_the_partition_floor_is_late():
    w = Windower(step=10, lateness_windows=1)
    for t in range(0, 100, 5):
        w.add(agg("a", t), "events")
        w.add(agg("b", t), "events")
    with pytest.raises(InvalidRecord) as e:
        w.add(agg("new", 20), "events")
    assert e.value.reason == "late"
    assert w.add(agg("new", 85), "events") == 80.0


def test_an_idle_live_partition_closes_on_the_wall_clock_only_when_live():
    now = 1_700_000_000.0
    w = Windower(step=10, lateness_windows=2, max_future=600)
    w.add(agg("a", now + 1, count=7), "events")
    w.tick(now + 20)
    assert w.close_ready() == []
    w.tick(now + 45)
    pts = w.close_ready()  # [now, now+10) + 2 windows of lateness + 1 of grace
    assert [(p.start, p.count) for p in pts] == [(now, 7)]
    old = Windower(step=10, lateness_windows=2, max_future=600)
    old.add(agg("a", 1000.0, count=7), "events")  # a replay of old data is never closed by the clock
    old.tick(now)
    assert old.close_ready() == []


def test_min_needed_is_the_lowest_offset_held_by_an_open_window():
    w = Windower(step=10, lateness_windows=0)
    assert w.min_needed() is None
    w.add(agg("a", 1), "events", ref=5)
    w.add(agg("b", 2), "events", ref=6)
    w.add(agg("a", 3), "events", ref=7)
    assert w.min_needed() == 5
    w.add(agg("a", 12), "events", ref=8)  # closes a's [0, 10); b's still open
    assert w.min_needed() == 6
    w.add(agg("b", 15), "events", ref=9)
    assert w.min_needed() == 8
    assert sorted((p.series, p.count) for p in w.close_ready()) == [("a", 2), ("b", 1)]


def test_window_count_overflow_is_out_of_range_not_a_crash():
    from streams.records import MAX_COUNT

    w = Windower(step=10)
    w.add(agg("a", 1, count=MAX_COUNT), "events")
    with pytest.raises(InvalidRecord) as e:
        w.add(agg("a", 2, count=1), "events")
    assert e.value.reason == "out_of_range"


# -- property-based: the whole input path (parse_input -> Windower) ------------
#
# Every case must end accepted or dead-lettered, nothing raises, each element is
# accounted for exactly once, and the accepted totals equal a reference model
# written independently of streams.records. FORESIGHT_FUZZ_EXAMPLES raises the
# number of cases (make chaos runs a larger search).

import os  # noqa: E402
import unicodedata  # noqa: E402

import orjson  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from streams import records  # noqa: E402
from streams.records import parse_input  # noqa: E402

FUZZ = int(os.environ.get("FORESIGHT_FUZZ_EXAMPLES", "1000"))
fuzz = settings(max_examples=FUZZ, deadline=None, suppress_health_check=list(HealthCheck))
#: the columnar property test's examples are ~20 ms each (batches of up to a few hundred
#: elements, both paths): fewer by default; FORESIGHT_FUZZ_EXAMPLES (make chaos) sets it too
fuzz_columns = settings(max_examples=int(os.environ.get("FORESIGHT_FUZZ_EXAMPLES", "300")), deadline=None,
                        suppress_health_check=list(HealthCheck))


def ref_series_ok(s) -> bool:
    """The documented grammar, written out: 1-256 chars, <= 1024 UTF-8 bytes,
    no C0/C1 controls, DEL, line/paragraph separators or lone surrogates."""
    if not isinstance(s, str) or not 1 <= len(s) <= 256:
        return False
    for ch in s:
        o = ord(ch)
        if o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029) or 0xD800 <= o <= 0xDFFF:
            return False
    return len(s.encode("utf-8")) <= 1024


def ref_number(v, lo=-1e30, hi=1e30) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool) and v == v
            and lo <= v <= hi and (not isinstance(v, int) or abs(v) <= 2**53))


def ref_count(e) -> int | None:
    """What the spec says one element contributes to its window: None if invalid."""
    if not isinstance(e, dict) or not ref_series_ok(e.get("series")):
        return None
    ts = e.get("ts")
    if not ref_number(ts, 0, 4102444800.0):
        return None
    # unknown fields are allowed (shallow: the generator never nests past MAX_DEPTH;
    # deep nesting is tested apart, in test_records)
    if "count" in e:
        c, iv = e["count"], e.get("interval", 0)
        if not ref_number(c, 0, 2**53) or c != int(c):
            return None
        if iv is not None and (not ref_number(iv, 0, 86400)):
            return None
        for f in ("sum", "min", "max"):
            if e.get(f) is not None and not ref_number(e[f]):
                return None
        if e.get("min") is not None and e.get("max") is not None and e["min"] > e["max"]:
            return None
        return int(c)
    if e.get("value") is not None and not ref_number(e["value"]):
        return None
    return 1


weird_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12)
series_ids = st.one_of(st.sampled_from(["a", "b/c", "d e", "\u00e9"]), weird_text,
                       st.sampled_from(["\ud800", "x\x00", "y\n", "\x85", "z" * 300]))
numbers = st.one_of(st.integers(-5, 50), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([1e20, 2**53, 2**53 + 1, 10**25, -1, 0.5, 1e308]))
scalars = st.one_of(st.none(), st.booleans(), numbers, weird_text)
elements = st.one_of(
    st.fixed_dictionaries(
        {"series": series_ids, "ts": st.one_of(st.floats(1000, 1100), numbers, weird_text)},
        optional={"count": numbers, "interval": st.one_of(st.floats(0, 10), numbers),
                  "sum": numbers, "min": numbers, "max": numbers, "value": numbers,
                  "extra": st.one_of(scalars, st.lists(scalars, max_size=3))}),
    scalars, st.lists(scalars, max_size=3),
)


def _encode(v) -> bytes:
    # json keeps lone surrogates (as escapes) and NaN/Infinity literals, as careless producers do
    import json

    return json.dumps(v).encode()


@fuzz
@given(st.one_of(st.binary(max_size=300), elements.map(_encode),
                 st.lists(elements, max_size=8).map(_encode)))
def test_property_every_message_is_accepted_or_dead_lettered_once(raw):
    m = parse_input(raw)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        import json

        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            obj = None
            assert m.items == [] and m.dead is not None and m.dead.count == 1
            return
    batch = isinstance(obj, list)
    elems = obj if batch else [obj]
    expected = [ref_count(e) for e in elems]
    assert [a.count for a in m.items] == [c for c in expected if c is not None]
    bad = sum(c is None for c in expected)
    assert (m.dead.count if m.dead else 0) == bad
    if m.dead is not None:
        assert m.dead.reason in records.DLQ_REASONS
        if batch:
            assert [i for r in m.dead.ranges for i in range(r[0], r[1] + 1)] == [
                i for i, c in enumerate(expected) if c is None]
            assert parse_input(m.dead.raw()).items == [], "replaying the bad part accepts nothing twice"
        else:
            assert m.dead.raw() == raw
        body = records.dumps(records.dead_letter_of(m.dead, "t", 0, 0, len(raw)))
        assert records.parse_dead_letter(body).count == bad


def _message(rows):
    return orjson.dumps([{"series": s, "ts": t, "interval": 1.0, "count": c} for s, t, c in rows])


@fuzz
@given(st.lists(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "\ud800"]),
                                   st.integers(0, 400), st.integers(0, 5)), max_size=6),
                max_size=30),
       st.integers(0, 3), st.integers(1, 3))
def test_property_windows_conserve_every_accepted_event(batches, lateness, step):
    """Messages of aggregates with jittered timestamps through parse + windows:
    each element is either in exactly one point or in exactly one dead letter,
    and each window's count is the sum of what was accepted into it."""
    w = Windower(step=step * 10, lateness_windows=lateness, max_future=120)
    accepted: dict[tuple[str, float], int] = {}
    elements = dead = 0
    for rows in batches:
        raw = orjson.dumps([{"series": s, "ts": 1000 + t, "interval": 1.0, "count": c}
                            for s, t, c in rows if s != "\ud800"])
        if any(s == "\ud800" for s, _, _ in rows):
            raw = raw[:-1] + (b"," if rows and raw != b"[]" else b"") + b'{"series": "\\ud800", "ts": 1000}]'
            raw = raw.replace(b"[,", b"[")
        m = parse_input(raw)
        elements += len(rows)
        for k, agg in enumerate(m.items):
            try:
                start = w.add(agg, "events", ref=k)
            except InvalidRecord as exc:
                assert exc.reason in ("late", "future")
                m.reject(k, exc.reason, exc.error)
                continue
            accepted[(agg.series, start)] = accepted.get((agg.series, start), 0) + agg.count
        dead += m.dead.count if m.dead else 0
    points = w.close_ready() + w.close_all()
    got: dict[tuple[str, float], int] = {}
    for p in points:
        assert (p.series, p.start) not in got or p.count == 0, "a window closed twice"
        got[(p.series, p.start)] = got.get((p.series, p.start), 0) + p.count
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in accepted.items() if v}
    n_accepted = sum(1 for rows in batches for s, _, _ in rows if s != "\ud800") - (
        dead - sum(1 for rows in batches for s, _, _ in rows if s == "\ud800"))
    assert n_accepted + dead == elements
    assert w.open == {} and w.min_needed() is None


@fuzz
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 3), st.integers(1, 9)),
                max_size=60))
def test_property_in_order_traffic_is_all_accepted_and_equals_the_reference(rows):
    """Per-series non-decreasing timestamps, all series within max_future of each
    other: the spec says nothing is late or future, so the windows must hold
    exactly the reference sums."""
    w = Windower(step=10, lateness_windows=2, max_future=600)
    clock = {"a": 1000.0, "b": 1000.0, "c": 1000.0, "d": 1000.0}
    ref: dict[tuple[str, float], int] = {}
    for series, dt, count in rows:
        clock[series] += dt
        ts = clock[series]
        ref[(series, math.floor(ts / 10) * 10)] = ref.get((series, math.floor(ts / 10) * 10), 0) + count
        (agg_,) = parse_input(orjson.dumps({"series": series, "ts": ts, "interval": 1, "count": count})).items
        w.add(agg_, "events")
    got = {(p.series, p.start): p.count for p in w.close_ready() + w.close_all() if p.count}
    assert got == ref


def test_the_fuzz_alphabet_reaches_the_grammar_edges():
    # guard: the generator can produce every kind of bad id the grammar names
    assert unicodedata.category("\x85") == "Cc" and not ref_series_ok("\ud800")


def test_evicting_a_series_closes_its_windows_and_releases_its_offsets():
    w = Windower(step=10, lateness_windows=2)
    w.add(agg("other", 100, count=1), "events", ref=0)
    w.add(agg("quiet", 101, count=4), "events", ref=1)
    w.add(agg("quiet", 112, count=2), "events", ref=2)
    assert w.min_needed() == 0
    assert w.evict("quiet") and not w.evict("never-seen")
    pts = [(p.series, p.start, p.count) for p in w.close_ready()]
    assert pts == [("quiet", 100.0, 4), ("quiet", 110.0, 2)], "its windows, complete, once"
    assert w.min_needed() == 0, "only the other series' window still holds an offset"
    assert "quiet" not in w.open and "quiet" not in w.wm and "quiet" not in w.last_data
    with pytest.raises(InvalidRecord, match="late"):  # never a second, partial point
        w.add(agg("quiet", 113, count=1), "events")
    w.add(agg("quiet", 125, count=1), "events", ref=3)  # a later window: the series again
    w.add(agg("quiet", 160, count=1), "events", ref=4)
    assert [(p.start, p.count) for p in w.close_ready()] == [(120.0, 1), (130.0, 0)]


def test_series_share_one_float_per_window_start():
    from streams import windowing

    w = Windower(step=10, lateness_windows=2, max_future=math.inf)
    for s in ("a", "b", "c"):
        w.add(agg(s, 101.0 + len(s), count=1), "events", ref=0)
        w.add(agg(s, 112.0, count=1), "events", ref=1)
    starts = [list(w.open[s]) for s in ("a", "b", "c")]
    assert starts[0] == [100.0, 110.0] and all(x is y for s in starts[1:] for x, y in zip(starts[0], s, strict=True))
    assert all(start is starts[0][0] or start is starts[0][1] for start in w._due_keys)
    for i in range(windowing.MAX_SHARED_STARTS + 5):  # bounded: old starts are let go
        w.add(agg("d", 200.0 + 10 * i, count=1), "events")
    assert len(w._starts) <= windowing.MAX_SHARED_STARTS + 1
    assert [(p.start, p.count) for p in w.close_all() if p.series == "a"][:2] == [(100.0, 1), (110.0, 1)]


# -- columnar batches: Windower.add_columns is add_rows, element for element ----------------

import numpy as np  # noqa: E402

from streams.budget import SeriesBudget  # noqa: E402


def _columns(rows):
    """rows (series, ts, interval, count, sum, min, max) as add_columns' arrays."""
    if not rows:
        return [], *(np.empty(0) for _ in range(6))
    series, ts, iv, count, total, lo, hi = zip(*rows, strict=True)
    return (list(series), np.array(ts, float), np.array(iv, float), np.array(count, np.int64),
            np.array(total, float), np.array(lo, float), np.array(hi, float))


def _state(w: Windower):
    # (a series queued twice at one time is closed once: the second entry finds it closed)
    due = sorted({(t, s) for t, series in w._due.items() for s in series})
    assert sorted(w._due_keys) == sorted(w._due)
    assert sorted(w._held_keys) == sorted(w._held)
    # the references still held (a closed window's entry is stale: min_needed drops it when met)
    live = {id(acc) for r, entries in w._held.items() for acc in entries if acc[4] == r}
    held = sorted((acc[4], s, t) for s, wins in w.open.items() for t, acc in wins.items() if id(acc) in live)
    return (w.open, w.closed_until, w.wm, w.kinds, w.last_data, list(w.recent.items()), w.adds,
            w.typical, w._typical_at, w.progress, w.floor, due, held)


def _same_as_rows(batches, step, lateness, max_future, limit, kind="events", state_each=True, rows_below=0,
                  stats=None):
    """Feed the same batches to two windowers, by rows and by columns (each with its own series
    budget of ``limit``): the same rejections, points, safe offsets and state after every batch
    (``state_each=False``: the state at the end only, so the columns' windower reads its own
    ``recent`` only when its rows' path needs it; ``rows_below``: the columns' windower takes
    the batches of fewer elements by rows too, as the window agent does small messages; ``stats``:
    counts there the batches of rows that came while the group-by held the claims). The columns'
    windower asks its budget to admit each batch at once first (``admit_all``, on either path), as
    the window agent does."""
    a = Windower(step, lateness, max_future)
    b = Windower(step, lateness, max_future)
    budget_a, budget_b = SeriesBudget(limit), SeriesBudget(limit)
    for now, (rows, refs) in enumerate(batches):  # (each batch's series last seen at its number)
        bad_a = a.add_rows(rows, kind, refs, admit=lambda s, now=now: budget_a.admit(s, now))
        if len(rows) < rows_below:
            if stats is not None:
                stats["stale_rows"] = stats.get("stale_rows", 0) + b._stale
            bad_b = b.add_rows(rows, kind, refs, admit=lambda s, now=now: budget_b.admit(s, now),
                               admit_all=lambda s, now=now: budget_b.admit_tracked(s, now))
        else:
            bad_b = b.add_columns(*_columns(rows), np.array(refs, np.int64), kind,
                                  admit=lambda s, now=now: budget_b.admit(s, now),
                                  admit_all=lambda s, now=now: budget_b.admit_tracked(s, now))
        assert [(k, e and e.reason, e and e.error) for k, e in bad_a] == [
            (k, e and e.reason, e and e.error) for k, e in bad_b]
        assert a.close_ready() == b.close_ready()
        assert a.min_needed() == b.min_needed()
        if state_each:
            assert _state(a) == _state(b)
        assert budget_a.refused == budget_b.refused and budget_a.last == budget_b.last
    assert _state(a) == _state(b)
    assert a.close_all() == b.close_all()
    return b


@st.composite
def column_batches(draw):
    """Batches of a partition's traffic: many series moving on together (the steady state the
    group-by takes), with late, early, bad-interval and overflowing elements and new series,
    cut into batches of messages (each message's elements share an offset)."""
    n_series = draw(st.integers(2, 12))
    names = [f"s{i}" for i in range(n_series)]
    rare = draw(st.sampled_from([8, 30, 300]))  # one perturbation in about rare / 6 elements
    t = 1000.0
    rows = []
    for _ in range(draw(st.integers(1, 40))):
        t += draw(st.sampled_from([0.0, 1.0, 2.5, 7.0]))
        for s in names[: draw(st.integers(1, n_series))]:
            ts = t + draw(st.floats(0, 3))
            kind = draw(st.integers(0, rare))
            if kind == 0:
                ts -= draw(st.floats(0, 80))  # late, or within the lateness
            elif kind == 1:
                ts += draw(st.sampled_from([200.0, 900.0, 5000.0]))  # ahead of the typical time
            elif kind == 2:
                s = f"new{draw(st.integers(0, 30))}"
            count = draw(st.integers(0, 5)) if kind != 3 else 2**52 + 1
            iv = 1.0 if kind != 4 else 100.0
            lo = draw(st.floats(-5, 5))
            rows.append((s, ts, iv, count, lo * count, lo, lo + draw(st.floats(0, 2))))
    batches, i, ref = [], 0, 0
    while i < len(rows):
        k = draw(st.integers(1, 60))
        part = rows[i:i + k]
        refs = []
        for _ in part:
            refs.append(ref)
            if draw(st.integers(0, 3)) == 0:
                ref += 1
        ref += 1
        batches.append((part, refs))
        i += k
    return batches


@fuzz_columns
@given(column_batches(), st.sampled_from([5.0, 10.0]), st.integers(0, 2), st.sampled_from([60.0, 600.0]),
       st.integers(3, 40))
def test_property_columns_window_as_rows(batches, step, lateness, max_future, limit):
    """add_columns gives add_rows' points, dead letters (positions, reasons, texts), safe
    offsets, series budget and windower state, batch after batch."""
    _same_as_rows(batches, step, lateness, max_future, limit)


def test_columns_of_steady_traffic_take_the_group_by():
    names = [f"svc{i}" for i in range(50)]
    batches, ref = [], 0
    for second in range(0, 200, 20):
        rows = [(s, 1000.0 + second + j + 0.5, 1.0, 3, 3.0, 1.0, 1.0) for j in range(20) for s in names]
        batches.append((rows, [ref + k // 100 for k in range(len(rows))]))
        ref += len(rows)
    for kind in ("events", "metrics"):
        b = _same_as_rows(batches, 10.0, 1, 600.0, 1000, kind)
        total = sum(len(r) for r, _ in batches)
        assert b.merged >= total - 2 * 50 * 20, "all but the first batch's are merged by the group-by"


@pytest.mark.parametrize("seed", range(40))
def test_columns_window_as_rows_in_large_batches(seed):
    """Seeded streams of up to 300 series in batches of up to 3,000 elements (the window agent's
    calls are large): series going quiet and coming back, jumps of the partition's time, rare
    late, early, bad-interval and new-series elements; events and metrics; a series limit."""
    _large_batches_as_rows(seed, [1.0, 5.0, 10.0], 1000.0)


@pytest.mark.parametrize("seed", range(20))
def test_columns_window_as_rows_with_the_state_read_only_at_the_end(seed):
    """As above, the windowers' state compared only at the end: between batches the group-by
    keeps the series' claims in its arrays only, and the rows' path (new series, late or early
    elements) brings ``recent`` up to date itself."""
    _large_batches_as_rows(seed, [1.0, 5.0, 10.0], 1000.0, state_each=False)


@pytest.mark.parametrize("seed", range(16))
def test_small_batches_of_rows_between_columns_window_as_rows(seed):
    """Batches of rows between columnar ones (the window agent reads a message of fewer than
    records.ROWS_AS_COLUMNS aggregates as rows): while the group-by holds the partition's claims
    in its arrays, add_rows takes its rows as columns; the same as rows all along."""
    _large_batches_as_rows(seed, [1.0, 5.0, 10.0], 1000.0, sizes=(1, 7, 50, 500, 3000),
                           state_each=bool(seed % 2), rows_below=60)
    # (the state compared at the end only: reading it brings recent up to date)
    stats = {}
    _mostly_steady(seed, sizes=(3, 30, 100, 400), rows_below=50, state_each=False, stats=stats)
    assert stats.get("stale_rows"), "rows came while the group-by held the claims"


@pytest.mark.parametrize("seed", range(24))
def test_columns_of_mostly_steady_traffic_window_as_rows(seed):
    """Seeded mostly steady streams (mostly merged by the group-by, so its shortcuts are
    what is compared: series in time order or not, windows open already or new, closes at the
    series' own time or the partition's, gaps), also at window lengths that are not whole
    seconds and at epoch timestamps (the group-by matches a series' open windows to the
    batch's by window number, start / step)."""
    _mostly_steady(seed)


def _mostly_steady(seed, sizes=(30, 100, 400), rows_below=0, state_each=True, stats=None):
    import random

    rng = random.Random(seed)
    step = rng.choice([0.1, 0.3, 1.0, 2.5, 10.0])
    t = rng.choice([1077.7, 1_700_000_000.123])
    names = [f"s{i}" for i in range(rng.choice([5, 40, 120]))]
    present = rng.choice([1.0, 0.98])  # each series' chance to report at each tick
    spread = rng.choice([1.0, 1.2])  # (above 1: a series' aggregates at times before its last)
    rows = []
    for _ in range(rng.randint(60, 200)):
        dt = step * rng.choice([0.1, 0.3, 0.5])
        t += dt
        for s in names:
            if rng.random() > present:
                continue
            ts, r = t + rng.random() * dt * spread, rng.random()
            if r < 0.0005:
                ts -= rng.uniform(0, 5 * step)  # late, or within the lateness
            count, lo = rng.randint(0, 5), rng.uniform(-5, 5)
            rows.append((s, ts, min(1.0, step), count, lo * count, lo, lo + rng.random()))
    batches, i, ref = [], 0, 0
    while i < len(rows):
        k = rng.choice(sizes)
        part, refs = rows[i:i + k], []
        for _ in part:
            refs.append(ref)
            ref += rng.random() < 0.05
        ref += 1
        batches.append((part, refs))
        i += k
    b = _same_as_rows(batches, step, rng.randint(1, 3), rng.choice([60.0, 600.0]), 100_000,
                      rng.choice(["events", "metrics"]), state_each, rows_below, stats)
    assert b.merged >= len(rows) // 20, ("the group-by merged little", b.merged, len(rows))
    return b


def _large_batches_as_rows(seed, steps, t0, names=(2, 10, 50, 300), p_bads=(0.0, 0.0005, 0.005, 0.05),
                           sizes=(1, 50, 500, 3000), limits=(5, 100_000), state_each=True, rows_below=0):
    import random

    rng = random.Random(seed)
    names = [f"s{i}" for i in range(rng.choice(names))]
    p_bad = rng.choice(p_bads)
    quiet = set(rng.sample(names, k=len(names) // 5))
    step = rng.choice(steps)
    scale = min(1.0, step)  # (the time between ticks, and each aggregate's interval)
    rows = []
    for tick in range(rng.randint(5, 60)):
        t0 += scale * rng.choice([0.0, 0.5, 1.0, 3.0, 20.0 if rng.random() < 0.05 else 1.0])
        for s in names:
            if s in quiet and tick > 10 and (tick // 10) % 2:
                continue
            ts, iv, r = t0 + scale * rng.random(), scale, rng.random()
            if r < p_bad:
                ts -= rng.uniform(0, 10 * step)
            elif r < 2 * p_bad:
                ts += rng.choice([200.0, 900.0])
            elif r < 3 * p_bad:
                iv = 100.0
            elif r < 4 * p_bad:
                s = f"new{rng.randint(0, 50)}"
            count, lo = rng.randint(0, 5), rng.uniform(-5, 5)
            rows.append((s, ts, iv, count, lo * count, lo, lo + rng.random()))
    batches, i, ref = [], 0, 0
    while i < len(rows):
        k = rng.choice(sizes)
        part, refs = rows[i:i + k], []
        for _ in part:
            refs.append(ref)
            ref += rng.random() < 0.01
        ref += 1
        batches.append((part, refs))
        i += k
    return _same_as_rows(batches, step, rng.randint(0, 3), rng.choice([60.0, 600.0]),
                         rng.choice(limits), rng.choice(["events", "metrics"]), state_each, rows_below)


def test_a_quiet_event_series_with_a_later_window_open_gets_its_zeros_as_the_floor_passes():
    """A close that leaves windows open above its limit (none at it) still wakes the series there:
    the partition's floor then brings its zero-rate points, and its closed windows are late."""
    w = Windower(step=10, lateness_windows=1)
    w.add(agg("a", 5.0), kind="events", ref=0)
    w.add(agg("a", 45.0), kind="events", ref=1)  # closes [0, 10) and fills [10, 30) on a's time
    assert [(p.start, p.count) for p in w.close_ready()] == [(0.0, 1), (10.0, 0), (20.0, 0)]
    for s in ("b", "c"):
        w.add(agg(s, 55.0), kind="events", ref=2)  # the typical time 55: the floor is 40
    assert [(p.series, p.start, p.count) for p in w.close_ready()] == [("a", 30.0, 0)]
    with pytest.raises(InvalidRecord, match="late"):
        w.add(agg("a", 35.0), kind="events", ref=3)
    assert w.min_needed() == 1
