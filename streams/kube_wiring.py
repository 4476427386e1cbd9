"""Wiring of ``foresight scaler --kube``: the Kubernetes operator behind the controller loop."""

from __future__ import annotations

from collections.abc import Callable

from streams.settings import Settings


def build_kube_reconciler(
    settings: Settings, namespaces: list[str] | None
) -> tuple[object, None, Callable[[], None]]:
    """An started :class:`scaler.kube.Operator` (kubeconfig or in-cluster config).

    Returns ``(reconciler, on_forecast, close)`` for :class:`streams.controller.ControllerLoop`.
    The initial list fails fast on missing RBAC or CRD.
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    from scaler.kube import Operator

    try:
        config.load_incluster_config()
    except ConfigException:
        config.load_kube_config()
    api = client.ApiClient()
    api.user_agent = "foresight-controller/0.1.0"
    op = Operator(
        api,
        namespaces=namespaces or None,
        lease_namespace=settings.lease_namespace,
        health_port=settings.health_port or None,
        health_host=settings.health_host,
        mode_override=settings.mode or None,
    )
    op.start()
    return op, None, op.stop
