"""The worker's input path against the real broker: no input stalls a worker,
nothing accepted is lost (issue 11, defects 1-4).

Each test sends its poison to the same partition as good traffic (explicit
partition numbers), so on a worker that crashes, stalls or mis-commits on
the poison the good windows never appear.
"""

from __future__ import annotations

import signal
import time

import orjson
import psutil
import pytest

from tests.conftest import read_topic
from tests.waiting import wait_for

#: seconds between two polls of a condition (each wait has its own deadline)
POLL_SECONDS = 0.2

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("both_modes")]

T0 = 1_700_000_000.0  # a multiple of 10
WINDOW = 10.0
PART = 1  # the partition every test's traffic shares


def send(broker: str, topic: str, values: list[bytes], partition: int = PART, key: bytes = b"k") -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=broker, acks="all", max_request_size=4 * 1024 * 1024)
    for v in values:
        p.send(topic, key=key, value=v, partition=partition)
    p.flush()
    p.close()


def good(series: str, first: int, last: int, count: int = 10) -> list[bytes]:
    """One aggregate of ``count`` events per second ``first..last-1`` after T0."""
    return [orjson.dumps({"series": series, "ts": T0 + s, "interval": 1.0, "count": count})
            for s in range(first, last)]


def points_of(broker: str, prefix: str, series: str, windows: int, timeout: float = 60) -> dict[float, int]:
    pts = read_topic(broker, f"{prefix}.points",
                     lambda ms: len({m["start"] for m in ms if m["series"] == series}) >= windows,
                     timeout=timeout)
    return {m["start"]: m["count"] for m in pts if m["series"] == series}


SENTINEL = b'{"sentinel": true}'  # dead-lettered as missing_field after the message under test
SURROGATE = b'{"series": "svc/\\ud800", "ts": %d}' % T0
DEEP = b"[" * 1100 + b"]" * 1100
HUGE_COUNT = b'{"series": "svc/poison", "ts": %d, "interval": 1, "count": 1e20}' % (T0 + 1)
HUGE_VALUE = b'[{"series": "svc/poison", "ts": %d, "value": 1e308}, {"series": "svc/poison", "ts": %d, "value": 1e308}]' % (T0 + 1, T0 + 2)


@pytest.mark.parametrize(
    "poison, reasons",
    [(SURROGATE, {"bad_series": 1}), (DEEP, {"too_deep": 1}), (HUGE_COUNT, {"out_of_range": 1}),
     (HUGE_VALUE, {"out_of_range": 2})],
    ids=["surrogate-id", "deep-nesting", "count-1e20", "value-1e308"],
)
def test_poison_is_one_dead_letter_and_the_partition_keeps_closing_windows(
        broker, prefix, start_worker, poison, reasons):
    worker = start_worker(prefix)
    send(broker, f"{prefix}.events", good("svc/ok", 0, 5) + [poison] + good("svc/ok", 5, 100))
    send(broker, f"{prefix}.events", [SENTINEL])  # its dead letter follows the poison's
    got = points_of(broker, prefix, "svc/ok", 7)  # windows close after the poison's, too
    assert [got.get(T0 + 10 * w) for w in range(7)] == [100] * 7
    dlq = read_topic(broker, f"{prefix}.events.dlq", lambda ms: any(m["reason"] == "missing_field" for m in ms))
    before = [m for m in dlq if m["reason"] != "missing_field"]
    assert len(before) == 1, "one dead letter for the one poison message"
    assert before[0]["reasons"] == reasons and before[0]["count"] == sum(reasons.values())
    assert worker.proc.poll() is None


