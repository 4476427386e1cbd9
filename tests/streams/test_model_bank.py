"""The model agent's banks against the per-series reference, on a real worker and broker.

The worker keeps its series' models as rows of :class:`~detectors.bank.SeriesBank`
(issue 14, item 2). Its forecasts must be, number for number, those of the
readable reference, a :class:`~detectors.series.SeriesModel` per series fed the
same windows offline; and after a restart the rows come back from the signed
per-series checkpoints (several series at once) and carry on exactly.
"""

from __future__ import annotations

import math
import signal
from typing import Any

import numpy as np
import orjson
import pytest

from detectors.defaults import make_series_model
from scaler.inputs import inputs_from_update
from streams import records
from streams.admin import ensure_topics
from streams.records import Point
from streams.settings import Settings
from streams.steps import model_shape
from streams.topics import Topics
from streams.web import partition_for
from tests.conftest import read_topic
from tests.streams.test_app import send
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0
WINDOW = 10.0
ENV = dict(FORESIGHT_WINDOW_SECONDS="10", FORESIGHT_PERIOD_STEPS="12", FORESIGHT_HORIZON_STEPS="3",
           FORESIGHT_CHECKPOINT_EVERY="1")
SETTINGS = Settings(window_seconds=WINDOW, period_steps=12, horizon_steps=3)
#: a point every window (modelled at the window) ...
FAST = [f"svc{i}/rps" for i in range(8)]
#: ... and one every three windows (its step found after three intervals: the model moves bank)
SLOW = "db/cpu"


def value(series: str, w: int) -> float:
    k = int(series[3]) if series.startswith("svc") else 9
    v = 100.0 + 10.0 * k + 20.0 * math.sin(2 * math.pi * w / 12) + (w * 7 + k) % 5
    return v * 4 if (series, w) == (FAST[2], 130) else v  # a spike (a drift)


def points(first: int, last: int) -> list[Point]:
    """Windows ``first..last-1`` of every series, in window order."""
    out = []
    for w in range(first, last):
        names = FAST + ([SLOW] if w % 3 == 0 else [])
        for s in names:
            v = value(s, w)
            out.append(Point(s, T0 + w * WINDOW, T0 + (w + 1) * WINDOW, 1, v, v, v, v))
    return out


def send_points(broker: str, prefix: str, pts: list[Point], per_message: int = 2) -> None:
    """Every series' points on its own partition, ``per_message`` windows to a message (so one
    message holds two windows of a series: successive bank updates, in window order)."""
    n = SETTINGS.partitions
    by_part: dict[int, list[Point]] = {}
    for p in pts:
        by_part.setdefault(partition_for(p.series, n), []).append(p)
    for part, ps in by_part.items():
        starts = sorted({p.start for p in ps})
        for i in range(0, len(starts), per_message):
            chunk = set(starts[i:i + per_message])
            msg = [orjson.dumps(p.to_json()) for p in ps if p.start in chunk]
            send(broker, f"{prefix}.points", [b"[" + b",".join(msg) + b"]"], partition=part)


def reference(pts: list[Point]) -> dict[tuple[str, float], dict]:
    """The forecasts message of every point, from one SeriesModel per series (at its own step:
    the slow series' model at 30 s learns its first points again once its step is known)."""
    th = SETTINGS.anomaly_threshold
    out = {}
    by_series: dict[str, list[Point]] = {}
    for p in pts:
        by_series.setdefault(p.series, []).append(p)
    for series, ps in by_series.items():
        m = make_series_model(WINDOW, *model_shape(SETTINGS, WINDOW), th)
        step = WINDOW
        for i, p in enumerate(ps):
            if series == SLOW and i == 3:
                step = 3 * WINDOW
                m = make_series_model(step, *model_shape(SETTINGS, step), th)
                for q in ps[:3]:
                    m.update(q.value, q.start)
            u = m.update(p.value, p.start)
            fc, obs, _ = inputs_from_update(m, series, p.start, step, p.value, u)
            out[(series, p.start)] = orjson.loads(orjson.dumps(
                records.forecast_to_json(fc, obs.value, obs.anomalous, u.score)))
    return out


