"""What the worker's agents and timers share: one :class:`WorkerContext`.

:func:`faust_app` builds the Faust app, :func:`build` the context around it
(topics, the three changelog-backed tables and their writer, the read model,
the series budget, the checkpointer, the in-memory :class:`WorkerState` and the
lock the window agent and its timers take). Each module of :mod:`streams.worker`
installs its agents and timers on the context's app.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import faust

from detectors.bank import SeriesBank
from detectors.series import SeriesModel
from streams import kafka_config
from streams.budget import SeriesBudget
from streams.checkpoint import Checkpointer, Signer, load_or_create_key
from streams.lifecycle import ForesightWorker
from streams.metrics import Metrics
from streams.settings import Settings
from streams.steps import StepEstimator
from streams.tablestore import store_url
from streams.topics import Topics
from streams.web.cluster import advertised_host
from streams.web.readmodel import ViewStore, view_points
from streams.web.specs import load_selector, scaler_series
from streams.windowing import Windower
from streams.worker.changelog import ChangelogWriter

#: the input topics' (topic, partition)
Source = tuple[str, int]

#: the producer's record batch (bytes a partition's batch holds). Faust's default, 16 KiB, is
#: smaller than a checkpoint's records (a ~21 KB bank row, LZ4-compressed, a ~7.5 KB view) and a forecasts
#: message, and aiokafka holds the next record of a partition whose batch is full until that
#: batch is drained, which waits for the request in flight to the broker (one at a time): a
#: broker round trip per checkpointed series, the forecasts queued behind them (README,
#: "Why p99 stays over 1 s"). In batches of this size a round's records go out together. Safe
#: on the embedded broker, whose end offset misses all but the first record of a partition's
#: newest batch, only because every table write ends its changelog partitions with a batch of
#: one record (streams/worker/changelog.py).
PRODUCER_MAX_BATCH_BYTES = 512 * 1024
#: the group membership timings of every consumer of a worker (seconds): session, heartbeat, rebalance
BROKER_SESSION_TIMEOUT, BROKER_HEARTBEAT_INTERVAL, BROKER_REBALANCE_TIMEOUT = 4.0, 1.0, 4.0
#: a Kafka client's linger (ms) before a record batch goes out
PRODUCER_LINGER_MS = 5


def worker_producer(settings: Settings, role: str) -> Any:
    """An aiokafka producer of the worker besides Faust's (the window process's, the forecasts'
    outbox's), configured as Faust's: the worker's client settings (``streams/kafka_config.py``),
    ``acks=all``, :data:`PRODUCER_LINGER_MS` and :data:`PRODUCER_MAX_BATCH_BYTES`; client id
    ``<app id>-<role>``. Not started."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(**kafka_config.client_kwargs(settings), client_id=f"{settings.app_id}-{role}",
                            acks="all", linger_ms=PRODUCER_LINGER_MS, max_batch_size=PRODUCER_MAX_BATCH_BYTES)


def horizon_steps(settings: Settings) -> int:
    """Windows each forecast covers (``FORESIGHT_HORIZON_SECONDS``, or ``_STEPS``)."""
    return settings.forecast_horizon_steps()


#: a bank's key: (step seconds, seasonal period in steps or None, horizon in steps)
BankKey = tuple[float, int | None, int]


@dataclass(slots=True)
class Cached:
    """Where a series' model lives: row ``row`` of ``bank`` (a :class:`~detectors.bank.SeriesBank`
    of the series' step), or, while the history learner holds it, the object ``model``."""

    bank: SeriesBank
    row: int
    #: the step the series is modelled at (its natural step: streams/steps.py)
    step: float
    since_checkpoint: int = 0
    #: monotonic time of the series' last checkpoint by this worker (-inf: none yet)
    checkpointed: float = -math.inf
    #: the model checked out of the bank as an object (history learning): the row is stale
    #: until it is checked back in (streams/worker/models.py)
    model: SeriesModel | None = None

    def export(self) -> SeriesModel:
        """The series' model as a :class:`~detectors.series.SeriesModel` (e.g. to checkpoint)."""
        return self.model if self.model is not None else self.bank.export(self.row)

    def release(self) -> None:
        """Free the series' row (export it first to keep it)."""
        self.bank.remove(self.row)