def test_a_one_megabyte_array_is_one_dead_letter_in_bounded_memory(broker, prefix, start_worker):
    worker = start_worker(prefix)
    big = b"[" + b",".join([b"1"] * 500_000) + b"]"  # ~1 MB: 500,000 bad elements
    mid = b"[" + b",".join([b"1"] * 100_000) + b"]"  # under the size limit: parsed, 100,000 bad
    send(broker, f"{prefix}.events", good("svc/ok", 0, 5) + [big, mid] + good("svc/ok", 5, 60)
         + [SENTINEL])
    got = points_of(broker, prefix, "svc/ok", 3)
    assert got.get(T0) == 100
    dlq = read_topic(broker, f"{prefix}.events.dlq", lambda ms: any(m["reason"] == "missing_field" for m in ms))
    before = [m for m in dlq if m["reason"] != "missing_field"]
    assert [(m["reason"], m["count"]) for m in before] == [("too_large", 1), ("malformed_json", 100_000)]
    proc = psutil.Process(worker.proc.pid)
    for p in [proc, *proc.children(recursive=True)]:  # (the window process, FORESIGHT_WINDOW_PROCESS)
        rss = p.memory_info().rss
        assert rss < 600 * 1024 * 1024, f"worker RSS {rss / 2**20:.0f} MiB after one big bad message"
    # (a window process's counts reach the worker's /metrics in its next report)
    assert wait_for(lambda: 'foresight_dead_letter_elements_total{reason="malformed_json"' in _get(
        f"http://127.0.0.1:{worker.port}/metrics"), 10)


def test_a_skewed_clock_sends_only_its_own_series_to_the_dlq(broker, prefix, start_worker):
    start_worker(prefix)
    msgs = []
    for s in range(60):
        for series in ("on/a", "on/b", "on/c"):
            msgs += good(series, s, s + 1)
        msgs.append(orjson.dumps({"series": "skewed", "ts": T0 + 3600 + s}))  # an hour ahead
    send(broker, f"{prefix}.events", msgs + [SENTINEL])
    for series in ("on/a", "on/b", "on/c"):
        got = points_of(broker, prefix, series, 3)
        assert [got.get(T0 + 10 * w) for w in range(3)] == [100, 100, 100], series
    dlq = read_topic(broker, f"{prefix}.events.dlq", lambda ms: any(m["reason"] == "missing_field" for m in ms))
    reasons = [m["reason"] for m in dlq if m["reason"] != "missing_field"]
    assert "late" not in reasons, "on-time series were judged by the skewed clock"
    assert reasons and set(reasons) == {"future"}


