"""The ``scale`` subresource as an :class:`scaler.actuator.Actuator`.

Works for any workload kind that serves ``/scale`` (Deployment, StatefulSet,
ReplicaSet, ReplicationController, or a custom resource with a scale
subresource). Like the HPA it reads and writes ``spec.replicas`` of the
``autoscaling/v1`` Scale object, and it writes only when the count differs.

>>> split_api_version("apps/v1"), split_api_version("v1")
(('apps', 'v1'), ('', 'v1'))
>>> KNOWN_PLURALS[("apps", "StatefulSet")]
'statefulsets'
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from scaler.spec import ScalerSpec, TargetRef

log = logging.getLogger(__name__)

#: kinds with a ``scale`` subresource that need no discovery
KNOWN_PLURALS: dict[tuple[str, str], str] = {
    ("apps", "Deployment"): "deployments",
    ("apps", "StatefulSet"): "statefulsets",
    ("apps", "ReplicaSet"): "replicasets",
    ("", "ReplicationController"): "replicationcontrollers",
}


class NotLeaderError(RuntimeError):
    """Raised before a write when this controller does not hold the Lease."""


class TargetResolutionError(ValueError):
    """The ``scaleTargetRef`` names a kind the API server does not serve with ``/scale``."""


def split_api_version(api_version: str) -> tuple[str, str]:
    """``"apps/v1"`` -> ``("apps", "v1")``; the core group is ``""``."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


class KubeActuator:
    """Reads and patches ``<target>/scale`` through the official client.

    ``guard`` is called before every write and must raise (e.g.
    :class:`NotLeaderError`) when this process may not act.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        guard: Callable[[], None] | None = None,
        request_timeout: float = 10.0,
    ) -> None:
        self.api_client = api_client
        self.guard = guard
        self.request_timeout = request_timeout
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._plurals: dict[tuple[str, str, str], str] = {}
        self._last_read: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- resolution -------------------------------------------------------------
    def resolve(self, target: TargetRef) -> tuple[str, str, str]:
        """(group, version, plural) of a target kind; discovery for unknown kinds."""
        group, version = split_api_version(target.api_version)
        key = (group, version, target.kind)
        with self._lock:
            if key in self._plurals:
                return group, version, self._plurals[key]
        plural = KNOWN_PLURALS.get((group, target.kind))
        if plural is None:
            plural = self._discover(group, version, target.kind)
        with self._lock:
            self._plurals[key] = plural
        return group, version, plural

    def _discover(self, group: str, version: str, kind: str) -> str:
        try:
            if group:
                listing = self._custom.get_api_resources(
                    group, version, _request_timeout=self.request_timeout
                )
            else:
                listing = self._core.get_api_resources(_request_timeout=self.request_timeout)
        except (ApiException, ValueError) as exc:  # ValueError: a malformed discovery answer
            raise TargetResolutionError(f"cannot discover {group or 'core'}/{version}: {exc}") from exc
        names = {r.name for r in listing.resources or []}
        for r in listing.resources or []:
            if r.kind == kind and "/" not in r.name and f"{r.name}/scale" in names:
                return str(r.name)
        raise TargetResolutionError(
            f"{kind} in {group + '/' if group else ''}{version} is not served with a scale subresource"
        )

    # -- scale subresource ------------------------------------------------------
    def get_scale(self, spec: ScalerSpec) -> dict[str, Any]:
        """The target's ``autoscaling/v1`` Scale as a dict (ApiException 404 if missing)."""
        group, version, plural = self.resolve(spec.target)
        if not group:
            scale = self._core.read_namespaced_replication_controller_scale(
                spec.target.name, spec.namespace, _request_timeout=self.request_timeout
            )
            return dict(self.api_client.sanitize_for_serialization(scale))
        return dict(
            self._custom.get_namespaced_custom_object_scale(
                group, version, spec.namespace, plural, spec.target.name,
                _request_timeout=self.request_timeout,
            )
        )

    def current_replicas(self, spec: ScalerSpec, now: float) -> int:
        """Provisioned replicas: ``spec.replicas`` of the Scale (ready + starting)."""
        scale = self.get_scale(spec)
        replicas = int((scale.get("spec") or {}).get("replicas") or 0)
        with self._lock:
            self._last_read[spec.key] = replicas
        return replicas

    def scale(self, spec: ScalerSpec, replicas: int, now: float) -> None:
        """Merge-patch ``spec.replicas`` of the Scale, unless it already has that count."""
        with self._lock:
            known = self._last_read.get(spec.key)
        if known == replicas:
            return
        if self.guard is not None:
            self.guard()
        group, version, plural = self.resolve(spec.target)
        body = {"spec": {"replicas": int(replicas)}}
        log.info("scaling %s %s/%s to %d", spec.target.kind, spec.namespace, spec.target.name, replicas)
        if not group:
            self._core.patch_namespaced_replication_controller_scale(
                spec.target.name, spec.namespace, body, _request_timeout=self.request_timeout
            )
        else:
            self._custom.patch_namespaced_custom_object_scale(
                group, version, spec.namespace, plural, spec.target.name, body,
                _request_timeout=self.request_timeout,
            )
        with self._lock:
            self._last_read[spec.key] = int(replicas)

    def forget(self, key: str) -> None:
        with self._lock:
            self._last_read.pop(key, None)
