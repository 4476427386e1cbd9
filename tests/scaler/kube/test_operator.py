"""The operator against the stateful emulator, over HTTP, through the official client."""

from __future__ import annotations

import dataclasses
import re
import urllib.request

import pytest
from kube_emulator import wait_for
from kube_fixtures import (
    CONTROLLER_UA,
    LEASE_NS,
    _list_events,
    conditions,
    controller_requests,
    create_scaler,
    drive,
    events,
    forecast,
    get_scaler,
    leading,
    now,
    observation,
    operator,
    replicas,
    scaler_manifest,
    workload,
)
from kubernetes import client

from detectors.forecast import ForecastPoint
from scaler.decision import Reason
from scaler.kube import GROUP, PLURAL, VERSION, LeaderElector
from scaler.kube.status import rfc3339
from scaler.spec import kafka_topic_series, prometheus_series

pytestmark = pytest.mark.integration


def _scale_patches(emu, ua=CONTROLLER_UA):
    return [p for m, p, _ in controller_requests(emu, ua) if m == "PATCH" and p.endswith("/scale")]


def test_cr_created_scales_target_writes_status_and_event(emu, setup_api):
    workload(setup_api, "Deployment", "shop", "checkout", 2)
    sink: list = []
    with leading(operator(emu, sink=sink)) as op:
        create_scaler(setup_api, scaler_manifest("shop", "checkout"))
        wait_for(lambda: "shop/checkout" in op.specs)
        # no forecast yet: the count holds, the fallback is a condition and an Event
        wait_for(lambda: conditions(get_scaler(setup_api, "shop", "checkout")).get("ForecastAvailable")
                 == ("False", "NoForecast"))
        assert ("Warning", "NoForecast") in events(setup_api, "shop", "checkout")
        assert replicas(setup_api, "Deployment", "shop", "checkout") == 2

        t = now()
        [d] = drive(op, forecast("checkout/requests", t, 950), observation(t, 480), t)
        assert (d.current, d.desired, d.applied, d.reason) == (2, 10, True, Reason.FORECAST_PEAK)
        assert replicas(setup_api, "Deployment", "shop", "checkout") == 10
        status = get_scaler(setup_api, "shop", "checkout")["status"]
        assert status["desiredReplicas"] == 10 and status["currentReplicas"] == 10
        assert status["reason"] == "ForecastPeak" and status["lastForecastPeak"] == 950
        assert status["lastScaleTime"]
        assert conditions({"status": status}) == {
            "Ready": ("True", "Reconciled"),
            "ForecastAvailable": ("True", "ValidForecast"),
            "ScalingActive": ("True", "Active"),
            "ScalingLimited": ("False", "DesiredWithinRange"),
        }
        assert ("Normal", "SuccessfulRescale") in events(setup_api, "shop", "checkout")
        assert sink and sink[-1] == d

        # the same forecast again: the count does not change, so nothing is patched
        [d2] = drive(op, forecast("checkout/requests", t + 10, 950), observation(t + 10, 480), t + 10)
        assert (d2.desired, d2.applied) == (10, False)
        assert len(_scale_patches(emu)) == 1


def test_forecast_only_never_patches_then_switch_to_active(emu, setup_api):
    workload(setup_api, "Deployment", "shop", "cart", 3)
    with leading(operator(emu)) as op:
        create_scaler(setup_api, scaler_manifest("shop", "cart", mode="ForecastOnly"))
        wait_for(lambda: "shop/cart" in op.specs)
        t = now()
        for i in range(3):
            [d] = drive(op, forecast("cart/requests", t + i, 1450), observation(t + i, 300), t + i)
            assert (d.current, d.desired, d.applied, d.mode) == (3, 15, False, "ForecastOnly")
        assert replicas(setup_api, "Deployment", "shop", "cart") == 3
        assert _scale_patches(emu) == []
        status = get_scaler(setup_api, "shop", "cart")["status"]
        assert (status["desiredReplicas"], status["currentReplicas"]) == (15, 3)
        assert conditions({"status": status})["ScalingActive"] == ("False", "ForecastOnly")
        assert events(setup_api, "shop", "cart").count(("Normal", "WouldRescale")) == 1

        # the operator (the person) switches the mode: the controller acts at once
        client.CustomObjectsApi(setup_api).patch_namespaced_custom_object(
            GROUP, VERSION, "shop", PLURAL, "cart", {"spec": {"mode": "Active"}})
        wait_for(lambda: replicas(setup_api, "Deployment", "shop", "cart") == 15)
        # the status follows the scale patch (written after it)
        wait_for(lambda: conditions(get_scaler(setup_api, "shop", "cart"))["ScalingActive"] == ("True", "Active"))


