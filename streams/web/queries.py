"""The API's queries (pure, used locally and merged across workers)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

MAX_PAGE = 500

SORTS: dict[str, tuple[Callable[[dict[str, Any]], Any], bool]] = {
    "series": (lambda r: r["series"], False),
    "score": (lambda r: (-1.0 if r["score"] is None else r["score"], r["series"]), True),
    "error": (lambda r: (-1.0 if r["error"] is None else r["error"], r["series"]), True),
    "value": (lambda r: (-math.inf if r["value"] is None else r["value"], r["series"]), True),
}


def select_rows(rows: Iterable[dict[str, Any]], q: str, sort: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Filter by substring, sort, keep the first ``limit``; returns (rows, total matched).

    >>> rows = [{"series": s, "score": sc} for s, sc in (("a/x", 0.1), ("b/x", 0.9), ("c/y", None))]
    >>> [r["series"] for r in select_rows(rows, "x", "score", 10)[0]]
    ['b/x', 'a/x']
    """
    ql = q.lower()
    matched = [r for r in rows if ql in r["series"].lower()] if ql else list(rows)
    key, reverse = SORTS.get(sort, SORTS["series"])
    matched.sort(key=key, reverse=reverse)
    return matched[:limit], len(matched)


def _int(request: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return max(lo, min(hi, int(raw)))
    except ValueError:
        raise _BadRequest(f"query parameter {name!r} must be an integer") from None


def _float(request: Any, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        v = float(raw)
    except ValueError:
        raise _BadRequest(f"query parameter {name!r} must be a number (epoch seconds)") from None
    if not math.isfinite(v):
        raise _BadRequest(f"query parameter {name!r} must be finite")
    return v


class _BadRequest(ValueError):
    pass
