"""Rate-limited logging: a failure that repeats is logged once per interval,
with the count of repeats suppressed in between.

>>> import logging
>>> t = [0.0]
>>> rl = RateLimitedLog(logging.getLogger("x"), interval=10.0, clock=lambda: t[0])
>>> rl.allow("k"), rl.allow("k"), rl.suppressed("k")
((True, 0), (False, 0), 1)
>>> t[0] = 11.0
>>> rl.allow("k")
(True, 1)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any


class RateLimitedLog:
    """At most one line per ``key`` per ``interval`` seconds (wall clock)."""

    def __init__(self, logger: logging.Logger, interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """(may log now, repeats suppressed since the last line)."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0
        self._last[key] = now
        if len(self._last) > 1000:  # keys are a fixed vocabulary; bound them anyway
            self._last = {key: now}
        return True, self._suppressed.pop(key, 0)

    def suppressed(self, key: str) -> int:
        return self._suppressed.get(key, 0)

    def log(self, level: int, key: str, msg: str, *args: Any) -> None:
        ok, repeats = self.allow(key)
        if ok:
            if repeats:
                msg = f"{msg} (and {repeats} more like it in the last {self.interval:.0f}s)"
            self.logger.log(level, msg, *args)
