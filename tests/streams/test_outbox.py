"""The forecasts' outbox (streams/worker/outbox.py) against the real embedded broker: messages
delivered in order, a future per call done once the broker has them, backpressure, errors."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.admin import ensure_topics
from streams.settings import Settings
from streams.worker.outbox import Outbox


def _read(broker: str, topic: str, partition: int, n: int) -> list[bytes]:
    async def run() -> list[bytes]:
        c = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        try:
            tp = TopicPartition(topic, partition)
            c.assign([tp])
            out: list[bytes] = []
            async with asyncio.timeout(30):
                while len(out) < n:
                    got = await c.getmany(tp, timeout_ms=500)
                    out.extend(r.value for r in got.get(tp, ()))
            return out
        finally:
            await c.stop()

    return asyncio.run(run())


def test_the_outbox_delivers_in_order_and_says_when(broker, prefix):
    topic = f"{prefix}-forecasts"
    ensure_topics(broker, [topic], 2)
    delivered: list[int] = []
    outbox = Outbox(Settings(broker=broker, app_id=f"{prefix}-app"), delivered.append)

    async def run() -> list[bool]:
        futures = []
        for call in range(5):
            msgs = [(call + 1, f"{call}-{k}".encode() * 1000) for k in range(4)]
            futures.append(await outbox.send(topic, 1, msgs))
        await asyncio.wait_for(asyncio.gather(*futures), 30)
        return [f.done() and f.exception() is None for f in futures]

    try:
        assert asyncio.run(run()) == [True] * 5
        assert outbox.queued_bytes == 0
    finally:
        outbox.stop()
    # on_delivered: each message's records, once the broker had it
    assert sorted(delivered) == sorted(c + 1 for c in range(5) for _ in range(4))
    got = _read(broker, topic, 1, 20)
    assert got == [f"{c}-{k}".encode() * 1000 for c in range(5) for k in range(4)]


def test_a_full_outbox_makes_the_sender_wait_until_the_broker_has_taken_what_it_holds(broker, prefix):
    topic = f"{prefix}-forecasts"
    ensure_topics(broker, [topic], 1)
    outbox = Outbox(Settings(broker=broker, app_id=f"{prefix}-app"), lambda n: None, max_bytes=1000)

    async def run() -> list[bool]:
        seen = []
        first = await outbox.send(topic, 0, [(1, b"x" * 5000)])  # room: handed over at once
        seen.append(first.done())
        second = await outbox.send(topic, 0, [(1, b"y" * 5000)])  # waited for the first's delivery
        seen.append(first.done())
        await asyncio.wait_for(second, 30)
        return seen

    try:
        assert asyncio.run(run()) == [False, True]
    finally:
        outbox.stop()
    assert _read(broker, topic, 0, 2) == [b"x" * 5000, b"y" * 5000]


def test_a_call_that_fails_holds_its_error_and_the_outbox_goes_on(broker, prefix):
    topic = f"{prefix}-forecasts"
    ensure_topics(broker, [topic], 1)
    delivered: list[int] = []
    outbox = Outbox(Settings(broker=broker, app_id=f"{prefix}-app"), delivered.append)

    async def run() -> tuple[BaseException | None, BaseException | None]:
        bad = await outbox.send(topic, 7, [(1, b"nowhere")])  # the topic has no partition 7
        good = await outbox.send(topic, 0, [(3, b"here")])
        await asyncio.wait([bad, good], timeout=30)
        return bad.exception(), good.exception()

    try:
        bad, good = asyncio.run(run())
    finally:
        outbox.stop()
    assert bad is not None and good is None
    assert delivered == [3]
    assert _read(broker, topic, 0, 1) == [b"here"]


def test_stop_delivers_what_is_queued_first(broker, prefix):
    topic = f"{prefix}-forecasts"
    ensure_topics(broker, [topic], 1)
    delivered: list[int] = []
    outbox = Outbox(Settings(broker=broker, app_id=f"{prefix}-app"), delivered.append)

    async def run() -> None:
        for k in range(50):
            await outbox.send(topic, 0, [(1, b"%d" % k * 2000)])

    asyncio.run(run())
    outbox.stop()  # the caller's loop is gone: nothing to tell, but the messages go out
    assert len(delivered) == 50
    assert _read(broker, topic, 0, 50) == [b"%d" % k * 2000 for k in range(50)]


def test_an_outbox_whose_broker_cannot_be_reached_retries_and_stops_when_told(prefix):
    from streams.broker import free_port

    outbox = Outbox(Settings(broker=f"127.0.0.1:{free_port()}", app_id=f"{prefix}-app"), lambda n: None)

    async def run() -> asyncio.Future[None]:
        done = await outbox.send(f"{prefix}-forecasts", 0, [(1, b"x")])
        await asyncio.sleep(1.5)  # a start failed, and another is tried
        assert not done.done()
        return done

    done = asyncio.run(run())
    t = time.monotonic()
    outbox.stop()
    assert time.monotonic() - t < 4, "stop waits for the retries no longer than one"
    assert not outbox._thread.is_alive()
    assert outbox.queued_bytes == 0 and not done.done()  # its loop is gone: nothing to tell it
