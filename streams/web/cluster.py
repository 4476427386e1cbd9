"""Which worker owns what, and asking the other workers.

A series lives on the worker that owns its partition of the ``points`` topic
(the same partition as its models); a target on the owner of its
``decisions`` partition. Faust's partition assignment says which worker that
is. A forwarded request carries ``X-Foresight-Routed`` and is always answered
locally (no loops during a rebalance).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import faust
import orjson
from kafka.partitioner.default import murmur2

from streams.settings import Settings

log = logging.getLogger("foresight.web")

ROUTED_HEADER = "X-Foresight-Routed"
FORWARD_TIMEOUT = 5.0


def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as the producers use it.

    >>> partition_for("checkout/requests", 4) == partition_for("checkout/requests", 4)
    True
    """
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def advertised_host(settings: Settings) -> str:
    """The host other workers use to reach this one's web server.

    ``web_advertise_host`` if set; else the bind address, unless that is a
    wildcard (``0.0.0.0`` in a container), where it is this host's address
    (in Kubernetes the pod IP, from the kubelet-managed ``/etc/hosts``).

    >>> advertised_host(Settings(web_host="127.0.0.1"))
    '127.0.0.1'
    """
    host = settings.web_advertise_host or settings.web_host
    if host in ("0.0.0.0", "::", ""):
        import socket

        name = socket.gethostname()
        try:
            host = socket.gethostbyname(name)
        except OSError:
            host = name
    return host


class Cluster:
    """This worker among the others: who owns a key, and fanning a request out to every worker."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    # -- ownership ----------------------------------------------------------
    def distribution(self, topic: str) -> dict[str, set[int]]:
        """Worker URL -> partitions of ``topic`` it actively owns."""
        try:
            meta = self.app.router.external_topics_metadata()
        except Exception:  # noqa: BLE001 - not assigned yet
            return {}
        out: dict[str, set[int]] = {}
        for url, tps in (meta or {}).items():
            parts = set(tps.get(topic, ()))
            if parts:
                out[str(url).rstrip("/")] = parts
        return out

    def self_url(self) -> str:
        return str(self.app.conf.canonical_url).rstrip("/")

    def owner(self, topic: str, key: str) -> tuple[str | None, bool]:
        """(owner URL, is this worker) for ``key`` of ``topic``; (None, True) when unknown."""
        dist = self.distribution(topic)
        if not dist:
            return None, True
        n = max(self.settings.partitions, max(max(p) for p in dist.values()) + 1)
        p = partition_for(key, n)
        for url, parts in dist.items():
            if p in parts:
                return url, url == self.self_url()
        return None, True

    def owned_partitions(self, topic: str) -> set[int] | None:
        """Partitions of ``topic`` this worker owns (None: no assignment known yet)."""
        try:
            actives = self.app.assignor.assigned_actives()
        except Exception:  # noqa: BLE001
            return None
        return {tp.partition for tp in actives if tp.topic == topic}

    def owns(self, topic: str) -> Callable[[str], bool]:
        owned = self.owned_partitions(topic)
        if owned is None:
            return lambda key: True
        n = max(self.settings.partitions, max(owned, default=-1) + 1)
        return lambda key: partition_for(key, n) in owned

    # -- asking the other workers -----------------------------------------
    async def forward(self, url: str, request: Any) -> tuple[int, Any]:
        target = f"{url}{request.rel_url.raw_path}"
        if request.rel_url.raw_query_string:
            target += "?" + request.rel_url.raw_query_string
        timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT)
        async with self.app.http_client.get(target, headers={ROUTED_HEADER: "1"}, timeout=timeout) as r:
            body = await r.read()
            return r.status, orjson.loads(body)

    async def fan_out(self, request: Any, local: Callable[[], Any]) -> tuple[list[Any], list[str]]:
        """The local answer plus every other worker's, and the workers that failed."""
        if request.headers.get(ROUTED_HEADER):
            return [local()], []
        me = self.self_url()
        peers = sorted(u for u in self.all_workers() if u != me)
        results: list[Any] = [local()]
        failed: list[str] = []

        async def ask(u: str) -> None:
            try:
                status, body = await self.forward(u, request)
                if status == 200:
                    results.append(body)
                else:
                    failed.append(u)
            except Exception as exc:  # noqa: BLE001 - a worker down makes the answer partial
                log.warning("worker %s did not answer: %s", u, exc)
                failed.append(u)

        await asyncio.gather(*(ask(u) for u in peers))
        return results, failed

    def all_workers(self) -> set[str]:
        try:
            meta = self.app.router.external_topics_metadata() or {}
        except Exception:  # noqa: BLE001
            return set()
        return {str(u).rstrip("/") for u in meta}
