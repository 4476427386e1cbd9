"""The leader's sampler of kafkaTopic signals (streams/kafka_signal.py): one timer."""

from __future__ import annotations

from collections.abc import Callable

from streams import kafka_signal, records
from streams.worker.context import WorkerContext


def install(ctx: WorkerContext, typical: Callable[[], float | None]) -> None:
    """The sampling timer, if the PredictiveScaler file names any kafkaTopic signal (``typical``:
    the newest typical series time of the input partitions windowed)."""
    app, settings, topics, out = ctx.app, ctx.settings, ctx.topics, ctx.out
    signals = kafka_signal.SignalSampler.from_settings(settings)
    if signals is not None:

        async def send_signal(series: str, ts: float, value: float) -> None:
            await out[topics.metrics].send(key=kafka_signal.series_key(series), value=records.dumps(
                {"series": series, "ts": ts, "value": value}))

        @app.timer(interval=signals.interval, on_leader=True)
        async def sample_kafka_signals() -> None:
            """The leader samples every kafkaTopic signal's offsets once per window of the
            signal clock and publishes the rate, lag and partition series as metrics (any
            worker's window agent then treats them as any producer's)."""
            await signals.tick(send_signal, typical)