#: a forecast's point values travel as float32 (streams/records.py, packed columnar forecasts):
#: equal to the reference's to float32 rounding (one unit in the last place of a float32)
F32 = 2.0**-23


def same(got: object, want: object, tol: float = 1e-9) -> bool:
    """Equal, numbers to 1e-9 (a forecast point's yhat, lower and upper to float32 rounding)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(
            same(got[k], want[k], F32 if k in ("yhat", "lower", "upper") else tol) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(
            same(g, w, tol) for g, w in zip(got, want, strict=True))
    if isinstance(want, float) and not isinstance(want, bool) and isinstance(got, int | float):
        return math.isclose(got, want, rel_tol=tol, abs_tol=1e-9)
    return got == want


def forecasts_of(broker: str, prefix: str, pts: list[Point],
                 timeout: float) -> dict[tuple[str, float], list[dict]]:
    """The ``forecasts`` messages by (series, issued), read until every point of ``pts`` has one."""
    keys = {(p.series, p.start) for p in pts}
    ms = read_topic(broker, f"{prefix}.forecasts",
                    lambda ms: keys <= {(m["series"], m["issued"]) for m in ms}, timeout=timeout)
    out: dict[tuple[str, float], list[dict]] = {}
    for m in ms:
        out.setdefault((m["series"], m["issued"]), []).append(m)
    return out


def committed_all(broker: str, group: str, topic: str) -> bool:
    """Whether ``group`` has committed every message of ``topic`` (nothing would be re-read)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
        end = c.end_offsets(tps)
        return bool(tps) and all((c.committed(tp) or 0) >= end[tp] for tp in tps)
    finally:
        c.close()


def metric(port: int, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:  # noqa: S310
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def ready(worker: Any) -> Any:
    """``worker`` once Faust says it is ready (its tables recovered, its flow resumed). Points sent
    before that may be fetched while the flow is stopped and dropped by Faust; the model agent
    reads them from the broker when the partition's next message shows the gap
    (``Models.in_order``), or, with no next message (these tests send all their points at once),
    when its timer finds the partition stalled (``Models.catch_up``): the first worker of
    ``test_the_workers_forecasts_are_the_per_series_models_and_a_restart_restores_the_rows`` is
    sent its points at once, ``test_a_fresh_worker_learns_a_backlog_from_the_partitions_start``
    covers a backlog at the start."""
    assert wait_for(lambda: "[^ForesightWorker]: Ready" in worker.log.read_text(), 60), "the worker got ready"
    return worker


def test_the_workers_forecasts_are_the_per_series_models_and_a_restart_restores_the_rows(
        broker, prefix, start_worker):
    ensure_topics(broker, Topics.from_settings(Settings(topic_prefix=prefix)).all(), SETTINGS.partitions)
    first, last = points(0, 100), points(100, 150)
    want = reference(first + last)

    a = start_worker(prefix, **ENV)  # its points sent at once: some may come while it starts
    send_points(broker, prefix, first)
    got = forecasts_of(broker, prefix, first, timeout=120)
    assert set(got) == {(p.series, p.start) for p in first}
    wrong = [k for k, ms in got.items() if not all(same(m, want[k]) for m in ms)]
    assert not wrong, f"forecasts unlike the per-series reference: {wrong[:5]}"
    assert any(m["warm"] for ms in got.values() for m in ms), "the models got warm"
    assert {m["step"] for (s, _), ms in got.items() for m in ms if s == SLOW} == {WINDOW, 3 * WINDOW}
    # nothing left to re-read: the successor's models are exactly the checkpoints
    assert wait_for(lambda: committed_all(broker, f"{prefix}-app", f"{prefix}.points"), 60)
    a.stop(signal.SIGTERM)

    b = ready(start_worker(prefix, **ENV))
    send_points(broker, prefix, last)
    got = forecasts_of(broker, prefix, first + last, timeout=120)
    later = {k: ms for k, ms in got.items() if k[1] >= T0 + 100 * WINDOW}
    assert set(later) == {(p.series, p.start) for p in last}
    wrong = [k for k, ms in later.items() if not all(same(m, want[k]) for m in ms)]
    assert not wrong, f"after the restart, forecasts unlike the reference: {wrong[:5]}"
    assert any(m["drifting"] for ms in later.values() for m in ms), "the spike made a drift"
    assert metric(b.port, "foresight_restored_checkpoints_total") == len(FAST) + 1, \
        "every series' row came back from its checkpoint"
    assert metric(b.port, "foresight_untrusted_checkpoints_total") == 0


#: changelog entries the fresh worker recovers before it runs
RECOVERED = 20_000


def test_a_fresh_worker_learns_a_backlog_from_the_partitions_start(broker, prefix, start_worker):
    """A worker of a new group (no committed offset) starting on a points backlog learns every
    message from each partition's first offset: records Faust drops while its flow is stopped
    at start-up (the tables' recovery) are read again, not taken as never sent."""
    ensure_topics(broker, Topics.from_settings(Settings(topic_prefix=prefix)).all(), SETTINGS.partitions)
    backlog = points(0, 120)
    want = reference(backlog)
    send_points(broker, prefix, backlog, per_message=1)
    # a models changelog to recover (other series' entries: the worker's start-up takes a while,
    # and the points fetched meanwhile are dropped by Faust)
    changelog = f"{prefix}-app-models-changelog"
    ensure_topics(broker, [changelog], SETTINGS.partitions)
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=broker, acks=1, linger_ms=20)
    for i in range(RECOVERED):
        producer.send(changelog, key=f"other{i}".encode(), value=b"x" * 2000, partition=i % SETTINGS.partitions)
    producer.flush()
    producer.close()
    start_worker(prefix, **ENV)
    keys = {(p.series, p.start) for p in backlog}
    got = forecasts_of(broker, prefix, backlog, timeout=60)
    assert set(got) == keys, f"points never learnt: {sorted(keys - set(got))[:5]}"
    wrong = [k for k, ms in got.items() if not all(same(m, want[k]) for m in ms)]
    assert not wrong, f"forecasts unlike the per-series reference: {wrong[:5]}"


