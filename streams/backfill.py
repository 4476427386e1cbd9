"""``foresight backfill``: train a series' models on its history before it goes live.

History comes from Prometheus (``--query Q --days N``: ``query_range`` at the series' step,
in chunks of at most 11,000 points, the most Prometheus answers) or from a
``timestamp,value`` CSV (``--input FILE.csv``). It is sent to ``<prefix>.history`` (one
series per message, at most :data:`MAX_WINDOWS_PER_MESSAGE` windows each), where the
worker's history agent validates it like any input and learns it in event time outside the
live windows (:mod:`streams.history`). The command then waits for the worker's receipts and
prints what was learnt and how fast::

    foresight backfill: checkout/rps: 20,160 points from Prometheus in 1.2 s; learnt 20,160
    windows (skipped 0, rejected 0) in 3.4 s: 5,929 points/s; model warm, 20,160 windows learnt in all
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2

from streams import kafka_config, records
from streams.prometheus import PrometheusClient, chunks
from streams.records import Aggregate, HistoryReceipt
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger("foresight.backfill")

#: windows per history message (about 150 bytes each plus the series id: well below the
#: 512 KiB input limit; fewer for long series ids, see :func:`windows_per_message`)
MAX_WINDOWS_PER_MESSAGE = 2_000
#: bytes of a history message at most (the input limit is 512 KiB)
MAX_MESSAGE_BYTES = 384 * 1024
#: default days of history read from Prometheus
DEFAULT_DAYS = 14.0
#: default seconds to wait for the worker to have learnt everything sent
DEFAULT_WAIT_SECONDS = 300.0


@dataclass
class History:
    """Samples read for one series, and what was wrong with the rest (by reason)."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    problems: Counter[str] = field(default_factory=Counter)
    queries: int = 0
    seconds: float = 0.0


def read_prometheus(client: PrometheusClient, query: str, start: float, end: float,
                    step: float) -> History:
    """``query`` over ``[start, end]`` at ``step`` through ``query_range``, chunk by chunk.

    A chunk with no data, several series or only non-numeric values adds nothing (counted
    in ``problems``); NaN/Inf samples are skipped (counted as ``non_numeric``). An outage or
    a bad query raises :class:`~streams.prometheus.PrometheusError`.
    """
    h = History()
    t0 = time.perf_counter()
    for a, b in chunks(start, end, step):
        r = client.query_range(query, a, b, step)
        h.queries += 1
        if r.reason is not None:
            h.problems[r.reason] += 1
            log.warning("%s over [%s, %s]: %s%s", query, _iso(a), _iso(b), r.reason,
                        f" ({r.series} series: aggregate them, e.g. sum(...))" if r.series > 1 else "")
        if r.non_numeric and r.reason is None:
            h.problems["non_numeric"] += r.non_numeric
        h.samples.extend(r.samples)
    h.seconds = time.perf_counter() - t0
    return h


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def window_aggregates(series: str, samples: Iterable[tuple[float, float]], step: float) -> list[Aggregate]:
    """Samples as one aggregate per window of ``step`` seconds (count/sum/min/max), in time order.

    >>> [(a.ts, a.count, a.sum) for a in window_aggregates("s", [(1, 2.0), (4, 4.0), (12, 1.0)], 10.0)]
    [(0.0, 2, 6.0), (10.0, 1, 1.0)]
    """
    acc: dict[float, list[float]] = {}
    for ts, v in samples:
        start = math.floor(ts / step) * step
        a = acc.get(start)
        if a is None:
            acc[start] = [1, v, v, v]
        else:
            a[0] += 1
            a[1] += v
            a[2] = min(a[2], v)
            a[3] = max(a[3], v)
    return [Aggregate(series, start, step, int(c), s, lo, hi) for start, (c, s, lo, hi) in sorted(acc.items())]


@dataclass
class Sent:
    series: str
    messages: int
    windows: int
    first: float | None
    last: float | None
    #: (first, last) window start of each message: the key of a receipt without an offset
    spans: set[tuple[float, float]] = field(default_factory=set)
    #: (partition, offset) of each message in ``history``: the receipts' key
    offsets: set[tuple[int, int]] = field(default_factory=set)


@dataclass
class Learnt:
    """The worker's receipts for one backfill, summed."""

    series: str
    receipts: int = 0
    learnt: int = 0
    skipped: int = 0
    rejected: int = 0
    warm: bool = False
    updates: int = 0
    seconds: float = 0.0
    complete: bool = False

    @property
    def rate(self) -> float:
        return self.learnt / self.seconds if self.seconds > 0 else 0.0


