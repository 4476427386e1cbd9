"""``foresight backfill`` from a real Prometheus and from a CSV, learnt by a real worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import orjson
import pytest

from scaler.traces import read_trace
from streams.admin import ensure_topics
from streams.backfill import HistorySender, window_aggregates, windows_per_message
from streams.backfill import backfill as send_history
from streams.settings import Settings
from streams.topics import Topics
from tests.conftest import ROOT, read_topic, send_raw
from tests.prometheus_fixture import HISTORY_SECONDS, QUERY
from tests.streams.test_ingest import STEP, series_detail, worker_env
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

TRACE = ROOT / "deploy" / "compose" / "nyc_taxi_30min.csv"


def backfill(broker: str, prefix: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "FORESIGHT_BROKER": broker, "FORESIGHT_TOPIC_PREFIX": prefix,
            "FORESIGHT_WINDOW_SECONDS": str(STEP), "FORESIGHT_BACKFILL_WAIT_SECONDS": "120", **env}
    return subprocess.run([sys.executable, "-m", "streams", "backfill", *args], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def learnt_of(stderr: str) -> tuple[int, int, float]:
    """Windows learnt, skipped and the points/s the command printed."""
    m = re.search(r"learnt ([\d,]+) windows \(skipped ([\d,]+), rejected 0\) in [\d.]+ s: ([\d,]+) points/s",
                  stderr)
    assert m, stderr
    return int(m[1].replace(",", "")), int(m[2].replace(",", "")), float(m[3].replace(",", ""))


def test_backfill_from_prometheus_and_a_csv_trains_the_worker(broker, prefix, start_worker, prometheus):
    w = start_worker(prefix, **worker_env())
    # from a minute before the fixture's history (the session's server may be live for a while
    # already): both runs below read all of it, however long apart they start
    days = f"{(time.time() - prometheus.history_start + 60) / 86400!r}"
    # the backfill reads up to the last whole step before now (streams/sources_cli.py), and the
    # fixture returns as soon as the history's end has been scraped: all of the history is in
    # that range only once a whole step has passed after its end
    assert wait_for(lambda: time.time() >= prometheus.history_end + 2 * STEP, timeout=30)

    r = backfill(broker, prefix, "--series", "prom/hist", "--query", QUERY, "--days", days,
                 FORESIGHT_PROMETHEUS_URL=prometheus.url)
    assert r.returncode == 0, r.stderr
    learnt, skipped, rate = learnt_of(r.stderr)
    print(r.stderr.strip())
    assert learnt >= HISTORY_SECONDS and skipped == 0 and rate > 0
    assert "in 2 queries" in r.stderr, "4 h at 1 s is more than 11,000 points: two query_range calls"
    assert "model warm" in r.stderr
    d = series_detail(w.port, "prom/hist")
    assert d is not None and d["warm"] is True and d["history_points"] == learnt == d["points_learnt"]
    assert d["kind"] == "metrics" and len(d["points"]) > 0 and d["forecast"]["warm"] is True

    again = backfill(broker, prefix, "--series", "prom/hist", "--query", QUERY, "--days", days,
                     FORESIGHT_PROMETHEUS_URL=prometheus.url)
    assert again.returncode == 0, again.stderr
    learnt2, skipped2, _ = learnt_of(again.stderr)
    assert skipped2 >= learnt and learnt2 <= 120, ("what the model had learnt is skipped, not learnt twice",
                                                   r.stderr, again.stderr)

    r = backfill(broker, prefix, "--series", "taxi/rides", "--input", str(TRACE))
    assert r.returncode == 0, r.stderr
    print(r.stderr.strip())
    ts, _, _ = read_trace(TRACE)
    learnt, skipped, _ = learnt_of(r.stderr)
    assert learnt == len(ts) and skipped == 0
    d = series_detail(w.port, "taxi/rides")
    assert d is not None and d["history_points"] == len(ts) and d["ts"] == ts[-1]
    assert d["step"] == 1800.0, "history is modelled at the series' own step (30 min), not the 1-s window"

    # history publishes no forecast (a controller never acts on the past)
    forecasts = read_topic(broker, f"{prefix}.forecasts", lambda ms: False, timeout=3)
    assert not [m for m in forecasts if m["series"] in ("prom/hist", "taxi/rides")]

    # a bad element of a history message is dead-lettered on its own, the rest is learnt
    t = ts[-1] + 3600
    good = {"series": "taxi/rides", "ts": t, "interval": 1.0, "count": 1, "sum": 5.0, "min": 5.0, "max": 5.0}
    bad = {"series": "taxi/rides", "ts": t + 1, "value": "many"}
    send_raw(broker, f"{prefix}.history", [(b"taxi/rides", orjson.dumps([good, bad]))])
    dlq = read_topic(broker, f"{prefix}.history.dlq", lambda ms: len(ms) >= 1, timeout=30)
    assert [m["reason"] for m in dlq] == ["bad_type"] and dlq[0]["count"] == 1
    receipts = read_topic(broker, f"{prefix}.history.learnt",
                          lambda ms: any(m["last"] == t for m in ms), timeout=30)
    last = [m for m in receipts if m["last"] == t][0]
    assert (last["learnt"], last["rejected"]) == (1, 1)
    wait_for(lambda: series_detail(w.port, "taxi/rides")["ts"] == t, 10)
    assert series_detail(w.port, "taxi/rides")["history_points"] == len(ts) + 1


def test_the_receipts_of_an_earlier_backfill_of_the_same_windows_are_not_counted(broker, prefix, start_worker):
    """A backfill sent again sends the same spans; the earlier one's receipts, if read (the
    embedded broker's end offset lags after a batch of several receipts; two backfills of a
    series at once), are not this one's: receipts are keyed by the message's offset."""
    start_worker(prefix, **worker_env())
    settings = Settings.from_env({"FORESIGHT_BROKER": broker, "FORESIGHT_TOPIC_PREFIX": prefix,
                                  "FORESIGHT_WINDOW_SECONDS": str(STEP)})
    ensure_topics(settings, Topics.from_settings(settings).all(), settings.partitions)
    series = "again/load"
    n = 2 * windows_per_message(series) + 100  # three messages
    samples = [(1.7e9 + i * STEP, 100.0 + (i % 300)) for i in range(n)]
    sender = HistorySender(settings)
    try:
        sent, first = send_history(sender, series, samples, 120)
        assert first is not None and first.complete and (first.learnt, first.skipped) == (n, 0)
        assert sent.messages == 3 and first.updates == n

        # the same history again, read by a consumer that also sees the first one's receipts
        consumer = sender.receipts_from_now(series)
        consumer.seek_to_beginning(*consumer.assignment())
        started = time.monotonic()
        again = sender.send(series, window_aggregates(series, samples, STEP))
        assert again.spans == sent.spans and not again.offsets & sent.offsets
        second = sender.wait(consumer, again, 120, started)
    finally:
        sender.close()
    assert second.complete and (second.learnt, second.skipped) == (0, n), "what was learnt is skipped"
    assert (second.warm, second.updates) == (first.warm, n), "the model as the first backfill left it"


def test_a_bad_csv_or_query_is_refused_before_any_connection(tmp_path):
    bad = tmp_path / "load.csv"
    bad.write_text("time,requests\n1,2\n")
    r = backfill("127.0.0.1:1", "x", "--series", "a/b", "--input", str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "load.csv:1: header is 'time,requests'" in r.stderr
    r = backfill("127.0.0.1:1", "x", "--series", "a/b", "--query", "up",
                 FORESIGHT_PROMETHEUS_URL="http://user:pw@prom:9090")
    assert r.returncode == 2 and "must not carry a user or password" in r.stderr, r.stderr


def test_a_query_of_several_series_says_how_to_fix_it(broker, prefix, prometheus):
    r = backfill(broker, prefix, "--series", "a/b", "--days", "0.01", "--query",
                 'vector(1) or label_replace(vector(2), "a", "b", "", "")',
                 FORESIGHT_PROMETHEUS_URL=prometheus.url)
    assert r.returncode == 1 and "several_series" in r.stderr and "check --query" in r.stderr, r.stderr
