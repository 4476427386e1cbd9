"""Kubernetes API code: the only place in Foresight that imports ``kubernetes``.

- :class:`~scaler.kube.actuator.KubeActuator` reads and patches the ``scale``
  subresource of a workload (implements :class:`scaler.actuator.Actuator`);
- :class:`~scaler.kube.lease.LeaderElector` keeps one active controller with a
  ``coordination.k8s.io/v1`` Lease;
- :class:`~scaler.kube.operator.Operator` watches ``PredictiveScaler`` objects,
  reconciles them when forecasts arrive, writes their status and Events.
"""

from scaler.kube.actuator import KubeActuator, NotLeaderError, TargetResolutionError
from scaler.kube.lease import LeaderElector
from scaler.kube.operator import GROUP, PLURAL, VERSION, Operator

__all__ = [
    "GROUP",
    "PLURAL",
    "VERSION",
    "KubeActuator",
    "LeaderElector",
    "NotLeaderError",
    "Operator",
    "TargetResolutionError",
]
