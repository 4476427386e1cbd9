from __future__ import annotations

import math

import orjson
import pytest

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
        (b'{"series": "", "ts": 1}', "bad_type"),
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
    (item,) = parse_input(raw)
    assert isinstance(item, InvalidRecord)
    assert item.reason == reason and item.reason in records.DLQ_REASONS
    assert item.raw == raw


def test_three_shapes_parse():
    agg, event, sample = parse_input(orjson.dumps([
        {"series": "s", "ts": 10.0, "interval": 1.0, "count": 4, "sum": 8.0, "min": 1.0, "max": 3.0},
        {"series": "s", "ts": "1970-01-01T00:00:11Z"},
        {"series": "m", "ts": 12, "value": 0.5},
    ]))
    assert (agg.count, agg.sum, agg.min, agg.max, agg.interval) == (4, 8.0, 1.0, 3.0, 1.0)
    assert (event.ts, event.count, event.interval) == (11.0, 1, 0.0)
    assert (sample.sum, sample.min, sample.max) == (0.5, 0.5, 0.5)
    assert math.isinf(event.min)


def test_bad_element_of_batch_rejected_alone():
    items = parse_input(orjson.dumps([{"series": "a", "ts": 1}, {"series": "a"}]))
    assert not isinstance(items[0], InvalidRecord)
    assert items[1].reason == "missing_field" and orjson.loads(items[1].raw) == {"series": "a"}


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