class HistorySender:
    """Send a series' history to ``<prefix>.history`` and wait for the worker's receipts."""

    def __init__(self, settings: Settings, producer: KafkaProducer | None = None) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        # one request in flight: a series' messages stay in order even when retried; security
        # (TLS, SASL) from the settings, as every client (streams/kafka_config.py)
        self._producer = producer or KafkaProducer(
            **kafka_config.client_kwargs(settings), acks="all", retries=5, linger_ms=5,
            max_in_flight_requests_per_connection=1, max_request_size=4 * 1024 * 1024)

    def close(self) -> None:
        self._producer.close()

    def _partition(self, topic: str, series: str) -> int:
        deadline = time.monotonic() + 30
        parts = self._producer.partitions_for(topic)
        while not parts:
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic!r} has no partitions (does it exist?)")
            time.sleep(0.2)
            parts = self._producer.partitions_for(topic)
        return (murmur2(series.encode()) & 0x7FFFFFFF) % len(parts)

    def receipts_from_now(self, series: str) -> KafkaConsumer:
        """A consumer at the current end of the series' partition of ``history.learnt``."""
        c = KafkaConsumer(**kafka_config.client_kwargs(self.settings), enable_auto_commit=False,
                          group_id=None)
        tp = TopicPartition(self.topics.history_learnt, self._partition(self.topics.history_learnt, series))
        c.assign([tp])
        c.seek_to_end(tp)
        c.position(tp)  # resolve the end now, before anything is sent
        return c

    def send(self, series: str, aggregates: Sequence[Aggregate]) -> Sent:
        """Send the aggregates (one series, time order) in messages of bounded size; wait for acks."""
        part = self._partition(self.topics.history, series)
        n = 0
        per = windows_per_message(series)
        spans = set()
        acks = []
        for i in range(0, len(aggregates), per):
            chunk = list(aggregates[i:i + per])
            spans.add((chunk[0].ts, chunk[-1].ts))
            acks.append(self._producer.send(self.topics.history, key=series.encode(),
                                            value=records.history_message(chunk), partition=part))
            n += 1
        self._producer.flush()
        offsets = {(m.partition, m.offset) for m in (a.get() for a in acks)}  # a failed send raises
        first = aggregates[0].ts if aggregates else None
        last = aggregates[-1].ts if aggregates else None
        return Sent(series, n, len(aggregates), first, last, spans, offsets)

    @staticmethod
    def wait(consumer: KafkaConsumer, sent: Sent, timeout: float, started: float) -> Learnt:
        """Read receipts for ``sent.series`` until one per message sent, or ``timeout``.

        Receipts are at least once (a worker may learn a message again after a restart, and
        a retried send may duplicate one): each message counts once, by its offset (by its
        span from a worker that names no offset). Not by its span alone: a backfill sent
        again sends the same spans, and the earlier one's receipts may be read too (two
        backfills of a series at once; a broker whose end offset lags, as the embedded one
        does after a batch of several receipts)."""
        out = Learnt(sent.series)
        seen: set[tuple[str, float | None, float]] = set()
        deadline = time.monotonic() + timeout
        try:
            while out.receipts < sent.messages and time.monotonic() < deadline:
                for msgs in consumer.poll(timeout_ms=200).values():
                    for m in msgs:
                        try:
                            r = HistoryReceipt.parse(m.value)
                        except ValueError:
                            continue
                        if r.offset is None:  # from a worker that names no offset
                            key, ours = ("span", r.start, r.end), (r.start, r.end) in sent.spans
                        else:
                            key, ours = ("at", r.partition, r.offset), (r.partition, r.offset) in sent.offsets
                        if r.series != sent.series or not ours or key in seen:
                            continue
                        seen.add(key)
                        out.receipts += 1
                        out.learnt += r.learnt
                        out.skipped += r.skipped
                        out.rejected += r.rejected
                        out.warm, out.updates = r.warm, r.updates
        finally:
            consumer.close()
        out.seconds = time.monotonic() - started
        out.complete = out.receipts >= sent.messages
        return out


def windows_per_message(series: str) -> int:
    """Windows per history message for ``series``, so a message stays under the input limit.

    >>> windows_per_message("a/b"), windows_per_message("x" * 1024)
    (1937, 321)
    """
    per_window = 200 + len(series.encode())  # numbers at full precision, the field names, the id
    return max(1, min(MAX_WINDOWS_PER_MESSAGE, MAX_MESSAGE_BYTES // per_window))


def backfill(sender: HistorySender, series: str, samples: Sequence[tuple[float, float]],
             wait_seconds: float = DEFAULT_WAIT_SECONDS) -> tuple[Sent, Learnt | None]:
    """Send ``samples`` as history of ``series`` (one aggregate per window of the worker's
    length) and, if ``wait_seconds`` > 0, wait for the worker's receipts."""
    aggregates = window_aggregates(series, samples, sender.settings.window_seconds)
    consumer = sender.receipts_from_now(series) if wait_seconds > 0 else None
    started = time.monotonic()
    sent = sender.send(series, aggregates)
    if consumer is None:
        return sent, None
    return sent, sender.wait(consumer, sent, wait_seconds, started)


def report(series: str, read: str, sent: Sent, learnt: Learnt | None) -> str:
    """The command's summary line."""
    if learnt is None:
        return f"{series}: {read}; sent {sent.windows:,} windows in {sent.messages} messages (not waiting)"
    line = (f"{series}: {read}; learnt {learnt.learnt:,} windows (skipped {learnt.skipped:,}, rejected "
            f"{learnt.rejected:,}) in {learnt.seconds:.1f} s: {learnt.rate:,.0f} points/s; model "
            f"{'warm' if learnt.warm else 'not warm yet'}, {learnt.updates:,} windows learnt in all")
    if not learnt.complete:
        line += (f"; only {learnt.receipts} of {sent.messages} messages acknowledged: is a worker "
                 "running on this broker and topic prefix?")
    return line


def describe_problems(problems: Counter[str]) -> str:
    """``no_data x2, non_numeric x5`` (empty if none)."""
    return ", ".join(f"{k} x{v}" for k, v in sorted(problems.items()))

