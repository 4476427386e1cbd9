"""Fault injection (``make chaos``): good and bad input, workers SIGKILLed and
restarted at random, the broker paused; nothing accepted may be lost.

Producers replay event time faster than the wall clock (a 10 s window every
``1/speed`` wall seconds) for a set of series, mixing in bad messages of every
kind the input path knows (malformed, lone-surrogate ids, deep nesting, huge
numbers, empty batches, batches with some bad elements, timestamps an hour
ahead, oversized messages). Meanwhile a chaos loop SIGKILLs and restarts one
of two workers and SIGSTOPs/SIGCONTs the broker. At the end every series gets
one event far enough ahead to close its windows, and the points topic must hold
every window with exactly the events sent to it.

Prints JSON: events sent, accepted (in points), dead-lettered, duplicated
windows, lost events, stalled windows. Exits 1 on any loss or stall.

    python benchmarks/chaos.py [--duration 90] [--series 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from streams import records  # noqa: E402
from streams.broker import EmbeddedBroker, free_port, wait_for_port  # noqa: E402

T0 = 1_700_000_000.0
WINDOW = 10.0
LATENESS = 2


class Worker:
    def __init__(self, broker: str, prefix: str, data: Path, n: int) -> None:
        self.broker, self.prefix, self.data, self.n = broker, prefix, data, n
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        port = free_port()
        env = {**os.environ, "FORESIGHT_BROKER": self.broker, "FORESIGHT_TOPIC_PREFIX": self.prefix,
               "FORESIGHT_APP_ID": f"{self.prefix}-app", "FORESIGHT_DATA_DIR": str(self.data / f"w{self.n}"),
               "FORESIGHT_WEB_PORT": str(port), "FORESIGHT_MODEL_KEY": "chaos-key-0123456789",
               "FORESIGHT_LOG_LEVEL": "warning", "FORESIGHT_WINDOW_SECONDS": str(WINDOW),
               "FORESIGHT_ALLOWED_LATENESS_WINDOWS": str(LATENESS)}
        log = open(self.data / f"worker-{self.n}.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=env, cwd=ROOT,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        wait_for_port("127.0.0.1", port, 90, self.proc)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def bad_messages(ts: float) -> list[tuple[bytes, int]]:
    """(message, number of bad elements it holds)."""
    deep = b"[" * 1100 + b"]" * 1100
    return [
        (b"{not json", 1),
        (b'{"series": "svc/\\ud800", "ts": %f}' % ts, 1),
        (deep, 1),
        (b'{"series": "svc/x", "ts": %f, "interval": 1, "count": 1e20}' % ts, 1),
        (b'{"series": "svc/x", "ts": %f, "value": 1e308}' % ts, 1),
        (b'{"series": "svc/x\\u0000", "ts": %f}' % ts, 1),
        (b"[1, 2, 3, null]", 4),
        (b'{"series": "svc/x", "ts": "tomorrow"}', 1),
        (b"\xff\xfe binary", 1),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=90.0, help="wall seconds of traffic and chaos")
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--speed", type=float, default=1.0, help="event-time windows per wall second")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--settle", type=float, default=120.0, help="seconds to wait for the last windows")
    args = ap.parse_args(argv)
    rnd = random.Random(args.seed)
    prefix = f"chaos{rnd.randrange(1 << 30):x}"
    data = Path(tempfile.mkdtemp(prefix="foresight-chaos-"))
    broker = EmbeddedBroker(log_path=str(data / "broker.log")).start()
    workers = [Worker(broker.bootstrap, prefix, data, i) for i in range(2)]
    from kafka import KafkaProducer

    from streams.admin import ensure_topics
    from streams.settings import Settings
    from streams.topics import Topics

    topics = Topics.from_settings(Settings(topic_prefix=prefix))
    ensure_topics(broker.bootstrap, topics.all(), 4)
    expected: dict[tuple[str, float], int] = defaultdict(int)
    pending: list = []  # (send future, good rows, bad elements): counted once the broker acked
    sent_events = bad_elements = messages = kills = pauses = 0
    try:
        for w in workers:
            w.start()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", retries=5,
                                 request_timeout_ms=60_000, max_block_ms=120_000,
                                 max_request_size=2 * 1024 * 1024, linger_ms=5)
        series = [f"chaos/s{i}" for i in range(args.series)]
        t_end = time.monotonic() + args.duration
        next_chaos = time.monotonic() + rnd.uniform(5, 12)
        second = 0
        while time.monotonic() < t_end:
            tick = time.monotonic()
            # one event-time second: an aggregate per series, in a few batch messages
            ts = T0 + second
            rows = [{"series": s, "ts": ts, "interval": 1.0, "count": rnd.randint(0, 20)} for s in series]
            for i in range(0, len(rows), 7):
                batch = rows[i:i + 7]
                extra = []
                if rnd.random() < 0.15:  # a batch with some bad elements
                    extra = [{"series": "", "ts": ts}, {"series": "chaos/future", "ts": ts + 3600}]
                key = batch[0]["series"].encode()
                fut = producer.send(topics.events, key=key, value=orjson.dumps(batch + extra))
                pending.append((fut, batch, len(extra)))
                messages += 1
            if rnd.random() < 0.3:
                msg, n_bad = rnd.choice(bad_messages(ts))
                producer.send(topics.events, key=rnd.choice(series).encode(), value=msg)
                messages += 1
                bad_elements += n_bad
            if rnd.random() < 0.05:
                producer.send(topics.events, key=rnd.choice(series).encode(), value=b"[]")
                messages += 1
            if second % 50 == 25:  # an oversized message, now and then
                producer.send(topics.events, key=b"big", value=b"[" + b"1," * 400_000 + b"1]")
                messages += 1
                bad_elements += 1
            second += 1
            if time.monotonic() >= next_chaos:
                producer.flush()
                if rnd.random() < 0.3:
                    pause = rnd.uniform(2, 6)
                    assert broker.proc is not None
                    os.kill(broker.proc.pid, signal.SIGSTOP)
                    time.sleep(pause)  # the fault itself: the broker is frozen this long
                    os.kill(broker.proc.pid, signal.SIGCONT)
                    pauses += 1
                else:
                    w = rnd.choice(workers)
                    w.kill(signal.SIGKILL)
                    kills += 1
                    w.start()
                next_chaos = time.monotonic() + rnd.uniform(5, 15)
            pace = 1.0 / (args.speed * WINDOW)  # wall seconds per event-second
            time.sleep(max(0.0, pace - (time.monotonic() - tick)))
        # close every window that holds data: one event per series, lateness + 2 windows
        # ahead, on the partition its data went to (batches are keyed by their first series)
        closer = T0 + second + (LATENESS + 2) * WINDOW
        for i in range(0, len(series), 7):
            batch = [{"series": s, "ts": closer} for s in series[i:i + 7]]
            producer.send(topics.events, key=series[i].encode(), value=orjson.dumps(batch))
        producer.flush()
        producer.close()
        unsent = 0
        for fut, batch, n_bad in pending:
            if not fut.succeeded():
                unsent += 1
                continue
            bad_elements += n_bad
            for r in batch:
                expected[(r["series"], (r["ts"] // WINDOW) * WINDOW)] += r["count"]
                sent_events += r["count"]
        for w in workers:  # the run ends with both workers alive
            if w.proc is None or w.proc.poll() is not None:
                w.start()

        points = _read_until(broker.bootstrap, topics.points, set(expected), args.settle)
        dlq = _read_all(broker.bootstrap, topics.dlq(topics.events))
    finally:
        for w in workers:
            w.kill(signal.SIGTERM)
        broker.stop()

    got: dict[tuple[str, float], list[int]] = defaultdict(list)
    for p in points:
        got[(p["series"], p["start"])].append(p["count"])
    lost = stalled = inflated = duplicated = accepted = 0
    examples: list[str] = []
    for key, n in sorted(expected.items()):
        counts = got.get(key)
        if not counts or max(counts) < n:
            if len(examples) < 8:
                examples.append(f"{key[0]}@w{int((key[1] - T0) / WINDOW)}: sent {n}, points {counts}")
        if not counts:
            stalled += 1
            lost += n
            continue
        best = max(counts)
        accepted += min(best, n)
        lost += max(0, n - best)
        inflated += max(0, best - n)
        duplicated += len(counts) - 1
    dead_elements = sum(m.get("count", 1) for m in dlq)
    dlq_reasons: dict[str, int] = defaultdict(int)
    for m in dlq:
        for r, n in (m.get("reasons") or {m["reason"]: 1}).items():
            dlq_reasons[r] += n
    report = {
        "seed": args.seed, "duration_s": args.duration, "series": args.series,
        "messages_sent": messages, "batches_not_acked_by_broker": unsent, "events_sent": sent_events, "events_accepted_in_points": accepted,
        "bad_elements_sent": bad_elements, "dead_letter_records": len(dlq),
        "dead_lettered_elements": dead_elements, "windows_expected": len(expected),
        "windows_duplicated": duplicated, "events_inflated": inflated, "events_lost": lost,
        "windows_stalled": stalled, "worker_kills": kills, "broker_pauses": pauses,
        "dead_lettered_by_reason": dict(sorted(dlq_reasons.items())), "lost_examples": examples,
        "worker_logs": str(data),
    }
    print(json.dumps(report, indent=1))
    ok = lost == 0 and stalled == 0 and dead_elements >= bad_elements
    return 0 if ok else 1


def _consumer(bootstrap: str, topic: str):  # noqa: ANN202
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    parts = c.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    return c


def _read_until(bootstrap: str, topic: str, want: set[tuple[str, float]], settle: float) -> list[dict]:
    """Read points until every wanted window is there or nothing new came for ``settle`` s."""
    c = _consumer(bootstrap, topic)
    out: list[dict] = []
    have: set[tuple[str, float]] = set()
    last_new = time.monotonic()
    try:
        while not want <= have and time.monotonic() - last_new < settle:
            for msgs in c.poll(timeout_ms=1000).values():
                for m in msgs:
                    for point in records.parse_points(m.value or b"").items:  # batches too
                        p = point.to_json()
                        out.append(p)
                        if (p["series"], p["start"]) not in have:
                            have.add((p["series"], p["start"]))
                            last_new = time.monotonic()
    finally:
        c.close()
    return out


def _read_all(bootstrap: str, topic: str) -> list[dict]:
    c = _consumer(bootstrap, topic)
    out: list[dict] = []
    try:
        while True:
            batch = c.poll(timeout_ms=3000)
            if not batch:
                break
            for msgs in batch.values():
                out.extend(orjson.loads(m.value) for m in msgs)
    finally:
        c.close()
    return out


if __name__ == "__main__":
    sys.exit(main())