def test_conflicting_hpa_or_scaledobject_blocks_scaling(emu, setup_api):
    workload(setup_api, "Deployment", "shop", "search", 4)
    workload(setup_api, "StatefulSet", "shop", "queue", 2)
    custom = client.CustomObjectsApi(setup_api)
    custom.create_namespaced_custom_object("autoscaling", "v2", "shop", "horizontalpodautoscalers", {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "search"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "search"},
                 "minReplicas": 1, "maxReplicas": 10}})
    custom.create_namespaced_custom_object("keda.sh", "v1alpha1", "shop", "scaledobjects", {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "queue"},
        "spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "queue"}, "triggers": []}})
    with leading(operator(emu)) as op:
        create_scaler(setup_api, scaler_manifest("shop", "search"))
        create_scaler(setup_api, scaler_manifest("shop", "queue", kind="StatefulSet"))
        wait_for(lambda: {"shop/search", "shop/queue"} <= set(op.specs))
        t = now()
        [d] = drive(op, forecast("search/requests", t, 1950), observation(t, 400), t)
        assert (d.reason, d.desired, d.current, d.applied) == (Reason.CONFLICT, 4, 4, False)
        assert "HorizontalPodAutoscaler shop/search" in d.message
        [d] = drive(op, forecast("queue/requests", t, 1950), observation(t, 400), t)
        assert d.reason == Reason.CONFLICT and "ScaledObject shop/queue" in d.message
        assert _scale_patches(emu) == []
        assert replicas(setup_api, "Deployment", "shop", "search") == 4
        for name in ("search", "queue"):
            conds = conditions(get_scaler(setup_api, "shop", name))
            assert conds["Ready"] == ("False", "ConflictingAutoscaler")
            assert conds["ScalingActive"] == ("False", "ConflictingAutoscaler")
            assert ("Warning", "ConflictingAutoscaler") in events(setup_api, "shop", name)

        # the HPA goes away: the next reconcile scales
        custom.delete_namespaced_custom_object("autoscaling", "v2", "shop", "horizontalpodautoscalers", "search")
        [d] = drive(op, forecast("search/requests", t + 10, 1950), observation(t + 10, 400), t + 10)
        assert (d.reason, d.desired, d.applied) == (Reason.FORECAST_PEAK, 20, True)
        assert conditions(get_scaler(setup_api, "shop", "search"))["Ready"] == ("True", "Reconciled")


def test_forecast_only_beside_an_hpa_is_a_dry_run_with_a_comparison(emu, setup_api):
    """The way to adopt Foresight: a dry run beside the HPA a team already has."""
    workload(setup_api, "Deployment", "shop", "search", 4)
    custom = client.CustomObjectsApi(setup_api)
    custom.create_namespaced_custom_object("autoscaling", "v2", "shop", "horizontalpodautoscalers", {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "search"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "search"},
                 "minReplicas": 1, "maxReplicas": 10}})
    with leading(operator(emu)) as op:
        create_scaler(setup_api, scaler_manifest("shop", "search", mode="ForecastOnly"))
        wait_for(lambda: "shop/search" in op.specs)
        t = now()
        for i in range(3):
            [d] = drive(op, forecast("search/requests", t + 60 * i, 1950),
                        observation(t + 60 * i, 400), t + 60 * i)
        assert d.reason is not Reason.CONFLICT and not d.applied, d.message
        assert "ForecastOnly beside HorizontalPodAutoscaler shop/search" in d.message
        assert _scale_patches(emu) == []  # never patches
        wait_for(lambda: "comparison" in (get_scaler(setup_api, "shop", "search").get("status") or {}))
        status = get_scaler(setup_api, "shop", "search")["status"]
        assert status["currentReplicas"] == 4  # the replicas the real HPA kept
        comparison = status["comparison"]
        assert comparison["simulatedReplicas"] == d.simulated_replicas == 20  # what it would have had
        assert comparison["windowSeconds"] > 0 and comparison["short"]
        assert conditions(get_scaler(setup_api, "shop", "search"))["Ready"] == ("True", "Reconciled")


def test_a_drifting_series_raises_an_event_and_is_scaled_reactively(emu, setup_api):
    workload(setup_api, "Deployment", "shop", "feed", 4)
    with leading(operator(emu)) as op:
        create_scaler(setup_api, scaler_manifest("shop", "feed"))
        wait_for(lambda: "shop/feed" in op.specs)
        t = now()
        drifting = dataclasses.replace(forecast("feed/requests", t, 1950), drifting=True)
        [d] = drive(op, drifting, observation(t, 400), t)
        assert d.drifting and d.message.startswith("series drifting, forecast ignored"), d.message
        assert d.desired == 4, "the observed 400 needs 4: the forecast's 1,950 is not acted on"
        wait_for(lambda: ("Warning", "SeriesDrifting") in events(setup_api, "shop", "feed"))
        [d] = drive(op, forecast("feed/requests", t + 60, 1950), observation(t + 60, 400), t + 60)
        assert not d.drifting and d.desired == 20
        wait_for(lambda: ("Normal", "DriftRecovered") in events(setup_api, "shop", "feed"))


