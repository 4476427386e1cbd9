"""One record per ``PredictiveScaler``: what the operator knows and has reported about it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scaler.decision import Decision, Reason

#: the ``PredictiveScaler`` custom resource
GROUP = "foresight.dev"
VERSION = "v1alpha1"
PLURAL = "predictivescalers"
#: who writes status and Events (field manager, Event source)
COMPONENT = "foresight-controller"


def object_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` of an object (``default`` when it has no namespace).

    >>> object_key({"metadata": {"namespace": "shop", "name": "checkout"}})
    'shop/checkout'
    """
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"


@dataclass(slots=True)
class Target:
    """Per-target state of the operator (the reconciler holds the policy state).

    >>> t = Target("shop/a", {"status": {"desiredReplicas": 4, "conditions": [
    ...     {"type": "Ready", "status": "False", "reason": "InvalidSpec"},
    ...     {"type": "ForecastAvailable", "status": "False", "reason": "StaleForecast"}]}})
    >>> t.adopt_status()
    >>> t.problem, t.fallback, t.recommended
    ('InvalidSpec', <Reason.STALE_FORECAST: 'StaleForecast'>, 4)
    """

    key: str
    #: the object as last seen (watch event, our own status patch or a re-read);
    #: None once it is gone
    obj: dict[str, Any] | None = None
    #: ``spec`` as last applied: an event that changes nothing else is ours (status)
    spec_seen: Any = None
    #: why the spec cannot be used (None when it is valid)
    invalid: str | None = None
    #: the problem reported in status (``Ready`` False), to raise its Event once
    problem: str | None = None
    #: the fallback reported in status, to raise its Event once
    fallback: Reason | None = None
    #: the desired count last reported (a ForecastOnly ``WouldRescale`` Event per change)
    recommended: int | None = None
    #: the series was drifting at the last decision (an Event when that changes)
    drifting: bool = False
    #: event time of the last reconcile attempt (also failed ones)
    last_reconciled: float | None = None
    #: the latest decision
    last: Decision | None = None

    @property
    def namespace(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split("/", 1)[1]

    @property
    def generation(self) -> int | None:
        return ((self.obj or {}).get("metadata") or {}).get("generation")

    def adopt_status(self) -> None:
        """Take over what the status says (problem, fallback, recommendation), so a
        restarted or newly elected controller does not repeat the Events already recorded."""
        status = (self.obj or {}).get("status") or {}
        conds = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}
        ready = conds.get("Ready") or {}
        self.problem = str(ready["reason"]) if ready.get("status") == "False" and ready.get("reason") else None
        fc = conds.get("ForecastAvailable") or {}
        fallback = None
        if fc.get("status") == "False":
            try:
                fallback = Reason(str(fc.get("reason")))
            except ValueError:
                fallback = None
        self.fallback = fallback
        if isinstance(status.get("desiredReplicas"), int):
            self.recommended = int(status["desiredReplicas"])
