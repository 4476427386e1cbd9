"""Throughput of the worker on the embedded broker, against a raw consumer, in one run.

The default run (``make bench``: ``--series 1000 10000 100000 --seeded 100 --warm 10``) prints
JSON with, under ``summary``, issue 14's figures:

- ``ratio_worker_vs_raw``: single-event messages/s through the worker vs a raw aiokafka
  ``getmany`` + ``orjson.loads`` loop (the worker's parser) over the same topic;
- per series count:
  ``ratio_worker_vs_raw_aggregates``: client-aggregated ingest (the producer helper, 1-s
  aggregates) through the worker vs the same raw loop (``batched``);
  ``model_updates_per_s``: points in to forecasts out, draining a backlog of ``--backlog``
  windows of every series, on warm models (``model_path``);
  ``model_updates_per_s_to_checkpoints_written``: the same updates over the time until the
  checkpoints they made due are written too (the agent writes them while it learns on);
  ``window_close_to_forecast_s_steady``: p50/p99 from a window's points message to its forecast,
  ``--paced`` windows published one per window length (Kafka record timestamps);
  ``rss_per_series_bytes``: the worker's RSS after the warm windows minus an idle worker's, per
  series (everything: models, views, and with ``FORESIGHT_TABLE_STORE=memory`` the tables' copies
  of the checkpoints; on disk, their file is ``table_file_bytes_per_series``).

Warm models: every series' model is restored from a signed checkpoint trained in-process on
``--seeded`` windows (:func:`seed_checkpoints`, written to the ``models`` table's changelog as
the model agent writes them), then ``--warm`` windows are learnt through the worker (every series
checkpoints its model and view once in them). A series count whose need exceeds the machine's
free memory is skipped, and says so.

- model path only (``--model-path``): points written straight to the ``points`` topic, ``--warm``
  windows first (after ``--seeded``), then a backlog of ``--windows`` windows, then ``--paced``;
  ``--tracemalloc``: the worker's heap after the warm windows by file and allocation site.
- cardinality probe only (``--cardinality DISTINCT LIMIT``).

Usage: ``python benchmarks/throughput.py --series 1000 10000 100000 --seeded 100 --warm 10``
       ``python benchmarks/throughput.py --model-path --series 10000 --seeded 100 --warm 10 --windows 3``
       ``python benchmarks/throughput.py --cardinality 200000 50000``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detectors.defaults import make_series_model  # noqa: E402
from streams import records  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.broker import EmbeddedBroker, free_port, wait_for_port  # noqa: E402
from streams.checkpoint import Checkpointer  # noqa: E402
from streams.producer import AggregatingProducer  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.topics import Topics  # noqa: E402

WINDOW = 10.0
T0 = 1_700_000_000.0
BENCH_KEY = b"bench-key-0123456789abcdef"


@contextlib.contextmanager
def profiled(w: Worker, step: str, subprocesses: bool = False) -> Iterator[None]:
    """py-spy of the worker while the block runs, to ``$FORESIGHT_BENCH_PYSPY-<step>.raw`` (py-spy's
    raw format, every thread, idle samples too: ``benchmarks/pyspy_summary.py``), when that variable
    is set; ``subprocesses``: its window processes too. py-spy writes its profile when interrupted."""
    out = os.environ.get("FORESIGHT_BENCH_PYSPY")
    if not out:
        yield
        return
    spy = subprocess.Popen(["py-spy", "record", "-p", str(w.proc.pid), "-r", "100", "-f", "raw",
                            "-o", f"{out}-{step}.raw", "--nonblocking", "--threads", "--idle",
                            *(["--subprocesses"] if subprocesses else [])],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=120) as r:  # noqa: S310 (a traced worker is slow)
        text = r.read().decode()
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                total += s.value
    return total


#: a worker under tracemalloc (``--tracemalloc``): writes its heap grouped by file and by
#: allocation site to ``$FORESIGHT_BENCH_TRACE.json`` whenever ``$FORESIGHT_BENCH_TRACE.go`` appears
TRACED_WORKER = """
import json, os, sys, threading, time, tracemalloc
tracemalloc.start(4)
path = os.environ["FORESIGHT_BENCH_TRACE"]
root = os.getcwd() + os.sep

def where(frame):
    return frame.filename.replace(root, "")

def dump():
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    by_file = {}
    for st in snap.statistics("traceback"):
        # the innermost frame in the repository (else the innermost): numpy's and Faust's
        # allocations are charged to the line of ours that asked for them
        ours = [f for f in st.traceback if f.filename.startswith(root) and ".venv" not in f.filename]
        f = ours[-1] if ours else st.traceback[-1]
        by_file[where(f)] = by_file.get(where(f), 0) + st.size
    lines = [{"bytes": st.size, "blocks": st.count,
              "at": " < ".join(f"{where(f)}:{f.lineno}" for f in reversed(st.traceback))}
             for st in snap.statistics("traceback")[:40]]
    total = sum(st.size for st in snap.statistics("filename"))
    with open(path + ".json", "w") as f:
        json.dump({"traced_bytes": total, "by_file": dict(sorted(by_file.items(), key=lambda kv: -kv[1])[:40]),
                   "by_line": lines}, f, indent=1)

def watch():
    while True:
        if os.path.exists(path + ".go"):
            os.remove(path + ".go")
            dump()
        time.sleep(0.2)

