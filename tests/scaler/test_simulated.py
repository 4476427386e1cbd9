from __future__ import annotations

import pytest

from scaler.simulated import SimulatedCluster


def test_pods_become_ready_after_startup_and_scale_down_cancels_newest_first():
    c = SimulatedCluster(startup_seconds=100)
    c.add_target("t", 2)
    c.scale_to("t", 4, now=0)
    c.scale_to("t", 6, now=50)
    assert (c.ready("t", 99), c.provisioned("t")) == (2, 6)
    assert c.ready("t", 100) == 4
    c.scale_to("t", 5, now=120)  # cancels one of the pods started at 50
    assert (c.ready("t", 120), c.provisioned("t")) == (4, 5)
    assert c.ready("t", 150) == 5
    c.scale_to("t", 1, now=200)
    assert (c.ready("t", 200), c.provisioned("t")) == (1, 1)


def test_unknown_target():
    with pytest.raises(KeyError):
        SimulatedCluster().ready("nope", 0)
