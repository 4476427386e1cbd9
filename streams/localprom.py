"""A real Prometheus on a free loopback port whose storage holds a known series, history then live.

Used by ``foresight demo --local-prometheus`` (:mod:`streams.demo_sources`) and by the tests'
``prometheus`` fixture (``tests/prometheus_fixture.py``), so both run the same server the
same way:

- **history**: the series ``value(t)`` from ``end - history_seconds`` to ``end``, one
  sample every ``sample_seconds``, is written as OpenMetrics and turned into TSDB blocks
  with ``promtool tsdb create-blocks-from openmetrics``, so ``query_range`` returns real
  history;
- **live**: Prometheus scrapes a small exporter in this process every ``sample_seconds``
  that serves ``value(time.time())``. The history carries the labels the scrape gives
  (``job``, ``instance``), so the metric is one series, backfilled then scraped. The
  history reaches ``handover_seconds`` past the server's start: the first scrapes, older
  than the newest block, are refused (out of bounds), so the live samples carry on right
  after it, with no stretch of the last history value repeated (Prometheus' lookback).

It needs Debian's ``prometheus`` package (the ``prometheus`` and ``promtool`` binaries);
:func:`binaries` says whether they are here, :data:`MISSING` says what to install.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from streams.broker import free_port, wait_for_port

#: what to say when the binaries are absent
MISSING = ("Prometheus is not installed (needs the 'prometheus' and 'promtool' binaries: "
           "apt-get install prometheus)")
#: seconds past the start of the server that the history reaches (promtool + start-up take less)
HANDOVER_SECONDS = 8


def binaries() -> tuple[str, str] | None:
    """Paths of ``prometheus`` and ``promtool``, or None if either is missing."""
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    return (prom, tool) if prom and tool else None


class Exporter:
    """``metric value(now)`` as a Prometheus text exposition on a free loopback port."""

    def __init__(self, metric: str, value: Callable[[float], float]) -> None:
        body = self._body
        self.metric, self.value = metric, value

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                data = body().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, name="localprom-exporter", daemon=True).start()

    def _body(self) -> str:
        return f"# TYPE {self.metric} gauge\n{self.metric} {self.value(time.time())!r}\n"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_openmetrics(path: Path, metric: str, value: Callable[[float], float], start: int, end: int,
                      labels: str, sample_seconds: int = 1) -> int:
    """``value`` from ``start`` to ``end`` (inclusive) as OpenMetrics; returns the samples written."""
    n = 0
    with path.open("w") as fh:
        fh.write(f"# TYPE {metric} gauge\n")
        for t in range(start, end + 1, sample_seconds):
            fh.write(f"{metric}{{{labels}}} {value(t)!r} {t}\n")
            n += 1
        fh.write("# EOF\n")
    return n


@dataclass
class LocalPrometheus:
    """A started server: its URL, the history it holds, and how to stop (and restart) it."""

    url: str
    metric: str
    #: first and last timestamp of the history written into the TSDB
    history_start: float
    history_end: float
    proc: subprocess.Popen[bytes]
    log: Path
    exporter: Exporter | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop the server (an outage a test can end with :meth:`start`); the exporter stays."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def start(self) -> None:
        """Start it again after :meth:`stop`, on the same port and storage."""
        self.proc = subprocess.Popen(self.proc.args, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        wait_ready(self.url, self.proc, self.log)

    def close(self) -> None:
        """Stop the server and the exporter."""
        self.stop()
        if self.exporter is not None:
            self.exporter.close()
            self.exporter = None


def _poll(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    """Until ``/-/ready`` answers 200; raise if the process exits or ``timeout`` passes."""

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:  # noqa: S310 - loopback
                return r.status == 200
        except OSError:
            return False

    if not _poll(ready, timeout):
        raise TimeoutError(f"prometheus not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def wait_scraped(url: str, metric: str, after: float, timeout: float = 60.0) -> None:
    """Until the first live scrape newer than ``after`` has landed."""
    q = urllib.parse.urlencode({"query": f"timestamp({metric})"})

    def scraped() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=2) as r:  # noqa: S310
                result = json.load(r)["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) > after
        except (OSError, ValueError, KeyError):
            return False

    if not _poll(scraped, timeout):
        raise TimeoutError(f"prometheus has not scraped the exporter after {timeout}s")


def start_local_prometheus(root: Path, metric: str, value: Callable[[float], float],
                           history_seconds: int, sample_seconds: int = 1,
                           handover_seconds: int = HANDOVER_SECONDS) -> LocalPrometheus:
    """Build the TSDB under ``root``, start Prometheus and the exporter; return once the first
    live scrape has landed. Raise :class:`FileNotFoundError` (:data:`MISSING`) without the
    binaries, :class:`RuntimeError` if ``promtool`` or the server fails."""
    found = binaries()
    if found is None:
        raise FileNotFoundError(MISSING)
    prom, tool = found
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    end = int(time.time()) + handover_seconds
    start = end - int(history_seconds)
    exporter = Exporter(metric, value)
    try:
        om = root / "history.om"
        write_openmetrics(om, metric, value, start, end, f'instance="{exporter.target}",job="live"',
                          sample_seconds)
        made = subprocess.run([tool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
                              capture_output=True, text=True, timeout=300)
        if made.returncode != 0:
            raise RuntimeError(f"promtool failed: {made.stdout}\n{made.stderr}")
        om.unlink()
        config = root / "prometheus.yml"
        config.write_text(
            f"global: {{scrape_interval: {sample_seconds}s, evaluation_interval: {sample_seconds}s}}\n"
            "scrape_configs:\n"
            f"  - job_name: live\n    static_configs: [{{targets: ['{exporter.target}']}}]\n")
        port = free_port()
        log = root / "prometheus.log"
        args = [prom, f"--config.file={config}", f"--storage.tsdb.path={data}",
                "--storage.tsdb.retention.time=30d", f"--web.listen-address=127.0.0.1:{port}"]
        proc = subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        server = LocalPrometheus(url, metric, float(start), float(end), proc, log, exporter)
    except BaseException:
        exporter.close()
        raise
    try:
        wait_for_port("127.0.0.1", port, 60, proc)
        wait_ready(url, proc, log)
        wait_scraped(url, metric, float(end))
    except BaseException:
        server.close()
        raise
    return server
