"""The clock of what Foresight itself measures (the Kafka topic signals' sampler).

Live, that is the wall clock: a sample read now is stamped now, and a rate is
messages per wall second. A replay at ``--speed`` (``foresight demo``) runs
event time faster than the wall clock, from an origin: a sample read at wall
time ``w`` belongs to event time ``event + (w - wall) * speed``, and a rate is
per event second. Samples stamped by the wall clock would land hours away
from the replay's windows, and a rate per wall second would be ``speed``
times too high.

Set through ``FORESIGHT_SIGNAL_CLOCK`` (:class:`streams.settings.Settings`):
empty for the wall clock, or ``event=<epoch s>,wall=<epoch s>,speed=<x>``.
A replay clock does not run before its wall origin (the replay has not
started: nothing to sample yet).

>>> c = SignalClock.parse("event=1767240000,wall=1000,speed=60")
>>> c.now(1010.0), c.started(999.0), c.interval(60.0)
(1767240600.0, False, 1.0)
>>> SignalClock.parse(str(c)) == c
True
>>> w = SignalClock.parse("")
>>> w.replay, w.now(1234.5), w.started(0.0), w.interval(10.0)
(False, 1234.5, True, 10.0)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

_KEYS = ("event", "wall", "speed")


@dataclass(frozen=True, slots=True)
class SignalClock:
    """Wall clock (``event`` None) or a replay's event time (see the module doc)."""

    event: float | None = None
    wall: float = 0.0
    speed: float = 1.0

    @classmethod
    def parse(cls, text: str) -> SignalClock:
        """From the setting's text; ``ValueError`` says what is wrong."""
        text = text.strip()
        if not text or text == "wall":
            return cls()
        values: dict[str, float] = {}
        for part in text.split(","):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in _KEYS:
                raise ValueError(f"expected event=<epoch s>,wall=<epoch s>,speed=<x>, got {text!r}")
            try:
                values[key] = float(raw)
            except ValueError:
                raise ValueError(f"{key} must be a number, got {raw.strip()!r}") from None
        missing = [k for k in _KEYS if k not in values]
        if missing:
            raise ValueError(f"missing {', '.join(missing)} in {text!r}")
        if not all(math.isfinite(v) for v in values.values()) or values["speed"] <= 0:
            raise ValueError(f"event and wall must be finite and speed > 0, got {text!r}")
        return cls(values["event"], values["wall"], values["speed"])

    def __str__(self) -> str:
        return "" if self.event is None else f"event={self.event!r},wall={self.wall!r},speed={self.speed!r}"

    @property
    def replay(self) -> bool:
        return self.event is not None

    def now(self, wall: float | None = None) -> float:
        """The clock's time at wall time ``wall`` (default: now)."""
        w = time.time() if wall is None else wall
        return w if self.event is None else self.event + (w - self.wall) * self.speed

    def started(self, wall: float | None = None) -> bool:
        """False before a replay clock's wall origin."""
        return self.event is None or (time.time() if wall is None else wall) >= self.wall

    def interval(self, seconds: float) -> float:
        """Wall seconds in which this clock moves ``seconds``."""
        return seconds / self.speed
