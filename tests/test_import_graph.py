"""The layers of DESIGN.md, checked on the source (every import, also those inside functions):

    streams -> scaler -> detectors      (imports point down only)
    only scaler/kube imports kubernetes; only streams touches Kafka;
    scaler/policy.py has no clock and no I/O
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("streams", "scaler", "detectors")
KAFKA = ("faust", "aiokafka", "kafka", "mode")
IMPURE = ("time", "datetime", "os", "socket", "random", "urllib", "requests", "http", "asyncio",
          "threading", "kubernetes", *KAFKA)


def imports(path: Path, root: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in one file, relative ones resolved."""
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.append((module, node.lineno))
    return out


def top(module: str) -> str:
    return module.split(".", 1)[0]


def violations(root: Path) -> list[str]:
    """Every import that breaks a rule, as ``file:line: imports module (rule)``."""
    found = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for module, line in imports(path, root):
                t = top(module)
                rule = None
                if pkg == "detectors" and t in ("scaler", "streams"):
                    rule = "detectors imports nothing above it"
                elif pkg == "scaler" and t == "streams":
                    rule = "scaler never imports streams"
                elif t == "kubernetes" and not rel.startswith("scaler/kube/"):
                    rule = "only scaler/kube imports kubernetes"
                elif t in KAFKA and pkg != "streams":
                    rule = "only streams touches Kafka"
                elif rel == "scaler/policy.py" and t in IMPURE:
                    rule = "scaler/policy.py is pure: no clock, no I/O"
                if rule:
                    found.append(f"{rel}:{line}: imports {module} ({rule})")
    return found


def test_the_source_keeps_the_layers():
    assert violations(ROOT) == []


@pytest.mark.parametrize(
    ("file", "source", "rule"),
    [
        ("detectors/x.py", "from scaler.decision import Reason\n", "detectors imports nothing above it"),
        ("scaler/x.py", "def f():\n    import streams.records\n", "scaler never imports streams"),
        ("streams/x.py", "from kubernetes import client\n", "only scaler/kube imports kubernetes"),
        ("scaler/reconcile.py", "import kubernetes.client\n", "only scaler/kube imports kubernetes"),
        ("scaler/x.py", "from aiokafka import AIOKafkaConsumer\n", "only streams touches Kafka"),
        ("scaler/policy.py", "import time\n", "scaler/policy.py is pure: no clock, no I/O"),
        ("scaler/kube/x.py", "from ...streams import cli\n", "scaler never imports streams"),
    ],
)
def test_each_rule_catches_its_violation(tmp_path: Path, file: str, source: str, rule: str):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / file).write_text(source)
    [found] = violations(tmp_path)
    assert found.startswith(f"{file}:") and found.endswith(f"({rule})")


def test_allowed_imports_pass(tmp_path: Path):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    (tmp_path / "scaler" / "kube").mkdir()
    (tmp_path / "scaler" / "kube" / "a.py").write_text("from kubernetes import client\nfrom scaler import spec\n")
    (tmp_path / "streams" / "b.py").write_text("import faust\nfrom scaler.kube import config\n")
    (tmp_path / "scaler" / "c.py").write_text("from detectors.forecast import Forecast\nfrom . import spec\n")
    assert violations(tmp_path) == []
