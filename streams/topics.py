"""Topic names (the only place they are spelled out)."""

from __future__ import annotations

from dataclasses import dataclass

from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class Topics:
    events: str
    metrics: str
    points: str
    anomalies: str
    forecasts: str
    decisions: str
    #: backfilled history (input wire format), learnt by the worker outside the live windows
    history: str
    #: one receipt per history message: what the worker learnt from it
    history_learnt: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        t = settings.topic
        return cls(
            t("events"), t("metrics"), t("points"), t("anomalies"), t("forecasts"), t("decisions"),
            t("history"), t("history.learnt"),
        )

    @staticmethod
    def dlq(topic: str) -> str:
        return f"{topic}.dlq"

    def all(self) -> list[str]:
        main = [self.events, self.metrics, self.points, self.anomalies, self.forecasts, self.decisions]
        dlqs = [self.dlq(self.events), self.dlq(self.metrics), self.dlq(self.points)]
        dlqs.append(self.dlq(self.decisions))  # the decisions agent's processing errors
        history = [self.history, self.history_learnt, self.dlq(self.history)]
        return main + dlqs + history