threading.Thread(target=watch, daemon=True).start()
from streams.cli import main
sys.argv = ["foresight", "worker"]
sys.exit(main())
"""


class Worker:
    def __init__(self, broker: str, prefix: str, workdir: Path, trace: bool = False, **extra: str) -> None:
        self.port = free_port()
        #: :meth:`cpu_split` when :meth:`wait_counter` saw its counter first move
        self.split_at_start: tuple[float, float] = (0.0, 0.0)
        self.trace = str(workdir / f"{prefix}.trace") if trace else None
        env = {**os.environ, "FORESIGHT_BROKER": broker, "FORESIGHT_TOPIC_PREFIX": prefix,
               "FORESIGHT_APP_ID": f"{prefix}-app", "FORESIGHT_WEB_PORT": str(self.port),
               "FORESIGHT_WINDOW_SECONDS": str(WINDOW), "FORESIGHT_DATA_DIR": str(workdir / prefix),
               "FORESIGHT_MODEL_KEY": BENCH_KEY.decode(), "FORESIGHT_MAX_SERIES": "1000000", "FORESIGHT_LOG_LEVEL": "warning",
               "FORESIGHT_CHECKPOINT_EVERY": "10", **extra}
        cmd = [sys.executable, "-m", "streams", "worker"]
        if self.trace:
            env["FORESIGHT_BENCH_TRACE"] = self.trace
            cmd = [sys.executable, "-c", TRACED_WORKER]
        self.log = open(workdir / f"{prefix}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port("127.0.0.1", self.port, 60, self.proc)

    def processes(self) -> list[psutil.Process]:
        """The worker's process and its children (the window process, ``--window-process``)."""
        p = psutil.Process(self.proc.pid)
        try:
            return [p, *p.children(recursive=True)]
        except psutil.Error:
            return [p]

    def rss(self) -> int:
        """Resident bytes of the worker (and its window process)."""
        return sum(p.memory_info().rss for p in self.processes())

    def cpu_seconds(self) -> float:
        """The worker's CPU time so far (user + system; its window process's too)."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """:meth:`cpu_seconds` of the worker's own process, and of its window processes."""
        own, *children = ((t.user + t.system) for t in (p.cpu_times() for p in self.processes()))
        return own, sum(children)

    def table_file_bytes(self) -> int:
        """Bytes of the worker's table files (``FORESIGHT_TABLE_STORE=disk``: sqlite files it
        keeps open, already unlinked: found through its open descriptors)."""
        fds = Path(f"/proc/{self.proc.pid}/fd")
        total = 0
        for fd in fds.iterdir():
            try:
                if "/table-" in os.readlink(fd):
                    total += fd.stat().st_size
            except OSError:  # closed meanwhile
                continue
        return total

    def heap(self, timeout: float = 300) -> dict[str, object] | None:
        """The traced worker's heap by file and by line (None unless started with ``trace``)."""
        if not self.trace:
            return None
        out = Path(self.trace + ".json")
        out.unlink(missing_ok=True)
        Path(self.trace + ".go").touch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if out.exists():
                time.sleep(0.5)  # written in one go; let it finish
                return json.loads(out.read_text())
            time.sleep(0.5)
        return None

    def wait_counter(self, name: str, target: float, timeout: float = 900,
                     start: float | None = None) -> tuple[float, float, float]:
        """(seconds from ``start`` -- default: the counter's first move -- to
        reaching ``target``, the value reached, the start used)."""
        deadline = time.monotonic() + timeout
        base = metric(self.port, name)
        v = base
        while time.monotonic() < deadline:
            v = metric(self.port, name)
            if start is None and v > base:
                start = time.monotonic()
                self.split_at_start = self.cpu_split()
            if v >= target:
                break
            time.sleep(0.05)
        start = start or time.monotonic()
        return time.monotonic() - start, v, start

    def settle(self, quiet: float = 1.0, timeout: float = 300) -> float:
        """Wait until the worker's checkpoint count has not moved for ``quiet`` seconds: the model
        agent writes checkpoints once it is idle (streams/worker/models.py PendingCheckpoints), so
        a step's checkpoints are its own, not the next step's. Returns when (monotonic, to 0.1 s)
        the count was last seen to move (or the wait started)."""
        deadline, last, since = time.monotonic() + timeout, -1.0, time.monotonic()
        while time.monotonic() < deadline:
            now = metric(self.port, "foresight_checkpoints_total")
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
            time.sleep(0.1)
        return since

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


async def raw_consume(broker: str, topic: str, expected_msgs: int) -> dict[str, float]:
    """Baseline: aiokafka getmany + the worker's JSON parser (orjson, streams/records.py) over
    every message of a topic, so the ratio measures the pipeline, not the parser."""
    c = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, auto_offset_reset="earliest",
                         max_partition_fetch_bytes=8 * 1024 * 1024)
    await c.start()
    parts = c.partitions_for_topic(topic)
    while not parts:
        await c._client.force_metadata_update()  # noqa: SLF001
        parts = c.partitions_for_topic(topic)
    c.assign([TopicPartition(topic, p) for p in parts])
    n = events = 0
    t0 = time.perf_counter()
    while n < expected_msgs:
        batch = await c.getmany(timeout_ms=1000, max_records=10000)
        if not batch and time.perf_counter() - t0 > 120:
            break
        for msgs in batch.values():
            for m in msgs:
                body = orjson.loads(m.value)
                if isinstance(body, list):
                    events += sum(a.get("count", 1) for a in body)
                elif isinstance(body.get("count"), list):  # a columnar batch (records.InputColumns)
                    events += sum(body["count"])
                else:
                    events += body.get("count", 1)
                n += 1
    dt = time.perf_counter() - t0
    await c.stop()
    return {"messages": n, "events": events, "seconds": dt, "messages_per_s": n / dt, "events_per_s": events / dt}


