"""``foresight demo``: the whole pipeline on one machine.

Starts the embedded broker (unless ``FORESIGHT_BROKER`` is set), a Faust
worker and the controller (driving the simulated cluster) as child
processes, replays the synthetic workload through the producer helper in
event time at ``--speed``, shows live progress, and prints a JSON summary.
Everything it started is stopped on exit and on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from scaler.simulated import SimulatedCluster
from streams import kafka_config, records
from streams.admin import ensure_topics_async
from streams.broker import EmbeddedBroker, free_port, wait_for_port
from streams.clock import SignalClock
from streams.producer import AggregatingProducer
from streams.settings import Settings
from streams.summary import Observed, render, summarize
from streams.topics import Topics
from streams.workload import CYCLE, HISTORY_CYCLES, KAFKA_PLAN, PLANS, Workload

log = logging.getLogger("foresight.demo")

DEMO_START = 1767225600.0  # 2026-01-01T00:00:00Z, event time of the replay's start
NAMESPACE = "demo"
LEAD_SECONDS = 180.0
#: wall seconds from the worker's start to the live part's (the backfill is sent meanwhile; a
#: backfill that takes longer is caught up at once): fixed in advance, because the worker's
#: Kafka signal sampler is told the live part's clock when it starts
LIVE_AFTER_SECONDS = 10.0


def kafka_topic(settings: Settings) -> str:
    """The demo's Kafka topic scaled on (its ``orders`` target)."""
    return settings.topic(KAFKA_PLAN.name)


def scaler_manifests(window: float, topic: str | None = None) -> list[dict[str, Any]]:
    """The demo's PredictiveScaler specs (one per service; with ``topic``, also the target
    scaled on that Kafka topic's rate and its consumer group's lag)."""
    behavior = {
        "scaleDown": {"stabilizationWindowSeconds": 300,
                      "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]},
        # scale up as far as needed in one step: the demo's spike is 4x
        "scaleUp": {"stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Percent", "value": 400, "periodSeconds": 15}]},
    }
    targets: list[tuple[str, dict[str, Any], int, int]] = [
        (plan.series.split("/")[0], {"series": plan.series, "capacityPerReplica": plan.capacity_per_replica},
         plan.min_replicas, plan.max_replicas) for plan in PLANS]
    if topic is not None:
        k = KAFKA_PLAN
        targets.append((k.name, {"signals": [{
            "kafkaTopic": {"topic": topic, "consumerGroup": k.group, "lagThreshold": k.lag_threshold},
            "capacityPerReplica": k.capacity_per_replica}]}, k.min_replicas, k.max_replicas))
    return [{
        "apiVersion": "foresight.dev/v1alpha1",
        "kind": "PredictiveScaler",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            **load,
            "minReplicas": lo,
            "maxReplicas": hi,
            "leadTimeSeconds": LEAD_SECONDS,
            "mode": "Active",
            "behavior": behavior,
        },
    } for name, load, lo, hi in targets]


class Children:
    """Child processes in their own sessions, stopped (group and all) on close."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        fh = open(log_path, "ab")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        fh.close()
        self.procs.append((name, p))
        return p

    def check(self) -> None:
        for name, p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with code {p.returncode}")

    def close(self) -> None:
        for _, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for _, p in reversed(self.procs):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # the group, not only its leader: a worker's window process may still be stopping
            if not _group_gone(p.pid, deadline):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _group_gone(p.pid, time.monotonic() + 5)
            if p.poll() is None:
                p.wait(5)


def _group_gone(pgid: int, deadline: float) -> bool:
    """Wait until no live process is left in process group ``pgid`` (zombies aside), or the
    deadline; return whether it is empty."""
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is in process group ``pgid``."""
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


