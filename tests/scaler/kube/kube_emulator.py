"""A stricter Kubernetes API emulator on top of kmock 0.8's ``KubernetesEmulator``.

kmock's emulator merges dicts and replays watches; the operator needs more of
the API server's contract, so this subclass adds:

- ``metadata.resourceVersion`` (one global counter, as etcd's revision),
  ``uid``, ``creationTimestamp`` and ``generation`` (bumped on spec changes);
- compare-and-swap: a PATCH or PUT whose body carries a ``resourceVersion``
  different from the stored one answers **409 Conflict**; POST of an existing
  name answers 409 AlreadyExists;
- **PUT** on a named object (replace), which the client's Lease code uses;
- the ``status`` subresource (only ``status`` changes; the main resource
  ignores ``status``) and a proper ``autoscaling/v1`` **Scale** on ``/scale``
  that reads and writes the workload's ``spec.replicas``;
- list with a collection ``resourceVersion``; watch from a resourceVersion
  replays only later changes, with **410 Gone** (an ERROR event, as the real
  server sends it) when that version was compacted away; ``timeoutSeconds``;
- test hooks: :meth:`compact` (forget history), :meth:`drop_watches` (end
  every open watch stream mid-way), :meth:`pause_watches` (hold reconnecting
  watches, as during an apiserver restart), :meth:`interfere` (another writer bumps an
  object right before the next matching request, to provoke a real 409).

User-defined kmock reactions (``emulator[...] << ...``) still take precedence.
All state lives on the emulator's event loop; :class:`EmulatorThread` runs it
in a background thread so the synchronous ``kubernetes`` client can call it.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import attrs
import kmock
from kmock._internal import apps, rendering

Key = tuple[kmock.resource, str | None, str]

#: (user agent, method, path, query) of every request served by any emulator in this
#: test session; tests/scaler/kube/test_rbac.py checks the controller's against the RBAC.
SERVED: list[tuple[str, str, str, dict[str, str]]] = []


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(base: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (null deletes; lists replace)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base) if isinstance(base, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


def conflict(message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=409, reason="Conflict", message=message)


@attrs.define(kw_only=True)
class StatefulEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with resourceVersions, CAS, PUT, subresources and 410 Gone."""

    _rv: int = attrs.field(default=0, init=False)
    _log: list[tuple[int, kmock.resource, dict[str, Any]]] = attrs.field(factory=list, init=False)
    _compacted: int = attrs.field(default=0, init=False)
    _changed: asyncio.Condition | None = attrs.field(default=None, init=False)
    _drop_epoch: int = attrs.field(default=0, init=False)
    _interferences: list[tuple[Callable[[rendering.Request], bool], int]] = attrs.field(
        factory=list, init=False
    )
    watch_count: int = attrs.field(default=0, init=False)
    watches_paused: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Above kmock's fallbacks, below anything a test declares. Creation answers 201.
        # (Not by returning a kmock Response: kmock 0.8 stores its status on the shared reaction.)
        (self ** -1e9)[kmock.method.POST] << 201 << self._dispatch
        (self ** -1e9) << self._dispatch

    async def _handle(self, request: rendering.Request) -> Any:
        # Skip KubernetesEmulator._handle's pre-mutation of objects: _dispatch owns all writes.
        return await apps.RawHandler._handle(self, request)

    # -- hooks for tests (call them on the emulator's loop, see EmulatorThread.call) -----
    def compact(self) -> None:
        """Forget the change history: watches from any older resourceVersion get 410."""
        self._compacted = self._rv
        self._log.clear()

    def drop_watches(self) -> None:
        """End every open watch stream (as a load balancer or apiserver restart would)."""
        self._drop_epoch += 1
        self._notify()

    def pause_watches(self, paused: bool = True) -> None:
        """Hold new watch requests (unanswered) until called with ``False``."""
        self.watches_paused = paused

    def interfere(self, predicate: Callable[[rendering.Request], bool], times: int = 1) -> None:
        """Before the next ``times`` requests matching ``predicate``, another writer
        touches the addressed object (new resourceVersion, annotation changed)."""
        self._interferences.append((predicate, times))

    def put_object(self, res: str | kmock.resource, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object directly (as if created), bypassing HTTP; returns it."""
        r = kmock.resource(res)
        meta = obj.get("metadata") or {}
        return self._create((r, meta.get("namespace"), meta["name"]), obj)

    def get_object(self, res: str | kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(res), namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    # -- storage -------------------------------------------------------------------
    def _notify(self) -> None:
        if self._changed is None:
            return
        cond = self._changed

        async def wake() -> None:
            async with cond:
                cond.notify_all()

        asyncio.get_running_loop().create_task(wake())

    def _record(self, res: kmock.resource, type_: str, obj: dict[str, Any]) -> None:
        self._log.append((self._rv, res, {"type": type_, "object": copy.deepcopy(obj)}))
        self._notify()

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _get(self, key: Key) -> dict[str, Any]:
        if key not in self.objects or self.objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return copy.deepcopy(self.objects[key].raw)

    def _store(self, key: Key, obj: dict[str, Any], type_: str) -> dict[str, Any]:
        if key in self.objects:
            self.objects[key].history.append(obj)
        else:
            self.objects[key] = obj
        self._record(key[0], type_, obj)
        return copy.deepcopy(obj)

    def _create(self, key: Key, body: dict[str, Any]) -> dict[str, Any]:
        res, ns, name = key
        if key in self.objects and not self.objects[key].deleted:
            raise kmock.KubernetesError(
                status=409, reason="AlreadyExists", message=f"{res.plural} {name!r} already exists"
            )
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        meta["name"] = name
        if ns is not None:
            meta["namespace"] = ns
        meta.update(
            uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1, resourceVersion=self._next_rv()
        )
        return self._store(key, obj, "ADDED")

    def _write(self, key: Key, old: dict[str, Any], new: dict[str, Any], expected_rv: Any) -> dict[str, Any]:
        if expected_rv not in (None, "") and str(expected_rv) != old["metadata"]["resourceVersion"]:
            raise conflict(
                f"Operation cannot be fulfilled on {key[0].plural} {key[2]!r}: the object has been "
                "modified; please apply your changes to the latest version and try again"
            )
        meta = new.setdefault("metadata", {})
        for k in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if k in old["metadata"]:
                meta[k] = old["metadata"][k]
        if new.get("spec") != old.get("spec"):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        meta["resourceVersion"] = self._next_rv()
        return self._store(key, new, "MODIFIED")

    # -- the HTTP side ---------------------------------------------------------------
    async def _dispatch(self, request: rendering.Request) -> Any:
        res = request.resource
        if res is None or res.plural is None:
            raise NotImplementedError  # discovery etc.: kmock's fallbacks serve it
        if self._changed is None:
            self._changed = asyncio.Condition()
        self._maybe_interfere(request)
        key: Key = (kmock.resource(res.group, res.version, res.plural), request.namespace, request.name or "")
        method = request.method.value.upper()
        sub = request.subresource
        if method == "GET" and request.params.get("watch") in ("true", "1", "True"):
            return self._watch(request, key[0])
        if method == "GET" and request.name is None:
            return self._list(request, key[0])
        if method == "GET":
            obj = self._get(key)
            return self._scale_of(obj) if sub == "scale" else obj
        if method == "POST" and request.name is None:
            body = request.data or {}
            name = (body.get("metadata") or {}).get("name")
            if not name:
                raise kmock.KubernetesError(status=422, reason="Invalid", message="metadata.name is required")
            ns = request.namespace or (body.get("metadata") or {}).get("namespace")
            return self._create((key[0], ns, name), body)
        if method == "PATCH" and request.name:
            return self._patch(request, key, sub)
        if method == "PUT" and request.name:
            return self._replace(request, key, sub)
        if method == "DELETE" and request.name:
            obj = self._get(key)
            obj["metadata"]["resourceVersion"] = self._next_rv()
            self.objects[key].delete()
            self._record(key[0], "DELETED", obj)
            return obj
        raise kmock.KubernetesError(status=405, reason="MethodNotAllowed", message=f"{method} not supported")

    def _maybe_interfere(self, request: rendering.Request) -> None:
        for i, (pred, times) in enumerate(self._interferences):
            if times > 0 and pred(request):
                self._interferences[i] = (pred, times - 1)
                res = request.resource
                assert res is not None
                key: Key = (kmock.resource(res.group, res.version, res.plural), request.namespace, request.name or "")
                old = self._get(key)
                new = copy.deepcopy(old)
                notes = new["metadata"].setdefault("annotations", {})
                notes["emulator/interference"] = str(self._rv + 1)
                self._write(key, old, new, None)
                return

    def _patch(self, request: rendering.Request, key: Key, sub: str | None) -> dict[str, Any]:
        ctype = request.headers.get("Content-Type", "")
        body = request.data
        if "json-patch" in ctype or not isinstance(body, dict):
            raise kmock.KubernetesError(status=415, reason="UnsupportedMediaType", message=ctype)
        old = self._get(key)
        expected = (body.get("metadata") or {}).get("resourceVersion")
        if sub == "scale":
            replicas = (body.get("spec") or {}).get("replicas")
            new = copy.deepcopy(old)
            if replicas is not None:
                new.setdefault("spec", {})["replicas"] = int(replicas)
            return self._scale_of(self._write(key, old, new, expected))
        if sub == "status":
            new = copy.deepcopy(old)
            if "status" in body:
                new["status"] = _merge(old.get("status"), body["status"])
            return self._write(key, old, new, expected)
        if sub:
            raise kmock.KubernetesNotFoundError()
        patch = {k: v for k, v in body.items() if k != "status"}
        if "metadata" in patch:
            patch["metadata"] = {k: v for k, v in patch["metadata"].items() if k != "resourceVersion"}
        return self._write(key, old, _merge(old, patch), expected)

    def _replace(self, request: rendering.Request, key: Key, sub: str | None) -> dict[str, Any]:
        body = request.data
        if not isinstance(body, dict):
            raise kmock.KubernetesError(status=400, reason="BadRequest", message="body must be an object")
        old = self._get(key)
        expected = (body.get("metadata") or {}).get("resourceVersion")
        if sub == "status":
            new = copy.deepcopy(old)
            new["status"] = copy.deepcopy(body.get("status"))
        elif sub == "scale":
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["replicas"] = int((body.get("spec") or {}).get("replicas", 0))
            return self._scale_of(self._write(key, old, new, expected))
        elif sub:
            raise kmock.KubernetesNotFoundError()
        else:
            new = copy.deepcopy(body)
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        return self._write(key, old, new, expected)

    @staticmethod
    def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
            "spec": {"replicas": int(spec.get("replicas", 1))},
            "status": {
                "replicas": int(status.get("replicas", spec.get("replicas", 1))),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
            },
        }

    def _matching(self, request: rendering.Request, res: kmock.resource) -> list[dict[str, Any]]:
        out = []
        for (r, ns, _name), obj in self.objects.items():
            if r == res and not obj.deleted and (request.namespace is None or ns == request.namespace):
                out.append(copy.deepcopy(obj.raw))
        return out

    def _list(self, request: rendering.Request, res: kmock.resource) -> dict[str, Any]:
        return {
            "apiVersion": f"{res.group}/{res.version}" if res.group else res.version,
            "kind": "List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": self._matching(request, res),
        }

    async def _watch(self, request: rendering.Request, res: kmock.resource) -> AsyncIterator[Any]:
        self.watch_count += 1
        while self.watches_paused:
            await asyncio.sleep(0.01)
        since_raw = request.params.get("resourceVersion")
        timeout = float(request.params.get("timeoutSeconds") or 3600)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        epoch = self._drop_epoch
        assert self._changed is not None
        yield b""  # send the headers now
        if since_raw in (None, "", "0"):
            since = self._rv
            for obj in self._matching(request, res):
                yield {"type": "ADDED", "object": obj}
        else:
            since = int(since_raw)
            if since < self._compacted:
                yield {
                    "type": "ERROR",
                    "object": {
                        "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410,
                        "reason": "Expired", "message": f"too old resource version: {since} ({self._rv})",
                    },
                }
                return
        while epoch == self._drop_epoch and loop.time() < deadline:
            pending = [
                ev for rv, r, ev in self._log
                if rv > since and r == res and (
                    request.namespace is None
                    or (ev["object"].get("metadata") or {}).get("namespace") == request.namespace
                )
            ]
            if pending:
                since = max(rv for rv, r, _ in self._log)
                for ev in pending:
                    yield ev
                continue
            since = self._rv
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, min(0.5, deadline - loop.time())))
                except TimeoutError:
                    pass


class EmulatorThread:
    """Run a :class:`StatefulEmulator` and its HTTP server on a private event loop.

    Use it as a context manager; ``api_client(user_agent)`` gives an official
    ``kubernetes`` client pointed at it, ``call(fn)`` runs a hook on its loop.
    """

    def __init__(self, cls: type[StatefulEmulator] = StatefulEmulator) -> None:
        self.cls = cls
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._ready: Future[None] = Future()
        self._stopped: asyncio.Event | None = None
        self.emulator: StatefulEmulator
        self.url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())
        self.loop.close()

    async def _main(self) -> None:
        try:
            self._stopped = asyncio.Event()
            async with self.cls() as emulator, kmock.Server(emulator) as server:
                self.emulator = emulator
                self.url = str(server.url).rstrip("/")
                self._ready.set_result(None)
                await self._stopped.wait()
                emulator.drop_watches()
                await asyncio.sleep(0)
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        self._ready.result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stopped is not None
        for r in self.requests():
            SERVED.append((r.headers.get("User-Agent", ""), r.method.value, r.url.path, dict(r.params)))
        self.loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=30)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args)`` on the emulator's loop (thread-safe) and return its result."""

        async def run() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def requests(self) -> list[rendering.Request]:
        """Every request served so far (a snapshot)."""
        return self.call(lambda: list(self.emulator))

    def api_client(self, user_agent: str = "test") -> Any:
        from kubernetes import client

        cfg = client.Configuration(host=self.url)
        api = client.ApiClient(cfg)
        api.user_agent = user_agent
        return api


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; fail after ``timeout`` seconds (no fixed sleeps)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