def forecast_delays(broker: str, topics: Topics, expected: int) -> list[tuple[float, float]]:
    """(window start, seconds from its point's publication to its forecast's publication)."""

    async def run() -> list[tuple[float, float]]:
        c = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        tps = []
        for t in (topics.points, topics.forecasts):
            tps += [TopicPartition(t, p) for p in c.partitions_for_topic(t) or []]
        c.assign(tps)
        pts: dict[tuple[str, float], int] = {}
        fcs: dict[tuple[str, float], int] = {}
        idle = 0
        while len(fcs) < expected and idle < 10:
            batch = await c.getmany(timeout_ms=500, max_records=20000)
            idle = 0 if batch else idle + 1
            for tp, msgs in batch.items():
                for m in msgs:  # one record or a batch (streams/records.py)
                    if tp.topic == topics.points:
                        for p in records.parse_points(m.value).items:
                            pts[(p.series, p.start)] = m.timestamp
                    else:
                        for f in records.parse_forecasts(m.value).items:
                            fcs[(f.forecast.series, f.forecast.issued)] = m.timestamp
        await c.stop()
        return [(k[1], (fcs[k] - pts[k]) / 1000) for k in fcs if k in pts]

    return asyncio.run(run())


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (0 if None)."""
    if pid is None:
        return 0.0
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def bench_batched(broker: str, workdir: Path, series: int, windows: int, steady: bool = True,
                  columnar: bool = False, broker_pid: int | None = None) -> dict[str, object]:
    """Client-aggregated ingest through the whole worker; ``steady``: then 4 windows at wall-clock
    pace for the window close -> forecast delay (``make bench`` takes that, and the model path's
    figures, from :func:`bench_model_path` on warm models instead). ``columnar``: the producer
    helper sends columnar batches (``AggregatingProducer(columnar=True)``), the raw loop reads
    those same messages."""
    prefix = f"bb{uuid.uuid4().hex[:6]}"
    settings = Settings(topic_prefix=prefix)
    topics = Topics.from_settings(settings)
    ensure_topics(broker, topics.all(), settings.partitions)
    names = [f"svc{i:05d}/requests" for i in range(series)]
    # every series: one aggregate per 1-second interval, 100 events each
    with AggregatingProducer(broker, interval=1.0, flush_every=0, settings=settings, columnar=columnar) as p:
        for s in range(int(windows * WINDOW)):
            for n in names:
                p.record_event(n, T0 + s, count=100)
            if s % 5 == 4:
                p.flush()
        msgs, aggs = p.sent_messages, p.sent_aggregates
    raw = asyncio.run(raw_consume(broker, topics.events, msgs))
    w = Worker(broker, prefix, workdir)
    try:
        rss0 = w.rss()
        broker0 = _process_cpu(broker_pid)
        with profiled(w, "ingest", subprocesses=True):
            secs, got, t_start = w.wait_counter("foresight_messages_in_total", msgs)
        split = [b - a for a, b in zip(w.split_at_start, w.cpu_split(), strict=True)]
        cpu = sum(split)
        broker_cpu = _process_cpu(broker_pid) - broker0  # (from before the first message read)
        busy = metric(w.port, "foresight_window_agent_seconds_total")
        learnt = metric(w.port, "foresight_model_updates_total")
        closed = (windows - 3) * series
        # the whole backlog: from the first message read to the last forecast published
        fsecs, fgot, _ = w.wait_counter("foresight_forecasts_out_total", closed, start=t_start)
        rss1 = w.rss()
        upd = metric(w.port, "foresight_model_update_seconds_sum")
        updn = metric(w.port, "foresight_model_updates_total")
        backlog_delays = [d for _, d in forecast_delays(broker, topics, closed)] if steady else []
        # steady state: the next windows produced at wall-clock pace
        paced = 4 if steady else 0
        with AggregatingProducer(broker, interval=1.0, flush_every=0, settings=settings,
                                 columnar=columnar) as p:
            for s in range(int(windows * WINDOW), int((windows + paced) * WINDOW)):
                tick = time.monotonic()
                for n in names:
                    p.record_event(n, T0 + s, count=100)
                p.flush()
                time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        total = (windows + paced - 3) * series
        first_paced = T0 + (windows - 3) * WINDOW
        if paced:
            w.wait_counter("foresight_forecasts_out_total", total, timeout=120)
        delays = [d for start, d in forecast_delays(broker, topics, total) if start >= first_paced] if paced else []
    finally:
        w.stop()
    events = aggs * 100
    model = make_series_model(WINDOW)
    for i in range(windows):
        model.update(100.0 + i % 7, T0 + i * WINDOW)
    return {
        "series": series,
        "windows": windows,
        "format": "columnar" if columnar else "rows",
        "messages": msgs,
        "aggregates": aggs,
        "events": events,
        "worker_messages_per_s": got / secs if secs else None,
        "worker_aggregates_per_s": aggs / secs if secs else None,
        "worker_events_per_s": events / secs if secs else None,
        "raw_messages_per_s": raw["messages_per_s"],
        "raw_events_per_s": raw["events_per_s"],
        "ratio_worker_vs_raw_messages": (got / secs) / raw["messages_per_s"] if secs else None,
        # the ratios (issue 14): aggregates/s through the worker vs the raw loop's
        "ratio_worker_vs_raw_aggregates": ((aggs / secs) / (aggs / raw["seconds"])
                                           if secs and raw["seconds"] else None),
        # the window agent's own time parsing and windowing (not the fetch, not publishing, not the
        # model agent that shares its event loop; GIL and CPU contention included)
        "window_agent_busy_s": busy,
        "window_agent_aggregates_per_busy_s": aggs / busy if busy else None,
        "ratio_window_agent_busy_vs_raw_aggregates": ((aggs / busy) / (aggs / raw["seconds"])
                                                      if busy and raw["seconds"] else None),
        # where a worker's aggregate goes, against the raw loop's (issue 14's note): the worker's
        # CPU (every thread) from its first message read to its last, per aggregate; the window
        # agent's part; the model updates learnt meanwhile on the same event loop
        "raw_us_per_aggregate": 1e6 * raw["seconds"] / aggs,
        "worker_cpu_us_per_aggregate": 1e6 * cpu / aggs,
        "window_agent_busy_us_per_aggregate": 1e6 * busy / aggs,
        # the same CPU by process: the worker's own (model agent, bank growth for the new series,
        # web), its window processes', and the broker's (which the raw loop has to itself)
        "cpu_us_per_aggregate_by_process": {"worker": 1e6 * split[0] / aggs, "window_processes": 1e6 * split[1] / aggs,
                                            "broker": 1e6 * broker_cpu / aggs if broker_pid else None},
        "model_updates_while_reading": learnt,
        # end to end, points in to forecasts out, draining the backlog
        "model_updates_per_s": fgot / fsecs if fsecs else None,
        "model_updates": fgot,
        "backlog_model_updates_per_s": fgot / fsecs if fsecs else None,
        "model_update_mean_us": 1e6 * upd / updn if updn else None,
        "model_updates_per_s_per_core": updn / upd if upd else None,
        "rss_per_series_bytes": (rss1 - rss0) / series,
        "pickled_model_bytes": len(Checkpointer(b"x" * 32).dumps(model, names[0].encode())),
        "window_close_to_forecast_s_backlog": {
            "p50": pct(backlog_delays, 0.5), "p99": pct(backlog_delays, 0.99), "n": len(backlog_delays)},
        "window_close_to_forecast_s_steady": {
            "p50": pct(delays, 0.5), "p99": pct(delays, 0.99), "n": len(delays)},
    }


def bench_single(broker: str, workdir: Path, messages: int) -> dict[str, object]:
    prefix = f"bs{uuid.uuid4().hex[:6]}"
    settings = Settings(topic_prefix=prefix)
    topics = Topics.from_settings(settings)
    ensure_topics(broker, topics.all(), settings.partitions)
    prod = KafkaProducer(bootstrap_servers=broker, linger_ms=20, batch_size=256 * 1024)
    for i in range(messages):
        s = f"svc{i % 100}/requests"
        prod.send(topics.events, key=s.encode(), value=orjson.dumps({"series": s, "ts": T0 + i / 100}))
    prod.flush()
    prod.close()
    raw = asyncio.run(raw_consume(broker, topics.events, messages))
    w = Worker(broker, prefix, workdir)
    try:
        secs, got, _ = w.wait_counter("foresight_messages_in_total", messages)
        busy = metric(w.port, "foresight_window_agent_seconds_total")
    finally:
        w.stop()
    return {
        "messages": messages,
        "worker_messages_per_s": got / secs if secs else None,
        "raw_messages_per_s": raw["messages_per_s"],
        "ratio_worker_vs_raw": (got / secs) / raw["messages_per_s"] if secs else None,
        # the window agent's own time (see bench_batched)
        "window_agent_busy_s": busy,
        "window_agent_messages_per_busy_s": got / busy if busy else None,
        "ratio_window_agent_busy_vs_raw": (got / busy) / raw["messages_per_s"] if busy else None,
    }


def bench_cardinality(broker: str, workdir: Path, distinct: int, limit: int) -> dict[str, object]:
    """The cardinality probe: one producer sends ``distinct`` series ids (a request id in the
    name) to a worker limited to ``limit`` series; the rest must be ``series_limit`` dead letters."""
    prefix = f"bc{uuid.uuid4().hex[:6]}"
    settings = Settings(topic_prefix=prefix)
    topics = Topics.from_settings(settings)
    ensure_topics(broker, topics.all(), settings.partitions)
    w = Worker(broker, prefix, workdir, FORESIGHT_MAX_SERIES=str(limit))
    try:
        rss0 = w.rss()
        with AggregatingProducer(broker, interval=1.0, flush_every=0, settings=settings) as p:
            for w_ in range(4):  # 4 windows: the first ones close, so the held series get models
                for i in range(distinct):
                    p.record_event(f"api/req-{i:07d}", T0 + w_ * WINDOW, count=1)
                    if i % 5000 == 4999:
                        p.flush()
                p.flush()
            msgs = p.sent_messages
        secs, got, _ = w.wait_counter("foresight_messages_in_total", msgs, timeout=600)
        refused = 0.0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            refused = metric(w.port, "foresight_dead_letter_elements_total")
            if refused >= 4 * (distinct - limit):
                break
            time.sleep(0.5)
        w.wait_counter("foresight_forecasts_out_total", 2 * limit, timeout=120)
        rss1 = w.rss()
        held = metric(w.port, "foresight_series_held")
    finally:
        w.stop()
    from streams.settings import MEMORY_HEADROOM, WORKER_BASE_MB

    # the memory limit the documented sizing (README "Sizing a worker") gives ``limit`` series
    # (the worker's table store is the environment's, as the worker's own settings)
    series_bytes = Settings.from_env().series_bytes()
    sized = (WORKER_BASE_MB + limit * series_bytes / 2**20) / (1 - MEMORY_HEADROOM)
    return {"distinct_series": distinct, "limit": limit, "messages": msgs, "seconds": secs,
            "dead_lettered_elements": refused, "expected_dead_lettered_elements": 4 * (distinct - limit),
            "series_held_gauge": held, "rss_before_mb": rss0 / 2**20, "rss_after_mb": rss1 / 2**20,
            "sized_memory_limit_mb": sized, "within_sizing": rss1 / 2**20 <= sized}


def points_messages(names: list[str], window: int, partitions: int) -> list[tuple[int, bytes]]:
    """(partition, message) of one window of every series, batched per partition as the worker's
    window agent publishes them."""
    from streams.web.cluster import partition_for

    by_part: dict[int, list[records.Point]] = {}
    start = T0 + window * WINDOW
    for i, n in enumerate(names):
        v = 100.0 + 10.0 * ((window + i) % 12) + i % 7
        by_part.setdefault(partition_for(n, partitions), []).append(
            records.Point(n, start, start + WINDOW, 1, v, v, v, v))
    return [(part, body) for part, pts in by_part.items() for _, body in records.points_batches(pts)]


def end_offsets(broker: str, topics: list[str]) -> dict[TopicPartition, int]:
    async def run() -> dict[TopicPartition, int]:
        c = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
        await c.start()
        try:
            return await c.end_offsets([TopicPartition(t, p) for t in topics
                                        for p in c.partitions_for_topic(t) or []])
        finally:
            await c.stop()

    return asyncio.run(run())


def read_to_end(broker: str, topics: list[str], start: dict[TopicPartition, int],
                each: Callable[[str, ConsumerRecord], None]) -> None:
    """``each(topic, record)`` of every record of ``topics`` from the ``start`` offsets (a partition
    not in them: from its beginning) to the end offsets when the reading starts."""

    async def run() -> None:
        c = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, auto_offset_reset="earliest",
                             max_partition_fetch_bytes=8 * 1024 * 1024)
        await c.start()
        tps = [TopicPartition(t, p) for t in topics for p in c.partitions_for_topic(t) or []]
        c.assign(tps)
        end = await c.end_offsets(tps)
        for tp in tps:
            if tp in start:
                c.seek(tp, start[tp])
        while any([await c.position(tp) < end[tp] for tp in tps]):
            for tp, msgs in (await c.getmany(timeout_ms=500, max_records=20000)).items():
                for m in msgs:
                    each(tp.topic, m)
        await c.stop()

    asyncio.run(run())


#: (series, window start) -> publication time (the broker's, milliseconds)
Published = dict[tuple[str, float], int]


def publication_times(broker: str, topics: Topics, start: dict[TopicPartition, int]) -> tuple[Published, Published]:
    """The publication time of every point and of every forecast from the ``start``
    offsets, by (series, window start), reading only the series and window of each element (a
    strict parse of 100,000s of forecasts would take minutes)."""

    def keys(obj: object) -> list[tuple[str, float]]:
        if isinstance(obj, dict) and isinstance(obj.get("series"), list):  # a columnar batch
            names = obj["series"]
            at = obj["issued"] if "issued" in obj else obj["start"]  # forecasts / points
            return list(zip(names, at if isinstance(at, list) else [at] * len(names), strict=True))
        items = obj if isinstance(obj, list) else [obj]
        return [(o["series"], o["issued"] if "issued" in o else o["start"]) for o in items]

    pts: Published = {}
    fcs: Published = {}

    def each(topic: str, m: ConsumerRecord) -> None:
        into = pts if topic == topics.points else fcs
        for k in keys(records.message_json(m.value)):  # (forecasts: framed batches)
            into[k] = m.timestamp

    read_to_end(broker, [topics.points, topics.forecasts], start, each)
    return pts, fcs


def append_times(broker: str, topic: str, start: dict[TopicPartition, int]) -> list[float]:
    """The publication times (seconds, sorted) of ``topic``'s records from the ``start`` offsets,
    read without decoding them."""
    out: list[float] = []
    read_to_end(broker, [topic], start, lambda _, m: out.append(m.timestamp / 1000))
    return sorted(out)


def window_timelines(pts: Published, fcs: Published, since: float,
                     checkpoints: list[float]) -> list[dict[str, float]]:
    """Per window starting at or after ``since``, seconds from its first point's publication to its
    last point's, to its first and last forecast's (whether a window's latency is the points'
    arrival, the model agent's work, or a wait between them), and to the first and last of the
    ``checkpoints`` (their records' publication times) published before the next window's first
    point."""
    by_window: dict[float, tuple[list[float], list[float]]] = {}
    for into, times in ((0, pts), (1, fcs)):
        for (_, start), t in times.items():
            if start >= since:
                by_window.setdefault(start, ([], []))[into].append(t / 1000)
    windows = [by_window[k] for k in sorted(by_window) if all(by_window[k])]
    firsts = [min(p) for p, _ in windows] + [math.inf]
    out = []
    for i, (p, f) in enumerate(windows):
        t0 = firsts[i]
        row = {"points_last": round(max(p) - t0, 3), "forecasts_first": round(min(f) - t0, 3),
               "forecasts_last": round(max(f) - t0, 3)}
        mine = [t for t in checkpoints if t0 <= t < firsts[i + 1]]
        row["checkpoints"] = len(mine)
        if mine:
            row["checkpoints_first"], row["checkpoints_last"] = round(mine[0] - t0, 3), round(mine[-1] - t0, 3)
        out.append(row)
    return out


#: the benchmark's values repeat every 84 series (``points_messages``: a 12-window cycle shifted by
#: the series' number, plus its number mod 7), so 84 trained rows are every series' trained state
PROTOTYPES = 84


def seed_checkpoints(broker: str, settings: Settings, names: list[str], windows: int,
                     key: bytes) -> tuple[float, int]:
    """Warm models without running ``windows`` windows of every series through a worker: a
    bank of the worker's configuration learns the benchmark's first ``windows`` windows of
    :data:`PROTOTYPES` series in-process, and every series' signed raw row record (as the model
    agent writes them, ``FSB3``, signed for that series) goes to the ``models`` table's changelog, on the partition the
    worker's own checkpoint would. The worker restores them as any other worker restores its
    partitions' checkpoints. Returns the seconds it took and the bytes written."""
    from detectors.bank import SeriesBank
    from streams.steps import model_shape
    from streams.web.cluster import partition_for
    from streams.worker.changelog import send_round

    t = time.monotonic()
    period, horizon = model_shape(settings, WINDOW)
    bank = SeriesBank.for_config(WINDOW, period, horizon, settings.anomaly_threshold, capacity=PROTOTYPES)
    rows = np.array([bank.add() for _ in range(PROTOTYPES)])
    i = np.arange(PROTOTYPES)
    for w in range(windows):  # the values of points_messages, window by window
        bank.update(rows, 100.0 + 10.0 * ((w + i) % 12) + i % 7, np.full(PROTOTYPES, T0 + w * WINDOW))
    states, layout = bank.row_bytes_of(rows), bank.layout
    assert states is not None and layout is not None, "the default configuration's bank gives raw rows"
    signer = Checkpointer(key)  # each series' copy signed for it: a checkpoint is bound to its series
    changelog = f"{settings.app_id}-models-changelog"
    ensure_topics(broker, [changelog], settings.partitions)

    async def send() -> None:  # aiokafka: its record batches are built (and CRC'd) in C
        from aiokafka import AIOKafkaProducer

        prod = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=20, max_batch_size=1024 * 1024,
                                max_request_size=8 * 1024 * 1024)
        await prod.start()
        try:
            rounds: dict[int, list[tuple[bytes, bytes]]] = {}  # per partition: its checkpoints
            for n, name in enumerate(names):
                [blob] = signer.dumps_rows(WINDOW, layout, [name.encode()], [states[n % PROTOTYPES]])
                sent[0] += len(blob)
                rounds.setdefault(partition_for(name, settings.partitions), []).append((name.encode(), blob))
            # as the worker's changelog writer sends them: each partition's last record in a batch
            # of its own, so the end offset the embedded broker reports covers it and a table's
            # recovery reads every checkpoint (until session 19 the benchmark used a plain send:
            # of each partition's last batch only the first was restored; 4 of 1,000 at 1,000 series)
            for part, records in rounds.items():
                await send_round(prod, changelog, part, records)
            await prod.flush()
        finally:
            await prod.stop()

    sent = [0]
    asyncio.run(send())
    return time.monotonic() - t, sent[0]


