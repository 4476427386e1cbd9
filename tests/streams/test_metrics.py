"""Prometheus metrics: format, counters moving, cardinality bounded."""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import Metrics, SeriesSelector
from streams.producer import AggregatingProducer
from streams.settings import Settings
from tests.conftest import send_raw
from tests.streams.test_web import T0, WINDOW, decision, wait_until

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    out: Samples = defaultdict(list)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name].append((dict(s.labels), s.value))
    return out


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=15) as r:  # noqa: S310
        assert r.headers.get("Content-Type", "").startswith("text/plain")
        return parse(r.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for ls, v in samples.get(name, []) if all(ls.get(k) == x for k, x in labels.items()))


def test_selector_caps_per_series_labels_and_counts_the_rest():
    m = Metrics()
    sel = SeriesSelector(m, names={"checkout/requests"}, patterns=["bulk/*"], cap=5)
    sel.observe("checkout/requests", 10.0, 0.1, (11.0, 9.0, 13.0), 15.0)
    for i in range(10_000):
        sel.observe(f"bulk/s{i:05d}", float(i), 0.5, (1.0, 0.0, 2.0), 3.0)
        sel.observe(f"other/s{i:05d}", float(i), 0.5, (1.0, 0.0, 2.0), 3.0)  # never wanted
    samples = parse(generate_latest(m.registry).decode())
    labelled = {ls["series"] for fam in samples.values() for ls, _ in fam if "series" in ls}
    assert labelled == {"checkout/requests", "bulk/s00000", "bulk/s00001", "bulk/s00002", "bulk/s00003"}
    assert value(samples, "foresight_series_left_out_total") == 10_000 - 4
    assert value(samples, "foresight_series_exported") == 5
    assert value(samples, "foresight_series_forecast", series="checkout/requests", bound="upper") == 13.0
    sel.observe("bulk/s09999", 1.0, 0.5, None, None)  # seen again: still counted once
    assert parse(generate_latest(m.registry).decode())["foresight_series_left_out_total"][0][1] == 9_996
    sel.forget("bulk/s00000")
    samples = parse(generate_latest(m.registry).decode())
    assert "bulk/s00000" not in {ls.get("series") for fam in samples.values() for ls, _ in fam}


@pytest.mark.integration
def test_metrics_parse_counters_move_and_cardinality_stays_bounded(broker, prefix, start_worker, tmp_path: Path):
    scalers = tmp_path / "scalers.yaml"
    named = ["named/a", "named/b"]
    scalers.write_text(yaml.safe_dump_all([
        {"apiVersion": "foresight.dev/v1alpha1", "kind": "PredictiveScaler",
         "metadata": {"name": s.split("/")[1], "namespace": "shop"},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": s.split("/")[1]},
                  "series": s, "capacityPerReplica": 10, "minReplicas": 1, "maxReplicas": 5}}
        for s in named]))
    started = time.monotonic()
    worker = start_worker(prefix, FORESIGHT_WINDOW_SECONDS="10", FORESIGHT_HORIZON_STEPS="3",
                          FORESIGHT_SCALERS=str(scalers))
    before = wait_until(lambda: scrape(worker.port), "a first scrape")
    assert value(before, "foresight_events_in_total") == 0
    assert "foresight_model_update_seconds_bucket" in before

    n, windows = 10_000, 4
    series = named + [f"bulk/s{i:05d}" for i in range(n)]
    settings = Settings(topic_prefix=prefix, broker=broker)
    sent = 0
    with AggregatingProducer(broker, interval=WINDOW, flush_every=0, settings=settings) as p:
        for w in range(windows):
            for s in series:
                p.record_event(s, T0 + w * WINDOW, count=3)
                sent += 3
            p.flush()
    send_raw(broker, f"{prefix}.decisions", [decision("shop/a", T0 + 20, 1, 3, "ForecastPeak", peak=25.0)])

    # windows 0 of every series close once each partition saw window 3 (forecasts are counted once
    # the broker acknowledged their batch, which is sent after the batch's views are updated)
    after = wait_until(lambda: (lambda m: m if value(m, "foresight_series_tracked") == len(series)
                                and value(m, "foresight_forecasts_out_total") >= len(series)
                                and value(m, "foresight_decisions_total") >= 1 else None)(scrape(worker.port)),
                       "every series processed", timeout=240)
    assert value(after, "foresight_events_in_total", topic="events") == sent
    assert value(after, "foresight_messages_in_total", topic="events") > 0
    assert value(after, "foresight_points_out_total") >= len(series)
    assert value(after, "foresight_forecasts_out_total") >= len(series)
    # one observation per vectorised bank call, the series updates counted apart
    assert 1 <= value(after, "foresight_model_update_seconds_count") < value(after, "foresight_model_updates_total")
    assert value(after, "foresight_model_updates_total") >= len(series)
    # the model agent's time handing forecasts to the producer: some, and less than it has run
    assert 0 < value(after, "foresight_forecasts_send_seconds_total") < time.monotonic() - started
    assert value(after, "foresight_decisions_total", target="shop/a", reason="ForecastPeak") == 1
    assert value(after, "foresight_forecast_peak", target="shop/a") == 25.0
    assert value(after, "foresight_desired_replicas", target="shop/a") == 3
    assert value(after, "foresight_current_replicas", target="shop/a") == 1
    lag = after["foresight_consumer_lag"]
    assert lag and {ls["topic"] for ls, _ in lag} <= {f"{prefix}.{t}" for t in ("events", "metrics", "points", "decisions")}
    assert all(v >= 0 for _, v in lag)

    # bounded: per-series labels only for the two named series, and the whole
    # exposition does not grow with the 10,000 series
    labelled = {ls["series"] for fam in after.values() for ls, _ in fam if "series" in ls}
    assert labelled == set(named)
    assert value(after, "foresight_series_exported") == 2
    assert value(after, "foresight_series_left_out_total") == 0
    total = sum(len(v) for v in after.values())
    assert total < 400, f"{total} samples for {len(series)} series"
    for name, fam in after.items():
        assert len(fam) <= 64, f"{name} has {len(fam)} label sets"


def test_grafana_dashboard_uses_only_exported_metrics():
    import json
    import re

    from tests.conftest import ROOT

    dash = json.loads((ROOT / "deploy/grafana/foresight-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    used = {n for e in exprs for n in re.findall(r"\bforesight_[a-z_]+", e)}
    m = Metrics()
    m.watch_consumer_lag(lambda: {("t", 0): 1})
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    exported = {fam.name + sfx for fam in m.registry.collect() for sfx in suffixes[fam.type]}
    assert used and used <= exported, sorted(used - exported)
    assert {"foresight_forecast_peak", "foresight_desired_replicas", "foresight_current_replicas",
            "foresight_decisions_total", "foresight_consumer_lag"} <= used
