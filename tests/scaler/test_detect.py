"""scaler.detect: `foresight detect` scores a CSV with the worker's code path."""

from __future__ import annotations

import csv
import math
import random

import pytest

from detectors.series import SeriesModel
from scaler import detect
from scaler.traces import TraceError


def write_csv(path, rows, header=("timestamp", "value")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(header)
        w.writerows(rows)


def read_out(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def nab_rows(n, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        minute = i * 5
        ts = f"2014-04-{1 + minute // 1440:02d} {minute // 60 % 24:02d}:{minute % 60:02d}:00"
        v = 50 + 20 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1)
        if i == 1500:
            v += 80
        rows.append((ts, f"{v:.3f}"))
    return rows


def test_one_row_per_input_row_in_input_order(tmp_path):
    rows = [
        ("2014-04-10 00:00:00", "1.0"),
        ("2014-04-10 00:05:00", "2.0"),
        ("2014-04-10 00:05:00", "2.0"),  # repeated timestamp
        ("2014-04-10 00:02:00", "3.0"),  # back in time
        ("2014-04-10T00:10:00Z", "1e1"),
        ("1397088900", " 4.50"),
    ]
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write_csv(src, rows)
    assert detect.detect_csv(str(src), str(dst)) == len(rows)
    out = read_out(dst)
    assert out[0] == ["timestamp", "value", "anomaly_score"]
    assert [tuple(r[:2]) for r in out[1:]] == rows, "written as given, in input order"
    scores = [float(r[2]) for r in out[1:]]
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_a_bad_row_fails_before_the_output_is_written(tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write_csv(src, [("2014-04-10 00:00:00", "1.0"), ("2014-04-10 00:05:00", "n/a")])
    with pytest.raises(TraceError, match=r"in.csv:3: value 'n/a' is not a number"):
        detect.detect_csv(str(src), str(dst))
    assert not dst.exists()


def test_detect_flags_a_spike_in_a_nab_style_file(tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write_csv(src, nab_rows(2000))
    detect.detect_csv(str(src), str(dst))
    scores = [float(r[2]) for r in read_out(dst)[1:]]
    assert scores[1500] >= 0.9
    assert sum(s >= 0.9 for s in scores[300:1500]) <= 2


def test_detect_is_causal(tmp_path):
    rows = nab_rows(2000, seed=7)
    k = 1600
    full, cut = tmp_path / "full.csv", tmp_path / "cut.csv"
    write_csv(full, rows)
    write_csv(cut, rows[:k])
    detect.detect_csv(str(full), str(tmp_path / "full-out.csv"))
    detect.detect_csv(str(cut), str(tmp_path / "cut-out.csv"))
    a = read_out(tmp_path / "full-out.csv")[1 : k + 1]
    b = read_out(tmp_path / "cut-out.csv")[1:]
    assert len(b) == k and a == b
    assert any(float(r[2]) >= 0.9 for r in b)  # the comparison covers an alarm


def test_score_rows_uses_the_series_model_score_path():
    calls = []

    class Spy(SeriesModel):
        __slots__ = ()

        def score(self, value, t=None):
            calls.append((value, t))
            return super().score(value, t)

    model = Spy(detect.new_model().detector, None)  # type: ignore[arg-type]
    rows = [("1970-01-01T00:00:00Z", "1"), ("1970-01-01 00:01:00", "2"), ("120", "3")]
    out = list(detect.score_rows(rows, model))
    assert [r[:2] for r in out] == rows
    assert calls == [(1.0, 0.0), (2.0, 60.0), (3.0, 120.0)]


def test_median_step():
    assert detect.median_step([None, 0.0, 60.0, 120.0, 120.0, 60.0, 180.0]) == 60.0
    assert detect.median_step([]) == detect.DEFAULT_STEP_SECONDS
