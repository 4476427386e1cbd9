"""The worker's series limit against the real broker (issue 14, bounded memory).

A new series beyond ``FORESIGHT_MAX_SERIES`` is one dead letter per message
(``series_limit``), counted; the series already held keep working; a series a
PredictiveScaler names is always taken; idle series are evicted and their
place goes to new ones.
"""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import read_topic
from tests.streams.test_app import T0, good, points_of, send
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

SCALERS = """\
apiVersion: foresight.dev/v1alpha1
kind: PredictiveScaler
metadata: {name: checkout, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: checkout}
  series: shop/checkout
  capacityPerReplica: 100
  minReplicas: 1
  maxReplicas: 10
  leadTimeSeconds: 60
  mode: ForecastOnly
"""


@pytest.fixture(params=["false", "true"], ids=["one-process", "window-process"])
def window_process(request: pytest.FixtureRequest) -> str:
    """Each test with the window agent in the worker's process and in one of its own
    (``FORESIGHT_WINDOW_PROCESS``: the budget and the eviction are then the window process's;
    one, as ``start_worker`` starts, so it holds the whole limit; ``test_window_processes_share_the_limit``
    has two)."""
    return request.param


def metric(port: int, name: str, **labels: str) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:  # noqa: S310
        text = r.read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def wait_metric(port: int, name: str, at_least: float, timeout: float = 60, **labels: str) -> float:
    """The metric once it reaches ``at_least`` (its last value after ``timeout``)."""
    last = [0.0]

    def reached() -> bool:
        last[0] = metric(port, name, **labels)
        return last[0] >= at_least

    wait_for(reached, timeout)
    return last[0]


def test_series_beyond_the_limit_are_dead_lettered_and_counted_held_ones_keep_working(
        broker, prefix, start_worker, tmp_path, window_process):
    scalers = tmp_path / "scalers.yaml"
    scalers.write_text(SCALERS)
    worker = start_worker(prefix, FORESIGHT_MAX_SERIES="3", FORESIGHT_SCALERS=str(scalers),
                          FORESIGHT_WINDOW_PROCESS=window_process)
    events = f"{prefix}.events"
    send(broker, events, [m for s in ("svc/a", "svc/b", "svc/c") for m in good(s, 0, 5)])
    extra = [orjson.dumps({"series": f"user/{i}", "ts": T0 + 1}) for i in range(5)]
    batch = orjson.dumps([{"series": "svc/a", "ts": T0 + 2}, {"series": "user/9", "ts": T0 + 2}])
    send(broker, events, extra + [batch] + good("shop/checkout", 0, 80) + good("svc/a", 5, 80))

    got = points_of(broker, prefix, "svc/a", 5)
    assert [got.get(T0 + 10 * w) for w in range(5)] == [101, 100, 100, 100, 100], \
        "a held series keeps working, its element of the mixed batch included"
    assert len(points_of(broker, prefix, "shop/checkout", 5)) >= 5, "a PredictiveScaler series is taken"
    dlq = read_topic(broker, f"{events}.dlq", lambda ms: len(ms) >= 6, timeout=60)
    assert len(dlq) == 6, "one dead letter per message, nothing else dead-lettered"
    assert {m["reason"] for m in dlq} == {"series_limit"}
    assert sorted(m["count"] for m in dlq) == [1] * 6
    mixed = [m for m in dlq if m["ranges"] == [[1, 1]]]
    assert len(mixed) == 1, "only the new series' element of the batch is dead-lettered"
    counted = wait_metric(worker.port, "foresight_dead_letters_total", 6, topic=events, reason="series_limit")
    assert counted == 6
    assert metric(worker.port, "foresight_series_limit") == 3
    log = worker.log.read_text()
    assert log.count("new series such as") == 1, "one log line a minute, not one per message"


def test_idle_series_are_evicted_and_come_back_warm_while_new_ones_take_their_place(
        broker, prefix, start_worker, window_process):
    worker = start_worker(prefix, FORESIGHT_MAX_SERIES="2", FORESIGHT_SERIES_IDLE_SECONDS="2",
                          FORESIGHT_CHECKPOINT_EVERY="1000", FORESIGHT_WINDOW_PROCESS=window_process)
    events = f"{prefix}.events"
    send(broker, events, good("svc/a", 0, 40) + good("svc/b", 0, 40))
    points_of(broker, prefix, "svc/a", 1)
    assert wait_metric(worker.port, "foresight_series_evicted_total", 2, timeout=60) >= 2
    assert metric(worker.port, "foresight_checkpoints_total") >= 2, "checkpointed before leaving memory"
    assert wait_for(lambda: (metric(worker.port, "foresight_series_tracked"),
                             metric(worker.port, "foresight_series_held")) == (0, 0), 30), \
        "the views and the held series left memory"
    restored = metric(worker.port, "foresight_restored_checkpoints_total")
    send(broker, events, good("svc/c", 40, 100) + good("svc/a", 40, 100))
    got = points_of(broker, prefix, "svc/c", 3)
    assert [got.get(T0 + 10 * w) for w in (4, 5, 6)] == [100] * 3, "a new series took a freed place"
    assert wait_metric(worker.port, "foresight_restored_checkpoints_total", restored + 1) > restored, \
        "the evicted series came back from its checkpoint"
    assert metric(worker.port, "foresight_dead_letters_total", reason="series_limit") == 0


def test_a_series_modelled_from_points_another_worker_windows_is_not_evicted_as_idle(
        broker, prefix, start_worker, window_process):
    """The points and the input partitions are assigned apart, so a worker also models series
    whose input another worker windows: never in its series budget, and not idle. Only series
    that went idle in its own budget leave its memory."""
    import json
    import urllib.request

    from streams import records

    worker = start_worker(prefix, FORESIGHT_MAX_SERIES="2", FORESIGHT_SERIES_IDLE_SECONDS="2",
                          FORESIGHT_WINDOW_PROCESS=window_process)
    pts = [records.Point("other/rps", T0 + 10 * w, T0 + 10 * w + 10, 1, 5.0, 5.0, 5.0, 5.0) for w in range(5)]
    send(broker, f"{prefix}.points", [body for _, body in records.points_batches(pts)])
    assert wait_metric(worker.port, "foresight_forecasts_out_total", 5) >= 5
    send(broker, f"{prefix}.events", good("svc/a", 0, 40))
    assert wait_metric(worker.port, "foresight_series_evicted_total", 1, timeout=60) >= 1

    def listed() -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/api/series?limit=50",  # noqa: S310
                                    timeout=10) as r:
            return sorted(i["series"] for i in json.loads(r.read())["items"])

    assert wait_for(lambda: listed() == ["other/rps"], 30), \
        f"the idle series' view left, the other worker's series stayed: {listed()}"
    assert metric(worker.port, "foresight_series_evicted_total") == 1
