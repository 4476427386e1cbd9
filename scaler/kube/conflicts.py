"""Another autoscaler on the same workload (HPA ``autoscaling/v2``, KEDA ``ScaledObject``)
blocks scaling: two controllers writing one ``replicas`` field fight forever.

>>> from scaler.spec import ScalerSpec, TargetRef
>>> spec = ScalerSpec("web", "web/rps", 100, 1, 5, namespace="shop",
...                   target=TargetRef("apps/v1", "Deployment", "web"))
>>> same_target({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, spec)
True
>>> same_target({"name": "web"}, spec, default_kind="Deployment")  # KEDA's default kind
True
>>> same_target({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web"}, spec)
False
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from scaler.kube.actuator import split_api_version
from scaler.spec import ScalerSpec

#: other autoscalers whose presence on the same workload blocks scaling
CONFLICTING = (
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ("keda.sh", "v1alpha1", "scaledobjects", "ScaledObject"),
)


def same_target(ref: Mapping[str, Any], spec: ScalerSpec, default_kind: str | None = None) -> bool:
    """Does another autoscaler's ``scaleTargetRef`` name the spec's workload?"""
    kind = ref.get("kind") or default_kind
    if kind != spec.target.kind or ref.get("name") != spec.target.name:
        return False
    if not ref.get("apiVersion"):
        return True
    return split_api_version(str(ref["apiVersion"]))[0] == split_api_version(spec.target.api_version)[0]


class ConflictCheck:
    """Finds another autoscaler of a spec's target; lists are cached ``ttl`` seconds per namespace."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        ttl: float = 30.0,
        request_timeout: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.request_timeout = request_timeout
        self.monotonic = monotonic
        self._custom = client.CustomObjectsApi(api_client)
        self._cache: dict[tuple[str, str, str, str], tuple[float, list[dict[str, Any]]]] = {}

    def find(self, spec: ScalerSpec) -> str | None:
        """A sentence naming the other autoscaler, or None when there is none."""
        t = spec.target
        for group, version, plural, kind in CONFLICTING:
            default_kind = "Deployment" if plural == "scaledobjects" else None
            for item in self._list(group, version, plural, spec.namespace):
                ref = (item.get("spec") or {}).get("scaleTargetRef") or {}
                if same_target(ref, spec, default_kind):
                    name = (item.get("metadata") or {}).get("name")
                    return (
                        f"{kind} {spec.namespace}/{name} also scales {t.kind} {t.name}; "
                        "not scaling (remove one of the two autoscalers)"
                    )
        return None

    def _list(self, group: str, version: str, plural: str, namespace: str) -> list[dict[str, Any]]:
        cache_key = (group, version, plural, namespace)
        hit = self._cache.get(cache_key)
        if hit is not None and self.monotonic() - hit[0] < self.ttl:
            return hit[1]
        try:
            resp = self._custom.list_namespaced_custom_object(
                group, version, namespace, plural, _request_timeout=self.request_timeout
            )
            items = list(resp.get("items") or [])
        except ApiException as exc:
            if exc.status != 404:  # 404: the API (e.g. KEDA) is not installed
                raise
            items = []
        self._cache[cache_key] = (self.monotonic(), items)
        return items
