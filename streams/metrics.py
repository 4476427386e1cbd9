"""Prometheus metrics of a worker or controller, on an injectable registry.

Names follow Prometheus conventions: ``foresight_`` prefix, base units,
``_total`` counters. Cardinality is bounded:

- label values of the pipeline counters come from fixed vocabularies (input
  kind, DLQ reasons, topics);
- ``target`` labels come from ``PredictiveScaler`` objects (operator
  configuration, one per scaled workload), never from traffic;
- ``topic``/``partition`` labels of the consumer lag are bounded by the
  topics this worker consumes times their partition count;
- the per-series gauges (``series`` label) exist only for series a
  :class:`SeriesSelector` admits: those named by a ``PredictiveScaler`` or
  matching the allow-list, at most ``cap`` of them per worker. Series that
  were wanted but did not fit are counted in
  ``foresight_series_left_out_total`` instead of getting labels.

>>> m = Metrics()
>>> sel = SeriesSelector(m, names={"checkout/requests"}, patterns=["db/*"], cap=2)
>>> [sel.admit(s) for s in ("checkout/requests", "db/a", "db/b", "web/x")]
[True, True, False, False]
>>> m.series_left_out._value.get()  # db/b wanted but over the cap; web/x never wanted
1.0
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: ``bound`` label values of ``foresight_series_forecast``
FORECAST_BOUNDS = ("yhat", "lower", "upper")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # -- the pipeline (fixed vocabularies) ----------------------------
        self.messages_in = Counter(
            "foresight_messages_in", "Kafka messages consumed by the window agent", ["topic"], registry=r
        )
        self.events_in = Counter(
            "foresight_events_in", "Events and samples accepted (sum of aggregate counts)", ["topic"], registry=r
        )
        self.points_out = Counter("foresight_points_out", "Closed windows published", registry=r)
        self.dead_letters = Counter(
            "foresight_dead_letters", "Dead-letter records sent (one per rejected message)", ["topic", "reason"], registry=r
        )
        self.dead_letter_elements = Counter(
            "foresight_dead_letter_elements",
            "Bad elements of rejected messages (one dead letter carries all of its message's)",
            ["topic", "reason"], registry=r,
        )
        self.processing_errors = Counter(
            "foresight_processing_errors",
            "Records whose processing raised; each went to the DLQ as processing_error",
            ["agent"], registry=r,
        )
        self.late_events = Counter(
            "foresight_late_events", "Aggregates older than the allowed lateness", registry=r
        )
        self.input_rereads = Counter(
            "foresight_input_rereads",
            "Input partitions sought back to re-read them (a gap in their offsets)",
            registry=r,
        )
        self.window_agent_seconds = Counter(
            "foresight_window_agent_seconds",
            "Seconds the window agent spent parsing and windowing input (not publishing points or "
            "dead letters; the event loop's turns to other tasks excluded)",
            registry=r,
        )
        self.forecasts_out = Counter("foresight_forecasts_out", "Forecasts published", registry=r)
        self.anomalies_out = Counter("foresight_anomalies_out", "Anomalies published", registry=r)
        self.drift_events = Counter(
            "foresight_drift_events", "Series whose forecast errors changed regime (a drift began)",
            registry=r,
        )
        self.restored_checkpoints = Counter(
            "foresight_restored_checkpoints", "Models resumed from a verified checkpoint", registry=r
        )
        self.untrusted_checkpoints = Counter(
            "foresight_untrusted_checkpoints", "Model checkpoints refused (bad signature)", registry=r
        )
        self.untrusted_state = Counter(
            "foresight_untrusted_state",
            "Records of a restored table refused (bad signature or unreadable); the entry starts empty",
            ["table"], registry=r,
        )
        self.controller_errors = Counter(
            "foresight_controller_errors",
            "Failures the controller survived (a target's reconcile, a publish), besides dead letters",
            registry=r,
        )
        self.broker_errors = Counter(
            "foresight_broker_errors",
            "Times the broker was found unreachable, emptied or replaced (topics missing)", registry=r,
        )
        self.checkpoints = Counter("foresight_checkpoints", "Model checkpoints written", registry=r)
        # one observation per vectorised bank call (many series at once: the model agent's hot
        # path); the series updates it made are counted in foresight_model_updates_total
        self.model_update_seconds = Histogram(
            "foresight_model_update_seconds",
            "Time of one vectorised model-bank update (every series of a bank that closed a window)",
            buckets=(1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.model_updates = Counter(
            "foresight_model_updates", "Series model updates (one closed window of one series)", registry=r
        )
        # the model agent's wait for room in the forecasts' outbox (streams/worker/outbox.py), whose
        # thread sends them while the agent learns on: backpressure from a broker slower than the agent
        self.forecasts_send_seconds = Counter(
            "foresight_forecasts_send_seconds",
            "Seconds the model agent waited to hand forecasts messages to their outbox (full: the "
            "broker takes them slower than the agent learns; backpressure)",
            registry=r,
        )
        self.relearn_skipped = Counter(
            "foresight_points_relearn_skipped",
            "Points not learnt because their series' model has learnt their window (or a later one) "
            "already: a window published or delivered again after a rebalance or a crash",
            registry=r,
        )
        self.points_caught_up = Counter(
            "foresight_points_caught_up",
            "Points messages the model agent read from the broker itself because Faust had not "
            "handed them over (fetched while its flow was stopped) and no later message showed the gap",
            registry=r,
        )
        self.bad_decisions = Counter(
            "foresight_bad_decisions", "Unreadable messages on the decisions topic (skipped)", registry=r
        )
        self.series_tracked = Gauge(
            "foresight_series_tracked", "Series whose recent history this worker serves", registry=r
        )
        # -- bounded memory (streams/budget.py) ----------------------------
        self.series_held = Gauge(
            "foresight_series_held", "Series this worker holds in memory (windows, models)", registry=r
        )
        self.series_limit = Gauge(
            "foresight_series_limit", "Most series this worker holds (FORESIGHT_MAX_SERIES)", registry=r
        )
        self.tables_ready = Gauge(
            "foresight_tables_ready",
            "1 once the worker's tables (models, views, targets) are read back from their changelogs for "
            "its partitions; 0 while it reads them (at its start and after a rebalance): a series whose "
            "points come meanwhile may start from a cold model",
            registry=r,
        )
        self.series_evicted = Counter(
            "foresight_series_evicted", "Idle series evicted from memory (checkpointed first)", registry=r
        )
        # -- scaling targets (one label set per PredictiveScaler) ---------
        self.decisions = Counter(
            "foresight_decisions", "Scaling decisions read from the decisions topic",
            ["target", "reason"], registry=r,
        )
        self.forecast_peak = Gauge(
            "foresight_forecast_peak",
            "Upper forecast peak within the target's lead time, in the unit of its series "
            "(events/s for event series)",
            ["target"], registry=r,
        )
        self.desired_replicas = Gauge(
            "foresight_desired_replicas", "Replicas the controller wants for the target", ["target"], registry=r
        )
        self.current_replicas = Gauge(
            "foresight_current_replicas", "Replicas the target had when the controller decided",
            ["target"], registry=r,
        )
        self.decision_timestamp = Gauge(
            "foresight_decision_timestamp_seconds", "Event time of the target's latest decision",
            ["target"], registry=r,
        )
        # the shadow comparison over its rolling window (policy: predictive | hpa |
        # hpa_equal_cost); in the series' unit x seconds, and replicas x seconds
        self.target_unserved = Gauge(
            "foresight_target_unserved",
            "Load left unserved over the comparison window (series unit x seconds)",
            ["target", "policy"], registry=r,
        )
        self.target_replica_seconds = Gauge(
            "foresight_target_replica_seconds",
            "Provisioned replicas x seconds over the comparison window",
            ["target", "policy"], registry=r,
        )
        # -- per-series (only for series a SeriesSelector admits) ---------
        self.series_anomaly_score = Gauge(
            "foresight_series_anomaly_score", "Anomaly score of the series' latest window (0..1)",
            ["series"], registry=r,
        )
        self.series_value = Gauge(
            "foresight_series_value", "Observed value of the series' latest closed window",
            ["series"], registry=r,
        )
        self.series_forecast = Gauge(
            "foresight_series_forecast",
            "One-window-ahead forecast of the series (yhat and interval bounds)",
            ["series", "bound"], registry=r,
        )
        self.series_forecast_peak = Gauge(
            "foresight_series_forecast_peak", "Highest upper bound over the series' forecast horizon",
            ["series"], registry=r,
        )
        self.series_exported = Gauge(
            "foresight_series_exported", "Series with per-series gauges on this worker", registry=r
        )
        self.series_left_out = Counter(
            "foresight_series_left_out",
            "Distinct series wanted for per-series gauges but left out (over the cap)", registry=r,
        )

    def watch_consumer_lag(self, lag: Callable[[], Mapping[tuple[str, int], int]]) -> None:
        """Export ``foresight_consumer_lag{topic,partition}`` computed at scrape time."""
        self.registry.register(_LagCollector(lag))


class _LagCollector(Collector):
    def __init__(self, lag: Callable[[], Mapping[tuple[str, int], int]]) -> None:
        self._lag = lag

    def collect(self) -> Iterable[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "foresight_consumer_lag",
            "Messages behind the end of each partition this worker consumes",
            labels=["topic", "partition"],
        )
        try:
            lags = self._lag()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the consumer is rebalancing
            lags = {}
        for (topic, partition), n in sorted(lags.items()):
            g.add_metric([topic, str(partition)], float(n))
        yield g

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


class SeriesSelector:
    """Decides which series get per-series gauges, within a cap.

    Parameters
    ----------
    metrics
        Where the gauges and the left-out counter live.
    names
        Exact series ids (those named by ``PredictiveScaler`` objects).
    patterns
        Allow-list of shell-style patterns (``checkout/*``, ``*``).
    cap
        Most series exported by one worker; series wanted beyond it are
        counted once in ``foresight_series_left_out_total``.
    """

    def __init__(self, metrics: Metrics, names: Iterable[str] = (), patterns: Iterable[str] = (),
                 cap: int = 200) -> None:
        self.metrics = metrics
        self.names = frozenset(names)
        self.patterns = tuple(p for p in patterns if p)
        self.cap = max(0, cap)
        self.exported: set[str] = set()
        self._left_out: set[str] = set()

    def wanted(self, series: str) -> bool:
        return series in self.names or any(fnmatch.fnmatchcase(series, p) for p in self.patterns)

    def admit(self, series: str) -> bool:
        if series in self.exported:
            return True
        if series in self._left_out or not self.wanted(series):
            return False
        if len(self.exported) < self.cap:
            self.exported.add(series)
            self.metrics.series_exported.set(len(self.exported))
            return True
        self._left_out.add(series)
        self.metrics.series_left_out.inc()
        return False

    def observe(self, series: str, value: float, score: float | None,
                forecast: tuple[float, float, float] | None, peak: float | None) -> None:
        """Set the series' gauges if it is admitted."""
        if self.admit(series):
            self._set(series, value, score, forecast, peak)

    def observe_many(self, names: Sequence[str], rows: Iterable[int], values: Sequence[float],
                     scores: Sequence[float | None], intervals: np.ndarray) -> None:
        """:meth:`observe` for the series ``names[i]`` of a batch, ``i`` in ``rows``: ``values[i]``,
        ``scores[i]`` and ``intervals[i]`` (horizon x (yhat, lower, upper)) their forecast. The
        gauges' forecast is its first point, the peak the highest upper bound over the horizon
        (as Python's ``max`` takes it over the points in order, NaN included: :meth:`observe`'s),
        reduced in numpy over the admitted series alone; none admitted (as none wanted: the
        usual case), nothing is computed.

        >>> m = Metrics(); sel = SeriesSelector(m, names={"b"})
        >>> iv = np.array([[[1, 0, 2], [3, 2, 4]], [[5, 4, 6], [7, 6, np.nan]]], np.float32)
        >>> sel.observe_many(["a", "b"], [0, 1], [1.0, 2.0], [None, 0.5], iv)
        >>> m.series_forecast_peak.labels("b")._value.get(), sel.exported
        (6.0, {'b'})
        """
        if not (self.names or self.patterns or self.exported):
            return  # nothing wanted: none admitted
        idx = [i for i in rows if self.admit(names[i])]
        if not idx:
            return
        sub = intervals[idx]
        if sub.shape[1]:
            first = sub[:, 0].tolist()
            upper = sub[:, :, 2]
            top = upper.max(axis=1)
            peaks = top.tolist()
            for j in np.flatnonzero(top != top).tolist():  # a NaN: as max() takes it, by position
                peaks[j] = max(upper[j].tolist())
            for j, i in enumerate(idx):
                self._set(names[i], values[i], scores[i], tuple(first[j]), peaks[j])
        else:
            for i in idx:
                self._set(names[i], values[i], scores[i], None, None)

    def _set(self, series: str, value: float, score: float | None,
             forecast: tuple[float, float, float] | None, peak: float | None) -> None:
        m = self.metrics
        m.series_value.labels(series).set(value)
        if score is not None:
            m.series_anomaly_score.labels(series).set(score)
        if forecast is not None:
            for bound, v in zip(FORECAST_BOUNDS, forecast, strict=True):
                m.series_forecast.labels(series, bound).set(v)
        if peak is not None:
            m.series_forecast_peak.labels(series).set(peak)

    def forget(self, series: str) -> None:
        """Drop a series' gauges (its partition moved to another worker)."""
        self._left_out.discard(series)
        if series not in self.exported:
            return
        self.exported.discard(series)
        m = self.metrics
        for g in (m.series_value, m.series_anomaly_score, m.series_forecast_peak):
            try:
                g.remove(series)
            except KeyError:
                pass
        for bound in FORECAST_BOUNDS:
            try:
                m.series_forecast.remove(series, bound)
            except KeyError:
                pass
        m.series_exported.set(len(self.exported))
