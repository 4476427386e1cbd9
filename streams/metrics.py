"""Prometheus metrics of a worker or controller, on an injectable registry.

Names follow Prometheus conventions: ``foresight_`` prefix, base units,
``_total`` counters. Label values come from fixed vocabularies (DLQ reasons,
decision reasons, topics), never from series ids, so cardinality is bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "foresight_messages_in", "Kafka messages consumed by the window agent", ["topic"], registry=r
        )
        self.events_in = Counter(
            "foresight_events_in", "Events and samples accepted (sum of aggregate counts)", ["topic"], registry=r
        )
        self.points_out = Counter("foresight_points_out", "Closed windows published", registry=r)
        self.dead_letters = Counter(
            "foresight_dead_letters", "Messages sent to a dead-letter topic", ["topic", "reason"], registry=r
        )
        self.late_events = Counter(
            "foresight_late_events", "Aggregates older than the allowed lateness", registry=r
        )
        self.forecasts_out = Counter("foresight_forecasts_out", "Forecasts published", registry=r)
        self.anomalies_out = Counter("foresight_anomalies_out", "Anomalies published", registry=r)
        self.untrusted_checkpoints = Counter(
            "foresight_untrusted_checkpoints", "Model checkpoints refused (bad signature)", registry=r
        )
        self.checkpoints = Counter("foresight_checkpoints", "Model checkpoints written", registry=r)
        self.model_update_seconds = Histogram(
            "foresight_model_update_seconds",
            "Time to update one series' models with one window",
            buckets=(1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2),
            registry=r,
        )
