from __future__ import annotations

import dataclasses

from detectors.forecast import Forecast, ForecastPoint
from scaler.policy import Observation
from scaler.reconcile import Reconciler
from scaler.simulated import SimulatedCluster
from scaler.spec import KafkaTopicSource, ScalerSpec, Signal, TargetRef, kafka_topic_series

SPEC = ScalerSpec("web", "web/rps", capacity_per_replica=100, min_replicas=2, max_replicas=20,
                  lead_time_seconds=120, target=TargetRef("apps/v1", "Deployment", "web"))


def forecast(issued, upper):
    return Forecast("web/rps", issued, 60, tuple(ForecastPoint(issued + 60 * i, upper, upper / 2, upper)
                                                  for i in range(1, 5)), 0.9, "m", True)


def test_active_patches_only_on_change_and_records_every_decision():
    cluster = SimulatedCluster(180)
    seen = []
    r = Reconciler(cluster, [SPEC], on_decision=seen.append)
    r.observe(forecast(0, 550), Observation(0, 300))
    d1 = r.reconcile(SPEC, 60)
    assert (d1.current, d1.desired, d1.applied) == (2, 6, True)
    assert d1.observed_ts == 0
    d2 = r.reconcile(SPEC, 60)
    assert (d2.current, d2.desired, d2.applied) == (6, 6, False), "no patch when the count holds"
    assert cluster.provisioned("default/web") == 6 and seen == [d1, d2]


def test_forecast_only_never_actuates():
    cluster = SimulatedCluster(180)
    spec = dataclasses.replace(SPEC, mode="ForecastOnly")
    r = Reconciler(cluster, [spec])
    r.observe(forecast(0, 590), Observation(0, 300))
    (d,) = r.reconcile_series("web/rps", 60)
    assert d.desired == 6 and not d.applied and d.mode == "ForecastOnly"
    assert cluster.provisioned("default/web") == 2


def test_missing_forecast_holds_and_never_scales_down():
    cluster = SimulatedCluster(180)
    cluster.add_target("default/web", 8)
    r = Reconciler(cluster, [SPEC])
    r.observe(None, Observation(0, 10), series="web/rps")
    d = r.reconcile(SPEC, 60)
    assert d.desired == 8 and d.reason.value == "NoForecast"


def test_zero_second_scale_up_window_is_not_held_by_an_earlier_decision_at_the_same_time():
    cluster = SimulatedCluster(180)
    spec = dataclasses.replace(SPEC, scale_up=dataclasses.replace(SPEC.scale_up, stabilization_window_seconds=0))
    r = Reconciler(cluster, [spec])
    r.observe(forecast(0, 150), Observation(0, 150))
    assert r.reconcile(spec, 60).desired == 2
    # a burst observed at the same event time: the next decision must follow it at once
    r.observe(None, Observation(0, 560), series="web/rps")
    d = r.reconcile(spec, 60)
    assert d.desired == 6 and d.reason.value != "ScaleUpStabilized", d


def test_a_decision_names_the_fallback_it_took_even_when_the_floor_drives_it():
    cluster = SimulatedCluster(180)
    r = Reconciler(cluster, [SPEC])
    stale_and_cold = dataclasses.replace(forecast(0, 150), warm=False)
    r.observe(stale_and_cold, Observation(600, 500))
    d = r.reconcile(SPEC, 660)
    assert (d.reason.value, d.fallback.value) == ("ReactiveFloor", "StaleForecast"), d
    r.observe(forecast(600, 150), Observation(600, 150))
    assert r.reconcile(SPEC, 660).fallback is None


SRC = KafkaTopicSource("orders", "billing", lag_threshold=100)
RATE, LAG, PARTS = kafka_topic_series("orders", "billing")
ORDERS = ScalerSpec("orders", "", 0, min_replicas=2, max_replicas=16, lead_time_seconds=120,
                    target=TargetRef("apps/v1", "Deployment", "orders"),
                    signals=(Signal(RATE, 1.0, source=SRC),))


def fc(series, issued, upper):
    return Forecast(series, issued, 60, tuple(ForecastPoint(issued + 60 * i, upper, upper / 2, upper)
                                              for i in range(1, 5)), 0.9, "m", True)


def observe(r, series, t, value, upper=None):
    r.observe(fc(series, t, value if upper is None else upper), Observation(t, value))
    return r.reconcile_series(series, t + 60)


