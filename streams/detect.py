"""``foresight detect``: score a ``timestamp,value`` CSV point by point.

The file is replayed through one :class:`detectors.series.SeriesModel`, calling
:meth:`~detectors.series.SeriesModel.score` (score, then learn) for each row:
the same per-point code path the worker runs on every closed window. Rows are
written in input order, one output row per input row (never sorted or
de-duplicated); a row whose value is not a finite number scores 0 and is not
learnt.

>>> rows = [("2014-04-10 00:00:00", "1.0"), ("2014-04-10 00:05:00", "oops")]
>>> [round(s, 3) for _, _, s in score_rows(rows)]
[0.0, 0.0]
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

from detectors.series import SeriesModel

#: step assumed when a file has fewer than two parseable timestamps
DEFAULT_STEP_SECONDS = 60.0

HEADER = ("timestamp", "value", "anomaly_score")


def parse_time(text: str) -> float | None:
    """Epoch seconds of a NAB-style, ISO-8601 or numeric timestamp (naive = UTC).

    >>> parse_time("1970-01-01 00:01:00"), parse_time("1970-01-01T00:01:00Z")
    (60.0, 60.0)
    >>> parse_time("120"), parse_time("yesterday")
    (120.0, None)
    """
    text = text.strip()
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        try:
            v = float(text)
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_value(text: str) -> float | None:
    """The row's value, or None when it is not a finite number."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


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
    next row is read, so a score never depends on later rows.
    """
    if model is None:
        model = new_model()
    for row in rows:
        ts = row[0] if len(row) > 0 else ""
        raw = row[1] if len(row) > 1 else ""
        value = parse_value(raw)
        if value is None:
            yield ts, raw, 0.0
            continue
        s = model.score(value, parse_time(ts))
        if not (s >= 0.0):  # NaN guard
            s = 0.0
        yield ts, raw, (1.0 if s > 1.0 else s)


def read_rows(input_path: str) -> list[list[str]]:
    """``[timestamp, value]`` rows of a CSV, header (if any) removed."""
    with open(input_path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if not rows:
        return []
    head = [c.strip().lower() for c in rows[0]]
    if "timestamp" in head or "value" in head or parse_value(rows[0][-1]) is None:
        t_col = head.index("timestamp") if "timestamp" in head else 0
        v_col = head.index("value") if "value" in head else min(1, len(head) - 1)
        body = rows[1:]
    else:
        t_col, v_col, body = 0, 1, rows
    out = []
    for r in body:
        out.append(
            [r[t_col] if t_col < len(r) else "", r[v_col] if v_col < len(r) else ""]
        )
    return out


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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="foresight detect",
        description="Score a timestamp,value CSV with the worker's anomaly detector.",
    )
    ap.add_argument("--input", required=True, help="CSV with timestamp,value columns")
    ap.add_argument("--output", required=True, help="CSV to write timestamp,value,anomaly_score")
    args = ap.parse_args(argv)
    n = detect_csv(args.input, args.output)
    print(f"{n} rows scored -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
