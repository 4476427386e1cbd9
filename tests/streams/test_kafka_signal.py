"""Kafka as a signal against the real embedded broker: a real consumer group's lag, the
topic's rate and partition count, and the policy's partition cap on them."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from scaler.decision import Reason
from scaler.policy import Observation, PolicyState, decide
from scaler.spec import KafkaTopicSource, ScalerSpec, Signal, TargetRef
from streams.clock import SignalClock
from streams.kafka_signal import KafkaOffsets, OffsetSampler, SignalSampler, kafka_sources, sample
from streams.web import series_path
from tests.streams.test_web import poll

pytestmark = pytest.mark.integration

PARTITIONS = 3
#: messages produced per partition before the first sample
FIRST = {0: 5, 1: 6, 2: 7}


def produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    """One record per produce request (each send waits for its acknowledgement), so every
    batch holds one record: the embedded broker's end offset (first offset of the newest
    batch + 1) is then the same as a real Kafka's (the offset after the last record)."""
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    try:
        for partition, n in counts.items():
            for i in range(n):
                p.send(topic, value=f"{partition}-{i}".encode(), partition=partition).get(30)
    finally:
        p.close()


def new_topic(bootstrap: str, topic: str) -> str:
    """``topic`` created with :data:`PARTITIONS` partitions and :data:`FIRST` produced to it."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        admin.close()
    produce(bootstrap, topic, FIRST)
    return topic


def consume_and_commit(bootstrap: str, topic: str, group: str, upto: dict[int, int]) -> None:
    """A real consumer group member reads partitions up to ``upto`` and commits there."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=500)
    try:
        tps = [TopicPartition(topic, p) for p in upto]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        seen = {p: 0 for p in upto}
        for _ in range(60):
            for tp, batch in c.poll(timeout_ms=500).items():
                seen[tp.partition] += len(batch)
            if all(seen[p] >= n for p, n in upto.items()):
                break
        assert all(seen[p] >= n for p, n in upto.items()), seen
        c.commit({TopicPartition(topic, p): OffsetAndMetadata(n, "", -1) for p, n in upto.items()})
    finally:
        c.close()


def test_rate_lag_and_partitions_of_a_real_consumer_group(broker: str) -> None:
    topic, group = new_topic(broker, f"orders-{uuid.uuid4().hex[:8]}"), f"billing-{uuid.uuid4().hex[:6]}"
    # the group has read all of partition 0 and 2 records of partition 1; never partition 2
    consume_and_commit(broker, topic, group, {0: 5, 1: 2})
    spec = ScalerSpec("consumer", "", 0, namespace="shop", min_replicas=0, max_replicas=20,
                      target=TargetRef("apps/v1", "Deployment", "consumer"),
                      signals=(Signal(f"kafka/{topic}/rate", 2.0,
                                      source=KafkaTopicSource(topic, group, lag_threshold=2.0)),))
    sources = kafka_sources([spec])
    assert sources == {topic: {group}}
    rate_s, lag_s, parts_s = spec.signals[0].inputs

    async def two_samples() -> tuple[list, list]:
        reader, sampler = KafkaOffsets(broker), OffsetSampler()
        await reader.start()
        try:
            first = await sample(reader, sampler, sources, lambda: 1000.0)
            await asyncio.to_thread(produce, broker, topic, {0: 10, 1: 10, 2: 10})
            second = await sample(reader, sampler, sources, lambda: 1010.0)
        finally:
            await reader.stop()
        return first, second

    first, second = asyncio.run(two_samples())
    # lag: 0 + (6 - 2) + 7 (never committed: whole); no rate before a second sample
    assert first == [(lag_s, 1000.0, 11.0), (parts_s, 1000.0, 3.0)]
    # 30 more records in 10 s: 3 messages/s over [1000, 1010), stamped at its start; the lag
    # grows by them
    assert second == [(rate_s, 1000.0, 3.0), (lag_s, 1010.0, 41.0), (parts_s, 1010.0, 3.0)]

    # the policy on those points: 41 lag at 2 per replica needs 21, capped at the 3 partitions
    obs = {s: Observation(1000.0, v) for s, _, v in second}
    d, _ = decide(spec, PolicyState(), None, obs, 1, 1010.0)
    assert (d.desired, d.reason) == (3, Reason.CONSUMER_LAG), d.message
    assert "capped at the 3 partitions" in d.message
    (f,) = d.signals
    assert (f.lag, f.partitions) == (41.0, 3)


SCALERS = """\
apiVersion: foresight.dev/v1alpha1
kind: PredictiveScaler
metadata: {{name: consumer, namespace: shop}}
spec:
  scaleTargetRef: {{kind: Deployment, name: consumer}}
  signals:
    - kafkaTopic: {{topic: {topic}, consumerGroup: {group}, lagThreshold: 5}}
      capacityPerReplica: 10
  minReplicas: 0
  maxReplicas: 20
"""


