"""The leader's sampler of kafkaTopic signals (streams/kafka_signal.py): one timer."""

from __future__ import annotations

import logging
import time

from streams import kafka_config, kafka_signal, records
from streams.worker.context import WorkerContext

log = logging.getLogger("foresight.worker")


def install(ctx: WorkerContext) -> None:
    """The sampling timer, if the PredictiveScaler file names any kafkaTopic signal."""
    app, settings, topics, out, step = ctx.app, ctx.settings, ctx.topics, ctx.out, ctx.step
    kafka_topics = kafka_signal.sources_of(settings)
    if kafka_topics:
        offsets, sampler = kafka_signal.KafkaOffsets(
            **kafka_config.client_kwargs(settings)), kafka_signal.OffsetSampler()

        @app.timer(interval=step, on_leader=True)
        async def sample_kafka_signals() -> None:
            """The leader samples every kafkaTopic signal's offsets once per window and
            publishes the rate, lag and partition series as metrics (any worker's window
            agent then treats them as any producer's)."""
            try:
                if not offsets.started:
                    await offsets.start()
                for series, ts, value in await kafka_signal.sample(offsets, sampler, kafka_topics,
                                                                   time.time()):
                    await out[topics.metrics].send(key=series.encode(), value=records.dumps(
                        {"series": series, "ts": ts, "value": value}))
            except Exception:  # noqa: BLE001 - a timer never dies; the series go quiet (hold)
                log.exception("sampling the Kafka topic signals failed")
                await offsets.stop()
