"""A worker's life: it stops when asked, and it notices when its broker is gone.

- **Bounded stop.** :class:`ForesightWorker` (Faust's ``Worker`` setting) starts
  a hard deadline on SIGTERM/SIGINT: the graceful stop gets
  :data:`STOP_GRACE_SECONDS`, then the process exits anyway. Nothing is lost
  by that: input is acknowledged only once its windows are published, so
  whatever was in flight is re-read by the partition's next owner.
- **Broker loss is visible.** :class:`BrokerWatch` asks the cluster every
  :data:`WATCH_INTERVAL_SECONDS` (from its own thread, whatever state
  Faust's loop is in) for its topics and id. If topics the worker uses
  vanished (the broker was replaced by an empty one, or wiped) or the cluster
  id changed, the worker logs one clear line and exits with
  :data:`BROKER_LOST_EXIT_CODE` within :data:`STOP_GRACE_SECONDS`, so that
  Kubernetes restarts it: on start the worker recreates its topics and
  resumes. A broker that is merely unreachable is retried (Faust reconnects
  by itself), logged at most once per :data:`LOG_INTERVAL_SECONDS`, and only
  after :data:`UNREACHABLE_EXIT_SECONDS` treated as lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import faust
from prometheus_client import Counter

from streams import kafka_config
from streams.ratelog import RateLimitedLog
from streams.settings import Settings

log = logging.getLogger("foresight.lifecycle")

#: most seconds a graceful stop may take before the process exits anyway
STOP_GRACE_SECONDS = 8.0
#: seconds between two looks at the cluster
WATCH_INTERVAL_SECONDS = 5.0
#: consecutive looks (a second apart) that must agree the broker is lost
LOST_CONFIRMATIONS = 2
#: exit code when the broker lost the worker's topics or was replaced
BROKER_LOST_EXIT_CODE = 3
#: exit code when a graceful stop did not finish in time
STOP_TIMEOUT_EXIT_CODE = 143
#: a broker unreachable this long counts as lost
UNREACHABLE_EXIT_SECONDS = 300.0
#: repeated broker errors are logged at most once per this many seconds
LOG_INTERVAL_SECONDS = 30.0

_exit_code: int | None = None
_exit_lock = threading.Lock()


def exit_code() -> int | None:
    """The exit code a watch asked for (None: a normal stop)."""
    return _exit_code


def hard_exit_after(seconds: float, code: int, why: str) -> threading.Timer:
    """Exit the process with ``code`` in ``seconds`` unless it has exited by then."""

    def fire() -> None:
        final = _exit_code if _exit_code is not None else code
        log.error("%s: the worker did not stop within %.0fs; exiting now (code %d)", why, seconds, final)
        for h in logging.getLogger().handlers:
            try:
                h.flush()
            except Exception:  # noqa: BLE001, S110 - exiting anyway
                pass
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(final)

    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()
    return t


class RepeatFilter(logging.Filter):
    """Lets a warning or error that repeats through at most once per ``interval``.

    Repeats are recognised by logger and the start of the message template
    (client libraries log a reconnect failure per attempt); the next line let
    through says how many were suppressed.

    >>> f = RepeatFilter(interval=60.0)
    >>> rec = lambda: logging.LogRecord("aiokafka", logging.ERROR, "", 0, "Unable connect to %s", ("n1",), None)
    >>> [f.filter(rec()) for _ in range(3)]
    [True, False, False]
    """

    def __init__(self, interval: float = LOG_INTERVAL_SECONDS) -> None:
        super().__init__()
        self._rl = RateLimitedLog(log, interval)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        ok, repeats = self._rl.allow(f"{record.name}:{str(record.msg)[:60]}")
        if ok and repeats:
            record.msg = f"{record.msg} [{repeats} similar lines suppressed]"
        return ok


class ForesightWorker(faust.Worker):
    """Faust's worker with a bounded stop on SIGTERM/SIGINT and rate-limited repeated log lines."""

    _deadline: threading.Timer | None = None

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        repeats = RepeatFilter()
        for h in logger.handlers:
            h.addFilter(repeats)

    def _arm(self, what: str) -> None:
        if self._deadline is None:
            self._deadline = hard_exit_after(STOP_GRACE_SECONDS, STOP_TIMEOUT_EXIT_CODE, what)

    def _on_sigterm(self) -> None:
        self._arm("SIGTERM")
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._arm("SIGINT")
        super()._on_sigint()


def request_exit(code: int, why: str) -> None:
    """Stop this worker as SIGTERM would, then exit with ``code`` (at the latest after the grace)."""
    global _exit_code
    with _exit_lock:
        if _exit_code is not None:
            return
        _exit_code = code
    log.critical("%s; exiting with code %d so that the worker is restarted", why, code)
    hard_exit_after(STOP_GRACE_SECONDS, code, why)
    os.kill(os.getpid(), signal.SIGTERM)


