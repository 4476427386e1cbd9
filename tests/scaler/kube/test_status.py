"""Status conditions from real policy decisions (scaler/kube/status.py is pure)."""

from __future__ import annotations

from dataclasses import replace

from detectors.forecast import Forecast, ForecastPoint
from scaler.decision import Direction, Reason
from scaler.kube.status import KubeReason, decision_status, limited_condition, problem_status
from scaler.policy import Observation, PolicyState, decide
from scaler.schedule import Schedule
from scaler.spec import RatePolicy, ScalerSpec, ScalingRules, Signal, TargetRef


def spec() -> ScalerSpec:
    one_pod = (RatePolicy("Pods", 1, 60),)
    return ScalerSpec("web", "web/rps", capacity_per_replica=100, min_replicas=1, max_replicas=50,
                      lead_time_seconds=120, target=TargetRef("apps/v1", "Deployment", "web"),
                      scale_up=ScalingRules(0, one_pod), scale_down=ScalingRules(0, one_pod))


def flat(now: float, upper: float) -> Forecast:
    return Forecast("web/rps", now, 60.0, tuple(ForecastPoint(now + 60 * i, upper, 0, upper)
                                                 for i in range(1, 4)), 0.9, "m", True)


def test_a_rate_limited_decision_says_which_way_and_status_follows_it():
    now = 600.0
    up, _ = decide(spec(), PolicyState(), flat(now, 1000), Observation(now, 500), 5, now)
    assert (up.reason, up.limited, up.desired) == (Reason.RATE_LIMITED, Direction.UP, 6)
    assert limited_condition(up, spec())["reason"] == KubeReason.SCALE_UP_LIMIT == "ScaleUpLimit"

    down, _ = decide(spec(), PolicyState(), flat(now, 100), Observation(now, 100), 20, now)
    assert (down.reason, down.limited, down.desired) == (Reason.RATE_LIMITED, Direction.DOWN, 19)
    _, conditions = decision_status(down, spec(), None, last_scale_time=None, observed_generation=1)
    limited = {c["type"]: c for c in conditions}["ScalingLimited"]
    assert (limited["status"], limited["reason"]) == ("True", "ScaleDownLimit")

    within, _ = decide(spec(), PolicyState(), flat(now, 550), Observation(now, 500), 6, now)
    assert within.limited is None
    assert limited_condition(within, spec())["reason"] == "DesiredWithinRange"


def test_problem_reasons_come_from_the_fixed_vocabularies():
    for reason in (Reason.INVALID_SPEC, Reason.CONFLICT, KubeReason.FAILED_GET_SCALE,
                   KubeReason.FAILED_RESCALE):
        ready, active = problem_status(reason, "why")
        assert ready == {"type": "Ready", "status": "False", "reason": reason.value, "message": "why"}
        assert type(ready["reason"]) is str and active["reason"] == reason.value


def two_signal_spec(**kw) -> ScalerSpec:
    return replace(spec(), signals=(Signal("web/rps", 100), Signal("web/queue", 50, name="queue")),
                   **kw)


def test_several_signals_status_names_the_decider_and_each_signals_figures():
    now = 600.0
    fcs = {"web/rps": flat(now - 60, 300), "web/queue": replace(flat(now - 60, 400),
                                                                 series="web/queue")}
    obs = {"web/rps": Observation(now - 60, 250), "web/queue": Observation(now - 60, 100)}
    d, _ = decide(two_signal_spec(), PolicyState(), fcs, obs, 7, now)
    fields, conds = decision_status(d, two_signal_spec(), d.fallback, last_scale_time=None,
                                    observed_generation=1)
    assert (fields["signal"], fields["desiredReplicas"]) == ("queue", 8)  # 7 + one pod a minute
    assert [(s["name"], s["desiredReplicas"], s["forecastPeak"]) for s in fields["signals"]] == [
        ("web/rps", 3, 300), ("queue", 8, 400)]
    # each signal's own shadow comparison; the target's (the VS HPA column) is the decider's
    rps, queue = fields["signals"]
    assert rps["comparison"]["hpaReplicaSeconds"] != queue["comparison"]["hpaReplicaSeconds"]
    assert {k: v for k, v in fields["comparison"].items() if k != "simulatedReplicas"} == queue["comparison"]
    by_type = {c["type"]: c for c in conds}
    assert by_type["ForecastAvailable"]["status"] == "True"
    assert by_type["ForecastAvailable"]["message"] == (
        "forecast peaks within the lead time: web/rps 300, queue 400")
    # one signal anomalous: ForecastAvailable is False and names it, even though the other
    # (healthy) decided
    obs["web/rps"] = Observation(now - 60, 250, anomalous=True)
    d, _ = decide(two_signal_spec(), PolicyState(), fcs, obs, 7, now)
    _, conds = decision_status(d, two_signal_spec(), d.fallback, last_scale_time=None,
                               observed_generation=1)
    c = {c["type"]: c for c in conds}["ForecastAvailable"]
    assert (c["status"], c["reason"]) == ("False", "AnomalousSeries")
    assert c["message"].startswith("signal web/rps: latest data is anomalous")
    assert fields["schedule"] is None


def test_a_scheduled_floor_is_a_limit_in_status():
    sale = Schedule("sale", 9, start=0, end=10_000)
    s = two_signal_spec(schedules=(sale,), scale_up=ScalingRules(0, ()))
    fcs = {"web/rps": flat(540, 300)}
    d, _ = decide(s, PolicyState(), fcs, {"web/rps": Observation(540, 250)}, 3, 600.0)
    fields, _ = decision_status(d, s, d.fallback, last_scale_time=None, observed_generation=1)
    assert (d.desired, d.reason) == (9, Reason.SCHEDULED)
    assert fields["schedule"] == {"name": "sale", "minReplicas": 9}
    assert limited_condition(d, s)["reason"] == "Scheduled"


def test_each_signals_comparison_is_in_the_crds_status_schema():
    """The API server prunes status fields its schema does not name: every field a
    several-signal decision writes, each signal's comparison too, is in deploy/crd.yaml."""
    import jsonschema

    from tests.deploy.test_manifests import _closed, crd

    state, current = PolicyState(), 2
    for i in range(5):
        now = 600.0 + 60 * i
        fcs = {"web/rps": flat(now - 60, 300), "web/queue": replace(flat(now - 60, 400),
                                                                     series="web/queue")}
        obs = {"web/rps": Observation(now - 60, 250), "web/queue": Observation(now - 60, 100)}
        d, state = decide(two_signal_spec(), state, fcs, obs, current, now)
        current = d.desired
    fields, conds = decision_status(d, two_signal_spec(), d.fallback, last_scale_time=None,
                                    observed_generation=1)
    assert all("comparison" in s for s in fields["signals"]) and "comparison" in fields
    status = {k: v for k, v in fields.items() if v is not None}
    status["conditions"] = [{**c, "lastTransitionTime": "2026-01-01T00:00:00Z"} for c in conds]
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    jsonschema.Draft4Validator(_closed(schema)).validate(status)
