"""Objects and builders shared by the operator tests (seeded through the real client)."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

from kube_emulator import EmulatorThread, wait_for
from kubernetes import client

from detectors.forecast import Forecast, ForecastPoint
from scaler.decision import Decision
from scaler.kube import GROUP, PLURAL, VERSION, Operator
from scaler.policy import Observation
from scaler.reconciling import Reconciling

CONTROLLER_UA = "foresight-controller/test"
LEASE_NS = "foresight-system"
_ids = itertools.count()


def workload(api: Any, kind: str, ns: str, name: str, replicas: int) -> None:
    plural = {"Deployment": "deployments", "StatefulSet": "statefulsets"}[kind]
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "apps", "v1", ns, plural,
        {
            "apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
        },
    )


def replicas(api: Any, kind: str, ns: str, name: str) -> int:
    plural = {"Deployment": "deployments", "StatefulSet": "statefulsets"}[kind]
    scale = client.CustomObjectsApi(api).get_namespaced_custom_object_scale("apps", "v1", ns, plural, name)
    return int(scale["spec"]["replicas"])


def scaler_manifest(ns: str, name: str, *, target: str | None = None, kind: str = "Deployment",
                    mode: str = "Active", **spec: Any) -> dict[str, Any]:
    body = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target or name},
        "series": f"{name}/requests",
        "capacityPerReplica": 100,
        "minReplicas": 2,
        "maxReplicas": 20,
        "leadTimeSeconds": 180,
        "mode": mode,
        "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0,
                                 "policies": [{"type": "Percent", "value": 1000, "periodSeconds": 15}]}},
    }
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PredictiveScaler",
            "metadata": {"name": name, "namespace": ns}, "spec": body}


def create_scaler(api: Any, manifest: dict[str, Any]) -> None:
    ns = manifest["metadata"]["namespace"]
    client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest)


def get_scaler(api: Any, ns: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in (obj.get("status") or {}).get("conditions", [])}


def events(api: Any, ns: str, name: str) -> list[tuple[str, str]]:
    """(type, reason) of the Events recorded on PredictiveScaler ``name``."""
    raw = _list_events(api, ns)
    return [(e["type"], e["reason"]) for e in raw
            if e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] == "PredictiveScaler"]


def _list_events(api: Any, ns: str) -> list[dict[str, Any]]:
    resp = client.CoreV1Api(api).list_namespaced_event(ns, _preload_content=False)
    return json.loads(resp.data)["items"]


def forecast(series: str, now: float, upper: float, warm: bool = True) -> Forecast:
    return Forecast(series, issued=now, step=60.0, coverage=0.9, model="test", warm=warm,
                    points=tuple(ForecastPoint(now + 60 * i, upper * 0.8, upper * 0.6, upper)
                                 for i in range(1, 6)))


def observation(now: float, value: float) -> Observation:
    return Observation(now, value)


def operator(emu: EmulatorThread, *, ua: str = CONTROLLER_UA, sink: list | None = None, **kw: Any) -> Operator:
    """An operator with short timings, talking to the emulator over HTTP."""
    api = emu.api_client(user_agent=ua)
    options: dict[str, Any] = dict(
        identity=f"{ua}-{next(_ids)}",
        lease_namespace=LEASE_NS,
        lease_duration=4.0,  # short, yet with room for a loaded CI machine
        renew_deadline=3.0,
        retry_period=0.2,
        watch_timeout=2,
        request_timeout=5.0,
        conflict_ttl=0.0,
        on_decision=(sink.append if sink is not None else None),
    )
    options.update(kw)
    return Operator(api, **options)


@contextlib.contextmanager
def leading(op: Operator) -> Iterator[Operator]:
    """``op`` started and holding the Lease (or running without election); stopped after."""
    op.start()
    try:
        wait_for(op.is_leader)
        yield op
    finally:
        op.stop()


def drive(op: Reconciling, f: Forecast, obs: Observation | None, now: float) -> list[Decision]:
    """One forecast read from Kafka, as ``streams.controller.ControllerLoop`` hands it over."""
    op.observe(f, obs)
    return op.reconcile_series(f.series, now)


def controller_requests(emu: EmulatorThread, ua: str = CONTROLLER_UA) -> list[tuple[str, str, dict[str, str]]]:
    return [(r.method.value, r.url.path, dict(r.params)) for r in emu.requests()
            if r.headers.get("User-Agent") == ua]


def now() -> float:
    return time.time()
