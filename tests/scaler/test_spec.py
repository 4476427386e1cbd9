from __future__ import annotations

import pytest

from scaler.spec import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, ScalerSpec, SpecError, load_specs

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
