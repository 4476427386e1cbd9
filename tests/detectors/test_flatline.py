"""detectors.flatline.FlatlineDetector."""

from __future__ import annotations

import pickle

from detectors.flatline import FlatlineDetector


def feed(det, values):
    out = []
    for x in values:
        out.append(det.score_one(x))
        det.learn_one(x)
    return out


def test_becomes_constant_is_flagged_after_the_limit():
    det = FlatlineDetector(factor=3.0, min_run=10)
    feed(det, [float(i % 5) for i in range(200)])
    scores = feed(det, [2.0] * 20)
    assert max(scores[:9]) == 0.0
    assert scores[9] == 0.5 and scores[14] > 0.5


def test_long_runs_seen_before_raise_the_limit():
    det = FlatlineDetector(factor=3.0, min_run=10)
    pattern = [1.0] * 20 + [float(i) for i in range(10)]
    feed(det, pattern * 10)
    assert max(feed(det, [5.0] * 59)) == 0.0
    assert feed(det, [5.0])[0] >= 0.5


def test_constant_from_the_start_is_never_flagged():
    assert max(feed(FlatlineDetector(), [3.0] * 1000)) == 0.0


def test_pickle_round_trip():
    det = FlatlineDetector()
    feed(det, [float(i % 3) for i in range(100)] + [1.0] * 5)
    copy = pickle.loads(pickle.dumps(det))
    assert feed(det, [1.0] * 30) == feed(copy, [1.0] * 30)
