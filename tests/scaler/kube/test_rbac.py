"""deploy/rbac.yaml against behaviour: every request the controller made is allowed,
and every rule in the ClusterRole / Role was needed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from kube_emulator import SERVED, wait_for
from kube_fixtures import (
    create_scaler,
    drive,
    forecast,
    get_scaler,
    now,
    observation,
    operator,
    scaler_manifest,
    workload,
)
from kubernetes import client

DISCOVERY = re.compile(r"/api(/v1)?|/apis(/[^/]+){0,2}")
RBAC = Path(__file__).resolve().parents[3] / "deploy" / "rbac.yaml"
LEASE_NS = "foresight-system"


class Attrs(NamedTuple):
    verb: str
    group: str
    resource: str  # "plural" or "plural/subresource"
    namespace: str | None
    name: str | None


def request_attrs(method: str, path: str, params: dict[str, str]) -> Attrs | None:
    """The authorizer's view of one request (None for a non-resource URL).

    >>> request_attrs("GET", "/apis/apps/v1/namespaces/shop/deployments/web/scale", {})
    Attrs(verb='get', group='apps', resource='deployments/scale', namespace='shop', name='web')
    >>> request_attrs("GET", "/apis/foresight.dev/v1alpha1/predictivescalers", {"watch": "true"}).verb
    'watch'
    >>> request_attrs("POST", "/api/v1/namespaces/shop/events", {})
    Attrs(verb='create', group='', resource='events', namespace='shop', name=None)
    """
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), "/".join(rest[2:])
    verb = {
        "GET": "watch" if params.get("watch") in ("true", "1") else ("get" if name else "list"),
        "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete",
    }[method]
    return Attrs(verb, group, f"{plural}/{sub}" if sub else plural, namespace, name)


def load_rules(account: str = "foresight-controller") -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """ClusterRole rules bound cluster-wide, and Role rules per namespace, for one service
    account (the controller's; the ingest's is checked in tests/streams/test_ingest_kube.py)."""
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    roles = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")): d for d in docs
             if d["kind"] in ("ClusterRole", "Role")}
    cluster: list[dict[str, Any]] = []
    namespaced: dict[str, list[dict[str, Any]]] = {}
    for b in docs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if {"kind": "ServiceAccount", "name": account, "namespace": LEASE_NS} not in b["subjects"]:
            continue
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace")
        role = roles[(ref["kind"], ref["name"], None if ref["kind"] == "ClusterRole" else ns)]
        if b["kind"] == "ClusterRoleBinding":
            cluster += role["rules"]
        else:
            namespaced.setdefault(ns, []).extend(role["rules"])
    return cluster, namespaced


def matches(rule: dict[str, Any], a: Attrs) -> bool:
    return (
        a.group in rule["apiGroups"] and a.resource in rule["resources"] and a.verb in rule["verbs"]
        and (not rule.get("resourceNames") or (a.name is not None and a.name in rule["resourceNames"]))
    )


def check(requests: list[tuple[str, str, dict[str, str]]],
          account: str = "foresight-controller") -> set[tuple[int, str, str, str]]:
    """Assert every request is allowed; return the (rule, group, resource, verb) grants used."""
    cluster, namespaced = load_rules(account)
    rules = [("cluster", r, None) for r in cluster] + [
        ("ns", r, ns) for ns, rs in namespaced.items() for r in rs]
    used = set()
    for method, path, params in requests:
        a = request_attrs(method, path, params)
        if a is None:
            # API discovery (resolving a custom target kind): granted to every authenticated
            # user by the built-in system:discovery ClusterRole, not by ours
            assert method == "GET" and DISCOVERY.fullmatch(path), f"non-resource request {method} {path}"
            continue
        hits = [(i, r) for i, (scope, r, ns) in enumerate(rules)
                if matches(r, a) and (scope == "cluster" or a.namespace == ns)]
        assert hits, f"forbidden by deploy/rbac.yaml: {a}"
        for i, _ in hits:
            used.add((i, a.group, a.resource, a.verb))
    return used


def all_grants(account: str = "foresight-controller") -> set[tuple[int, str, str, str]]:
    cluster, namespaced = load_rules(account)
    rules = cluster + [r for rs in namespaced.values() for r in rs]
    return {(i, g, res, v) for i, r in enumerate(rules)
            for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}


@pytest.mark.integration
def test_controller_tour_every_request_allowed_every_rule_used(emu, setup_api):
    """A run that exercises every code path that talks to the API server."""
    workload(setup_api, "Deployment", "shop", "web", 2)
    workload(setup_api, "StatefulSet", "shop", "db", 1)
    workload(setup_api, "Deployment", "shop", "legacy", 3)
    client.CustomObjectsApi(setup_api).create_namespaced_custom_object(
        "autoscaling", "v2", "shop", "horizontalpodautoscalers", {
            "metadata": {"name": "legacy"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "legacy"},
                     "maxReplicas": 5}})
    ua_a, ua_b = "foresight-controller/tour-a", "foresight-controller/tour-b"
    a, b = operator(emu, ua=ua_a), operator(emu, ua=ua_b)
    a.start()
    wait_for(a.is_leader)
    b.start()
    try:
        for m in (scaler_manifest("shop", "web"), scaler_manifest("shop", "db", kind="StatefulSet"),
                  scaler_manifest("shop", "legacy")):
            create_scaler(setup_api, m)
        wait_for(lambda: len(a.specs) == 3)
        wait_for(lambda: (get_scaler(setup_api, "shop", "web").get("status") or {}).get("reason"))
        emu.call(emu.emulator.interfere,
                 lambda r: r.method.value == "PATCH" and r.subresource == "status" and r.name == "web")
        t = now()
        for series in ("web/requests", "db/requests", "legacy/requests"):
            drive(a, forecast(series, t, 900), observation(t, 100), t)
        wait_for(lambda: b.elector.holder == a.identity)
        a.stop()  # release: update
        wait_for(b.is_leader)
    finally:
        a.stop()
        b.stop()
    reqs = [(r.method.value, r.url.path, dict(r.params)) for r in emu.requests()
            if r.headers.get("User-Agent", "").startswith("foresight-controller")]
    used = check(reqs)
    unused = all_grants() - used
    assert not unused, f"rules in deploy/rbac.yaml the controller never needed: {sorted(unused)}"


def test_every_controller_request_in_this_session_is_allowed():
    """Everything the controller did in the other emulator tests of this run is allowed too."""
    reqs = [(m, p, q) for ua, m, p, q in SERVED if ua.startswith("foresight-controller")]
    assert reqs, "run with the controller tests (they record what they served)"
    check(reqs)
