"""``foresight ingest`` against a real Prometheus and the real broker: history first, then live."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT, read_topic
from tests.prometheus_fixture import HISTORY_SECONDS, QUERY, known_value
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

#: the worker's window and the source's step (the fixture's samples are a second apart)
STEP = 1.0


def api(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310
        return json.load(r)


def series_detail(port: int, series: str) -> dict | None:
    try:
        return api(port, "/api/series/" + series.replace("/", "%2F"))
    except OSError:
        return None


#: how old a live sample may be (scrapes run late on a busy machine)
LATE_SECONDS = 20


def is_recent_value(ts: float, value: float, within: float = LATE_SECONDS) -> bool:
    """``value`` is one the known series had at most ``within`` s before ``ts``: what an instant
    query at ``ts`` answers (the latest scrape within Prometheus' lookback; scrapes run late
    on a busy machine, and after an outage the last one before it is the latest)."""
    return min(abs(value - known_value(ts - d / 10)) for d in range(int(within * 10))) < 0.5


def worker_env() -> dict[str, str]:
    """1-s windows (the fixture's resolution), a 5-minute cycle (its period), 20 s ahead."""
    return {"FORESIGHT_WINDOW_SECONDS": str(STEP), "FORESIGHT_PERIOD_STEPS": "300",
            "FORESIGHT_HORIZON_SECONDS": "20"}


SCALERS = """\
apiVersion: foresight.dev/v1alpha1
kind: PredictiveScaler
metadata: {name: load, namespace: prom}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: load}
  series: prom/load
  capacityPerReplica: 20
  minReplicas: 1
  maxReplicas: 50
  leadTimeSeconds: 10
  mode: ForecastOnly
  behavior:
    scaleUp: {policies: [{type: Percent, value: 1000, periodSeconds: 15}]}
"""


def test_ingest_backfills_then_feeds_a_warm_live_series(broker, prefix, start_worker, prometheus, tmp_path):
    w = start_worker(prefix, **worker_env())
    scalers = tmp_path / "scalers.yaml"
    scalers.write_text(SCALERS)
    env = {**os.environ, "FORESIGHT_BROKER": broker, "FORESIGHT_TOPIC_PREFIX": prefix,
           "FORESIGHT_STARTUP_SECONDS": "0", "FORESIGHT_WINDOW_SECONDS": str(STEP)}
    with (tmp_path / "controller.log").open("wb") as fh:
        controller = subprocess.Popen([sys.executable, "-m", "streams", "scaler", "--scalers", str(scalers)],
                                      env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                      start_new_session=True)
    sources = tmp_path / "sources.yaml"
    days = (HISTORY_SECONDS + 120) / 86400
    sources.write_text(f"sources:\n  - series: prom/load\n    query: '{QUERY}'\n    step: {STEP:g}\n"
                       f"    days: {days!r}\n")
    log = tmp_path / "ingest.log"
    env = {**os.environ, "FORESIGHT_BROKER": broker, "FORESIGHT_TOPIC_PREFIX": prefix,
           "FORESIGHT_WINDOW_SECONDS": str(STEP), "FORESIGHT_PROMETHEUS_URL": prometheus.url}
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "streams", "ingest", "--sources", str(sources)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
    try:
        # the history is learnt first: the ingest says so, with the rate
        def live() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            return "ingesting 1 source" in log.read_text()

        wait_for(live, 240)
        text = log.read_text()
        assert "ingesting 1 source" in text, text[-3000:]
        # the days asked for, then the steps that passed while they were learnt
        lines = [ln for ln in text.splitlines() if "backfill prom/load" in ln]
        print("\n".join(lines))
        assert all("model warm" in ln and "points/s" in ln for ln in lines), lines
        learnt = [int(ln.split("learnt ")[1].split(" windows")[0].replace(",", "")) for ln in lines]
        learnt_history = sum(learnt)
        assert learnt[0] >= HISTORY_SECONDS, lines
        live_from = time.time()

        # then live samples through the metrics input topic, the producer's wire format
        metrics = read_topic(broker, f"{prefix}.metrics", lambda ms: len(ms) >= 5, timeout=60)
        samples = [a for m in metrics for a in (m if isinstance(m, list) else [m])]
        assert samples and all(a["series"] == "prom/load" and a["count"] == 1 for a in samples)
        for a in samples:  # a Prometheus instant query at the step's time: the scraped value
            assert a["ts"] == int(a["ts"]) and a["ts"] >= live_from - 10
            assert is_recent_value(a["ts"], a["sum"]), a

        # the first live forecast is warm: the model had learnt the history before it
        forecasts = read_topic(broker, f"{prefix}.forecasts",
                               lambda ms: any(m["series"] == "prom/load" for m in ms), timeout=60)
        first = min((m for m in forecasts if m["series"] == "prom/load"), key=lambda m: m["issued"])
        assert first["warm"] is True, first
        assert first["issued"] >= live_from - 10, "no forecast was published for history windows"
        # it follows the known cycle, as late as the samples may be (late scrapes on a busy machine
        # make the live values up to LATE_SECONDS old: the forecast continues from them); within 12
        # of a cycle that spans 100 +- 55
        peak = max(p["yhat"] for p in first["points"])
        misses = [abs(peak - max(known_value(first["issued"] + k * STEP - late)
                                 for k in range(1, len(first["points"]) + 1)))
                  for late in range(LATE_SECONDS + 1)]
        assert min(misses) < 12, ("the forecast follows the known cycle", peak, misses)

        detail = series_detail(w.port, "prom/load")
        assert detail is not None and detail["warm"] is True
        assert detail["history_points"] == learnt_history
        assert detail["points_learnt"] >= learnt_history

        # a PredictiveScaler on the series decides on that first (warm) forecast
        decisions = read_topic(broker, f"{prefix}.decisions",
                               lambda ms: any(m["target"] == "prom/load" for m in ms), timeout=60)
        d = min((m for m in decisions if m["target"] == "prom/load"), key=lambda m: m["ts"])
        first_live = min(a["ts"] for a in samples)
        print(d["reason"], d["desired"], d["ts"] - first_live, d["message"])
        assert d["ts"] - first_live <= STEP, "decided within one window of the first live sample"
        assert d["reason"] == "ForecastPeak", d
        assert d["forecast_peak"] == pytest.approx(max(p["upper"] for p in first["points"]
                                                       if p["ts"] <= first["issued"] + 10 + STEP), rel=0.2)
    finally:
        proc.terminate()
        proc.wait(20)
        controller.terminate()
        controller.wait(20)
    assert proc.returncode == 0, log.read_text()[-3000:]


def _drive(ingestors, until, timeout: float = 30) -> None:
    """Poll each ingestor (one step when one is due) until ``until()`` holds or ``timeout``."""
    def step() -> bool:
        for i in ingestors:
            i.poll_once()
        return until()

    wait_for(step, timeout)


def test_missing_ambiguous_non_numeric_and_an_outage_are_gaps_counted_and_logged(
        broker, prefix, prometheus, caplog):
    from prometheus_client import CollectorRegistry

    from streams.admin import ensure_topics
    from streams.ingest import IngestMetrics, Ingestor, Source
    from streams.producer import AggregatingProducer
    from streams.prometheus import PrometheusClient, PrometheusSettings
    from streams.settings import Settings
    from streams.topics import Topics
    from tests.prometheus_fixture import METRIC

    settings = Settings(broker=broker, topic_prefix=prefix, window_seconds=STEP)
    ensure_topics(broker, Topics.from_settings(settings).all(), 1)
    sources = [Source("ok/load", QUERY, STEP), Source("gone/load", f'{METRIC}{{job="nope"}}', STEP),
               Source("two/load", 'vector(1) or label_replace(vector(2), "a", "b", "", "")', STEP),
               Source("nan/load", f"{METRIC} * 0 / 0", STEP)]
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry, sources)

    def count(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    client = PrometheusClient(PrometheusSettings(url=prometheus.url, timeout_seconds=2))
    with AggregatingProducer(broker, interval=STEP, flush_every=0, settings=settings) as p:
        ingestor = Ingestor(sources, client, p, metrics)
        caplog.set_level("WARNING", logger="foresight.ingest")
        _drive([ingestor], lambda: count("foresight_ingest_samples_total", series="ok/load") >= 2 and all(
            count("foresight_ingest_problems_total", reason=r) >= 2
            for r in ("no_data", "several_series", "non_numeric")))
        before_outage = count("foresight_ingest_samples_total", series="ok/load")
        assert before_outage >= 2
        for reason in ("no_data", "several_series", "non_numeric"):
            assert count("foresight_ingest_problems_total", reason=reason) >= 2, reason
        text = caplog.text
        assert "gone/load: no sample (no_data)" in text and "a gap, not a zero" in text
        assert "two/load: no sample (several_series): the query returned 2 series; aggregate" in text
        assert "nan/load: no sample (non_numeric)" in text

        prometheus.stop()  # an outage: every step fails, nothing is sent, nothing crashes
        try:
            outage_from = time.time()
            _drive([ingestor], lambda: count("foresight_ingest_problems_total", reason="unreachable")
                   >= 2 * len(sources))
            outage_to = time.time()
            assert count("foresight_ingest_problems_total", reason="unreachable") >= 2 * len(sources)
            assert count("foresight_ingest_prometheus_up") == 0
            assert count("foresight_ingest_samples_total", series="ok/load") == before_outage
            assert "(unreachable)" in caplog.text
        finally:
            prometheus.start()
        _drive([ingestor], lambda: count("foresight_ingest_samples_total", series="ok/load")  # back
               >= before_outage + 2)
        assert count("foresight_ingest_samples_total", series="ok/load") >= before_outage + 2
        assert count("foresight_ingest_prometheus_up") == 1

    sent = read_topic(broker, f"{prefix}.metrics",
                      lambda ms: sum(len(m) if isinstance(m, list) else 1 for m in ms)
                      >= count("foresight_ingest_samples_total", series="ok/load"), timeout=30)
    aggs = [a for m in sent for a in (m if isinstance(m, list) else [m])]
    assert {a["series"] for a in aggs} == {"ok/load"}, "no sample was invented for the others"
    assert len(aggs) == count("foresight_ingest_samples_total", series="ok/load")
    # a step t is queried from t + 1 s on: steps due while Prometheus was down are gaps
    assert not [a for a in aggs if outage_from < a["ts"] < outage_to - 2], "the outage is a gap"
    # every value is one the series had shortly before its step's time (an instant query sees
    # the latest scrape within Prometheus' lookback: a slow scrape, or the last one before the
    # outage): none is invented
    assert all(is_recent_value(a["ts"], a["sum"]) for a in aggs), aggs


def _ingest_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "FORESIGHT_BROKER": "127.0.0.1:1", **env}
    return subprocess.run([sys.executable, "-m", "streams", "ingest", *args], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("yaml_text", "env", "message"), [
    ("sources:\n  - {series: a/b, query: up, step: 0, stpe: 1}\n", {},
     "sources.yaml: sources[0]: unknown field 'stpe' (fields: series, query, step, days); sources[0].step must be"),
    ("sources:\n  - {series: a/b, query: up, step: 5}\n  - {series: a/b, query: up, step: 5}\n", {},
     "sources.yaml: sources[1].series: 'a/b' appears twice"),
    ("sources: [\n", {}, "sources.yaml:2: not valid YAML"),
    ("sources:\n  - {series: a/b, query: up, step: 5}\n",
     {"FORESIGHT_PROMETHEUS_URL": "http://prom.example:9090", "FORESIGHT_PROMETHEUS_BEARER_TOKEN": "t"},
     "credentials would be sent in clear text to http://prom.example:9090"),
])
def test_a_bad_sources_file_or_setting_is_one_line_and_exit_2_before_any_connection(
        tmp_path, yaml_text, env, message):
    f = tmp_path / "sources.yaml"
    f.write_text(yaml_text)
    r = _ingest_cli("--sources", str(f), **env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr and r.stderr.startswith("foresight ingest: "), r.stderr


def test_a_good_sources_file_then_needs_the_broker(tmp_path):
    f = tmp_path / "sources.yaml"
    f.write_text("sources:\n  - {series: a/b, query: up, step: 5}\n")
    r = _ingest_cli("--sources", str(f))
    assert r.returncode == 1 and "cannot reach the Kafka broker at 127.0.0.1:1" in r.stderr, r.stderr


class _Sink:
    """Collects what an Ingestor records (the broker path is tested above)."""

    def __init__(self) -> None:
        self.samples: list[tuple[str, float, float]] = []

    def record_metric(self, series: str, value: float, ts: float | None = None) -> None:
        self.samples.append((series, value, ts))

    def flush(self, wait: bool = True) -> int:
        return 0


def test_only_the_lease_holder_ingests_and_a_standby_takes_over(prometheus):
    """Two ingests, the controller's leader election (a Lease) against the API server emulator."""
    from datetime import UTC, datetime

    from prometheus_client import CollectorRegistry

    from scaler.kube import LeaderElector
    from streams.ingest import LEASE_NAME, IngestMetrics, Ingestor, Source
    from streams.prometheus import PrometheusClient, PrometheusSettings

    sys.path.insert(0, str(ROOT / "tests" / "scaler" / "kube"))
    from kube_emulator import EmulatorThread

    sources = [Source("lead/load", QUERY, STEP)]
    client = PrometheusClient(PrometheusSettings(url=prometheus.url))
    clock = [1000.0]

    def elector(emu, who: str) -> LeaderElector:
        return LeaderElector(emu.api_client(who), identity=who, name=LEASE_NAME, lease_duration=15,
                             renew_deadline=10, retry_period=2, clock=lambda: clock[0],
                             wallclock=lambda: datetime.fromtimestamp(clock[0], UTC))

    with EmulatorThread() as emu:
        a, b = elector(emu, "a"), elector(emu, "b")
        sinks = {"a": _Sink(), "b": _Sink()}
        ingest = {who: Ingestor(sources, client, sinks[who], IngestMetrics(CollectorRegistry(), sources),
                                leading=e.is_leader) for who, e in (("a", a), ("b", b))}
        assert a.step() and not b.step()
        _drive(ingest.values(), lambda: len(sinks["a"].samples) >= 1)
        assert len(sinks["a"].samples) >= 1 and sinks["b"].samples == [], "only the leader sends"

        clock[0] += 11  # a cannot renew in time (say it hangs): it stops acting ...
        _drive(ingest.values(), lambda: not a.is_leader())
        a_sent = len(sinks["a"].samples)
        clock[0] += 5  # ... and once the Lease has expired, b takes over
        assert b.step() and not a.is_leader()
        _drive(ingest.values(), lambda: len(sinks["b"].samples) >= 1)
        assert len(sinks["a"].samples) == a_sent and len(sinks["b"].samples) >= 1
        assert len({ts for _, _, ts in sinks["a"].samples + sinks["b"].samples}) == \
            len(sinks["a"].samples) + len(sinks["b"].samples), "no step sent twice"


SIGNAL_SPEC = """\
apiVersion: foresight.dev/v1alpha1
kind: PredictiveScaler
metadata: {name: checkout, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: checkout}
  minReplicas: 1
  maxReplicas: 10
  leadTimeSeconds: 60
  signals:
    - series: checkout/requests
      capacityPerReplica: 120
    - prometheus: {query: 'sum(payment_queue_depth{app="checkout"})'}
      capacityPerReplica: 400
"""


def test_prometheus_signals_of_the_predictive_scalers_are_sources_too(tmp_path):
    from scaler.spec import load_specs, prometheus_series
    from streams.ingest import Source, merge_sources, sources_from_specs

    specs = tmp_path / "scalers.yaml"
    specs.write_text(SIGNAL_SPEC)
    query = 'sum(payment_queue_depth{app="checkout"})'
    found = sources_from_specs(load_specs(str(specs)), 10.0)
    assert found == [Source(prometheus_series(query), query, 10.0)], "only the prometheus signal"
    listed = [Source(prometheus_series(query), query, 30.0)]
    assert merge_sources(listed, found) == listed, "the sources file says the step of a series it names"

    r = _ingest_cli("--scalers", str(specs))  # valid: it gets as far as the broker
    assert r.returncode == 1 and "cannot reach the Kafka broker" in r.stderr, r.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text(SIGNAL_SPEC.split("  signals:")[0] + "  series: a/b\n  capacityPerReplica: 5\n")
    r = _ingest_cli("--scalers", str(plain))
    assert r.returncode == 2 and "no PredictiveScaler has a 'prometheus: {query}' signal" in r.stderr, r.stderr
    r = _ingest_cli()
    assert r.returncode == 2 and "give --sources FILE" in r.stderr, r.stderr


def test_with_kube_the_sources_file_may_be_empty_and_namespace_needs_kube(tmp_path):
    f = tmp_path / "sources.yaml"
    f.write_text("sources: []\n")
    r = _ingest_cli("--sources", str(f))
    assert r.returncode == 2 and "expected a non-empty 'sources:' list" in r.stderr, r.stderr
    r = _ingest_cli("--kube", "--sources", str(f))  # the PredictiveScalers may be every source
    assert r.returncode == 1 and "cannot reach the Kafka broker" in r.stderr, r.stderr
    r = _ingest_cli("--kube")
    assert r.returncode == 1 and "cannot reach the Kafka broker" in r.stderr, r.stderr
    r = _ingest_cli("--sources", str(f), "--namespace", "shop")
    assert r.returncode == 2 and "--namespace goes with --kube" in r.stderr, r.stderr
