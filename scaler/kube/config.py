"""Client configuration for ``foresight scaler --kube``: in-cluster, else kubeconfig.

The configuration goes into the returned client only (no process-wide default),
so a process or a test may hold clients for several clusters.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from scaler.kube.operator import Operator

USER_AGENT = "foresight-controller/0.1.0"


def api_client(user_agent: str = USER_AGENT) -> client.ApiClient:
    """A client for the cluster this runs in (service account), else ``$KUBECONFIG``
    or ``~/.kube/config`` (its current context)."""
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except ConfigException:
        config.load_kube_config(client_configuration=cfg)
    api = client.ApiClient(cfg)
    api.user_agent = user_agent
    return api


def start_operator(
    *,
    namespaces: Sequence[str] | None = None,
    lease_namespace: str = "foresight-system",
    health_port: int | None = None,
    health_host: str = "0.0.0.0",
    mode_override: str | None = None,
) -> Operator:
    """A started :class:`~scaler.kube.operator.Operator` (its initial list fails fast on
    missing RBAC or CRD); drive it as a :class:`scaler.reconciling.Reconciling`, then ``stop()``."""
    op = Operator(
        api_client(),
        namespaces=namespaces or None,
        lease_namespace=lease_namespace,
        health_port=health_port,
        health_host=health_host,
        mode_override=mode_override,
    )
    op.start()
    return op