def test_the_worker_leader_publishes_the_kafka_series(broker, prefix, start_worker, tmp_path):
    """A worker with a kafkaTopic signal in its scalers file samples the topic once per window
    (it is the leader) and the lag and partitions come back as series in its API."""
    topic, group = new_topic(broker, f"{prefix}-orders"), f"{prefix}-billing"
    consume_and_commit(broker, topic, group, {0: 5, 1: 2})
    scalers = tmp_path / "scalers.yaml"
    scalers.write_text(SCALERS.format(topic=topic, group=group))
    worker = start_worker(prefix, FORESIGHT_WINDOW_SECONDS="2", FORESIGHT_SCALERS=str(scalers))
    _, lag_s, parts_s = f"kafka/{topic}/rate", f"kafka/{topic}/lag/{group}", f"kafka/{topic}/partitions"
    lag = poll(worker.port, series_path(lag_s), lambda b: len(b["points"]) >= 2, "the lag series",
               timeout=120)
    assert {p["value"] for p in lag["points"]} == {11.0}, lag["points"][-3:]
    parts = poll(worker.port, series_path(parts_s), lambda b: len(b["points"]) >= 1,
                 "the partitions series")
    assert parts["points"][-1]["value"] == 3.0


def test_a_replay_clock_stamps_samples_and_measures_the_rate_in_event_time(broker: str) -> None:
    """The sampler on ``foresight demo``'s clock (60x): nothing before the replay's wall origin,
    one sample per event-time window, the rate per event second (not per wall second), and no
    sample while the worker is too far behind the clock for its windows to take one."""
    topic, group = new_topic(broker, f"orders-{uuid.uuid4().hex[:8]}"), f"billing-{uuid.uuid4().hex[:6]}"
    event0, wall0 = 1767240000.0, 5000.0
    clock = SignalClock(event0, wall0, 60.0)
    signals = SignalSampler({topic: {group}}, KafkaOffsets(broker), clock, step=60.0, max_ahead=300.0)
    assert signals.interval == 0.25  # four ticks per event-time window of 1 wall second
    sent: list[tuple[str, float, float]] = []

    async def send(series: str, ts: float, value: float) -> None:
        sent.append((series, ts, value))

    rate_s, lag_s, parts_s = f"kafka/{topic}/rate", f"kafka/{topic}/lag/{group}", f"kafka/{topic}/partitions"

    async def run() -> list[int]:
        try:
            counts = [await signals.tick(send, wall=wall0 - 0.5)]  # the replay has not started
            counts.append(await signals.tick(send, wall=wall0 + 0.1))  # event0 + 6 s
            counts.append(await signals.tick(send, wall=wall0 + 0.5))  # same window: no sample
            await asyncio.to_thread(produce, broker, topic, {0: 10, 1: 10, 2: 10})
            # the worker is 20 minutes behind the clock: its windows would refuse the sample
            counts.append(await signals.tick(send, lambda: event0 - 1200.0, wall=wall0 + 1.1))
            counts.append(await signals.tick(send, lambda: event0 + 40.0, wall=wall0 + 1.1))  # event0 + 66 s
        finally:
            await signals.reader.stop()
        return counts

    counts = asyncio.run(run())
    assert counts == [0, 2, 0, 0, 3]
    first, second = sent[:2], sent[2:]
    assert first == [(lag_s, event0 + 6.0, 18.0), (parts_s, event0 + 6.0, 3.0)]
    # 30 messages in 60 event-time seconds (1 wall second): 0.5 messages/s, stamped in event
    # time at the start of that minute
    (rate,) = [p for p in second if p[0] == rate_s]
    assert rate[1] == pytest.approx(event0 + 6.0) and rate[2] == pytest.approx(0.5)
    assert [p[:2] for p in second if p[0] == lag_s] == [(lag_s, pytest.approx(event0 + 66.0))]


def test_a_sample_the_event_loop_holds_is_stamped_when_its_offsets_are_read(broker: str) -> None:
    """The leader's sampler shares the worker's event loop: a sample due at one time can read
    its offsets a good part of a window later (another agent holds the loop; at the demo's
    240x a tenth of a wall second is 24 event seconds). Stamped when due, an interval's
    messages were divided by the wrong seconds (a burst's first window read low, the next
    high); its points are stamped as the end offsets are asked for."""
    topic, group = new_topic(broker, f"orders-{uuid.uuid4().hex[:8]}"), f"billing-{uuid.uuid4().hex[:6]}"
    speed, held = 60.0, 0.3
    clock = SignalClock(1767240000.0, time.time(), speed)
    signals = SignalSampler({topic: {group}}, KafkaOffsets(broker), clock, step=60.0, max_ahead=300.0)
    sent: list[tuple[str, float, float]] = []

    async def send(series: str, ts: float, value: float) -> None:
        sent.append((series, ts, value))

    def hold_the_loop() -> None:  # another agent's batch, without a yield
        time.sleep(held)

    async def run() -> tuple[float, int, float]:
        due = clock.now()
        asyncio.get_running_loop().call_soon(hold_the_loop)  # runs at the sampler's first await
        try:
            n = await signals.tick(send)
        finally:
            await signals.reader.stop()
        return due, n, clock.now()

    due, n, after = asyncio.run(run())
    assert n == 2, sent
    for series, ts, _ in sent:
        assert due + held * speed <= ts <= after, (series, ts - due)