class Monitor:
    """Reads points, forecasts, anomalies, decisions and dead letters back."""

    def __init__(self, settings: Settings, topics: Topics) -> None:
        self.settings = settings
        self.topics = topics
        self.obs = Observed(counts={"events": 0, "points": 0, "forecasts": 0, "anomalies": 0,
                                    "decisions": 0, "dead_letters": 0, "kafka_messages": 0,
                                    "kafka_consumed": 0})
        self.latest: dict[str, dict[str, Any]] = {}
        self.max_point_start = -1.0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        c = AIOKafkaConsumer(**kafka_config.client_kwargs(self.settings), enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            names = [self.topics.points, self.topics.forecasts, self.topics.anomalies,
                     self.topics.decisions, Topics.dlq(self.topics.events), Topics.dlq(self.topics.metrics)]
            tps = []
            for n in names:
                parts = c.partitions_for_topic(n)
                while not parts:
                    await c._client.force_metadata_update()  # noqa: SLF001
                    parts = c.partitions_for_topic(n)
                    if not parts:
                        await asyncio.sleep(0.1)
                tps += [TopicPartition(n, p) for p in parts]
            c.assign(tps)
            while not self._stop.is_set():
                batch = await c.getmany(timeout_ms=200, max_records=5000)
                for tp, msgs in batch.items():
                    for m in msgs:
                        self._on(tp.topic, m.value or b"")
        finally:
            await c.stop()

    def _on(self, topic: str, raw: bytes) -> None:
        t = self.topics
        counts = self.obs.counts
        if topic == t.points:  # one point or a batch of them (streams/records.py)
            for p in records.parse_points(raw).items:
                counts["points"] += 1
                self.obs.points.setdefault(p.series, {})[p.start] = p.value
                self.max_point_start = max(self.max_point_start, p.start)
        elif topic == t.forecasts:  # one forecast, an array of them, or a (framed) columnar batch
            o = records.message_json(raw)
            counts["forecasts"] += len(o) if isinstance(o, list) else 1
        elif topic == t.anomalies:
            counts["anomalies"] += 1
        elif topic == t.decisions:
            o = orjson.loads(raw)
            counts["decisions"] += 1
            self.obs.decisions.setdefault(o["target"], []).append(o)
            self.latest[o["target"]] = o
        else:
            counts["dead_letters"] += 1


@dataclass
class Clock:
    """Where the replay is in simulated (event) time, for the live line."""

    sim: float
    live_start: float
    live: bool = False


class TopicLoad:
    """The Kafka topic of the ``orders`` target, on the live part's clock (the one the worker's
    sampler reads, :class:`streams.clock.SignalClock`): real messages at the workload's rate,
    each event-time second's once the clock has passed it (:meth:`produce`), and a real
    consumer group that consumes, and commits, at most ``replicas x capacityPerReplica``
    messages per event-time second (:meth:`consume`), the replicas being those the
    controller's decisions have made ready in the simulated cluster (a scale-up's pods are
    ready ``LEAD_SECONDS`` later), so the group's lag is real: it grows whenever the burst
    outruns the consumers in place."""

    def __init__(self, settings: Settings, topic: str, workload: Workload, mon: Monitor,
                 clock: SignalClock) -> None:
        self.settings, self.topic, self.workload, self.mon = settings, topic, workload, mon
        self.clock = clock
        self.key = f"{NAMESPACE}/{KAFKA_PLAN.name}"
        self.counts = mon.obs.counts
        self.producer = KafkaProducer(**kafka_config.client_kwargs(settings), acks="all", linger_ms=5)

    async def produce(self, end: float, stop: asyncio.Event) -> None:
        """Every event-time second from the clock's start to ``end``, as soon as it has passed."""
        assert self.clock.event is not None
        sim = self.clock.event
        while sim < end and not stop.is_set():
            now = min(end, self.clock.now())
            while sim + 1.0 <= now:
                n = self.workload.messages(sim)
                for _ in range(n):
                    self.producer.send(self.topic, value=b"order", timestamp_ms=int(sim * 1000))
                self.counts["kafka_messages"] += n
                sim += 1.0
            await asyncio.sleep(0.02)
        await asyncio.to_thread(self.producer.flush)

    def close(self) -> None:
        self.producer.close(5)

    async def consume(self, stop: asyncio.Event) -> None:
        c = AIOKafkaConsumer(**kafka_config.client_kwargs(self.settings), group_id=KAFKA_PLAN.group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        try:
            parts = c.partitions_for_topic(self.topic)
            while not parts and not stop.is_set():
                await c._client.force_metadata_update()  # noqa: SLF001
                parts = c.partitions_for_topic(self.topic)
                if not parts:
                    await asyncio.sleep(0.1)
            c.assign([TopicPartition(self.topic, p) for p in sorted(parts or ())])
            cluster = SimulatedCluster(LEAD_SECONDS)
            cluster.add_target(self.key, KAFKA_PLAN.min_replicas)
            seen, last, budget = 0, None, 0.0
            per_window = KAFKA_PLAN.capacity_per_replica * self.settings.window_seconds
            while not stop.is_set():
                await asyncio.sleep(0.05)
                if not self.clock.started():
                    continue
                decisions = self.mon.obs.decisions.get(self.key, [])
                for d in decisions[seen:]:
                    if d["applied"]:
                        cluster.scale_to(self.key, d["desired"], d["ts"])
                seen = len(decisions)
                now = self.clock.now()
                if last is None or now <= last:
                    last = now if last is None else last
                    continue
                ready = cluster.ready(self.key, now)
                # unused capacity carries over for at most a window (a fetch may come back short)
                budget = min(budget + ready * KAFKA_PLAN.capacity_per_replica * (now - last),
                             ready * per_window)
                last = now
                if budget < 1:
                    continue
                batch = await c.getmany(timeout_ms=20, max_records=int(budget))
                n = sum(len(msgs) for msgs in batch.values())
                if n:
                    await c.commit({tp: msgs[-1].offset + 1 for tp, msgs in batch.items() if msgs})
                    budget -= n
                    self.counts["kafka_consumed"] += n
        finally:
            await c.stop()


async def _replay(producer: AggregatingProducer, workload: Workload, speed: float,
                  duration: float, counts: dict[str, int], stop: asyncio.Event,
                  clock: Clock | None = None, live_wall: float | None = None) -> float:
    """Generate the workload in event time; returns the simulated end time.

    The first ``HISTORY_CYCLES`` are a backfill, sent as fast as they are
    generated; the rest is paced at ``speed`` for ``duration`` wall seconds,
    from wall time ``live_wall`` if given (what was missed by then is sent at
    once), else from the end of the backfill.
    """
    sim = workload.start
    live_start = workload.start + HISTORY_CYCLES * workload.cycle
    clock = clock or Clock(sim, live_start)
    while sim < live_start and not stop.is_set():
        chunk_end = min(live_start, sim + 600.0)
        while sim < chunk_end:
            _generate(producer, workload, sim, counts)
            sim += 1.0
        await asyncio.to_thread(producer.flush, True)
        clock.sim = sim
    t0 = time.monotonic() + (0.0 if live_wall is None else live_wall - time.time())
    clock.live = True
    tick = 0.1
    while not stop.is_set():
        elapsed = time.monotonic() - t0
        target = live_start + min(elapsed, duration) * speed
        while sim < target:
            _generate(producer, workload, sim, counts)
            sim += 1.0
        await asyncio.to_thread(producer.flush, True)
        clock.sim = sim
        if elapsed >= duration:  # (a backfill that ended late has been caught up all the same)
            break
        await asyncio.sleep(tick)
    await asyncio.to_thread(producer.flush, True)
    return sim


def _generate(producer: AggregatingProducer, workload: Workload, sim: float, counts: dict[str, int]) -> None:
    """One simulated second of every service's traffic."""
    for plan in PLANS:
        if plan.kind == "events":
            n = workload.events(plan.series, sim)
            if n:
                producer.record_event(plan.series, sim, count=n)
                counts["events"] += n
        else:
            producer.record_metric(plan.series, workload.sample(plan.series, sim), sim)
            counts["events"] += 1


def sim_time(ts: float) -> str:
    """Simulated wall-clock time of an event time, as the demo prints it.

    >>> sim_time(DEMO_START + 4 * 3600 + 125)
    '04:02:05'
    """
    return time.strftime("%H:%M:%S", time.gmtime(ts))


def _progress(mon: Monitor, clock: Clock, speed: float) -> str:
    """The live line: simulated clock, phase, what flowed (and how far the worker got), replicas."""
    c = mon.obs.counts
    if clock.live:
        phase = f"sim {sim_time(clock.sim)} live {speed:g}x"
    else:
        phase = f"sim {sim_time(clock.sim)} backfill (to {sim_time(clock.live_start)})"
    if mon.max_point_start < 0:
        windows = "windows 0 (the worker is catching up)"
    else:
        windows = f"windows {c['points']:,} (latest {sim_time(mon.max_point_start)})"
    parts = [phase, f"events {c['events']:,}", windows, f"forecasts {c['forecasts']:,}",
             f"anomalies {c['anomalies']}", f"dead letters {c['dead_letters']}"]
    reps = [f"{key.split('/')[-1]} {d['current']}->{d['desired']}" for key, d in sorted(mon.latest.items())]
    if reps:
        parts.append("replicas " + " ".join(reps))
    return " | ".join(parts)


def intro(settings: Settings, duration: float, speed: float) -> str:
    """The first screen: what the demo is about to do, and why the backfill."""
    live_h = duration * speed / 3600.0
    hist = HISTORY_CYCLES * CYCLE / 3600.0
    return f"""\
Foresight demo: the whole pipeline on this machine, on synthetic traffic, in simulated time.
  1. start {"the broker at " + settings.broker if settings.broker else "an embedded Kafka broker"}, \
a worker (windows, models, dashboard) and the controller,
     which scales a simulated cluster (a new pod is ready {LEAD_SECONDS:g} s after a scale-up);
  2. backfill: send {hist:g} simulated hours of history (00:00-{sim_time(DEMO_START + hist * 3600)[:5]}) \
as fast as the pipeline takes it,
     so the models have seen the hourly pattern {HISTORY_CYCLES} times and forecast from the start of the live part
     (a cold model needs a few hundred windows; this takes a minute or two);
  3. live: replay at {speed:g}x for {duration:g} s (about {live_h:.1f} simulated hours); watch for
     - checkout: a predictable peak every hour at minute 40: scaled up {LEAD_SECONDS:g} s ahead,
     - search: one unpredictable 4x spike at {sim_time(Workload(DEMO_START).spike_start)[:5]}: \
the reactive floor covers it,
     - inventory: a sensor stuck at 0 from {sim_time(Workload(DEMO_START).stuck_start)[:5]}: \
no scale-down on bad data;
     - orders: real messages on a Kafka topic, a burst every hour at minute 10, and a consumer group
       that keeps up only as far as the simulated replicas allow: scaled on the topic's rate,
       sampled from its offsets, up {LEAD_SECONDS:g} s ahead of the burst from its third hour on;
  4. end: a table here, the JSON summary on stdout. Times are simulated UTC on {time.strftime("%Y-%m-%d", time.gmtime(DEMO_START))}.
"""


async def _demo(settings: Settings, duration: float, speed: float, serve: bool, quiet: bool,
                children: Children, workdir: Path) -> dict[str, Any]:
    topics = Topics.from_settings(settings)
    await ensure_topics_async(settings, topics.all(), settings.partitions)
    topic = kafka_topic(settings)
    await ensure_topics_async(settings, [topic], KAFKA_PLAN.partitions)
    scalers = workdir / "scalers.yaml"
    scalers.write_text(yaml.safe_dump_all(scaler_manifests(settings.window_seconds, topic), sort_keys=False))
    # the live part starts at a wall time fixed now: the worker's Kafka signal sampler reads
    # the replay's event time from it (streams/clock.py)
    live_wall = time.time() + LIVE_AFTER_SECONDS
    signal_clock = SignalClock(DEMO_START + HISTORY_CYCLES * CYCLE, live_wall, speed)
    env = {
        **os.environ,
        **settings.to_env(),  # every setting given to the demo reaches the worker and controller
        "FORESIGHT_BROKER": settings.broker,
        "FORESIGHT_WINDOW_SECONDS": str(settings.window_seconds),
        "FORESIGHT_PERIOD_STEPS": str(settings.period_steps),
        "FORESIGHT_PARTITIONS": str(settings.partitions),
        "FORESIGHT_TOPIC_PREFIX": settings.topic_prefix,
        "FORESIGHT_DATA_DIR": str(workdir / "worker"),
        "FORESIGHT_WEB_HOST": settings.web_host,
        "FORESIGHT_WEB_PORT": str(settings.web_port),
        "FORESIGHT_LOG_LEVEL": "warning",
        "FORESIGHT_SCALERS": str(scalers),  # the worker exports per-series gauges for these
        "FORESIGHT_SIGNAL_CLOCK": str(signal_clock),
    }
    py = [sys.executable, "-m", "streams"]
    worker = children.start("worker", py + ["worker"], env, workdir / "worker.log")
    children.start("controller", py + ["scaler", "--scalers", str(scalers),
                                       "--startup-seconds", str(LEAD_SECONDS)],
                   env, workdir / "controller.log")
    wait_for_port(settings.web_host, settings.web_port, 60, worker)
    url = f"http://{settings.web_host}:{settings.web_port}/dashboard/"
    print(f"dashboard: {url}  (logs in {workdir})", file=sys.stderr, flush=True)

    workload = Workload(DEMO_START)
    mon = Monitor(settings, topics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    clock = Clock(workload.start, workload.start + HISTORY_CYCLES * workload.cycle)
    mon_task = asyncio.create_task(mon.run())
    producer = AggregatingProducer(settings.broker, interval=min(10.0, settings.window_seconds),
                                   flush_every=0, settings=settings)
    load = TopicLoad(settings, topic, workload, mon, signal_clock)
    consumer = asyncio.create_task(load.consume(stop))
    topic_end = DEMO_START + HISTORY_CYCLES * CYCLE + duration * speed
    topic_producer = asyncio.create_task(load.produce(topic_end, stop))
    replay = asyncio.create_task(_replay(producer, workload, speed, duration, mon.obs.counts, stop,
                                         clock, live_wall))
    tty = sys.stderr.isatty()
    try:
        while not replay.done():
            await asyncio.wait([replay], timeout=1.0)
            children.check()
            for task in (consumer, topic_producer):
                if task.done():
                    task.result()  # the topic's producer or consumer group stopped: say why
            if not quiet:
                line = _progress(mon, clock, speed)
                print(("\r\x1b[K" + line[:200]) if tty else line, end="" if tty else "\n", file=sys.stderr,
                      flush=True)
        sim_end = replay.result()
        # drain: wait until the last complete windows are through the pipeline
        last_window = (sim_end // settings.window_seconds - settings.allowed_lateness_windows - 2) * settings.window_seconds
        deadline = time.monotonic() + 30
        while mon.max_point_start < last_window and time.monotonic() < deadline and not stop.is_set():
            await asyncio.sleep(0.2)
        await asyncio.sleep(min(3.0, 60.0 / speed * 2))  # let the controller's decisions land
        if tty and not quiet:
            print(file=sys.stderr)
        summary = summarize(mon.obs, workload, NAMESPACE, settings.window_seconds, LEAD_SECONDS, sim_end,
                            kafka_topic=topic)
        # every decision and window read back, next to the logs, for a closer look
        (workdir / "observed.json").write_bytes(orjson.dumps(
            {"decisions": mon.obs.decisions,
             "points": {k: {str(t): v for t, v in p.items()} for k, p in mon.obs.points.items()}}))
        summary["simulated_seconds"] = sim_end - workload.start
        summary["speed"] = speed
        summary["dashboard"] = url
        print(render(summary, workload, LEAD_SECONDS), file=sys.stderr, flush=True)
        if serve and not stop.is_set():
            print(json.dumps({k: v for k, v in summary.items() if not k.startswith("_")}, indent=2), flush=True)
            print(f"serving {url} - Ctrl-C to stop", file=sys.stderr, flush=True)
            await stop.wait()
            summary["_printed"] = True
        return summary
    finally:
        stop.set()
        mon.stop()
        await asyncio.gather(mon_task, consumer, topic_producer, return_exceptions=True)
        await asyncio.to_thread(producer.close)
        await asyncio.to_thread(load.close)


def with_free_web_port(settings: Settings) -> Settings:
    """``settings`` with a free web port where the default one is taken (unless the user chose it)."""
    if settings.web_port == Settings().web_port and "FORESIGHT_WEB_PORT" not in os.environ:
        import socket

        try:
            with socket.socket() as sock:
                sock.bind((settings.web_host, settings.web_port))
        except OSError:
            settings = settings.replace(web_port=free_port(settings.web_host))
    return settings


def run_demo(settings: Settings, duration: float = 300.0, speed: float = 60.0, serve: bool = False,
             quiet: bool = False) -> int:
    """Run the demo; print the JSON summary on stdout; 0 if every check held."""
    if "FORESIGHT_WINDOW_SECONDS" not in os.environ and settings.window_seconds == Settings().window_seconds:
        settings = settings.replace(window_seconds=60.0)
    if not settings.period_steps:
        settings = settings.replace(period_steps=int(CYCLE / settings.window_seconds))
    settings = with_free_web_port(settings)
    print(intro(settings, duration, speed), file=sys.stderr, flush=True)
    children = Children()
    workdir = Path(tempfile.mkdtemp(prefix="foresight-demo-"))
    with contextlib.ExitStack() as stack:
        stack.callback(children.close)
        settings = with_broker(settings, workdir, stack)
        summary = asyncio.run(_demo(settings, duration, speed, serve, quiet, children, workdir))
    return finish(summary)


def with_broker(settings: Settings, workdir: Path, stack: contextlib.ExitStack) -> Settings:
    """``settings`` with a broker: the configured one, else an embedded broker on a free loopback
    port (log in ``workdir``), stopped when ``stack`` closes."""
    if settings.broker:
        return settings
    broker = EmbeddedBroker(log_path=str(workdir / "broker.log")).start()
    stack.callback(broker.stop)
    print(f"embedded broker on {broker.bootstrap}", file=sys.stderr, flush=True)
    return settings.replace(broker=broker.bootstrap)


def finish(summary: dict[str, Any]) -> int:
    """Print a demo's JSON summary (unless its progress already did); 0 if no check failed."""
    if not summary.pop("_printed", False):
        print(json.dumps(summary, indent=2), flush=True)
    return 1 if any(v is False for v in summary["checks"].values()) else 0