def test_a_lead_time_beyond_the_forecasts_is_horizon_too_short(emu, setup_api):
    """A spec asking for 600 s ahead fed forecasts reaching 300 s: the condition says so
    (naming both), the count never drops on them, and only the observed load may raise it."""
    workload(setup_api, "Deployment", "shop", "slow", 10)
    with leading(operator(emu)) as op:
        create_scaler(setup_api, scaler_manifest("shop", "slow", leadTimeSeconds=600))
        wait_for(lambda: "shop/slow" in op.specs)
        t = now()
        # five windows of 60 s: the last starts at t + 300, the lead window ends at t + 600
        [d] = drive(op, forecast("slow/requests", t, 250), observation(t, 150), t)
        assert (d.desired, d.reason, d.fallback) == (10, Reason.HORIZON_TOO_SHORT, Reason.HORIZON_TOO_SHORT)
        status = get_scaler(setup_api, "shop", "slow")["status"]
        assert conditions({"status": status})["ForecastAvailable"] == ("False", "HorizonTooShort")
        [cond] = [c for c in status["conditions"] if c["type"] == "ForecastAvailable"]
        assert "leadTimeSeconds 600" in cond["message"] and "starts 300s ahead" in cond["message"]
        assert "FORESIGHT_HORIZON_SECONDS" in cond["message"]
        assert status["reason"] == "HorizonTooShort" and status.get("lastForecastPeak") is None
        assert ("Warning", "HorizonTooShort") in events(setup_api, "shop", "slow")
        assert replicas(setup_api, "Deployment", "shop", "slow") == 10

        # the observed load needs more: the reactive floor raises it, the condition stays
        [d] = drive(op, forecast("slow/requests", t + 60, 250), observation(t + 60, 1450), t + 60)
        assert (d.desired, d.reason, d.fallback) == (15, Reason.REACTIVE_FLOOR, Reason.HORIZON_TOO_SHORT)
        assert replicas(setup_api, "Deployment", "shop", "slow") == 15
        assert conditions(get_scaler(setup_api, "shop", "slow"))["ForecastAvailable"] == ("False", "HorizonTooShort")

        # forecasts reaching the end of the lead window are used again
        long = dataclasses.replace(forecast("slow/requests", t + 120, 1450), points=tuple(
            ForecastPoint(t + 120 + 60 * i, 1200, 900, 1450) for i in range(1, 12)))
        [d] = drive(op, long, observation(t + 120, 1450), t + 120)
        assert (d.reason, d.fallback, d.desired) == (Reason.FORECAST_PEAK, None, 15), d.message
        assert conditions(get_scaler(setup_api, "shop", "slow"))["ForecastAvailable"] == ("True", "ValidForecast")


def test_invalid_specs_and_missing_target_are_conditions_and_events(emu, setup_api):
    workload(setup_api, "Deployment", "shop", "ok", 2)
    with leading(operator(emu)) as op:
        create_scaler(setup_api, scaler_manifest("shop", "minmax", target="ok", minReplicas=9, maxReplicas=3))
        create_scaler(setup_api, scaler_manifest("shop", "noseries", target="ok", series=""))
        bad_kind = scaler_manifest("shop", "badkind")
        bad_kind["spec"]["scaleTargetRef"] = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w"}
        create_scaler(setup_api, bad_kind)
        create_scaler(setup_api, scaler_manifest("shop", "ghost"))  # its Deployment does not exist
        create_scaler(setup_api, scaler_manifest("shop", "ok"))
        for name in ("minmax", "noseries", "badkind"):
            wait_for(lambda name=name: conditions(get_scaler(setup_api, "shop", name)).get("Ready")
                     == ("False", "InvalidSpec"))
            assert ("Warning", "InvalidSpec") in events(setup_api, "shop", name)
        assert "minReplicas (9) > spec.maxReplicas (3)" in get_scaler(setup_api, "shop", "minmax")["status"]["message"]
        wait_for(lambda: conditions(get_scaler(setup_api, "shop", "ghost")).get("Ready")
                 == ("False", "FailedGetScale"))
        assert ("Warning", "FailedGetScale") in events(setup_api, "shop", "ghost")

        # the controller keeps working for the valid one
        t = now()
        [d] = drive(op, forecast("ok/requests", t, 450), observation(t, 100), t)
        assert (d.desired, d.applied) == (5, True)

        # the missing Deployment appears: the next resync picks it up
        workload(setup_api, "Deployment", "shop", "ghost", 2)
        decisions = op.resync(t + 3600, 30)
        assert "shop/ghost" in {x.target for x in decisions}
        assert conditions(get_scaler(setup_api, "shop", "ghost"))["Ready"] == ("True", "Reconciled")


