"""``foresight ingest --kube``: its sources are the PredictiveScalers' prometheus signals,
followed through list + watch (API server emulator, official client, real Prometheus and
broker), and every request it makes is one deploy/rbac.yaml allows, every rule used."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from tests.conftest import ROOT, read_topic
from tests.prometheus_fixture import METRIC, QUERY
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

sys.path.insert(0, str(ROOT / "tests" / "scaler" / "kube"))

UA = "foresight-ingest/test"
#: history asked for per series: 10 minutes at 1-s steps
DAYS = 600 / 86400


def manifest(name: str, *queries: str) -> dict[str, Any]:
    from kube_fixtures import scaler_manifest

    m = scaler_manifest("shop", name, mode="ForecastOnly")
    del m["spec"]["series"], m["spec"]["capacityPerReplica"]
    m["spec"]["signals"] = [{"prometheus": {"query": q}, "capacityPerReplica": 50} for q in queries]
    return m


def test_kube_ingest_follows_the_predictive_scalers_it_watches(broker, prefix, prometheus):
    from kube_emulator import EmulatorThread
    from kube_fixtures import create_scaler
    from kubernetes import client
    from prometheus_client import CollectorRegistry
    from test_rbac import all_grants, check

    from scaler.kube import GROUP, PLURAL, VERSION
    from scaler.spec import prometheus_series
    from streams.ingest import IngestSettings, run_ingest
    from streams.prometheus import PrometheusSettings
    from streams.settings import Settings

    qa, qb, qa2 = QUERY, f"{METRIC} * 2", f"{METRIC} + 1"
    sa, sb, sa2 = (prometheus_series(q) for q in (qa, qb, qa2))
    settings = Settings(broker=broker, topic_prefix=prefix, window_seconds=1.0)
    ingest = IngestSettings(days=DAYS, wait_seconds=0)  # no worker here: history is sent, not awaited
    registry = CollectorRegistry()
    stop = threading.Event()
    errors: list[BaseException] = []

    def value(name: str, series: str) -> float:
        return registry.get_sample_value(name, {"series": series}) or 0.0

    def samples(series: str) -> float:
        return value("foresight_ingest_samples_total", series)

    def history(series: str) -> float:
        return value("foresight_ingest_history_windows_total", series)

    def polling(series: str) -> float:
        return value("foresight_ingest_polling", series)

    with EmulatorThread() as emu:
        setup = emu.api_client("test-setup")
        custom = client.CustomObjectsApi(setup)
        create_scaler(setup, manifest("a", qa))

        def run() -> None:
            try:
                run_ingest(settings, ingest, PrometheusSettings(url=prometheus.url), stop=stop, kube=True,
                           api=emu.api_client(UA), registry=registry)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)

        t = threading.Thread(target=run, name="ingest", daemon=True)
        t.start()
        try:
            def live(series: str, n: int = 2) -> bool:
                assert not errors, errors
                return samples(series) >= n

            # the spec listed at start: its series backfilled, then polled live
            assert wait_for(lambda: live(sa), 90), "a's prometheus signal is polled"
            assert history(sa) >= 500, "its history was sent first"

            # a spec added while running: a new series, backfilled first, then live
            create_scaler(setup, manifest("b", qb))
            assert wait_for(lambda: live(sb), 90), "b's signal is polled without a restart"
            assert history(sb) >= 500 and polling(sb) == 1
            # history first: its live samples start after the last window of its history
            hist = [m for m in read_topic(broker, f"{prefix}.history", lambda ms: sum(
                m["series"] == sb for m in ms) >= history(sb), timeout=30) if m["series"] == sb]
            assert len(hist) == history(sb)
            live_b = [m for m in read_topic(broker, f"{prefix}.metrics", lambda ms: any(
                m["series"] == sb for m in ms), timeout=30) if m["series"] == sb]
            assert live_b and min(m["ts"] for m in live_b) > max(m["ts"] for m in hist)

            # a spec changed: its new query is a new series (backfilled, live), the old one stops
            custom.patch_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "a", {
                "spec": {"signals": [{"prometheus": {"query": qa2}, "capacityPerReplica": 50}]}})
            assert wait_for(lambda: live(sa2) and polling(sa) == 0, 90), "a now feeds its new query"
            assert history(sa2) >= 500
            old = samples(sa)
            more = samples(sa2) + 2
            assert wait_for(lambda: live(sa2, more), 30)
            assert samples(sa) == old, "the query a no longer has is not polled"

            # a spec deleted: its series stops, the others go on
            custom.delete_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "b")
            assert wait_for(lambda: polling(sb) == 0, 30)
            gone = samples(sb)
            more = samples(sa2) + 2
            assert wait_for(lambda: live(sa2, more), 30)
            assert samples(sb) == gone, "a deleted spec's series is not polled"

            # watching from the emulator's side: a dropped watch resumes, nothing is lost
            emu.call(emu.emulator.drop_watches)
            create_scaler(setup, manifest("c", qb))
            assert wait_for(lambda: polling(sb) == 1 and live(sb, gone + 2), 90), "b's query is back with c"
        finally:
            stop.set()
            t.join(60)
        assert not t.is_alive() and not errors, errors

        reqs = [(r.method.value, r.url.path, dict(r.params)) for r in emu.requests()
                if r.headers.get("User-Agent", "").startswith("foresight-ingest")]
    used = check(reqs, "foresight-ingest")
    assert not all_grants("foresight-ingest") - used, "every rule for the ingest was needed"