def committed(broker: str, group: str, topic: str, partition: int) -> int | None:
    """The input group's committed offset (an OffsetFetch; this client never joins the group):
    the window agent reads the input topics in its own group, ``<app id>-input``."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False)
    try:
        return c.committed(TopicPartition(topic, partition))
    finally:
        c.close()


def test_an_acked_bad_message_never_lets_the_commit_pass_an_open_window(broker, prefix, start_worker):
    """Fresh group, 10 messages of 100 events in an open window, then a message
    that is dead-lettered (acknowledged at once on today's main), SIGKILL,
    restart: the 1,000 events still make their window."""
    a = start_worker(prefix)
    topic = f"{prefix}.events"
    send(broker, topic, good("svc/held", 0, 10, count=100) + [b"{malformed", b"[]"])
    # another partition's windows close and are committed: a commit has happened
    send(broker, topic, good("svc/other", 0, 60), partition=PART + 1)
    points_of(broker, prefix, "svc/other", 3)
    read_topic(broker, f"{topic}.dlq", lambda ms: len(ms) >= 1)
    deadline = time.monotonic() + 60
    while (committed(broker, f"{prefix}-app-input", topic, PART + 1) or 0) < 10:
        assert time.monotonic() < deadline, "the worker never committed"
        time.sleep(POLL_SECONDS)  # between polls, under the deadline
    held = committed(broker, f"{prefix}-app-input", topic, PART)
    assert held is None or held == 0, f"committed offset {held} passes events held in an open window"
    a.stop(signal.SIGKILL)

    start_worker(prefix)
    send(broker, topic, good("svc/held", 40, 41))  # closes [T0, T0 + 10) of svc/held
    got = points_of(broker, prefix, "svc/held", 1)
    assert got.get(T0) == 1000, f"accepted events lost across the crash: {got}"


def test_a_quiet_live_partition_closes_its_windows_on_the_wall_clock(broker, prefix, start_worker):
    start_worker(prefix, FORESIGHT_WINDOW_SECONDS="2", FORESIGHT_ALLOWED_LATENESS_WINDOWS="1")
    now = time.time()
    send(broker, f"{prefix}.events", [orjson.dumps({"series": "svc/live", "ts": now, "count": 3,
                                                    "interval": 0.5})])
    # nothing else arrives on the partition: only the wall clock can close the window
    got = points_of(broker, prefix, "svc/live", 1, timeout=30)
    assert sum(got.values()) == 3


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback test server
        return r.read().decode()


def test_a_record_that_makes_an_agent_raise_is_a_processing_error_and_the_agent_goes_on(
        broker, prefix, start_worker):
    """``current: 1e20`` used to pass ``int()`` and raise when the target's snapshot
    was written (on the main this branch started from, the agent died). Decisions
    are now parsed strictly: it goes to the DLQ (one record, with the reason and the
    text) and the next decision is processed. A point the model agent cannot read is
    dead-lettered and the next point still gets its forecast."""
    worker = start_worker(prefix)
    bad_point = b'{"series": "svc/\\ud800", "start": %d, "end": %d, "value": 1.0, "count": 1}' % (T0, T0 + 10)
    good_point = orjson.dumps({"series": "svc/fine", "start": T0, "end": T0 + 10, "value": 1.0, "count": 1})
    send(broker, f"{prefix}.points", [bad_point, good_point], partition=0)
    bad_dec = b'{"target": "ns/huge", "ts": 10, "current": 1e20, "desired": 3, "reason": "ForecastPeak"}'
    good_dec = orjson.dumps({"target": "ns/fine", "ts": 10, "current": 2, "desired": 3, "reason": "ForecastPeak"})
    send(broker, f"{prefix}.decisions", [bad_dec, good_dec], partition=0)

    fc = read_topic(broker, f"{prefix}.forecasts", lambda ms: any(m["series"] == "svc/fine" for m in ms))
    assert any(m["series"] == "svc/fine" for m in fc), "the model agent went on after the bad point"
    dlq = read_topic(broker, f"{prefix}.decisions.dlq", lambda ms: len(ms) >= 1)
    assert [m["reason"] for m in dlq] == ["bad_value"]
    assert "replica count must be an integer" in dlq[0]["error"]
    deadline = time.monotonic() + 30
    while 'foresight_decisions_total{reason="ForecastPeak",target="ns/fine"}' not in (
            text := _get(f"http://127.0.0.1:{worker.port}/metrics")):
        assert time.monotonic() < deadline, "the decisions agent did not go on: " + "".join(
            ln for ln in text.splitlines(True) if "decision" in ln)
        time.sleep(POLL_SECONDS)  # between polls, under the deadline
    assert 'foresight_bad_decisions_total 1.0' in text
    assert worker.proc.poll() is None


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback test server
        return r.read().decode()


def test_a_second_worker_takes_input_partitions_without_losing_or_splitting_a_window(
        broker, prefix, start_worker):
    """The input topics' own group (``<app id>-input``) rebalances when a second worker joins:
    the first commits what is safe and forgets the partitions it gives up, the second rebuilds
    their open windows from the committed offset. Every closed window of every partition's
    series is published whole (a duplicate is allowed, a partial window is not)."""
    from tests.waiting import wait_for

    topic = f"{prefix}.events"
    series = {part: f"svc/part{part}" for part in range(4)}  # one series on each input partition

    def produce(first: int, last: int) -> None:
        for part, name in series.items():
            send(broker, topic, good(name, first, last), partition=part)

    start_worker(prefix)
    produce(0, 300)
    for name in series.values():
        points_of(broker, prefix, name, 20)  # the first worker is well into every partition
    b = start_worker(prefix)

    def b_assigned() -> bool:
        text = b.log.read_text(errors="replace")
        return any("input partitions assigned" in ln and f"{topic}[" in ln for ln in text.splitlines())

    assert wait_for(b_assigned, timeout=60), "the second worker never got an input partition"
    produce(300, 600)
    closed = 57  # windows 0..56 close once every series is in window 59
    for name in series.values():
        got = read_topic(broker, f"{prefix}.points",
                         lambda ms, name=name: {m["start"] for m in ms if m["series"] == name}
                         >= {T0 + w * WINDOW for w in range(closed)}, timeout=120)
        mine = [m for m in got if m["series"] == name]
        missing = [w for w in range(closed) if T0 + w * WINDOW not in {m["start"] for m in mine}]
        assert not missing, f"{name}: windows lost across the rebalance: {missing}"
        partial = [(m["start"], m["count"]) for m in mine if m["count"] != 100]
        assert not partial, f"{name}: partial windows across the rebalance: {partial}"