def test_watch_dropped_mid_stream_resumes_and_410_relists(emu, setup_api):
    op = operator(emu, leader_election=False)
    op.start()
    try:
        create_scaler(setup_api, scaler_manifest("shop", "a"))
        wait_for(lambda: "shop/a" in op.specs)
        emu.call(emu.emulator.drop_watches)
        create_scaler(setup_api, scaler_manifest("shop", "b"))
        wait_for(lambda: "shop/b" in op.specs)

        def watch_and_list():
            reqs = [(p, q) for m, p, q in controller_requests(emu) if m == "GET" and p.endswith(PLURAL)]
            return [q for p, q in reqs if q.get("watch") == "true"], [q for p, q in reqs if q.get("watch") != "true"]

        watches, lists = watch_and_list()
        assert len(lists) == 1, "a dropped watch resumes; it does not re-list"
        assert len(watches) >= 2 and all(q.get("resourceVersion") for q in watches)

        # history compacted while the watch is down: 410 Gone -> re-list, deletions noticed
        emu.call(emu.emulator.pause_watches)
        emu.call(emu.emulator.drop_watches)
        client.CustomObjectsApi(setup_api).delete_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "a")
        create_scaler(setup_api, scaler_manifest("shop", "c"))
        emu.call(emu.emulator.compact)
        emu.call(emu.emulator.pause_watches, False)
        wait_for(lambda: "shop/c" in op.specs)
        wait_for(lambda: "shop/a" not in op.specs)
        assert len(watch_and_list()[1]) == 2
        assert set(op.specs) == {"shop/b", "shop/c"}
    finally:
        op.stop()


def test_conflict_on_status_update_is_retried(emu, setup_api):
    workload(setup_api, "Deployment", "shop", "pay", 2)
    op = operator(emu, leader_election=False)
    op.start()
    try:
        create_scaler(setup_api, scaler_manifest("shop", "pay"))
        wait_for(lambda: (get_scaler(setup_api, "shop", "pay").get("status") or {}).get("reason"))
        # another writer touches the object right before our next status patch
        emu.call(emu.emulator.interfere,
                 lambda r: r.method.value == "PATCH" and r.subresource == "status" and r.name == "pay")
        t = now()
        [d] = drive(op, forecast("pay/requests", t, 650), observation(t, 100), t)
        obj = get_scaler(setup_api, "shop", "pay")
        assert obj["status"]["desiredReplicas"] == d.desired == 7
        assert obj["metadata"]["annotations"]["emulator/interference"]
        status_paths = [(m, p) for m, p, _ in controller_requests(emu)
                        if p.endswith("/predictivescalers/pay/status") or p.endswith("/predictivescalers/pay")]
        # ... PATCH status (409) -> GET (re-read) -> PATCH status (ok)
        assert status_paths[-3:] == [
            ("PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/shop/{PLURAL}/pay/status"),
            ("GET", f"/apis/{GROUP}/{VERSION}/namespaces/shop/{PLURAL}/pay"),
            ("PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/shop/{PLURAL}/pay/status"),
        ]
    finally:
        op.stop()


def test_two_controllers_one_lease_only_leader_patches(emu, setup_api):
    workload(setup_api, "Deployment", "shop", "api", 2)
    create_scaler(setup_api, scaler_manifest("shop", "api"))
    ua_a, ua_b = "foresight-controller/a", "foresight-controller/b"
    a, b = operator(emu, ua=ua_a), operator(emu, ua=ua_b)
    a.start()
    wait_for(a.is_leader)
    b.start()
    try:
        wait_for(lambda: "shop/api" in b.specs)
        wait_for(lambda: b.elector.holder == a.identity)
        t = now()
        assert drive(b, forecast("api/requests", t, 650), observation(t, 100), t) == []
        [d] = drive(a, forecast("api/requests", t, 650), observation(t, 100), t)
        assert d.applied and replicas(setup_api, "Deployment", "shop", "api") == 7
        writes_b = [(m, p) for m, p, _ in controller_requests(emu, ua_b)
                    if m in ("PATCH", "POST", "PUT") and "/leases" not in p]
        assert writes_b == [], "the follower never writes"
        assert b.is_leader() is False

        a.stop()  # releases the Lease
        wait_for(b.is_leader)
        t += 60
        [d] = drive(b, forecast("api/requests", t, 1150), observation(t, 100), t)
        assert d.applied and replicas(setup_api, "Deployment", "shop", "api") == 12
        assert drive(a, forecast("api/requests", t, 1950), observation(t, 100), t) == []
    finally:
        a.stop()
        b.stop()


def test_follower_takes_over_when_the_leader_dies(emu, setup_api):
    a, b = operator(emu, ua="foresight-controller/a"), operator(emu, ua="foresight-controller/b")
    a.start()
    wait_for(a.is_leader)
    b.start()
    try:
        wait_for(lambda: b.elector.holder == a.identity)
        a.stop(release=False)  # a crash: the Lease is not released, it has to expire
        assert not a.is_leader()
        wait_for(b.is_leader, timeout=20)
        lease = client.CoordinationV1Api(setup_api).read_namespaced_lease("foresight-controller", "foresight-system")
        assert lease.spec.holder_identity == b.identity
        assert lease.spec.lease_transitions == 1
    finally:
        b.stop()


