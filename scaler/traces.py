"""Reading load traces: ``timestamp,value`` CSV files, one row per window."""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime


def parse_time(raw: str) -> float:
    """Epoch seconds from an ISO-8601 timestamp (``Z`` = UTC) or a number.

    >>> parse_time("2014-07-01T04:00:00Z"), parse_time("60")
    (1404187200.0, 60.0)
    """
    try:
        return float(raw)
    except ValueError:
        pass
    dt = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def read_trace(path: str) -> tuple[list[float], list[float], list[str]]:
    """Read a ``timestamp,value`` CSV: (epoch seconds, values, raw timestamps)."""
    ts, values, raw = [], [], []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"timestamp", "value"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected a header 'timestamp,value'")
        for i, row in enumerate(reader, start=2):
            try:
                t, v = parse_time(row["timestamp"]), float(row["value"])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{i}: bad row {row!r}: {exc}") from exc
            if not math.isfinite(v):
                raise ValueError(f"{path}:{i}: value is not finite")
            ts.append(t)
            values.append(v)
            raw.append(row["timestamp"])
    return ts, values, raw


