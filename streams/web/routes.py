"""The dashboard, its static assets and the JSON API, registered on the worker's Faust app.

``/api/series/{id}`` is forwarded to the worker owning the series
(:class:`~streams.web.cluster.Cluster`); list endpoints ask every worker and
merge. Each worker answers from its read model
(:class:`~streams.web.readmodel.ViewStore`), first restoring from the
``series_view`` and ``targets`` tables what it owns and does not hold yet.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import faust
import orjson

from streams.settings import Settings
from streams.topics import Topics
from streams.web.cluster import ROUTED_HEADER, Cluster
from streams.web.queries import MAX_PAGE, SORTS, _BadRequest, _float, _int, select_rows
from streams.web.readmodel import SeriesView, ViewStore, unit_of
from streams.web.specs import target_specs

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def json_response(view: Any, body: Any, status: int = 200) -> Any:
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status,
                      headers={"Cache-Control": "no-store"})


def error(view: Any, status: int, message: str, **extra: Any) -> Any:
    return json_response(view, {"error": message, "status": status, **extra}, status)


class Api:
    """The JSON API's handlers over one worker's read model and its tables."""

    def __init__(self, cluster: Cluster, settings: Settings, topics: Topics, store: ViewStore,
                 series_table: faust.Table, targets_table: faust.Table) -> None:
        self.cluster = cluster
        self.topics = topics
        self.store = store
        self.series_table = series_table
        self.targets_table = targets_table
        self.specs = target_specs(settings)

    # -- restoring from the tables -----------------------------------------
    def sync_series(self) -> None:
        """Restore every series this worker owns from the ``series_view`` table that it does not hold."""
        owns = self.cluster.owns(self.topics.points)
        self._sync("series_view", self.series_table, self.store.series,
                   lambda s: owns(s) and self.store.wanted(s),  # evicted as idle: stays in the table
                   self.store.restore_series)

    def sync_targets(self) -> None:
        """Restore every target this worker owns from the ``targets`` table that it does not hold."""
        self._sync("targets", self.targets_table, self.store.targets, self.cluster.owns(self.topics.decisions),
                   self.store.restore_target)

    def _sync(self, name: str, table: faust.Table, held: Mapping[str, Any], keep: Callable[[str], bool],
              restore: Callable[[str, Any], Any]) -> None:
        # keys first, then only the values restored: the table's values may be on disk
        # (streams/tablestore.py), and most are held already
        for k in list(table.keys()):
            key = _table_key(k)
            if key is None:
                self.store._refused(name, repr(k)[:100], "key is not UTF-8", table.get(k))
                continue
            if key in held or not keep(key):
                continue
            v = table.get(k)
            if v is not None:
                restore(key, v)  # a bad snapshot is skipped and counted

    def with_spec(self, summary: dict[str, Any]) -> dict[str, Any]:
        """A target's summary plus its spec (capacity, min, max: to check a count by eye) and unit."""
        spec = self.specs.get(summary["target"])
        summary["spec"] = spec
        view = self.store.series.get(spec["series"]) if spec else None
        summary["unit"] = unit_of(view.kind) if view is not None else None
        return summary

    def local_series(self, series: str) -> SeriesView | None:
        v = self.store.series.get(series)
        if v is None:
            raw = self.series_table.get(series.encode())
            if raw:
                v = self.store.restore_series(series, raw)
        return v

    # -- endpoints ---------------------------------------------------------
    async def series(self, view: Any, request: Any) -> Any:
        """``/api/series``: the series of every worker, filtered, sorted and paged."""
        try:
            q = request.query.get("q", "")
            sort = request.query.get("sort", "series")
            if sort not in SORTS:
                raise _BadRequest(f"sort must be one of {sorted(SORTS)}")
            offset = _int(request, "offset", 0, 0, 10**9)
            limit = _int(request, "limit", 50, 1, MAX_PAGE)
        except _BadRequest as exc:
            return error(view, 400, str(exc))

        def local() -> dict[str, Any]:
            self.sync_series()
            rows, total = select_rows((v.summary() for v in self.store.series.values()), q, sort,
                                      offset + limit)
            return {"items": rows, "total": total}

        parts, failed = await self.cluster.fan_out(request, local)
        if request.headers.get(ROUTED_HEADER):
            return json_response(view, parts[0])
        merged = [r for p in parts for r in p["items"]]
        rows, _ = select_rows(merged, "", sort, offset + limit)
        total = sum(p["total"] for p in parts)
        return json_response(view, {"items": rows[offset:offset + limit], "total": total,
                                    "offset": offset, "limit": limit, "partial": bool(failed),
                                    "workers": len(parts) + len(failed), "unavailable": failed})

    async def series_one(self, view: Any, request: Any, series: str) -> Any:
        """``/api/series/{id}``: one series' detail, from the worker that owns it."""
        cluster = self.cluster
        try:
            since = _float(request, "since")
        except _BadRequest as exc:
            return error(view, 400, str(exc))
        if not request.headers.get(ROUTED_HEADER):
            url, mine = cluster.owner(self.topics.points, series)
            if not mine and url is not None:
                try:
                    status, body = await cluster.forward(url, request)
                except Exception as exc:  # noqa: BLE001
                    return error(view, 503, f"the worker owning this series ({url}) did not answer: {exc}",
                                 series=series, owner=url)
                return json_response(view, body, status)
        v = self.local_series(series)
        if v is None:
            return error(view, 404, "unknown series", series=series)
        body = v.detail(since)
        body["worker"] = cluster.self_url()
        return json_response(view, body)

    async def targets(self, view: Any, request: Any) -> Any:
        """``/api/targets``: every worker's targets, with their spec."""
        history = request.query.get("history", "1") not in ("0", "false", "no")

        def local() -> dict[str, Any]:
            self.sync_targets()
            return {"items": [self.with_spec(t.summary(history)) for t in self.store.targets.values()]}

        parts, failed = await self.cluster.fan_out(request, local)
        if request.headers.get(ROUTED_HEADER):
            return json_response(view, parts[0])
        items = sorted((t for p in parts for t in p["items"]), key=lambda t: t["target"])
        return json_response(view, {"items": items, "partial": bool(failed), "unavailable": failed})

    async def decisions(self, view: Any, request: Any) -> Any:
        """``/api/decisions``: every worker's decision logs, newest first."""
        try:
            limit = _int(request, "limit", 50, 1, MAX_PAGE)
            since = _float(request, "since")
        except _BadRequest as exc:
            return error(view, 400, str(exc))
        only = request.query.get("target") or None
        lo = -math.inf if since is None else since

        def local() -> dict[str, Any]:
            self.sync_targets()
            rows = [d for t in self.store.targets.values() if only is None or t.target == only
                    for d in t.log if d["ts"] > lo]
            rows.sort(key=lambda d: (d["ts"], d["target"]), reverse=True)
            return {"items": rows[:limit]}

        parts, failed = await self.cluster.fan_out(request, local)
        if request.headers.get(ROUTED_HEADER):
            return json_response(view, parts[0])
        rows = sorted((d for p in parts for d in p["items"]), key=lambda d: (d["ts"], d["target"]),
                      reverse=True)
        return json_response(view, {"items": rows[:limit], "partial": bool(failed), "unavailable": failed})


