"""Backfill benchmark: how fast the worker learns history, in process (no Kafka).

Runs the worker's own history path (:class:`streams.history.HistoryLearner`: validation,
windowing, the series model, the view) over 14 days of a daily cycle at the given window,
in history messages as ``foresight backfill`` sends them, and prints JSON: windows, seconds,
windows per second, and whether the model is warm afterwards. End-to-end figures (Prometheus
and Kafka included) are printed by ``foresight backfill`` itself.

    python benchmarks/backfill.py [--days 14] [--window 10 60 300]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from prometheus_client import CollectorRegistry  # noqa: E402

from detectors.defaults import make_series_model  # noqa: E402
from streams import web  # noqa: E402
from streams.backfill import window_aggregates, windows_per_message  # noqa: E402
from streams.history import HistoryLearner, HistoryMetrics  # noqa: E402
from streams.metrics import Metrics  # noqa: E402
from streams.records import history_message  # noqa: E402
from streams.settings import Settings  # noqa: E402


class _Cached:
    def __init__(self, model: object, step: float) -> None:
        self.model = model
        self.step = step
        self.since_checkpoint = 0


def run(days: float, window: float) -> dict[str, object]:
    settings = Settings(window_seconds=window)
    horizon = settings.forecast_horizon_steps()
    cache: dict[str, _Cached] = {}
    store = web.ViewStore(web.view_points(settings), Metrics())
    learner = HistoryLearner(
        window, lambda s, t, v: cache.setdefault(s, _Cached(make_series_model(window, None, horizon), window)),
        store, lambda *_: None, lambda _: None, HistoryMetrics(CollectorRegistry()))
    n = int(days * 86400 / window)
    t0 = 1_700_000_000.0
    samples = [(t0 + i * window, 100 + 40 * math.sin(2 * math.pi * i * window / 86400) + 3 * math.sin(i))
               for i in range(n)]
    aggs = window_aggregates("bench/load", samples, window)
    per = windows_per_message("bench/load")
    messages = [history_message(aggs[i:i + per]) for i in range(0, len(aggs), per)]
    start = time.perf_counter()
    for raw in messages:
        learner.learn_message(raw)
    seconds = time.perf_counter() - start
    model = cache["bench/load"].model
    return {"days": days, "window_seconds": window, "horizon_steps": horizon, "windows": n,
            "messages": len(messages), "seconds": round(seconds, 2),
            "windows_per_second": round(n / seconds), "warm": bool(model.forecaster.warm)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=float, default=14.0)
    p.add_argument("--window", type=float, nargs="+", default=[60.0, 300.0])
    args = p.parse_args()
    print(json.dumps([run(args.days, w) for w in args.window], indent=2))


if __name__ == "__main__":
    main()
