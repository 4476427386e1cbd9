"""A real Prometheus server for the tests: history from ``promtool``, live data from a scrape.

The ``prometheus`` fixture starts :func:`streams.localprom.start_local_prometheus` (the
server ``foresight demo --local-prometheus`` runs too) with a known series
(:func:`known_value`, one sample a second): 4 hours of history in a TSDB built by
``promtool tsdb create-blocks-from openmetrics`` (so ``query_range`` returns real history),
then live scrapes of an exporter serving the same function at the wall-clock time, so
``foresight_test_load`` is one series, backfilled then scraped.

Skips with a clear message where the binaries are absent, unless
``FORESIGHT_REQUIRE_PROMETHEUS=1`` (CI), where absence is a failure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import pytest

from streams import localprom
from streams.localprom import HANDOVER_SECONDS, write_openmetrics  # noqa: F401 - as before
from streams.localprom import LocalPrometheus as PrometheusServer  # noqa: F401 - the fixture's type

#: the metric the fixture's TSDB and exporter hold
METRIC = "foresight_test_load"
#: query that returns it as one series
QUERY = METRIC
#: seconds of history written into the TSDB
HISTORY_SECONDS = 4 * 3600
#: seconds between history samples, and the scrape interval
SAMPLE_SECONDS = 1
#: the known series' period in seconds
PERIOD_SECONDS = 300


#: the known series' noise: uniform in +- this, a new draw every second
NOISE = 2.0


def noise(t: float) -> float:
    """A fixed pseudo-random draw for the second ``t`` falls in (the same on every call)."""
    k = (int(math.floor(t)) * 2654435761) % 2**32
    return NOISE * (2.0 * k / 2**32 - 1.0)


def known_value(t: float) -> float:
    """The known series: a 5-minute cycle around 100 with a faster ripple and a little noise,
    as a real metric has (always > 0). Without noise the models' one-step errors on the
    history are ~0, and a scrape a few hundred ms late on a busy machine looks like a
    change of regime (a drift) to them."""
    return (100.0 + 50.0 * math.sin(2 * math.pi * t / PERIOD_SECONDS) + 5.0 * math.sin(2 * math.pi * t / 37.0)
            + noise(t))


def require_prometheus() -> tuple[str, str]:
    """The binaries; else skip (or, with ``FORESIGHT_REQUIRE_PROMETHEUS=1``, fail)."""
    found = localprom.binaries()
    if found is None:
        if os.environ.get("FORESIGHT_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"FORESIGHT_REQUIRE_PROMETHEUS=1 but {localprom.MISSING}")
        pytest.skip(localprom.MISSING)
    return found


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus on a free loopback port: 4 h of known history, then live scrapes."""
    require_prometheus()
    server = localprom.start_local_prometheus(tmp_path_factory.mktemp("prometheus"), METRIC, known_value,
                                              HISTORY_SECONDS, SAMPLE_SECONDS)
    try:
        yield server
    finally:
        server.close()
