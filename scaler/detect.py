"""``foresight detect``: score a ``timestamp,value`` CSV point by point.

The file is read by :mod:`scaler.traces` (strict: header, separator, numbers
and timestamps are checked, and a bad file is rejected with its line) and
replayed through one :class:`detectors.series.SeriesModel`, calling
:meth:`~detectors.series.SeriesModel.score` (score, then learn) for each row:
the same per-point code path the worker runs on every closed window. Rows are
written in input order, one output row per input row, with the timestamp and
value exactly as written (never sorted or de-duplicated: NAB files repeat
timestamps and step back in time).

It sits beside :mod:`scaler.backtest`, the other offline command: neither
touches Kafka.

>>> rows = [("2014-04-10 00:00:00", "1.0"), ("2014-04-10 00:05:00", "1.5")]
>>> [round(s, 3) for _, _, s in score_rows(rows)]
[0.0, 0.0]
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable, Iterator, Sequence

from detectors.series import SeriesModel
from scaler.traces import parse_time, parse_value
from scaler.traces import read_rows as read_trace_rows

__all__ = ["HEADER", "detect_csv", "median_step", "new_model", "parse_time", "parse_value",
           "read_rows", "score_rows"]

#: step assumed when a file has fewer than two distinct timestamps
DEFAULT_STEP_SECONDS = 60.0

HEADER = ("timestamp", "value", "anomaly_score")


def median_step(times: Iterable[float | None], default: float = DEFAULT_STEP_SECONDS) -> float:
    """Median positive gap between consecutive timestamps, else ``default``.

    >>> median_step([0.0, 300.0, 600.0, 600.0, 1200.0])
    300.0
    """
    gaps = []
    prev = None
    for t in times:
        if t is not None and prev is not None and t > prev:
            gaps.append(t - prev)
        if t is not None:
            prev = t
    return float(statistics.median(gaps)) if gaps else default


def new_model(step_seconds: float = DEFAULT_STEP_SECONDS) -> SeriesModel:
    """The per-series model the worker builds (detector and forecaster)."""
    from detectors import defaults

    return defaults.make_series_model(step_seconds=step_seconds)


def score_rows(
    rows: Iterable[Sequence[str]], model: SeriesModel | None = None
) -> Iterator[tuple[str, str, float]]:
    """Yield ``(timestamp, value, score)`` for each ``(timestamp, value)`` row.

    Rows are scored in the order given, each with ``model.score`` before the
    next row is read, so a score never depends on later rows. A timestamp or
    value that does not parse raises ``ValueError`` (files are checked by
    :func:`read_rows` first).
    """
    if model is None:
        model = new_model()
    for ts, raw in rows:
        s = model.score(parse_value(raw), parse_time(ts))
        if not (s >= 0.0):  # NaN guard
            s = 0.0
        yield ts, raw, (1.0 if s > 1.0 else s)


def read_rows(input_path: str) -> list[tuple[str, str]]:
    """``(timestamp, value)`` rows of a ``timestamp,value`` CSV as written, in file order.

    Raises :class:`scaler.traces.TraceError` (naming the file and line) for a
    file that breaks the format, ``OSError`` for one that cannot be read.
    """
    return [(r.raw_ts, r.raw_value) for r in read_trace_rows(input_path)]


def detect_csv(input_path: str, output_path: str, model: SeriesModel | None = None) -> int:
    """Score ``input_path`` into ``output_path``; return the number of rows written.

    The model (when not given) is built for the file's median time step.
    """
    rows = read_rows(input_path)
    if model is None:
        model = new_model(median_step(parse_time(r[0]) for r in rows))
    n = 0
    with open(output_path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(HEADER)
        for ts, raw, s in score_rows(rows, model):
            w.writerow((ts, raw, repr(s)))
            n += 1
    return n
