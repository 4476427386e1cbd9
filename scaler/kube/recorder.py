"""Status and Events of ``PredictiveScaler`` objects.

- status is written with a JSON merge patch on ``/status`` carrying the
  object's ``resourceVersion`` (compare-and-swap: a concurrent writer causes
  409, and the recorder re-reads and retries instead of clobbering it), and
  only when something changed;
- Events are ``core/v1`` Events on the object; failing to record one is
  logged, never raised.

``guard`` is called before every write and raises (``NotLeaderError``) when
this process may not act.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from scaler.kube.status import merge_conditions, rfc3339
from scaler.kube.targets import COMPONENT, GROUP, PLURAL, VERSION, Target
from scaler.spec import KIND

log = logging.getLogger(__name__)

#: status patches tried before giving up on a target until its next reconcile
MAX_ATTEMPTS = 5


class Recorder:
    """Writes status (CAS, retried on 409) and Events through the official client."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        identity: str,
        guard: Callable[[], None],
        clock: Callable[[], float] = time.time,
        request_timeout: float = 10.0,
    ) -> None:
        self.identity = identity
        self.guard = guard
        self.clock = clock
        self.request_timeout = request_timeout
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)

    def write_status(
        self, target: Target, fields: Mapping[str, Any], conditions: Sequence[Mapping[str, str]]
    ) -> None:
        """Merge-patch ``/status`` with the object's resourceVersion; re-read and retry on 409."""
        for _attempt in range(MAX_ATTEMPTS):
            obj = target.obj
            if obj is None:
                return
            old = obj.get("status") or {}
            status = dict(fields)
            status["conditions"] = merge_conditions(old.get("conditions"), conditions, rfc3339(self.clock()))
            if all(old.get(k) == v for k, v in status.items()):
                return  # nothing changed: no write
            body = {
                "metadata": {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion")},
                "status": status,
            }
            self.guard()
            try:
                new = self._custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, target.namespace, PLURAL, target.name, body,
                    field_manager=COMPONENT, _request_timeout=self.request_timeout,
                )
            except ApiException as exc:
                if exc.status == 409:
                    log.info("%s: status conflict, re-reading and retrying", target.key)
                    self.refetch(target)
                    continue
                if exc.status == 404:
                    return  # deleted meanwhile; the watch will tell
                raise
            target.obj = dict(new)
            return
        log.warning("%s: status not written after repeated conflicts", target.key)

    def refetch(self, target: Target) -> None:
        """Re-read the object (None when it is gone)."""
        try:
            obj = self._custom.get_namespaced_custom_object(
                GROUP, VERSION, target.namespace, PLURAL, target.name,
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            if exc.status == 404:
                target.obj = None
                return
            raise
        target.obj = dict(obj)

    def event(self, target: Target, type_: str, reason: str, message: str) -> None:
        """Create a ``core/v1`` Event on the PredictiveScaler (failures are logged, not raised)."""
        obj = target.obj
        if obj is None:
            return
        self.guard()
        meta = obj.get("metadata") or {}
        ns, name = target.namespace, target.name
        ts = rfc3339(self.clock())
        body = {
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": ns},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": name,
                "namespace": ns,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": str(reason),
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": f"{GROUP}/controller",
            "reportingInstance": self.identity,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        log.info("%s: %s %s: %s", target.key, type_, reason, message)
        try:
            self._core.create_namespaced_event(ns, body, _request_timeout=self.request_timeout)
        except (ApiException, OSError, ValueError) as exc:
            log.warning("%s: could not record Event %s: %s", target.key, reason, exc)
