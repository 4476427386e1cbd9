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
    ({"capacityPerReplica": "lots"}, "malformed spec"),
])
def test_invalid_specs_say_why(change, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ScalerSpec.from_manifest({**BASE, "spec": {**BASE["spec"], **change}})


def test_load_specs_from_yaml(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("kind: ConfigMap\n---\n" + __import__("yaml").safe_dump(BASE))
    (s,) = load_specs(f)
    assert s.name == "checkout"
    (tmp_path / "empty.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(SpecError, match="no PredictiveScaler"):
        load_specs(tmp_path / "empty.yaml")
