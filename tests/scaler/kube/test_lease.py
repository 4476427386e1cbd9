"""Leader election, stepped by hand with a fake clock (no sleeps) against the emulator."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from kubernetes import client

from scaler.kube import LeaderElector, NotLeaderError

pytestmark = pytest.mark.integration


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def elector(api, identity: str, clock: FakeClock, **kw) -> LeaderElector:
    return LeaderElector(
        api, identity=identity, namespace="foresight-system",
        lease_duration=15, renew_deadline=10, retry_period=2, clock=clock,
        wallclock=lambda: datetime.fromtimestamp(clock.t, UTC), **kw,
    )


def lease(api) -> client.V1Lease:
    return client.CoordinationV1Api(api).read_namespaced_lease("foresight-controller", "foresight-system")


def test_acquire_renew_expire_takeover_release(emu, setup_api):
    clock = FakeClock()
    started: list[str] = []
    a = elector(emu.api_client("a"), "a", clock, on_started_leading=lambda: started.append("a"))
    b = elector(emu.api_client("b"), "b", clock, on_started_leading=lambda: started.append("b"))

    assert a.step() is True  # creates the Lease
    assert b.step() is False and b.holder == "a"
    with pytest.raises(NotLeaderError):
        b.check()
    assert lease(setup_api).spec.holder_identity == "a"

    clock.t += 8
    assert a.step() is True  # renewed
    assert b.step() is False  # b sees a new record: its expiry clock restarts

    # a dies (stops renewing). It stops acting after renew_deadline, before the
    # Lease can expire for b (lease_duration): never two leaders at once.
    clock.t += 10
    assert not a.is_leader()
    assert b.step() is False
    clock.t += 4.9  # 14.9 s since b last saw a change: not expired yet
    assert b.step() is False
    clock.t += 0.2  # 15.1 s: expired
    assert b.step() is True
    spec = lease(setup_api).spec
    assert (spec.holder_identity, spec.lease_transitions) == ("b", 1)
    assert started == ["a", "b"]

    # a comes back: it must not steal the Lease
    assert a.step() is False and a.holder == "b"

    # b releases on shutdown: a takes over on its next attempt without waiting
    b.release()
    assert not b.is_leader()
    assert lease(setup_api).spec.holder_identity is None
    assert a.step() is True
    assert lease(setup_api).spec.lease_transitions == 2


def test_leader_that_cannot_renew_stops_acting(emu):
    clock = FakeClock()
    stopped: list[bool] = []
    a = elector(emu.api_client("a"), "a", clock, on_stopped_leading=lambda: stopped.append(True))
    assert a.step() is True
    # the API server fails every Lease request from now on (a user-defined kmock reaction wins)
    emu.call(lambda: emu.emulator[re.compile(r"/apis/coordination\.k8s\.io/.*")] << 503)
    clock.t += 5
    assert a.step() is True  # failed renew, but still inside renew_deadline
    clock.t += 5.1
    assert a.step() is False
    assert stopped == [True]
    with pytest.raises(NotLeaderError):
        a.check()


def test_racing_candidates_cannot_both_win(emu):
    """Compare-and-swap on the Lease: the second writer of the same version gets 409."""
    clock = FakeClock()
    a = elector(emu.api_client("a"), "a", clock)
    b = elector(emu.api_client("b"), "b", clock)
    c = elector(emu.api_client("c"), "c", clock)
    assert a.step() is True
    assert b.step() is False and c.step() is False
    clock.t += 16  # a is gone; both b and c see the Lease expired
    # another writer touches the Lease between b's read and b's write
    emu.call(emu.emulator.interfere, lambda r: r.method.value == "PUT" and "leases" in r.url.path)
    assert b.step() is False  # its PUT carried a stale resourceVersion -> 409
    assert c.step() is True


def test_timings_must_nest():
    with pytest.raises(ValueError):
        LeaderElector(None, identity="x", lease_duration=10, renew_deadline=10, retry_period=2)
