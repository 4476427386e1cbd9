from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.forecast import Forecast, ForecastPoint
from scaler.decision import Decision, Reason
from streams import records
from streams.records import InvalidRecord, parse_input


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{nope", "malformed_json"),
        (b'"just a string"', "malformed_json"),
        (b'{"ts": 1}', "missing_field"),
        (b'{"series": "a"}', "missing_field"),
        (b'{"series": 7, "ts": 1}', "bad_type"),
        (b'{"series": "", "ts": 1}', "bad_series"),
        (b'{"series": "a", "ts": 1, "value": NaN}', "non_finite"),
        (b'{"series": "a", "ts": 1, "value": Infinity}', "non_finite"),
        (b'{"series": "a", "ts": 1, "value": "3.5"}', "bad_type"),
        (b'{"series": "a", "ts": 1, "value": true}', "bad_type"),
        (b'{"series": "a", "ts": "tomorrow"}', "bad_timestamp"),
        (b'{"series": "a", "ts": 1700000000000}', "bad_timestamp"),
        (b'{"series": "a", "ts": -5}', "bad_timestamp"),
        (b'{"series": "a", "ts": 1, "count": 2.5, "interval": 1}', "bad_value"),
        (b'{"series": "a", "ts": 1, "count": 2, "interval": 1, "min": 5, "max": 1}', "bad_value"),
    ],
)
def test_invalid_inputs_have_a_reason(raw, reason):
    m = parse_input(raw)
    assert m.items == [] and m.dead is not None
    assert m.dead.reason == reason and m.dead.reason in records.DLQ_REASONS
    assert m.dead.raw() == raw and m.dead.count == 1


#: elements of every shape the fast path reads, and of every edge it must leave to the full parser
_EDGE_ELEMENTS = [
    {"series": "a/b", "ts": 1700000000, "interval": 1.0, "count": 100, "sum": 0.0},
    {"series": "a/b", "ts": 1700000000.5, "count": 3, "sum": 6, "min": 1, "max": 3},
    {"series": "a/b", "ts": 1, "count": 0},
    {"series": "a/b", "ts": 1, "count": 2, "interval": None, "sum": None, "min": None},
    {"series": "a/b", "ts": 1, "count": 2, "min": 5.0, "max": 4.0},  # min > max
    {"series": "a/b", "ts": 1, "count": 2.0},  # a whole float: the full parser's
    {"series": "a/b", "ts": 1, "count": 2.5},
    {"series": "a/b", "ts": 1, "count": -1},
    {"series": "a/b", "ts": 1, "count": 2**53 + 1},
    {"series": "a/b", "ts": 1, "count": True},
    {"series": "a/b", "ts": 1, "count": 1, "interval": 86401},
    {"series": "a/b", "ts": 1, "count": 1, "interval": -1},
    {"series": "a/b", "ts": 1, "count": 1, "sum": 1e31},
    {"series": "a/b", "ts": 1, "count": 1, "sum": -1e30, "min": -1e30, "max": 1e30},
    {"series": "a/b", "ts": 1, "count": 1, "sum": 2**60},
    {"series": "a/b", "ts": 1, "count": 1, "sum": "1"},
    {"series": "a/b", "ts": 1, "count": 1, "value": 3},  # value beside count: ignored
    {"series": "a/b", "ts": 1, "count": 1, "tags": {"a": [1]}},
    {"series": "a/b", "ts": 1, "count": 1, "extra": "x"},
    {"series": "a/b", "ts": 1},
    {"series": "a/b", "ts": 1, "value": 2},
    {"series": "a/b", "ts": 1, "value": -2.5},
    {"series": "a/b", "ts": 1, "value": None},
    {"series": "a/b", "ts": 1, "value": False},
    {"series": "a/b", "ts": 1, "value": 1e31},
    {"series": "a/b", "ts": 1, "value": [1]},
    {"series": "a/b", "ts": 0},
    {"series": "a/b", "ts": 4102444800},
    {"series": "a/b", "ts": 4102444800.5},
    {"series": "a/b", "ts": -1},
    {"series": "a/b", "ts": True},
    {"series": "a/b", "ts": "2024-01-01T00:00:00Z"},
    {"series": "a/b", "ts": "5"},
    {"series": "a/b", "ts": None},
    {"series": "a/b"},
    {"series": "", "ts": 1},
    {"series": "bad\nid", "ts": 1},
    {"series": 7, "ts": 1},
    {"series": None, "ts": 1},
    {"ts": 1},
    {"series": "x" * 257, "ts": 1},
    {"series": "a/b", "ts": 1, "value": 1, "other": 1},
    [1, 2],
    "text",
    None,
]


