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
    "future",  # too far ahead of the stream's (or the series') event time
    "processing_error",  # valid on its face, but handling it raised: isolated, the stream goes on
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
        "drifting": f.drifting,
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


#: largest magnitude of a forecast or observed value (any unit): beyond it a
#: value is a unit mistake or an attack, and replica arithmetic stays far from
#: float overflow
MAX_FORECAST_VALUE = 1e15
#: most points in one forecast message
MAX_FORECAST_POINTS = 10_000


def _strict_number(obj: Any, name: str, *, required: bool = True, limit: float = MAX_FORECAST_VALUE,
                   where: str = "") -> float | None:
    """A JSON number (never a string, never a bool), finite and within ``limit``."""
    if not isinstance(obj, dict):
        raise InvalidRecord("malformed_json", f"expected a JSON object{where}")
    v = obj.get(name)
    if v is None:
        if required:
            raise InvalidRecord("missing_field", f"field {name!r}{where} is required")
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InvalidRecord("bad_type", f"field {name!r}{where} must be a number, not {v!r:.40}")
    try:
        f = float(v)
    except OverflowError:  # a JSON integer too large for a float
        raise InvalidRecord("bad_value", f"field {name!r}{where} is out of range") from None
    if not math.isfinite(f):
        raise InvalidRecord("non_finite", f"field {name!r}{where} is {v!r}")
    if abs(f) > limit:
        raise InvalidRecord("bad_value", f"field {name!r}{where} = {f:g} is out of range (|x| <= {limit:g})")
    return f


def _ordered(lo: float, mid: float, hi: float) -> bool:
    tol = 1e-9 * max(1.0, abs(lo), abs(mid), abs(hi))
    return lo <= mid + tol and mid <= hi + tol


def parse_forecast(raw: bytes) -> ForecastMessage:
    """Parse a ``foresight.forecasts`` message strictly.

    Every number must be a finite JSON number (the strings ``"NaN"`` or
    ``"Infinity"`` are refused, although ``float()`` accepts them), within
    :data:`MAX_FORECAST_VALUE`; ``issued`` a plausible epoch time; points in
    time order after ``issued`` with ``lower <= yhat <= upper``. Anything else
    raises :class:`InvalidRecord` with a reason.

    >>> ok = b'{"series": "a", "issued": 0, "step": 60, "points": [{"ts": 60, "yhat": 5, "lower": 4, "upper": 7}]}'
    >>> parse_forecast(ok).forecast.points[0].upper
    7.0
    >>> parse_forecast(ok.replace(b'"upper": 7', b'"upper": "Infinity"'))
    Traceback (most recent call last):
    ...
    streams.records.InvalidRecord: bad_type: field 'upper' of point 0 must be a number, not 'Infinity'
    >>> parse_forecast(ok.replace(b'"lower": 4', b'"lower": 9'))
    Traceback (most recent call last):
    ...
    streams.records.InvalidRecord: bad_value: point 0 bounds out of order: lower 9 <= yhat 5 <= upper 7 does not hold
    """
    try:
        return _forecast(raw)
    except InvalidRecord as exc:
        exc.raw = raw
        raise
    except RecursionError:
        raise InvalidRecord("malformed_json", "nested too deeply", raw) from None


def _forecast(raw: bytes) -> ForecastMessage:
    try:
        o = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord("malformed_json", f"bad forecast message: {exc}") from None
    if not isinstance(o, dict):
        raise InvalidRecord("malformed_json", "a forecast must be a JSON object")
    series = o.get("series")
    if series is None:
        raise InvalidRecord("missing_field", "field 'series' is required")
    if not isinstance(series, str) or not series or len(series) > MAX_SERIES_LEN:
        raise InvalidRecord("bad_type", f"'series' must be a non-empty string of at most {MAX_SERIES_LEN} chars")
    try:
        series.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRecord("bad_type", "'series' is not valid UTF-8 (lone surrogate)") from None
    issued = _strict_number(o, "issued", limit=MAX_TS)
    step = _strict_number(o, "step", limit=MAX_TS)
    assert issued is not None and step is not None
    if issued < 0:
        raise InvalidRecord("bad_timestamp", f"'issued' {issued:g} is not an epoch time")
    if not step > 0:
        raise InvalidRecord("bad_value", f"'step' must be > 0, not {step:g}")
    raw_points = o.get("points")
    if raw_points is None:
        raise InvalidRecord("missing_field", "field 'points' is required")
    if not isinstance(raw_points, list):
        raise InvalidRecord("bad_type", "'points' must be an array")
    if len(raw_points) > MAX_FORECAST_POINTS:
        raise InvalidRecord("bad_value", f"more than {MAX_FORECAST_POINTS} points")
    pts = []
    prev = issued
    for i, p in enumerate(raw_points):
        where = f" of point {i}"
        ts = _strict_number(p, "ts", limit=MAX_TS, where=where)
        yhat = _strict_number(p, "yhat", where=where)
        lower = _strict_number(p, "lower", where=where)
        upper = _strict_number(p, "upper", where=where)
        assert ts is not None and yhat is not None and lower is not None and upper is not None
        if not ts > prev:
            raise InvalidRecord("bad_timestamp", f"point {i} ts {ts:g} is not after {prev:g} (issued or previous point)")
        if not _ordered(lower, yhat, upper):
            raise InvalidRecord("bad_value", f"point {i} bounds out of order: lower {lower:g} <= yhat {yhat:g}"
                                             f" <= upper {upper:g} does not hold")
        prev = ts
        pts.append(ForecastPoint(ts, yhat, lower, upper))
    coverage = _strict_number(o, "coverage", required=False, limit=1.0)
    if coverage is not None and coverage < 0:
        raise InvalidRecord("bad_value", f"'coverage' must be in [0, 1], not {coverage:g}")
    error = _strict_number(o, "error", required=False)
    observed = _strict_number(o, "observed", required=False)
    score = _strict_number(o, "score", required=False)
    for name in ("warm", "anomalous", "drifting"):
        if not isinstance(o.get(name, False), bool):
            raise InvalidRecord("bad_type", f"field {name!r} must be true or false, not {o[name]!r:.40}")
    model = o.get("model", "")
    if not isinstance(model, str):
        raise InvalidRecord("bad_type", "'model' must be a string")
    f = Forecast(series=series, issued=issued, step=step, points=tuple(pts),
                 coverage=coverage or 0.0, model=model[:200], warm=o.get("warm", False), error=error,
                 drifting=o.get("drifting", False))
    return ForecastMessage(f, observed, o.get("anomalous", False), score)


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
            "current": _replicas(o["current"]),
            "desired": _replicas(o["desired"]),
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
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, OverflowError,
            RecursionError) as exc:
        raise ValueError(f"bad decision message: {exc}") from None
    for name in ("ts", "forecast_peak", "observed"):
        if d[name] is not None and not math.isfinite(d[name]):
            raise ValueError(f"bad decision message: non-finite {name}")
    return d


#: most replicas a decision may name (Kubernetes' replicas field is an int32)
MAX_REPLICAS = 2**31 - 1


def _replicas(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v) or not 0 <= v <= MAX_REPLICAS:
        raise ValueError(f"replica count must be an integer in [0, {MAX_REPLICAS}], not {v!r:.40}")
    return int(v)


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

