"""A simulated cluster: new pods become ready only after a start-up delay.

Time is event time, passed in. Scaling up starts pods that become ready
``startup_seconds`` later; scaling down cancels starting pods first (newest
first), then removes ready ones at once.

>>> c = SimulatedCluster(startup_seconds=180)
>>> c.add_target("shop/checkout", replicas=2)
>>> c.scale_to("shop/checkout", 5, now=0)
>>> c.ready("shop/checkout", now=179), c.provisioned("shop/checkout")
(2, 5)
>>> c.ready("shop/checkout", now=180)
5
>>> c.scale_to("shop/checkout", 3, now=200); c.ready("shop/checkout", now=200)
3
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scaler.spec import ScalerSpec


@dataclass
class _Target:
    ready: int
    starting: list[float] = field(default_factory=list)  # ready-at times, oldest first


class SimulatedCluster:
    """In-memory workloads with a pod start-up delay (implements ``Actuator``)."""

    def __init__(self, startup_seconds: float = 180.0) -> None:
        self.startup_seconds = startup_seconds
        self._targets: dict[str, _Target] = {}

    def add_target(self, key: str, replicas: int) -> None:
        self._targets.setdefault(key, _Target(ready=replicas))

    def _get(self, key: str) -> _Target:
        if key not in self._targets:
            raise KeyError(f"no simulated workload {key!r}")
        return self._targets[key]

    def _advance(self, t: _Target, now: float) -> None:
        done = [r for r in t.starting if r <= now]
        if done:
            t.ready += len(done)
            t.starting = [r for r in t.starting if r > now]

    def ready(self, key: str, now: float) -> int:
        t = self._get(key)
        self._advance(t, now)
        return t.ready

    def provisioned(self, key: str) -> int:
        t = self._get(key)
        return t.ready + len(t.starting)

    def scale_to(self, key: str, replicas: int, now: float) -> None:
        t = self._get(key)
        self._advance(t, now)
        diff = replicas - (t.ready + len(t.starting))
        if diff > 0:
            t.starting.extend([now + self.startup_seconds] * diff)
        elif diff < 0:
            cancel = min(-diff, len(t.starting))
            if cancel:
                del t.starting[len(t.starting) - cancel :]
            t.ready -= -diff - cancel

    # Actuator protocol
    def current_replicas(self, spec: ScalerSpec, now: float) -> int:
        self.add_target(spec.key, spec.min_replicas)
        self.ready(spec.key, now)
        return self.provisioned(spec.key)

    def scale(self, spec: ScalerSpec, replicas: int, now: float) -> None:
        self.scale_to(spec.key, replicas, now)
