"""The window agent in a process of its own (``FORESIGHT_WINDOW_PROCESS``), against the real
broker: the worker starts it, counts what it counts, learns the kinds of its series, starts it
again when it dies (nothing accepted lost), and takes it down when the worker dies.

The series limit and the eviction with the window process are ``test_app_budget``'s tests, run
in both modes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.request

import orjson
import pytest

from tests.conftest import Worker
from tests.streams.test_app import PART, T0, committed, good, points_of, send
from tests.streams.test_app_budget import metric, wait_metric
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

SPLIT = {"FORESIGHT_WINDOW_PROCESS": "true"}


def window_pids(worker: Worker) -> list[int]:
    """The pids of the window processes the worker started, in order (from its log)."""
    return [int(p) for p in re.findall(r"window process started \(pid (\d+)", worker.log.read_text())]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not reaped yet) is gone too
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_window_process_windows_counts_in_the_worker_metrics_and_tells_the_kinds(
        broker, prefix, start_worker):
    worker = start_worker(prefix, **SPLIT)
    assert wait_for(lambda: window_pids(worker), 30), "the worker started its window process"
    send(broker, f"{prefix}.events", good("svc/a", 0, 60))  # the input's own time closes windows 0-2
    metrics = [orjson.dumps({"series": "node/cpu", "ts": T0 + s, "value": 0.5}) for s in range(60)]
    send(broker, f"{prefix}.metrics", metrics + [b"not json"])
    got = points_of(broker, prefix, "svc/a", 3)
    assert [got.get(T0 + 10 * w) for w in range(3)] == [100] * 3
    # the child's counters are in the worker's /metrics
    assert wait_metric(worker.port, "foresight_messages_in_total", 60, topic="events") == 60
    assert wait_metric(worker.port, "foresight_messages_in_total", 61, topic="metrics") == 61
    assert wait_metric(worker.port, "foresight_dead_letters_total", 1, topic=f"{prefix}.metrics") == 1
    assert wait_metric(worker.port, "foresight_points_out_total", 6) >= 6
    assert metric(worker.port, "foresight_series_held") == 2
    assert metric(worker.port, "foresight_window_agent_seconds_total") > 0

    def kinds() -> dict[str, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/api/series?limit=50",  # noqa: S310
                                    timeout=10) as r:
            return {i["series"]: i.get("kind") for i in json.loads(r.read())["items"]}

    assert wait_for(lambda: kinds() == {"svc/a": "events", "node/cpu": "metrics"}, 30), kinds()


def test_a_window_process_that_dies_is_started_again_and_nothing_accepted_is_lost(
        broker, prefix, start_worker):
    worker = start_worker(prefix, **SPLIT)
    events = f"{prefix}.events"
    send(broker, events, good("svc/a", 0, 55))
    assert len(points_of(broker, prefix, "svc/a", 3)) == 3
    first = window_pids(worker)[0]
    # past a commit, so the next one re-reads only part of the input
    assert wait_for(lambda: committed(broker, f"{prefix}-app-input", events, PART), 30), "a commit"
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: len(window_pids(worker)) >= 2, 30), "started again"
    send(broker, events, good("svc/a", 55, 100))
    got = points_of(broker, prefix, "svc/a", 7)
    assert [got.get(T0 + 10 * w) for w in range(7)] == [100] * 7, \
        "every window whole: the open one re-read from the committed offset, none lost or doubled"
    assert "the window process exited" in worker.log.read_text()


def test_a_killed_worker_takes_its_window_process_with_it(broker, prefix, start_worker):
    worker = start_worker(prefix, **SPLIT)
    assert wait_for(lambda: window_pids(worker), 30)
    child = window_pids(worker)[0]
    assert alive(child)
    os.kill(worker.proc.pid, signal.SIGKILL)  # the worker alone, not its process group
    worker.proc.wait(10)
    assert wait_for(lambda: not alive(child), 20), "the window process saw its input close and stopped"


def test_a_stopped_worker_exits_only_after_its_window_process(broker, prefix, start_worker):
    worker = start_worker(prefix, **SPLIT)
    assert wait_for(lambda: window_pids(worker), 30)
    child = window_pids(worker)[0]
    os.kill(worker.proc.pid, signal.SIGTERM)  # the worker alone, as a supervisor stopping it would
    worker.proc.wait(30)
    assert not alive(child), "nothing the worker started outlives it"


def test_a_worker_stopped_with_its_process_group_exits_only_after_its_window_process(
        broker, prefix, start_worker):
    """As ``foresight demo`` and a terminal's Ctrl-C stop it: both processes get the signal at once."""
    worker = start_worker(prefix, **SPLIT)
    send(broker, f"{prefix}.events", good("svc/a", 0, 30))
    assert wait_for(lambda: window_pids(worker) and metric(worker.port, "foresight_messages_in_total") >= 30, 30)
    child = window_pids(worker)[0]
    os.killpg(worker.proc.pid, signal.SIGTERM)
    worker.proc.wait(30)
    assert not alive(child), "nothing the worker started outlives it"


