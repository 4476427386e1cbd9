"""A row-format array of aggregates read as columns (``records.read_input``) is read exactly as
its rows: the same rows, or the rows' path when any element is not of the vectorised shape."""

from __future__ import annotations

import json
import random
import tracemalloc

import numpy as np
import orjson
import pytest

from streams import records
from streams.windowing import Windower

from .test_records import _EDGE_ELEMENTS, _as_columns, _check_columns_as_rows


def _good(i: int) -> dict:
    return {"series": f"svc{i % 37}/requests", "ts": 1700000000 + i, "interval": 1.0, "count": 100 + i,
            "sum": 0.0}


def _rows_of(raw: bytes):
    got = records.read_input(raw)
    return got.rows() if isinstance(got, records.InputColumns) else got


@pytest.mark.parametrize("seed", range(30))
def test_a_rows_array_reads_as_its_rows(seed):
    rng = random.Random(seed)
    n = rng.choice([records.ROWS_AS_COLUMNS - 1, records.ROWS_AS_COLUMNS, 500])
    elements = [_good(i) for i in range(n)]
    # some messages carry one element of the edge cases (the fast shape or not), some min/max
    if rng.random() < 0.7:
        elements[rng.randrange(n)] = rng.choice(_EDGE_ELEMENTS)
    if rng.random() < 0.5:
        for i, e in enumerate(elements[: n // 2]):
            if isinstance(e, dict) and "count" in e:
                elements[i] = dict(e, min=1.0, max=2)
    raw = orjson.dumps(elements)
    got = records.read_input(raw)
    assert _rows_of(raw) == records.fast_rows(raw)
    if isinstance(got, records.InputColumns):
        assert len(elements) >= records.ROWS_AS_COLUMNS and got.dead is None
        assert got.index.tolist() == list(range(n))
        assert got.rows() == records.parse_input_rows(raw).items
    elif got is None:
        assert records.fast_rows(raw) is None


def test_each_edge_element_in_a_large_array_reads_as_its_row():
    seen = 0
    for e in _EDGE_ELEMENTS:
        raw = orjson.dumps([_good(i) for i in range(200)] + [e])
        got = records.read_input(raw)
        assert _rows_of(raw) == records.fast_rows(raw), e
        seen += isinstance(got, records.InputColumns)
    assert seen >= 3, "the common shapes take the columns"


def test_a_rejected_element_of_a_rows_array_read_as_columns_is_dead_lettered_as_the_rows_are():
    """A late element: the same dead letter (position, reason, the element's own bytes: no
    nulls for the fields it did not have) as the rows' path gives."""
    elements = [_good(i) for i in range(300)] + [{"series": "svc1/requests", "ts": 1, "count": 3}]
    raw = orjson.dumps(elements)
    cols = records.read_input(raw)
    assert isinstance(cols, records.InputColumns)
    rows = records.parse_input_rows(raw)
    w, v = Windower(10.0, 1), Windower(10.0, 1)
    bad_c = w.add_columns(cols.series, cols.ts, cols.interval, cols.count, cols.sum, cols.min, cols.max,
                          np.zeros(len(cols), np.int64), "events")
    bad_r = v.add_rows(rows.items, "events", [0] * len(rows.items))
    assert [(k, e.reason) for k, e in bad_c] == [(k, e.reason) for k, e in bad_r] == [(300, "late")]
    for k, e in bad_c:
        cols.reject(k, e.reason, e.error)
    for k, e in bad_r:
        rows.reject(k, e.reason, e.error)
    assert cols.dead.raw() == rows.dead.raw() == orjson.dumps([elements[300]])
    assert cols.dead.ranges == rows.dead.ranges and cols.dead.reason == rows.dead.reason


#: values a field of an otherwise well-formed aggregate may hold: the edges of the vectorised
#: checks (bools are not numbers, integers past 2^53 / int64 / a float, NaN and infinity literals,
#: nulls, strings, containers, signed zeros, the bounds of ts, interval, count, sum)
_ODD_VALUES = [True, False, None, 0, 1, -1, 0.0, -0.0, 1.0, 2.5, 2**53 - 1, 2**53, 2**53 + 1, -(2**53),
               -(2**53) + 1, 2**63 - 1, 2**63, 2**64, 10**400, 1e30, -1e30, 1e31, 1e300,
               float("nan"), float("inf"), float("-inf"), 86400, 86400.5, 4102444800, 4102444800.5,
               "1", "", [1], [1700000000.5], {}, {"a": [1]}]
_ODD_SERIES = [7, None, 1.0, True, ["a"], {}, "", "bad\nid", "x" * 257, "\ud800", "svc1/requests"]


def _exact(rows):
    """Rows with every value's type and repr (tells -0.0 from 0.0, 1 from 1.0)."""
    return [tuple((type(v), repr(v)) for v in r) for r in rows]


def _odd_elements(rng: random.Random, n: int) -> list:
    """n well-formed aggregates (one key set, or two), then a few of them (or a whole field) odd."""
    elements = [_good(i) for i in range(n)]
    if rng.random() < 0.3:
        elements = [dict(e, min=float(i % 7), max=i % 7 + 0.5) for i, e in enumerate(elements)]
    if rng.random() < 0.3:
        elements = [dict(e, sum=i % 5) for i, e in enumerate(elements)]  # integer sums
    if rng.random() < 0.2:
        elements = [{k: e[k] for k in ("ts", "count", "series", "sum")} for e in elements]  # no interval
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        i = rng.randrange(n)
        if not isinstance(elements[i], dict):
            continue
        e = dict(elements[i])
        what = rng.random()
        if what < 0.55:
            e[rng.choice(["ts", "interval", "count", "sum", "min", "max"])] = rng.choice(_ODD_VALUES)
        elif what < 0.65:
            e["series"] = rng.choice(_ODD_SERIES)
        elif what < 0.75:
            e.pop(rng.choice(list(e)))
        elif what < 0.85:
            e[rng.choice(["extra", "value", "min", "max", "tags"])] = rng.choice([1.0, 2, None, "x"])
        else:
            elements[i] = rng.choice([None, 1, "text", [1, 2], []])
            continue
        elements[i] = e
    if rng.random() < 0.2:  # one field odd in every element (a column of bools, of nulls, ...)
        k, v = rng.choice(["ts", "interval", "count", "sum", "min", "max"]), rng.choice(_ODD_VALUES)
        elements = [dict(e, **{k: v}) if isinstance(e, dict) else e for e in elements]
    return elements


@pytest.mark.parametrize("seed", range(400))
def test_odd_values_read_as_columns_exactly_as_the_rows_path_reads_them(seed):
    """The vectorised reads (rows arrays read as columns, columnar batches) accept only what the
    rows' path accepts, with the same values (types and signs too), and send every other element
    to it: the same dead letters (reasons, ranges, bytes, errors)."""
    rng = random.Random(seed)
    n = rng.choice([records.ROWS_AS_COLUMNS, 200, 500]) if seed % 2 else rng.choice([1, 2, 7, 300, 2000])
    elements = _odd_elements(rng, n)
    raw = json.dumps(elements).encode()  # NaN / Infinity literals as a producer might send them
    rows = records.parse_input_rows(raw)
    got = records.read_input(raw)
    if isinstance(got, records.InputColumns):
        assert rows.dead is None and got.dead is None and got.index.tolist() == list(range(n)), raw[:300]
        assert _exact(got.rows()) == _exact(rows.items), raw[:300]
    elif got is not None:
        assert rows.dead is None and _exact(got) == _exact(rows.items), raw[:300]
    if all(isinstance(e, dict) for e in elements) and all("series" in e for e in elements):
        interval = rng.choice([None, None, 1.0, 1, 0, 86400, 86401, -1, True, None])
        cols, as_rows = _as_columns(elements, interval)
        c = _check_columns_as_rows(cols, as_rows)
        r = records.parse_input_rows(json.dumps(as_rows).encode())
        assert _exact(c.rows()) == _exact(r.items)


def _check_rows_array(elements) -> bool:
    """read_input of a rows array is parse_input_rows' result, exactly; True if read as columns."""
    raw = json.dumps(elements).encode()
    rows = records.parse_input_rows(raw)
    got = records.read_input(raw)
    if isinstance(got, records.InputColumns):
        assert rows.dead is None and got.dead is None and got.index.tolist() == list(range(len(elements))), raw[:300]
        assert _exact(got.rows()) == _exact(rows.items), raw[:300]
        return True
    if got is not None:
        assert rows.dead is None and _exact(got) == _exact(rows.items), raw[:300]
    return False


def test_every_odd_value_of_every_field_reads_as_the_rows_path_reads_it():
    """Each odd value in each field, in one element and in every element, of arrays whose other
    fields are floats, integers, or with min and max: the rows' result exactly."""
    bases = [[_good(i) for i in range(200)],
             [dict(_good(i), sum=i % 5 - 2) for i in range(200)],
             [dict(_good(i), min=float(i % 3), max=i % 3 + 1) for i in range(200)],
             [dict(_good(i), interval=0.0) for i in range(200)],  # (-0.0 == 0.0, True == 1.0)
             [dict(_good(i), interval=1) for i in range(200)]]
    as_columns = 0
    for base in bases:
        as_columns += _check_rows_array(base)
        for k in ("ts", "interval", "count", "sum", "min", "max"):
            for v in _ODD_VALUES:
                one = list(base)
                one[137] = dict(one[137], **{k: v})
                every = [dict(e, **{k: v}) for e in base]
                for elements in (one, every):
                    as_columns += _check_rows_array(elements)
                    _check_columns_as_rows(*_as_columns(elements[130:140]))
        for s in _ODD_SERIES:
            one = list(base)
            one[5] = dict(one[5], series=s)
            as_columns += _check_rows_array(one)
            _check_columns_as_rows(*_as_columns(one[:10]))
    assert as_columns > 100, "the vectorised read taken"


@pytest.mark.parametrize("field", ["ts", "interval", "count", "sum", "min"])
def test_a_long_string_in_a_number_column_costs_its_own_bytes_not_one_per_entry(field):
    """numpy reads a list holding a string, unchecked, as fixed-width text: every entry as wide
    as the longest (here 2,001 x 20,000 x 4 bytes = 160 MB). The vectorised reads check the
    types before numpy sees a column, so the message costs about its own size."""
    elements = [_good(i) for i in range(2000)] + [dict(_good(0), **{field: "x" * 20_000})]
    raws = [orjson.dumps(elements)]
    cols, _ = _as_columns(elements)
    raws.append(orjson.dumps(cols))
    for raw in raws:
        records.read_input(raw)  # warm the series cache
        tracemalloc.start()
        try:
            got = records.read_input(raw)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 20 * len(raw), peak
        if isinstance(got, records.InputColumns):  # the columnar batch: the one bad element
            assert len(got) == 2000 and got.dead.ranges == [[2000, 2000]]


@pytest.mark.parametrize("elements", [
    [_good(i) for i in range(5)] + [{"series": "svc1/requests", "ts": 1, "count": 3}],
    {"series": "svc1/requests", "ts": 1, "count": 3},
], ids=["short array", "one object"])
def test_rows_as_columns_window_and_dead_letter_as_the_rows(elements):
    """``InputColumns.of_rows`` (a short message's rows, windowed with the columnar batches around
    it): the same windows, rejections and dead letter (a late element's bytes; one object: the
    whole message) as the rows' path."""
    raw = orjson.dumps(elements)
    fast = records.fast_rows(raw)
    cols = records.InputColumns.of_rows(fast, raw)
    assert cols.rows() == fast and cols.index.tolist() == list(range(len(fast)))
    rows = records.parse_input_rows(raw)
    w, v = Windower(10.0, 1), Windower(10.0, 1)
    for x in (w, v):  # the series' time is far past ts 1
        x.add_row(("svc1/requests", 1700000000.0, 1.0, 1, 0.0, 1.0, 1.0), "events", 0)
    bad_c = w.add_columns(cols.series, cols.ts, cols.interval, cols.count, cols.sum, cols.min, cols.max,
                          np.ones(len(cols), np.int64), "events")
    bad_r = v.add_rows(rows.items, "events", [1] * len(rows.items))
    assert [(k, e.reason) for k, e in bad_c] == [(k, e.reason) for k, e in bad_r]
    assert [e.reason for _, e in bad_c] == ["late"]
    for k, e in bad_c:
        cols.reject(k, e.reason, e.error)
    for k, e in bad_r:
        rows.reject(k, e.reason, e.error)
    assert cols.dead.raw() == rows.dead.raw()
    assert cols.dead.ranges == rows.dead.ranges and cols.dead.reason == rows.dead.reason
    assert w.close_all() == v.close_all()


def test_rows_as_columns_of_an_empty_array():
    cols = records.InputColumns.of_rows([], b"[]")
    assert len(cols) == 0 and cols.rows() == []
