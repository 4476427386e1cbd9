from __future__ import annotations

import dataclasses

from detectors.forecast import Forecast, ForecastPoint
from scaler.policy import Observation
from scaler.reconcile import Reconciler
from scaler.simulated import SimulatedCluster
from scaler.spec import ScalerSpec, TargetRef

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
