"""A row-format array of aggregates read as columns (``records.read_input``) is read exactly as
its rows: the same rows, or the rows' path when any element is not of the vectorised shape."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from streams import records
from streams.windowing import Windower

from .test_records import _EDGE_ELEMENTS


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
