"""The window agent in a process of its own (``FORESIGHT_WINDOW_PROCESS``).

A worker is one Python process: its window agent (parse and window the input)
and its model agent (learn the points) take turns on one core, however many the
pod has (issue 14: at 10,000 series the model agent's updates alone cost about
as much CPU per aggregate as the raw loop's reading four times over). The
window agent already reads the input topics with a consumer group of its own
and hands its results on through the ``points`` topic, so it runs unchanged
(:class:`~streams.worker.windows.Windows`) in a child process
(``python -m streams.worker.window_process``) that the worker starts, watches
and starts again:

- the child has the worker's settings (:meth:`Settings.to_env`), its own
  producer for ``points`` and the dead letters, the series budget (admission,
  ``series_limit``) and the idle series' windows (their eviction);
- every :data:`REPORT_SECONDS` it writes one JSON line to the worker on its
  standard output (its own output goes to standard error, the worker's log):
  its counters' totals (the worker adds what they grew by to its own, so one
  ``/metrics`` has them all), the series held, the input partitions' lag, the
  typical series time (``kafkaTopic`` signals), and the series it evicted or
  admitted again since (the worker checkpoints and drops their models and
  views, :mod:`streams.worker.eviction`); the kinds of new series (the read
  model's units) are queued before the first points that carry them are sent
  (a view whose points come first takes its kind when it comes); a thread
  writes the lines (:class:`ReportPipe`), so the window agent does not wait
  for the worker to read them;
- there may be several (``Settings.window_process_count``: by default one per CPU): they join
  one consumer group, so each reads a share of the input partitions and holds an equal share of
  the series limit; the worker adds up their reports (:class:`WindowProcesses`);
- it stops when its standard input closes (the worker is gone, even killed)
  or on SIGTERM (after committing what is safe); the worker starts it again a
  second after it exits, and it re-reads the input from the committed offsets,
  as a restarted worker does: nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from streams.budget import SeriesBudget
from streams.metrics import Metrics
from streams.settings import Settings
from streams.topics import Topics
from streams.web.specs import scaler_series
from streams.worker import eviction
from streams.worker.context import (
    Source,
    WorkerContext,
    WorkerState,
    worker_producer,
)
from streams.worker.windows import Windows

log = logging.getLogger("foresight.window")
#: seconds between two reports of the window process to its worker
REPORT_SECONDS = 0.5
#: most new series' kinds in one report line
KINDS_PER_LINE = 5_000
#: the longest report line the worker reads (bytes)
REPORT_LINE_LIMIT = 16 * 2**20
#: report lines the window process holds for the worker at most (then reporting waits for it)
REPORT_QUEUE_LINES = 256
#: seconds the window process gives each step of its stop (the last commit, the producer's flush)
STOP_STEP_SECONDS = 3.0
#: seconds the worker waits for a stopped window process before killing it
STOP_SECONDS = 3 * STOP_STEP_SECONDS
#: container objects allocated before a young-generation garbage collection in the window process
#: (Python's default: 700). Measured at 10,000 series of client aggregates (README "Benchmarks"):
#: the window agent's CPU per aggregate 1.51 -> 1.28-1.30 us
GC_YOUNG_OBJECTS = 50_000
#: seconds after the window process exits before the worker starts it again
RESTART_SECONDS = 1.0
#: seconds an evicted series is remembered, to tell the worker when it is admitted again
#: (the worker forgets it as evicted after eviction.LATE_SECONDS)
RECENT_SECONDS = 2 * eviction.LATE_SECONDS


# -- the child -----------------------------------------------------------------------------------
class _Topic:
    """Sends to one topic through the window process's producer (the part of a Faust topic's
    ``send`` the window agent uses)."""

    __slots__ = ("producer", "name", "before")

    def __init__(self, producer: AIOKafkaProducer, name: str, before: Callable[[], None] | None = None) -> None:
        self.producer, self.name, self.before = producer, name, before

    async def send(self, key: bytes | None = None, value: bytes | None = None, partition: int | None = None,
                   callback: Callable[[Any], None] | None = None) -> asyncio.Future[Any]:
        if self.before is not None:
            self.before()
        fut = await self.producer.send(self.name, value, key=key, partition=partition)
        if callback is not None:
            fut.add_done_callback(lambda f: None if f.cancelled() or f.exception() is not None else callback(f))
        return fut


class _Out(dict[str, _Topic]):
    """Per topic name, its :class:`_Topic` (made on first use: the dead-letter topics)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        super().__init__()
        self.producer = producer

    def __missing__(self, name: str) -> _Topic:
        t = self[name] = _Topic(self.producer, name)
        return t


