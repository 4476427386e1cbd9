"""Shared fixtures: the real embedded broker, workers as subprocesses, topic readers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams import records
from streams.broker import EmbeddedBroker, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Tansu broker on a free loopback port, for the whole session."""
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    b = EmbeddedBroker(log_path=str(log)).start()
    try:
        yield b.bootstrap
    finally:
        b.stop()


@pytest.fixture
def prefix() -> str:
    """A fresh topic prefix per test, so tests sharing the broker never interfere."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["true", "false"], ids=["window-process", "one-process"])
def both_modes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test once with the window agent in a process of its own (the default) and once in the
    worker's process (``FORESIGHT_WINDOW_PROCESS=false``): the workers it starts read it from the
    environment."""
    monkeypatch.setenv("FORESIGHT_WINDOW_PROCESS", request.param)
    return request.param


class Worker:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, port: int) -> None:
        self.proc, self.log, self.port = proc, log, port

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture
def start_worker(broker: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start ``foresight worker`` subprocesses against the test broker."""
    workers: list[Worker] = []

    def start(prefix: str, **env: str) -> Worker:
        port = free_port()
        log = tmp_path / f"worker-{len(workers)}.log"
        full = {
            **os.environ,
            "FORESIGHT_BROKER": broker,
            "FORESIGHT_TOPIC_PREFIX": prefix,
            "FORESIGHT_APP_ID": f"{prefix}-app",
            "FORESIGHT_DATA_DIR": str(tmp_path / f"data-{len(workers)}"),
            "FORESIGHT_WEB_PORT": str(port),
            "FORESIGHT_MODEL_KEY": "test-key-0123456789abcdef",
            "FORESIGHT_LOG_LEVEL": "info",
            # one window process unless a test asks for more (the default is one per CPU: two
            # on a two-core machine already running two test workers; tests/streams/
            # test_window_process.py runs two)
            "FORESIGHT_WINDOW_PROCESSES": "1",
            **env,
        }
        with open(log, "ab") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=full, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        w = Worker(proc, log, port)
        workers.append(w)
        try:
            wait_for_port("127.0.0.1", port, 60, proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n--- worker log ---\n{log.read_text()[-3000:]}") from None
        return w

    yield start
    for w in workers:
        w.stop()


def read_topic(bootstrap: str, topic: str, until: Callable[[list[dict]], bool], timeout: float = 60.0,
               split: bool = True) -> list[dict]:
    """Read every message of ``topic`` (all partitions) until ``until(messages)`` or timeout.

    ``split``: a message holding a JSON array (a batch) counts as its elements; False keeps
    one entry per message."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> list[dict]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        out: list[dict] = []
        try:
            deadline = time.monotonic() + timeout
            parts = None
            while not parts and time.monotonic() < deadline:
                await c._client.force_metadata_update()  # noqa: SLF001
                parts = c.partitions_for_topic(topic)
                if not parts:
                    await asyncio.sleep(0.2)
            if not parts:
                return out
            c.assign([TopicPartition(topic, p) for p in parts])
            while time.monotonic() < deadline and not until(out):
                batch = await c.getmany(timeout_ms=300)
                for msgs in batch.values():
                    for m in msgs:  # a batch message (points, forecasts) is its elements
                        v = records.message_json(m.value)  # (a framed forecasts batch: its JSON form)
                        if split and isinstance(v, dict) and isinstance(v.get("series"), list):
                            # a columnar points or forecasts batch
                            v = records.point_elements(v) if "value" in v else records.forecast_elements(v)
                        out.extend(v if split and isinstance(v, list) else [v])
        finally:
            await c.stop()
        return out

    return asyncio.run(run())


def send_raw(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value in messages:
        p.send(topic, key=key, value=value)
    p.flush()
    p.close()


# the real Prometheus server (tests/prometheus_fixture.py)
from tests.prometheus_fixture import prometheus  # noqa: E402, F401
