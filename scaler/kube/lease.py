"""Leader election with a ``coordination.k8s.io/v1`` Lease (client-go semantics).

One controller holds the Lease and renews it every ``retry_period``; the others
watch it and take over once the holder has not renewed for
``lease_duration``. Expiry is judged on *this* process's monotonic clock from
the moment the Lease record was last seen to change (as client-go does), so
clock skew between nodes does not matter.

Safety: :meth:`LeaderElector.is_leader` is true only while the last
successful renewal is younger than ``renew_deadline``, which is shorter than
``lease_duration``: a leader that cannot renew stops acting before anyone else
may take the Lease over. Call :meth:`LeaderElector.check` before every write.

Writes use the Lease's ``resourceVersion`` (an update is compare-and-swap), so
two candidates racing for an expired Lease cannot both win.

>>> LeaderElector(None, identity="a", lease_duration=15, renew_deadline=10,
...               retry_period=2).renew_deadline
10
>>> LeaderElector(None, identity="a", lease_duration=5, renew_deadline=5)
Traceback (most recent call last):
...
ValueError: need retry_period < renew_deadline < lease_duration, got 2.0, 5, 5
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from scaler.kube.actuator import NotLeaderError

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Acquire, renew and release one Lease; run as a thread with ``start``/``stop``.

    ``clock`` (monotonic seconds) and ``wallclock`` (timestamps written into the
    Lease) are injectable so tests can step time; :meth:`step` does one
    acquire-or-renew attempt and is what the thread calls every ``retry_period``.
    """

    def __init__(
        self,
        api_client: client.ApiClient | None,
        *,
        identity: str,
        name: str = "foresight-controller",
        namespace: str = "foresight-system",
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] = _utcnow,
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
        request_timeout: float = 5.0,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError(
                "need retry_period < renew_deadline < lease_duration, got "
                f"{retry_period}, {renew_deadline}, {lease_duration}"
            )
        self.identity = identity
        self.name = name
        self.namespace = namespace
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.wallclock = wallclock
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.request_timeout = request_timeout
        self._api = client.CoordinationV1Api(api_client) if api_client is not None else None
        self._lock = threading.Lock()
        self._leading = False
        self._last_renew = -math.inf  # monotonic time of the last successful write
        self._observed: tuple[Any, ...] | None = None  # last seen Lease record
        self._observed_at = -math.inf  # when it was first seen (monotonic)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- queries -----------------------------------------------------------------
    def is_leader(self) -> bool:
        """True while this process holds the Lease and renewed it within ``renew_deadline``."""
        with self._lock:
            return self._leading and self.clock() - self._last_renew < self.renew_deadline

    def check(self) -> None:
        """Raise :class:`NotLeaderError` unless :meth:`is_leader`; call before every write."""
        if not self.is_leader():
            raise NotLeaderError(f"{self.identity} does not hold Lease {self.namespace}/{self.name}")

    @property
    def holder(self) -> str | None:
        """Holder of the Lease as last observed (None if unheld or unknown)."""
        with self._lock:
            return self._observed[0] if self._observed else None

    # -- one attempt -------------------------------------------------------------
    def step(self) -> bool:
        """Try once to acquire or renew the Lease; return :meth:`is_leader` afterwards."""
        assert self._api is not None, "LeaderElector needs an api_client"
        started = self.clock()
        try:
            won = self._try_acquire_or_renew(started)
        except (ApiException, OSError, ValueError) as exc:  # network or server trouble
            log.warning("lease %s/%s: renew attempt failed: %s", self.namespace, self.name, exc)
            won = None
        if won is True:
            with self._lock:
                self._last_renew = started
        self._set_leading(won is True or (won is None and self.is_leader()))
        return self.is_leader()

    def _try_acquire_or_renew(self, started: float) -> bool:
        assert self._api is not None
        now = self.wallclock()
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self.request_timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(None, now),
            )
            try:
                self._api.create_namespaced_lease(
                    self.namespace, body, _request_timeout=self.request_timeout
                )
            except ApiException as exc2:
                if exc2.status == 409:  # someone else created it first
                    return False
                raise
            self._observe(body.spec, started)
            log.info("lease %s/%s: created and acquired by %s", self.namespace, self.name, self.identity)
            return True

        spec = lease.spec or client.V1LeaseSpec()
        self._observe(spec, started)
        holder = spec.holder_identity
        duration = spec.lease_duration_seconds or self.lease_duration
        if holder and holder != self.identity and self.clock() < self._observed_at + duration:
            return False  # held by someone else and not expired
        lease.spec = self._spec(spec, now)
        try:
            self._api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=self.request_timeout
            )
        except ApiException as exc:
            if exc.status == 409:  # lost a race: someone else wrote it meanwhile
                return False
            raise
        if holder != self.identity:
            log.info("lease %s/%s: acquired by %s (was %s)", self.namespace, self.name, self.identity, holder)
        self._observe(lease.spec, started)
        return True

    def _spec(self, old: client.V1LeaseSpec | None, now: datetime) -> client.V1LeaseSpec:
        mine = old is not None and old.holder_identity == self.identity
        transitions = (old.lease_transitions or 0) if old is not None else 0
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=int(math.ceil(self.lease_duration)),
            acquire_time=(old.acquire_time if mine and old is not None else now),
            renew_time=now,
            lease_transitions=transitions if mine or old is None else transitions + 1,
        )

    def _observe(self, spec: client.V1LeaseSpec, at: float) -> None:
        record = (
            spec.holder_identity,
            spec.renew_time,
            spec.acquire_time,
            spec.lease_duration_seconds,
            spec.lease_transitions,
        )
        with self._lock:
            if record != self._observed:
                self._observed = record
                self._observed_at = at

    def _set_leading(self, leading: bool) -> None:
        with self._lock:
            changed = leading != self._leading
            self._leading = leading
        if not changed:
            return
        callback = self.on_started_leading if leading else self.on_stopped_leading
        log.info("%s %s leading", self.identity, "started" if leading else "stopped")
        if callback is not None:
            try:
                callback()
            except Exception:  # a callback must not kill the elector
                log.exception("leader-election callback failed")

    def release(self) -> None:
        """Give the Lease up (if held) so another controller takes over at once."""
        if self._api is None:
            return
        was_leading = self.is_leader()
        self._set_leading(False)
        if not was_leading:
            return
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self.request_timeout
            )
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            now = self.wallclock()
            lease.spec = client.V1LeaseSpec(
                holder_identity=None,
                lease_duration_seconds=1,
                acquire_time=now,
                renew_time=now,
                lease_transitions=lease.spec.lease_transitions,
            )
            self._api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=self.request_timeout
            )
            log.info("lease %s/%s: released by %s", self.namespace, self.name, self.identity)
        except (ApiException, OSError) as exc:
            log.warning("lease %s/%s: release failed: %s", self.namespace, self.name, exc)

    # -- thread ------------------------------------------------------------------
    def start(self) -> None:
        """Start renewing in a background thread (first attempt right away)."""
        if self._thread is not None:
            raise RuntimeError("LeaderElector already started")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"lease-{self.identity}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        self.step()
        while not self._stop.wait(self.retry_period):
            self.step()

    def stop(self, release: bool = True) -> None:
        """Stop renewing; with ``release`` give the Lease up, else let it expire."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if release:
            self.release()
        else:
            self._set_leading(False)
