"""Actuators: the edge where decisions become replica counts.

An actuator reads and sets the *provisioned* count of a target (the
``spec.replicas`` of its ``scale`` subresource: ready plus starting pods).
"""

from __future__ import annotations

from typing import Protocol

from scaler.spec import ScalerSpec


class Actuator(Protocol):
    def current_replicas(self, spec: ScalerSpec, now: float) -> int:
        """Provisioned replicas of the spec's target (ready + starting)."""
        ...

    def scale(self, spec: ScalerSpec, replicas: int, now: float) -> None:
        """Set the target's provisioned replicas to ``replicas``."""
        ...
