from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from scaler.spec import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    KafkaTopicSource,
    PrometheusSource,
    ScalerSpec,
    Signal,
    SpecError,
    load_schedules,
    load_specs,
    prometheus_series,
)

BASE = {
    "apiVersion": "foresight.dev/v1alpha1", "kind": "PredictiveScaler",
    "metadata": {"name": "checkout", "namespace": "shop"},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout"},
             "series": "checkout/requests", "capacityPerReplica": 120, "minReplicas": 2,
             "maxReplicas": 60, "leadTimeSeconds": 180, "mode": "ForecastOnly",
             "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120,
                                        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}]}}},
}


def test_full_manifest():
    s = ScalerSpec.from_manifest(BASE)
    assert (s.key, s.series, s.capacity_per_replica, s.mode) == ("shop/checkout", "checkout/requests", 120, "ForecastOnly")
    assert s.scale_down.stabilization_window_seconds == 120 and s.scale_down.policies[0].type == "Pods"
    assert s.scale_up == DEFAULT_SCALE_UP
    assert ScalerSpec.from_manifest({**BASE, "spec": {**BASE["spec"], "behavior": {}}}).scale_down == DEFAULT_SCALE_DOWN


@pytest.mark.parametrize("change, message", [
    ({"minReplicas": 10, "maxReplicas": 5}, "minReplicas (10) > spec.maxReplicas (5)"),
    ({"series": ""}, "spec.series is required"),
    ({"capacityPerReplica": 0}, "capacityPerReplica must be > 0"),
    ({"mode": "Yolo"}, "spec.mode must be one of"),
    ({"scaleTargetRef": {"kind": "Deployment"}}, "scaleTargetRef.name is required"),
    ({"capacityPerReplica": "lots"}, "spec.capacityPerReplica must be a number, not 'lots'"),
    ({"maxReplica": 3}, "unknown field spec.maxReplica (did you mean maxReplicas?)"),
    ({"maxReplicas": float("inf")}, "spec.maxReplicas must be a finite number, not inf"),
    ({"maxReplicas": 2**40}, "spec.maxReplicas is out of range"),
    ({"leadTimeSeconds": float("nan")}, "spec.leadTimeSeconds must be a finite number, not nan"),
    ({"leadTimeSeconds": 10**6}, "spec.leadTimeSeconds must be >= 0 and <= 86400"),
    ({"capacityPerReplica": float("inf")}, "spec.capacityPerReplica must be a finite number"),
    ({"tolerance": 3}, "spec.tolerance must be in [0, 1]"),
    ({"minReplicas": 2.5}, "spec.minReplicas must be an integer"),
    ({"minReplicas": True}, "spec.minReplicas must be a number"),
    ({"scaleTargetRef": {"nmae": "x"}}, "unknown field spec.scaleTargetRef.nmae (did you mean name?)"),
    ({"behavior": {"scaleDown": {"stabilisationWindowSeconds": 60}}},
     "unknown field spec.behavior.scaleDown.stabilisationWindowSeconds (did you mean stabilizationWindowSeconds?)"),
    ({"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": float("nan"), "periodSeconds": 15}]}}},
     "spec.behavior.scaleUp.policies[0].value must be a finite number"),
])
def test_invalid_specs_say_why(change, message):
    with pytest.raises(SpecError) as info:
        ScalerSpec.from_manifest({**BASE, "spec": {**BASE["spec"], **change}})
    assert message in str(info.value)


def test_every_problem_is_reported_at_once():
    bad = {**BASE, "spec": {**BASE["spec"], "maxReplica": 3, "leadTimeSeconds": float("nan"),
                            "capacityPerReplica": -1, "mode": "Yolo"}}
    with pytest.raises(SpecError) as info:
        ScalerSpec.from_manifest(bad)
    msg = str(info.value)
    for part in ("unknown field spec.maxReplica", "leadTimeSeconds must be a finite number",
                 "capacityPerReplica must be > 0", "spec.mode must be one of"):
        assert part in msg, msg
    assert "\n" not in msg