def test_a_kafka_signal_decides_at_its_rates_time_whatever_its_lag_and_partitions_say():
    r = Reconciler(SimulatedCluster(180), [ORDERS])
    for s, v in ((RATE, 1.5), (LAG, 10), (PARTS, 16)):
        assert [d.ts for d in observe(r, s, 0, v)] == [60]
    # the lag and the partitions run two windows ahead of the rate (another model batch)
    for t in (60, 120):
        for s, v in ((LAG, 10), (PARTS, 16)):
            assert [d.ts for d in observe(r, s, t, v)] == [60], "not ahead of the rate"
    # the rate's next window: decided at its own time, its forecast fresh, its lead window whole
    (d,) = observe(r, RATE, 60, 2.0, upper=9.5)
    assert d.ts == 120 and d.signals[0].fallback is None and d.forecast_peak == 9.5 and d.desired > 2, d
    # and behind the rate: still decided at the rate's time, not before it
    (d,) = observe(r, RATE, 120, 2.0, upper=9.5)
    assert d.ts == 180 and r.decision_time(ORDERS, 180) == 180
    assert [d.ts for d in observe(r, LAG, 180, 10)] == [180]


def test_a_rate_gone_quiet_holds_no_target_back():
    r = Reconciler(SimulatedCluster(180), [ORDERS])
    observe(r, RATE, 0, 1.5)
    observe(r, PARTS, 600, 16)
    # the rate stopped ten windows ago: the target follows its other series, the rate is stale
    (d,) = observe(r, LAG, 600, 10)
    assert d.ts == 660 and d.signals[0].fallback is not None and d.signals[0].fallback.value == "StaleForecast"


def test_the_sweep_re_decides_quiet_targets_and_leaves_those_whose_inputs_are_on_their_way():
    r = Reconciler(SimulatedCluster(180), [SPEC])
    r.observe(forecast(0, 150), Observation(0, 150))
    r.reconcile_series("web/rps", 60)
    # the low watermark is two windows ahead of web/rps: its next windows are still on their way
    assert r.resync(180, 60) == []
    r.observe(forecast(60, 150), Observation(60, 150))
    assert [d.ts for d in r.reconcile_series("web/rps", 120)] == [120]
    # quiet for longer than its forecast stays fresh at this sweep only: the watermark may have
    # moved several windows between two messages of one model batch, and web/rps's forecasts
    # be in the next one
    assert r.resync(120 + 181, 60) == []
    # still quiet at the next sweep: re-decided at the watermark
    (d,) = r.resync(120 + 241, 60)
    assert d.ts == 361 and d.reason.value == "StaleForecast"
    assert r.resync(380, 60) == [], "decided 19 s ago: not due"
    # a target that never had an input is decided at once
    r.set_spec(dataclasses.replace(SPEC, name="ghost", series="ghost/rps",
                                   signals=(Signal("ghost/rps", 100),)))
    assert [d.target for d in r.resync(390, 60)] == ["default/ghost"]


def test_a_rate_a_model_batch_behind_its_lag_is_waited_for_not_taken_for_quiet():
    """The rate, the lag and the partitions are forecast on different partitions, in different
    model batches: at a fast replay the lag's batch can come several windows (more than a
    forecast stays fresh) before the rate's. Behind the newest series but not behind the last
    sweep, the rate is on its way: the target waits at its time instead of jumping to the lag's
    (where the rate looked stale, and its next forecasts would all have been decided late)."""
    r = Reconciler(SimulatedCluster(180), [ORDERS])
    for s, v in ((RATE, 1.5), (LAG, 10), (PARTS, 16)):
        observe(r, s, 0, v)
    assert r.resync(60, 60) == [], "the controller's sweep: decided at 60 already"
    for t in (60, 120, 180, 240):
        for s, v in ((LAG, 10), (PARTS, 16)):
            assert [d.ts for d in observe(r, s, t, v)] == [60], f"the lag at {t}: waits for the rate"
    for t in (60, 120, 180, 240):
        (d,) = observe(r, RATE, t, 2.0, upper=9.5)
        assert d.ts == t + 60 and d.signals[0].fallback is None, d
    # gone quiet by the last sweep's measure: the target follows its other series, the rate stale
    r.resync(900, 60)
    (d,) = observe(r, LAG, 900, 10)
    assert d.ts == 960 and d.signals[0].fallback is not None and d.signals[0].fallback.value == "StaleForecast"
