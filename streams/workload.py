"""The demo's synthetic workload, in event time (pure, seeded, no I/O).

Three services on a repeating 60-minute cycle:

- ``checkout/requests`` (events): a daily-like wave plus one predictable peak
  per cycle (ramp from minute 40, plateau, back down by minute 55);
- ``search/requests`` (events): a gentle wave, plus one unpredictable spike
  (4x for 6 minutes, once, in the fifth cycle);
- ``inventory/inflight`` (metric samples): flat with noise, until a sensor
  that sticks at zero for 20 minutes in the sixth cycle;
- ``orders`` (:data:`KAFKA_PLAN`): real messages on a Kafka topic, a gentle
  wave around 3.5 messages/s plus a periodic burst to 12 (a 5-minute ramp from
  minute 10, plateau, back down by minute 25), produced from the live part on
  (the topic signal's sampler measures offsets as they grow: it has no past to
  backfill).

The demo replays the first ``HISTORY_CYCLES`` as fast as the pipeline takes
them (a backfill: the detectors' warm-up is a few hundred windows), then the
rest at ``--speed``.

>>> w = Workload(start=0.0)
>>> round(w.rate("checkout/requests", 0.0)), round(w.rate("checkout/requests", 47 * 60.0))
(1500, 4200)
>>> w.sample("inventory/inflight", w.stuck_start + 60) == 0.0
True
>>> round(w.rate("orders", 0.0)), round(w.rate("orders", 17 * 60.0))
(4, 12)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

CYCLE = 3600.0
#: cycles replayed as a fast backfill before the live replay
HISTORY_CYCLES = 4


@dataclass(frozen=True)
class TargetPlan:
    series: str
    kind: str  # events | metrics
    capacity_per_replica: float
    min_replicas: int
    max_replicas: int


PLANS = (
    TargetPlan("checkout/requests", "events", 250.0, 2, 40),
    TargetPlan("search/requests", "events", 200.0, 2, 40),
    TargetPlan("inventory/inflight", "metrics", 50.0, 2, 20),
)


@dataclass(frozen=True)
class KafkaPlan:
    """The demo's target scaled on a Kafka topic: its rate and a consumer group's lag."""

    name: str  # the Deployment, and the topic's name after the prefix
    group: str  # the consumer group
    capacity_per_replica: float  # messages/s one consumer handles
    min_replicas: int
    max_replicas: int
    partitions: int
    lag_threshold: float


#: the floor of 9 consumers serves the topic's usual 3.5 messages/s with room to spare (as the
#: policy keeps checkout's); the burst (12 messages/s) needs 12, and its ramp passes 9 about
#: three windows after it starts
KAFKA_PLAN = KafkaPlan("orders", "billing", 1.0, 9, 16, 16, 200.0)


class Workload:
    def __init__(self, start: float, seed: int = 7, cycle: float = CYCLE) -> None:
        self.start = start
        self.cycle = cycle
        self.rng = random.Random(seed)
        self.kafka_rng = random.Random(seed + 1)  # its own draws: the other series stay as they were
        # the unpredictable spike: fifth cycle, minute 25; the stuck sensor: sixth cycle, minute 20
        self.spike_start = start + 4 * cycle + 25 * 60.0
        self.spike_end = self.spike_start + 6 * 60.0
        self.stuck_start = start + 5 * cycle + 20 * 60.0
        self.stuck_end = self.stuck_start + 20 * 60.0

    def minute_of_cycle(self, ts: float) -> float:
        return ((ts - self.start) % self.cycle) / 60.0

    def peak_start(self, cycle_index: int) -> float:
        """Event time at which the predictable peak's ramp starts in a cycle."""
        return self.start + cycle_index * self.cycle + 40 * 60.0

    def burst_start(self, cycle_index: int) -> float:
        """Event time at which the Kafka topic's burst ramp starts in a cycle."""
        return self.start + cycle_index * self.cycle + 10 * 60.0

    def rate(self, series: str, ts: float) -> float:
        """Expected events/s (or sample level) at event time ``ts`` (no noise)."""
        m = self.minute_of_cycle(ts)
        wave = math.sin(2 * math.pi * m / 60.0)
        if series == "checkout/requests":
            base = 1500.0 * (1 + 0.15 * wave)
            if 40 <= m < 45:
                base += (m - 40) / 5 * (4200 - base)
            elif 45 <= m < 50:
                base = 4200.0
            elif 50 <= m < 55:
                base = 4200.0 + (m - 50) / 5 * (base - 4200.0)
            return base
        if series == "search/requests":
            base = 800.0 * (1 + 0.1 * wave)
            if self.spike_start <= ts < self.spike_end:
                base *= 4
            return base
        if series == "inventory/inflight":
            return 300.0
        if series == KAFKA_PLAN.name:
            base = 3.5 * (1 + 0.1 * wave)
            if 10 <= m < 15:
                base += (m - 10) / 5 * (12.0 - base)
            elif 15 <= m < 20:
                base = 12.0
            elif 20 <= m < 25:
                base = 12.0 + (m - 20) / 5 * (base - 12.0)
            return base
        raise KeyError(series)

    def events(self, series: str, ts: float, seconds: float = 1.0) -> int:
        """Noisy event count of an event series over ``[ts, ts + seconds)``."""
        lam = self.rate(series, ts) * seconds
        return max(0, int(round(self.rng.gauss(lam, 0.05 * lam + math.sqrt(lam)))))

    def messages(self, ts: float) -> int:
        """Noisy count of the Kafka topic's messages in ``[ts, ts + 1)`` (Poisson)."""
        lam = self.rate(KAFKA_PLAN.name, ts)
        # Knuth's method: exact for the topic's few messages a second
        limit, k, p = math.exp(-lam), 0, self.kafka_rng.random()
        while p > limit:
            k += 1
            p *= self.kafka_rng.random()
        return k

    def sample(self, series: str, ts: float) -> float:
        """One noisy sample of a metric series at ``ts``."""
        if self.stuck_start <= ts < self.stuck_end:
            return 0.0
        return max(0.0, self.rng.gauss(self.rate(series, ts), 15.0))