def test_points_sent_while_a_worker_starts_are_all_learnt(broker, prefix, start_worker):
    """Points sent while a worker recovers its tables, each partition's in one message: Faust
    may drop them (fetched while its flow is stopped) and no later message comes to show the
    gap: the model agent's timer finds the partitions stalled and reads them from the broker."""
    ensure_topics(broker, Topics.from_settings(Settings(topic_prefix=prefix)).all(), SETTINGS.partitions)
    pts = points(0, 40)
    want = reference(pts)
    changelog = f"{prefix}-app-models-changelog"
    ensure_topics(broker, [changelog], SETTINGS.partitions)
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=broker, acks=1, linger_ms=20)
    for i in range(RECOVERED):
        producer.send(changelog, key=f"other{i}".encode(), value=b"x" * 2000, partition=i % SETTINGS.partitions)
    producer.flush()
    producer.close()
    w = start_worker(prefix, **ENV)
    assert wait_for(lambda: "Recovery" in w.log.read_text() or "Ready" in w.log.read_text(), 60)
    send_points(broker, prefix, pts, per_message=len(pts))
    got = forecasts_of(broker, prefix, pts, timeout=60)
    keys = {(p.series, p.start) for p in pts}
    assert set(got) == keys, f"points never learnt: {sorted(keys - set(got))[:5]}"
    wrong = [k for k, ms in got.items() if not all(same(m, want[k]) for m in ms)]
    assert not wrong, f"forecasts unlike the per-series reference: {wrong[:5]}"


