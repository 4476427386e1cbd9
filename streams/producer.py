"""The producer helper services import: client-side aggregation.

Like a StatsD or Prometheus client, :class:`AggregatingProducer` accumulates
count/sum/min/max per series over an epoch-aligned interval (default 1 s)
and sends one compact aggregate per series per interval, batched per
partition, so a service emitting 100,000 requests/s sends a few messages/s.
It flushes on the interval (background thread), when the buffer is full and
on :meth:`close`, which blocks until the broker has acknowledged everything:
nothing recorded is lost on a clean shutdown.

Usage::

    from streams.producer import AggregatingProducer
    with AggregatingProducer("localhost:9092") as p:
        p.record_event("checkout/requests")          # one request, now
        p.record_metric("checkout/cpu", 0.73)         # one sample, now

Series are partitioned with Kafka's default (murmur2) partitioner on the
series id, so aggregates, single events keyed by series, and the worker's
per-series state all agree on the partition.
"""

from __future__ import annotations

import math
import threading
import time
from types import TracebackType

import orjson
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from streams import kafka_config, records
from streams.settings import Settings
from streams.topics import Topics

#: aggregates per Kafka message (keeps messages well under 1 MB)
MAX_BATCH = 500
#: aggregates per columnar message, at most (a columnar aggregate is about half a row's bytes)
MAX_COLUMNAR_BATCH = 2000
#: a columnar message is cut before its series ids and numbers pass this many bytes (the worker
#: reads messages of up to 512 KiB)
MAX_COLUMNAR_BYTES = 384 * 1024
#: bytes a columnar aggregate takes besides its series id, at most (ts, count, sum, min, max)
_COLUMNAR_NUMBERS_BYTES = 5 * 26


