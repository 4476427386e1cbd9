"""Fixtures: a stateful API server emulator over real HTTP (see kube_emulator.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kube_emulator import EmulatorThread

SETUP_UA = "test-setup"


@pytest.fixture()
def emu() -> Iterator[EmulatorThread]:
    with EmulatorThread() as e:
        yield e


@pytest.fixture()
def setup_api(emu: EmulatorThread) -> Any:
    """A client for the test's own requests (told apart from the controller's by User-Agent)."""
    return emu.api_client(user_agent=SETUP_UA)
