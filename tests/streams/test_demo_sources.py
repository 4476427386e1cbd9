"""``foresight demo --local-prometheus`` / ``--sources``: the demo fed by a real Prometheus."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streams.broker import free_port
from tests.conftest import ROOT
from tests.prometheus_fixture import HISTORY_SECONDS, QUERY, known_value, require_prometheus

pytestmark = pytest.mark.integration


def test_the_local_prometheus_demo_backfills_forecasts_warm_and_decides(broker, prefix, tmp_path):
    """The make demo-prometheus variant, briefly: the taxi sample's history is learnt, its model
    is warm, and its PredictiveScaler decides on the live samples."""
    from streams.demo_sources import ROW_SECONDS, SAMPLE_SERIES, SAMPLE_TRACE

    require_prometheus()
    rows = len(SAMPLE_TRACE.read_text().splitlines()) - 1
    env = {**os.environ, "FORESIGHT_BROKER": broker, "FORESIGHT_TOPIC_PREFIX": prefix,
           "FORESIGHT_APP_ID": f"{prefix}-app", "FORESIGHT_WEB_PORT": str(free_port()),
           "FORESIGHT_MODEL_KEY": "test-key-0123456789abcdef"}
    r = subprocess.run([sys.executable, "-m", "streams", "demo", "--local-prometheus", "--duration", "5",
                        "--quiet"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=420)
    assert r.returncode == 0, r.stderr[-4000:]
    summary = json.loads(r.stdout)
    [s] = summary["series"]
    print(r.stderr[-1500:])
    assert s["series"] == SAMPLE_SERIES
    # the four weeks (a step more or less, by where the steps fall), every window sent learnt
    assert s["history_windows_sent"] >= rows - 1 and s["history_points"] == s["history_windows_sent"]
    assert s["warm"] is True and s["step"] == ROW_SECONDS
    assert s["live_samples"] >= 2 and s["points_learnt"] > rows, "then live samples, learnt too"
    assert s["decisions"] >= 1 and s["replicas"], "its PredictiveScaler decided on them"
    assert summary["checks"] == {"history_backfilled": True, "forecast_warm": True, "decided": True}
    assert summary["counts"]["dead_letters"] == 0
    assert "[ok] forecast_warm" in r.stderr


def test_without_prometheus_the_local_demo_says_what_to_install(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no prometheus, no promtool
    r = subprocess.run([sys.executable, "-m", "streams", "demo", "--local-prometheus"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "Prometheus is not installed" in r.stderr and "apt-get install prometheus" in r.stderr
    assert "--sources FILE" in r.stderr, "and how to use a server of one's own"


def test_the_demo_sizes_a_scaler_for_a_source_without_one_from_its_history(prometheus, tmp_path):
    from scaler.spec import ScalerSpec
    from streams.demo_sources import PEAK_REPLICAS, _user_plan
    from streams.prometheus import PrometheusSettings

    sources = tmp_path / "sources.yaml"
    sources.write_text(f"sources:\n  - {{series: prom/load, query: '{QUERY}', step: 5}}\n")
    plan = _user_plan(str(sources), None, PrometheusSettings(url=prometheus.url))
    [doc] = plan.scalers
    spec = ScalerSpec.from_manifest(doc)
    assert spec.series == "prom/load" and spec.mode == "ForecastOnly"
    # the peak of the known series over its history (every 5 s, as the subquery evaluates it)
    end = int(prometheus.history_end)
    peak = max(known_value(t) for t in range(end - HISTORY_SECONDS, end, 5))
    assert spec.capacity_per_replica == pytest.approx(peak / PEAK_REPLICAS, rel=0.02)
    assert "ForecastOnly" in plan.notes[0] and "give --scalers FILE" in plan.notes[0]

    gone = tmp_path / "gone.yaml"
    gone.write_text("sources:\n  - {series: gone/load, query: 'absent_metric_xyz', step: 5}\n")
    from streams.demo_sources import DemoError

    with pytest.raises(DemoError, match="no positive value in the last day"):
        _user_plan(str(gone), None, PrometheusSettings(url=prometheus.url))


def test_the_demo_from_a_sources_file_runs_the_ingest_beside_worker_and_controller(
        broker, prefix, prometheus, tmp_path):
    """``foresight demo --sources FILE``: a source of the user's, a PredictiveScaler sized for it."""
    sources = tmp_path / "sources.yaml"
    days = (HISTORY_SECONDS + 120) / 86400
    sources.write_text(f"sources:\n  - {{series: prom/load, query: '{QUERY}', step: 1, days: {days!r}}}\n")
    env = {**os.environ, "FORESIGHT_BROKER": broker, "FORESIGHT_TOPIC_PREFIX": prefix,
           "FORESIGHT_APP_ID": f"{prefix}-app", "FORESIGHT_WEB_PORT": str(free_port()),
           "FORESIGHT_MODEL_KEY": "test-key-0123456789abcdef", "FORESIGHT_PROMETHEUS_URL": prometheus.url,
           "FORESIGHT_PERIOD_STEPS": "300"}  # the known series' 5-minute cycle at 1-s steps
    r = subprocess.run([sys.executable, "-m", "streams", "demo", "--sources", str(sources), "--duration", "3",
                        "--quiet"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=420)
    assert r.returncode == 0, r.stderr[-4000:]
    [s] = json.loads(r.stdout)["series"]
    assert s["series"] == "prom/load" and s["step"] == 1.0
    assert s["history_points"] >= HISTORY_SECONDS and s["warm"] is True
    assert s["decisions"] >= 1 and s["live_samples"] >= 1
    assert "PredictiveScaler demo/prom-load on prom/load: ForecastOnly, capacityPerReplica" in r.stderr


def test_demo_source_flags_are_checked_before_anything_starts(tmp_path):
    def demo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streams", "demo", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "FORESIGHT_BROKER": "127.0.0.1:1"})

    bad = tmp_path / "sources.yaml"
    bad.write_text("sources:\n  - {series: a/b, query: up, step: 0}\n")
    for args, message in [
        (("--sources", str(bad)), "sources[0].step must be a number >= 1"),
        (("--sources", str(tmp_path / "none.yaml")), "no such file"),
        (("--local-prometheus", "--sources", str(bad)), "--local-prometheus brings its own source"),
        (("--scalers", str(bad)), "--scalers goes with --sources"),
    ]:
        r = demo(*args)
        assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)