@dataclass
class WorkerState:
    """In-memory state of one worker, rebuilt after a rebalance (windows from
    the re-read input, models from the changelog-backed table)."""

    windowers: dict[Source, Windower] = field(default_factory=dict)
    #: per input (topic, partition): monotonic time of its last message
    last_input: dict[Source, float] = field(default_factory=dict)
    #: per input (topic, partition): the offset its next message must have
    next_offset: dict[Source, int] = field(default_factory=dict)
    #: per series: its row in a bank (models are restored from the ``models`` table on demand)
    models: dict[str, Cached] = field(default_factory=dict)
    #: the model banks, one per configuration (streams/worker/models.py)
    banks: dict[BankKey, SeriesBank] = field(default_factory=dict)
    #: per series: the estimate of its natural step (rebuilt after a rebalance)
    steps: dict[str, StepEstimator] = field(default_factory=dict)
    #: per points (topic, partition): the offset the model agent's next message must have (its
    #: models have learnt every message before it; rebuilt after a rebalance)
    points_next: dict[Source, int] = field(default_factory=dict)

    def drop_input(self, source: Source) -> None:
        """Forget an input partition's windows and acknowledgement state (it is re-read)."""
        self.windowers.pop(source, None)
        self.last_input.pop(source, None)
        self.next_offset.pop(source, None)

    def drop_models(self) -> None:
        """Forget every series' model (restored from the ``models`` table on demand)."""
        self.models.clear()
        self.banks.clear()
        self.steps.clear()
        self.points_next.clear()


@dataclass
class Tables:
    """The changelog-backed tables: signed model checkpoints and read-model snapshots."""

    models: faust.Table
    series_view: faust.Table
    targets: faust.Table


class InputContext(Protocol):
    """What the window agent (streams/worker/windows.py) and the dead letters use of their
    context: a worker's (:class:`WorkerContext`), or the window process's
    (:class:`streams.worker.window_process.WindowContext`)."""

    settings: Settings
    metrics: Metrics
    topics: Topics
    budget: SeriesBudget
    state: WorkerState
    window_lock: asyncio.Lock
    #: per topic name: what sends to it (``await out[name].send(key=, value=, partition=, callback=)``)
    out: Mapping[str, Any]
    #: notes each series' kind (``note_kind(series, kind)``): the read model, or what reports it to it
    store: Any

    @property
    def step(self) -> float: ...

    async def flush(self) -> None: ...


@dataclass
class WorkerContext:
    """Everything the agents and timers of one worker share."""

    app: faust.App
    settings: Settings
    metrics: Metrics
    topics: Topics
    checkpointer: Checkpointer
    tables: Tables
    #: the read model behind the API and dashboard
    store: ViewStore
    #: bounded memory (streams/budget.py)
    budget: SeriesBudget
    #: every topic the worker sends to, by name
    out: dict[str, faust.TopicT]
    state: WorkerState = field(default_factory=WorkerState)
    #: the window agent and the wall-clock timers share the windowers
    window_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: every write to the tables' changelogs (streams/worker/changelog.py)
    changelog: ChangelogWriter = field(default_factory=ChangelogWriter)
    #: called as the worker's process exits (after its event loop): child processes stopped
    on_exit: list[Callable[[], None]] = field(default_factory=list)

    @property
    def step(self) -> float:
        """The window length (seconds): every series' default step."""
        return self.settings.window_seconds

    async def flush(self) -> None:
        """Wait until every record sent so far is acknowledged by the broker (or failed)."""
        await self.app.producer.flush()

    def is_input(self, topic: str) -> bool:
        """Whether ``topic`` is one the window agent reads."""
        return topic in (self.topics.events, self.topics.metrics)

    def raw_topic(self, name: str) -> faust.TopicT:
        return raw_topic(self.app, self.settings, name)


