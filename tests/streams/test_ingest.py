"""``foresight ingest`` against a real Prometheus and the real broker: history first, then live."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT, read_topic
from tests.prometheus_fixture import HISTORY_SECONDS, QUERY, known_value

pytestmark = pytest.mark.integration

#: the worker's window and the source's step (the fixture's samples are a second apart)
STEP = 1.0


def api(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310
        return json.load(r)


def series_detail(port: int, series: str) -> dict | None:
    try:
        return api(port, "/api/series/" + series.replace("/", "%2F"))
    except OSError:
        return None


def worker_env() -> dict[str, str]:
    """1-s windows (the fixture's resolution), a 5-minute cycle (its period), 20 s ahead."""
    return {"FORESIGHT_WINDOW_SECONDS": str(STEP), "FORESIGHT_PERIOD_STEPS": "300",
            "FORESIGHT_HORIZON_SECONDS": "20"}


def test_ingest_backfills_then_feeds_a_warm_live_series(broker, prefix, start_worker, prometheus, tmp_path):
    w = start_worker(prefix, **worker_env())
    sources = tmp_path / "sources.yaml"
    days = (HISTORY_SECONDS + 120) / 86400
    sources.write_text(f"sources:\n  - series: prom/load\n    query: '{QUERY}'\n    step: {STEP:g}\n"
                       f"    days: {days!r}\n")
    log = tmp_path / "ingest.log"
    env = {**os.environ, "FORESIGHT_BROKER": broker, "FORESIGHT_TOPIC_PREFIX": prefix,
           "FORESIGHT_WINDOW_SECONDS": str(STEP), "FORESIGHT_PROMETHEUS_URL": prometheus.url}
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "streams", "ingest", "--sources", str(sources)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
    try:
        # the history is learnt first: the ingest says so, with the rate
        deadline = time.monotonic() + 240
        while "backfill prom/load" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        text = log.read_text()
        assert "backfill prom/load" in text, text[-3000:]
        line = next(ln for ln in text.splitlines() if "backfill prom/load" in ln)
        print(line)
        assert "model warm" in line and "points/s" in line, line
        learnt_history = int(line.split("learnt ")[1].split(" windows")[0].replace(",", ""))
        assert learnt_history >= HISTORY_SECONDS * 0.99, line
        live_from = time.time()

        # then live samples through the metrics input topic, the producer's wire format
        metrics = read_topic(broker, f"{prefix}.metrics", lambda ms: len(ms) >= 5, timeout=60)
        samples = [a for m in metrics for a in (m if isinstance(m, list) else [m])]
        assert samples and all(a["series"] == "prom/load" and a["count"] == 1 for a in samples)
        print([(a["ts"], a["sum"], known_value(a["ts"])) for a in samples])
        for a in samples:  # a Prometheus instant query at the step's time: the scraped value
            assert a["ts"] == int(a["ts"]) and a["ts"] >= live_from - 10
            assert a["sum"] == pytest.approx(known_value(a["ts"]), abs=2.0), (a, time.time())

        # the first live forecast is warm: the model had learnt the history before it
        forecasts = read_topic(broker, f"{prefix}.forecasts",
                               lambda ms: any(m["series"] == "prom/load" for m in ms), timeout=60)
        first = min((m for m in forecasts if m["series"] == "prom/load"), key=lambda m: m["issued"])
        assert first["warm"] is True, first
        assert first["issued"] >= live_from - 10, "no forecast was published for history windows"
        peak = max(p["yhat"] for p in first["points"])
        expect = max(known_value(first["issued"] + k * STEP) for k in range(1, len(first["points"]) + 1))
        print("peak", peak, "expected", expect)
        assert peak == pytest.approx(expect, rel=0.25), "the forecast follows the known cycle"

        detail = series_detail(w.port, "prom/load")
        assert detail is not None and detail["warm"] is True
        assert detail["history_points"] == learnt_history
        assert detail["points_learnt"] >= learnt_history
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0, log.read_text()[-3000:]