class KindNotes:
    """Stands in for the read model's ``note_kind`` in the window process: each series' kind
    (``events`` or ``metrics``) is kept to report to the worker when it is new or changed."""

    __slots__ = ("known", "new", "most")

    def __init__(self, most: int) -> None:
        self.known: dict[str, str] = {}
        self.new: list[tuple[str, str]] = []
        self.most = max(1000, most)

    def note_kind(self, series: str, kind: str) -> None:
        if self.known.get(series) != kind:
            if len(self.known) >= self.most:  # reported again if seen again: harmless
                self.known.clear()
            self.known[series] = kind
            self.new.append((series, kind))


@dataclass
class WindowContext:
    """The window process's context: what :class:`~streams.worker.windows.Windows` uses of a
    worker's (:class:`~streams.worker.context.InputContext`)."""

    settings: Settings
    metrics: Metrics
    topics: Topics
    budget: SeriesBudget
    producer: AIOKafkaProducer
    out: Mapping[str, Any]
    store: KindNotes
    state: WorkerState = field(default_factory=WorkerState)
    window_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def step(self) -> float:
        return self.settings.window_seconds

    async def flush(self) -> None:
        await self.producer.flush()


class ReportPipe:
    """The window process's end of its report pipe: lines written by a thread of their own, so
    the window agent never waits for the worker to read them (the worker reads its end between
    two of its own steps, and a step learning a points message can take a second: the new series'
    kinds of a first window, ~35 bytes each, filled the pipe and stopped the window agent for it,
    7 % of its time at 100,000 series).

    Lines keep their order. At most :data:`REPORT_QUEUE_LINES` wait; beyond them :meth:`write`
    waits for the thread (as a write to a full pipe did). Once a write fails (the worker is gone)
    every later one raises that ``OSError``.

    >>> import io
    >>> out = io.BytesIO()
    >>> pipe = ReportPipe(out)
    >>> pipe.write(b'{"a":1}'); pipe.write(b'{"b":2}'); pipe.close(1.0)
    >>> out.getvalue().splitlines()
    [b'{"a":1}', b'{"b":2}']
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.error: OSError | None = None
        self._lines: queue.Queue[bytes | None] = queue.Queue(REPORT_QUEUE_LINES)
        self._thread = threading.Thread(target=self._run, name="window-reports", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (line := self._lines.get()) is not None:
            if self.error is not None:
                continue
            try:
                self.stream.write(line)
                self.stream.flush()
            except OSError as exc:  # the worker is gone: the window process stops on its own
                self.error = exc

    def write(self, line: bytes) -> None:
        """Hand ``line`` (without its newline) to the thread."""
        if self.error is not None:
            raise self.error
        self._lines.put(line + b"\n")

    def close(self, timeout: float) -> None:
        """Write what is queued (waiting at most ``timeout`` seconds), then stop the thread."""
        try:
            self._lines.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)


class Reporter:
    """Writes the window process's reports to the worker (one JSON object a line)."""

    def __init__(self, ctx: WindowContext, windows: Windows, stream: ReportPipe) -> None:
        self.ctx, self.windows, self.stream = ctx, windows, stream
        #: series evicted since the last report, and those of the recently evicted admitted again
        self.evicted: list[str] = []
        #: recently evicted series: when
        self.recent: dict[str, float] = {}

    def write(self, **fields: Any) -> None:
        self.stream.write(orjson.dumps(fields))

    def kinds(self) -> None:
        """Report the kinds of new series (before the points that carry them are sent)."""
        new = self.ctx.store.new
        if new:
            self.ctx.store.new = []
            for i in range(0, len(new), KINDS_PER_LINE):
                self.write(kinds=new[i:i + KINDS_PER_LINE])

    def counters(self) -> list[tuple[str, dict[str, str], float]]:
        """Every counter's nonzero totals: (sample name, labels, value)."""
        return [(s.name, s.labels, s.value) for family in self.ctx.metrics.registry.collect()
                if family.type == "counter" for s in family.samples if s.name.endswith("_total") and s.value]

    def report(self) -> None:
        ctx = self.ctx
        self.kinds()
        budget, recent = ctx.budget, self.recent
        back = [s for s in recent if s in budget]
        for s in back:
            del recent[s]
        evicted, self.evicted = self.evicted, []
        self.write(counters=self.counters(), held=len(budget), evicted=evicted, back=back,
                   lag=[[t, p, n] for (t, p), n in self.windows.input_lag().items()],
                   typical=max((w.typical for w in ctx.state.windowers.values()), default=None))

    async def evict(self) -> None:
        """The idle series' windows closed and their places freed (reported to the worker)."""
        now = time.monotonic()
        idle = await eviction.evict_windows(self.ctx, self.windows, now)
        self.evicted += idle
        for s in idle:
            self.recent[s] = now
        if len(self.recent) > 2 * eviction.EVICT_BATCH:
            for s, at in list(self.recent.items()):
                if now - at > RECENT_SECONDS:
                    del self.recent[s]