def test_a_source_the_ingest_refuses_ends_the_demo_with_the_ingests_reason(broker, prefix, prometheus,
                                                                           tmp_path):
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  - {series: bad/q, query: 'sum(', step: 1}\n")
    scalers = tmp_path / "scalers.yaml"  # a spec for it: the demo itself sends no query
    scalers.write_text("apiVersion: foresight.dev/v1alpha1\nkind: PredictiveScaler\n"
                       "metadata: {name: q, namespace: demo}\n"
                       "spec: {scaleTargetRef: {kind: Deployment, name: q}, series: bad/q, "
                       "capacityPerReplica: 10, maxReplicas: 5, mode: ForecastOnly}\n")
    env = {**os.environ, "FORESIGHT_BROKER": broker, "FORESIGHT_TOPIC_PREFIX": prefix,
           "FORESIGHT_APP_ID": f"{prefix}-app", "FORESIGHT_WEB_PORT": str(free_port()),
           "FORESIGHT_MODEL_KEY": "test-key-0123456789abcdef", "FORESIGHT_PROMETHEUS_URL": prometheus.url}
    r = subprocess.run([sys.executable, "-m", "streams", "demo", "--sources", str(sources), "--scalers",
                        str(scalers), "--duration", "1", "--quiet"], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("foresight demo: ingest exited with code 2: foresight ingest: Prometheus at"), last
    assert "bad_query" in last and "logs in" in last, last
