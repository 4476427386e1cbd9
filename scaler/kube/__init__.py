"""Kubernetes API code: the only place in Foresight that imports ``kubernetes``.

- :class:`~scaler.kube.operator.Operator` watches ``PredictiveScaler`` objects and
  reconciles them (a :class:`scaler.reconciling.Reconciling`), built from
  :class:`~scaler.kube.informer.Informer` (list + watch),
  :class:`~scaler.kube.step.ReconcileStep` (one target),
  :class:`~scaler.kube.recorder.Recorder` (status and Events) and
  :class:`~scaler.kube.conflicts.ConflictCheck` (other autoscalers);
- :class:`~scaler.kube.actuator.KubeActuator` reads and patches the ``scale``
  subresource of a workload (implements :class:`scaler.actuator.Actuator`);
- :class:`~scaler.kube.lease.LeaderElector` keeps one active controller with a
  ``coordination.k8s.io/v1`` Lease;
- :func:`~scaler.kube.config.start_operator` configures the client (in-cluster or
  kubeconfig) and starts the operator for ``foresight scaler --kube``.
"""

from scaler.kube.actuator import KubeActuator, NotLeaderError, TargetResolutionError
from scaler.kube.lease import LeaderElector
from scaler.kube.operator import Operator
from scaler.kube.targets import GROUP, PLURAL, VERSION

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
