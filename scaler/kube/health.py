"""Liveness, readiness and metrics over HTTP for the controller (stdlib server, one thread).

``/healthz`` is 200 while the operator's threads are alive, ``/readyz`` once the
initial list has loaded every PredictiveScaler, ``/metrics`` serves a
Prometheus registry when one is given. Followers (not holding the Lease) are
ready: they are what a fail-over needs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HealthServer:
    """Serve the probes on ``host:port`` (port 0 picks a free one; see :attr:`port`)."""

    def __init__(
        self,
        live: Callable[[], bool],
        ready: Callable[[], bool],
        host: str = "0.0.0.0",
        port: int = 8000,
        registry: Any | None = None,
    ) -> None:
        self.live = live
        self.ready = ready
        self.registry = registry
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/healthz":
                    outer._answer(self, outer.live())
                elif self.path == "/readyz":
                    outer._answer(self, outer.ready())
                elif self.path == "/metrics" and outer.registry is not None:
                    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                    body = generate_latest(outer.registry)
                    self.send_response(200)
                    self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet probes
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, ok: bool) -> None:
        body = b"ok\n" if ok else b"not ok\n"
        handler.send_response(200 if ok else 503)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