def register(app: faust.App, settings: Settings, topics: Topics, store: ViewStore,
             series_table: faust.Table, targets_table: faust.Table) -> Api:
    """Register the dashboard, the static assets and the JSON API on ``app``."""
    api = Api(Cluster(app, settings), settings, topics, store, series_table, targets_table)
    app.web.add_static("/static/", STATIC_DIR)
    index_html = (STATIC_DIR / "index.html").read_bytes()

    @app.page("/dashboard/", name="foresight-dashboard")
    async def dashboard_page(view: Any, request: Any) -> Any:
        return view.bytes(index_html, content_type="text/html", headers={"Cache-Control": "no-store"})

    @app.page("/dashboard", name="foresight-dashboard-noslash")
    async def dashboard_noslash(view: Any, request: Any) -> Any:
        return view.bytes(index_html, content_type="text/html", headers={"Cache-Control": "no-store"})

    @app.page("/api/series", name="foresight-api-series")
    async def api_series(view: Any, request: Any) -> Any:
        return await api.series(view, request)

    @app.page("/api/series/{series:.+}", name="foresight-api-series-one")
    async def api_series_one(view: Any, request: Any, series: str) -> Any:
        return await api.series_one(view, request, series)

    @app.page("/api/targets", name="foresight-api-targets")
    async def api_targets(view: Any, request: Any) -> Any:
        return await api.targets(view, request)

    @app.page("/api/decisions", name="foresight-api-decisions")
    async def api_decisions(view: Any, request: Any) -> Any:
        return await api.decisions(view, request)

    return api


def _table_key(k: Any) -> str | None:
    """A table key as text; None if it is not UTF-8 (only a forged record has such a key)."""
    if isinstance(k, bytes | bytearray):
        try:
            return bytes(k).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return str(k)


def series_path(series: str) -> str:
    """URL path of a series in the API (ids contain '/', which is kept encoded).

    >>> series_path("checkout/requests")
    '/api/series/checkout%2Frequests'
    """
    return "/api/series/" + quote(series, safe="")
