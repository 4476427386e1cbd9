"""``foresight produce`` replays a CSV through the producer helper, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, read_topic

pytestmark = pytest.mark.integration


def test_produce_replays_a_csv(broker, prefix, tmp_path):
    rows = [(f"2024-01-01T00:00:{s:02d}Z", 10 + s) for s in range(30)]
    csv = tmp_path / "load.csv"
    csv.write_text("timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in rows) + "")
    env = {**os.environ, "FORESIGHT_BROKER": broker, "FORESIGHT_TOPIC_PREFIX": prefix}
    out = subprocess.run([sys.executable, "-m", "streams", "produce", "--input", str(csv), "--kind", "events",
                          "--series", "svc/requests"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sent 30 rows" in out.stderr
    msgs = read_topic(broker, f"{prefix}.events", lambda ms: sum(
        a["count"] for m in ms for a in (m if isinstance(m, list) else [m])) >= sum(v for _, v in rows))
    aggs = [a for m in msgs for a in (m if isinstance(m, list) else [m])]
    assert {a["series"] for a in aggs} == {"svc/requests"}
    assert sum(a["count"] for a in aggs) == sum(v for _, v in rows)
    assert min(a["ts"] for a in aggs) == 1704067200.0