#: bytes a series costs the worker and the in-memory broker in the ingest step (cold models)
BATCHED_BYTES = 150_000


def memory_short(need: float) -> str | None:
    """Why a step needing ``need`` bytes (worker and broker) is skipped, or None if it fits."""
    need = need * 1.1 + 1.5 * 2**30
    free = psutil.virtual_memory().available
    if free >= need:
        return None
    return (f"needs ~{need / 2**30:.1f} GiB free (the worker and the in-memory broker's data), "
            f"{free / 2**30:.1f} GiB available")


def baseline_rss(broker: str, workdir: Path) -> int:
    """Resident bytes of a worker that holds no series (started, given a few seconds, stopped)."""
    prefix = f"b0{uuid.uuid4().hex[:6]}"
    settings = Settings(topic_prefix=prefix)
    ensure_topics(broker, Topics.from_settings(settings).all(), settings.partitions)
    w = Worker(broker, prefix, workdir)
    try:
        time.sleep(5)
        return w.rss()
    finally:
        w.stop()


def bench_model_path(broker: str, workdir: Path, series: int, warm: int, windows: int,
                     paced: int = 3, trace: bool = False, seeded: int = 0, rss_base: int | None = None,
                     broker_pid: int | None = None, **extra: str) -> dict[str, object]:
    """The model agent alone: points in, forecasts out, on warm models, draining a backlog.
    ``trace``: the worker runs under tracemalloc and its heap after the warm-up is returned too.
    ``seeded``: the models first restored from checkpoints trained on that many windows
    (:func:`seed_checkpoints`), then ``warm`` windows learnt through the worker.
    ``rss_base``: resident bytes of a worker holding nothing (else the worker's own at start).
    ``broker_pid``: the broker's process, whose RSS after the warm windows is returned too."""
    prefix = f"bm{uuid.uuid4().hex[:6]}"
    settings = Settings(topic_prefix=prefix, app_id=f"{prefix}-app")
    topics = Topics.from_settings(settings)
    ensure_topics(broker, topics.all(), settings.partitions)
    names = [f"svc{i:06d}/requests" for i in range(series)]
    prod = KafkaProducer(bootstrap_servers=broker, linger_ms=5, batch_size=1024 * 1024,
                         max_request_size=8 * 1024 * 1024)

    def encode(first: int, last: int) -> list[tuple[int, bytes]]:
        return [m for w in range(first, last) for m in points_messages(names, w, settings.partitions)]

    def send(messages: list[tuple[int, bytes]]) -> None:
        for part, body in messages:
            prod.send(topics.points, value=body, partition=part)
        prod.flush()

    def produce(first: int, last: int) -> None:
        send(encode(first, last))

    seed_secs, seed_bytes = seed_checkpoints(broker, settings, names, seeded, BENCH_KEY) if seeded else (0.0, 0)
    first = seeded  # the worker learns the windows after those its checkpoints were trained on
    w = Worker(broker, prefix, workdir, trace=trace, **extra)
    heap = None
    try:
        rss0 = w.rss() if rss_base is None else rss_base
        if seed_bytes:
            # points only once the worker has read the checkpoints back (foresight_tables_ready: its
            # table recovery done). A points message Faust drops while it recovers a table at
            # start-up is never learnt when the group has no committed offset yet
            # (streams/worker/models.py in_order takes the first message it sees as the partition's
            # start): the benchmark would wait for it forever. (Until session 19: until the worker's
            # RSS and table files had grown by the checkpoints' bytes, which the window process's own
            # start-up passes at small series counts.)
            deadline = time.monotonic() + 900
            while metric(w.port, "foresight_tables_ready") < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
        t = time.monotonic()
        produce(first, first + warm)
        w.wait_counter("foresight_forecasts_out_total", warm * series, timeout=1800)
        warm_secs = time.monotonic() - t
        w.settle()  # the warm windows' checkpoints written
        restored = metric(w.port, "foresight_restored_checkpoints_total")
        rss1 = w.rss()
        broker_warm = psutil.Process(broker_pid).memory_info().rss if broker_pid else 0
        table_file = w.table_file_bytes()
        heap = w.heap()
        upd0 = metric(w.port, "foresight_model_update_seconds_sum")
        n0 = metric(w.port, "foresight_model_updates_total")
        ckpt0 = metric(w.port, "foresight_checkpoints_total")
        # the backlog's messages encoded before the clock starts: the benchmark's own encoding (a
        # core's worth of Python while the worker drains) is not the worker's cost
        t_enc = time.monotonic()
        backlog = encode(first + warm, first + warm + windows)
        encoded = time.monotonic() - t_enc
        cpu0, bcpu0 = w.cpu_seconds(), _process_cpu(broker_pid)
        sent0 = metric(w.port, "foresight_forecasts_send_seconds_total")
        with profiled(w, "backlog"):
            t0 = time.monotonic()
            send(backlog)
            produced = time.monotonic() - t0
            del backlog
            secs, got, _ = w.wait_counter("foresight_forecasts_out_total", (warm + windows) * series,
                                          timeout=1800, start=t0)
            upd = metric(w.port, "foresight_model_update_seconds_sum") - upd0
            updn = metric(w.port, "foresight_model_updates_total") - n0
            calls = metric(w.port, "foresight_model_update_seconds_count")
            # the backlog's checkpoints written (some after its last forecast: in its CPU, and in the
            # rate to the checkpoints written, not in the rate to the forecasts out)
            written = max(w.settle(), t0 + secs) - t0
            checkpoints = metric(w.port, "foresight_checkpoints_total")
            cpu1, bcpu1, wall1 = w.cpu_seconds(), _process_cpu(broker_pid), time.monotonic() - t0
            sent1 = metric(w.port, "foresight_forecasts_send_seconds_total")
        # steady state: the next windows published at wall-clock pace, one every window length
        # (as the window agent publishes every series' point when a window closes)
        first_paced = first + warm + windows
        changelog = f"{settings.app_id}-models-changelog"
        paced_from = end_offsets(broker, [topics.points, topics.forecasts, changelog])
        windows_paced = [encode(first_paced + k, first_paced + k + 1) for k in range(paced)]
        with profiled(w, "paced"):
            for k in range(paced):
                tick = time.monotonic()
                send(windows_paced[k])
                if k < paced - 1:
                    time.sleep(max(0.0, WINDOW - (time.monotonic() - tick)))
            w.wait_counter("foresight_forecasts_out_total", (warm + windows + paced) * series, timeout=300)
            w.settle()
            ckpt_paced = metric(w.port, "foresight_checkpoints_total") - checkpoints
            cpu2, bcpu2, wall2 = w.cpu_seconds(), _process_cpu(broker_pid), time.monotonic() - t0 - wall1
            sent2 = metric(w.port, "foresight_forecasts_send_seconds_total")
        since = T0 + first_paced * WINDOW
        pts, fcs = publication_times(broker, topics, paced_from)
        steady = [(t - pts[k]) / 1000 for k, t in fcs.items() if k in pts and k[1] >= since]
        timeline = window_timelines(pts, fcs, since, append_times(broker, changelog, paced_from))
    finally:
        w.stop()
        prod.close()
    done = got - warm * series
    return {
        "series": series, "warm_windows": warm, "backlog_windows": windows,
        # models restored from checkpoints trained on this many windows before the warm windows
        "seeded_windows": seeded, "seed_s": seed_secs, "restored_checkpoints": restored,
        "warmup_updates_per_s": warm * series / warm_secs,
        # the backlog's encoding (before the clock starts) and its sending (after)
        "backlog_encoded_s": encoded,
        "backlog_produced_s": produced,
        "model_updates_per_s": done / secs if secs else None,
        # the same updates over the backlog's wall time to its checkpoints written too (the model
        # agent writes them by a task of its own while it learns on: some after the last forecast)
        "model_updates_per_s_to_checkpoints_written": done / written if written else None,
        "model_updates": done,
        # seconds per series update inside the bank's vectorised calls (observed once per call)
        "bank_update_mean_us": 1e6 * upd / updn if updn else None,
        "bank_calls": calls,
        "checkpoints": checkpoints,
        # series checkpointed in each step (a series' checkpoint: its bank row and its view)
        "checkpoints_by_step": {"warm": ckpt0, "backlog": checkpoints - ckpt0, "paced": ckpt_paced},
        # the worker's CPU seconds (user + system) in each step: from its start (restoring the
        # seeded checkpoints included) to the end of the warm windows, the backlog, the paced windows
        "worker_cpu_s_by_step": {"warm": cpu0, "backlog": cpu1 - cpu0, "paced": cpu2 - cpu1},
        # the broker's CPU seconds (it shares the machine's cores) and the wall seconds of the backlog
        # (to its checkpoints written) and the paced windows (to their checkpoints written)
        "broker_cpu_s_by_step": {"backlog": bcpu1 - bcpu0, "paced": bcpu2 - bcpu1},
        "wall_s_by_step": {"backlog": wall1, "paced": wall2},
        # the model agent's seconds waiting to hand its forecasts to their outbox in each step (full:
        # the broker takes them slower than the agent learns; until session 20, the agent's waits for
        # the broker to take a partition's previous batch, one request in flight)
        "forecasts_send_s_by_step": {"backlog": sent1 - sent0, "paced": sent2 - sent1},
        # the paced step's worker CPU per series update: every series learns each paced window and
        # the same share of series checkpoints in it, run after run (the backlog's checkpoints vary
        # with how much of it falls CHECKPOINT_MIN_SECONDS after the warm windows' checkpoints)
        "paced_worker_cpu_us_per_update": 1e6 * (cpu2 - cpu1) / (paced * series) if paced else None,
        # window close (the points message's publication) -> its forecast's publication
        "window_close_to_forecast_s_steady": {
            "p50": pct(steady, 0.5), "p99": pct(steady, 0.99), "n": len(steady), "windows": paced},
        # per paced window: seconds from its first point's publication to its last point's, to its
        # first and last forecast's, and to the first and last checkpoint before the next window
        "window_timeline_s": timeline,
        "rss_per_series_bytes": (rss1 - rss0) / series,
        # the broker's RSS once the checkpoints and warm windows are in it (without broker_pid: 0)
        "broker_rss_after_warm_bytes": broker_warm,
        # on disk, not resident: the tables' copy of the changelogs (FORESIGHT_TABLE_STORE=disk)
        "table_file_bytes_per_series": table_file / series,
        **({"heap_after_warm": heap} if heap else {}),
    }