def test_a_worker_whose_broker_is_gone_still_takes_its_window_process_with_it(tmp_path, prefix, start_worker):
    """As ``foresight demo`` stops everything at once: the broker goes, and the worker's process
    group gets SIGTERM; the window process's last commit and flush cannot reach the broker, and it
    must still be gone when the worker is."""
    from streams.broker import EmbeddedBroker

    own = EmbeddedBroker(log_path=str(tmp_path / "own-broker.log")).start()
    try:
        worker = start_worker(prefix, FORESIGHT_BROKER=own.bootstrap, **SPLIT)
        send(own.bootstrap, f"{prefix}.events", good("svc/a", 0, 30))
        assert wait_for(lambda: window_pids(worker) and metric(worker.port, "foresight_messages_in_total") >= 30,
                        60)
        child = window_pids(worker)[0]
    finally:
        own.stop()
    os.killpg(worker.proc.pid, signal.SIGTERM)
    worker.proc.wait(60)
    assert not alive(child), "nothing the worker started outlives it"


@pytest.mark.timeout(60)  # (a write that waits for the reader hangs: fails here, not after 600 s)
def test_the_window_process_reports_without_waiting_for_the_worker_to_read():
    """The reports go through a pipe the worker reads between its own steps: lines beyond what the
    pipe holds are queued, not waited for (the window agent goes on), and reach the worker whole
    and in order once it reads; a worker gone makes the next write raise, not hang."""
    from streams.worker.window_process import REPORT_QUEUE_LINES, ReportPipe

    r, w = os.pipe()
    lines = [orjson.dumps({"kinds": [[f"svc{k}-{i:05d}/requests", "events"] for i in range(5000)]})
             for k in range(8)]  # ~1.4 MB: over 20 times what the pipe holds
    assert len(lines) < REPORT_QUEUE_LINES
    writer = os.fdopen(w, "wb")
    pipe = ReportPipe(writer)
    for line in lines:
        pipe.write(line)  # returns while nobody reads (the old direct write blocked here)
    with os.fdopen(r, "rb") as reader:
        got = [reader.readline().rstrip(b"\n") for _ in lines]
        assert got == lines
        pipe.close(5.0)
        writer.close()
        assert reader.read() == b""  # nothing more than the lines
    r2, w2 = os.pipe()
    os.close(r2)  # the worker is gone
    gone = ReportPipe(os.fdopen(w2, "wb"))
    gone.write(b"{}")
    wait_for(lambda: gone.error is not None, timeout=5.0)
    with pytest.raises(OSError):
        gone.write(b"{}")
    gone.close(1.0)


def assigned(worker: Worker) -> dict[int, set[int]]:
    """Per window process (pid, from its log lines), the events partitions it was assigned last."""
    out: dict[int, set[int]] = {}
    for pid, parts in re.findall(r"\(window process (\d+)\): input partitions assigned \([^)]*\): (.*)",
                                 worker.log.read_text()):
        out[int(pid)] = {int(p) for p in re.findall(r"\.events\[(\d+)\]", parts)}
    return out


def test_two_window_processes_share_the_input_partitions_and_report_together(broker, prefix, start_worker):
    worker = start_worker(prefix, FORESIGHT_WINDOW_PROCESSES="2", **SPLIT)
    assert wait_for(lambda: len(window_pids(worker)) == 2, 30), "the worker started two window processes"
    assert wait_for(lambda: len(assigned(worker)) == 2 and all(assigned(worker).values()), 60), \
        f"each read a share of the input: {assigned(worker)}"
    got = assigned(worker)
    assert sorted(p for parts in got.values() for p in parts) == [0, 1, 2, 3], "every partition once"
    events = f"{prefix}.events"
    for part in range(4):
        send(broker, events, good(f"svc/p{part}", 0, 60), partition=part)  # closes windows 0-2
    for part in range(4):
        pts = points_of(broker, prefix, f"svc/p{part}", 3)
        assert [pts.get(T0 + 10 * w) for w in range(3)] == [100] * 3, f"partition {part}'s series windowed"
    # both processes' counters and held series add up in the worker's /metrics
    assert wait_metric(worker.port, "foresight_messages_in_total", 240, topic="events") == 240
    assert wait_for(lambda: metric(worker.port, "foresight_series_held") == 4, 30)


def test_window_processes_share_the_limit(broker, prefix, start_worker):
    """Each of two window processes holds half of ``FORESIGHT_MAX_SERIES`` (the input partitions,
    so the series, are shared evenly): together they never hold more than the limit."""
    worker = start_worker(prefix, FORESIGHT_WINDOW_PROCESSES="2", FORESIGHT_MAX_SERIES="4", **SPLIT)
    assert wait_for(lambda: len(assigned(worker)) == 2 and all(assigned(worker).values()), 60)
    events = f"{prefix}.events"
    for part in range(4):
        send(broker, events, [orjson.dumps({"series": f"user/{part}-{i}", "ts": T0 + 1}) for i in range(10)],
             partition=part)
    assert wait_metric(worker.port, "foresight_dead_letters_total", 36, topic=events, reason="series_limit") == 36
    assert metric(worker.port, "foresight_series_held") == 4, "two series in each process: the limit"
    assert metric(worker.port, "foresight_series_limit") == 4
