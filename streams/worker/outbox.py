"""The forecasts' outbox: the model agent's forecasts messages, sent by a producer of their own
on a thread of their own.

Why a thread: a series' forecast is 744 bytes (62 horizons of three float32 values), so 100,000
series make 74 MB of forecasts a window. aiokafka holds the next record of a partition whose batch
is full until that batch is drained, and it has one request in flight per broker: handing a points
message's forecasts to Faust's producer took a broker round trip per 512 KB batch. The model agent
waited for them before it learnt its next message, and while it learnt, its event loop (the same
one) sent nothing: learning and the broker's work took turns. Measured before the outbox
(``python benchmarks/throughput.py --model-path``, 300,000 updates): the agent waited 1.2 s at
1,000 series and 1.7 s at 100,000 series of the ~7 s the backlog took. Here the sends go on while
the agent learns the next message.

What it keeps:

- **Order.** A partition's forecasts go out in the order they were handed over (one queue, one
  sender: each message is appended to the producer's batch of its partition before the next).
- **At-least-once.** :meth:`Outbox.send` returns a future of the caller's loop that is done once
  the broker has acknowledged every message of the call (or holds the first error). The model
  agent acknowledges a points message only once its forecasts' future is done without error, so a
  worker that stops with forecasts in the outbox leaves their points unacknowledged, and the
  partition's next owner learns them again (its forecasts the same numbers).
- **Bounded memory.** At most :data:`OUTBOX_MAX_BYTES` wait in it; :meth:`Outbox.send` waits for
  room (backpressure, counted in ``foresight_forecasts_send_seconds``).
- **Safe.** The producer is the worker's (:func:`~streams.worker.context.worker_producer`: its
  client settings, address, TLS, SASL, and ``acks=all``), as the window process's is.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from streams.settings import Settings
from streams.worker.context import worker_producer

log = logging.getLogger("foresight.worker")

#: bytes of forecasts messages the outbox holds at most before :meth:`Outbox.send` waits (the
#: forecasts of ~22,000 series; a full points message's, ~3,500 series, are ~2.6 MB)
OUTBOX_MAX_BYTES = 16 * 2**20
#: seconds between two attempts to start the outbox's producer (the broker not reachable yet)
START_RETRY_SECONDS = 1.0
#: seconds :meth:`Outbox.stop` waits for what is queued to be delivered
STOP_TIMEOUT_SECONDS = 5.0


class Outbox:
    """Messages sent in order by a producer on a thread of its own (see the module).

    ``on_delivered(n)`` is called, on the outbox's thread, for each message the broker
    acknowledged, with the records it carries."""

    def __init__(self, settings: Settings, on_delivered: Callable[[int], None],
                 max_bytes: int = OUTBOX_MAX_BYTES) -> None:
        self.settings = settings
        self.on_delivered = on_delivered
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        #: bytes handed over and not delivered (or failed) yet
        self._bytes = 0
        #: set (on the caller's loop) when there is room again
        self._room: asyncio.Event | None = None
        self._caller: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def queued_bytes(self) -> int:
        """Bytes handed over and not delivered yet."""
        return self._bytes

    def start(self) -> None:
        """Start the outbox's thread (its producer starts with the first message)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="foresight-outbox", daemon=True)
        self._thread.start()
        self._ready.wait()

    async def send(self, topic: str, partition: int, messages: Sequence[tuple[int, bytes]]) -> asyncio.Future[None]:
        """Hand ``messages`` ((records in it, body) pairs) over for ``topic[partition]``; returns
        a future (of the running loop) done once the broker has acknowledged them all, or with
        the first error. Waits while the outbox holds :data:`OUTBOX_MAX_BYTES` or more."""
        caller = asyncio.get_running_loop()
        if self._caller is not caller:  # the first call (or a new loop: a test's asyncio.run)
            self._caller, self._room = caller, asyncio.Event()
        self.start()
        assert self._loop is not None and self._queue is not None and self._room is not None
        if self._stopping:
            raise RuntimeError("the outbox is stopped")
        size = sum(len(body) for _, body in messages)
        while self._bytes >= self.max_bytes:
            self._room.clear()
            if self._bytes < self.max_bytes:
                break
            await self._room.wait()
        done: asyncio.Future[None] = caller.create_future()
        with self._lock:
            self._bytes += size
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (topic, partition, list(messages), size, done))
        return done

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Deliver what is queued (for at most ``timeout`` seconds), then stop the producer and
        the thread. What is not delivered by then stays unacknowledged (its points are learnt
        again by the partition's next owner)."""
        thread, loop, queue = self._thread, self._loop, self._queue
        self._stopping = True
        if thread is None or loop is None or queue is None:
            return
        try:
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except RuntimeError:  # the loop is closed: the thread is gone
            return
        thread.join(timeout)

    # -- the outbox's thread -------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop, self._queue = loop, asyncio.Queue()
        self._ready.set()
        try:
            loop.run_until_complete(self._drain(self._queue))
        except Exception:  # noqa: BLE001 - logged: the agent's acknowledgements then wait
            log.exception("forecasts outbox: its thread failed")
        finally:
            loop.close()

    async def _drain(self, queue: asyncio.Queue[Any]) -> None:
        producer = None
        gave_up = False  # a start failed once the outbox was told to stop: no more tries
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                topic, partition, messages, size, done = item
                while producer is None and not gave_up:
                    producer = await self._start_producer()
                    gave_up = producer is None and self._stopping
                if producer is None:  # stopped, and the broker could not be reached
                    self._finish(size, done, RuntimeError("the outbox stopped and its broker cannot be reached"))
                    continue
                try:
                    futures = [(n, await producer.send(topic, body, partition=partition)) for n, body in messages]
                except Exception as exc:  # noqa: BLE001 - this call fails; the next ones are tried
                    self._finish(size, done, exc)
                    continue
                task = asyncio.ensure_future(self._delivered(futures, size, done))
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:
            if producer is not None:
                try:
                    await producer.stop()  # flushes what is batched: its deliveries are settled
                except Exception:  # noqa: BLE001 - stopping anyway
                    log.warning("forecasts outbox: stopping its producer failed", exc_info=True)
            if pending:  # count and tell what the flush delivered (their tasks may not have run yet)
                await asyncio.wait(list(pending), timeout=STOP_TIMEOUT_SECONDS)
            for task in list(pending):
                if not task.done():
                    task.cancel()

    async def _start_producer(self) -> Any:
        producer = worker_producer(self.settings, "forecasts")
        try:
            await producer.start()
            return producer
        except Exception as exc:  # noqa: BLE001 - the broker not reachable yet: tried again
            log.warning("forecasts outbox: starting its producer failed (%s: %s); trying again in %gs",
                        type(exc).__name__, exc, START_RETRY_SECONDS)
            try:
                await producer.stop()
            except Exception:  # noqa: BLE001 - nothing to stop
                pass
            await asyncio.sleep(START_RETRY_SECONDS)
            return None

    async def _delivered(self, futures: list[tuple[int, asyncio.Future[Any]]], size: int,
                         done: asyncio.Future[None]) -> None:
        error: BaseException | None = None
        for n, fut in futures:
            try:
                await fut
                self.on_delivered(n)
            except Exception as exc:  # noqa: BLE001 - the first error is the call's
                error = error or exc
        self._finish(size, done, error)

    def _finish(self, size: int, done: asyncio.Future[None], error: BaseException | None) -> None:
        with self._lock:
            self._bytes -= size
            room = self._bytes < self.max_bytes
        caller = self._caller
        if caller is None or caller.is_closed():
            return
        caller.call_soon_threadsafe(_resolve, done, error, self._room if room else None)


def _resolve(done: asyncio.Future[None], error: BaseException | None, room: asyncio.Event | None) -> None:
    if not done.done():
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
    if room is not None:
        room.set()

