"""``foresight scaler --kube`` end to end, as a user runs it: the CLI in a subprocess, its
client configured from a kubeconfig (scaler/kube/config.py), forecasts from the real
embedded broker, the stateful API server emulator over HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from kube_emulator import wait_for
from kube_fixtures import (
    LEASE_NS,
    conditions,
    create_scaler,
    events,
    forecast,
    get_scaler,
    replicas,
    scaler_manifest,
    workload,
)
from kubernetes import client

from streams import records
from streams.broker import free_port
from streams.settings import Settings
from streams.topics import Topics
from tests.conftest import ROOT, read_topic, send_raw

#: seconds between two polls of a condition (each wait has its own deadline)
POLL_SECONDS = 0.05

pytestmark = pytest.mark.integration


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "controller", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "controller"}}],
    }))
    return path


def foresight() -> list[str]:
    script = shutil.which("foresight", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "streams"]


def ready(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
    except OSError:
        return False


def test_foresight_scaler_kube_scales_a_target_and_writes_status(emu, setup_api, broker, prefix, tmp_path):
    workload(setup_api, "Deployment", "shop", "checkout", 2)
    create_scaler(setup_api, scaler_manifest("shop", "checkout"))
    create_scaler(setup_api, scaler_manifest("shop", "ghost"))  # its Deployment comes later
    topics = Topics.from_settings(Settings(topic_prefix=prefix))
    health = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}  # not in-cluster
    env.update(KUBECONFIG=str(write_kubeconfig(tmp_path / "kubeconfig", emu.url)),
               FORESIGHT_HEALTH_HOST="127.0.0.1", FORESIGHT_HEALTH_PORT=str(health),
               FORESIGHT_LEASE_NAMESPACE=LEASE_NS)
    log = tmp_path / "scaler.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [*foresight(), "scaler", "--kube", "--broker", broker, "--topic-prefix", prefix,
             "--partitions", "1", "--log-level", "info"],
            env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)

    def running() -> None:
        assert proc.poll() is None, f"foresight scaler exited:\n{log.read_text()[-3000:]}"

    sent = 0
    t0 = time.time()

    def send_until(done, timeout: float = 90.0) -> None:
        """Feed one forecast a step later than the last until ``done()`` (the controller
        reads from the latest offset, so what it missed while starting is sent again)."""
        nonlocal sent
        deadline = time.monotonic() + timeout
        while not done():
            running()
            assert time.monotonic() < deadline, f"not done within {timeout}s:\n{log.read_text()[-3000:]}"
            t = t0 + 60 * sent
            value = records.dumps(records.forecast_to_json(forecast("checkout/requests", t, 950), 480))
            send_raw(broker, topics.forecasts, [(b"checkout/requests", value)])
            sent += 1
            settle = time.monotonic() + 1.0  # poll before sending the next one
            while time.monotonic() < settle and not done():
                time.sleep(POLL_SECONDS)  # between polls, under the deadline

    try:
        wait_for(lambda: running() or ready(health), timeout=60)
        send_until(lambda: replicas(setup_api, "Deployment", "shop", "checkout") == 10)
        # the status is written just after the patch: wait for it, do not race it
        wait_for(lambda: get_scaler(setup_api, "shop", "checkout").get("status", {})
                 .get("currentReplicas") == 10, timeout=30)
        status = get_scaler(setup_api, "shop", "checkout")["status"]
        assert status["desiredReplicas"] == 10 and status["currentReplicas"] == 10
        assert status["reason"] == "ForecastPeak" and status["lastForecastPeak"] == 950
        assert status["reference"] == "Deployment/checkout"  # the REFERENCE printer column
        assert conditions({"status": status}) == {
            "Ready": ("True", "Reconciled"),
            "ForecastAvailable": ("True", "ValidForecast"),
            "ScalingActive": ("True", "Active"),
            "ScalingLimited": ("False", "DesiredWithinRange"),
        }
        assert ("Normal", "SuccessfulRescale") in events(setup_api, "shop", "checkout")

        # a target whose series is quiet is re-decided as the watermark moves (resync)
        send_until(lambda: conditions(get_scaler(setup_api, "shop", "ghost")).get("Ready")
                   == ("False", "FailedGetScale"))
        assert ("Warning", "FailedGetScale") in events(setup_api, "shop", "ghost")
        workload(setup_api, "Deployment", "shop", "ghost", 2)
        send_until(lambda: conditions(get_scaler(setup_api, "shop", "ghost")).get("Ready")
                   == ("True", "Reconciled"))
        assert conditions(get_scaler(setup_api, "shop", "ghost"))["ForecastAvailable"] == ("False", "NoForecast")
        assert replicas(setup_api, "Deployment", "shop", "ghost") == 2, "no forecast: no scaling"

        published = read_topic(broker, topics.decisions,
                               lambda ms: any(m["target"] == "shop/checkout" and m["applied"] for m in ms))
        [applied] = [m for m in published if m["target"] == "shop/checkout" and m["applied"]]
        assert (applied["current"], applied["desired"], applied["reason"]) == (2, 10, "ForecastPeak")

        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
        lease = client.CoordinationV1Api(setup_api).read_namespaced_lease("foresight-controller", LEASE_NS)
        assert not lease.spec.holder_identity, "a clean stop releases the Lease"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