def test_live_points_of_windows_history_taught_are_not_learnt_again(broker, prefix, start_worker):
    """History is learnt in event time into the model the live points update: a live point of a
    window history taught (a backfill that overlaps the live stream's start) is not learnt again."""
    from streams.records import Aggregate, history_message
    from tests.streams.test_app import send as send_to

    ensure_topics(broker, Topics.from_settings(Settings(topic_prefix=prefix)).all(), SETTINGS.partitions)
    s = FAST[0]
    history = [p for p in points(0, 60) if p.series == s]
    live = [p for p in points(50, 80) if p.series == s]  # windows 50..59 history taught already
    learnt = history + live[10:]
    want = reference(learnt)
    b = ready(start_worker(prefix, **ENV))
    send_to(broker, f"{prefix}.history", [history_message([Aggregate(s, p.start + 1, 0.0, 1, p.value, p.value, p.value)
                                                           for p in history])], partition_for(s, SETTINGS.partitions),
            s.encode())
    [receipt] = read_topic(broker, f"{prefix}.history.learnt", lambda ms: len(ms) >= 1, timeout=60)
    assert receipt["learnt"] == len(history)
    send_points(broker, prefix, live)
    got = forecasts_of(broker, prefix, live[10:], timeout=120)
    assert set(got) == {(s, p.start) for p in live[10:]}, "no forecast for a window history taught"
    wrong = sorted(k for k, ms in got.items() if not all(same(m, want[k]) for m in ms))
    assert not wrong, f"forecasts unlike a model that learnt each window once: {wrong[:5]}"
    assert metric(b.port, "foresight_points_relearn_skipped_total") == 10
    assert metric(b.port, "foresight_model_updates_total") == len(live) - 10


def test_a_checkpoint_of_another_row_layout_restores_cold_and_says_so(broker, prefix, start_worker):
    """A bank-row checkpoint written with another row layout (an older version's fields or
    types, or another configuration: ``SeriesBank.layout``) is never loaded as bytes: the series
    starts cold, with a log line and the ``untrusted_state`` count, whether or not the record
    happens to be of the current row's size."""
    import hashlib

    from detectors.bank import SeriesBank
    from streams.checkpoint import Checkpointer

    ensure_topics(broker, Topics.from_settings(Settings(topic_prefix=prefix)).all(), SETTINGS.partitions)
    changelog = f"{prefix}-app-models-changelog"
    ensure_topics(broker, [changelog], SETTINGS.partitions)
    period, horizon = model_shape(SETTINGS, WINDOW)
    current = SeriesBank.for_config(WINDOW, period, horizon, SETTINGS.anomaly_threshold)
    other = SeriesBank.for_config(WINDOW, period, horizon + 1, SETTINGS.anomaly_threshold)
    records_ = {}
    for bank, series in ((other, FAST[0]), (current, FAST[1])):  # learnt: loaded, they'd be warm
        row = bank.add()
        for w in range(60):
            bank.update(np.array([row]), np.array([value(series, w)]), np.array([T0 + w * WINDOW]))
        layout = bank.layout
        if bank is current:  # the current row's size, another layout (e.g. a field's type changed)
            layout = hashlib.blake2b(b"an older row layout", digest_size=16).digest()
        assert layout != current.layout
        records_[series] = Checkpointer(ENV_KEY.encode()).dumps_rows(
            WINDOW, layout, [series.encode()], bank.row_bytes_of([row]))[0]
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=broker, acks="all")
    for series, blob in records_.items():  # a batch of one record each (the embedded broker's end
        producer.send(changelog, key=series.encode(), value=blob,  # offset: context.py)
                      partition=partition_for(series, SETTINGS.partitions))
        producer.flush()
    producer.close()

    pts = points(0, 40)
    want = reference(pts)  # every series from a fresh model
    w = ready(start_worker(prefix, **ENV, FORESIGHT_MODEL_KEY=ENV_KEY))
    send_points(broker, prefix, pts)
    got = forecasts_of(broker, prefix, pts, timeout=120)
    wrong = [k for k, ms in got.items() if not all(same(m, want[k]) for m in ms)]
    assert not wrong, f"forecasts unlike a cold model's: {wrong[:5]}"
    assert not any(m["warm"] for s in records_ for m in got[(s, T0)])  # loaded, they'd be warm
    log = w.log.read_text()  # the first such line (repeats within a minute are counted: RepeatFilter)
    assert any(f"series {series}: unloadable model checkpoint (ValueError: a bank row of another "
               "configuration); starting cold" in log for series in records_)
    assert metric(w.port, "foresight_restored_checkpoints_total") == 0
    assert labelled(w.port, "foresight_untrusted_state_total", 'table="models"') == len(records_)


