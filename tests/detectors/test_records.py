"""detectors.records.RecordScaler."""

from __future__ import annotations

import pickle

from detectors.records import RecordScaler


def test_scores_relative_to_the_record():
    r = RecordScaler(warmup=0)
    for u in (1.0, 4.0, 2.0):
        r.learn(u)
    assert r.score(2.0) == 0.25
    assert r.score(4.0) == 0.5
    assert r.score(5.0) == 0.75
    assert r.score(100.0) == 1.0


def test_no_alarm_during_warmup():
    r = RecordScaler(warmup=10)
    for u in range(1, 6):
        r.learn(float(u))
    assert r.score(50.0) == 0.5


def test_cold_scaler_scores_zero():
    assert RecordScaler().score(3.0) == 0.0


def test_decay_lets_a_smaller_value_break_an_old_record():
    r = RecordScaler(warmup=0, decay=0.01)
    r.learn(10.0)
    for _ in range(200):
        r.learn(0.0)
    assert r.score(5.0) > 0.5


def test_gain_asks_for_a_larger_excess():
    a, b = RecordScaler(warmup=0), RecordScaler(warmup=0, gain=0.5)
    a.learn(1.0)
    b.learn(1.0)
    assert a.score(1.5) > 0.5 > b.score(1.5)


def test_pickle_round_trip():
    r = RecordScaler(warmup=2, decay=0.1, gain=0.9)
    r.learn(3.0)
    c = pickle.loads(pickle.dumps(r))
    assert (c.warmup, c.decay, c.gain, c.record, c.n) == (2, 0.1, 0.9, 3.0, 1)


def test_statistic_that_was_always_zero():
    r = RecordScaler(warmup=3)
    for _ in range(3):
        r.learn(0.0)
    assert r.score(0.0) == 0.0
    assert r.score(1e-9) == 1.0


def test_an_incident_raises_a_peak_that_relaxes_back_to_the_record():
    r = RecordScaler(warmup=0, relax=0.01)
    r.learn(1.0)
    r.learn(10.0, incident=True)
    assert r.score(10.0) == 0.5  # at the incident's peak
    for _ in range(500):
        r.learn(0.4)  # quiet: below half the record
    assert r.record == 1.0 and r.peak < 1.1
    assert r.score(5.0) == 1.0  # a second incident half as large alarms


def test_the_peak_relaxes_only_while_the_statistic_is_quiet():
    r = RecordScaler(warmup=0, relax=0.01, quiet=0.5)
    r.learn(1.0)
    r.learn(10.0, incident=True)
    for _ in range(500):
        r.learn(0.9)  # near the record: a new regime creeping, not calm
    assert r.peak == 10.0
    q = RecordScaler(warmup=0, relax=0.01, quiet=1.0)
    q.learn(1.0)
    q.learn(10.0, incident=True)
    for _ in range(500):
        q.learn(0.9)
    assert q.peak < 1.1


def test_without_relax_an_incident_raises_the_record_for_good():
    r = RecordScaler(warmup=0)
    r.learn(1.0)
    r.learn(10.0, incident=True)
    for _ in range(500):
        r.learn(0.5)
    assert r.score(5.0) == 0.25


def test_values_outside_incidents_raise_the_record_for_good():
    r = RecordScaler(warmup=0, relax=0.01)
    r.learn(10.0)
    for _ in range(500):
        r.learn(0.5)
    assert r.score(10.0) == 0.5


def test_pickle_of_an_older_version_restores_without_a_peak():
    r = RecordScaler.__new__(RecordScaler)
    r.__setstate__((300, 0.0, 1.0, 4.0, 7))
    assert (r.record, r.n, r.relax, r.peak) == (4.0, 7, 0.0, 0.0)
    assert r.score(4.0) == 0.5
