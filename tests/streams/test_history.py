"""The worker's history path without Kafka: validation, its own windows, skipping, receipts."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry

from detectors.defaults import make_series_model
from streams import web
from streams.history import HistoryLearner, HistoryMetrics
from streams.metrics import Metrics
from streams.records import Aggregate, columnar_message, history_message

STEP = 10.0


class _Cached:
    def __init__(self) -> None:
        self.model = make_series_model(STEP, 36, 6)
        self.step = STEP
        self.since_checkpoint = 3


def _learner() -> tuple[HistoryLearner, dict, list, CollectorRegistry, web.ViewStore]:
    models: dict = {}
    saved: list = []
    registry = CollectorRegistry()
    store = web.ViewStore(50, Metrics())
    learner = HistoryLearner(STEP, lambda s, t, v: models.setdefault(s, _Cached()), store,
                             lambda s, m, v: saved.append((s, m.updates, v.latest)), lambda s: None,
                             HistoryMetrics(registry), lambda s: models[s].model if s in models else None)
    return learner, models, saved, registry, store


def _samples(n: int, t0: float = 1.7e9, per_window: int = 2) -> list[Aggregate]:
    """``per_window`` samples in each of ``n`` windows (history at a finer step than the window)."""
    out = []
    for i in range(n * per_window):
        t = t0 + i * STEP / per_window
        v = 100 + 30 * math.sin(2 * math.pi * i / (36 * per_window))
        out.append(Aggregate("h/load", t, 0.0, 1, v, v, v))
    return out


def test_history_is_windowed_learnt_in_order_checkpointed_and_shown():
    learner, models, saved, registry, store = _learner()
    aggs = _samples(200)
    receipts, dead = learner.learn_message(history_message(aggs))
    assert dead is None
    [r] = receipts
    assert (r.learnt, r.skipped, r.rejected) == (200, 0, 0)
    assert (r.start, r.end, r.first, r.last) == (1.7e9, 1.7e9 + 199 * STEP, 1.7e9, 1.7e9 + 199 * STEP)
    assert models["h/load"].model.updates == r.updates == 200, "one update per window, not per sample"
    assert r.warm is models["h/load"].model.forecaster.warm
    last_window_mean = (aggs[-2].sum + aggs[-1].sum) / 2
    assert models["h/load"].since_checkpoint == 0
    assert saved == [("h/load", 200, (1.7e9 + 199 * STEP, last_window_mean))], "checkpointed once"
    d = store.series["h/load"].detail()
    assert d["points_learnt"] == d["history_points"] == 200 and d["kind"] == "metrics"
    assert len(d["points"]) == 50 and d["points"][-1]["ts"] == 1.7e9 + 199 * STEP, "the view shows the last windows"
    assert registry.get_sample_value("foresight_history_points_total", {"outcome": "learnt"}) == 200


def test_history_not_newer_than_the_model_is_skipped_and_bad_elements_rejected_alone():
    learner, models, _, registry, _ = _learner()
    learner.learn_message(history_message(_samples(100)))
    again = _samples(120)  # the same 100 windows and 20 newer ones
    raw = history_message(again)[:-1] + b',{"series": "h/load", "ts": 1, "value": "high"}]'
    [r], dead = learner.learn_message(raw)
    assert (r.learnt, r.skipped, r.rejected) == (20, 100, 1)
    assert dead is not None and dead.reason == "bad_type" and dead.count == 1
    assert models["h/load"].model.updates == 120
    assert registry.get_sample_value("foresight_history_points_total", {"outcome": "skipped"}) == 100
    assert registry.get_sample_value("foresight_history_points_total", {"outcome": "rejected"}) == 1


def test_a_columnar_history_batch_is_learnt_and_its_bad_element_rejected_alone():
    learner, models, _, registry, _ = _learner()
    rows = [{"series": a.series, "ts": a.ts, "count": a.count, "sum": a.sum, "min": a.min, "max": a.max}
            for a in _samples(40)]
    rows[7]["count"] = -3  # one bad element among 80
    [r], dead = learner.learn_message(columnar_message(rows, interval=0.0))
    assert dead is not None and dead.count == 1 and dead.reason == "bad_value", dead and dead.reason
    assert (r.learnt, r.rejected) == (40, 1), "the other 79 samples' 40 windows are learnt"
    assert models["h/load"].model.updates == 40
    assert registry.get_sample_value("foresight_history_points_total", {"outcome": "rejected"}) == 1


def test_history_is_exempt_from_lateness_and_the_future_check():
    learner, models, _, _, _ = _learner()
    old = _samples(30, t0=1.0e9)  # years before anything live, and a jump no live partition accepts
    new = _samples(30, t0=1.9e9)
    [r], dead = learner.learn_message(history_message(old + new))
    assert dead is None and r.learnt == 60 and models["h/load"].model.updates == 60


def test_history_already_learnt_is_skipped_even_when_the_view_was_lost():
    learner, models, _, _, store = _learner()
    learner.learn_message(history_message(_samples(100)))
    store.series.clear()  # say a rebalance dropped it and its snapshot could not be restored
    [r], _ = learner.learn_message(history_message(_samples(100)), partition=2, offset=7)
    assert (r.learnt, r.skipped) == (0, 100) and models["h/load"].model.updates == 100
    assert (r.updates, r.warm) == (100, models["h/load"].model.forecaster.warm), \
        "a receipt of windows all skipped still tells how far the model is"
    assert (r.partition, r.offset) == (2, 7), "a receipt names the history message it answers"
