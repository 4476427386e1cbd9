"""Dockerfile and docker-compose.yml, checked statically (no Docker engine here)."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.spec import load_specs
from streams.cli import SUBCOMMANDS, build_parser
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = dockerfile()
    start = max(i for i, (k, _) in enumerate(ins) if k == "FROM")
    return ins[start:]


def dockerignore() -> list[str]:
    return [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
            if p.strip() and not p.startswith("#")]


def ignored(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pat) or path.startswith(pat.rstrip("/") + "/") for pat in dockerignore())


def test_dockerfile_final_stage_is_small_non_root_and_runs_foresight():
    stage = final_stage()
    base = stage[0][1]
    assert base.startswith("python:3.11-slim"), "small base matching requires-python"
    [user] = [v for k, v in stage if k == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    [entry] = [v for k, v in stage if k == "ENTRYPOINT"]
    assert json.loads(entry) == ["foresight"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "foresight" in scripts
    assert not [v for k, v in stage if k == "RUN" and ("apt-get install" in v or "pip install" in v)], \
        "build tools and installs stay in the build stage"


def test_dockerfile_copies_exist_and_are_not_ignored():
    for k, v in dockerfile():
        if k != "COPY" or v.startswith("--from="):
            continue
        *sources, _dest = v.split()
        for src in sources:
            assert (ROOT / src).exists(), src
            assert not ignored(src), f"{src} is excluded by .dockerignore"


def test_dockerignore_keeps_the_context_small():
    for heavy in (".venv", ".git", "tests", "benchmarks"):
        assert ignored(heavy), heavy


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def foresight_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose()["services"].items() if s.get("image", "").startswith("foresight")}


def test_compose_runs_kafka_in_kraft_mode():
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not [k for k in env if "ZOOKEEPER" in k]
    assert "healthcheck" in kafka
    listeners = {u.split("://")[0] for u in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert listeners <= set(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].replace(":", ",").split(","))


def test_compose_services_and_their_commands():
    services = foresight_services()
    assert set(services) == {"worker", "controller", "producer"}
    roles = {}
    for name, svc in services.items():
        cmd = svc["command"]
        assert cmd[0] in SUBCOMMANDS
        roles[name] = build_parser().parse_args(cmd)  # SystemExit on an unknown flag
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        env = {k: str(v) for k, v in svc["environment"].items()}
        assert set(env) <= {f"FORESIGHT_{f.upper()}" for f in Settings.__dataclass_fields__}
        assert Settings.from_env(env).broker == "kafka:9092"
    assert roles["worker"].command == "worker"
    assert roles["controller"].command == "scaler" and roles["controller"].mode == "ForecastOnly"
    assert not roles["controller"].kube, "compose drives the simulated cluster"
    assert roles["producer"].command == "produce" and roles["producer"].speed > 0


def _host_path(svc: dict[str, Any], container_path: str) -> Path:
    for vol in svc.get("volumes", []):
        host, target, *_ = vol.split(":")
        if container_path.startswith(target.rstrip("/") + "/"):
            return ROOT / host / container_path[len(target.rstrip("/")) + 1:]
    raise AssertionError(f"{container_path} is not mounted")


def test_compose_inputs_exist_in_the_repository():
    services = foresight_services()
    producer = build_parser().parse_args(services["producer"]["command"])
    trace = _host_path(services["producer"], producer.input)
    header = trace.read_text().splitlines()[0]
    assert header == "timestamp,value"
    controller = build_parser().parse_args(services["controller"]["command"])
    [spec] = load_specs(_host_path(services["controller"], controller.scalers))
    assert spec.series == Path(producer.input).stem, "the scaler follows the replayed series"


def test_compose_builds_the_image_it_runs():
    services = foresight_services()
    assert {s["image"] for s in services.values()} == {"foresight-autoscaler:0.1.0"}
    assert any(s.get("build") == "." for s in services.values())
    assert (ROOT / "Dockerfile").is_file()


@pytest.mark.parametrize("name", ["worker", "controller", "producer"])
def test_compose_containers_are_read_only(name):
    assert foresight_services()[name]["read_only"] is True


def test_the_commented_ingest_service_is_valid_once_uncommented():
    """docker-compose.yml shows how to add an ingest for one's own Prometheus: uncommented,
    it is a service like the others, its command a valid ingest, credentials a secret file."""
    lines = (ROOT / "docker-compose.yml").read_text().splitlines()
    start = lines.index("  #   ingest:")
    block = []
    for ln in lines[start:]:
        if not ln.startswith("  #   "):
            break
        block.append("  " + ln[len("  #   "):])
    text = "\n".join(lines[:start] + block + lines[start + len(block):])
    svc = yaml.safe_load(text)["services"]["ingest"]
    args = build_parser().parse_args(svc["command"])
    assert args.command == "ingest" and args.sources.startswith("/config/")
    assert svc["read_only"] is True and svc["image"].startswith("foresight")
    env = {k: str(v) for k, v in svc["environment"].items()}
    assert env["FORESIGHT_PROMETHEUS_BEARER_TOKEN_FILE"] == f"/run/secrets/{svc['secrets'][0]}"
    assert not [k for k in env if k.endswith(("_TOKEN", "_PASSWORD"))], "secrets as files only"
