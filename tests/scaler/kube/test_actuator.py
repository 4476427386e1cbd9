"""KubeActuator: the scale subresource of Deployments, StatefulSets and custom kinds."""

from __future__ import annotations

import kmock
import pytest
from kube_fixtures import replicas, workload
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from scaler.kube import KubeActuator, NotLeaderError, TargetResolutionError
from scaler.spec import ScalerSpec, TargetRef

pytestmark = pytest.mark.integration


def spec(kind: str, name: str, api_version: str = "apps/v1") -> ScalerSpec:
    return ScalerSpec(name, f"{name}/rps", 100, namespace="shop", target=TargetRef(api_version, kind, name))


def patches(emu, ua="actuator"):
    return [r.url.path for r in emu.requests()
            if r.headers.get("User-Agent") == ua and r.method.value == "PATCH"]


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_reads_and_patches_scale_only_when_count_differs(emu, setup_api, kind):
    workload(setup_api, kind, "shop", "web", 3)
    act = KubeActuator(emu.api_client("actuator"))
    s = spec(kind, "web")
    assert act.current_replicas(s, 0) == 3
    act.scale(s, 3, 0)
    assert patches(emu) == []
    act.scale(s, 8, 0)
    assert replicas(setup_api, kind, "shop", "web") == 8
    assert patches(emu) == [f"/apis/apps/v1/namespaces/shop/{kind.lower()}s/web/scale"]


def test_guard_is_checked_before_every_write(emu, setup_api):
    workload(setup_api, "Deployment", "shop", "web", 3)

    def guard() -> None:
        raise NotLeaderError("no lease")

    act = KubeActuator(emu.api_client("actuator"), guard=guard)
    s = spec("Deployment", "web")
    assert act.current_replicas(s, 0) == 3  # reads are fine
    with pytest.raises(NotLeaderError):
        act.scale(s, 5, 0)
    assert patches(emu) == [] and replicas(setup_api, "Deployment", "shop", "web") == 3


def test_custom_kind_with_scale_subresource_via_discovery(emu, setup_api):
    emu.call(lambda: emu.emulator.resources.__setitem__(
        "example.com/v1/widgets",
        kmock.ResourceInfo(kind="Widget", namespaced=True, subresources={"scale"}, verbs={"get"})))
    client.CustomObjectsApi(setup_api).create_namespaced_custom_object(
        "example.com", "v1", "shop", "widgets", {"metadata": {"name": "w"}, "spec": {"replicas": 2}})
    act = KubeActuator(emu.api_client("actuator"))
    s = spec("Widget", "w", api_version="example.com/v1")
    assert act.resolve(s.target) == ("example.com", "v1", "widgets")
    assert act.current_replicas(s, 0) == 2
    act.scale(s, 4, 0)
    assert patches(emu) == ["/apis/example.com/v1/namespaces/shop/widgets/w/scale"]


def test_unknown_kind_and_missing_target(emu):
    act = KubeActuator(emu.api_client("actuator"))
    with pytest.raises(TargetResolutionError):
        act.resolve(TargetRef("example.com/v1", "Gadget", "g"))
    with pytest.raises(ApiException) as exc:
        act.current_replicas(spec("Deployment", "absent"), 0)
    assert exc.value.status == 404
