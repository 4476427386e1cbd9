"""Every wire format (JSON on Kafka), with validation and conversion to and
from the domain types. Nothing else in Foresight spells out a message field.

Inputs are parsed by hand (not by Faust's codecs) and totally: every byte
string becomes accepted aggregates and/or one :class:`DeadLetter` that
carries only the bad elements, with a countable reason. Nothing a producer
sends can raise out of :func:`parse_input`. An input message may also be a
columnar batch (one array per field: :class:`InputColumns`), which the window
agent reads with :func:`read_input` / :func:`parse_input_message`.

>>> m = parse_input(b'{"series": "web/req", "ts": "2024-01-01T00:00:00Z"}')
>>> m.items[0].series, m.items[0].ts, m.items[0].count
('web/req', 1704067200.0, 1)
>>> parse_input(b'{"series": "web/req", "ts": 1, "value": "high"}').dead.reason
'bad_type'
>>> parse_input(b'not json').dead.reason
'malformed_json'
>>> parse_input(b'{"series": "bad\\ud800id", "ts": 1}').dead.reason
'bad_series'
>>> d = parse_input(b'[1, {"series": "a", "ts": 1}, 2]').dead
>>> d.ranges, d.count, d.raw()
([[0, 0], [2, 2]], 2, b'[1,2]')
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
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
    "bad_series",  # series id outside the grammar (see SERIES_GRAMMAR)
    "too_large",  # message longer than MAX_MESSAGE_BYTES (checked before parsing)
    "too_deep",  # nested deeper than MAX_DEPTH
    "out_of_range",  # a number larger than a window can hold (count > MAX_COUNT, |x| > MAX_ABS)
    "future",  # too far ahead of the partition's typical series time
    "processing_error",  # processing raised anyway: the exception text is in ``error``
    "series_limit",  # a new series beyond the worker's FORESIGHT_MAX_SERIES (streams/budget.py)
)

#: series ids: 1..MAX_SERIES_LEN characters of valid Unicode (no lone
#: surrogates, so always encodable as UTF-8), at most MAX_SERIES_BYTES bytes of
#: UTF-8, and no control characters (C0, DEL, C1) or line/paragraph separators.
SERIES_GRAMMAR = "1-256 chars, <= 1024 UTF-8 bytes, no C0/C1 controls, DEL, U+2028/9 or lone surrogates"
MAX_SERIES_LEN = 256
MAX_SERIES_BYTES = 1024
_SERIES_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
#: the largest input message; longer ones are dead-lettered unparsed. A dead
#: letter carries the bad part base64-encoded and must itself fit in a Kafka
#: message (1 MB by default), hence half a MiB.
MAX_MESSAGE_BYTES = 512 * 1024
#: deepest nesting of arrays/objects anywhere in an element (an element is
#: depth 1, a field value that is an array depth 2, ...)
MAX_DEPTH = 32
#: largest ``count`` of one aggregate and of one window (exact in a float64)
MAX_COUNT = 2**53
#: largest magnitude of a value, sum, min or max (squares stay finite)
MAX_ABS = 1e30
MAX_TS = 4102444800.0  # 2100-01-01: anything later is a unit mistake (ms, us)
#: a too-large message keeps only this prefix in its dead letter
DLQ_RAW_PREFIX = 64 * 1024
#: error texts kept per dead letter (the rest are counted)
DLQ_ERRORS = 10


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


_NUMBER = (int, float)
_CONTAINER = (list, dict)


def parse_timestamp(v: Any) -> float:
    """Epoch seconds from a number or an ISO-8601 string (UTC if no zone).

    >>> parse_timestamp("2024-01-01T00:00:10+00:00"), parse_timestamp(5)
    (1704067210.0, 5.0)
    """
    if isinstance(v, bool):
        raise InvalidRecord("bad_timestamp", f"timestamp must be a number or ISO-8601, not {v!r}")
    if isinstance(v, _NUMBER):
        if isinstance(v, int) and not -(2**63) <= v < 2**63:
            raise InvalidRecord("bad_timestamp", "timestamp out of range (epoch seconds)")
        ts = float(v)
    elif isinstance(v, str):
        if len(v) > 64:
            raise InvalidRecord("bad_timestamp", "timestamp string longer than 64 chars")
        try:
            float(v)
        except ValueError:
            pass
        else:  # the wire is stricter than a CSV cell: epoch seconds are a JSON number
            raise InvalidRecord("bad_timestamp", f"epoch seconds must be a JSON number, not {_short(v)}")
        try:
            ts = parse_time(v)  # the one timestamp parser (scaler.traces)
        except (ValueError, OverflowError) as exc:
            raise InvalidRecord("bad_timestamp", str(exc)) from None
    else:
        raise InvalidRecord("bad_timestamp", f"timestamp must be a number or ISO-8601, not {_short(v)}")
    if not math.isfinite(ts) or ts < 0 or ts > MAX_TS:
        raise InvalidRecord("bad_timestamp", f"timestamp {_short(v)} out of range (epoch seconds)")
    return ts


def _short(v: Any, n: int = 80) -> str:
    r = repr(v) if not isinstance(v, _CONTAINER) else type(v).__name__
    return r if len(r) <= n else r[:n] + "..."


def check_series(series: Any) -> str:
    """Return ``series`` if it is a valid series id, else raise ``bad_series``.

    >>> check_series("checkout/requests")
    'checkout/requests'
    >>> check_series("a\\nb")
    Traceback (most recent call last):
    ...
    streams.records.InvalidRecord: bad_series: 'series' must be ... got 'a\\nb'
    """
    if not isinstance(series, str):
        raise InvalidRecord("bad_type", f"'series' must be a string, not {_short(series)}")
    if not series or len(series) > MAX_SERIES_LEN or _SERIES_BAD.search(series) is not None or (
        len(series) * 4 > MAX_SERIES_BYTES and len(series.encode("utf-8")) > MAX_SERIES_BYTES
    ):
        shown = series[:40].encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise InvalidRecord("bad_series", f"'series' must be {SERIES_GRAMMAR}; got {shown!r}")
    return series


def _number(obj: dict[str, Any], name: str, required: bool = True) -> float | None:
    v = obj.get(name)
    if v is None:
        if required:
            raise InvalidRecord("missing_field", f"field {name!r} is required")
        return None
    if isinstance(v, bool) or not isinstance(v, _NUMBER):
        raise InvalidRecord("bad_type", f"field {name!r} must be a number, not {_short(v)}")
    if isinstance(v, int) and not -MAX_COUNT <= v <= MAX_COUNT:
        raise InvalidRecord("out_of_range", f"field {name!r} = {_short(v)} is out of range")
    f = float(v)
    if not math.isfinite(f):
        raise InvalidRecord("non_finite", f"field {name!r} is {v!r}")
    return f


def _bounded(obj: dict[str, Any], name: str) -> float | None:
    f = _number(obj, name, required=False)
    if f is not None and abs(f) > MAX_ABS:
        raise InvalidRecord("out_of_range", f"field {name!r} = {f!r}: magnitude above {MAX_ABS:g}")
    return f


def _too_deep(obj: Any, limit: int) -> bool:
    """Whether ``obj`` nests arrays/objects deeper than ``limit`` (iterative)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return True
        children = o.values() if isinstance(o, dict) else o
        stack.extend((c, d + 1) for c in children if isinstance(c, _CONTAINER))
    return False


def _aggregate(obj: Any) -> Aggregate:
    if not isinstance(obj, dict):
        raise InvalidRecord("malformed_json", f"expected a JSON object, got {_short(obj, 20)}")
    for v in obj.values():
        if isinstance(v, _CONTAINER) and _too_deep(obj, MAX_DEPTH):
            raise InvalidRecord("too_deep", f"element nested deeper than {MAX_DEPTH}")
    series = obj.get("series")
    if series is None:
        raise InvalidRecord("missing_field", "field 'series' is required")
    check_series(series)
    if "ts" not in obj:
        raise InvalidRecord("missing_field", "field 'ts' is required")
    ts = parse_timestamp(obj["ts"])
    if "count" in obj:  # client-side aggregate
        count = _number(obj, "count")
        interval = _number(obj, "interval", required=False) or 0.0
        assert count is not None
        if count < 0 or count != int(count):
            raise InvalidRecord("bad_value", f"'count' must be a non-negative integer, not {_short(obj['count'])}")
        if count > MAX_COUNT:
            raise InvalidRecord("out_of_range", f"'count' {count:g} is above {MAX_COUNT}")
        if interval < 0 or interval > 86400:
            raise InvalidRecord("bad_value", f"'interval' must be in [0, 86400], not {interval:g}")
        total = _bounded(obj, "sum")
        lo = _bounded(obj, "min")
        hi = _bounded(obj, "max")
        if lo is not None and hi is not None and lo > hi:
            raise InvalidRecord("bad_value", f"min {lo} > max {hi}")
        return Aggregate(
            series, ts, interval, int(count),
            total if total is not None else 0.0,
            lo if lo is not None else math.inf,
            hi if hi is not None else -math.inf,
        )
    value = _bounded(obj, "value")
    if value is None:
        return Aggregate(series, ts, 0.0, 1, 0.0, math.inf, -math.inf)
    return Aggregate(series, ts, 0.0, 1, value, value, value)


def _element_bytes(element: Any) -> bytes:
    """JSON of one bad element, as sent: NaN/Infinity stay literals (orjson would
    write null, which replays as a valid element) and lone surrogates stay
    ``\\ud800`` escapes."""
    try:
        return json.dumps(element, allow_nan=True, separators=(",", ":")).encode("ascii")
    except (RecursionError, ValueError, TypeError):  # deeper than json writes
        return b"null"