def raw_topic(app: faust.App, settings: Settings, name: str) -> faust.TopicT:
    """A topic of raw bytes (our wire formats are parsed in streams/records.py, not by Faust)."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=settings.partitions)


def faust_app(settings: Settings) -> faust.App:
    """The Faust app of a worker (its tables, agents and pages are installed by the caller)."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.broker}",
        # the tables' copy of their changelogs: a sqlite file in data_dir, or a dict (streams/tablestore.py)
        store=store_url(settings.table_store),
        datadir=f"{settings.data_dir}/faust",
        topic_partitions=settings.partitions,
        # security and replication as every other client (streams/kafka_config.py, streams/admin.py):
        # changelog topics get the same replication factor and min.insync.replicas as ours
        broker_credentials=kafka_config.faust_credentials(settings),
        topic_replication_factor=settings.replication_factor or 1,
        broker_session_timeout=BROKER_SESSION_TIMEOUT,
        broker_heartbeat_interval=BROKER_HEARTBEAT_INTERVAL,
        broker_rebalance_timeout=BROKER_REBALANCE_TIMEOUT,
        web_enabled=settings.web_enabled,
        web_bind=settings.web_host,
        # how the other workers reach this one (request routing by partition)
        web_host=advertised_host(settings),
        web_port=settings.web_port,
        producer_linger_ms=PRODUCER_LINGER_MS,
        producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        consumer_auto_offset_reset="earliest",
        # a rebalance does not wait for the Faust agents (model, history,
        # decisions) to drain what they have buffered: what they have not
        # acked is re-read by the partition's next owner; the input topics are
        # not Faust streams (streams/worker/windows.py reads them with a plain
        # aiokafka loop that commits its own offsets)
        stream_wait_empty=False,
        # bounded stop: SIGTERM stops the worker within lifecycle.STOP_GRACE_SECONDS
        Worker=ForesightWorker,
    )


def build(app: faust.App, settings: Settings, metrics: Metrics) -> WorkerContext:
    """The context of a worker on ``app``: its topics, tables, read model and series budget."""
    topics = Topics.from_settings(settings)
    signing_key = load_or_create_key(settings.model_key, settings.data_dir)
    out = {name: raw_topic(app, settings, name) for name in topics.all()}
    raw_schema = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw")
    # key_type/value_type bytes: Faust decodes a table's changelog on recovery
    # with serializers derived from them (JSON otherwise, which fails on these
    # binary values and leaves a rebalanced or restarted worker cold)
    raw_table = {"default": None, "schema": raw_schema, "key_type": bytes, "value_type": bytes,
                 "partitions": settings.partitions,
                 "extra_topic_configs": {"min.insync.replicas": str(settings.min_insync_replicas or 1)}}
    tables = Tables(app.Table("models", **raw_table), app.Table("series_view", **raw_table),
                    app.Table("targets", **raw_table))
    # the views' history beside the tables' copy: a file in data_dir, or memory (streams/web/readmodel.py)
    store = ViewStore(view_points(settings), metrics, load_selector(settings, metrics),
                      signers={t: Signer(signing_key, t) for t in ("series_view", "targets")},
                      directory=f"{settings.data_dir}/views" if settings.table_store == "disk" else None)
    # bounded memory (streams/budget.py): new series beyond the limit are dead-lettered as
    # series_limit; idle ones are evicted (streams/worker/eviction.py); PredictiveScaler series never are
    budget = SeriesBudget(settings.max_series_limit(), settings.series_idle_seconds,
                          scaler_series(settings, "series limit"))
    metrics.series_limit.set(budget.limit)
    metrics.series_held.set_function(lambda: len(budget))
    metrics.tables_ready.set_function(lambda: tables_ready(app))
    return WorkerContext(app, settings, metrics, topics, Checkpointer(signing_key), tables, store,
                         budget, out)


def tables_ready(app: faust.App) -> float:
    """1.0 once Faust has read the worker's tables back from their changelogs for its current
    partitions (its table recovery completed, and none under way since a rebalance), else 0.0
    (``foresight_tables_ready``)."""
    done = app.tables.recovery.completed.is_set()
    return float(done and not getattr(app, "in_recovery", False) and not app.rebalancing)


def consumer_lag(app: faust.App, topics: Iterable[str]) -> Callable[[], Mapping[tuple[str, int], int]]:
    """Per-partition lag of the worker's consumer for ``topics`` (read at scrape time)."""
    wanted = set(topics)

    def lag() -> dict[tuple[str, int], int]:
        c = app.consumer
        out: dict[tuple[str, int], int] = {}
        read = getattr(c, "_read_offset", {})
        committed = getattr(c, "_committed_offset", {})
        for tp in c.assignment():
            if tp.topic not in wanted:
                continue
            try:
                hw = c.highwater(tp)
            except Exception:  # noqa: BLE001 - no fetch yet
                continue
            if hw is None:
                continue
            pos = read.get(tp)
            nxt = pos + 1 if pos is not None else committed.get(tp) or 0
            out[(tp.topic, tp.partition)] = max(0, int(hw) - int(nxt))
        return out

    return lag
