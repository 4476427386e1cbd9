"""Every wire format (JSON on Kafka), with validation and conversion to and
from the domain types. Nothing else in Foresight spells out a message field.

Inputs are parsed by hand (not by Faust's codecs) so that a bad message
becomes an :class:`InvalidRecord` with a countable reason instead of an
exception in an agent.

>>> aggs = parse_input(b'{"series": "web/req", "ts": "2024-01-01T00:00:00Z"}')
>>> aggs[0].series, aggs[0].ts, aggs[0].count
('web/req', 1704067200.0, 1)
>>> parse_input(b'{"series": "web/req", "ts": 1, "value": "high"}')[0].reason
'bad_type'
>>> parse_input(b'not json')[0].reason
'malformed_json'
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any

import orjson

from detectors.forecast import Forecast, ForecastPoint
from scaler.decision import Comparison, Decision
from scaler.traces import parse_time

#: the fixed vocabulary of dead-letter reasons (also Prometheus label values)
DLQ_REASONS = (
    "malformed_json",  # not JSON, or not an object / array of objects
    "missing_field",  # a required field is absent
    "bad_type",  # a field has the wrong type (e.g. a string for a number)
    "non_finite",  # NaN or infinity
    "bad_timestamp",  # unparseable, negative or absurd timestamp
    "bad_value",  # semantically invalid (count < 0, min > max, interval > window, ...)
    "late",  # older than the allowed lateness: its window is closed
)

MAX_SERIES_LEN = 256
MAX_TS = 4102444800.0  # 2100-01-01: anything later is a unit mistake (ms, us)


class InvalidRecord(ValueError):
    """A message (or one element of a batch) that cannot be accepted."""

    def __init__(self, reason: str, error: str, raw: bytes = b"") -> None:
        assert reason in DLQ_REASONS, reason
        super().__init__(f"{reason}: {error}")
        self.reason = reason
        self.error = error
        self.raw = raw


@dataclass(slots=True)
class Aggregate:
    """count/sum/min/max of one series over ``[ts, ts + interval)``.

    A single event is an aggregate with ``count == 1`` and ``interval == 0``;
    for a metric sample ``sum == min == max == value``.
    """

    series: str
    ts: float
    interval: float
    count: int
    sum: float
    min: float
    max: float

    def to_json(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "ts": self.ts,
            "interval": self.interval,
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
        }


def parse_timestamp(v: Any) -> float:
    """Epoch seconds from a number or an ISO-8601 string (UTC if no zone).

    >>> parse_timestamp("2024-01-01T00:00:10+00:00"), parse_timestamp(5)
    (1704067210.0, 5.0)
    """
    if isinstance(v, bool):
        raise InvalidRecord("bad_timestamp", f"timestamp must be a number or ISO-8601, not {v!r}")
    if isinstance(v, int | float):
        ts = float(v)
    elif isinstance(v, str):
        try:
            ts = parse_time(v)  # the one timestamp parser (scaler.traces)
        except ValueError as exc:
            raise InvalidRecord("bad_timestamp", str(exc)) from None
    else:
        raise InvalidRecord("bad_timestamp", f"timestamp must be a number or ISO-8601, not {v!r}")
    if not math.isfinite(ts) or ts < 0 or ts > MAX_TS:
        raise InvalidRecord("bad_timestamp", f"timestamp {v!r} out of range (epoch seconds)")
    return ts


def _number(obj: dict[str, Any], name: str, required: bool = True) -> float | None:
    v = obj.get(name)
    if v is None:
        if required:
            raise InvalidRecord("missing_field", f"field {name!r} is required")
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InvalidRecord("bad_type", f"field {name!r} must be a number, not {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise InvalidRecord("non_finite", f"field {name!r} is {v!r}")
    return f


def _aggregate(obj: Any) -> Aggregate:
    if not isinstance(obj, dict):
        raise InvalidRecord("malformed_json", "expected a JSON object")
    series = obj.get("series")
    if series is None:
        raise InvalidRecord("missing_field", "field 'series' is required")
    if not isinstance(series, str) or not series or len(series) > MAX_SERIES_LEN:
        raise InvalidRecord("bad_type", f"'series' must be a non-empty string of at most {MAX_SERIES_LEN} chars")
    if "ts" not in obj:
        raise InvalidRecord("missing_field", "field 'ts' is required")
    ts = parse_timestamp(obj["ts"])
    if "count" in obj:  # client-side aggregate
        count = _number(obj, "count")
        interval = _number(obj, "interval", required=False) or 0.0
        assert count is not None
        if count < 0 or count != int(count):
            raise InvalidRecord("bad_value", f"'count' must be a non-negative integer, not {obj['count']!r}")
        if interval < 0:
            raise InvalidRecord("bad_value", "'interval' must be >= 0")
        total = _number(obj, "sum", required=False)
        lo = _number(obj, "min", required=False)
        hi = _number(obj, "max", required=False)
        if lo is not None and hi is not None and lo > hi:
            raise InvalidRecord("bad_value", f"min {lo} > max {hi}")
        return Aggregate(
            series, ts, interval, int(count),
            total if total is not None else 0.0,
            lo if lo is not None else math.inf,
            hi if hi is not None else -math.inf,
        )
    value = _number(obj, "value", required=False)
    if value is None:
        return Aggregate(series, ts, 0.0, 1, 0.0, math.inf, -math.inf)
    return Aggregate(series, ts, 0.0, 1, value, value, value)


def parse_input(raw: bytes) -> list[Aggregate | InvalidRecord]:
    """Parse an events/metrics message: one object or an array of objects.

    Each element is parsed on its own, so one bad element of a batch does not
    reject the others.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # Python's json module writes NaN/Infinity literals: report them as
        # non-finite values rather than as malformed JSON.
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return [InvalidRecord("malformed_json", str(exc), raw)]
    items = obj if isinstance(obj, list) else [obj]
    out: list[Aggregate | InvalidRecord] = []
    for item in items:
        try:
            out.append(_aggregate(item))
        except InvalidRecord as exc:
            exc.raw = raw if len(items) == 1 else orjson.dumps(item)
            out.append(exc)
    return out


