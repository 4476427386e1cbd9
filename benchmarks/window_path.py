"""The window process's hot path on its own: reading row-format client aggregates and windowing them.

In the worker, the client-aggregated ingest ratio at 100,000 series moves ±12 % from run to run
(the broker, the model agent and the raw loop share two cores; README "Where issue 14 stands").
This measures the same two steps without a broker, in one process: the messages the producer
helper sends (arrays of 500 row-format aggregates, one aggregate a series a second, time-major),
split over ``--partitions`` input partitions, then per partition and batch of ``--batch``
elements (about one fetch of the embedded broker: ~60,000 at 100,000 series) what the window
agent does with them: ``records.read_input`` per message, then the series budget's admission and
``Windower.add_columns`` over the batch's columns (``streams/worker/windows.py``), and the points
of the windows it closed. The raw baseline is ``orjson.loads`` of the same messages (the
parser the raw loop of ``throughput.py`` uses). Process CPU time, after the first third of the
seconds (the new series' first windows go row by row). Prints JSON: µs an aggregate for the
raw parse, the read and the windowing, and raw / (read + windowing).

    python benchmarks/window_path.py [--series 100000] [--batch 60000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

import numpy as np
import orjson

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from streams import records  # noqa: E402
from streams.budget import SeriesBudget  # noqa: E402
from streams.windowing import Windower  # noqa: E402
from streams.worker.window_process import GC_YOUNG_OBJECTS  # noqa: E402

T0 = 1_700_000_000
#: aggregates a message of the producer helper holds (about: it cuts at a byte size)
PER_MESSAGE = 500


def messages(series: int, partitions: int, seconds: int) -> list[list[bytes]]:
    """Per partition, its messages in order: every series' aggregate of each second."""
    names = [f"svc{i:06d}/requests" for i in range(series)]
    rng = np.random.default_rng(1)
    out: list[list[bytes]] = [[] for _ in range(partitions)]
    for sec in range(seconds):
        for p in range(partitions):
            mine = names[p::partitions]
            for a in range(0, len(mine), PER_MESSAGE):
                counts = rng.integers(1, 200, len(mine[a:a + PER_MESSAGE])).tolist()
                out[p].append(orjson.dumps([
                    {"series": s, "ts": T0 + sec + 0.5, "interval": 1.0, "count": c, "sum": float(c),
                     "min": 1.0, "max": 1.0} for s, c in zip(mine[a:a + PER_MESSAGE], counts, strict=True)]))
    return out


def run(series: int, partitions: int, batch: int, seconds: int) -> dict[str, float]:
    msgs = messages(series, partitions, seconds)
    budget = SeriesBudget(10 * series, 0.0)
    windowers = [Windower(step=10.0) for _ in range(partitions)]
    per = max(1, batch // PER_MESSAGE)
    skip = len(msgs[0]) // 3
    raw = read = window = 0.0
    n = points = 0
    gc.collect()
    gc.set_threshold(GC_YOUNG_OBJECTS)  # as the window process
    now = 0.0
    for i in range(0, len(msgs[0]), per):
        now += 1.0
        for p, w in enumerate(windowers):
            part = msgs[p][i:i + per]
            t0 = time.process_time()
            for m in part:
                orjson.loads(m)
            t1 = time.process_time()
            cols = [records.read_input(m) for m in part]
            t2 = time.process_time()
            names = [s for c in cols for s in c.series]
            lens = np.fromiter(map(len, cols), np.int64, len(cols))
            cat = np.concatenate
            w.add_columns(names, cat([c.ts for c in cols]), cat([c.interval for c in cols]),
                          cat([c.count for c in cols]), cat([c.sum for c in cols]), cat([c.min for c in cols]),
                          cat([c.max for c in cols]), np.repeat(np.arange(i, i + len(cols)), lens), "events",
                          admit=lambda s, now=now: budget.admit(s, now),
                          admit_all=lambda ss, now=now: budget.admit_tracked(ss, now))
            points += len(w.close_ready())
            t3 = time.process_time()
            if i >= skip:
                raw += t1 - t0
                read += t2 - t1
                window += t3 - t2
                n += len(names)
    return {
        "series": series, "partitions": partitions, "batch": batch, "seconds": seconds,
        "aggregates_measured": n, "points": points,
        "raw_parse_us_per_aggregate": 1e6 * raw / n,
        "read_us_per_aggregate": 1e6 * read / n,
        "window_us_per_aggregate": 1e6 * window / n,
        "ratio_raw_vs_read_and_window": raw / (read + window),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, nargs="+", default=[100_000])
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch", type=int, default=60_000, help="elements a partition's batch holds")
    ap.add_argument("--seconds", type=int, default=60, help="seconds of aggregates (6 windows of 10 s)")
    args = ap.parse_args()
    out = [run(s, args.partitions, args.batch, args.seconds) for s in args.series]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
