"""The ``PredictiveScaler`` operator: watch the CRs, reconcile, write status and Events.

Wiring (``foresight scaler --kube`` in ``streams/``)::

    api = kubernetes.client.ApiClient()      # after load_incluster_config() / load_kube_config()
    op = Operator(api, namespaces=None, lease_namespace="foresight-system",
                  health_port=8000, decision_sink=publish_decision)
    op.start()        # initial list (fails fast on RBAC/CRD errors), watch + Lease threads
    op.handle_forecast(forecast, observation, now)   # per forecast read from Kafka
    op.resync(now)                                   # every loop tick; cheap when nothing is due
    op.stop()         # stop acting, stop watching, release the Lease

The operator also offers the :class:`scaler.reconcile.Reconciler` surface
(``observe``, ``reconcile_series``, ``reconcile``, ``specs``, ``last``,
``on_decision``), so ``streams.controller.ControllerLoop`` can drive it as is.

Threads: one watch per scope (all namespaces, or one per configured
namespace) and the Lease renewer. ``handle_forecast``/``resync`` run on the
caller's thread and block on API calls (run them off an asyncio loop). A lock
serialises reconciles, so the methods may be called from any thread.

Behaviour, in HPA terms:

- the scale subresource is patched only when the count differs, only in
  ``Active`` mode, and only while this process holds the Lease (checked right
  before every write, as are status patches and Events);
- another autoscaler (HPA ``autoscaling/v2`` or KEDA ``ScaledObject``) on the
  same workload → ``ConflictingAutoscaler`` condition + Warning Event, no
  scaling; invalid spec → ``InvalidSpec``; target missing → ``FailedGetScale``;
  all three are conditions and Events (on transition), never exceptions;
- status is written with a JSON merge patch on ``/status`` carrying the
  object's ``resourceVersion`` (so a concurrent writer causes 409, and the
  controller re-reads and retries instead of clobbering it);
- Events (``core/v1``): ``SuccessfulRescale`` on every applied change,
  ``WouldRescale`` when a ForecastOnly recommendation changes, a Warning named
  after the fallback (``NoForecast``, ``StaleForecast``, ``ColdForecast``,
  ``AnomalousSeries``) whenever a fallback starts, and Warnings for problems.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from detectors.forecast import Forecast
from scaler.decision import Decision, Reason
from scaler.kube.actuator import (
    KubeActuator,
    NotLeaderError,
    TargetResolutionError,
    split_api_version,
)
from scaler.kube.health import HealthServer
from scaler.kube.lease import LeaderElector
from scaler.kube.status import (
    decision_status,
    merge_conditions,
    problem_status,
    rfc3339,
)
from scaler.policy import Observation
from scaler.reconcile import Reconciler
from scaler.spec import KIND, ScalerSpec, SpecError

log = logging.getLogger(__name__)

GROUP = "foresight.dev"
VERSION = "v1alpha1"
PLURAL = "predictivescalers"
COMPONENT = "foresight-controller"

#: other autoscalers whose presence on the same workload blocks scaling
CONFLICTING = (
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ("keda.sh", "v1alpha1", "scaledobjects", "ScaledObject"),
)


def default_identity() -> str:
    """``<hostname>-<pid>-<random>``: unique per process (the pod name in a cluster)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"


def _same_target(ref: Mapping[str, Any], spec: ScalerSpec, default_kind: str | None = None) -> bool:
    """Does another autoscaler's ``scaleTargetRef`` name the spec's workload?"""
    kind = ref.get("kind") or default_kind
    if kind != spec.target.kind or ref.get("name") != spec.target.name:
        return False
    if not ref.get("apiVersion"):
        return True
    return split_api_version(str(ref["apiVersion"]))[0] == split_api_version(spec.target.api_version)[0]


