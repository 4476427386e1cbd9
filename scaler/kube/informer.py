"""List, then watch, the ``PredictiveScaler`` objects in scope (client-go's informer, small).

One watch thread per scope (all namespaces, or one per namespace). A dropped
watch resumes from the last ``resourceVersion`` seen (bookmarks included);
``410 Gone`` (that version was compacted away) re-lists, and objects missing
from the new list are reported deleted. Other errors back off exponentially.
The handler runs under ``lock`` and must not raise (errors are logged).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from scaler.kube.targets import GROUP, PLURAL, VERSION, object_key

log = logging.getLogger(__name__)

#: ``handler(type, key, obj)``: type ``ADDED``, ``MODIFIED`` or ``DELETED``
Handler = Callable[[str, str, Mapping[str, Any]], None]


class Informer:
    """Keeps ``handler`` told about every PredictiveScaler in ``namespaces`` (None: all)."""

    def __init__(
        self,
        api_client: client.ApiClient,
        handler: Handler,
        *,
        namespaces: Sequence[str] | None = None,
        lock: threading.RLock | None = None,
        watch_timeout: int = 300,
        request_timeout: float = 10.0,
    ) -> None:
        self.handler = handler
        self.scopes: tuple[str | None, ...] = tuple(namespaces) if namespaces else (None,)
        self.lock = lock or threading.RLock()
        self.watch_timeout = int(watch_timeout)
        self.request_timeout = request_timeout
        self._custom = client.CustomObjectsApi(api_client)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: dict[str | None, watch.Watch] = {}
        self._keys: dict[str | None, set[str]] = {}

    def start(self) -> None:
        """List every scope (synchronously: RBAC or CRD problems fail here), then watch."""
        self._stop.clear()
        for scope in self.scopes:
            rv = self._relist(scope)
            t = threading.Thread(
                target=self._watch_loop, args=(scope, rv), name=f"watch-{scope or 'all'}", daemon=True
            )
            self._threads.append(t)
            t.start()

    def stop(self) -> None:
        """End the watches (unblocking a stream that waits for its next event) and join."""
        self._stop.set()
        for w in list(self._watches.values()):
            w.stop()
            resp = getattr(w, "_resp", None)
            if resp is not None:
                try:
                    resp.close()
                except Exception:  # noqa: BLE001 - best effort while shutting down
                    pass
        for t in self._threads:
            t.join(timeout=self.watch_timeout + self.request_timeout)
        self._threads.clear()

    def alive(self) -> bool:
        """Every watch thread is running."""
        return all(t.is_alive() for t in self._threads)

    def _list_call(self, scope: str | None) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if scope is None:
            return self._custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        return self._custom.list_namespaced_custom_object, (GROUP, VERSION, scope, PLURAL)

    def _relist(self, scope: str | None) -> str | None:
        fn, args = self._list_call(scope)
        resp = fn(*args, _request_timeout=self.request_timeout)
        items: Iterable[dict[str, Any]] = resp.get("items") or []
        with self.lock:
            seen = set()
            for obj in items:
                seen.add(object_key(obj))
                self._deliver("ADDED", obj, scope)
            for key in self._keys.get(scope, set()) - seen:
                self._deliver("DELETED", {}, scope, key)
            self._keys[scope] = seen
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
                    with self.lock:
                        self._deliver(str(event.get("type")), obj, scope)
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

    def _deliver(self, type_: str, obj: Mapping[str, Any], scope: str | None, key: str | None = None) -> None:
        key = key or object_key(obj)
        if type_ == "DELETED":
            self._keys.setdefault(scope, set()).discard(key)
        elif type_ in ("ADDED", "MODIFIED"):
            self._keys.setdefault(scope, set()).add(key)
        else:
            return
        try:
            self.handler(type_, key, obj)
        except Exception:  # noqa: BLE001 - a bad object must not stop the watch
            log.exception("%s: could not handle %s event", key, type_)
