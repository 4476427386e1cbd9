"""The emulator extension on its own: the API-server contract the operator relies on."""

from __future__ import annotations

import pytest
from kube_emulator import wait_for
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.integration

G, V, P = "example.com", "v1", "widgets"


@pytest.fixture()
def custom(setup_api):
    return client.CustomObjectsApi(setup_api)


def widget(custom, name="w", **spec):
    return custom.create_namespaced_custom_object(G, V, "ns", P, {
        "apiVersion": f"{G}/{V}", "kind": "Widget", "metadata": {"name": name},
        "spec": {"replicas": 1, **spec}})


def test_metadata_resource_versions_and_generation(custom):
    w = widget(custom)
    meta = w["metadata"]
    assert meta["resourceVersion"] == "1" and meta["generation"] == 1 and meta["uid"]
    assert meta["namespace"] == "ns"
    w2 = custom.patch_namespaced_custom_object(G, V, "ns", P, "w", {"metadata": {"labels": {"a": "b"}}})
    assert w2["metadata"]["resourceVersion"] == "2" and w2["metadata"]["generation"] == 1
    w3 = custom.patch_namespaced_custom_object(G, V, "ns", P, "w", {"spec": {"size": 3}})
    assert w3["metadata"]["generation"] == 2 and w3["spec"] == {"replicas": 1, "size": 3}
    w4 = custom.patch_namespaced_custom_object(G, V, "ns", P, "w", {"spec": {"size": None}})
    assert w4["spec"] == {"replicas": 1}, "merge patch: null deletes"
    with pytest.raises(ApiException) as exc:
        widget(custom)
    assert exc.value.status == 409 and "AlreadyExists" in exc.value.body


def test_compare_and_swap_409(custom):
    widget(custom)
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"size": 1}}
    custom.patch_namespaced_custom_object(G, V, "ns", P, "w", stale)  # rv 1 is current: ok
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(G, V, "ns", P, "w", stale)  # now rv is 2
    assert exc.value.status == 409
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object_status(G, V, "ns", P, "w", {**stale, "status": {"x": 1}})
    assert exc.value.status == 409
    assert custom.get_namespaced_custom_object(G, V, "ns", P, "w")["spec"]["size"] == 1


def test_put_replaces_with_cas_and_404(custom):
    w = widget(custom, size=5)
    w["spec"] = {"replicas": 2}
    new = custom.replace_namespaced_custom_object(G, V, "ns", P, "w", w)
    assert new["spec"] == {"replicas": 2}, "PUT replaces; it does not merge"
    with pytest.raises(ApiException) as exc:
        custom.replace_namespaced_custom_object(G, V, "ns", P, "w", w)  # w carries the old rv
    assert exc.value.status == 409
    w["metadata"]["name"] = "missing"
    with pytest.raises(ApiException) as exc:
        custom.replace_namespaced_custom_object(G, V, "ns", P, "missing", w)
    assert exc.value.status == 404


def test_status_subresource_is_separate(custom):
    widget(custom)
    custom.patch_namespaced_custom_object(G, V, "ns", P, "w", {"status": {"ignored": True}})
    assert "status" not in custom.get_namespaced_custom_object(G, V, "ns", P, "w")
    custom.patch_namespaced_custom_object_status(
        G, V, "ns", P, "w", {"spec": {"replicas": 9}, "status": {"ready": 1}})
    obj = custom.get_namespaced_custom_object(G, V, "ns", P, "w")
    assert obj["status"] == {"ready": 1} and obj["spec"]["replicas"] == 1


def test_scale_subresource_is_an_autoscaling_v1_scale(custom):
    custom.create_namespaced_custom_object("apps", "v1", "ns", "deployments", {
        "metadata": {"name": "d"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d", "tier": "web"}}},
        "status": {"replicas": 3}})
    scale = custom.get_namespaced_custom_object_scale("apps", "v1", "ns", "deployments", "d")
    assert scale["apiVersion"] == "autoscaling/v1" and scale["kind"] == "Scale"
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"] == {"replicas": 3, "selector": "app=d,tier=web"}
    assert "template" not in str(scale) and "matchLabels" not in str(scale)
    out = custom.patch_namespaced_custom_object_scale("apps", "v1", "ns", "deployments", "d",
                                                     {"spec": {"replicas": 7}})
    assert out["kind"] == "Scale" and out["spec"]["replicas"] == 7
    d = custom.get_namespaced_custom_object("apps", "v1", "ns", "deployments", "d")
    assert d["spec"]["replicas"] == 7 and d["metadata"]["generation"] == 2
    scale_v1 = client.AppsV1Api(custom.api_client).read_namespaced_deployment_scale("d", "ns")
    assert scale_v1.spec.replicas == 7 and scale_v1.status.selector == "app=d,tier=web"


def test_list_and_watch_from_resource_version(custom):
    widget(custom, name="a")
    listing = custom.list_namespaced_custom_object(G, V, "ns", P)
    rv = listing["metadata"]["resourceVersion"]
    assert rv == "1" and [o["metadata"]["name"] for o in listing["items"]] == ["a"]
    widget(custom, name="b")
    custom.delete_namespaced_custom_object(G, V, "ns", P, "a")
    seen = [(e["type"], e["raw_object"]["metadata"]["name"])
            for e in watch.Watch().stream(custom.list_namespaced_custom_object, G, V, "ns", P,
                                          resource_version=rv, timeout_seconds=1)]
    assert seen == [("ADDED", "b"), ("DELETED", "a")], "only changes after rv, no replay as ADDED"


def test_watch_from_compacted_version_is_410_gone(emu, custom):
    widget(custom, name="a")
    widget(custom, name="b")
    emu.call(emu.emulator.compact)
    with pytest.raises(ApiException) as exc:
        list(watch.Watch().stream(custom.list_namespaced_custom_object, G, V, "ns", P,
                                  resource_version="1", timeout_seconds=1))
    assert exc.value.status == 410
    # the current version is still fine
    assert list(watch.Watch().stream(custom.list_namespaced_custom_object, G, V, "ns", P,
                                     resource_version="2", timeout_seconds=1)) == []


def test_drop_watches_ends_open_streams(emu, custom):
    widget(custom, name="a")
    w = watch.Watch()
    stream = w.stream(custom.list_namespaced_custom_object, G, V, "ns", P,
                      resource_version="1", timeout_seconds=60)
    widget(custom, name="b")
    assert next(stream)["raw_object"]["metadata"]["name"] == "b"
    wait_for(lambda: emu.emulator.watch_count == 1)
    emu.call(emu.emulator.drop_watches)
    assert list(stream) == [], "the stream ended long before its 60 s timeout"


def test_interfere_bumps_the_object_before_a_matching_request(emu, custom):
    widget(custom)
    emu.call(emu.emulator.interfere, lambda r: r.method.value == "PATCH")
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(G, V, "ns", P, "w", {"metadata": {"resourceVersion": "1"}})
    assert exc.value.status == 409
    custom.patch_namespaced_custom_object(G, V, "ns", P, "w", {"metadata": {"resourceVersion": "2"}})


def test_user_reactions_still_win(emu, custom):
    widget(custom)
    emu.call(lambda: emu.emulator["get", f"/apis/{G}/{V}/namespaces/ns/{P}/w"] << 418)
    with pytest.raises(ApiException) as exc:
        custom.get_namespaced_custom_object(G, V, "ns", P, "w")
    assert exc.value.status == 418