def test_rows_parse_as_aggregates_element_for_element():
    """parse_input_rows (the window agent's) accepts, rejects and explains exactly as parse_input."""
    fields = ("series", "ts", "interval", "count", "sum", "min", "max")
    messages = [orjson.dumps(_EDGE_ELEMENTS)] + [orjson.dumps(e) for e in _EDGE_ELEMENTS]
    messages += [b'[{"series": "a", "ts": 1, "value": NaN}, {"series": "a", "ts": 1, "count": 1, "sum": Infinity}]',
                 b"{nope", b"[]", b"{}"]
    for raw in messages:
        a, r = parse_input(raw), records.parse_input_rows(raw)
        assert r.items == [tuple(getattr(x, f) for f in fields) for x in a.items], raw
        assert all(type(v) is type(getattr(x, f)) for row, x in zip(r.items, a.items, strict=True)
                   for v, f in zip(row, fields, strict=True)), raw
        assert (r.index, r.batch) == (a.index, a.batch), raw
        assert (a.dead is None) == (r.dead is None), raw
        if a.dead is not None:
            assert (r.dead.reasons, r.dead.ranges, r.dead.raw(), r.dead.error) == (
                a.dead.reasons, a.dead.ranges, a.dead.raw(), a.dead.error), raw
    accepted = records.parse_input_rows(messages[0])
    assert 0 < len(accepted.items) < len(_EDGE_ELEMENTS) and accepted.dead.count > 10, "both kinds exercised"
    # fast_rows: a message of one well-formed object of the common shapes, or an array of only
    # such objects, is those rows (None: parse_input_rows reads it, e.g. a count written 2.0 or
    # anything rejected)
    good = [e for e in _EDGE_ELEMENTS if records.fast_rows(orjson.dumps(e)) is not None]
    messages += [orjson.dumps(good), orjson.dumps(good[:1]), orjson.dumps(good + [None])]
    fast = 0
    for raw in messages:
        rows, r = records.fast_rows(raw), records.parse_input_rows(raw)
        if rows is not None:
            fast += 1
            assert (rows, r.dead) == (r.items, None), raw
    assert fast >= 10 and len(good) >= 8, "the common shapes and arrays of them take the fast path"
    assert records.fast_rows(orjson.dumps(good)) is not None and records.fast_rows(messages[-1]) is None


def test_three_shapes_parse():
    m = parse_input(orjson.dumps([
        {"series": "s", "ts": 10.0, "interval": 1.0, "count": 4, "sum": 8.0, "min": 1.0, "max": 3.0},
        {"series": "s", "ts": "1970-01-01T00:00:11Z"},
        {"series": "m", "ts": 12, "value": 0.5},
    ]))
    assert m.dead is None
    agg, event, sample = m.items
    assert (agg.count, agg.sum, agg.min, agg.max, agg.interval) == (4, 8.0, 1.0, 3.0, 1.0)
    assert (event.ts, event.count, event.interval) == (11.0, 1, 0.0)
    assert (sample.sum, sample.min, sample.max) == (0.5, 0.5, 0.5)
    assert math.isinf(event.min)


def test_bad_element_of_batch_rejected_alone():
    m = parse_input(orjson.dumps([{"series": "a", "ts": 1}, {"series": "a"}]))
    assert [a.series for a in m.items] == ["a"] and m.index == [0]
    assert m.dead.reason == "missing_field" and orjson.loads(m.dead.raw()) == [{"series": "a"}]
    assert m.dead.ranges == [[1, 1]]


@pytest.mark.parametrize(
    "series",
    ["\ud800", "a\ud800", "\udfff", "a\\u0000b", "tab\\tsep", "nl\\n", "del\\u007f", "c1\\u0085",
     "ls\\u2028", "x" * 257, "\u00e9" * 257],
)
def test_series_ids_outside_the_grammar_are_bad_series(series):
    raw = b'{"series": "' + series.encode("utf-8", "surrogatepass") + b'", "ts": 1}'
    m = parse_input(raw)
    assert m.items == [] and m.dead.reason == "bad_series", (raw, m.dead.errors)
    assert m.dead.raw() == raw


def test_series_ids_inside_the_grammar_are_accepted():
    for s in ["checkout/requests", "\u00e9t\u00e9 \U0001f600", "a" * 256, "with space", "k=v,x=y"]:
        m = parse_input(orjson.dumps({"series": s, "ts": 1}))
        assert [a.series for a in m.items] == [s]
        s.encode("utf-8")  # always encodable as a Kafka key


