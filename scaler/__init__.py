"""Scaling decisions and actuation: pure policy, reconcile logic, actuators.

``scaler`` never imports ``streams``; Kubernetes API code lives only in
``scaler.kube``.
"""
