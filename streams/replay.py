"""``foresight produce``: replay a ``timestamp,value`` CSV through the producer helper."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from scaler.traces import read_trace
from streams.admin import ensure_topics
from streams.producer import AggregatingProducer
from streams.settings import Settings
from streams.topics import Topics


def replay_csv(settings: Settings, path: str, series: str | None = None, speed: float = 0.0,
               kind: str = "metrics") -> int:
    """Read a ``timestamp,value`` CSV and send it (:func:`send_trace`); returns rows sent.

    The whole file is read and checked (:func:`scaler.traces.read_trace`)
    before the broker is contacted: a malformed file raises
    :class:`scaler.traces.TraceError` and sends nothing.
    """
    ts_all, values, _ = read_trace(path)
    return send_trace(settings, ts_all, values, series or Path(path).stem, speed, kind)


def send_trace(settings: Settings, ts_all: Sequence[float], values: Sequence[float], name: str,
               speed: float = 0.0, kind: str = "metrics") -> int:
    """Send every point as series ``name``; ``speed`` > 0 paces them by their timestamps.

    With ``kind="events"`` a value is a count of events at that time; with
    ``kind="metrics"`` it is one sample. Returns the number of points sent.
    """
    topics = Topics.from_settings(settings)
    ensure_topics(settings, topics.all(), settings.partitions)
    sent = 0
    t_wall0 = time.monotonic()
    t_ev0: float | None = None
    with AggregatingProducer(settings.broker, interval=min(1.0, settings.window_seconds),
                             flush_every=0, settings=settings) as p:
        for ts, value in zip(ts_all, values, strict=True):
            if speed > 0:
                t_ev0 = ts if t_ev0 is None else t_ev0
                delay = (ts - t_ev0) / speed - (time.monotonic() - t_wall0)
                if delay > 0:
                    p.flush(wait=False)
                    time.sleep(delay)
            if kind == "events":
                p.record_event(name, ts, count=max(0, int(round(value))))
            else:
                p.record_metric(name, value, ts)
            sent += 1
    return sent
