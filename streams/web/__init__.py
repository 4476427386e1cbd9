"""The worker's read-only web API and dashboard (served by Faust's web server).

Read model
    :class:`ViewStore` (:mod:`streams.web.readmodel`): per series and per
    target, what this worker serves, fed by the model and decisions agents and
    snapshotted to changelog-backed tables.

Routing
    A series lives on the worker that owns its partition of the ``points``
    topic (the same partition as its models); a target on the owner of its
    ``decisions`` partition. ``/api/series/{id}`` is forwarded to the owner
    (Faust's partition assignment says which worker that is); list endpoints
    ask every worker and merge. A forwarded request carries
    ``X-Foresight-Routed`` and is always answered locally (no loops during a
    rebalance).

Endpoints (JSON unless noted; all GET)
    ``/dashboard/`` (HTML), ``/api/series``, ``/api/series/{id}``,
    ``/api/targets``, ``/api/decisions``; ``/static/`` serves the dashboard's
    assets (shipped as package data, never from a CDN).

Modules
    :mod:`~streams.web.readmodel` (the read model), :mod:`~streams.web.routes`
    (the pages and the API's handlers), :mod:`~streams.web.cluster` (ownership
    and forwarding), :mod:`~streams.web.queries` (pure query helpers),
    :mod:`~streams.web.specs` (what the PredictiveScaler file names).
"""

from __future__ import annotations

from streams.web.cluster import (
    FORWARD_TIMEOUT,
    ROUTED_HEADER,
    Cluster,
    advertised_host,
    partition_for,
)
from streams.web.queries import MAX_PAGE, SORTS, select_rows
from streams.web.readmodel import (
    ANOMALY_HISTORY,
    DECISION_LOG,
    DEFAULT_VIEW_POINTS,
    TARGET_HISTORY,
    Anomaly,
    SeriesView,
    TargetView,
    ViewStore,
    unit_of,
    view_points,
)
from streams.web.routes import STATIC_DIR, Api, register, series_path
from streams.web.specs import load_selector, scaler_series, target_specs

__all__ = [
    "ANOMALY_HISTORY", "DECISION_LOG", "DEFAULT_VIEW_POINTS", "FORWARD_TIMEOUT", "MAX_PAGE", "ROUTED_HEADER",
    "SORTS", "STATIC_DIR", "TARGET_HISTORY", "Anomaly", "Api", "Cluster", "SeriesView", "TargetView", "ViewStore",
    "advertised_host", "load_selector", "partition_for", "register", "scaler_series", "select_rows",
    "series_path", "target_specs", "unit_of", "view_points",
]
