"""``foresight dlq show`` / ``replay`` against the real broker and a worker."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from tests.conftest import ROOT, read_topic, send_raw

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0


def dlq(broker: str, prefix: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FORESIGHT_BROKER": broker, "FORESIGHT_TOPIC_PREFIX": prefix}
    p = subprocess.run([sys.executable, "-m", "streams", "dlq", *args], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_show_then_replay_repaired_dead_letters_without_duplicating_accepted_data(
        broker, prefix, start_worker, tmp_path):
    start_worker(prefix)
    batch = orjson.dumps([
        {"series": "svc/a", "ts": T0 + 1, "interval": 1.0, "count": 5},  # accepted
        {"series": "svc/a", "ts": T0 + 2, "interval": 1.0, "count": "7"},  # bad_type
    ])
    send_raw(broker, f"{prefix}.events", [(b"svc/a", batch), (b"svc/a", b"\xff not json")])
    read_topic(broker, f"{prefix}.events.dlq", lambda ms: len(ms) >= 2)

    shown = dlq(broker, prefix, "show")
    assert "bad_type=1" in shown.stdout and "malformed_json=1" in shown.stdout
    assert "2 dead letters" in shown.stderr
    as_json = dlq(broker, prefix, "show", "--json", "--reason", "bad_type").stdout.splitlines()
    assert len(as_json) == 1
    line = orjson.loads(as_json[0])
    assert orjson.loads(line["raw"]) == [{"series": "svc/a", "ts": T0 + 2, "interval": 1.0, "count": "7"}]

    line["raw"] = line["raw"].replace('"7"', "7")  # the operator repairs it
    fixed = tmp_path / "fixed.jsonl"
    fixed.write_text(orjson.dumps(line).decode() + "\n")
    assert "would send 1" in dlq(broker, prefix, "replay", "--file", str(fixed), "--dry-run").stderr
    assert "sent 1" in dlq(broker, prefix, "replay", "--file", str(fixed)).stderr
    # more traffic closes the window: 5 accepted + 7 repaired, nothing twice
    send_raw(broker, f"{prefix}.events",
             [(b"svc/a", orjson.dumps({"series": "svc/a", "ts": T0 + 40}))])
    pts = read_topic(broker, f"{prefix}.points", lambda ms: any(m["start"] == T0 for m in ms))
    assert [m["count"] for m in pts if m["start"] == T0] == [12]


def test_replay_from_the_topic_skips_what_cannot_be_replayed(broker, prefix, start_worker):
    start_worker(prefix)
    from streams.records import MAX_MESSAGE_BYTES

    send_raw(broker, f"{prefix}.events", [(b"k", b"[" + b"1," * (MAX_MESSAGE_BYTES // 2) + b"1]")])
    read_topic(broker, f"{prefix}.events.dlq", lambda ms: len(ms) >= 1)
    p = dlq(broker, prefix, "replay", "--reason", "too_large", check=False)
    assert p.returncode == 1 and "truncated" in p.stderr and "sent 0" in p.stderr