#: aggregates the client-aggregated ingest step sends at least, above 1,000 series (one per
#: series and second): ``--windows`` is raised to reach it (10,000 series: 20 windows)
INGEST_MIN_AGGREGATES = 2_000_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--windows", type=int, default=20,
                    help="windows of event time per run (the client-aggregated ingest step above 1,000 series: max(6, windows // 3), raised to send at least INGEST_MIN_AGGREGATES = 2,000,000 aggregates; before session 12 it was not raised: 6 windows at 10,000 series)")
    ap.add_argument("--single-messages", type=int, default=200000)
    ap.add_argument("--cardinality", type=int, nargs=2, metavar=("DISTINCT", "LIMIT"),
                    help="only the cardinality probe: DISTINCT series ids to a worker limited to LIMIT")
    ap.add_argument("--model-path", action="store_true",
                    help="only the model path: points straight to the points topic (see above)")
    ap.add_argument("--warm", type=int, default=30,
                    help="model path: windows learnt through the worker before measuring")
    ap.add_argument("--backlog", type=int, default=3,
                    help="the default run's model path: backlog windows drained (--model-path: --windows)")
    ap.add_argument("--backlog-updates", type=int, default=0,
                    help="the default run's model path: at least this many series updates in the backlog "
                         "(more windows than --backlog at small series counts: a backlog of a second of work "
                         "measures the start, not the rate)")
    ap.add_argument("--checkpoint-every", type=int, default=10,
                    help="--model-path: the worker's FORESIGHT_CHECKPOINT_EVERY")
    ap.add_argument("--seeded", type=int, default=0,
                    help="model path: restore every series' model from a checkpoint trained on this many "
                         "windows first (in-process, see seed_checkpoints), then learn --warm windows")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="--model-path: the worker under tracemalloc; its heap after the warm-up by file")
    ap.add_argument("--ingest", action="store_true",
                    help="only the ingest steps: single events and client aggregates (no model path step)")
    ap.add_argument("--columnar", action="store_true",
                    help="client aggregates as columnar batches (AggregatingProducer(columnar=True))")
    ap.add_argument("--one-process", action="store_true",
                    help="workers run their window agent in the worker's process (FORESIGHT_WINDOW_PROCESS=false; "
                         "default: in processes of its own)")
    ap.add_argument("--window-processes", type=int, default=None,
                    help="window processes per worker (FORESIGHT_WINDOW_PROCESSES; default: the worker's, one per CPU)")
    ap.add_argument("--paced", type=int, default=3,
                    help="model path: windows then published one per window length (steady latency)")
    args = ap.parse_args()
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="foresight-bench-"))
    if args.one_process:  # every Worker's environment starts from os.environ
        os.environ["FORESIGHT_WINDOW_PROCESS"] = "false"
    if args.window_processes is not None:
        os.environ["FORESIGHT_WINDOW_PROCESSES"] = str(args.window_processes)
    out: dict[str, object] = {"window_seconds": WINDOW, "cpu_count": os.cpu_count(),
                              "window_process": os.environ.get("FORESIGHT_WINDOW_PROCESS", "true"),
                              "window_processes": Settings.from_env().window_process_count()}
    if args.model_path or args.cardinality:
        with EmbeddedBroker(log_path=str(workdir / "broker.log")) as b:
            if args.model_path:
                extra = {"FORESIGHT_CHECKPOINT_EVERY": str(args.checkpoint_every)}
                # a seeded worker reads its checkpoints back as it starts: its own RSS then is no baseline
                base = baseline_rss(b.bootstrap, workdir) if args.seeded else None
                out["model_path"] = [bench_model_path(b.bootstrap, workdir, n, args.warm, args.windows,
                                                      args.paced, args.tracemalloc, args.seeded, base,
                                                      broker_pid=b.proc.pid if b.proc else None, **extra)
                                     for n in args.series]
                print(json.dumps(out, indent=2))
                return
            if args.cardinality:
                out["cardinality"] = bench_cardinality(b.bootstrap, workdir, *args.cardinality)
                print(json.dumps(out, indent=2))
                return
    # the default run: each step on a fresh broker (the embedded broker keeps every topic in memory:
    # a step's data would otherwise stay in it for the next)
    with EmbeddedBroker(log_path=str(workdir / "broker.log")) as b:
        out["single_event_messages"] = bench_single(b.bootstrap, workdir, args.single_messages)
        print(json.dumps(out["single_event_messages"]), file=sys.stderr, flush=True)
        base = baseline_rss(b.bootstrap, workdir)
    out["worker_baseline_rss_mb"] = base / 2**20
    runs, model_runs, summary = [], [], []
    # bytes a series costs the worker and the broker (its topics' data) in the model path's step:
    # a guess until a step measures it, then that step's split into what a series costs whatever
    # the backlog (its model, its checkpoints, the warm windows) and what each window of backlog adds
    def backlog_of(n: int) -> int:
        return max(args.backlog, -(-args.backlog_updates // n))

    fixed, per_window = 300_000.0, 0.0
    for n in args.series:
        row: dict[str, object] = {"series": n}
        summary.append(row)
        # the ingest step holds cold models and no checkpoints yet: about half the model step's
        if short := memory_short(n * BATCHED_BYTES):
            row["skipped"] = short
            print(json.dumps(row), file=sys.stderr, flush=True)
            continue
        # above 1,000 series: at least INGEST_MIN_AGGREGATES aggregates (the rate, not the start:
        # 6 windows of 10,000 series were under a second of work; until session 12 the count was
        # max(6, windows // 3), so 10,000 series ran 6 windows), memory allowing (100,000: 6)
        windows = args.windows if n <= 1000 else max(6, args.windows // 3,
                                                     -(-INGEST_MIN_AGGREGATES // int(n * WINDOW)))
        with EmbeddedBroker(log_path=str(workdir / f"broker-{n}.log")) as b:
            runs.append(bench_batched(b.bootstrap, workdir, n, windows, steady=False, columnar=args.columnar,
                                      broker_pid=b.proc.pid if b.proc else None))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
        row["ratio_worker_vs_raw_aggregates"] = runs[-1]["ratio_worker_vs_raw_aggregates"]
        row["ratio_window_agent_busy_vs_raw_aggregates"] = runs[-1]["ratio_window_agent_busy_vs_raw_aggregates"]
        if args.ingest:
            continue
        if short := memory_short(n * (fixed + per_window * (backlog_of(n) + args.paced))):
            row["model_path_skipped"] = short
            print(json.dumps(row), file=sys.stderr, flush=True)
            continue
        with EmbeddedBroker(log_path=str(workdir / f"broker-{n}-m.log")) as b:
            backlog = backlog_of(n)
            m = bench_model_path(b.bootstrap, workdir, n, args.warm, backlog, args.paced,
                                 seeded=args.seeded, rss_base=base, broker_pid=b.proc.pid if b.proc else None)
            broker_rss = psutil.Process(b.proc.pid).memory_info().rss if b.proc else 0
        m["broker_rss_per_series_bytes"] = broker_rss / n
        model_runs.append(m)
        print(json.dumps(m), file=sys.stderr, flush=True)
        # the next step's need from this one's: the worker's bytes and the broker's after the warm
        # windows a series, and the broker's growth over the backlog and paced windows a series-window
        broker_warm = float(m["broker_rss_after_warm_bytes"])  # type: ignore[arg-type]
        fixed = max(fixed / 2, float(m["rss_per_series_bytes"]) + broker_warm / n)  # type: ignore[arg-type]
        per_window = max(0.0, broker_rss - broker_warm) / (n * (backlog + args.paced))
        m["broker_rss_per_series_window_bytes"] = per_window
        row.update({
            "model_updates_per_s": m["model_updates_per_s"],
            "model_updates_per_s_to_checkpoints_written": m["model_updates_per_s_to_checkpoints_written"],
            "window_close_to_forecast_s_steady": m["window_close_to_forecast_s_steady"],
            "rss_per_series_bytes": m["rss_per_series_bytes"],
            "warm": (f"restored from checkpoints trained on {args.seeded} windows, then "
                     f"{args.warm} windows learnt ({m['restored_checkpoints']:.0f} restored)"),
        })
    out["batched"] = runs
    out["model_path"] = model_runs
    single = out["single_event_messages"]
    out["summary"] = {"ratio_worker_vs_raw": single["ratio_worker_vs_raw"],  # type: ignore[index]
                      "ratio_window_agent_busy_vs_raw": single["ratio_window_agent_busy_vs_raw"],  # type: ignore[index]
                      "per_series_count": summary}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