def test_reconciling_interface_resync_and_health_probes(emu, setup_api):
    """What streams.controller.ControllerLoop calls (scaler.reconciling), plus the probes."""
    workload(setup_api, "Deployment", "shop", "feed", 2)
    op = operator(emu, leader_election=False, health_port=0, health_host="127.0.0.1")
    pending: list = []
    op.on_decision = pending.append
    op.start()
    base = f"http://127.0.0.1:{op.health.port}"
    try:
        assert urllib.request.urlopen(f"{base}/healthz").status == 200
        assert urllib.request.urlopen(f"{base}/readyz").status == 200
        create_scaler(setup_api, scaler_manifest("shop", "feed"))
        wait_for(lambda: "shop/feed" in op.specs)
        t = now()
        op.observe(forecast("feed/requests", t, 650), observation(t, 100))
        [d] = op.reconcile_series("feed/requests", t)
        assert d.applied and op.last["shop/feed"] == d and pending[-1] == d
        assert op.resync(t + 10, 30) == [], "reconciled 10 s ago: not due"
        # the sweep is the plain controller's (Reconciler.due): only once the series is quiet
        assert op.resync(t + 31, 30) == [], "its next window is on its way: not due"
        quiet = t + 60 + 181  # the forecast's window end + longer than it stays fresh
        assert op.resync(quiet, 30) == [], "quiet at this sweep only: not yet"
        [again] = op.resync(quiet + 30, 30)
        assert again.target == "shop/feed" and again.ts == quiet + 30
        [now_due] = op.resync(quiet + 31, 0)  # a period of 0: every quiet target is due
        assert now_due.target == "shop/feed"
    finally:
        op.stop()
    assert not op.healthy()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/healthz", timeout=2)


def test_mode_override_makes_every_scaler_a_dry_run(emu, setup_api):
    workload(setup_api, "Deployment", "shop", "promo", 2)
    op = operator(emu, leader_election=False, mode_override="ForecastOnly")
    op.start()
    try:
        create_scaler(setup_api, scaler_manifest("shop", "promo", mode="Active"))
        wait_for(lambda: "shop/promo" in op.specs)
        t = now()
        [d] = drive(op, forecast("promo/requests", t, 950), observation(t, 100), t)
        assert (d.mode, d.desired, d.applied) == ("ForecastOnly", 10, False)
        assert _scale_patches(emu) == [] and replicas(setup_api, "Deployment", "shop", "promo") == 2
    finally:
        op.stop()


def test_leader_that_cannot_renew_stops_acting(emu, setup_api):
    workload(setup_api, "Deployment", "shop", "mail", 2)
    create_scaler(setup_api, scaler_manifest("shop", "mail"))
    with leading(operator(emu)) as op:
        wait_for(lambda: "shop/mail" in op.specs)
        # the Lease API becomes unreachable (a user-defined kmock reaction wins over the emulator)
        emu.call(lambda: emu.emulator[re.compile(r"/apis/coordination\.k8s\.io/.*")] << 503)
        wait_for(lambda: not op.is_leader(), timeout=10)
        t = now()
        assert drive(op, forecast("mail/requests", t, 950), observation(t, 100), t) == []
        assert _scale_patches(emu) == [] and replicas(setup_api, "Deployment", "shop", "mail") == 2


def test_namespaced_scope_and_deletion(emu, setup_api):
    op = operator(emu, leader_election=False, namespaces=["shop"])
    op.start()
    try:
        create_scaler(setup_api, scaler_manifest("other", "x"))
        create_scaler(setup_api, scaler_manifest("shop", "y"))
        wait_for(lambda: "shop/y" in op.specs)
        assert "other/x" not in op.specs
        client.CustomObjectsApi(setup_api).delete_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "y")
        wait_for(lambda: "shop/y" not in op.specs)
        paths = {p for m, p, _ in controller_requests(emu) if m == "GET" and p.endswith(PLURAL)}
        assert paths == {f"/apis/{GROUP}/{VERSION}/namespaces/shop/{PLURAL}"}
        assert get_scaler(setup_api, "other", "x").get("status") is None, "out of scope: untouched"
    finally:
        op.stop()