@pytest.mark.parametrize("depth", [33, 100, 1100, 5000])
def test_deep_nesting_is_too_deep_without_recursion_errors(depth):
    deep = b"[" * depth + b"]" * depth
    for raw in (deep, b'{"series": "a", "ts": 1, "x": ' + deep + b"}",
                b'[{"series": "a", "ts": 1}, {"series": "a", "ts": 1, "x": ' + deep + b"}]"):
        m = parse_input(raw)
        assert m.dead is not None and m.dead.reason in ("too_deep", "malformed_json")
        assert m.dead.count == 1
    m = parse_input(b'{"series": "a", "ts": 1, "x": ' + deep + b"}")
    assert m.dead.reason == "too_deep"


@pytest.mark.parametrize(
    "field, value",
    [("count", b"1e20"), ("count", b"100000000000000000000"), ("count", b"9007199254740993"),
     ("value", b"1e308"), ("value", b"-1e31"), ("sum", b"1e300"), ("min", b"1e40"),
     ("ts", b"1e20"), ("ts", b"100000000000000000000000")],
)
def test_numbers_a_window_cannot_hold_are_rejected(field, value):
    fields = {"series": b'"a"', "ts": b"1", "count": b"2", "interval": b"1"}
    if field == "value":
        del fields["count"], fields["interval"]
    fields[field] = value
    raw = b"{" + b",".join(b'"%s": %s' % (k.encode(), v) for k, v in fields.items()) + b"}"
    m = parse_input(raw)
    assert m.items == [] and m.dead.reason in ("out_of_range", "bad_timestamp"), m.dead.errors


