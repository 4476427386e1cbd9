"""Load traces: the one reader of ``timestamp,value`` CSV files and the one timestamp parser.

Every command that reads a trace uses this module: ``foresight detect``,
``foresight backtest``, ``foresight produce`` (the replay) and the
benchmarks. The format is strict so that a file which is not what it seems is
rejected with the file and line, instead of being scored as zeros:

- the first line is the header ``timestamp,value`` (exactly these two columns);
- fields are separated by commas (a ``;`` or tab separated file is named as such);
- every value is a finite decimal number (``n/a``, ``nan`` or an empty cell is an error);
- every timestamp is ISO-8601 (``2014-04-10 00:05:00``, ``2014-04-10T00:05:00Z``,
  with an optional UTC offset; no zone = UTC) or epoch seconds (``1397088300``);
- at least one data row.

Rows are returned in file order, repeated timestamps and steps back in time
included (NAB files have both): callers that need increasing time check it
themselves.

>>> import io
>>> read_trace(io.StringIO("timestamp,value\\n2014-04-10 00:00:00,1.5\\n60,2\\n"))
([1397088000.0, 60.0], [1.5, 2.0], ['2014-04-10 00:00:00', '60'])
>>> read_trace(io.StringIO("time,requests\\n0,1\\n"), name="load.csv")
Traceback (most recent call last):
...
scaler.traces.TraceError: load.csv:1: header is 'time,requests', expected 'timestamp,value'
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple

HEADER = ("timestamp", "value")
#: latest accepted timestamp (2100-01-01 in epoch seconds): a larger number is a unit mistake (ms, us)
MAX_EPOCH_SECONDS = 4102444800.0


class TraceError(ValueError):
    """A trace file that does not follow the format; the message names the file and line."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path, self.line, self.problem = path, line, problem
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")


class Row(NamedTuple):
    """One data row: its line in the file, the parsed pair and the text as written."""

    line: int
    ts: float
    value: float
    raw_ts: str
    raw_value: str


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO-8601 timestamp (no zone = UTC) or of a number of seconds.

    >>> parse_time("1970-01-01 00:01:00"), parse_time("1970-01-01T00:01:00Z")
    (60.0, 60.0)
    >>> parse_time("1970-01-01T02:01:00+02:00"), parse_time("120"), parse_time(" 7.5 ")
    (60.0, 120.0, 7.5)
    >>> parse_time("03/2/2025 10:00")
    Traceback (most recent call last):
    ...
    ValueError: timestamp '03/2/2025 10:00' is neither ISO-8601 (2025-03-02 10:00:00) nor epoch seconds
    """
    raw = text.strip()
    try:
        ts = float(raw)
    except ValueError:
        try:
            dt = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
        except ValueError:
            raise ValueError(
                f"timestamp {text!r} is neither ISO-8601 (2025-03-02 10:00:00) nor epoch seconds"
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ts = dt.timestamp()
    if not math.isfinite(ts) or ts < 0 or ts > MAX_EPOCH_SECONDS:
        raise ValueError(f"timestamp {text!r} is out of range (epoch seconds from 1970 to 2100)")
    return ts


def parse_value(text: str) -> float:
    """A finite number, else ``ValueError`` saying what the cell held.

    >>> parse_value(" 3.25 "), parse_value("1e3")
    (3.25, 1000.0)
    >>> parse_value("n/a")
    Traceback (most recent call last):
    ...
    ValueError: value 'n/a' is not a number
    """
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"value {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"value {text!r} is not a finite number")
    return v


def iter_trace(fh: IO[str], name: str = "<trace>") -> Iterator[Row]:
    """Yield a :class:`Row` per data row, in file order.

    Raises :class:`TraceError` at the first line that breaks the format.
    """
    first = fh.readline()
    if not first.strip():
        raise TraceError(name, None, "the file is empty; expected a header 'timestamp,value' "
                                     "and one row per point")
    header = first.rstrip("\r\n")
    for sep, label in ((";", "semicolons"), ("\t", "tabs")):
        if sep in header and "," not in header:
            raise TraceError(name, 1, f"fields are separated by {label}; expected commas "
                                      "(header 'timestamp,value')")
    cols = tuple(c.strip().lower() for c in next(csv.reader([header])))
    if cols != HEADER:
        raise TraceError(name, 1, f"header is {header.strip()!r}, expected 'timestamp,value'")
    rows = 0
    for line, row in enumerate(csv.reader(fh), start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) != 2:
            raise TraceError(name, line, f"expected 2 comma-separated fields (timestamp,value), "
                                         f"found {len(row)}: {','.join(row)!r}")
        try:
            ts = parse_time(row[0])
            v = parse_value(row[1])
        except ValueError as exc:
            raise TraceError(name, line, str(exc)) from None
        rows += 1
        yield Row(line, ts, v, row[0], row[1])
    if not rows:
        raise TraceError(name, None, "no data rows after the header 'timestamp,value'")


def read_trace(source: str | Path | IO[str], name: str | None = None
               ) -> tuple[list[float], list[float], list[str]]:
    """Read a whole ``timestamp,value`` CSV: (epoch seconds, values, raw timestamps).

    ``source`` is a path or an open text file (``name`` is then used in errors).
    A missing or unreadable path raises ``OSError``; a malformed file
    :class:`TraceError` (a ``ValueError``) naming the file and line.
    """
    ts: list[float] = []
    values: list[float] = []
    raw: list[str] = []
    rows = read_rows(source, name)
    for r in rows:
        ts.append(r.ts)
        values.append(r.value)
        raw.append(r.raw_ts)
    return ts, values, raw


def read_rows(source: str | Path | IO[str], name: str | None = None) -> list[Row]:
    """Every :class:`Row` of a ``timestamp,value`` CSV (a path or an open text file), in file order."""
    if not isinstance(source, str | Path):
        return list(iter_trace(source, name or getattr(source, "name", "<trace>")))
    name = name or str(source)
    with open(source, newline="", encoding="utf-8") as fh:
        try:
            return list(iter_trace(fh, name))
        except UnicodeDecodeError as exc:
            raise TraceError(name, None, f"not a UTF-8 text file ({exc.reason})") from None