@dataclass(slots=True)
class Point:
    """A closed window of one series (``value``: rate for events, mean for metrics)."""

    series: str
    start: float
    end: float
    count: int
    sum: float
    min: float
    max: float
    value: float

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "start": self.start,
            "end": self.end,
            "count": self.count,
            "sum": self.sum,
            "mean": self.mean,
            "min": self.min if self.count and math.isfinite(self.min) else None,
            "max": self.max if self.count and math.isfinite(self.max) else None,
            "value": self.value,
        }

    @classmethod
    def parse(cls, raw: bytes) -> Point:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRecord("malformed_json", str(exc), raw) from None
        if not isinstance(obj, dict):
            raise InvalidRecord("malformed_json", "expected a JSON object", raw)
        try:
            series = obj.get("series")
            if not isinstance(series, str) or not series:
                raise InvalidRecord("missing_field", "field 'series' is required")
            start = _number(obj, "start")
            end = _number(obj, "end")
            value = _number(obj, "value")
            count = _number(obj, "count", required=False) or 0
            lo = _number(obj, "min", required=False)
            hi = _number(obj, "max", required=False)
            total = _number(obj, "sum", required=False) or 0.0
        except InvalidRecord as exc:
            exc.raw = raw
            raise
        assert start is not None and end is not None and value is not None
        return cls(series, start, end, int(count), total,
                   lo if lo is not None else math.inf, hi if hi is not None else -math.inf, value)