def test_new_leader_keeps_the_scale_down_window(emu, setup_api):
    """No memory after a fail-over (or restart) must not mean an immediate scale-down."""
    workload(setup_api, "Deployment", "shop", "news", 10)
    create_scaler(setup_api, scaler_manifest("shop", "news", behavior={
        "scaleDown": {"stabilizationWindowSeconds": 300,
                      "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}}))
    custom = client.CustomObjectsApi(setup_api)
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, "shop", PLURAL, "news",
                                                 {"status": {"desiredReplicas": 10}})
    old_leader = LeaderElector(emu.api_client("foresight-controller/old"), identity="old",
                               namespace="foresight-system", lease_duration=4, renew_deadline=3,
                               retry_period=0.2)
    assert old_leader.step()
    op = operator(emu)
    op.start()
    try:
        wait_for(lambda: "shop/news" in op.specs)
        assert not op.is_leader()
        old_leader.release()
        wait_for(op.is_leader)
        t = now()
        [d] = drive(op, forecast("news/requests", t, 250), observation(t, 100), t)
        assert (d.desired, d.reason) == (10, Reason.SCALE_DOWN_STABILIZED)
        [d] = drive(op, forecast("news/requests", t + 301, 250), observation(t + 301, 100), t + 301)
        assert (d.desired, d.applied) == (3, True)
    finally:
        op.stop()


def _other_leader(emu) -> LeaderElector:
    """Another controller holding the Lease (``stop(release=True)`` hands it over)."""
    elector = LeaderElector(emu.api_client("foresight-controller/old"), identity="old",
                            namespace=LEASE_NS, lease_duration=4, renew_deadline=3, retry_period=0.2)
    elector.start()
    wait_for(elector.is_leader)
    return elector


def test_new_leader_resyncs_every_target_and_reports_what_it_learnt_as_a_follower(emu, setup_api):
    """Paths only ``resync`` runs, driven as ControllerLoop drives them (scaler.reconciling)."""
    workload(setup_api, "Deployment", "shop", "fresh", 2)
    create_scaler(setup_api, scaler_manifest("shop", "bad", target="fresh", minReplicas=9, maxReplicas=3))
    create_scaler(setup_api, scaler_manifest("shop", "fresh"))
    old_leader = _other_leader(emu)
    op = operator(emu)
    try:
        op.start()  # the initial list, as a follower: both objects known, nothing written
        assert set(op.specs) == {"shop/fresh"} and not op.is_leader()
        old_leader.stop(release=True)
        wait_for(op.is_leader)
        assert get_scaler(setup_api, "shop", "bad").get("status") is None
        assert events(setup_api, "shop", "bad") == []
        t = now()
        assert [d.target for d in op.resync(t, 3600)] == ["shop/fresh"]
        assert conditions(get_scaler(setup_api, "shop", "bad"))["Ready"] == ("False", "InvalidSpec")
        assert events(setup_api, "shop", "bad") == [("Warning", "InvalidSpec")]
        assert op.resync(t + 1, 3600) == [], "reconciled a second ago: not due"

        # the Lease is lost and won again: the next resync refreshes every target, due or not
        op.elector.release()
        [again] = wait_for(lambda: op.resync(t + 2, 3600))
        assert again.target == "shop/fresh"
        assert events(setup_api, "shop", "bad") == [("Warning", "InvalidSpec")], "reported once"
    finally:
        op.stop()
        old_leader.stop()


QUEUE_QUERY = 'sum(orders_queue_depth{app="orders"})'


def _multi_manifest(name: str, **spec):
    m = scaler_manifest("shop", name, **spec)
    del m["spec"]["series"], m["spec"]["capacityPerReplica"]
    m["spec"]["signals"] = [
        {"series": f"{name}/requests", "capacityPerReplica": 100},
        {"name": "queue", "prometheus": {"query": QUEUE_QUERY}, "capacityPerReplica": 50,
         "leadTimeSeconds": 120},
    ]
    return m


def test_several_signals_and_a_schedule_in_status(emu, setup_api):
    workload(setup_api, "Deployment", "shop", "orders", 2)
    with leading(operator(emu)) as op:
        create_scaler(setup_api, _multi_manifest("orders"))
        wait_for(lambda: "shop/orders" in op.specs)
        queue = prometheus_series(QUEUE_QUERY)
        assert op.specs["shop/orders"].all_series == ("orders/requests", queue)

        # the requests have a forecast, the queue nothing yet: requests decide the way up,
        # and the queue's missing forecast is the condition
        t = now()
        [d] = drive(op, forecast("orders/requests", t, 950), observation(t, 480), t)
        assert (d.desired, d.applied, d.signal, d.reason) == (10, True, "orders/requests",
                                                              Reason.FORECAST_PEAK)
        status = get_scaler(setup_api, "shop", "orders")["status"]
        assert status["signal"] == "orders/requests"
        assert [(s["name"], s["series"], s["desiredReplicas"], s["reason"])
                for s in status["signals"]] == [
            ("orders/requests", "orders/requests", 10, "ForecastPeak"),
            ("queue", queue, 2, "NoForecast")]
        assert status["signals"][1]["leadTimeSeconds"] == 120
        assert status["signals"][1]["capacityPerReplica"] == 50
        assert conditions({"status": status})["ForecastAvailable"] == ("False", "NoForecast")
        assert "signal queue: no forecast" in next(
            c["message"] for c in status["conditions"] if c["type"] == "ForecastAvailable")
        assert ("Warning", "NoForecast") in events(setup_api, "shop", "orders")
        [warning] = [e["message"] for e in _list_events(setup_api, "shop")
                     if e["involvedObject"]["name"] == "orders" and e["reason"] == "NoForecast"]
        # first when neither signal had data: each named, with its own sentence
        assert "; signal queue: no forecast for the series yet: holding 2" in warning, warning

        # the queue's forecast arrives (fed by the Prometheus ingest under the derived name):
        # 900 at 50 each needs 18, more than the requests' 10, so the queue decides
        [d] = drive(op, forecast(queue, t + 1, 900), observation(t + 1, 400), t + 1)
        assert (d.desired, d.applied, d.signal) == (18, True, "queue"), d.message
        assert d.message.startswith("signal queue decides (orders/requests: 10 ")
        assert replicas(setup_api, "Deployment", "shop", "orders") == 18
        status = get_scaler(setup_api, "shop", "orders")["status"]
        assert (status["signal"], status["reason"], status["lastForecastPeak"]) == (
            "queue", "ForecastPeak", 900)
        assert [s["forecastPeak"] for s in status["signals"]] == [950, 900]
        assert [s["observed"] for s in status["signals"]] == [480, 400]
        assert conditions({"status": status})["ForecastAvailable"] == ("True", "ValidForecast")

        # a sale: a scheduled minimum of 20 around now
        window = {"name": "sale", "start": rfc3339(t - 60), "end": rfc3339(t + 3600),
                  "minReplicas": 20}
        client.CustomObjectsApi(setup_api).patch_namespaced_custom_object(
            GROUP, VERSION, "shop", PLURAL, "orders", {"spec": {"schedules": [window]}})
        wait_for(lambda: op.specs["shop/orders"].schedules)
        [d] = drive(op, forecast(queue, t + 2, 900), observation(t + 2, 400), t + 2)
        assert (d.desired, d.reason, d.schedule) == (20, Reason.SCHEDULED, ("sale", 20)), d.message
        assert replicas(setup_api, "Deployment", "shop", "orders") == 20
        status = get_scaler(setup_api, "shop", "orders")["status"]
        assert status["schedule"] == {"name": "sale", "minReplicas": 20}
        assert status["reason"] == "Scheduled" and "schedule 'sale'" in status["message"]
        assert conditions({"status": status})["ScalingLimited"] == ("True", "Scheduled")
        # the learnt state was kept through the spec change (same series), one per signal
        assert set(op.reconciler.states["shop/orders"].adaptives) == {"orders/requests", "queue"}

        # the event is over (spec edited): the schedule leaves the status
        client.CustomObjectsApi(setup_api).patch_namespaced_custom_object(
            GROUP, VERSION, "shop", PLURAL, "orders", {"spec": {"schedules": []}})
        wait_for(lambda: not op.specs["shop/orders"].schedules)
        drive(op, forecast(queue, t + 3, 900), observation(t + 3, 400), t + 3)
        assert "schedule" not in get_scaler(setup_api, "shop", "orders")["status"]


def test_bad_signals_and_schedules_are_invalid_specs(emu, setup_api):
    workload(setup_api, "Deployment", "shop", "orders", 2)
    with leading(operator(emu)):
        both = _multi_manifest("both", target="orders")
        both["spec"]["series"] = "orders/requests"  # the shorthand and the list at once
        create_scaler(setup_api, both)
        kafka = _multi_manifest("kafka", target="orders")
        kafka["spec"]["signals"][1] = {"kafkaTopic": {"topic": "orders", "consumerGroup": "bill",
                                                      "lagThreshold": 0}, "capacityPerReplica": 100}
        create_scaler(setup_api, kafka)
        create_scaler(setup_api, scaler_manifest("shop", "tz", target="orders", schedules=[
            {"name": "x", "cron": "0 9 * * *", "durationSeconds": 60, "timezone": "Mars/Base",
             "minReplicas": 3}]))
        expect = {"both": "are two forms of one thing", "kafka": "kafkaTopic needs lagThreshold > 0",
                  "tz": "unknown time zone 'Mars/Base'"}
        for name, text in expect.items():
            wait_for(lambda name=name: conditions(get_scaler(setup_api, "shop", name)).get("Ready")
                     == ("False", "InvalidSpec"))
            assert text in get_scaler(setup_api, "shop", name)["status"]["message"]
        assert replicas(setup_api, "Deployment", "shop", "orders") == 2


def test_a_kafka_signal_decides_at_its_rates_time_and_the_sweep_waits_for_it(emu, setup_api):
    """The decision time of scaler/reconcile.py (Reconciler.decision_time, Reconciler.due),
    as streams.controller's plain reconciler has it: one code path for every controller."""
    workload(setup_api, "Deployment", "shop", "orders", 2)
    with leading(operator(emu)) as op:
        m = scaler_manifest("shop", "orders")
        del m["spec"]["series"], m["spec"]["capacityPerReplica"]
        m["spec"]["signals"] = [{"kafkaTopic": {"topic": "orders", "consumerGroup": "billing",
                                                "lagThreshold": 100}, "capacityPerReplica": 1}]
        create_scaler(setup_api, m)
        wait_for(lambda: "shop/orders" in op.specs)
        rate, lag, parts = kafka_topic_series("orders", "billing")
        t = now()
        [d] = op.resync(t, 60)  # the new leader's sweep of every target, before any input
        assert d.reason == Reason.NO_FORECAST
        for s, v in ((rate, 1.5), (lag, 10), (parts, 16)):
            assert [d.ts for d in drive(op, forecast(s, t, v), observation(t, v), t + 60)] == [t + 60]
        # the lag and the partitions run two windows ahead of the rate (another model batch)
        for w in (60, 120):
            for s, v in ((lag, 10), (parts, 16)):
                got = drive(op, forecast(s, t + w, v), observation(t + w, v), t + w + 60)
                assert [d.ts for d in got] == [t + 60], "never ahead of the rate"
        assert op.resync(t + 180, 60) == [], "the rate's windows are on their way: not due"
        # the rate's next window: decided at its own time, its forecast fresh, the lead whole
        [d] = drive(op, forecast(rate, t + 60, 9.5), observation(t + 60, 2.0), t + 120)
        assert d.ts == t + 120 and d.signals[0].fallback is None, d.message
        assert (d.desired, d.applied, d.reason) == (10, True, Reason.FORECAST_PEAK), d.message
        assert replicas(setup_api, "Deployment", "shop", "orders") == 10
        # every series quiet for longer than a forecast stays fresh: the sweep decides, and holds
        quiet = t + 180 + 181
        assert op.resync(quiet, 60) == [], "quiet at one sweep: its next message may be on its way"
        [d] = op.resync(quiet + 60, 60)
        assert d.ts == quiet + 60 and d.desired == 10 and d.signals[0].fallback is not None, d.message


def _kafka_scaler(setup_api, name: str) -> tuple[str, str, str]:
    """A PredictiveScaler on ``shop/<name>`` with one Kafka signal; its rate, lag and partitions series."""
    workload(setup_api, "Deployment", "shop", name, 2)
    m = scaler_manifest("shop", name)
    del m["spec"]["series"], m["spec"]["capacityPerReplica"]
    m["spec"]["signals"] = [{"kafkaTopic": {"topic": name, "consumerGroup": "billing",
                                            "lagThreshold": 100}, "capacityPerReplica": 1}]
    create_scaler(setup_api, m)
    return kafka_topic_series(name, "billing")


def _rate_behind(ops, rate: str, lag: str, parts: str, t: float) -> None:
    """The rate's first window, then the lag and the partitions three windows ahead of it."""
    for op in ops:
        drive(op, forecast(rate, t, 9.5), observation(t, 2.0), t + 60)
    for w in (0, 60, 120, 180):
        for op in ops:
            for s, v in ((lag, 10), (parts, 16)):
                drive(op, forecast(s, t + w, v), observation(t + w, v), t + w + 60)


def test_a_new_leaders_first_sweep_decides_at_the_signals_time(emu, setup_api):
    """The sweep after winning the Lease decides a target at Reconciler.decision_time, as its
    next input would: not at the sweep's time, ahead of the rate (its forecast stale)."""
    rate, lag, parts = _kafka_scaler(setup_api, "orders")
    old_leader = _other_leader(emu)
    op = operator(emu)
    try:
        op.start()
        wait_for(lambda: "shop/orders" in op.specs)
        t = now()
        _rate_behind([op], rate, lag, parts, t)
        old_leader.stop(release=True)
        wait_for(op.is_leader)
        [d] = op.resync(t + 240, 60)
        assert d.ts == t + 60 and d.signals[0].fallback is None, d.message
        assert (d.desired, d.applied, d.reason) == (10, True, Reason.FORECAST_PEAK), d.message
    finally:
        op.stop()
        old_leader.stop()


def test_a_standby_learns_at_the_times_the_leader_decides(emu, setup_api):
    """A standby's policy memory (learn_series) is the leader's, stamped at the same decision
    times (a takeover keeps the leader's stabilisation windows, not later ones)."""
    rate, lag, parts = _kafka_scaler(setup_api, "orders")
    a, b = operator(emu, ua="foresight-controller/a"), operator(emu, ua="foresight-controller/b")
    a.start()
    wait_for(a.is_leader)
    b.start()
    try:
        wait_for(lambda: "shop/orders" in a.specs and "shop/orders" in b.specs)
        wait_for(lambda: b.elector.holder == a.identity)
        t = now()
        _rate_behind([a, b], rate, lag, parts, t)
        led = a.reconciler.states["shop/orders"].recommendations
        assert led and max(ts for ts, _ in led) == t + 60, "the leader decided at the rate's time"
        # the standby's memory is the leader's decisions at their times (the leader may also have
        # swept on its own timer at the wall clock's time, which a standby does not learn)
        learnt = b.reconciler.states["shop/orders"].recommendations
        assert learnt and max(ts for ts, _ in learnt) == t + 60 and set(learnt) <= set(led), (learnt, led)
    finally:
        a.stop()
        b.stop()
