"""Waiting in tests: every wait polls a condition under its own deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: seconds between two polls of a condition
POLL_SECONDS = 0.2


def wait_for(condition: Callable[[], T], timeout: float, poll: float = POLL_SECONDS) -> T:
    """Poll ``condition`` until it returns something truthy or ``timeout`` seconds pass;
    return its last value (the caller asserts on it, with its own message).

    >>> n = iter(range(5))
    >>> wait_for(lambda: next(n) >= 2, timeout=5, poll=0)
    True
    >>> wait_for(lambda: 0, timeout=0)
    0
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(poll)


def retrying(call: Callable[[], T], retry: Callable[[Exception], bool], timeout: float,
             poll: float = POLL_SECONDS) -> T:
    """``call()`` until it returns instead of raising an error ``retry`` accepts (a server
    still starting); any other error, or the last one after ``timeout`` seconds, is raised.

    >>> tries = iter([OSError(), OSError(), 7])
    >>> def call():
    ...     v = next(tries)
    ...     if isinstance(v, Exception):
    ...         raise v
    ...     return v
    >>> retrying(call, lambda exc: isinstance(exc, OSError), timeout=5, poll=0)
    7
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except Exception as exc:
            if not retry(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(poll)