#: the checkpoint signing key the test workers use (tests/conftest.py)
ENV_KEY = "test-key-0123456789abcdef"


def labelled(port: int, name: str, label: str) -> float:
    """The value of metric ``name`` with ``label`` (``key="value"``), summed over its other labels."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:  # noqa: S310
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + "{") and label in line)


def test_a_gap_in_a_points_partition_is_read_from_the_broker(broker, prefix, tmp_path):
    """Faust drops records it fetched while its flow was stopped (recovery, a rebalance), and
    seeking its consumer back races its own read offset: the model agent reads a gap's records
    from the broker itself and learns them, in offset order, before the message after the gap.
    None is lost, none is learnt twice (a message below the expected offset is skipped)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from streams.worker import build_worker
    from streams.worker.models import Models

    settings = Settings(broker=broker, topic_prefix=prefix, data_dir=str(tmp_path / "data"), model_key="k" * 32)
    topic = Topics.from_settings(settings).points
    ensure_topics(broker, [topic], settings.partitions)

    async def run() -> tuple[list[list[int]], list[bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=broker)
        await producer.start()
        try:
            for i in range(6):  # one batch each
                await producer.send_and_wait(topic, f"m{i}".encode(), partition=1)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
        await consumer.start()
        try:
            part = TopicPartition(topic, 1)
            consumer.assign([part])
            await consumer.seek_to_beginning(part)
            got: list = []
            while len(got) < 6:
                got += (await consumer.getmany(part, timeout_ms=1000)).get(part, [])
        finally:
            await consumer.stop()
        models = Models(build_worker(settings))
        models.ctx.state.points_next[(topic, 1)] = got[0].offset
        # as Faust hands them over: 0, then (1..3 dropped) 4, 2 again, 5
        learnt = [await models.in_order(got[k]) for k in (0, 4, 2, 5)]
        return [[m.offset - got[0].offset for m in ms] for ms in learnt], [m.value for ms in learnt for m in ms]

    offsets, values = asyncio.run(run())
    assert offsets == [[0], [1, 2, 3, 4], [], [5]]
    assert values == [f"m{i}".encode() for i in range(6)]


def test_messages_learnt_together_give_the_forecasts_of_each_learnt_alone(tmp_path):
    """The model agent learns the points messages it takes at once together (one bank update for
    the series of every partition, a series' later windows in later updates): each partition's
    forecasts and checkpoints due are those of the messages learnt one by one, in the same order."""
    from streams.records import PointColumns
    from streams.worker import build_worker
    from streams.worker.models import Models

    def models(name: str) -> Models:
        return Models(build_worker(Settings(data_dir=str(tmp_path / name), model_key="k" * 32,
                                            window_seconds=WINDOW, period_steps=12, horizon_steps=3,
                                            checkpoint_every=3)))

    names = {0: [f"zero/{i}" for i in range(5)], 1: [f"one/{i}" for i in range(3)]}

    def message(part: int, w: int) -> PointColumns:
        t = T0 + w * WINDOW
        return PointColumns.of([Point(s, t, t + WINDOW, 1, v, v, v, v) for i, s in enumerate(names[part])
                                for v in [100.0 + 10 * i + 20 * math.sin(w / 3 + part) + (w % 7)]])

    alone, together = models("alone"), models("together")
    got: dict[str, dict[int, list[Any]]] = {"alone": {0: [], 1: []}, "together": {0: [], 1: []}}
    due: dict[str, list[tuple[int, list[str]]]] = {"alone": [], "together": []}

    def keep(kind: str, outs: list[Any]) -> None:
        for out in outs:
            for part, fcs in out.forecasts.items():
                got[kind][part] += [(fc.series, fc.issued.tolist(), fc.intervals.tolist()) for fc in fcs]
        # a group's checkpoints due, per partition (written together once the group is learnt)
        due[kind].append(sorted({(part, s) for out in outs for part, d in out.due.items() for s in d}))

    for w in range(0, 40, 4):
        msgs = [(part, message(part, w + k)) for k in range(4) for part in (0, 1)]
        keep("alone", [alone.learn(pts, part) for part, pts in msgs])
        keep("together", [together.learn(PointColumns.concat([p for _, p in msgs]),
                                         np.repeat([part for part, _ in msgs], [len(p) for _, p in msgs]))])

    def flat(kind: str, part: int) -> list[tuple[str, float, list[float]]]:
        return [(s, t, iv) for series, ts, ivs in got[kind][part] for s, t, iv in zip(series, ts, ivs, strict=True)]

    for part in (0, 1):
        assert flat("together", part) == flat("alone", part)
        assert {s for s, _, _ in flat("together", part)} == set(names[part])
    assert len(flat("together", 0)) == 5 * 40
    # the same series come due in each group, on their own partitions
    assert due["together"] == due["alone"] and any(due["alone"])


class _Acks:
    """Stands for the model agent's stream in the acknowledgement tests: the one method the agent
    calls on it. Records each event acknowledged: its ``name`` if it has one, else the event."""

    def __init__(self) -> None:
        self.acked: list[str] = []

    async def ack(self, event: Any) -> bool:
        self.acked.append(getattr(event, "name", event))
        return True


def test_a_message_that_made_checkpoints_due_is_acknowledged_once_they_are_written(tmp_path):
    """The model agent's acknowledgements (streams/worker/models.py PendingCheckpoints): a
    points message that made no checkpoint due is acknowledged at once; one that did waits until
    the checkpoints are written (the committed offset is the acknowledged prefix, so it never
    passes a message whose checkpoints are not written); a rebalance drops the held ones
    unacknowledged (delivered again to the next owner). ``_Acks`` stands for the agent's stream:
    the one method the agent calls on it."""
    import asyncio

    from streams.worker import build_worker
    from streams.worker.models import Models

    settings = Settings(data_dir=str(tmp_path / "data"), model_key="k" * 32)
    models = Models(build_worker(settings))
    cached = object()  # no longer held by the worker: skipped when written (nothing to write)

    async def run() -> list[list[str]]:
        stream, seen = _Acks(), []
        for name, due in (("m0", {}), ("m1", {"svc/a": cached}), ("m2", {})):
            models.pending.start()
            models.pending.add(due, 0, now=asyncio.get_running_loop().time())
            await models.finished(stream, [name])
            seen.append(list(stream.acked))
        assert models.pending.busy is False and models.pending.held == [(stream, "m1", [])]
        await models.write_soon()  # as the idle timer does
        seen.append(list(stream.acked))
        # held again, then a rebalance: forgotten, never acknowledged
        models.pending.start()
        models.pending.add({"svc/b": cached}, 1, now=0.0)
        await models.finished(stream, ["m3"])  # came due at 0.0: overdue, written by a task of its own
        assert models.writer is not None and stream.acked == ["m0", "m2", "m1"]  # not yet: the agent goes on
        await models.writer
        seen.append(list(stream.acked))
        models.pending.start()
        models.pending.add({"svc/c": cached}, 1, now=float("inf"))
        await models.finished(stream, ["m4"])
        models.revoked()
        await models.write_due()
        seen.append(list(stream.acked))
        return seen

    assert asyncio.run(run()) == [["m0"], ["m0"], ["m0", "m2"], ["m0", "m2", "m1"], ["m0", "m2", "m1", "m3"],
                                  ["m0", "m2", "m1", "m3"]]
    assert models.pending.due == {} and models.pending.held == []


def test_a_checkpoint_write_under_way_holds_the_agent_only_once_the_next_are_overdue(tmp_path):
    """Overdue checkpoints are written by a task of their own while the agent learns on
    (streams/worker/models.py ``Models.finished``); while one is under way, the agent finishes
    its messages without waiting, until the next checkpoints due are overdue too: then it waits
    for the write under way, and starts the next (checkpoints trail the agent by a bounded time)."""
    import asyncio
    import time

    from streams.worker import build_worker
    from streams.worker.models import Models

    models = Models(build_worker(Settings(data_dir=str(tmp_path / "data"), model_key="k" * 32)))
    cached = object()  # no longer held by the worker: skipped when written (nothing to write)

    async def run() -> None:
        stream, gate = _Acks(), asyncio.Event()
        under_way = models.writer = asyncio.ensure_future(gate.wait())  # a write that has not finished

        async def finish(name: str, overdue: bool) -> None:
            models.pending.start()
            models.pending.add({f"svc/{name}": cached}, 0, now=time.monotonic())
            if overdue:  # the oldest due came due long ago
                models.pending.since = 0.0
            await models.finished(stream, [name])

        await finish("m0", overdue=False)  # due, not overdue: the agent goes on
        assert models.writer is under_way and len(models.pending.held) == 1
        held = asyncio.ensure_future(finish("m1", overdue=True))  # the write still under way: waits
        await asyncio.sleep(0.05)
        assert not held.done() and stream.acked == []
        gate.set()
        await held
        assert models.writer is not under_way
        await models.writer  # the next write: both messages acknowledged
        assert stream.acked == ["m0", "m1"]
        assert models.pending.held == [] and models.pending.due == {}

    asyncio.run(run())


def test_a_points_message_is_acknowledged_once_its_forecasts_are_delivered(tmp_path):
    """The forecasts go out through the outbox (streams/worker/outbox.py) while the agent learns
    on: a points message is acknowledged once the broker has its forecasts (``pending.sent``, the
    outbox's futures), after its checkpoints if it made any due, and never if a delivery failed
    (counted: the partition's next owner learns it again)."""
    import asyncio

    from streams.worker import build_worker
    from streams.worker.models import Models

    class _Event:
        def __init__(self, name: str) -> None:
            self.name, self.message = name, type("M", (), {"topic": "p", "partition": 0, "offset": 1})()

    settings = Settings(data_dir=str(tmp_path / "data"), model_key="k" * 32)
    models = Models(build_worker(settings))
    errors = models.ctx.metrics.processing_errors.labels("model")

    async def run() -> list[list[str]]:
        loop, stream, seen = asyncio.get_running_loop(), _Acks(), []
        sent = [loop.create_future() for _ in range(4)]
        for name, futures, due in (("m0", sent[:2], {}), ("m1", sent[2:3], {"svc/a": object()}),
                                   ("m2", sent[3:], {})):
            models.pending.start()
            models.pending.sent.extend(futures)
            models.pending.add(due, 0, now=loop.time())
            await models.finished(stream, [_Event(name)])
        seen.append(list(stream.acked))  # nothing delivered yet
        sent[0].set_result(None)
        await asyncio.sleep(0.01)
        seen.append(list(stream.acked))  # m0 has one of two
        sent[1].set_result(None)
        sent[2].set_result(None)
        sent[3].set_exception(RuntimeError("broker gone"))
        await asyncio.sleep(0.01)
        seen.append(list(stream.acked))  # m0 delivered; m1 waits for its checkpoints; m2 failed
        await models.write_due()
        seen.append(list(stream.acked))
        return seen

    before = errors._value.get()
    assert asyncio.run(run()) == [[], [], ["m0"], ["m0", "m1"]]
    assert errors._value.get() == before + 1


def test_the_stalled_end_of_a_points_partition_is_read_from_the_broker(broker, prefix, tmp_path):
    """Records Faust dropped with no later message to show the gap (the last points of a backlog,
    fetched while the flow was stopped at a start) are read from the broker and learnt in offset
    order by the timer's catch-up; once the agent has moved on, or they were learnt, nothing is
    read again, and a record Faust hands over after all is skipped."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from streams.worker import build_worker
    from streams.worker.models import Models

    settings = Settings(broker=broker, topic_prefix=prefix, data_dir=str(tmp_path / "data"), model_key="k" * 32)
    topic = Topics.from_settings(settings).points
    ensure_topics(broker, [topic], settings.partitions)

    async def run() -> dict[str, Any]:
        producer = AIOKafkaProducer(bootstrap_servers=broker)
        await producer.start()
        try:
            for i in range(6):
                await producer.send_and_wait(topic, f"m{i}".encode(), partition=1)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
        await consumer.start()
        try:
            part = TopicPartition(topic, 1)
            consumer.assign([part])
            await consumer.seek_to_beginning(part)
            got: list = []
            while len(got) < 6:
                got += (await consumer.getmany(part, timeout_ms=1000)).get(part, [])
        finally:
            await consumer.stop()
        base, end = got[0].offset, got[-1].offset + 1
        models = Models(build_worker(settings))
        source = (topic, 1)
        learnt: list[bytes] = []

        async def learn(msgs: list[Any]) -> None:
            learnt.extend(msg.value for msg in msgs)

        out: dict[str, Any] = {}
        # a fresh group, nothing handed over: from the partition's first offset
        out["fresh"] = await models.catch_up(part, None, end, learn)
        out["fresh_learnt"], out["next"] = list(learnt), models.ctx.state.points_next[source]
        out["late"] = await models.in_order(got[3])  # Faust hands one over after all
        # offsets 0..1 learnt by the agent, 2..5 dropped with nothing after them
        learnt.clear()
        models.ctx.state.points_next[source] = base + 2
        out["stale"] = await models.catch_up(part, base + 1, end, learn)  # the agent moved on
        out["stalled"] = await models.catch_up(part, base + 2, end, learn)
        out["learnt"], out["next2"] = list(learnt), models.ctx.state.points_next[source]
        out["again"] = await models.catch_up(part, end, end, learn)
        out["base"], out["end"] = base, end
        out["counted"] = models.ctx.metrics.registry.get_sample_value("foresight_points_caught_up_total")
        return out

    out = asyncio.run(run())
    assert out["fresh"] == 6 and out["fresh_learnt"] == [f"m{i}".encode() for i in range(6)]
    assert out["next"] == out["end"] and out["late"] == []
    assert out["stale"] == 0, "the agent moved on since the stall was seen: nothing read"
    assert out["stalled"] == 4 and out["learnt"] == [f"m{i}".encode() for i in range(2, 6)]
    assert out["next2"] == out["end"] and out["again"] == 0
    assert out["counted"] == 10


def test_new_series_are_given_rows_together_restored_or_cold(tmp_path):
    """A batch's new series are asked about checkpoints together and the cold ones get their rows
    together: a checkpointed series resumes its model, the others start cold, each series once
    (one named twice too), each in a row of its own."""
    from streams.worker import build_worker
    from streams.worker.models import Models

    settings = Settings(data_dir=str(tmp_path / "w"), model_key="k" * 32, window_seconds=WINDOW,
                        period_steps=12, horizon_steps=3)
    models = Models(build_worker(settings))
    ctx = models.ctx
    period, horizon = model_shape(settings, WINDOW)
    trained = make_series_model(WINDOW, period, horizon, settings.anomaly_threshold)
    for w in range(7):
        trained.update(value("b", w), T0 + w * WINDOW)
    store = ctx.tables.models.data  # (the table's store: as read back from its changelog)
    store[b"b"] = ctx.checkpointer.dumps(trained, b"b")
    store[b"d"] = b""  # an empty record (a tombstone): no checkpoint
    models.restore(["a", "b", "c", "a", "d"])
    held = ctx.state.models
    assert sorted(held) == ["a", "b", "c", "d"]
    assert ctx.metrics.restored_checkpoints._value.get() == 1
    bank = held["a"].bank
    assert all(held[s].bank is bank for s in held)
    rows = [held[s].row for s in "abcd"]
    assert len(set(rows)) == 4 and len(bank) == 4
    assert bank.updates(np.array(rows)).tolist() == [0, 7, 0, 0]
    learnt = models.learnt_of(bank)[[held[s].row for s in "acd"]]
    assert np.isneginf(learnt).all()
