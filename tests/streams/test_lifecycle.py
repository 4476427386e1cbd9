"""A worker stops when asked and notices when its broker is gone (real brokers, real workers)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker, free_port
from streams.lifecycle import BROKER_LOST_EXIT_CODE
from streams.producer import AggregatingProducer
from streams.settings import Settings
from tests.conftest import read_topic

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0


class Brokers:
    """Brokers started one after another on the same port (a broker replaced by an empty one)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.port, self.started = tmp, free_port(), []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EmbeddedBroker:
        b = EmbeddedBroker(port=self.port, log_path=str(self.tmp / f"broker-{len(self.started)}.log")).start()
        self.started.append(b)
        return b


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Brokers]:
    bs = Brokers(tmp_path)
    try:
        yield bs
    finally:
        for b in bs.started:
            b.stop()


def produce(bootstrap: str, prefix: str, first: int, last: int) -> None:
    with AggregatingProducer(bootstrap, interval=1.0, flush_every=0,
                             settings=Settings(topic_prefix=prefix, broker=bootstrap)) as p:
        for w in range(first, last):
            for s in range(10):
                p.record_event("svc/a", T0 + w * 10 + s, count=5)
            p.flush()


def test_a_worker_whose_broker_is_replaced_by_an_empty_one_exits_non_zero_and_its_successor_resumes(
        brokers, prefix, start_worker):
    first = brokers.start()
    w = start_worker(prefix, FORESIGHT_BROKER=brokers.bootstrap)
    produce(brokers.bootstrap, prefix, 0, 10)
    read_topic(brokers.bootstrap, f"{prefix}.points", lambda ms: len(ms) >= 5)

    first.stop()
    brokers.start()  # the same address, nothing on it
    try:
        code = w.proc.wait(timeout=60)  # the bound: detection + graceful stop
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker neither recovered nor exited:\n{w.log.read_text()[-3000:]}") from None
    text = w.log.read_text()
    assert code == BROKER_LOST_EXIT_CODE, text[-3000:]
    assert "topics vanished from the broker" in text
    assert text.count("topics vanished") <= 2, "said once (plus the exit line)"

    # what Kubernetes does next: restart it; it recreates its topics and resumes
    start_worker(prefix, FORESIGHT_BROKER=brokers.bootstrap)
    produce(brokers.bootstrap, prefix, 100, 110)
    points = read_topic(brokers.bootstrap, f"{prefix}.points", lambda ms: len(ms) >= 5)
    assert all(m["count"] == 50 for m in points), points


@pytest.mark.parametrize("broker_state", ["up", "gone"])
def test_sigterm_stops_a_worker_within_10s(brokers, prefix, start_worker, broker_state):
    first = brokers.start()
    w = start_worker(prefix, FORESIGHT_BROKER=brokers.bootstrap)
    produce(brokers.bootstrap, prefix, 0, 10)
    read_topic(brokers.bootstrap, f"{prefix}.points", lambda ms: len(ms) >= 5)
    if broker_state == "gone":
        first.stop()
    os.killpg(w.proc.pid, signal.SIGTERM)
    try:
        w.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"SIGTERM did not stop the worker within 10s:\n{w.log.read_text()[-2000:]}") from None


def _controller(bootstrap: str, prefix: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    import sys

    from tests.conftest import ROOT
    from tests.streams.test_controller import SCALERS

    scalers = tmp_path / "scalers.yaml"
    scalers.write_text(SCALERS)
    log = tmp_path / "controller.log"
    env = {**os.environ, "FORESIGHT_BROKER": bootstrap, "FORESIGHT_TOPIC_PREFIX": prefix}
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "streams", "scaler", "--scalers", str(scalers)], env=env,
                                stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    return proc, log


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)  # polling a log file under the deadline


@pytest.mark.parametrize("event", ["broker replaced", "sigterm, broker gone"])
def test_the_controller_exits_when_its_broker_is_replaced_and_stops_on_sigterm(brokers, prefix, tmp_path, event):
    first = brokers.start()
    proc, log = _controller(brokers.bootstrap, prefix, tmp_path)
    try:
        _wait_for_line(log, "controller reading", proc)
        first.stop()
        if event == "broker replaced":
            brokers.start()
            timeout, want = 60, BROKER_LOST_EXIT_CODE
        else:
            os.killpg(proc.pid, signal.SIGTERM)
            timeout, want = 10, None
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the controller did not exit ({event}):\n{log.read_text()[-2000:]}") from None
        if want is not None:
            assert code == want, log.read_text()[-2000:]
            assert "topics vanished" in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_the_broker_watch_counts_a_secret_gone_missing_and_goes_on(broker, tmp_path):
    import asyncio

    from prometheus_client import CollectorRegistry, Counter

    from streams.lifecycle import BrokerWatch

    secret = tmp_path / "sasl-password"
    settings = Settings(broker=broker, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
                        kafka_sasl_password_file=str(secret))  # the mounted secret is missing (rotation)
    errors = Counter("broker_errors", "test", registry=CollectorRegistry())
    watch = BrokerWatch(settings, ["x"], errors=errors)
    assert asyncio.run(watch.look()) == (None, None), "counted as unreachable, never a crash of the watch"
    assert errors._value.get() == 1  # noqa: SLF001
    plain = BrokerWatch(Settings(broker=broker), [], errors=errors)
    cluster_id, topics = asyncio.run(plain.look())
    assert cluster_id and topics is not None and errors._value.get() == 1  # noqa: SLF001