class BrokerWatch:
    """Notices that the topics a worker uses vanished or the cluster changed.

    ``judge`` is the pure part: given what a look at the cluster found, the
    reason the broker counts as lost, or None.

    >>> w = BrokerWatch("k:9092", ["a.events", "a.points"], internal_prefix="a-app-")
    >>> w.judge("c1", {"a.events", "a.points", "a-app-models-changelog"}, now=0.0) is None
    True
    >>> w.judge("c1", {"a.events", "a.points"}, now=5.0)
    'topics vanished from the broker at k:9092 (a-app-models-changelog): it was replaced or wiped'
    >>> w.judge("c2", {"a.events", "a.points", "a-app-models-changelog"}, now=5.0)
    "the cluster at k:9092 changed (id 'c1' -> 'c2')"
    >>> w.judge(None, None, now=10.0) is None, w.judge(None, None, now=400.0)
    (True, 'the broker at k:9092 has been unreachable for 395s')
    """

    def __init__(self, target: Settings | str, topics: Iterable[str], internal_prefix: str = "",
                 on_lost: Callable[[str], None] | None = None, errors: Counter | None = None,
                 interval: float = WATCH_INTERVAL_SECONDS,
                 unreachable_after: float = UNREACHABLE_EXIT_SECONDS) -> None:
        # the settings (broker and security, as every client: streams/kafka_config.py) or a bare
        # bootstrap address (PLAINTEXT)
        self.settings = target if isinstance(target, Settings) else Settings(broker=target)
        self.bootstrap = self.settings.broker
        self.watched = set(topics)
        self.internal_prefix = internal_prefix
        self.on_lost = on_lost
        self.errors = errors
        self.interval = interval
        self.unreachable_after = unreachable_after
        self.cluster_id: str | None = None
        self._reachable_at: float | None = None
        self._stop = threading.Event()
        self._rl = RateLimitedLog(log, LOG_INTERVAL_SECONDS)
        self._thread: threading.Thread | None = None

    def judge(self, cluster_id: str | None, topics: set[str] | None, now: float) -> str | None:
        """Why the broker counts as lost (None: it does not). ``topics`` None: unreachable."""
        if topics is None:
            if self._reachable_at is None:
                self._reachable_at = now
            if now - self._reachable_at > self.unreachable_after:
                return f"the broker at {self.bootstrap} has been unreachable for {now - self._reachable_at:.0f}s"
            return None
        self._reachable_at = now
        if cluster_id and self.cluster_id and cluster_id != self.cluster_id:
            return f"the cluster at {self.bootstrap} changed (id {self.cluster_id!r} -> {cluster_id!r})"
        self.cluster_id = self.cluster_id or cluster_id
        missing = sorted(self.watched - topics)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            return f"topics vanished from the broker at {self.bootstrap} ({shown}): it was replaced or wiped"
        if self.internal_prefix:  # changelogs etc., created by Faust after start-up
            self.watched |= {t for t in topics if t.startswith(self.internal_prefix)}
        return None

    async def look(self) -> tuple[str | None, set[str] | None]:
        """(cluster id, topic names); (None, None) if the broker did not answer."""
        from aiokafka.admin import AIOKafkaAdminClient

        try:  # the secrets are read afresh: a rotated (or, for a moment, missing) one is no crash
            client = kafka_config.client_kwargs(self.settings)
        except kafka_config.KafkaConfigError as exc:
            if self.errors is not None:
                self.errors.inc()
            self._rl.log(logging.WARNING, "config", "cannot connect to the broker at %s: %s", self.bootstrap, exc)
            return None, None
        admin = AIOKafkaAdminClient(**client, request_timeout_ms=4000)
        try:
            await asyncio.wait_for(admin.start(), 5)
            topics = set(await asyncio.wait_for(admin.list_topics(), 5))
            try:
                cluster: Any = await asyncio.wait_for(admin.describe_cluster(), 5)
                cid = cluster.get("cluster_id") if isinstance(cluster, dict) else None
            except Exception:  # noqa: BLE001 - older brokers have no DescribeCluster: topics suffice
                cid = None
            return cid, topics
        except Exception as exc:  # noqa: BLE001 - unreachable: counted, logged (rate-limited), retried
            if self.errors is not None:
                self.errors.inc()
            self._rl.log(logging.WARNING, "unreachable", "broker at %s did not answer: %s: %s",
                         self.bootstrap, type(exc).__name__, exc)
            return None, None
        finally:
            try:
                await asyncio.wait_for(admin.close(), 5)
            except Exception:  # noqa: BLE001, S110 - closing a client of a dead broker
                pass

    def run(self) -> None:
        """Look every ``interval`` seconds until :meth:`stop` or the broker is lost."""
        strikes = 0
        while not self._stop.wait(self.interval if strikes == 0 else 1.0):
            cid, topics = asyncio.run(self.look())
            why = self.judge(cid, topics, time.monotonic())
            if why is None:
                strikes = 0
                continue
            if self.errors is not None and topics is not None:
                self.errors.inc()
            strikes += 1
            if strikes < LOST_CONFIRMATIONS:  # one odd metadata answer is not a lost broker
                continue
            if self.on_lost is not None:
                self.on_lost(why)
            return

    def start(self) -> BrokerWatch:
        self._thread = threading.Thread(target=self.run, name="broker-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


def delivered(counter: Any, n: int = 1) -> Callable[[Any], None]:
    """A Faust ``send(callback=...)`` that counts a message (``n``: the records it carries) once
    the broker acknowledged it."""

    def callback(_message: Any) -> None:
        counter.inc(n)

    return callback
