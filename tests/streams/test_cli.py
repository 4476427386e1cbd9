"""streams.cli: one error path. Each test runs `foresight` as a user does and reads its stderr."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streams.cli import build_parser, settings_from_args
from streams.settings import COMMANDS, describe
from tests.conftest import ROOT

FORESIGHT = Path(sys.executable).with_name("foresight")
GOOD = "timestamp,value\n2025-03-02 10:00:00,5\n2025-03-02 10:05:00,6\n"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FORESIGHT_")}
    return subprocess.run([str(FORESIGHT), *args], env={**base, **(env or {})}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.fixture
def closed_port() -> str:
    """An address where nothing listens (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


def test_a_missing_input_file_is_one_line_and_exit_2(tmp_path):
    out = run("detect", "--input", "nope.csv", "--output", str(tmp_path / "o.csv"))
    assert out.returncode == 2
    assert one_line(out) == ("foresight detect: --input nope.csv: no such file; "
                             "give the path of a timestamp,value CSV")


@pytest.mark.parametrize("text, message", [
    ("time,requests\n1,2\n", ":1: header is 'time,requests', expected 'timestamp,value'"),
    ("timestamp,value\n2025-03-02 10:00:00,n/a\n", ":2: value 'n/a' is not a number"),
    ("timestamp,value\n03/2/2025 10:00,5\n", ":2: timestamp '03/2/2025 10:00' is neither ISO-8601"),
    ("", ": the file is empty"),
    ("timestamp;value\n2025-03-02 10:00:00;5\n", ":1: fields are separated by semicolons"),
], ids=["header", "n/a", "us-date", "empty", "semicolons"])
def test_detect_rejects_each_bad_file_naming_file_and_line(tmp_path, text, message):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(text)
    out = run("detect", "--input", str(src), "--output", str(dst))
    assert out.returncode == 2
    assert one_line(out).startswith(f"foresight detect: {src}{message}")
    assert not dst.exists(), "nothing is written for a bad file"


def test_detect_success_is_exit_0(tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(GOOD)
    out = run("detect", "--input", str(src), "--output", str(dst))
    assert out.returncode == 0, out.stderr
    assert len(dst.read_text().splitlines()) == 3


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_failed_write_is_exit_1(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(GOOD)
    out = run("detect", "--input", str(src), "--output", "/dev/full")
    assert out.returncode == 1
    assert one_line(out) == ("foresight detect: --output /dev/full: write failed (No space left on device); "
                             "check free space and permissions")


def test_an_output_directory_that_does_not_exist_is_exit_2(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(GOOD)
    out = run("detect", "--input", str(src), "--output", str(tmp_path / "no" / "out.csv"))
    assert out.returncode == 2
    assert "does not exist" in one_line(out)


def test_an_unreachable_broker_is_one_line_naming_it_and_exit_1(tmp_path, closed_port):
    src = tmp_path / "load.csv"
    src.write_text(GOOD)
    out = run("produce", "--input", str(src), env={"FORESIGHT_BROKER": closed_port})
    assert out.returncode == 1
    line = one_line(out)
    assert line.startswith(f"foresight produce: cannot reach the Kafka broker at {closed_port}")
    assert "--broker" in line


def test_a_bad_csv_is_reported_before_the_broker_is_contacted(tmp_path, closed_port):
    src = tmp_path / "load.csv"
    src.write_text("timestamp,value\n2025-03-02 10:00:00,5\nbad,row\n")
    out = run("produce", "--input", str(src), env={"FORESIGHT_BROKER": closed_port})
    assert out.returncode == 2
    assert one_line(out).startswith(f"foresight produce: {src}:3: timestamp 'bad'")


def test_scaler_reads_its_specs_before_contacting_kafka(tmp_path, closed_port):
    spec = tmp_path / "scalers.yaml"
    spec.write_text("kind: PredictiveScaler\nmetadata: {name: web}\nspec: {series: web/requests}\n")
    out = run("scaler", "--scalers", str(spec), env={"FORESIGHT_BROKER": closed_port})
    assert out.returncode == 2
    line = one_line(out)
    assert line.startswith(f"foresight scaler: {spec}: PredictiveScaler")
    assert "capacityPerReplica" in line
    spec.write_text("kind: [\n")
    out = run("scaler", "--scalers", str(spec), env={"FORESIGHT_BROKER": closed_port})
    assert out.returncode == 2 and "not valid YAML" in one_line(out)
    ok = ROOT / "deploy" / "compose" / "scalers.yaml"
    out = run("scaler", "--scalers", str(ok), env={"FORESIGHT_BROKER": closed_port})
    assert out.returncode == 1 and "cannot reach the Kafka broker" in one_line(out)


def test_a_bad_setting_names_the_variable_and_is_exit_2():
    out = run("worker", env={"FORESIGHT_WINDOW_SECONDS": "10s", "FORESIGHT_BROKER": "x:1"})
    assert out.returncode == 2
    assert one_line(out).startswith("foresight worker: FORESIGHT_WINDOW_SECONDS='10s' is not a number")
    out = run("worker", "--broker", "x:1", "--window-seconds", "0")
    assert out.returncode == 2
    assert one_line(out) == ("foresight worker: --window-seconds / FORESIGHT_WINDOW_SECONDS "
                             "must be > 0, got 0.0")


def test_a_bad_flag_is_one_line_and_exit_2():
    out = run("worker", "--bogus")
    assert out.returncode == 2
    assert one_line(out) == "foresight worker: unrecognized arguments: --bogus (see 'foresight worker --help')"
    out = run("worker", "--partitions", "four")
    assert out.returncode == 2 and "invalid int value: 'four'" in one_line(out)


def test_debug_shows_the_traceback(tmp_path):
    for args, env in ((["--debug"], {}), ([], {"FORESIGHT_LOG_LEVEL": "debug"})):
        out = run("detect", *args, "--input", "nope.csv", "--output", str(tmp_path / "o.csv"), env=env)
        assert out.returncode == 2
        assert "Traceback (most recent call last)" in out.stderr
        assert out.stderr.strip().splitlines()[-1].startswith("foresight detect: --input nope.csv")


def test_version_and_help_document_the_exit_codes():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("foresight 0.")
    out = run("--help")
    assert out.returncode == 0
    assert "exit codes:" in out.stdout and "--debug" in out.stdout
    for code in ("0  success", "1  a run-time failure", "2  a problem with what you gave"):
        assert code in out.stdout


REQUIRED = {"produce": ["--input", "x.csv"], "detect": ["--input", "a", "--output", "b"]}
#: a valid value for the string settings that have a format of their own
EXAMPLES = {"signal_clock": "event=1767225600,wall=1767225600,speed=60"}


@pytest.mark.parametrize("command", ["demo", "worker", "scaler", "produce"])
def test_every_setting_is_a_flag_of_every_command_that_uses_it(command):
    parser = build_parser()
    for info in describe():
        if command not in info.commands:
            continue
        if info.type is bool:
            flag_args, expected = ["--no-" + info.flag[2:]], False
        else:
            value = info.choices[-1] if info.choices else EXAMPLES.get(
                info.name, {int: "7", float: "0.95"}.get(info.type, "x"))
            flag_args, expected = [info.flag, value], info.type(value)
        args = parser.parse_args([command, *REQUIRED.get(command, []), *flag_args])
        assert getattr(settings_from_args(args, env={}), info.name) == expected, info.flag


def test_worker_takes_anomaly_threshold_and_horizon_steps():
    args = build_parser().parse_args(["worker", "--anomaly-threshold", "0.95", "--horizon-steps", "12"])
    s = settings_from_args(args, env={})
    assert (s.anomaly_threshold, s.horizon_steps) == (0.95, 12)


def test_every_flag_has_help_and_shows_its_default():
    text = run("worker", "--help").stdout
    for info in describe():
        if "worker" in info.commands:
            assert info.help
            assert info.flag in text and info.env in text
        if info.name in COMMANDS:  # a field added later gets a fallback help text until it has a #: comment
            assert not info.help.startswith("the "), f"{info.name}: write a #: comment"
    assert "default: 0.9]" in text  # anomaly threshold
    for command in ("produce", "detect"):
        text = run(command, "--help").stdout
        assert "timestamp,value" in text


def test_backtest_rejects_a_bad_trace_like_detect(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("timestamp;value\n2025-03-02 10:00:00;5\n")
    out = run("backtest", "--input", str(src), "--capacity-per-replica", "10")
    assert out.returncode == 2
    assert one_line(out).startswith(f"foresight backtest: {src}:1: fields are separated by semicolons")
    out = run("backtest", "--input", "nope.csv", "--capacity-per-replica", "10")
    assert out.returncode == 2 and "no such file" in one_line(out)