BAD_FILES = {
    "typo": ("maxReplicas: 60", "maxReplica: 3", "unknown field spec.maxReplica (did you mean maxReplicas?)"),
    "inf": ("maxReplicas: 60", "maxReplicas: .inf", "spec.maxReplicas must be a finite number, not inf"),
    "nan": ("leadTimeSeconds: 180", "leadTimeSeconds: .nan", "spec.leadTimeSeconds must be a finite number"),
    "yaml": ("maxReplicas: 60", "maxReplicas: [60", "not valid YAML"),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_the_cli_refuses_a_bad_scalers_file_in_one_line_with_exit_2(case, tmp_path):
    import subprocess
    import sys

    import yaml

    from tests.conftest import ROOT

    old, new, message = BAD_FILES[case]
    text = yaml.safe_dump(BASE, default_flow_style=False)
    text = text.replace(old, new)
    assert new in text
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    env = {"PATH": "/usr/bin:/bin", "FORESIGHT_BROKER": "127.0.0.1:1"}  # never reached
    p = subprocess.run([sys.executable, "-m", "streams", "scaler", "--scalers", str(f)], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert message in lines[0] and lines[0].startswith("foresight scaler: "), lines[0]


def test_load_specs_from_yaml(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("kind: ConfigMap\n---\n" + __import__("yaml").safe_dump(BASE))
    (s,) = load_specs(f)
    assert s.name == "checkout"
    (tmp_path / "empty.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(SpecError, match="no PredictiveScaler"):
        load_specs(tmp_path / "empty.yaml")


def test_per_direction_tolerance_is_read_and_checked() -> None:
    from scaler.spec import ScalerSpec, SpecError

    doc = {"metadata": {"name": "a"}, "spec": {
        "scaleTargetRef": {"name": "a"}, "series": "a/rps", "capacityPerReplica": 10,
        "behavior": {"scaleUp": {"tolerance": 0}, "scaleDown": {"tolerance": 0.05}}}}
    assert ScalerSpec.from_manifest(doc).tolerances == (0.0, 0.05)
    doc["spec"]["behavior"]["scaleDown"]["tolerance"] = 2
    with pytest.raises(SpecError, match="scaleDown.tolerance must be in"):
        ScalerSpec.from_manifest(doc)
    del doc["spec"]["behavior"]
    assert ScalerSpec.from_manifest(doc).tolerances == (0.1, 0.1)  # the HPA's default


# -- signals and schedules ------------------------------------------------------------

def multi(**spec: object) -> dict:
    base = {k: v for k, v in BASE["spec"].items() if k not in ("series", "capacityPerReplica")}
    return {**BASE, "spec": {**base, **spec}}


SIGNALS = [
    {"series": "checkout/requests", "capacityPerReplica": 120},
    {"name": "p99-queue", "prometheus": {"query": 'sum(queue_depth{app="checkout"})'},
     "capacityPerReplica": 40, "leadTimeSeconds": 60},
]


def test_signals_are_read_in_order_with_their_sources():
    s = ScalerSpec.from_manifest(multi(signals=SIGNALS))
    a, b = s.signals
    assert (a.series, a.capacity_per_replica, a.lead_time_seconds, a.kind) == (
        "checkout/requests", 120, None, "series")
    assert (b.label, b.kind, b.lead_time_seconds) == ("p99-queue", "prometheus", 60)
    assert b.source == PrometheusSource('sum(queue_depth{app="checkout"})')
    assert b.series == prometheus_series('sum(queue_depth{app="checkout"})')
    assert b.series.startswith("prometheus/") and len(b.series) == len("prometheus/") + 16
    # the first signal is also the spec's series and capacity (what one-signal readers see)
    assert (s.series, s.capacity_per_replica) == ("checkout/requests", 120)
    assert s.all_series == ("checkout/requests", b.series)
    assert s.for_signal(b).lead_time_seconds == 60 and s.for_signal(a).lead_time_seconds == 180


def test_a_kafka_topic_signal_reads_three_series():
    s = ScalerSpec.from_manifest(multi(signals=[
        {"kafkaTopic": {"topic": "orders", "consumerGroup": "billing", "lagThreshold": 50,
                        "activationLagThreshold": 5}, "capacityPerReplica": 100}]))
    (sig,) = s.signals
    assert sig.source == KafkaTopicSource("orders", "billing", 50, 5)
    assert (sig.kind, sig.series) == ("kafkaTopic", "kafka/orders/rate")
    assert s.all_series == ("kafka/orders/rate", "kafka/orders/lag/billing",
                            "kafka/orders/partitions")
    # KEDA's defaults
    d = ScalerSpec.from_manifest(multi(signals=[
        {"kafkaTopic": {"topic": "orders", "consumerGroup": "billing"}, "capacityPerReplica": 1}]))
    assert (d.signals[0].source.lag_threshold, d.signals[0].source.activation_lag_threshold) == (
        10.0, 0.0)


def test_the_shorthand_is_one_signal():
    s = ScalerSpec.from_manifest(BASE)
    assert s.signals == (Signal("checkout/requests", 120),)
    assert s == ScalerSpec.from_manifest(multi(signals=[SIGNALS[0]]))


def test_a_prometheus_series_name_follows_the_query_only():
    q = "sum(rate(http_requests_total[1m]))"
    assert prometheus_series(q) == prometheus_series(f"  {q}\n") != prometheus_series(q + " ")[:-1]
    assert prometheus_series(q) != prometheus_series(q.replace("1m", "5m"))


@pytest.mark.parametrize("change, message", [
    ({"signals": SIGNALS, "series": "x"}, "spec.signals and spec.series / spec.capacityPerReplica are two forms"),
    ({"signals": []}, "spec.signals must be a non-empty list"),
    ({"signals": [{"capacityPerReplica": 3}]}, "spec.signals[0] needs exactly one source"),
    ({"signals": [{"series": "a", "prometheus": {"query": "up"}, "capacityPerReplica": 3}]},
     "needs exactly one source of series, prometheus or kafkaTopic, not 2: series, prometheus"),
    ({"signals": [{"series": "a", "capacityPerReplica": 0}]},
     "spec.signals[0].capacityPerReplica must be > 0"),
    ({"signals": [{"series": "a", "capacity": 3}]},
     "unknown field spec.signals[0].capacity (did you mean capacityPerReplica?)"),
    ({"signals": [{"series": "a", "capacityPerReplica": 1, "leadTimeSeconds": -1}]},
     "spec.signals[0].leadTimeSeconds must be >= 0"),
    ({"signals": [{"prometheus": {"query": " "}, "capacityPerReplica": 1}]},
     "spec.signals[0].prometheus.query is required"),
    ({"signals": [{"prometheus": {"qeury": "up"}, "capacityPerReplica": 1}]},
     "unknown field spec.signals[0].prometheus.qeury (did you mean query?)"),
    ({"signals": [SIGNALS[0], {"series": "checkout/requests", "capacityPerReplica": 9}]},
     "spec.signals[1]: 'checkout/requests' is already a signal of this target"),
    ({"signals": [{"kafkaTopic": {"topic": "orders", "consumerGroup": "billing",
                                  "lagThreshold": 0}, "capacityPerReplica": 100}]},
     "kafkaTopic needs lagThreshold > 0"),
    ({"signals": [{"kafkaTopic": {"topic": "orders", "group": "billing"},
                   "capacityPerReplica": 100}]},
     "unknown field spec.signals[0].kafkaTopic.group (valid: topic, consumerGroup, "),
    ({"signals": [{"kafkaTopic": {"topic": "orders"}, "capacityPerReplica": 100}]},
     "kafkaTopic needs topic and consumerGroup"),
])
def test_invalid_signals_say_why(change, message):
    with pytest.raises(SpecError) as info:
        ScalerSpec.from_manifest(multi(**change) if "series" not in change else
                                 {**BASE, "spec": {**BASE["spec"], **change}})
    assert message in str(info.value)


def test_schedules_are_read_in_their_timezone():
    s = ScalerSpec.from_manifest({**BASE, "spec": {**BASE["spec"], "schedules": [
        {"name": "sale", "start": "2026-11-27T00:00", "end": "2026-11-28T00:00",
         "timezone": "Europe/Berlin", "minReplicas": 20},
        {"name": "batch", "cron": "30 1 * * MON-FRI", "durationSeconds": 3600, "minReplicas": 6},
    ]}})
    sale, batch = s.schedules
    assert sale.start == datetime(2026, 11, 26, 23, tzinfo=UTC).timestamp()
    assert (sale.end - sale.start, sale.min_replicas) == (86400, 20)
    assert (batch.cron, batch.duration_seconds, batch.timezone) == ("30 1 * * MON-FRI", 3600, "UTC")


def test_unquoted_yaml_date_times_are_read_too(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(BASE).replace("mode: ForecastOnly", "mode: ForecastOnly\n"
                 "  schedules:\n  - {name: sale, start: 2026-11-27 08:00:00, "
                 "end: 2026-11-27 20:00:00, minReplicas: 3}"))
    (s,) = load_specs(f)
    assert s.schedules[0].end - s.schedules[0].start == 12 * 3600


@pytest.mark.parametrize("schedule, message", [
    ({"name": "a", "minReplicas": 2}, "spec.schedules[0] needs either cron"),
    ({"name": "a", "minReplicas": 2, "cron": "0 1 * * *"}, "durationSeconds must be > 0"),
    ({"name": "a", "minReplicas": 2, "cron": "0 25 * * *", "durationSeconds": 60},
     "spec.schedules[0].cron: hour: 25 is out of range 0-23"),
    ({"name": "a", "minReplicas": 2, "cron": "0 1 * *", "durationSeconds": 60},
     "has 4 fields, expected 5"),
    ({"name": "a", "minReplicas": 2, "start": "2026-01-02", "end": "2026-01-01"},
     "spec.schedules[0].start must be before end"),
    ({"name": "a", "minReplicas": 2, "start": "tomorrow", "end": "2026-01-01"},
     "spec.schedules[0].start 'tomorrow' is not an ISO-8601 date-time"),
    ({"name": "a", "minReplicas": 2, "cron": "@daily", "durationSeconds": 60,
      "timezone": "Berlin"}, "spec.schedules[0].timezone: unknown time zone 'Berlin'"),
    ({"name": "a", "minReplicas": 99, "cron": "@daily", "durationSeconds": 60},
     "spec.schedules[0].minReplicas (99) > spec.maxReplicas (60)"),
    ({"minReplicas": 2, "cron": "@daily", "durationSeconds": 60}, "spec.schedules[0].name is required"),
    ({"name": "a", "minReplicas": 2, "cron": "@daily", "duration": 60},
     "unknown field spec.schedules[0].duration (did you mean durationSeconds?)"),
])
def test_invalid_schedules_say_why(schedule, message):
    with pytest.raises(SpecError) as info:
        ScalerSpec.from_manifest({**BASE, "spec": {**BASE["spec"], "schedules": [schedule]}})
    assert message in str(info.value)


def test_schedule_file_for_the_backtest(tmp_path):
    f = tmp_path / "sched.yaml"
    f.write_text("schedules:\n- {name: rush, cron: '0 17 * * MON-FRI', durationSeconds: 7200,"
                 " timezone: America/New_York, minReplicas: 20}\n")
    (s,) = load_schedules(f)
    assert (s.name, s.min_replicas, s.timezone) == ("rush", 20, "America/New_York")
    f.write_text("- {name: rush, cron: '0 17 * * *', minReplicas: 20}\n")
    with pytest.raises(SpecError, match=r"sched.yaml: schedules\[0\].durationSeconds must be > 0"):
        load_schedules(f)
    f.write_text("schedule: []\n")
    with pytest.raises(SpecError, match="unknown field schedule"):
        load_schedules(f)
