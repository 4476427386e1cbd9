"""A real Prometheus server for the tests: history from ``promtool``, live data from a scrape.

The ``prometheus`` fixture writes a known series (:func:`known_value`, one sample a second)
as OpenMetrics, turns it into TSDB blocks with ``promtool tsdb create-blocks-from
openmetrics`` (so ``query_range`` returns real history), and starts Debian's ``prometheus``
on a free loopback port on that storage. It also scrapes a small exporter in this process
every second that serves the same function at the wall-clock time, so the series goes on
"live" after the history ends: the history is written with the labels the scrape gives
(``job``, ``instance``), so ``foresight_test_load`` is one series, backfilled then scraped.

Skips with a clear message where the binaries are absent, unless
``FORESIGHT_REQUIRE_PROMETHEUS=1`` (CI), where absence is a failure.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from streams.broker import free_port, wait_for_port
from tests.waiting import wait_for

#: the metric the fixture's TSDB and exporter hold
METRIC = "foresight_test_load"
#: query that returns it as one series
QUERY = METRIC
#: seconds of history written into the TSDB
HISTORY_SECONDS = 4 * 3600
#: seconds past the fixture's start that the history reaches (promtool + start-up take less)
HANDOVER_SECONDS = 8
#: seconds between history samples, and the scrape interval
SAMPLE_SECONDS = 1
#: the known series' period in seconds
PERIOD_SECONDS = 300


def known_value(t: float) -> float:
    """The known series: a 5-minute cycle around 100 with a faster ripple (always > 0)."""
    return 100.0 + 50.0 * math.sin(2 * math.pi * t / PERIOD_SECONDS) + 5.0 * math.sin(2 * math.pi * t / 37.0)


@dataclass
class PrometheusServer:
    url: str
    #: first and last timestamp of the history written into the TSDB
    history_start: float
    history_end: float
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def start(self) -> None:
        """Start it again after :meth:`stop` (an outage that ends), on the same port and storage."""
        self.proc = subprocess.Popen(self.proc.args, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        _wait_ready(self.url, self.proc, self.log)


def _binaries() -> tuple[str, str] | None:
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    return (prom, tool) if prom and tool else None


def require_prometheus() -> tuple[str, str]:
    found = _binaries()
    if found is None:
        msg = ("Prometheus is not installed (needs the 'prometheus' and 'promtool' binaries: "
               "apt-get install prometheus)")
        if os.environ.get("FORESIGHT_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"FORESIGHT_REQUIRE_PROMETHEUS=1 but {msg}")
        pytest.skip(msg)
    return found


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = (f"# TYPE {METRIC} gauge\n{METRIC} {known_value(time.time())!r}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:  # noqa: S310 - loopback
                return r.status == 200
        except OSError:
            return False

    if not wait_for(ready, timeout):
        raise TimeoutError(f"prometheus not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def _wait_scraped(url: str, after: float, timeout: float = 60.0) -> None:
    """Until the first live scrape has landed (before it, queries see the last history value)."""
    q = urllib.parse.urlencode({"query": f"timestamp({METRIC})"})

    def scraped() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=2) as r:  # noqa: S310
                result = json.load(r)["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) > after
        except (OSError, ValueError, KeyError):
            return False

    if not wait_for(scraped, timeout):
        raise TimeoutError(f"prometheus has not scraped the test exporter after {timeout}s")


def write_openmetrics(path: Path, start: int, end: int, labels: str) -> int:
    """The known series from ``start`` to ``end`` (inclusive) as OpenMetrics; returns the samples."""
    n = 0
    with path.open("w") as fh:
        fh.write(f"# TYPE {METRIC} gauge\n")
        for t in range(start, end + 1, SAMPLE_SECONDS):
            fh.write(f'{METRIC}{{{labels}}} {known_value(t)!r} {t}\n')
            n += 1
        fh.write("# EOF\n")
    return n


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus on a free loopback port: 4 h of known history, then live scrapes."""
    prom, tool = require_prometheus()
    root = tmp_path_factory.mktemp("prometheus")
    data = root / "data"
    # the history reaches a few seconds past the server's start: the first scrapes, older
    # than the newest block, are refused (out of bounds), so the live samples carry on right
    # after it, with no stretch of the last history value repeated (Prometheus' lookback)
    end = int(time.time()) + HANDOVER_SECONDS
    start = end - HISTORY_SECONDS
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=exporter.serve_forever, name="test-exporter", daemon=True).start()
    target = f"127.0.0.1:{exporter.server_port}"
    om = root / "history.om"
    write_openmetrics(om, start, end, f'instance="{target}",job="live"')
    made = subprocess.run([tool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
                          capture_output=True, text=True, timeout=300)
    if made.returncode != 0:
        raise RuntimeError(f"promtool failed: {made.stdout}\n{made.stderr}")

    config = root / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: live\n    static_configs: [{{targets: ['{target}']}}]\n")
    port = free_port()
    log = root / "prometheus.log"
    args = [prom, f"--config.file={config}", f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=30d", f"--web.listen-address=127.0.0.1:{port}"]
    proc = subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    server = PrometheusServer(url, float(start), float(end), proc, log)
    try:
        wait_for_port("127.0.0.1", port, 60, proc)
        _wait_ready(url, proc, log)
        _wait_scraped(url, float(end))
        yield server
    finally:
        server.stop()
        exporter.shutdown()