def dumps(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


def forecast_to_json(
    f: Forecast, observed: float | None = None, anomalous: bool = False, score: float | None = None
) -> dict[str, Any]:
    """The ``foresight.forecasts`` message. ``observed``/``anomalous``/``score``
    describe the window the forecast was issued after (the controller's
    reactive floor and safety rule need them)."""
    return {
        "series": f.series,
        "issued": f.issued,
        "step": f.step,
        "points": [{"ts": p.ts, "yhat": p.yhat, "lower": p.lower, "upper": p.upper} for p in f.points],
        "coverage": f.coverage,
        "model": f.model,
        "warm": f.warm,
        "error": f.error,
        "observed": observed,
        "anomalous": anomalous,
        "score": score,
    }


@dataclass(frozen=True, slots=True)
class ForecastMessage:
    forecast: Forecast
    observed: float | None
    anomalous: bool
    score: float | None


def parse_forecast(raw: bytes) -> ForecastMessage:
    try:
        o = orjson.loads(raw)
        pts = tuple(
            ForecastPoint(float(p["ts"]), float(p["yhat"]), float(p["lower"]), float(p["upper"]))
            for p in o["points"]
        )
        f = Forecast(
            series=str(o["series"]),
            issued=float(o["issued"]),
            step=float(o["step"]),
            points=pts,
            coverage=float(o.get("coverage", 0.0)),
            model=str(o.get("model", "")),
            warm=bool(o.get("warm", False)),
            error=None if o.get("error") is None else float(o["error"]),
        )
        obs = o.get("observed")
        return ForecastMessage(f, None if obs is None else float(obs), bool(o.get("anomalous")),
                               None if o.get("score") is None else float(o["score"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidRecord("malformed_json", f"bad forecast message: {exc}", raw) from None


def anomaly_to_json(series: str, ts: float, value: float, score: float, threshold: float, detector: str) -> dict[str, Any]:
    return {"series": series, "ts": ts, "value": value, "score": score,
            "threshold": threshold, "detector": detector}


def decision_to_json(d: Decision) -> dict[str, Any]:
    return {
        "target": d.target,
        "ts": d.ts,
        "current": d.current,
        "desired": d.desired,
        "applied": d.applied,
        "reason": d.reason.value,
        "message": d.message,
        "forecast_peak": d.forecast_peak,
        "observed": d.observed,
        "observed_ts": d.observed_ts,
        "mode": d.mode,
        "vs_hpa": comparison_to_json(d.vs_hpa),
        "vs_hpa_total": comparison_to_json(d.vs_hpa_total),
        "simulated_replicas": d.simulated_replicas,
    }


#: the keys of a shadow comparison on the wire (``vs_hpa``, ``vs_hpa_total``)
COMPARISON_KEYS = ("window_seconds", "unserved", "hpa_unserved", "hpa_equal_cost_unserved",
                   "underprovisioned_seconds", "hpa_underprovisioned_seconds",
                   "replica_seconds", "hpa_replica_seconds")


def comparison_to_json(c: Comparison | None) -> dict[str, float]:
    """A shadow comparison: all numbers, never null (zeros before the first window).

    >>> comparison_to_json(None)["unserved"], comparison_to_json(None)["window_seconds"]
    (0.0, 0.0)
    """
    if c is None:
        return dict.fromkeys(COMPARISON_KEYS, 0.0)
    return {k: float(getattr(c, k)) for k in COMPARISON_KEYS}


def parse_comparison(o: Any) -> dict[str, float]:
    """A comparison read from the wire: finite, non-negative numbers; absent is all zeros.

    >>> parse_comparison({"unserved": 2})["unserved"], parse_comparison(None)["replica_seconds"]
    (2.0, 0.0)
    >>> parse_comparison({"unserved": "NaN"})
    Traceback (most recent call last):
    ...
    ValueError: bad comparison: unserved is not a finite number >= 0
    """
    o = o if isinstance(o, dict) else {}
    out = {}
    for k in COMPARISON_KEYS:
        v = o.get(k, 0.0)
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < math.inf:
            raise ValueError(f"bad comparison: {k} is not a finite number >= 0")
        out[k] = float(v)
    return out


def parse_decision(raw: bytes) -> dict[str, Any]:
    """Validate a ``foresight.decisions`` message for the read model.

    >>> parse_decision(b'{"target": "shop/a", "ts": 10, "current": 2, "desired": 3, "reason": "ForecastPeak"}')["desired"]
    3
    >>> parse_decision(b'{"target": "shop/a"}')
    Traceback (most recent call last):
    ...
    ValueError: bad decision message: 'ts'
    """
    try:
        o = orjson.loads(raw)
        d = {
            "target": str(o["target"]),
            "ts": float(o["ts"]),
            "current": int(o["current"]),
            "desired": int(o["desired"]),
            "applied": bool(o.get("applied", False)),
            "reason": str(o["reason"]),
            "message": str(o.get("message") or ""),
            "forecast_peak": None if o.get("forecast_peak") is None else float(o["forecast_peak"]),
            "observed": None if o.get("observed") is None else float(o["observed"]),
            "mode": str(o.get("mode") or ""),
            "vs_hpa": parse_comparison(o.get("vs_hpa")),
            "vs_hpa_total": parse_comparison(o.get("vs_hpa_total")),
            "simulated_replicas": (None if o.get("simulated_replicas") is None
                                   else int(o["simulated_replicas"])),
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"bad decision message: {exc}") from None
    if not math.isfinite(d["ts"]):
        raise ValueError("bad decision message: non-finite ts")
    return d


def dead_letter_to_json(reason: str, error: str, topic: str, partition: int | None,
                        offset: int | None, raw: bytes) -> dict[str, Any]:
    return {
        "reason": reason,
        "error": error,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "raw_b64": base64.b64encode(raw).decode("ascii"),
    }