class DeadLetter:
    """The one dead-letter record of one input message: only its bad elements.

    Elements are numbered by their position in the message (0 for a single
    object). ``raw()`` is a valid input message holding exactly the bad
    elements, so replaying a repaired dead letter never re-sends accepted
    data. Memory is bounded by the message's size: counts per reason, index
    ranges, the bad elements' bytes and at most ``DLQ_ERRORS`` error texts.
    """

    __slots__ = ("reasons", "errors", "indices", "chunks", "count", "whole", "truncated")

    def __init__(self) -> None:
        self.reasons: dict[str, int] = {}
        self.errors: list[str] = []
        self.indices = array("q")
        self.chunks: list[bytes] = []
        self.count = 0
        self.whole: bytes | None = None  # set when the whole message is the bad part
        self.truncated = False

    def add(self, index: int, reason: str, error: str, element: Any = None) -> None:
        assert reason in DLQ_REASONS, reason
        self.count += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if len(self.errors) < DLQ_ERRORS:
            self.errors.append(f"[{index}] {reason}: {error[:300]}")
        self.indices.append(index)
        if self.whole is None:
            self.chunks.append(_element_bytes(element))

    def add_whole(self, reason: str, error: str, raw: bytes) -> None:
        """The message as a whole is bad (unparseable, too large, one bad object)."""
        self.add(0, reason, error)
        self.whole = raw[:DLQ_RAW_PREFIX] if reason == "too_large" else raw
        self.truncated = len(self.whole) < len(raw)
        self.chunks = []

    def _sort(self) -> None:
        idx = self.indices
        if any(idx[i] > idx[i + 1] for i in range(len(idx) - 1)):
            order = sorted(range(len(idx)), key=idx.__getitem__)
            self.indices = array("q", (idx[i] for i in order))
            if self.chunks:
                self.chunks = [self.chunks[i] for i in order]

    @property
    def ranges(self) -> list[list[int]]:
        """The bad elements' positions in the message, as ``[first, last]`` runs."""
        self._sort()
        out: list[list[int]] = []
        for i in self.indices:
            if out and out[-1][1] == i - 1:
                out[-1][1] = i
            else:
                out.append([i, i])
        return out

    @property
    def reason(self) -> str:
        """The most frequent reason (first seen on a tie)."""
        return max(self.reasons, key=lambda r: self.reasons[r])

    @property
    def error(self) -> str:
        more = self.count - len(self.errors)
        return "; ".join(self.errors) + (f"; and {more} more" if more > 0 else "")

    def raw(self) -> bytes:
        """The bad part: a valid input message of exactly the bad elements, in order."""
        if self.whole is not None:
            return self.whole
        self._sort()
        return b"[" + b",".join(self.chunks) + b"]"


@dataclass(slots=True)
class Parsed:
    """One parsed message of any topic read by elements (events, metrics, points, forecasts):
    its accepted items and at most one dead letter holding only the bad elements."""

    items: list[Any]
    #: per item: its element's position in the message
    index: list[int]
    #: per item: the parsed element (for its bytes, should it be rejected later)
    source: list[Any]
    batch: bool
    raw: bytes
    dead: DeadLetter | None = None

    def reject(self, k: int, reason: str, error: str) -> None:
        """Move accepted item ``k`` to the dead letter (e.g. ``late``, or its processing raised)."""
        d = self.dead = self.dead or DeadLetter()
        if self.batch:
            d.add(self.index[k], reason, error, self.source[k])
        else:
            d.add_whole(reason, error, self.raw)


def _elements(msg: Parsed, obj: Any, one: Any) -> Parsed:
    """Parse ``obj`` (one object, or an array of them) element by element with ``one`` into
    ``msg``: a bad element goes to the dead letter, the others are accepted. Never raises."""
    msg.batch = isinstance(obj, list)
    for i, item in enumerate(obj if msg.batch else [obj]):
        try:
            parsed = one(item)
        except InvalidRecord as exc:
            reason, error = exc.reason, exc.error
        except Exception as exc:  # noqa: BLE001 - total: a parser bug is a dead letter, not a crash
            reason, error = "processing_error", f"{type(exc).__name__}: {exc}"
        else:
            msg.items.append(parsed)
            msg.index.append(i)
            msg.source.append(item)
            continue
        msg.dead = msg.dead or DeadLetter()
        if msg.batch:
            msg.dead.add(i, reason, error, item)
        else:
            msg.dead.add_whole(reason, error, msg.raw)
    return msg


def parse_input(raw: bytes) -> Parsed:
    """Parse an events/metrics message: one object or an array of objects.

    Each element is parsed on its own, so one bad element of a batch does not
    reject the others. Never raises.
    """
    msg, obj = _load_input(raw)
    return msg if msg.dead is not None else _elements(msg, obj, _aggregate)


#: an input element as a row: (series, ts, interval, count, sum, min, max), the fields of
#: :class:`Aggregate` (what :func:`parse_input_rows` gives)
Row = tuple[str, float, float, int, float, float, float]
#: the keys of the common well-formed elements (read by :func:`_fast_row`)
_AGG_KEYS = frozenset(("series", "ts", "interval", "count", "sum", "min", "max"))
_EVENT_KEYS = frozenset(("series", "ts", "value"))
#: series ids already found valid (check_series is a regular expression): bounded, cleared when full
_SERIES_OK: set[str] = set()
_SERIES_OK_MAX = 200_000
_INF = math.inf


def _fast_row(o: dict[str, Any]) -> Row | None:
    """The row of a well-formed element of the common shapes (an aggregate of numbers, or
    an event / sample), exactly as :func:`_aggregate` reads it; None for anything else
    (then :func:`_aggregate` decides, and names the error)."""
    series = o.get("series")
    if series.__class__ is not str:
        return None
    if series not in _SERIES_OK:
        try:
            check_series(series)
        except InvalidRecord:
            return None
        if len(_SERIES_OK) >= _SERIES_OK_MAX:
            _SERIES_OK.clear()
        _SERIES_OK.add(series)
    ts = o.get("ts")
    t = ts.__class__
    if not ((t is float or t is int) and 0 <= ts <= MAX_TS):
        return None
    if "count" in o:
        if not o.keys() <= _AGG_KEYS:
            return None
        count = o["count"]
        if count.__class__ is not int or not 0 <= count <= MAX_COUNT:
            return None
        interval = o.get("interval")
        if interval is None:
            interval = 0.0
        elif not ((interval.__class__ is float or interval.__class__ is int) and 0 <= interval <= 86400):
            return None
        total, lo, hi = o.get("sum"), o.get("min"), o.get("max")
        for v in (total, lo, hi):
            if v is None:
                continue
            if v.__class__ is float:
                if not -MAX_ABS <= v <= MAX_ABS:
                    return None
            elif v.__class__ is not int or not -MAX_COUNT <= v <= MAX_COUNT:
                return None
        if lo is not None and hi is not None and lo > hi:
            return None
        return (series, float(ts), float(interval), count,
                0.0 if total is None else float(total),
                _INF if lo is None else float(lo), -_INF if hi is None else float(hi))
    if not o.keys() <= _EVENT_KEYS:
        return None
    v = o.get("value")
    if v is None:
        return (series, float(ts), 0.0, 1, 0.0, _INF, -_INF)
    if v.__class__ is float:
        if not -MAX_ABS <= v <= MAX_ABS:
            return None
    elif v.__class__ is not int or not -MAX_COUNT <= v <= MAX_COUNT:
        return None
    v = float(v)
    return (series, float(ts), 0.0, 1, v, v, v)


def _row(o: Any) -> Row:
    """One input element as a row; :class:`InvalidRecord` as :func:`_aggregate`."""
    if o.__class__ is dict:
        row = _fast_row(o)
        if row is not None:
            return row
    a = _aggregate(o)
    return (a.series, a.ts, a.interval, a.count, a.sum, a.min, a.max)


def fast_rows(raw: bytes) -> list[Row] | None:
    """The rows of a message that is one well-formed object of the common shapes (a single
    event, sample or aggregate) or an array of only such objects; None for anything else, which
    :func:`parse_input_rows` then reads (this is its result for such a message, without the
    :class:`Parsed` around it).

    >>> fast_rows(b'{"series": "a", "ts": 5, "value": 2}'), fast_rows(b'[{"series": "a", "ts": 5}]')
    ([('a', 5.0, 0.0, 1, 2.0, 2.0, 2.0)], [('a', 5.0, 0.0, 1, 0.0, inf, -inf)])
    >>> fast_rows(b'[{"series": "a", "ts": 5}, {"series": "a"}]') is None
    True
    """
    obj = _small_json(raw)
    return None if obj is _NOT_READ else _fast_obj_rows(obj)


#: :func:`_small_json`'s answer for a message too large or not JSON
_NOT_READ = object()