class Operator:
    """Reconciles every ``PredictiveScaler`` in scope against the Kubernetes API.

    Parameters
    ----------
    api_client: a configured ``kubernetes.client.ApiClient``.
    namespaces: namespaces to watch; ``None`` watches all namespaces.
    identity: Lease holder identity (default: hostname-pid-random).
    lease_name, lease_namespace: the ``coordination.k8s.io/v1`` Lease.
    leader_election: False only for a single controller (tests, local use).
    lease_duration, renew_deadline, retry_period: seconds, as in client-go.
    resync_seconds: reconcile every target at least this often (event time).
    conflict_ttl: seconds to cache the HPA / ScaledObject lists per namespace.
    watch_timeout: server-side timeout of one watch request (seconds).
    request_timeout: seconds for one API request.
    decision_sink: called with every Decision (e.g. publish to Kafka).
    clock: wall clock for timestamps written to Kubernetes.
    monotonic: monotonic clock for the Lease and caches.
    health_port, health_host: serve /healthz, /readyz (and /metrics with
        ``metrics_registry``) while started; port 0 picks a free port.
    mode_override: ``"ForecastOnly"`` makes every scaler a dry run, whatever its spec
        says (``foresight scaler --kube --mode ForecastOnly``).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        namespaces: Sequence[str] | None = None,
        identity: str | None = None,
        lease_name: str = "foresight-controller",
        lease_namespace: str = "foresight-system",
        leader_election: bool = True,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        resync_seconds: float = 60.0,
        conflict_ttl: float = 30.0,
        watch_timeout: int = 300,
        request_timeout: float = 10.0,
        decision_sink: Callable[[Decision], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        health_port: int | None = None,
        health_host: str = "0.0.0.0",
        metrics_registry: Any | None = None,
        mode_override: str | None = None,
    ) -> None:
        if mode_override not in (None, "", "Active", "ForecastOnly"):
            raise ValueError(f"mode_override must be Active or ForecastOnly, not {mode_override!r}")
        self.api_client = api_client
        self.mode_override = mode_override or None
        self.namespaces = tuple(namespaces) if namespaces else None
        self.identity = identity or default_identity()
        self.resync_seconds = resync_seconds
        self.conflict_ttl = conflict_ttl
        self.watch_timeout = int(watch_timeout)
        self.request_timeout = request_timeout
        self.decision_sink = decision_sink
        self.clock = clock
        self.monotonic = monotonic
        self.elector: LeaderElector | None = (
            LeaderElector(
                api_client,
                identity=self.identity,
                name=lease_name,
                namespace=lease_namespace,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
                clock=monotonic,
                on_started_leading=self._on_started_leading,
                request_timeout=request_timeout,
            )
            if leader_election
            else None
        )
        self.actuator = KubeActuator(api_client, guard=self._check_leader, request_timeout=request_timeout)
        self.reconciler = Reconciler(self.actuator)
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: dict[str | None, watch.Watch] = {}
        # per PredictiveScaler (key "namespace/name")
        self._objects: dict[str, dict[str, Any]] = {}
        self._spec_seen: dict[str, Any] = {}
        self._invalid: dict[str, str] = {}
        self._problem: dict[str, str] = {}
        self._fallback: dict[str, Reason | None] = {}
        self._recommended: dict[str, int] = {}
        self._last_reconciled: dict[str, float] = {}
        self._scope_keys: dict[str | None, set[str]] = {}
        self._conflict_cache: dict[tuple[str, str, str, str], tuple[float, list[dict[str, Any]]]] = {}
        self._now: float | None = None
        self._resync_all = False
        self._listed = False
        self.health: HealthServer | None = (
            HealthServer(self.healthy, self.ready, health_host, health_port, metrics_registry)
            if health_port is not None
            else None
        )

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """List every PredictiveScaler in scope, then watch them and run the Lease."""
        self._stop.clear()
        if self.health is not None:
            self.health.start()
        if self.elector is not None:
            self.elector.start()
        for scope in self.namespaces or (None,):
            rv = self._relist(scope)  # synchronous: RBAC or CRD problems fail here
            t = threading.Thread(
                target=self._watch_loop, args=(scope, rv), name=f"watch-{scope or 'all'}", daemon=True
            )
            self._threads.append(t)
            t.start()
        self._listed = True

    def stop(self, release: bool = True) -> None:
        """Stop acting at once, stop the watches, then release the Lease."""
        self._stop.set()
        for w in list(self._watches.values()):
            w.stop()
            resp = getattr(w, "_resp", None)  # unblock a watch waiting for the next event
            if resp is not None:
                try:
                    resp.close()
                except Exception:  # noqa: BLE001 - best effort while shutting down
                    pass
        for t in self._threads:
            t.join(timeout=self.watch_timeout + self.request_timeout)
        self._threads.clear()
        if self.elector is not None:
            self.elector.stop(release=release)
        if self.health is not None:
            self.health.stop()

    def healthy(self) -> bool:
        """Liveness: not stopped and every watch thread alive."""
        return not self._stop.is_set() and all(t.is_alive() for t in self._threads)

    def ready(self) -> bool:
        """Readiness: the initial list is loaded and the process is healthy."""
        return self._listed and self.healthy()

    def is_leader(self) -> bool:
        """True when this process may act (holds the Lease, or runs without election)."""
        if self._stop.is_set():
            return False
        return self.elector is None or self.elector.is_leader()

    def _check_leader(self) -> None:
        if self._stop.is_set():
            raise NotLeaderError("operator is stopping")
        if self.elector is not None:
            self.elector.check()

    def _on_started_leading(self) -> None:
        self._resync_all = True  # the next resync refreshes every target

    # -- inputs from the streams layer -------------------------------------------------
    def handle_forecast(
        self, forecast: Forecast, observation: Observation | None, now: float
    ) -> list[Decision]:
        """Record a forecast (and the latest observation) and reconcile its targets."""
        with self._lock:
            self._advance(now)
            self.reconciler.observe(forecast, observation, series=forecast.series)
            return self._reconcile_series(forecast.series, now)

    def handle_observation(self, series: str, observation: Observation, now: float) -> list[Decision]:
        """Record an observation without a new forecast and reconcile its targets."""
        with self._lock:
            self._advance(now)
            self.reconciler.observe(None, observation, series=series)
            return self._reconcile_series(series, now)

    def resync(self, now: float | None = None) -> list[Decision]:
        """Reconcile every target not reconciled for ``resync_seconds`` (event time)."""
        with self._lock:
            if now is None:
                now = self._now if self._now is not None else self.clock()
            self._advance(now)
            if not self.is_leader():
                return []
            if self._resync_all:
                self._resync_all = False
                self._last_reconciled.clear()
            for key in list(self._invalid):
                if self._problem.get(key) != "InvalidSpec":
                    self._report_problem(key, "InvalidSpec", self._invalid[key])
            out = []
            for key in list(self.reconciler.specs):
                last = self._last_reconciled.get(key)
                if last is None or now - last >= self.resync_seconds:
                    d = self._reconcile(key, now)
                    if d is not None:
                        out.append(d)
            return out

    # -- the Reconciler interface, so streams.controller.ControllerLoop can drive it -----
    @property
    def specs(self) -> dict[str, ScalerSpec]:
        """Valid specs by key (a snapshot)."""
        with self._lock:
            return dict(self.reconciler.specs)

    @property
    def last(self) -> dict[str, Decision]:
        """The latest decision per target key (live mapping, like Reconciler.last)."""
        return self.reconciler.last

    @property
    def on_decision(self) -> Callable[[Decision], None] | None:
        """Alias of ``decision_sink`` (the name :class:`scaler.reconcile.Reconciler` uses)."""
        return self.decision_sink

    @on_decision.setter
    def on_decision(self, fn: Callable[[Decision], None] | None) -> None:
        self.decision_sink = fn

    def observe(
        self, forecast: Forecast | None, observation: Observation | None, series: str | None = None
    ) -> None:
        """Record the latest forecast and/or observation of a series (no reconcile)."""
        with self._lock:
            self.reconciler.observe(forecast, observation, series)

    def reconcile_series(self, series: str, now: float) -> list[Decision]:
        """Reconcile every target driven by ``series`` (nothing unless leader)."""
        with self._lock:
            self._advance(now)
            return self._reconcile_series(series, now)

    def reconcile(self, spec: ScalerSpec, now: float) -> Decision | None:
        """Reconcile one target (None unless leader, or when it could not be reconciled)."""
        with self._lock:
            self._advance(now)
            if not self.is_leader():
                return None
            return self._reconcile(spec.key, now)

    def reconcile_all(self, now: float) -> list[Decision]:
        """Reconcile every target now, due or not."""
        with self._lock:
            self._advance(now)
            if not self.is_leader():
                return []
            return [d for k in list(self.reconciler.specs) if (d := self._reconcile(k, now)) is not None]

    def decisions(self) -> dict[str, Decision]:
        """The latest decision per target key."""
        with self._lock:
            return dict(self.reconciler.last)

    def _advance(self, now: float) -> None:
        self._now = now if self._now is None else max(self._now, now)

    def _reconcile_series(self, series: str, now: float) -> list[Decision]:
        if not self.is_leader():
            return []
        keys = [k for k, s in self.reconciler.specs.items() if s.series == series]
        return [d for k in keys if (d := self._reconcile(k, now)) is not None]

    # -- reconcile -------------------------------------------------------------------
    def _reconcile(self, key: str, now: float) -> Decision | None:
        spec = self.reconciler.specs.get(key)
        if spec is None:
            return None
        self._last_reconciled[key] = now
        try:
            conflict = self._find_conflict(spec)
            if conflict is not None:
                current = self.actuator.current_replicas(spec, now)
                decision = Decision(
                    target=key, ts=now, current=current, desired=current,
                    reason=Reason.CONFLICT, message=conflict, mode=spec.mode,
                )
                self.reconciler.last[key] = decision
                self._report_problem(
                    key, Reason.CONFLICT.value, conflict,
                    {"currentReplicas": current, "desiredReplicas": current},
                )
                self._publish(decision)
                return decision
            self._seed_policy_state(key, now)
            decision = self.reconciler.reconcile(spec, now)
        except NotLeaderError:
            log.info("%s: not the leader any more, not acting", key)
            return None
        except TargetResolutionError as exc:
            self._report_problem(key, Reason.INVALID_SPEC.value, f"spec.scaleTargetRef: {exc}")
            return None
        except ApiException as exc:
            if exc.status == 404:
                t = spec.target
                self._report_problem(
                    key, "FailedGetScale",
                    f"the scale subresource of {t.kind} {spec.namespace}/{t.name} was not found",
                )
            else:
                self._report_problem(key, "FailedRescale", f"API error {exc.status}: {exc.reason}")
            return None
        except Exception as exc:  # noqa: BLE001 - one target must never stop the others
            log.exception("%s: reconcile failed", key)
            self._report_problem(key, "FailedRescale", f"{type(exc).__name__}: {exc}")
            return None
        try:
            self._after_decision(key, spec, decision)
        except NotLeaderError:
            log.info("%s: lost the lease before writing status", key)
        self._publish(decision)
        return decision

    def _seed_policy_state(self, key: str, now: float) -> None:
        """After a restart or a fail-over the policy has no memory; start it from the last
        recorded ``desiredReplicas`` so the scale-down stabilization window still holds."""
        state = self.reconciler.states.get(key)
        if state is None or state.recommendations:
            return
        desired = ((self._objects.get(key) or {}).get("status") or {}).get("desiredReplicas")
        if isinstance(desired, int) and desired > 0:
            # just before now: inside any scale-down window, outside a zero scale-up window
            self.reconciler.states[key] = replace(state, recommendations=((now - 1e-3, desired),))

    def _after_decision(self, key: str, spec: ScalerSpec, d: Decision) -> None:
        fallback = d.fallback
        last_scale_time = None
        if d.applied:
            last_scale_time = rfc3339(self.clock())
            self._event(
                key, "Normal", "SuccessfulRescale",
                f"New size: {d.desired}; reason: {d.reason.value}: {d.message}",
            )
        elif spec.mode != "Active" and d.desired != d.current and self._recommended.get(key) != d.desired:
            self._event(
                key, "Normal", "WouldRescale",
                f"ForecastOnly: would scale from {d.current} to {d.desired}; "
                f"reason: {d.reason.value}: {d.message}",
            )
        self._recommended[key] = d.desired
        if fallback is not None and self._fallback.get(key) != fallback:
            self._event(key, "Warning", fallback.value, d.message)
        self._fallback[key] = fallback
        self._problem.pop(key, None)
        obj = self._objects.get(key) or {}
        fields, conditions = decision_status(
            d, spec, fallback,
            last_scale_time=last_scale_time,
            observed_generation=(obj.get("metadata") or {}).get("generation"),
        )
        self._write_status(key, fields, conditions)

    def _report_problem(
        self, key: str, reason: str, message: str, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Condition + Warning Event (the Event only when the problem is new)."""
        try:
            if self._problem.get(key) != reason:
                self._event(key, "Warning", reason, message)
            self._problem[key] = reason
            obj = self._objects.get(key) or {}
            fields: dict[str, Any] = {
                "reason": reason,
                "message": message,
                "observedGeneration": (obj.get("metadata") or {}).get("generation"),
                **(extra or {}),
            }
            self._write_status(key, fields, problem_status(reason, message))
        except NotLeaderError:
            log.info("%s: lost the lease before reporting %s", key, reason)

    def _publish(self, decision: Decision) -> None:
        if self.decision_sink is None:
            return
        try:
            self.decision_sink(decision)
        except Exception:  # noqa: BLE001 - publishing must not break reconciling
            log.exception("decision sink failed for %s", decision.target)

    # -- other autoscalers -------------------------------------------------------------
    def _find_conflict(self, spec: ScalerSpec) -> str | None:
        t = spec.target
        for group, version, plural, kind in CONFLICTING:
            default_kind = "Deployment" if plural == "scaledobjects" else None
            for item in self._list_cached(group, version, plural, spec.namespace):
                ref = (item.get("spec") or {}).get("scaleTargetRef") or {}
                if _same_target(ref, spec, default_kind):
                    name = (item.get("metadata") or {}).get("name")
                    return (
                        f"{kind} {spec.namespace}/{name} also scales {t.kind} {t.name}; "
                        "not scaling (remove one of the two autoscalers)"
                    )
        return None

    def _list_cached(self, group: str, version: str, plural: str, namespace: str) -> list[dict[str, Any]]:
        cache_key = (group, version, plural, namespace)
        hit = self._conflict_cache.get(cache_key)
        if hit is not None and self.monotonic() - hit[0] < self.conflict_ttl:
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
        self._conflict_cache[cache_key] = (self.monotonic(), items)
        return items

    # -- writes --------------------------------------------------------------------
    def _write_status(self, key: str, fields: Mapping[str, Any], conditions: Sequence[Mapping[str, str]]) -> None:
        """Merge-patch ``/status`` with the object's resourceVersion; re-read and retry on 409."""
        ns, name = key.split("/", 1)
        for _attempt in range(5):
            obj = self._objects.get(key)
            if obj is None:
                return
            old = obj.get("status") or {}
            status = dict(fields)
            status["conditions"] = merge_conditions(
                old.get("conditions"), conditions, rfc3339(self.clock())
            )
            if all(old.get(k) == v for k, v in status.items()):
                return  # nothing changed: no write
            body = {
                "metadata": {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion")},
                "status": status,
            }
            self._check_leader()
            try:
                new = self._custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, ns, PLURAL, name, body,
                    field_manager=COMPONENT, _request_timeout=self.request_timeout,
                )
            except ApiException as exc:
                if exc.status == 409:
                    log.info("%s: status conflict, re-reading and retrying", key)
                    self._refetch(key)
                    continue
                if exc.status == 404:
                    return  # deleted meanwhile; the watch will tell
                raise
            self._objects[key] = dict(new)
            return
        log.warning("%s: status not written after repeated conflicts", key)

    def _refetch(self, key: str) -> None:
        ns, name = key.split("/", 1)
        try:
            obj = self._custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, name, _request_timeout=self.request_timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                self._objects.pop(key, None)
                return
            raise
        self._objects[key] = dict(obj)

    def _event(self, key: str, type_: str, reason: str, message: str) -> None:
        """Create a ``core/v1`` Event on the PredictiveScaler (failures are logged, not raised)."""
        obj = self._objects.get(key)
        if obj is None:
            return
        self._check_leader()
        meta = obj.get("metadata") or {}
        ns, name = key.split("/", 1)
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
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": f"{GROUP}/controller",
            "reportingInstance": self.identity,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        log.info("%s: %s %s: %s", key, type_, reason, message)
        try:
            self._core.create_namespaced_event(ns, body, _request_timeout=self.request_timeout)
        except (ApiException, OSError, ValueError) as exc:
            log.warning("%s: could not record Event %s: %s", key, reason, exc)

    # -- watching ------------------------------------------------------------------
    def _list_call(self, scope: str | None) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if scope is None:
            return self._custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        return self._custom.list_namespaced_custom_object, (GROUP, VERSION, scope, PLURAL)

    def _relist(self, scope: str | None) -> str | None:
        fn, args = self._list_call(scope)
        resp = fn(*args, _request_timeout=self.request_timeout)
        items: Iterable[dict[str, Any]] = resp.get("items") or []
        with self._lock:
            seen = set()
            for obj in items:
                seen.add(_key(obj))
                self._on_event("ADDED", obj, scope)
            for key in self._scope_keys.get(scope, set()) - seen:
                self._on_event("DELETED", self._objects.get(key) or {"metadata": {}}, scope, key)
            self._scope_keys[scope] = seen
        return (resp.get("metadata") or {}).get("resourceVersion")

    def _watch_loop(self, scope: str | None, rv: str | None) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._relist(scope)
                fn, args = self._list_call(scope)
                w = watch.Watch()
                self._watches[scope] = w
                for event in w.stream(
                    fn, *args,
                    resource_version=rv,
                    timeout_seconds=self.watch_timeout,
                    allow_watch_bookmarks=True,
                    _request_timeout=(self.request_timeout, self.watch_timeout + self.request_timeout),
                ):
                    if self._stop.is_set():
                        break
                    obj = event.get("raw_object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if event.get("type") == "BOOKMARK":
                        continue
                    with self._lock:
                        self._on_event(str(event.get("type")), obj, scope)
                backoff = 0.5
            except ApiException as exc:
                if exc.status == 410:
                    log.info("watch %s: resourceVersion %s expired, re-listing", scope or "all", rv)
                    rv = None
                    continue
                log.warning("watch %s failed: %s %s", scope or "all", exc.status, exc.reason)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception as exc:  # noqa: BLE001 - dropped connections etc.: resume from rv
                if self._stop.is_set():
                    break
                log.info("watch %s dropped (%s); resuming from %s", scope or "all", type(exc).__name__, rv)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _on_event(self, type_: str, obj: Mapping[str, Any], scope: str | None, key: str | None = None) -> None:
        key = key or _key(obj)
        try:
            if type_ == "DELETED":
                self._forget(key)
                self._scope_keys.setdefault(scope, set()).discard(key)
            elif type_ in ("ADDED", "MODIFIED"):
                self._scope_keys.setdefault(scope, set()).add(key)
                self._apply(key, dict(obj))
        except Exception:  # noqa: BLE001 - a bad object must not stop the watch
            log.exception("%s: could not handle %s event", key, type_)

    def _forget(self, key: str) -> None:
        for d in (self._objects, self._spec_seen, self._invalid, self._problem, self._fallback,
                  self._recommended, self._last_reconciled):
            d.pop(key, None)
        self.reconciler.remove_spec(key)
        self.actuator.forget(key)

    def _apply(self, key: str, obj: dict[str, Any]) -> None:
        first = key not in self._objects
        self._objects[key] = obj
        if first or not self.is_leader():
            self._seed_from_status(key, obj)  # follow what the acting controller reported
        spec_raw = obj.get("spec")
        if not first and spec_raw == self._spec_seen.get(key):
            return  # status or metadata only (e.g. our own status patch)
        self._spec_seen[key] = copy.deepcopy(spec_raw)
        try:
            spec = ScalerSpec.from_manifest(obj)
            if self.mode_override is not None:
                spec = dataclasses.replace(spec, mode=self.mode_override)
            self.actuator.resolve(spec.target)
        except (SpecError, TargetResolutionError) as exc:
            self._invalid[key] = str(exc)
            self.reconciler.remove_spec(key)
            if self.is_leader():
                if not first:
                    self._problem.pop(key, None)  # a newly invalid spec is always reported
                self._report_problem(key, Reason.INVALID_SPEC.value, str(exc))
            return
        self._invalid.pop(key, None)
        old = self.reconciler.specs.get(key)
        if old is not None and (old.target != spec.target or old.series != spec.series):
            self.reconciler.remove_spec(key)  # new workload or series: fresh policy state
            self.actuator.forget(key)
        self.reconciler.set_spec(spec)
        if self.is_leader():
            now = self._now if self._now is not None else self.clock()
            self._reconcile(key, now)

    def _seed_from_status(self, key: str, obj: Mapping[str, Any]) -> None:
        """Adopt what the status says (problem, fallback, recommendation), so a restarted
        or newly elected controller does not repeat the Events already recorded."""
        status = obj.get("status") or {}
        conds = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}
        ready = conds.get("Ready") or {}
        if ready.get("status") == "False" and ready.get("reason"):
            self._problem[key] = str(ready["reason"])
        else:
            self._problem.pop(key, None)
        fc = conds.get("ForecastAvailable") or {}
        fallback = None
        if fc.get("status") == "False":
            try:
                fallback = Reason(str(fc.get("reason")))
            except ValueError:
                fallback = None
        self._fallback[key] = fallback
        if isinstance(status.get("desiredReplicas"), int):
            self._recommended[key] = int(status["desiredReplicas"])