async def _every(seconds: float, step: Callable[[], Awaitable[None] | None], what: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            got = step()
            if got is not None:
                await got
        except Exception:  # noqa: BLE001 - a timer never dies
            log.exception("%s failed", what)


async def _stdin_closed() -> None:
    """Returns when the worker closes the window process's standard input (or is gone)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def serve(settings: Settings, stream: IO[bytes]) -> None:
    """The window process: the window agent, its timers and the reports, until the worker
    closes standard input or SIGTERM/SIGINT."""
    producer = worker_producer(settings, "window")
    await producer.start()
    metrics = Metrics()
    # the series limit's share of this process (the worker passes how many it starts)
    budget = SeriesBudget(max(1, settings.max_series_limit() // max(1, settings.window_process_count())),
                          settings.series_idle_seconds, scaler_series(settings, "series limit"))
    topics = Topics.from_settings(settings)
    out = _Out(producer)
    ctx = WindowContext(settings, metrics, topics, budget, producer, out, KindNotes(2 * budget.limit))
    windows = Windows(ctx)
    pipe = ReportPipe(stream)
    reporter = Reporter(ctx, windows, pipe)
    out[topics.points] = _Topic(producer, topics.points, before=reporter.kinds)
    windows.after_fetch = reporter.report  # what a fetch counted reaches the worker's /metrics at once
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(t) for t in (
        windows.run_forever(),
        _every(windows.idle_interval, windows.close_idle_partitions, "closing idle windows"),
        _every(eviction.interval(settings), reporter.evict, "evicting idle series"),
        _every(REPORT_SECONDS, reporter.report, "reporting to the worker"),
        _stdin_closed(), stop.wait())]
    try:
        await asyncio.wait(tasks[-2:], return_when=asyncio.FIRST_COMPLETED)
        log.info("window process stopping: committing what is safe")
        async with ctx.window_lock:  # (a broker already gone: the next owner re-reads the rest)
            await asyncio.wait_for(windows.commit(force=True), STOP_STEP_SECONDS)
    except TimeoutError:
        log.warning("window process: the last commit took over %g s; the input is re-read from the one before",
                    STOP_STEP_SECONDS)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            reporter.report()  # the last counts
        except OSError:  # the worker is gone
            pass
        pipe.close(STOP_STEP_SECONDS)
        try:
            await asyncio.wait_for(producer.stop(), STOP_STEP_SECONDS)
        except TimeoutError:
            log.warning("window process: the producer did not stop within %g s", STOP_STEP_SECONDS)


def main() -> None:
    """``python -m streams.worker.window_process``: started by a worker (settings in the environment)."""
    settings = Settings.from_env()
    stream = os.fdopen(os.dup(1), "wb")  # the reports; anything printed goes to the log
    os.dup2(2, 1)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s (window process %(process)d): %(message)s")
    if settings.log_level.lower() != "debug":
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # a fetch's parsed messages (thousands of dicts and lists) live until they are windowed: with
    # the default young generation (700 objects) most survive a collection and are promoted, and the
    # older generations' collections then walk every series' windows again and again
    gc.set_threshold(GC_YOUNG_OBJECTS)
    asyncio.run(serve(settings, stream))


# -- the worker's side ---------------------------------------------------------------------------
class WindowProcess:
    """The worker's side of one window process: starts it (with ``settings``), applies its
    reports, starts it again when it exits (:meth:`run`)."""

    def __init__(self, ctx: WorkerContext, settings: Settings) -> None:
        self.ctx, self.settings = ctx, settings
        #: series the window process holds, and the input partitions' lag (from its last report)
        self.held = 0
        self.lag: dict[Source, int] = {}
        #: the newest typical series time of its input partitions (kafkaTopic signals)
        self.typical: float | None = None
        self.pid: int | None = None
        self._evicted: list[str] = []
        self._back: list[str] = []
        #: the child's counter totals last reported: (sample name, labels) -> value
        self._totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._counters: dict[str, Counter] = {}
        for c in vars(ctx.metrics).values():
            if isinstance(c, Counter):
                for family in c.describe():
                    self._counters[family.name + "_total"] = c

    def take_evictions(self) -> tuple[list[str], list[str]]:
        """The series evicted since the last call, and the recently evicted admitted again."""
        out = self._evicted, self._back
        self._evicted, self._back = [], []
        return out

    def apply(self, report: dict[str, Any]) -> None:
        """One report of the window process."""
        note = self.ctx.store.note_kind
        for series, kind in report.get("kinds", ()):
            note(series, kind)
        totals = self._totals
        for name, labels, value in report.get("counters", ()):
            key = (name, tuple(sorted(labels.items())))
            delta = value - totals.get(key, 0.0)
            totals[key] = value
            c = self._counters.get(name)
            if delta > 0 and c is not None:
                (c.labels(**labels) if labels else c).inc(delta)
        if "held" in report:
            self.held = int(report["held"])
            self.lag = {(t, int(p)): int(n) for t, p, n in report.get("lag", ())}
            self.typical = report.get("typical")
        self._evicted += report.get("evicted", ())
        self._back += report.get("back", ())

    async def run(self) -> None:
        """Start the window process, read its reports until it exits; start it again."""
        env = {**os.environ, **self.settings.to_env()}
        while not self._stopping():
            try:
                code: int | str | None = await self._run_once(env)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the worker never stops starting it
                log.exception("the window process could not be run")
                code = f"{type(exc).__name__}: {exc}"
            self.held, self.lag, self.pid = 0, {}, None
            if self._stopping():  # the worker is stopping (its SIGTERM stopped the process too)
                return
            log.warning("the window process exited (%s): starting it again in %g s (its input is "
                        "read again from the committed offsets)", code, RESTART_SECONDS)
            await asyncio.sleep(RESTART_SECONDS)

    def _stopping(self) -> bool:
        """The worker is stopping: no window process is started again."""
        return bool(getattr(self.ctx.app, "should_stop", False))

    async def _run_once(self, env: dict[str, str]) -> int:
        """One window process, from its start to its exit code."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streams.worker.window_process", env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=REPORT_LINE_LIMIT)
        self.pid = proc.pid
        self._totals.clear()  # a new process counts from 0
        log.info("window process started (pid %d, %d in all)", proc.pid, self.settings.window_process_count())
        try:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                try:
                    self.apply(orjson.loads(line))
                except Exception:  # noqa: BLE001 - one bad report never stops the worker
                    log.exception("a report of the window process could not be read")
            return await proc.wait()
        finally:
            if proc.returncode is None:
                await _stop(proc)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM (it commits what is safe), then SIGKILL after :data:`STOP_SECONDS`."""
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_SECONDS)
    except TimeoutError:
        proc.kill()
        await proc.wait()


class WindowProcesses:
    """The worker's window processes (``Settings.window_process_count``; each reads a share of
    the input partitions, one consumer group): their reports together."""

    def __init__(self, ctx: WorkerContext) -> None:
        n = ctx.settings.window_process_count()
        settings = ctx.settings.replace(window_processes=n)  # (each child's share of the limit)
        self.links = [WindowProcess(ctx, settings) for _ in range(n)]

    @property
    def held(self) -> int:
        """Series the window processes hold."""
        return sum(link.held for link in self.links)

    @property
    def lag(self) -> dict[Source, int]:
        """The input partitions' lag."""
        out: dict[Source, int] = {}
        for link in self.links:
            out.update(link.lag)
        return out

    @property
    def typical(self) -> float | None:
        """The newest typical series time of the input partitions (kafkaTopic signals)."""
        return max((link.typical for link in self.links if link.typical is not None), default=None)

    def take_evictions(self) -> tuple[list[str], list[str]]:
        """The series evicted since the last call, and the recently evicted admitted again."""
        evicted: list[str] = []
        back: list[str] = []
        for link in self.links:
            e, b = link.take_evictions()
            evicted += e
            back += b
        return evicted, back

    async def run(self) -> None:
        await asyncio.gather(*(link.run() for link in self.links))

    def stop_now(self) -> None:
        """Stop the window processes from outside the event loop (the worker's exit): SIGTERM,
        then SIGKILL to those still there after :data:`STOP_SECONDS`, so none outlives the worker."""
        pids = set()
        for pid in (link.pid for link in self.links):
            try:
                if pid is not None:
                    os.kill(pid, signal.SIGTERM)
                    pids.add(pid)
            except ProcessLookupError:  # gone already
                continue
        deadline = time.monotonic() + STOP_SECONDS
        while pids and time.monotonic() < deadline:
            for pid in list(pids):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        pids.discard(pid)
                except ChildProcessError:  # reaped already
                    pids.discard(pid)
            if pids:
                time.sleep(0.05)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                continue


def install(ctx: WorkerContext) -> WindowProcesses:
    """The window processes, as a task of the worker."""
    links = WindowProcesses(ctx)
    ctx.on_exit.append(links.stop_now)

    @ctx.app.task
    async def window_process() -> None:
        await links.run()

    return links


if __name__ == "__main__":
    main()