class AggregatingProducer:
    """Aggregate events and metric samples per series; send compact batches.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers.
    interval
        Aggregation interval in seconds of event time (must not exceed the
        worker's window); intervals are epoch-aligned.
    flush_every
        Wall-clock seconds between background flushes; ``0`` disables the
        background thread (call :meth:`flush` yourself, e.g. when replaying).
    max_buckets
        Flush as soon as this many (series, interval) buckets are pending.
    settings
        Topic names, and the Kafka security (TLS, SASL) the client connects with.
    columnar
        Send columnar batches (one array per field, ``streams.records.columnar_message``) instead
        of arrays of aggregate objects: about half the bytes, and the worker windows them without
        a Python step per aggregate. Off by default: a worker older than this format dead-letters
        a columnar batch whole (``bad_type``), so upgrade the workers first, then turn it on.
    """

    def __init__(
        self,
        bootstrap: str,
        interval: float = 1.0,
        flush_every: float = 1.0,
        max_buckets: int = 50_000,
        settings: Settings | None = None,
        producer: KafkaProducer | None = None,
        columnar: bool = False,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.topics = Topics.from_settings(settings or Settings())
        self.interval = float(interval)
        self.max_buckets = max_buckets
        self.columnar = columnar
        # security (TLS, SASL) from the settings, as every client (streams/kafka_config.py)
        self._producer = producer or KafkaProducer(
            **kafka_config.client_kwargs((settings or Settings()).replace(broker=bootstrap)),
            acks="all",
            linger_ms=5,
            retries=5,
            max_request_size=4 * 1024 * 1024,
        )
        # (topic, series, bucket start) -> [count, sum, min, max]
        self._buckets: dict[tuple[str, str, float], list[float]] = {}
        self._lock = threading.Lock()
        self._partitions: dict[str, int] = {}
        self._closed = False
        self.sent_messages = 0
        self.sent_aggregates = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if flush_every > 0:
            self._thread = threading.Thread(
                target=self._run, args=(flush_every,), name="foresight-producer", daemon=True
            )
            self._thread.start()

    # -- recording ---------------------------------------------------------
    def record_event(self, series: str, ts: float | None = None, count: int = 1,
                     value: float | None = None) -> None:
        """Count ``count`` events of ``series`` at event time ``ts`` (default now)."""
        self._add(self.topics.events, series, ts, count, value)

    def record_metric(self, series: str, value: float, ts: float | None = None) -> None:
        """Record one sample of a metric series (averaged per window by the worker)."""
        if not math.isfinite(value):
            raise ValueError(f"metric value must be finite, got {value!r}")
        self._add(self.topics.metrics, series, ts, 1, value)

    def _add(self, topic: str, series: str, ts: float | None, count: int, value: float | None) -> None:
        if self._closed:
            raise RuntimeError("producer is closed")
        if not series:
            raise ValueError("series must be a non-empty string")
        t = time.time() if ts is None else float(ts)
        start = math.floor(t / self.interval) * self.interval
        key = (topic, series, start)
        with self._lock:
            acc = self._buckets.get(key)
            if acc is None:
                if value is None:
                    self._buckets[key] = [count, 0.0, math.inf, -math.inf]
                else:
                    self._buckets[key] = [count, value * count, value, value]
            else:
                acc[0] += count
                if value is not None:
                    acc[1] += value * count
                    if value < acc[2]:
                        acc[2] = value
                    if value > acc[3]:
                        acc[3] = value
            full = len(self._buckets) >= self.max_buckets
        if full:
            self.flush(wait=False)

    # -- sending -----------------------------------------------------------
    def _partition_count(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            parts = None
            deadline = time.monotonic() + 30
            while not parts:
                parts = self._producer.partitions_for(topic)
                if not parts and time.monotonic() > deadline:
                    raise RuntimeError(f"topic {topic!r} has no partitions (does it exist?)")
            n = self._partitions[topic] = len(parts)
        return n

    def flush(self, wait: bool = True) -> int:
        """Send every pending aggregate; with ``wait``, block until acknowledged."""
        with self._lock:
            buckets, self._buckets = self._buckets, {}
        by_partition: dict[tuple[str, int], list[dict[str, object]]] = {}
        for (topic, series, start), (count, total, lo, hi) in buckets.items():
            n = self._partition_count(topic)
            part = (murmur2(series.encode()) & 0x7FFFFFFF) % n
            agg: dict[str, object] = {
                "series": series, "ts": start, "interval": self.interval, "count": int(count),
                "sum": total,
            }
            if math.isfinite(lo):
                agg["min"], agg["max"] = lo, hi
            by_partition.setdefault((topic, part), []).append(agg)
        sent = 0
        for (topic, part), aggs in by_partition.items():
            for chunk in (self._columnar_chunks(aggs) if self.columnar else
                          (aggs[i : i + MAX_BATCH] for i in range(0, len(aggs), MAX_BATCH))):
                if self.columnar:
                    self._producer.send(topic, value=records.columnar_message(chunk, self.interval),
                                        partition=part)
                elif len(chunk) == 1:
                    key = str(chunk[0]["series"]).encode()
                    self._producer.send(topic, value=orjson.dumps(chunk[0]), key=key, partition=part)
                else:
                    self._producer.send(topic, value=orjson.dumps(chunk), partition=part)
                sent += 1
                self.sent_aggregates += len(chunk)
        self.sent_messages += sent
        if wait:
            self._producer.flush()
        return sent

    @staticmethod
    def _columnar_chunks(aggs: list[dict[str, object]]) -> list[list[dict[str, object]]]:
        """``aggs`` cut into columnar messages of at most MAX_COLUMNAR_BATCH aggregates and about
        MAX_COLUMNAR_BYTES."""
        out: list[list[dict[str, object]]] = []
        chunk: list[dict[str, object]] = []
        size = 0
        for a in aggs:
            n = len(str(a["series"])) * 4 + _COLUMNAR_NUMBERS_BYTES
            if chunk and (len(chunk) >= MAX_COLUMNAR_BATCH or size + n > MAX_COLUMNAR_BYTES):
                out.append(chunk)
                chunk, size = [], 0
            chunk.append(a)
            size += n
        if chunk:
            out.append(chunk)
        return out

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.flush(wait=False)
            except Exception:  # noqa: BLE001 - keep flushing; close() reports errors
                pass

    def close(self) -> None:
        """Flush everything pending, wait for acknowledgements and close."""
        if self._closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush(wait=True)
        self._closed = True
        self._producer.close()

    def __enter__(self) -> AggregatingProducer:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