def test_an_oversized_message_is_one_dead_letter_checked_before_parsing():
    from streams.records import DLQ_RAW_PREFIX, MAX_MESSAGE_BYTES

    raw = b"[" + b",".join([b"1"] * (MAX_MESSAGE_BYTES // 2 + 10)) + b"]"
    m = parse_input(raw)
    assert m.items == [] and m.dead.reason == "too_large" and m.dead.count == 1
    assert len(m.dead.raw()) == DLQ_RAW_PREFIX and m.dead.truncated


def test_a_big_array_of_garbage_is_one_dead_letter_with_ranges_not_thousands():
    n = 200_000
    raw = b"[" + b",".join([b"1"] * n) + b"]"
    m = parse_input(raw)
    assert m.dead.count == n and m.dead.ranges == [[0, n - 1]]
    assert len(m.dead.errors) <= records.DLQ_ERRORS
    body = records.dead_letter_of(m.dead, "t.events", 0, 5, len(raw))
    assert len(records.dumps(body)) < 1_000_000, "the dead letter fits in one Kafka message"
    assert orjson.loads(records.parse_dead_letter(records.dumps(body)).raw) == [1] * n


def test_one_message_one_dead_letter_holding_only_the_bad_elements():
    good = {"series": "a", "ts": 5, "count": 3, "interval": 1}
    g = orjson.dumps(good)
    m = parse_input(b"[" + g + b', 7, {"series": "\\ud83d"}, ' + g + b', {"series": "b", "ts": "x"}]')
    assert [a.count for a in m.items] == [3, 3] and m.index == [0, 3]
    m.reject(1, "late", "closed")  # the window path rejects the second good one
    d = m.dead
    assert d.count == 4 and d.ranges == [[1, 4]]
    assert d.reasons == {"malformed_json": 1, "bad_series": 1, "bad_timestamp": 1, "late": 1}
    assert b'"\\ud83d"' in d.raw(), "a lone surrogate is kept, escaped"
    replay = parse_input(d.raw())
    assert [a.count for a in replay.items] == [3], "replaying it re-sends only what was rejected"


def test_forecast_round_trip():
    f = Forecast("a/b", 60.0, 60.0, (ForecastPoint(120.0, 1.0, 0.5, 2.0),), 0.9, "M", True, 0.1)
    back = records.parse_forecast(records.dumps(records.forecast_to_json(f, 3.0, True, 0.95)))
    assert back.forecast == f and back.observed == 3.0 and back.anomalous and back.score == 0.95
    with pytest.raises(InvalidRecord):
        records.parse_forecast(b'{"series": "a"}')


def test_point_round_trip_and_decision_json():
    p = records.Point("a", 0.0, 10.0, 4, 8.0, 1.0, 3.0, 0.4)
    assert records.Point.parse(records.dumps(p.to_json())) == p
    d = Decision("ns/t", 5.0, 2, 4, Reason.FORECAST_PEAK, "why", 410.0, 300.0, "Active", True, 0.0)
    j = records.decision_to_json(d)
    assert j["reason"] == "ForecastPeak" and j["applied"] is True and j["observed_ts"] == 0.0


def test_points_and_forecasts_batches_round_trip_and_single_records_stay_accepted():
    from streams.records import Point

    pts = [Point(f"s{i}", 10.0 * i, 10.0 * i + 10, i, float(i), 0.0, float(i), i / 10) for i in range(50)]
    msgs = records.points_batches(pts)
    assert sum(n for n, _ in msgs) == 50 and len(msgs) == 1, "one message for the flush"
    back = records.parse_points(msgs[0][1])
    assert back.dead is None and [p.to_json() for p in back.items] == [p.to_json() for p in pts]
    single = records.parse_points(records.dumps(pts[3].to_json()))
    assert single.dead is None and list(single.items) == [pts[3]] and not single.batch
    cut = records.batches([records.dumps(p.to_json()) for p in pts], max_bytes=1000)
    assert len(cut) > 1 and all(len(b) <= 1000 for _, b in cut)
    assert [p.series for _, b in cut for p in records.parse_points(b).items] == [p.series for p in pts]

    f = Forecast("a", 0.0, 60.0, (ForecastPoint(60.0, 5.0, 4.0, 7.0),), 0.8, "m", True)
    one = records.dumps(records.forecast_to_json(f, 3.0, False, 0.1))
    assert records.parse_forecasts(one).items == [records.parse_forecast(one)], "single records accepted"
    batch = records.parse_forecasts(b"[" + one + b"," + one + b"]")
    assert len(batch.items) == 2 and batch.dead is None and batch.batch


def test_a_bad_element_of_a_points_batch_is_its_only_dead_letter_element():
    good = b'{"series": "a", "start": 0, "end": 10, "value": 1}'
    m = records.parse_points(b"[" + good + b', {"series": "b", "start": "x", "end": 10, "value": 1}, 7]')
    assert [p.series for p in m.items] == ["a"]
    assert m.dead.reasons == {"bad_type": 1, "malformed_json": 1} and m.dead.ranges == [[1, 2]]
    assert orjson.loads(m.dead.raw())[1] == 7
    for raw, reason in ((b"nope", "malformed_json"), (b'{"series": "a"}', "missing_field")):
        m = records.parse_points(raw)
        assert not m.items and m.dead.reason == reason and m.dead.raw() == raw, "a single record: whole"
    m = records.parse_points(b"[" + good + b"," + good + b"]")
    m.reject(1, "processing_error", "boom")
    assert m.dead.ranges == [[1, 1]] and m.dead.reason == "processing_error"


def _columns(n: int, h: int = 5) -> records.ForecastColumns:
    rng = np.random.default_rng(3)
    yhat = 100.0 + rng.normal(size=(n, h)) * 10
    iv = np.stack([yhat, yhat - 1.0 - rng.random((n, h)), yhat + 1.0 + rng.random((n, h))], axis=2)
    error = rng.random(n)
    error[::3] = np.nan  # no error yet: null, as None in the single-record form
    return records.ForecastColumns([f"svc{i}/rps" for i in range(n)], 1_700_000_000.0 + 60.0 * np.arange(n),
                                   60.0, iv, 0.8, "SeasonalEnsemble", np.arange(n) % 2 == 0, error,
                                   np.arange(n) % 5 == 0, yhat[:, 0] + 0.5, np.arange(n) % 7 == 0,
                                   rng.random(n))


def test_columnar_forecasts_are_the_single_records_number_for_number():
    """A columnar batch parses into exactly the forecasts its single-record form carries."""
    c = _columns(40)
    msgs = records.forecast_batches([c])
    assert [n for n, _ in msgs] == [40]
    got = records.parse_forecasts(msgs[0][1])
    assert got.dead is None and got.batch
    iv32 = c.intervals.astype(np.float32)  # the point values travel as float32 (encoding f32le)
    for i, fm in enumerate(got.items):
        e = float(c.error[i])
        f = Forecast(c.series[i], float(c.issued[i]), 60.0,
                     tuple(ForecastPoint(float(c.issued[i]) + (k + 1) * 60.0, *map(float, iv32[i, k]))
                           for k in range(c.intervals.shape[1])),
                     0.8, "SeasonalEnsemble", bool(c.warm[i]), None if math.isnan(e) else e, bool(c.drifting[i]))
        one = records.dumps(records.forecast_to_json(f, float(c.observed[i]), bool(c.anomalous[i]),
                                                     float(c.score[i])))
        assert fm == records.parse_forecast(one)
        assert records.forecast_elements(records.message_json(msgs[0][1]))[i] == orjson.loads(one)


def test_packed_forecast_values_are_float32_of_the_models_values_and_the_lists_stay_accepted():
    c = _columns(30, h=62)
    o = records.message_json(records.forecast_batches([c])[0][1])
    assert o["encoding"] == "f32le" and o["horizon"] == 62 and isinstance(o["yhat"], str)
    got = np.array([[(p.yhat, p.lower, p.upper) for p in fm.forecast.points]
                    for fm in records.parse_forecasts(records.forecast_batches([c])[0][1]).items])
    assert got.shape == c.intervals.shape
    assert np.allclose(got, c.intervals, rtol=6e-8, atol=0), "rounded to float32, no further"
    iv = c.intervals
    lists = {**o, "yhat": iv[:, :, 0].tolist(), "lower": iv[:, :, 1].tolist(), "upper": iv[:, :, 2].tolist()}
    del lists["encoding"], lists["horizon"]
    m = records.parse_forecasts(orjson.dumps(lists))
    assert m.dead is None and len(m.items) == 30, "the columnar arrays of arrays stay accepted"
    assert m.items[4].forecast.points[7].yhat == iv[4, 7, 0], "at full precision"


def test_a_packed_columnar_batch_is_checked_as_strictly_as_the_lists():
    c = _columns(6, h=4)
    c.intervals[1, 2, 0] = np.nan  # a NaN travels as a float32 NaN: that forecast alone is refused
    c.intervals[3, 0, 2] = c.intervals[3, 0, 0] - 5.0  # upper below yhat
    c.intervals[5, 1, :] = 3e15  # beyond MAX_FORECAST_VALUE
    raw = records.forecast_batches([c])[0][1]
    m = records.parse_forecasts(raw)
    assert [f.forecast.series for f in m.items] == [c.series[i] for i in (0, 2, 4)]
    assert m.dead.ranges == [[1, 1], [3, 3], [5, 5]]
    assert m.dead.reasons == {"non_finite": 1, "bad_value": 2}
    c.intervals[5, 1, :] = 1e39  # beyond float32: infinite on the wire
    assert records.parse_forecasts(records.forecast_batches([c])[0][1]).dead.reasons["non_finite"] == 2
    o = records.message_json(raw)
    for change, reason in (
        ({"yhat": o["yhat"][:-8]}, "bad_value"),              # too few bytes for 6 x 4 float32
        ({"lower": o["lower"][:-1]}, "bad_value"),            # not base64 (padding)
        ({"upper": "*" * len(o["upper"])}, "bad_value"),      # not the base64 alphabet
        ({"encoding": "f64le"}, "bad_value"),                 # an encoding not defined
        ({"horizon": 5}, "bad_value"),                        # the byte count does not match
        ({"horizon": "4"}, "bad_value"),
        ({"horizon": True}, "bad_value"),
        ({"horizon": None}, "bad_value"),
        ({"upper": None}, "missing_field"),
        ({"lower": [[1.0] * 4] * 6}, "bad_type"),             # packed and lists mixed
        ({"ts": [[1.0] * 4] * 6}, "bad_type"),
        ({"series": o["series"][:-1]}, "bad_type"),           # 5 series, columns of 6
    ):
        bad = {**o, **change}
        whole = records.parse_forecasts(orjson.dumps({k: v for k, v in bad.items() if v is not None}))
        assert whole.items == [] and whole.dead.whole is not None, change
        assert whole.dead.reason == reason, change
    no_enc = {k: v for k, v in o.items() if k != "encoding"}
    assert records.parse_forecasts(orjson.dumps(no_enc)).dead.reason == "bad_value", "strings need the encoding"


def test_a_framed_batch_is_its_json_form_in_fewer_bytes_and_a_bad_frame_is_one_dead_letter():
    """The model agent's framed batches (raw float32 columns after a JSON head) parse into exactly
    the forecasts of their JSON form (base64 columns), a quarter smaller; a frame that is not one
    is a dead letter as a whole."""
    c = _columns(40, h=62)
    raw = records.forecast_batches([c])[0][1]
    assert raw[:4] == records.FORECASTS_FRAME
    as_json = orjson.dumps(records.message_json(raw))
    framed, plain = records.parse_forecasts(raw), records.parse_forecasts(as_json)
    assert framed.dead is None and len(framed.items) == 40
    assert framed.items == plain.items, "the same forecasts, value for value"
    assert len(raw) < 0.8 * len(as_json)
    head_len = int.from_bytes(raw[4:8], "little")
    head = raw[8:8 + head_len]
    cols = raw[8 + head_len:]

    def frame(h: bytes, body: bytes = cols) -> bytes:
        return records.FORECASTS_FRAME + len(h).to_bytes(4, "little") + h + body

    assert records.parse_forecasts(frame(head)).items == framed.items
    o = orjson.loads(head)
    for bad, reason in (
        (raw[:6], "bad_value"),                                         # shorter than its own head
        (raw[:-4], "bad_value"),                                        # a value short
        (raw + b"\0" * 4, "bad_value"),                                # a value too many
        (records.FORECASTS_FRAME + (10**6).to_bytes(4, "little") + head + cols, "malformed_json"),
        (frame(b"{not json"), "malformed_json"),
        (frame(b"[1, 2]"), "malformed_json"),
        (frame(orjson.dumps({**o, "yhat": "AAAA"})), "malformed_json"),  # columns in the head
        (frame(orjson.dumps({**o, "horizon": 61})), "bad_value"),      # not n x horizon values
        (frame(orjson.dumps({**o, "horizon": "62"})), "bad_value"),
        (frame(orjson.dumps({**o, "encoding": "f64le"})), "bad_value"),
    ):
        m = records.parse_forecasts(bad)
        assert m.items == [] and m.dead.whole is not None and m.dead.reason == reason, (bad[:40], reason)
        assert m.dead.raw() == bad, "the frame kept whole, to replay once mended"
    with pytest.raises(ValueError):
        records.message_json(raw[:-4])


def test_columnar_forecasts_are_cut_under_the_batch_size_in_order():
    c = _columns(200, h=30)
    msgs = records.forecast_batches([c, c.take(np.arange(3))], max_bytes=20_000)
    assert len(msgs) > 2 and all(len(b) <= 20_000 for _, b in msgs)
    assert sum(n for n, _ in msgs) == 203
    series = [f.forecast.series for _, b in msgs for f in records.parse_forecasts(b).items]
    assert series == c.series + c.series[:3]


def test_a_bad_forecast_of_a_columnar_batch_is_its_only_dead_letter_element():
    c = _columns(6)
    c.intervals[2, 1, 1] = c.intervals[2, 1, 0] + 5.0  # lower above yhat
    c.issued[4] = -1.0
    m = records.parse_forecasts(records.forecast_batches([c])[0][1])
    assert [f.forecast.series for f in m.items] == [c.series[i] for i in (0, 1, 3, 5)]
    assert m.dead.ranges == [[2, 2], [4, 4]] and m.dead.reasons == {"bad_value": 1, "bad_timestamp": 1}
    replay = records.parse_forecasts(m.dead.raw())  # the bad ones, as single records
    assert replay.items == [] and replay.dead.count == 2
    o = records.message_json(records.forecast_batches([c])[0][1])
    o["score"] = o["score"][:-1]  # columns of different lengths: the message is bad as a whole
    whole = records.parse_forecasts(orjson.dumps(o))
    assert whole.items == [] and whole.dead.reason == "bad_type" and whole.dead.whole is not None


def test_columnar_points_round_trip_and_cut():
    from streams.records import Point

    pts = [Point(f"s{i}", 10.0 * i, 10.0 * i + 10, i + 1, float(i), 0.0, float(i), i / 10) for i in range(50)]
    pts.append(Point("empty", 0.0, 10.0, 0, 0.0, math.inf, -math.inf, 0.0))  # no data: min/max null
    (n, body), = records.points_batches(pts)
    assert n == 51 and isinstance(orjson.loads(body)["value"], list), "one columnar message"
    assert orjson.loads(body)["min"][-1] is None and orjson.loads(body)["max"][-1] is None
    back = records.parse_points(body)
    assert back.dead is None and back.batch and list(back.items) == pts
    assert [p.to_json() for p in back.items] == [p.to_json() for p in pts]
    assert back.items.value.dtype == np.float64 and back.items.count.dtype == np.int64
    assert records.point_elements(orjson.loads(body))[-1] == {
        "series": "empty", "start": 0.0, "end": 10.0, "count": 0, "sum": 0.0, "min": None, "max": None,
        "value": 0.0}
    cut = records.point_batches(records.PointColumns.of(pts), max_bytes=400)
    assert len(cut) > 1 and all(len(b) <= 400 for _, b in cut) and sum(n for n, _ in cut) == 51
    assert [p for _, b in cut for p in records.parse_points(b).items] == pts, "in order, none lost"
    one_window = [Point(f"s{i}", 100.0, 110.0, 1, 1.0, 1.0, 1.0, 1.0) for i in range(3)]
    obj = orjson.loads(records.points_batches(one_window)[0][1])
    assert obj["start"] == 100.0 and obj["end"] == 110.0, "shared by every point: given once"
    assert list(records.parse_points(orjson.dumps(obj)).items) == one_window


def test_a_columnar_points_batch_dead_letters_exactly_its_bad_points_as_single_records():
    Point = records.Point
    cols = {"series": ["a", 7, "", "b", "c", "d", "e", "f", "g"],
            "start": [0, 0, 0, "x", 0, 0, 0, 0, 2**60],
            "end": [10, 10, 10, 10, True, 10, 10, 10, 10],
            "count": [3, 1, 1, 1, 1, None, [1], 2.7, 1],
            "sum": [3.0, 1, 1, 1, 1, 1, 1, 1, 1], "min": [1, None, None, None, None, None, None, None, None],
            "max": [1, None, None, None, None, None, None, None, None],
            "value": [0.3, 1, 1, 1, 1, None, 1, 1e20, 1]}
    raw = orjson.dumps(cols)
    m = records.parse_points(raw)
    # each element judged as Point.from_json judges the single record made of its entries
    want_dead, want_items = {}, []
    for i in range(len(cols["series"])):
        row = {k: v[i] for k, v in cols.items()}
        try:
            want_items.append(Point.from_json(row))
        except InvalidRecord as exc:
            want_dead[i] = (exc.reason, row)
    assert list(m.items) == want_items and m.index == [0, 7]
    assert want_items[1] == Point("f", 0.0, 10.0, 2, 1.0, math.inf, -math.inf, 1e20), "count 2.7 -> 2, as int()"
    assert m.dead.ranges == [[1, 6], [8, 8]] and m.dead.count == len(want_dead)
    assert m.dead.reasons == {"missing_field": 3, "bad_type": 3, "out_of_range": 1}
    assert orjson.loads(m.dead.raw()) == [row for _, row in want_dead.values()], "single records, in order"
    replayed = records.parse_points(m.dead.raw())
    assert not replayed.items and replayed.dead.reasons == m.dead.reasons, "the dead letter replays as bad"
    m.reject(1, "processing_error", "boom")
    assert m.dead.count == len(want_dead) + 1 and orjson.loads(m.dead.raw())[-2]["series"] == "f"


@pytest.mark.parametrize("raw, reason", [
    (b'{"series": ["a", "b"], "start": [0], "end": 10, "value": [1, 2]}', "bad_type"),  # lengths differ
    (b'{"series": ["a"], "start": 0, "end": 10, "value": [1], "count": [1, 2]}', "bad_type"),
    (b'{"series": ["a", "b"], "start": 0, "end": 10, "value": [1, 2' + b", 3" * 200_000 + b"]}", "too_large"),
    (b'{"series": ["a"], "start": 0, "end": 10, "value": [1e400]}', "malformed_json"),
    (b'{"series": ["a"]' + b"[" * 2000, "malformed_json"),
])
def test_a_badly_shaped_columnar_points_message_is_one_whole_dead_letter(raw, reason):
    m = records.parse_points(raw)
    assert not m.items and len(m.items) == 0 and m.dead.reason == reason
    assert m.dead.raw() == raw[:records.DLQ_RAW_PREFIX]


def test_columnar_points_of_wrong_types_are_each_dead_letters_never_exceptions():
    for cols in ({"series": ["a", "b"], "start": {"x": 1}, "end": 10, "value": [1, 2]},
                 {"series": ["a", "b"], "start": None, "end": 10, "value": [1, 2]},
                 {"series": ["a", "b"], "start": 0, "end": 10, "value": "12"},
                 {"series": [["a"], {"b": 1}], "start": 0, "end": 10, "value": [1, 2]}):
        m = records.parse_points(orjson.dumps(cols))
        assert not m.items and m.dead.ranges == [[0, 1]], cols
    m = records.parse_points(b'{"series": [], "start": [], "end": [], "value": []}')
    assert not m.items and m.dead is None
    m = records.parse_points(b'{"series": ["a"], "start": 5, "end": 15, "value": 2, "min": 1}')
    assert list(m.items) == [records.Point("a", 5.0, 15.0, 0, 0.0, 1.0, -math.inf, 2.0)], "scalars repeated"


def _as_columns(elements, interval_scalar=None):
    """The columnar batch holding ``elements`` (dicts): one column per field any of them has,
    null where one lacks it; and the row objects the batch's elements stand for."""
    keys = [k for k in records.INPUT_COLUMNS if any(k in e for e in elements)]
    if "series" not in keys:
        keys.insert(0, "series")
    cols = {k: [e.get(k) for e in elements] for k in keys}
    if interval_scalar is not None:
        cols["interval"] = interval_scalar
    rows = [{k: (v[i] if isinstance(v, list) else v) for k, v in cols.items()} for i in range(len(elements))]
    return cols, rows


def _check_columns_as_rows(cols, rows):
    import json

    raw = json.dumps(cols).encode()
    c = records.parse_input_message(raw)
    assert isinstance(c, records.InputColumns)
    r = records.parse_input_rows(json.dumps(rows).encode())
    assert c.rows() == r.items, raw
    assert all(type(v) is type(x) for a, b in zip(c.rows(), r.items, strict=True)
               for v, x in zip(a, b, strict=True)), raw
    assert c.index.tolist() == r.index, raw
    assert (c.dead is None) == (r.dead is None), raw
    if r.dead is not None:
        assert (c.dead.reasons, c.dead.ranges, c.dead.raw(), c.dead.error) == (
            r.dead.reasons, r.dead.ranges, r.dead.raw(), r.dead.error), raw
    fast = records.read_input(raw)
    if fast is not None:  # orjson read it (no NaN literals): the same result
        assert fast.rows() == c.rows() and fast.index.tolist() == c.index.tolist()
    return c


def test_columnar_batches_parse_as_the_rows_they_stand_for():
    """A columnar batch's element i is the object of every column's i-th entry: accepted,
    rejected and explained exactly as that object in the row format."""
    dicts = [e for e in _EDGE_ELEMENTS if isinstance(e, dict)]
    aggregates = [e for e in dicts if "count" in e]
    good = [{"series": f"s{i}", "ts": 1700000000 + i, "count": i, "sum": i * 0.5, "min": 0.0, "max": i}
            for i in range(50)]
    cases = [_as_columns(dicts), _as_columns(aggregates), _as_columns(good), _as_columns(good, 1.0),
             _as_columns(good + aggregates + good, 2), _as_columns(aggregates, 86401),
             _as_columns([dict(e, sum=float("nan")) for e in good[:3]]),
             _as_columns([dict(e, ts=True) for e in good[:3]] + good[:2]),
             _as_columns([{"series": "a", "ts": 5, "count": 2**53, "sum": 2**53}]),
             _as_columns([{"series": "a", "ts": 5, "count": 3, "sum": 2**53 + 1, "min": 1e30}]),
             _as_columns([{"series": "a", "ts": 5, "count": 3, "sum": 1e30, "max": 1e30},
                          {"series": "a", "ts": 5, "count": 3, "sum": 1e31}])]
    accepted = rejected = 0
    for cols, rows in cases:
        c = _check_columns_as_rows(cols, rows)
        accepted += len(c)
        rejected += c.dead.count if c.dead else 0
    assert accepted > 100 and rejected > 20, "both kinds exercised"
    # the common shape takes the vectorised path whole
    c = records.read_input(records.columnar_message(good, 1.0))
    assert isinstance(c, records.InputColumns) and len(c) == 50 and c.dead is None


def test_a_columnar_batch_of_ragged_columns_is_dead_lettered_whole():
    raw = b'{"series": ["a", "b"], "ts": [1, 2], "count": [1]}'
    c = records.read_input(raw)
    assert len(c) == 0 and c.dead.reason == "bad_type" and c.dead.raw() == raw
    assert "column 'count'" in c.dead.error
    c = records.read_input(b'{"series": ["a"], "ts": 5}')
    assert len(c) == 0 and c.dead.reason == "bad_type"
    # an older worker's parser (the row format) refuses the whole batch too: bad_type
    assert parse_input(b'{"series": ["a"], "ts": [5], "count": [1]}').dead.reason == "bad_type"


_col_numbers = st.one_of(st.integers(-(2**53) - 2, 2**53 + 2), st.floats(allow_nan=True, allow_infinity=True),
                        st.sampled_from([1e30, -1e30, 1e31, 2**60, 0.0, -0.0]), st.none(), st.booleans(),
                        st.just([1]))
fuzz_columns = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@fuzz_columns
@given(st.lists(st.fixed_dictionaries(
    {"series": st.one_of(st.sampled_from(["a", "b/c", "", "x\n", "\ud800"]), st.none(), st.integers(0, 2)),
     "ts": st.one_of(st.floats(-10, 5e9, allow_nan=False), st.integers(-5, 2**63 - 1), st.none(),
                     st.booleans(), st.just("2024-01-01T00:00:00Z"))},
    optional={"count": st.one_of(st.integers(-2, 2**53 + 2), st.floats(0, 10), st.none(), st.booleans()),
              "interval": st.one_of(st.floats(-1, 90000), st.integers(-1, 90000), st.none(), st.just("1")),
              "sum": _col_numbers, "min": _col_numbers, "max": _col_numbers}), min_size=1, max_size=12),
    st.one_of(st.none(), st.sampled_from([0, 1.0, 86400, 86401, -1, True])))
def test_property_columnar_elements_parse_as_rows(elements, interval):
    cols, rows = _as_columns(elements, interval)
    _check_columns_as_rows(cols, rows)