def _small_json(raw: bytes) -> Any:
    """``raw`` decoded, or :data:`_NOT_READ` if it is over MAX_MESSAGE_BYTES or not JSON (the
    fast reads leave those to the full parsers, which say why)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return _NOT_READ
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NOT_READ


def _fast_obj_rows(obj: Any) -> list[Row] | None:
    """:func:`fast_rows` of a decoded message."""
    if obj.__class__ is dict:
        row = _fast_row(obj)
        return None if row is None else [row]
    if obj.__class__ is not list:
        return None
    rows = []
    append, fast, d = rows.append, _fast_row, dict
    for o in obj:
        if o.__class__ is not d or (row := fast(o)) is None:
            return None
        append(row)
    return rows


def parse_input_rows(raw: bytes) -> Parsed:
    """:func:`parse_input` with each item a :data:`Row` tuple instead of an :class:`Aggregate`
    (the window agent's path: the common shapes are read without the field-by-field
    checks' calls). Accepts, rejects and names errors exactly as :func:`parse_input`.

    >>> m = parse_input_rows(b'[{"series": "a", "ts": 5, "count": 3, "sum": 6}, {"series": "a"}]')
    >>> m.items, m.dead.reason
    ([('a', 5.0, 0.0, 3, 6.0, inf, -inf)], 'missing_field')
    """
    msg, obj = _load_input(raw)
    return msg if msg.dead is not None else _elements(msg, obj, _row)


def _load_input(raw: bytes) -> tuple[Parsed, Any]:
    """An input message's JSON, or the message with its dead letter (too large, malformed)."""
    msg = Parsed([], [], [], False, raw)
    if len(raw) > MAX_MESSAGE_BYTES:
        msg.dead = DeadLetter()
        msg.dead.add_whole("too_large", f"message of {len(raw)} bytes is longer than "
                           f"{MAX_MESSAGE_BYTES}", raw)
        return msg, None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # Python's json module reads NaN/Infinity literals: report them as
        # non-finite values rather than as malformed JSON.
        reason, error = "malformed_json", str(exc)[:300]
        if "recursion" in error.lower():
            reason = "too_deep"
        else:
            try:
                obj = json.loads(raw)
                reason = ""
            except RecursionError:
                reason = "too_deep"
            except (ValueError, UnicodeDecodeError):
                pass
        if reason:
            msg.dead = DeadLetter()
            msg.dead.add_whole(reason, error, raw)
            return msg, None
    return msg, obj


# -- columnar input batches ----------------------------------------------------
# An optional producer format (issue 14): many aggregates as one JSON object holding one array per
# field, e.g. ``{"series": ["a", "b"], "ts": [1700000000, 1700000000], "interval": 1.0,
# "count": [1840, 7], "sum": [0, 0]}``. An object whose ``series`` is an array is columnar; its
# element ``i`` is the object made of the ``i``-th entry of every column present (``interval``
# may also be one number, every element's), and is accepted or dead-lettered exactly as that
# object would be in the row format (a null entry is a field written null). The fields are the
# row format's (series, ts, interval, count, sum, min, max, value); other keys are ignored. A
# column that is not an array of the series' length makes the whole message a dead letter
# (``bad_type``). A dead letter holds the bad elements as row objects (a valid input message).
# Well-formed columns are checked with numpy, not a Python object per element; a worker older
# than this format dead-letters the whole message (``bad_type``: 'series' must be a string).

#: the fields a columnar batch may carry as columns (``series`` first: it marks the format)
INPUT_COLUMNS = ("series", "ts", "interval", "count", "sum", "min", "max", "value")
_INPUT_COLUMN_SET = frozenset(INPUT_COLUMNS)
_NUMBER_TYPES = frozenset((int, float))
_NUMBER_OR_NULL = frozenset((int, float, type(None)))
_INT_TYPE = frozenset((int,))
_FLOAT_TYPE = frozenset((float,))


@dataclass(slots=True)
class InputColumns:
    """The accepted elements of one columnar input message, as arrays (one entry per accepted
    element, in message order), and the dead letter of its bad elements.

    ``index[k]`` is accepted element ``k``'s position in the message; ``interval``, ``sum``,
    ``min`` and ``max`` hold what a :data:`Row` holds (0.0, 0.0, inf and -inf when absent).
    """

    series: list[str]
    ts: np.ndarray
    interval: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    index: np.ndarray
    raw: bytes
    #: the message's columns as decoded (for a rejected element's bytes); None: the whole is bad
    columns: dict[str, Any] | None = None
    dead: DeadLetter | None = None
    #: a row-format message read as columns (:func:`read_input`): its elements are decoded
    #: again from ``raw`` when one is needed (a rejection: rare), not held meanwhile (holding a
    #: batch's decoded objects made decoding the next messages ~30 % slower: fresh memory, and
    #: the young-generation collections walked them)
    rows_format: bool = False
    #: a row-format message's decoded JSON, once :meth:`element` needed it
    objects: Any = None

    def __len__(self) -> int:
        return len(self.series)

    @classmethod
    def of_rows(cls, rows: list[Row], raw: bytes) -> InputColumns:
        """The rows of the message ``raw`` that a fast read accepted whole (:func:`read_input`'s
        list: a row-format array, or one object) as columns (e.g. to window a short array with
        the columnar batches around it)."""
        if rows:
            series, ts, interval, count, total, lo, hi = zip(*rows, strict=True)
            f = np.float64
            out = cls(list(series), np.array(ts, f), np.array(interval, f), np.array(count, np.int64),
                      np.array(total, f), np.array(lo, f), np.array(hi, f), np.arange(len(rows)), raw)
        else:
            out = _empty_columns(raw)
        out.rows_format = True
        return out

    def _decoded(self) -> Any:
        if self.objects is None:
            self.objects = orjson.loads(self.raw)
        return self.objects

    def element(self, i: int) -> dict[str, Any]:
        """Element ``i`` of the message as the row object it stands for."""
        if self.rows_format:
            obj = self._decoded()
            return obj if obj.__class__ is dict else obj[i]  # (one object: element 0)
        cols = self.columns or {}
        return {k: (v[i] if isinstance(v, list) else v) for k, v in cols.items()}

    def reject(self, k: int, reason: str, error: str) -> None:
        """Move accepted element ``k`` to the dead letter (e.g. ``late``, ``series_limit``); a
        row-format message of one object is the bad part as a whole (as :meth:`Parsed.reject`)."""
        d = self.dead = self.dead or DeadLetter()
        if self.rows_format and self._decoded().__class__ is dict:
            d.add_whole(reason, error, self.raw)
            return
        i = int(self.index[k])
        d.add(i, reason, error, self.element(i))

    def rows(self) -> list[Row]:
        """The accepted elements as rows (:func:`parse_input_rows`' items)."""
        return list(zip(self.series, self.ts.tolist(), self.interval.tolist(), self.count.tolist(),
                        self.sum.tolist(), self.min.tolist(), self.max.tolist(), strict=True))


def is_columnar(obj: Any) -> bool:
    """Whether a decoded input message is a columnar batch (an object whose ``series`` is an array)."""
    return obj.__class__ is dict and obj.get("series").__class__ is list


def _empty_columns(raw: bytes) -> InputColumns:
    e = np.empty(0)
    return InputColumns([], e, e, np.empty(0, np.int64), e, e, e, np.empty(0, np.int64), raw)


def _column_floats(col: list[Any], types: frozenset[type]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A column as float64 (nulls and entries not of ``types`` as NaN), per entry whether it is
    one of ``types``, and whether it is null; None if numpy cannot read it (then every element
    is read on its own)."""
    seen = set(map(type, col))
    n = len(col)
    if seen <= types:
        mask = np.ones(n, bool)
    else:
        mask = np.fromiter((t in types for t in map(type, col)), bool, n)
        col = [v if ok and v is not None else None for v, ok in zip(col, mask.tolist(), strict=True)]
    null = (np.fromiter((v is None for v in col), bool, n) if type(None) in seen or not seen <= types
            else np.zeros(n, bool))
    try:
        f = np.array(col, dtype=np.float64)
    except (OverflowError, TypeError, ValueError):
        return None
    return f, mask, null


def parse_input_columns(obj: dict[str, Any], raw: bytes) -> InputColumns:
    """The accepted elements and the dead letter of a decoded columnar input message (see above).
    Never raises.

    >>> c = parse_input_columns(orjson.loads(b'{"series": ["a", "b", "a"], "ts": [5, 6, -1], '
    ...                         b'"interval": 1, "count": [3, 4, 1], "sum": [6, 8, null]}'), b"")
    >>> c.series, c.ts.tolist(), c.count.tolist(), c.sum.tolist(), c.index.tolist()
    (['a', 'b'], [5.0, 6.0], [3, 4], [6.0, 8.0], [0, 1])
    >>> c.dead.reason, c.dead.raw()
    ('bad_timestamp', b'[{"series":"a","ts":-1,"interval":1,"count":1,"sum":null}]')
    >>> parse_input_columns({"series": ["a"], "ts": [1, 2]}, b"x").dead.reason
    'bad_type'
    """
    try:
        return _parse_columns(obj, raw)
    except Exception as exc:  # noqa: BLE001 - total: a parser bug is a dead letter, not a crash
        out = _empty_columns(raw)
        out.dead = DeadLetter()
        out.dead.add_whole("processing_error", f"{type(exc).__name__}: {exc}", raw)
        return out


def _numbers(col: list[Any]) -> tuple[np.ndarray, set[type]] | None:
    """A column of only numbers (ints and floats: no bool, no null) as float64, with its types;
    None for any other column (then :func:`_column_floats` reads it entry by entry)."""
    types = set(map(type, col))
    if not types <= _NUMBER_TYPES:
        return None
    try:
        return np.fromiter(col, np.float64, len(col)), types
    except (OverflowError, TypeError, ValueError):  # an integer beyond a float's range
        return None


def _counts(col: list[Any]) -> np.ndarray | None:
    """A column of only integers in [0, 2^53) as int64; None for any other column."""
    if set(map(type, col)) != _INT_TYPE:
        return None
    try:
        c = np.fromiter(col, np.int64, len(col))
    except (OverflowError, TypeError, ValueError):  # beyond int64
        return None
    return c if c.min() >= 0 and c.max() < MAX_COUNT else None


def _parse_columns(obj: dict[str, Any], raw: bytes, whole: bool = False) -> InputColumns | None:
    """``whole``: None unless the vectorised checks accept every element."""
    names = obj["series"]
    n = len(names)
    cols: dict[str, Any] = {}
    for k, v in obj.items():  # in the message's order (a rejected element's keys too)
        if k not in _INPUT_COLUMN_SET:
            continue
        if k == "interval" and v.__class__ is not list:
            cols[k] = v  # one interval, every element's
            continue
        if v.__class__ is not list or len(v) != n:
            out = _empty_columns(raw)
            out.dead = DeadLetter()
            what = f"{len(v)} entries" if v.__class__ is list else f"a {type(v).__name__}"
            out.dead.add_whole("bad_type", f"column {k!r} must be an array of {n} entries (one per series), "
                                           f"not {what}", raw)
            return out
        cols[k] = v
    # which elements the vectorised checks accept (the common shape: an aggregate of numbers);
    # every other element is read on its own, exactly as the row format reads it. A column that
    # passes its check whole (the common case) is read with no per-entry mask; else
    # _column_floats' masks say which entries pass.
    masks: list[np.ndarray] = []  # per check not passed whole: which elements pass it
    if n and "count" in cols and "value" not in cols and "ts" in cols:
        # series: strings of the grammar (each distinct id checked once: most are known valid)
        try:
            known = _SERIES_OK.issuperset(names)
        except TypeError:  # an unhashable entry (an array, an object)
            known = False
        if not known:
            try:
                unknown = set(names) - _SERIES_OK
            except TypeError:
                unknown = set()
                masks.append(np.zeros(n, bool))
            bad_ids: set[Any] = set()
            for s in unknown:
                if s.__class__ is not str:
                    bad_ids.add(s)
                    continue
                try:
                    check_series(s)
                except InvalidRecord:
                    bad_ids.add(s)
                    continue
                if len(_SERIES_OK) >= _SERIES_OK_MAX:
                    _SERIES_OK.clear()
                _SERIES_OK.add(s)
            if bad_ids:  # (True == 1 == 1.0: a set tells them apart by type too)
                masks.append(np.fromiter((s.__class__ is str and s not in bad_ids for s in names), bool, n))
        # ts: numbers in [0, MAX_TS] (a NaN fails the whole check: min and max are NaN)
        got = _numbers(cols["ts"])
        if got is not None and got[0].min() >= 0 and got[0].max() <= MAX_TS:
            ts = got[0]
        else:
            got = _column_floats(cols["ts"], _NUMBER_TYPES)
            if got is None:
                ts = np.zeros(n)
                masks.append(np.zeros(n, bool))
            else:
                ts, ok, _ = got
                with np.errstate(invalid="ignore"):
                    masks.append(ok & (ts >= 0) & (ts <= MAX_TS))
        # count: integers in [0, 2^53) (2^53 itself: read on its own, a float cannot tell 2^53 + 1)
        count = _counts(cols["count"])
        if count is None:
            got = _column_floats(cols["count"], _INT_TYPE)
            if got is None:
                count = np.zeros(n, np.int64)
                masks.append(np.zeros(n, bool))
            else:
                f, ok, _ = got
                with np.errstate(invalid="ignore"):
                    ok &= (f >= 0) & (f < MAX_COUNT)
                masks.append(ok)
                count = np.where(ok, f, 0).astype(np.int64)
        # interval: absent or null (0), else a number in [0, 86400]
        iv = cols.get("interval")
        if iv.__class__ is list:
            v = iv[0]  # most often every element's (a rows array of one producer): no array to read
            if (v.__class__ is float and 0 < v <= 86400 and iv.count(v) == n  # (a float equal to a
                    and set(map(type, iv)) == _FLOAT_TYPE):  # nonzero one is it, bit for bit)
                interval = np.full(n, v)
            elif (got := _numbers(iv)) is not None and got[0].min() >= 0 and got[0].max() <= 86400:
                interval = got[0]
            else:
                interval = np.zeros(n)
                got = _column_floats(iv, _NUMBER_OR_NULL)
                if got is None:
                    masks.append(np.zeros(n, bool))
                else:
                    f, ok, null = got
                    interval = np.where(null, 0.0, f)
                    with np.errstate(invalid="ignore"):
                        masks.append(ok & (interval >= 0) & (interval <= 86400))
        elif iv is None:
            interval = np.zeros(n)
        elif iv.__class__ in _NUMBER_TYPES and 0 <= iv <= 86400:
            interval = np.full(n, float(iv))
        else:
            interval = np.zeros(n)
            masks.append(np.zeros(n, bool))
        # sum, min, max: absent or null, else numbers: with integers in the column, of magnitude
        # below 2^53 (an integer's bound); else floats of magnitude at most MAX_ABS
        bounded: list[np.ndarray] = []
        for k, absent in (("sum", 0.0), ("min", _INF), ("max", -_INF)):
            col = cols.get(k)
            if col is None:
                bounded.append(np.full(n, absent))
                continue
            got = _numbers(col)
            if got is not None:
                f, types = got
                if int in types:
                    if f.min() > -MAX_COUNT and f.max() < MAX_COUNT:
                        bounded.append(f)
                        continue
                elif f.min() >= -MAX_ABS and f.max() <= MAX_ABS:
                    bounded.append(f)
                    continue
            got = _column_floats(col, _NUMBER_OR_NULL)
            if got is None:
                bounded.append(np.full(n, absent))
                masks.append(np.zeros(n, bool))
                continue
            f, ok, null = got
            with np.errstate(invalid="ignore"):
                if int in set(map(type, col)):
                    ok &= null | (np.abs(f) < MAX_COUNT)
                else:
                    ok &= null | (np.abs(f) <= MAX_ABS)
            masks.append(ok)
            bounded.append(np.where(null, absent, f))
        total, lo, hi = bounded
        if "min" in cols and "max" in cols:  # min > max, both given (an absent one is +-inf)
            with np.errstate(invalid="ignore"):
                bad = lo > hi
                if bad.any():
                    masks.append(~(bad & np.isfinite(lo) & np.isfinite(hi)))
        fast = np.logical_and.reduce(masks) if masks else None
    else:
        fast = np.zeros(n, bool)
        ts, interval, count, total = np.zeros(n), np.zeros(n), np.zeros(n, np.int64), np.zeros(n)
        lo, hi = np.full(n, _INF), np.full(n, -_INF)
    result = InputColumns([], ts, interval, count, total, lo, hi, np.empty(0, np.int64), raw, cols)
    if fast is None:  # every element accepted by the vectorised checks
        result.series = names
        result.index = np.arange(n)
        return result
    accepted = fast
    slow = np.flatnonzero(~fast).tolist()
    if whole and (slow or not n):
        return None
    if slow:
        accepted = fast.copy()
        series_col = list(names)
        for i in slow:
            element = result.element(i)
            try:
                row = _row(element)
            except InvalidRecord as exc:
                reason, error = exc.reason, exc.error
            except Exception as exc:  # noqa: BLE001 - total, as the row format
                reason, error = "processing_error", f"{type(exc).__name__}: {exc}"
            else:
                accepted[i] = True
                series_col[i] = row[0]
                ts[i], interval[i], count[i], total[i], lo[i], hi[i] = row[1:]
                continue
            result.dead = result.dead or DeadLetter()
            result.dead.add(i, reason, error, element)
        names = series_col
    idx = np.flatnonzero(accepted)
    if len(idx) == n:
        result.series = names if names.__class__ is list else list(names)
    else:
        result.series = [names[i] for i in idx.tolist()]
        result.ts, result.interval, result.count = ts[idx], interval[idx], count[idx]
        result.sum, result.min, result.max = total[idx], lo[idx], hi[idx]
    result.index = idx
    return result


#: row-format arrays of at least this many elements are tried as columns by :func:`read_input`
ROWS_AS_COLUMNS = 128
#: the fields every element of such an array has (its other fields: of _AGG_KEYS)
_ROW_KEYS = frozenset(("series", "ts", "count"))


def _rows_as_columns(obj: list[Any], raw: bytes) -> InputColumns | None:
    """A row-format array of aggregates as :class:`InputColumns` (``rows_format``: a dead
    letter's elements are decoded again from the message), if every element is an object of the
    aggregate fields only and the columnar batch's vectorised checks accept all of them (what
    :func:`_fast_row` accepts, read the same; an absent field is read as null, as there); else
    None."""
    first = obj[0]
    if first.__class__ is dict and _ROW_KEYS <= first.keys() <= _AGG_KEYS:
        # the common array: every element an object of the first one's keys (each has them all,
        # and no more: as many keys in all as that)
        keys = tuple(first)
        try:
            cols = {k: list(map(itemgetter(k), obj)) for k in keys}
        except (KeyError, TypeError):  # an element without one of them, or not an object
            cols = None
        if cols is not None and sum(map(len, obj)) != len(keys) * len(obj):
            cols = None
    else:
        cols = None
    if cols is None:
        if set(map(type, obj)) != {dict}:
            return None
        keys = set().union(*obj)
        if not _ROW_KEYS <= keys <= _AGG_KEYS:
            return None
        get, n = dict.get, len(obj)
        cols = {k: list(map(get, obj, repeat(k, n))) for k in INPUT_COLUMNS if k in keys}
    out = _parse_columns(cols, raw, whole=True)
    if out is not None:
        out.rows_format, out.columns = True, None  # (element() decodes raw again: hold no objects)
    return out


def read_input(raw: bytes) -> list[Row] | InputColumns | None:
    """The window agent's read of an input message: a columnar batch's :class:`InputColumns`;
    a row-format array of at least :data:`ROWS_AS_COLUMNS` aggregates that the columnar checks
    accept whole, as :class:`InputColumns` too (the same rows: ``rows()``); the rows of a
    message :func:`fast_rows` reads; else None (then :func:`parse_input_rows`)."""
    obj = _small_json(raw)
    if obj is _NOT_READ:
        return None
    if is_columnar(obj):
        return parse_input_columns(obj, raw)
    if obj.__class__ is list and len(obj) >= ROWS_AS_COLUMNS:
        try:
            got = _rows_as_columns(obj, raw)
        except Exception:  # noqa: BLE001 - the rows' path decides (and names any error)
            got = None
        if got is not None:
            return got
    return _fast_obj_rows(obj)


def parse_input_message(raw: bytes) -> Parsed | InputColumns:
    """What the window agent reads when :func:`read_input` gave None: a columnar batch (e.g. one
    with NaN literals, which only Python's json reads) as :class:`InputColumns`, anything else
    as :func:`parse_input_rows`. Never raises."""
    msg, obj = _load_input(raw)
    if msg.dead is None and is_columnar(obj):
        return parse_input_columns(obj, raw)
    return msg if msg.dead is not None else _elements(msg, obj, _row)


def columnar_message(aggregates: list[dict[str, Any]], interval: float | None = None) -> bytes:
    """A columnar batch of ``aggregates`` (row objects with series, ts, count, sum and optionally
    min and max; ``interval``: every element's, else a column of theirs).

    >>> columnar_message([{"series": "a", "ts": 5.0, "count": 3, "sum": 6.0, "min": 1.0, "max": 3.0},
    ...                   {"series": "b", "ts": 5.0, "count": 1, "sum": 0.0}], interval=1.0)
    b'{"series":["a","b"],"ts":[5.0,5.0],"interval":1.0,"count":[3,1],"sum":[6.0,0.0],"min":[1.0,null],"max":[3.0,null]}'
    """
    out: dict[str, Any] = {"series": [a["series"] for a in aggregates], "ts": [a["ts"] for a in aggregates]}
    out["interval"] = interval if interval is not None else [a.get("interval") for a in aggregates]
    for k in ("count", "sum"):
        out[k] = [a.get(k) for a in aggregates]
    if any("min" in a or "max" in a for a in aggregates):
        out["min"] = [a.get("min") for a in aggregates]
        out["max"] = [a.get("max") for a in aggregates]
    return orjson.dumps(out)


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
        """One point from a single-record ``points`` message (:func:`parse_points` reads batches too)."""
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRecord("malformed_json", str(exc), raw) from None
        try:
            return cls.from_json(obj)
        except InvalidRecord as exc:
            exc.raw = raw
            raise

    @classmethod
    def from_json(cls, obj: Any) -> Point:
        """One point from its parsed JSON object; :class:`InvalidRecord` if it is not one."""
        if not isinstance(obj, dict):
            raise InvalidRecord("malformed_json", "expected a JSON object")
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
        assert start is not None and end is not None and value is not None
        return cls(series, start, end, int(count), total,
                   lo if lo is not None else math.inf, hi if hi is not None else -math.inf, value)


# -- batches on the internal topics (points, forecasts) ------------------------
#
# ``points`` and ``forecasts`` carry many series per message: a JSON array of the
# single-record objects (a point as in :meth:`Point.to_json`, a forecast as in
# :func:`forecast_to_json`; the window agent writes ``points`` and the model agent
# ``forecasts`` as columnar batches instead, see "columnar points" and "columnar forecasts"
# below), one message per partition per window flush, cut at
# MAX_BATCH_BYTES. Every element is a series of the message's partition (the
# partition of its id, as if it were keyed by it). The single-record format (one
# object, keyed by the series id) stays accepted on input.

#: a batch message on ``points`` / ``forecasts`` is cut at this size (well under Kafka's 1 MB)
MAX_BATCH_BYTES = 256 * 1024


def batches(elements: list[bytes], max_bytes: int = MAX_BATCH_BYTES) -> list[tuple[int, bytes]]:
    """Serialised elements joined into JSON arrays of at most ``max_bytes`` (an element larger
    than that alone); returns (elements in it, message) pairs.

    >>> batches([b'{"a":1}', b'{"b":2}', b'{"c":3}'], max_bytes=20)
    [(2, b'[{"a":1},{"b":2}]'), (1, b'[{"c":3}]')]
    """
    out: list[tuple[int, bytes]] = []
    chunk: list[bytes] = []
    size = 2
    for e in elements:
        if chunk and size + len(e) + 1 > max_bytes:
            out.append((len(chunk), b"[" + b",".join(chunk) + b"]"))
            chunk, size = [], 2
        chunk.append(e)
        size += len(e) + 1
    if chunk:
        out.append((len(chunk), b"[" + b",".join(chunk) + b"]"))
    return out


def _parse_elements(raw: bytes, one: Any) -> Parsed:
    """A single object or an array of objects, each parsed by ``one``; never raises."""
    msg, obj = _loads(raw)
    return msg if msg.dead is not None else _elements(msg, obj, one)


def _loads(raw: bytes) -> tuple[Parsed, Any]:
    """An empty :class:`Parsed` for ``raw`` and its JSON; or, if it is not JSON, the
    :class:`Parsed` holding it whole as a ``malformed_json`` dead letter (and None)."""
    msg = Parsed([], [], [], False, raw)
    try:
        return msg, orjson.loads(raw)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        msg.dead = DeadLetter()
        msg.dead.add_whole("malformed_json", str(exc)[:300], raw)
        return msg, None


def parse_points(raw: bytes) -> Parsed:
    """A ``points`` message: one point, a batch (array) of points, or a columnar batch
    (:class:`PointColumns`); items are a :class:`PointColumns` (indexing or iterating it gives
    :class:`Point` objects). A columnar batch's elements are numbered by their position in its
    columns and checked as :meth:`Point.from_json` checks one, over whole columns at once; its
    dead letter holds the bad ones as single-record objects. A message longer than
    :data:`MAX_MESSAGE_BYTES` is a dead letter (``too_large``) unparsed. Never raises.

    >>> m = parse_points(b'[{"series": "a", "start": 0, "end": 10, "value": 1.5}, {"series": 1}]')
    >>> [(p.series, p.value) for p in m.items], m.dead.reason, m.dead.raw()
    ([('a', 1.5)], 'missing_field', b'[{"series":1}]')
    >>> m = parse_points(b'{"series": ["a", "b", ""], "start": 0, "end": 10, "value": [1.5, "x", 2]}')
    >>> m.items.series, m.items.value.tolist(), m.dead.reasons, m.dead.ranges
    (['a'], [1.5], {'bad_type': 1, 'missing_field': 1}, [[1, 2]])
    >>> m.dead.raw()
    b'[{"series":"b","start":0,"end":10,"value":"x"},{"series":"","start":0,"end":10,"value":2}]'
    >>> parse_points(b'{"series": "a", "start": 0, "end": 10, "value": 2}').items[0].value
    2.0
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        msg = Parsed([], [], [], False, raw)
        msg.dead = DeadLetter()
        msg.dead.add_whole("too_large", f"message of {len(raw)} bytes is longer than {MAX_MESSAGE_BYTES}", raw)
        msg.items = PointColumns.empty()
        return msg
    msg, obj = _loads(raw)
    if msg.dead is None and isinstance(obj, dict) and isinstance(obj.get("series"), list):
        try:
            return _point_columns(msg, obj)
        except InvalidRecord as exc:
            msg.dead = DeadLetter()
            msg.dead.add_whole(exc.reason, exc.error, raw)
        except Exception as exc:  # noqa: BLE001 - total: a parser bug is a dead letter, not a crash
            msg.dead = DeadLetter()
            msg.dead.add_whole("processing_error", f"{type(exc).__name__}: {exc}"[:300], raw)
        msg.items = PointColumns.empty()
        return msg
    if msg.dead is None:
        _elements(msg, obj, Point.from_json)
    msg.items = PointColumns.of(msg.items)
    return msg


# -- columnar points --------------------------------------------------------------
#
# The window agent writes ``points`` as columnar batches: one JSON object per message
# whose ``series`` is an array (one entry per point) and whose other fields are arrays
# of the same length, one per field of :meth:`Point.to_json` (``mean`` is left out: it is
# ``sum / count``):
#
#   {"series": ["a", "b"], "start": 1700000000.0, "end": 1700000010.0, "count": [3, 0],
#    "sum": [6.0, 0.0], "min": [1.0, null], "max": [3.0, null], "value": [0.3, 0.0]}
#
# ``min``/``max`` are null where a window has no data (``count`` 0), as in a single
# record. A field the same for every point may be given once, as a scalar (the writer
# does so for ``start`` and ``end`` when one flush's windows share them). A point is
# checked as :meth:`Point.from_json` checks a single record (same reasons), whole
# columns at a time: a bad point is the message's only dead-letter element, written as
# a single-record object; columns of another length than ``series`` make the whole
# message a dead letter (``bad_type``). The single-record formats stay accepted.

#: the number fields of a point: (name, required)
_POINT_NUMBERS = (("start", True), ("end", True), ("count", False), ("sum", False), ("min", False),
                  ("max", False), ("value", True))
_NUMBER_TYPES = frozenset((int, float))
_OPTIONAL_TYPES = frozenset((int, float, type(None)))


@dataclass(slots=True)
class PointColumns:
    """Points (closed windows) of many series as arrays, one entry per point: what
    :func:`point_batches` writes as columnar ``points`` messages and :func:`parse_points`
    gives. ``min``/``max`` are +inf/-inf where a window has no data; ``count`` is int64.
    Indexing or iterating gives :class:`Point` objects."""

    series: list[str]
    start: np.ndarray
    end: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    value: np.ndarray

    @classmethod
    def empty(cls) -> PointColumns:
        z = np.empty(0)
        return cls([], z, z, np.empty(0, np.int64), z, z, z, z)

    @classmethod
    def of(cls, points: list[Point]) -> PointColumns:
        """The columns of ``points`` (in order)."""
        n = len(points)
        if not n:
            return cls.empty()
        f = np.float64
        return cls([p.series for p in points], np.fromiter((p.start for p in points), f, n),
                   np.fromiter((p.end for p in points), f, n), np.fromiter((p.count for p in points), np.int64, n),
                   np.fromiter((p.sum for p in points), f, n), np.fromiter((p.min for p in points), f, n),
                   np.fromiter((p.max for p in points), f, n), np.fromiter((p.value for p in points), f, n))

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, k: int) -> Point:
        return Point(self.series[k], float(self.start[k]), float(self.end[k]), int(self.count[k]),
                     float(self.sum[k]), float(self.min[k]), float(self.max[k]), float(self.value[k]))

    def __iter__(self) -> Any:
        return (self[k] for k in range(len(self)))

    @classmethod
    def concat(cls, parts: Sequence[PointColumns]) -> PointColumns:
        """The points of ``parts``, one after the other.

        >>> a = PointColumns.of([Point("a", 0.0, 10.0, 1, 2.0, 2.0, 2.0, 2.0)])
        >>> c = PointColumns.concat([a, PointColumns.empty(), a])
        >>> c.series, c.value.tolist(), c.count.dtype.name
        (['a', 'a'], [2.0, 2.0], 'int64')
        """
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        cat = np.concatenate
        return cls([s for p in parts for s in p.series], cat([p.start for p in parts]),
                   cat([p.end for p in parts]), cat([p.count for p in parts]), cat([p.sum for p in parts]),
                   cat([p.min for p in parts]), cat([p.max for p in parts]), cat([p.value for p in parts]))

    def take(self, rows: np.ndarray) -> PointColumns:
        """The points at ``rows`` (indices or a boolean mask)."""
        idx = np.flatnonzero(rows) if rows.dtype == np.bool_ else rows
        return PointColumns([self.series[i] for i in idx.tolist()], self.start[idx], self.end[idx],
                            self.count[idx], self.sum[idx], self.min[idx], self.max[idx], self.value[idx])

    def to_json(self) -> dict[str, Any]:
        """The columnar message: numpy arrays, dump with ``OPT_SERIALIZE_NUMPY`` (NaN is null);
        ``start``/``end`` as scalars when every point shares them."""
        c = np.ascontiguousarray
        lo, hi, has = self.min, self.max, self.count != 0
        start, end = c(self.start), c(self.end)
        return {"series": self.series,
                "start": float(start[0]) if len(start) and (start == start[0]).all() else start,
                "end": float(end[0]) if len(end) and (end == end[0]).all() else end,
                "count": c(self.count), "sum": c(self.sum),
                "min": np.where(has & np.isfinite(lo), lo, np.nan),
                "max": np.where(has & np.isfinite(hi), hi, np.nan), "value": c(self.value)}


class _PointSources:
    """The single-record objects of a columnar batch's accepted points, built when asked
    (``Parsed.source``: a point rejected later goes into the dead letter as one)."""

    __slots__ = ("cols",)

    def __init__(self, cols: PointColumns) -> None:
        self.cols = cols

    def __getitem__(self, k: int) -> dict[str, Any]:
        return self.cols[k].to_json()

    def __len__(self) -> int:
        return len(self.cols)


def _number_column(v: Any, n: int, required: bool) -> tuple[np.ndarray, np.ndarray]:
    """A number column (an array of ``n`` JSON values, or one value for all) as float64 (NaN
    where absent) and the mask of entries to check one by one (:meth:`Point.from_json` decides:
    a wrong type, an absent required value, an int beyond +-MAX_COUNT)."""
    if not isinstance(v, list):
        arr, check = _number_column([v], 1, required)
        return np.full(n, arr[0]), np.full(n, check[0])
    allowed = _NUMBER_TYPES if required else _OPTIONAL_TYPES
    types = set(map(type, v))
    if not types <= allowed:  # some of the wrong type: those are checked on their own
        ok = np.fromiter((type(x) in allowed for x in v), np.bool_, n)
        v = [x if o else None for x, o in zip(v, ok.tolist(), strict=True)]
    else:
        ok = None
    arr = np.array(v, np.float64) if n else np.empty(0)
    check = ~np.isfinite(arr) if required else np.isinf(arr)
    if ok is not None:
        check |= ~ok
    if int in types:
        check |= np.abs(arr) > MAX_COUNT
    return arr, check


def _point_columns(msg: Parsed, o: dict[str, Any]) -> Parsed:
    """A columnar ``points`` batch into ``msg``: items a :class:`PointColumns` of the good points;
    raises :class:`InvalidRecord` if its columns are not arrays of one length."""
    names: list[Any] = o["series"]
    n = len(names)
    raw_cols: dict[str, Any] = {}
    for k, _ in _POINT_NUMBERS:
        v = o.get(k)
        if isinstance(v, list) and len(v) != n:
            raise InvalidRecord("bad_type", f"column {k!r} has {len(v)} entries, not {n}")
        if k in o:
            raw_cols[k] = v
    cols: dict[str, np.ndarray] = {}
    check = np.zeros(n, np.bool_)
    if not (set(map(type, names)) <= {str} and all(names)):
        check |= np.fromiter((type(s) is not str or not s for s in names), np.bool_, n)
    for k, required in _POINT_NUMBERS:
        cols[k], bad = _number_column(raw_cols.get(k), n, required)
        check |= bad
    good = ~check
    dead = None
    for i in np.flatnonzero(check).tolist():  # each as Point.from_json checks a single record
        row: dict[str, Any] = {"series": names[i]}
        for k, v in raw_cols.items():
            row[k] = v[i] if isinstance(v, list) else v
        try:
            p = Point.from_json(row)
        except InvalidRecord as exc:
            dead = dead or DeadLetter()
            dead.add(i, exc.reason, exc.error, row)
            continue
        good[i] = True  # e.g. a float above MAX_COUNT: fine
        for k, x in (("start", p.start), ("end", p.end), ("value", p.value), ("count", p.count),
                     ("min", p.min), ("max", p.max), ("sum", p.sum)):
            cols[k][i] = x
    count = cols["count"]
    count[np.isnan(count)] = 0.0
    lo, hi, total = cols["min"], cols["max"], cols["sum"]
    lo[np.isnan(lo)] = math.inf
    hi[np.isnan(hi)] = -math.inf
    total[np.isnan(total)] = 0.0
    with np.errstate(invalid="ignore"):  # a float count beyond int64: as int() would not, clipped
        counts = np.clip(np.trunc(count), -2.0**63, 2.0**63 - 1024).astype(np.int64)
    items = PointColumns(names, cols["start"], cols["end"], counts, total, lo, hi, cols["value"])
    if not good.all():
        items = items.take(good)
    msg.items = items  # type: ignore[assignment]
    msg.index = np.flatnonzero(good).tolist()
    msg.source = _PointSources(items)  # type: ignore[assignment]
    msg.batch = True
    msg.dead = dead
    return msg


def point_elements(obj: Any) -> list[Any]:
    """The single-record objects of a decoded ``points`` message (one object, an array, or a
    columnar batch expanded, scalars repeated), unchecked: e.g. to read the topic as per-series
    records; raises :class:`InvalidRecord` if a columnar batch's columns are not of one length.

    >>> point_elements({"series": ["a", "b"], "start": 0.0, "end": 10.0, "value": [1.0, 2.0]})[1]
    {'series': 'b', 'start': 0.0, 'end': 10.0, 'value': 2.0}
    """
    if not (isinstance(obj, dict) and isinstance(obj.get("series"), list)):
        return obj if isinstance(obj, list) else [obj]
    names = obj["series"]
    n = len(names)
    cols: dict[str, list[Any]] = {}
    for k, _ in _POINT_NUMBERS:
        if k not in obj:
            continue
        v = obj[k]
        if isinstance(v, list) and len(v) != n:
            raise InvalidRecord("bad_type", f"column {k!r} has {len(v)} entries, not {n}")
        cols[k] = v if isinstance(v, list) else [v] * n
    return [{"series": names[i], **{k: v[i] for k, v in cols.items()}} for i in range(n)]


def point_batches(cols: PointColumns, max_bytes: int = MAX_BATCH_BYTES) -> list[tuple[int, bytes]]:
    """Columnar ``points`` messages of at most ``max_bytes`` (a single point larger than that
    alone) holding ``cols``: (points in it, message) pairs.

    >>> c = PointColumns.of([Point("a", 0.0, 10.0, 2, 3.0, 1.0, 2.0, 0.2), Point("b", 0.0, 10.0, 0, 0.0,
    ...                      math.inf, -math.inf, 0.0)])
    >>> point_batches(c)
    [(2, b'{"series":["a","b"],"start":0.0,"end":10.0,"count":[2,0],"sum":[3.0,0.0],"min":[1.0,null],"max":[2.0,null],"value":[0.2,0.0]}')]
    >>> [p == q for p, q in zip(parse_points(point_batches(c)[0][1]).items, c)]
    [True, True]
    >>> [n for n, _ in point_batches(c, max_bytes=50)]
    [1, 1]
    """
    out: list[tuple[int, bytes]] = []
    _cut_points(cols, max_bytes, out)
    return out


def _cut_points(c: PointColumns, max_bytes: int, out: list[tuple[int, bytes]]) -> None:
    n = len(c)
    if not n:
        return
    body = orjson.dumps(c.to_json(), option=orjson.OPT_SERIALIZE_NUMPY)
    if len(body) <= max_bytes or n == 1:
        out.append((n, body))
        return
    parts = min(n, -(-len(body) * 10 // (9 * max_bytes)))  # ~90% full: the next cut rarely overflows
    for rows in np.array_split(np.arange(n), parts):
        _cut_points(c.take(rows), max_bytes, out)


def parse_forecasts(raw: bytes) -> Parsed:
    """A ``forecasts`` message: one forecast, a batch (array) of them, or a columnar batch
    (:class:`ForecastColumns`), each forecast parsed as strictly as by :func:`parse_forecast`;
    items are :class:`ForecastMessage`. A columnar batch's elements are numbered by their
    position in its columns; its dead letter holds the bad ones as single-record objects.

    >>> one = b'{"series": "a", "issued": 0, "step": 60, "points": []}'
    >>> m = parse_forecasts(b"[" + one + b"," + one.replace(b'"step": 60', b'"step": 0') + b"]")
    >>> [f.forecast.series for f in m.items], m.dead.reason, m.dead.ranges
    (['a'], 'bad_value', [[1, 1]])
    >>> cols = b'{"series": ["a", "b"], "issued": [0, 60], "step": 60, "yhat": [[5], [6]], ' \\
    ...        b'"lower": [[4], [9]], "upper": [[7], [8]]}'
    >>> m = parse_forecasts(cols)
    >>> [(f.forecast.series, f.forecast.points[0].ts) for f in m.items], m.dead.ranges
    ([('a', 60.0)], [[1, 1]])
    """
    framed = raw[:len(FORECASTS_FRAME)] == FORECASTS_FRAME  # what the model agent writes
    msg, obj = (Parsed([], [], [], False, raw), None) if framed else _loads(raw)
    if msg.dead is not None:
        return msg
    try:
        if framed:
            obj = _unframe(raw)
        if isinstance(obj, dict) and isinstance(obj.get("series"), list):
            obj = _forecast_rows(obj)
    except InvalidRecord as exc:  # the message as a whole
        msg.dead = DeadLetter()
        msg.dead.add_whole(exc.reason, exc.error, raw)
        return msg
    return _elements(msg, obj, _forecast_obj)


# -- columnar forecasts ---------------------------------------------------------
#
# The model agent writes ``forecasts`` as columnar batches: one JSON object per
# message whose ``series`` is an array (one entry per forecast) and whose other
# fields are arrays of the same length, one per field of :func:`forecast_to_json`:
#
#   {"series": ["a", "b"], "issued": [t_a, t_b], "step": 60, "coverage": 0.8,
#    "model": "SeasonalEnsemble", "warm": [true, false], "error": [0.1, null],
#    "drifting": [false, false], "observed": [5.0, 7.0], "anomalous": [false, false],
#    "score": [0.1, 0.0], "yhat": [[...], [...]], "lower": [[...], [...]], "upper": [[...], [...]]}
#
# A field the same for every forecast may be given once, as a scalar (the writer
# does so for ``step``, ``coverage`` and ``model``: one bank's series share them).
# ``yhat``/``lower``/``upper`` hold, per forecast, its points' values; a point's
# ``ts`` is ``issued + (k + 1) * step`` for the k-th point (the forecasts are on the
# series' step grid), unless a ``ts`` array of arrays gives them. The parser
# expands a columnar batch into the single-record objects and checks each as
# strictly as :func:`parse_forecast`; the single-record formats stay accepted.
#
# Packed point values: with ``"encoding": "f32le"``
# and ``"horizon": h`` (points per forecast, the same for the whole batch),
# ``yhat``/``lower``/``upper`` are each one base64 string (standard alphabet,
# padded) of ``n * h`` little-endian IEEE-754 float32 values, forecast ``i``'s
# k-th point at index ``i * h + k`` (row-major ``n x h``):
#
#   {"series": ["a", "b"], ..., "encoding": "f32le", "horizon": 2,
#    "yhat": "<base64 of 4 float32>", "lower": "...", "upper": "..."}
#
# ~1.3 KB per forecast of 62 points instead of ~3.5 KB, and no float formatting:
# the values are rounded to float32 (relative error below 6e-8, far below any
# forecast's error; rounding keeps ``lower <= yhat <= upper``). Decoded, they are
# checked as strictly as any: a wrong byte count, a bad base64 string or another
# ``encoding`` makes the whole message a dead letter (``bad_value``), a NaN or
# infinity a forecast's own (``non_finite``), as out-of-range or disordered values.
#
# Framed (what the model agent writes): the same batch with its
# packed columns as raw bytes instead of base64, so not JSON as a whole:
#
#   b"\x00FC\x01" | head length (uint32, little-endian) | head | yhat | lower | upper
#
# ``head`` is the JSON object above without ``yhat``/``lower``/``upper`` (it has
# ``"encoding": "f32le"`` and ``"horizon": h``); each column is the ``n * h``
# little-endian float32 values the base64 string would hold. A quarter fewer bytes
# than base64 (~0.9 KB per forecast of 62 points) and no base64 to write or read:
# the broker's time to take a window's forecasts is most of what the model agent
# waits for at 100,000 series (README "Benchmarks"). No JSON text starts with a NUL
# byte, so a reader tells the two apart by the first bytes; :func:`message_json`
# gives a frame's JSON form (the base64 one) for readers of JSON. A frame whose
# head is not such an object, or whose length is not the head's and the columns',
# is a dead letter as a whole (``malformed_json`` / ``bad_value``).

#: the per-forecast fields of a columnar batch besides series and the points' columns
_FORECAST_SCALARS = ("issued", "step", "coverage", "model", "warm", "error", "drifting", "observed",
                     "anomalous", "score")
_FORECAST_POINT_COLUMNS = ("ts", "yhat", "lower", "upper")
#: the packed point values' only encoding: little-endian float32, base64
FORECAST_ENCODING = "f32le"
_F32LE = np.dtype("<f4")
#: the first bytes of a framed ``forecasts`` batch (NUL, "FC", version 1)
FORECASTS_FRAME = b"\x00FC\x01"
_FRAME_HEAD = len(FORECASTS_FRAME) + 4  # the magic and the head's length


@dataclass(slots=True)
class ForecastColumns:
    """Forecasts of many series issued after one bank update, as arrays (one entry per series):
    what :func:`forecast_batches` writes as columnar ``forecasts`` messages.

    ``intervals[i, k]`` is ``(yhat, lower, upper)`` of the k-th point of forecast ``i``, at
    ``issued[i] + (k + 1) * step``; ``error`` is NaN where there is none.
    """

    series: list[str]
    issued: np.ndarray
    step: float
    intervals: np.ndarray
    coverage: float
    model: str
    warm: np.ndarray
    error: np.ndarray
    drifting: np.ndarray
    observed: np.ndarray
    anomalous: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.series)

    def take(self, rows: np.ndarray) -> ForecastColumns:
        """The forecasts at ``rows`` (indices or a boolean mask)."""
        idx = np.flatnonzero(rows) if rows.dtype == np.bool_ else rows
        return ForecastColumns([self.series[i] for i in idx.tolist()], self.issued[idx], self.step,
                               self.intervals[idx], self.coverage, self.model, self.warm[idx],
                               self.error[idx], self.drifting[idx], self.observed[idx],
                               self.anomalous[idx], self.score[idx])

    def to_json(self) -> dict[str, Any]:
        """The columnar message, its point values packed (``encoding`` f32le): numpy arrays,
        dump with ``OPT_SERIALIZE_NUMPY`` (NaN is null). :func:`forecast_batches` writes the
        same bytes without this dict (:meth:`_head`, then the packed columns)."""
        packed = _packed(self.intervals)
        return {**self._head(0, len(self)), **{k: _b64(packed[j]) for j, k in enumerate(_PACKED)}}

    def _head(self, a: int, b: int) -> dict[str, Any]:
        """The message of rows ``a:b`` but its packed columns (which come last, in ``_PACKED``
        order): every field a slice, no copy."""
        return {"series": self.series[a:b], "issued": self.issued[a:b], "step": self.step,
                "coverage": self.coverage, "model": self.model, "warm": self.warm[a:b],
                "error": self.error[a:b], "drifting": self.drifting[a:b],
                "observed": self.observed[a:b], "anomalous": self.anomalous[a:b],
                "score": self.score[a:b], "encoding": FORECAST_ENCODING,
                "horizon": self.intervals.shape[1]}


def wire_values(values: np.ndarray) -> np.ndarray:
    """``values`` (float64) as a packed ``forecasts`` message carries them: rounded to float32,
    as float64 again (beyond float32's range: infinite). What a worker shows of a forecast
    (its read model) is then exactly what it published.

    >>> wire_values(np.array([0.1, 415.2])).tolist()
    [0.10000000149011612, 415.20001220703125]
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(_F32LE).astype(np.float64)


#: the packed point columns, in the order of ``intervals``' last axis (and of the message)
_PACKED = ("yhat", "lower", "upper")


def _packed(intervals: np.ndarray) -> np.ndarray:
    """``intervals`` (n, h, 3) as the packed columns carry them: (3, n, h) float32, contiguous
    (column j's rows a:b are one block of bytes), in one pass."""
    out = np.empty((3, *intervals.shape[:2]), _F32LE)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused on reading
        np.copyto(out, intervals.transpose(2, 0, 1), casting="unsafe")
    return out


def _b64(a: np.ndarray) -> str:
    return binascii.b2a_base64(np.ascontiguousarray(a), newline=False).decode("ascii")


def _unpack(o: dict[str, Any], n: int) -> dict[str, Any]:
    """The packed point columns of a columnar batch (``encoding`` f32le) as arrays of arrays of
    floats; raises :class:`InvalidRecord` (the whole message) if they are not ``n`` x ``horizon``
    float32 values each."""
    if o.get("encoding") != FORECAST_ENCODING:
        raise InvalidRecord("bad_value", f"packed point values need 'encoding': {FORECAST_ENCODING!r}, "
                                         f"not {o.get('encoding')!r:.40}")
    h = o.get("horizon")
    if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= MAX_FORECAST_POINTS:
        raise InvalidRecord("bad_value", f"'horizon' must be an integer in [0, {MAX_FORECAST_POINTS}], "
                                         f"not {h!r:.40}")
    if "ts" in o:
        raise InvalidRecord("bad_type", "a 'ts' column is not allowed with packed point values")
    out: dict[str, Any] = {}
    for k in ("yhat", "lower", "upper"):
        v = o.get(k)
        if v is None:
            raise InvalidRecord("missing_field", f"column {k!r} is required")
        if isinstance(v, memoryview):  # a frame's column (_unframe): its bytes
            data = v
        elif not isinstance(v, str):
            raise InvalidRecord("bad_type", f"packed column {k!r} must be a base64 string")
        else:
            try:
                data = base64.b64decode(v, validate=True)
            except ValueError:
                raise InvalidRecord("bad_value", f"packed column {k!r} is not base64") from None
        if len(data) != n * h * _F32LE.itemsize:
            raise InvalidRecord("bad_value", f"packed column {k!r} holds {len(data)} bytes, not "
                                             f"{n} x {h} float32 ({n * h * _F32LE.itemsize})")
        out[k] = np.frombuffer(data, _F32LE).astype(np.float64).reshape(n, h).tolist()
    return out


def forecast_batches(columns: list[ForecastColumns],
                     max_bytes: int = MAX_BATCH_BYTES) -> list[tuple[int, bytes]]:
    """Columnar ``forecasts`` messages of at most ``max_bytes`` (a single forecast larger than
    that alone), one or more per :class:`ForecastColumns`: (forecasts in it, message) pairs.

    >>> f = ForecastColumns(["a", "b"], np.array([0.0, 0.0]), 60.0, np.array([[[5.0, 4.0, 7.0]]] * 2),
    ...                     0.8, "m", np.array([True] * 2), np.array([np.nan, 0.5]),
    ...                     np.array([False] * 2), np.array([5.0, 6.0]), np.array([False] * 2),
    ...                     np.array([0.1, 0.2]))
    >>> [(n, len(parse_forecasts(b).items)) for n, b in forecast_batches([f])]
    [(2, 2)]
    >>> [n for n, _ in forecast_batches([f], max_bytes=50)]
    [1, 1]
    """
    out: list[tuple[int, bytes]] = []
    for c in columns:
        _cut_columns(c, max_bytes, out)
    return out


def _cut_columns(c: ForecastColumns, max_bytes: int, out: list[tuple[int, bytes]]) -> None:
    if len(c):
        _cut_rows(c, _packed(c.intervals), 0, len(c), max_bytes, out)


def _cut_rows(c: ForecastColumns, packed: np.ndarray, a: int, b: int, max_bytes: int,
              out: list[tuple[int, bytes]]) -> None:
    """Rows ``a:b`` of ``c`` as framed messages (:data:`FORECASTS_FRAME`). A message's size is
    known before its point values are copied (its head dumped): a batch too large is cut, ~90%
    full (the next cut rarely overflows), each part's head dumped again but every point value
    copied once, straight into the message (``packed``: :func:`_packed` of ``c.intervals``)."""
    n = b - a
    head = orjson.dumps(c._head(a, b), option=orjson.OPT_SERIALIZE_NUMPY)
    size = _FRAME_HEAD + len(head) + len(_PACKED) * n * packed.shape[2] * _F32LE.itemsize
    if size <= max_bytes or n == 1:
        out.append((n, b"".join((FORECASTS_FRAME, len(head).to_bytes(4, "little"), head,
                                 packed[0, a:b], packed[1, a:b], packed[2, a:b]))))
        return
    cuts = min(n, -(-size * 10 // (9 * max_bytes)))
    for rows in np.array_split(np.arange(a, b), cuts):
        _cut_rows(c, packed, int(rows[0]), int(rows[-1]) + 1, max_bytes, out)


def _unframe(raw: bytes) -> dict[str, Any]:
    """A framed ``forecasts`` batch as its columnar object, the packed columns as views of
    ``raw`` (:func:`_unpack` decodes them); raises :class:`InvalidRecord` if it is not one."""
    view = memoryview(raw)
    if len(raw) < _FRAME_HEAD:
        raise InvalidRecord("bad_value", f"a forecasts frame of {len(raw)} bytes (its head alone is {_FRAME_HEAD})")
    end = _FRAME_HEAD + int.from_bytes(view[len(FORECASTS_FRAME):_FRAME_HEAD], "little")
    try:
        o = orjson.loads(view[_FRAME_HEAD:end]) if end <= len(raw) else None
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord("malformed_json", f"a forecasts frame's head: {str(exc)[:300]}") from None
    if not isinstance(o, dict) or not isinstance(o.get("series"), list) or any(k in o for k in _PACKED):
        raise InvalidRecord("malformed_json", "a forecasts frame's head must be a columnar batch's object "
                                              "without its point columns")
    h = o.get("horizon")  # (its range and the encoding: _unpack, as for the base64 columns)
    size = len(o["series"]) * h * _F32LE.itemsize if type(h) is int and h >= 0 else -1
    if size < 0 or len(raw) - end != len(_PACKED) * size:
        raise InvalidRecord("bad_value", f"a forecasts frame of {len(raw)} bytes: not its head and "
                                         f"{len(_PACKED)} columns of {len(o['series'])} x {h!r:.20} float32")
    for j, k in enumerate(_PACKED):
        o[k] = view[end + j * size:end + (j + 1) * size]
    return o


def message_json(raw: bytes) -> Any:
    """The JSON value of a message of any Foresight topic; a framed ``forecasts`` batch as the
    columnar object it stands for (its packed columns base64). Raises ``ValueError`` (an
    ``orjson.JSONDecodeError`` or :class:`InvalidRecord`) if ``raw`` is neither.

    >>> f = ForecastColumns(["a"], np.array([0.0]), 60.0, np.array([[[5.0, 4.0, 7.0]]]), 0.8, "m",
    ...                     np.array([True]), np.array([0.5]), np.array([False]), np.array([5.0]),
    ...                     np.array([False]), np.array([0.1]))
    >>> raw = forecast_batches([f])[0][1]
    >>> o = message_json(raw)
    >>> raw[:4], o["series"], o["horizon"], o["yhat"] == f.to_json()["yhat"]
    (b'\\x00FC\\x01', ['a'], 1, True)
    """
    if raw[:len(FORECASTS_FRAME)] != FORECASTS_FRAME:
        return orjson.loads(raw)
    o = _unframe(raw)
    for k in _PACKED:
        o[k] = binascii.b2a_base64(o[k], newline=False).decode("ascii")
    return o


def forecast_elements(obj: Any) -> list[Any]:
    """The single-record objects of a decoded ``forecasts`` message (one object, an array, or a
    columnar batch expanded), unchecked: e.g. to read the topic as per-series records.

    >>> forecast_elements({"series": ["a"], "issued": [0.0], "step": 60.0, "yhat": [[5.0]],
    ...                    "lower": [[4.0]], "upper": [[7.0]]})[0]["points"]
    [{'ts': 60.0, 'yhat': 5.0, 'lower': 4.0, 'upper': 7.0}]
    """
    if isinstance(obj, dict) and isinstance(obj.get("series"), list):
        return _forecast_rows(obj)
    return obj if isinstance(obj, list) else [obj]


def _forecast_rows(o: dict[str, Any]) -> list[Any]:
    """A columnar batch as the single-record objects it holds (each checked later on its own);
    raises :class:`InvalidRecord` if its columns are not arrays of one length."""
    names = o["series"]
    n = len(names)
    cols: dict[str, list[Any]] = {}
    for k in _FORECAST_SCALARS:
        v = o.get(k)
        if isinstance(v, list):
            if len(v) != n:
                raise InvalidRecord("bad_type", f"column {k!r} has {len(v)} entries, not {n}")
            cols[k] = v
        elif k in o:
            cols[k] = [v] * n
    packed = "encoding" in o or any(isinstance(o.get(k), str) for k in ("yhat", "lower", "upper"))
    points: dict[str, list[Any]] = _unpack(o, n) if packed else {}
    for k in () if packed else _FORECAST_POINT_COLUMNS:
        v = o.get(k)
        if v is None:
            continue
        if not isinstance(v, list) or len(v) != n or not all(isinstance(x, list) for x in v):
            raise InvalidRecord("bad_type", f"column {k!r} must be {n} arrays of point values")
        points[k] = v
    for k in ("yhat", "lower", "upper"):
        if k not in points:
            raise InvalidRecord("missing_field", f"column {k!r} is required")
    rows: list[Any] = []
    for i in range(n):
        row: dict[str, Any] = {"series": names[i]}
        for k, v in cols.items():
            row[k] = v[i]
        yhat, lower, upper = points["yhat"][i], points["lower"][i], points["upper"][i]
        h = len(yhat)
        if len(lower) != h or len(upper) != h:
            rows.append({**row, "points": None})  # refused on its own (missing_field)
            continue
        if "ts" in points:
            ts = points["ts"][i]
        else:
            issued, step = row.get("issued"), row.get("step")
            ok = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (issued, step))
            ts = [issued + (j + 1) * step for j in range(h)] if ok else [None] * h  # type: ignore[operator]
        if len(ts) != h:
            rows.append({**row, "points": None})
            continue
        row["points"] = [{"ts": a, "yhat": b, "lower": c, "upper": d}
                         for a, b, c, d in zip(ts, yhat, lower, upper, strict=True)]
        rows.append(row)
    return rows


def points_batches(points: list[Point]) -> list[tuple[int, bytes]]:
    """Columnar ``points`` messages (:func:`point_batches`) holding ``points``: (points in it, message) pairs."""
    return point_batches(PointColumns.of(points))


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
    return _forecast_obj(o)


def _forecast_obj(o: Any) -> ForecastMessage:
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
        "signal": d.signal,
        "signals": [{"name": f.name, "series": f.series, "desired": f.desired,
                     "reason": f.reason.value, "observed": f.observed,
                     "forecast_peak": f.forecast_peak,
                     "capacity_per_replica": f.capacity_per_replica,
                     "lead_time_seconds": f.lead_time_seconds,
                     "fallback": f.fallback.value if f.fallback is not None else None,
                     "lag": f.lag, "partitions": f.partitions}
                    for f in d.signals],
        "schedule": ({"name": d.schedule[0], "min_replicas": d.schedule[1]}
                     if d.schedule is not None else None),
    }


#: the most signals a decision message may carry (the CRD's spec.signals maxItems)
MAX_DECISION_SIGNALS = 16


def _parse_signals(o: Any) -> list[dict[str, Any]]:
    """A decision's per-signal figures from the wire (absent: none).

    >>> _parse_signals([{"name": "q", "series": "a/q", "desired": 3, "reason": "ForecastPeak",
    ...                  "observed": 10, "capacity_per_replica": 5}])[0]["observed"]
    10.0
    """
    if o is None:
        return []
    if not isinstance(o, list) or len(o) > MAX_DECISION_SIGNALS:
        raise ValueError(f"signals must be a list of at most {MAX_DECISION_SIGNALS}")
    out = []
    for f in o:
        g = {"name": str(f["name"]), "series": str(f["series"]), "desired": _replicas(f["desired"]),
             "reason": str(f["reason"]),
             "fallback": None if f.get("fallback") is None else str(f["fallback"])}
        g["partitions"] = None if f.get("partitions") is None else _replicas(f["partitions"])
        for k in ("observed", "forecast_peak", "capacity_per_replica", "lead_time_seconds", "lag"):
            v = f.get(k)
            g[k] = None if v is None else float(v)
            if g[k] is not None and not math.isfinite(g[k]):
                raise ValueError(f"non-finite signals[].{k}")
        out.append(g)
    return out


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
            "signal": str(o.get("signal") or ""),
            "signals": _parse_signals(o.get("signals")),
            "schedule": (None if o.get("schedule") is None else
                         {"name": str(o["schedule"]["name"]),
                          "min_replicas": _replicas(o["schedule"]["min_replicas"])}),
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
                        offset: int | None, raw: bytes, *, count: int = 1,
                        reasons: dict[str, int] | None = None, ranges: list[list[int]] | None = None,
                        size: int | None = None, truncated: bool = False) -> dict[str, Any]:
    """A ``<topic>.dlq`` record: one per rejected input message.

    ``raw_b64`` holds only the bad part (the whole message if it was one
    object or unparseable; else a JSON array of its bad elements, whose
    positions in the original message are ``ranges``); ``count`` is the
    number of bad elements and ``reasons`` their reasons.
    """
    return {
        "reason": reason,
        "error": error,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "raw_b64": base64.b64encode(raw).decode("ascii"),
        "count": count,
        "reasons": reasons if reasons is not None else {reason: count},
        "ranges": ranges if ranges is not None else [[0, count - 1]],
        "size": len(raw) if size is None else size,
        "truncated": truncated,
    }


def dead_letter_of(d: DeadLetter, topic: str, partition: int | None, offset: int | None,
                   size: int) -> dict[str, Any]:
    """The ``<topic>.dlq`` record of one message's :class:`DeadLetter`."""
    return dead_letter_to_json(d.reason, d.error, topic, partition, offset, d.raw(), count=d.count,
                               reasons=dict(d.reasons), ranges=d.ranges, size=size,
                               truncated=d.truncated)


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A ``<topic>.dlq`` record as read back (``foresight dlq``)."""

    reason: str
    error: str
    topic: str
    partition: int | None
    offset: int | None
    raw: bytes
    count: int
    reasons: dict[str, int]
    truncated: bool


def parse_dead_letter(raw: bytes) -> DeadLetterRecord:
    """Read a dead-letter record back; ``ValueError`` if it is not one.

    >>> body = dead_letter_to_json("late", "closed", "t.events", 0, 7, b'{"x": 1}')
    >>> r = parse_dead_letter(dumps(body))
    >>> r.reason, r.raw, r.count
    ('late', b'{"x": 1}', 1)
    """
    try:
        o = orjson.loads(raw)
        reason = o["reason"]
        if not isinstance(reason, str):
            raise TypeError("reason")
        data = base64.b64decode(o["raw_b64"], validate=True)
        count = int(o.get("count", 1))
        reasons = o.get("reasons") or {reason: count}
        return DeadLetterRecord(
            reason, str(o.get("error", "")), str(o.get("topic", "")),
            None if o.get("partition") is None else int(o["partition"]),
            None if o.get("offset") is None else int(o["offset"]),
            data, count, {str(k): int(v) for k, v in reasons.items()}, bool(o.get("truncated")),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a dead-letter record: {exc}") from None


# -- history (backfill): ``<prefix>.history`` in, ``<prefix>.history.learnt`` receipts out ----

def history_message(aggregates: list[Aggregate]) -> bytes:
    """A ``history`` message: the input wire format (an array of aggregates), validated by
    :func:`parse_input` like any input, but learnt in event time outside the live windows.

    >>> m = parse_input(history_message([Aggregate("a/b", 0.0, 10.0, 2, 3.0, 1.0, 2.0)]))
    >>> m.items[0].series, m.items[0].sum, m.dead
    ('a/b', 3.0, None)
    """
    return orjson.dumps([a.to_json() for a in aggregates])


@dataclass(frozen=True, slots=True)
class HistoryReceipt:
    """What a worker learnt from one ``history`` message of one series."""

    series: str
    #: first and last window start of the message
    start: float
    end: float
    #: first and last window start learnt (None if nothing was)
    first: float | None
    last: float | None
    #: windows learnt, skipped (not newer than what the model had learnt), rejected (invalid)
    learnt: int
    skipped: int
    rejected: int
    #: the forecaster is warm after it; ``updates``: windows the model has learnt in all
    warm: bool
    updates: int
    #: the ``history`` message the receipt answers: its partition and offset (None from a
    #: worker that predates them). What a reader keys receipts by: a span is not unique (a
    #: backfill sent again, or two of the same series at once, send the same spans) and
    #: receipts are at least once, but each message sent has its own offset
    partition: int | None = None
    offset: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"series": self.series, "start": self.start, "end": self.end, "first": self.first, "last": self.last, "learnt": self.learnt,
                "skipped": self.skipped, "rejected": self.rejected, "warm": self.warm,
                "updates": self.updates, "partition": self.partition, "offset": self.offset}

    @classmethod
    def parse(cls, raw: bytes) -> HistoryReceipt:
        """Parse a ``history.learnt`` record strictly; ``ValueError`` if it is not one.

        >>> r = HistoryReceipt("a", 0.0, 10.0, 0.0, 10.0, 2, 0, 0, True, 40, partition=3, offset=17)
        >>> HistoryReceipt.parse(dumps(r.to_json())) == r
        True
        >>> HistoryReceipt.parse(b'{"series": "a", "start": 0, "end": 10, "learnt": 2, "skipped": 0,'
        ...                      b' "rejected": 0, "updates": 40}').offset is None   # an older worker's
        True
        """
        try:
            o = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(o, dict) or not isinstance(o.get("series"), str):
            raise ValueError("not a history receipt")
        counts = [o.get(k) for k in ("learnt", "skipped", "rejected", "updates")]
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ValueError("history receipt counts must be whole numbers >= 0")
        ends = [o.get(k) for k in ("first", "last")]
        if not all(e is None or (isinstance(e, _NUMBER) and not isinstance(e, bool)
                                 and math.isfinite(e)) for e in ends):
            raise ValueError("history receipt times must be numbers or null")
        span = [o.get(k) for k in ("start", "end")]
        if not all(isinstance(e, _NUMBER) and not isinstance(e, bool) and math.isfinite(e) for e in span):
            raise ValueError("history receipt start and end must be numbers")
        where = [o.get(k) for k in ("partition", "offset")]
        if not all(w is None or (isinstance(w, int) and not isinstance(w, bool) and w >= 0) for w in where):
            raise ValueError("history receipt partition and offset must be whole numbers >= 0 or null")
        return cls(o["series"], float(span[0]), float(span[1]), None if ends[0] is None else float(ends[0]),
                   None if ends[1] is None else float(ends[1]), counts[0], counts[1], counts[2],
                   bool(o.get("warm")), counts[3], where[0], where[1])
