"""The ``forecasts`` wire format: a window of forecasts handed to the broker, framed vs JSON.

The model agent sends each points message's forecasts to the message's partition through one
producer, and aiokafka keeps one request in flight per broker: when a partition's batch is full,
the agent waits for the broker to take the one before. At 100,000 series a window's forecasts
are ~90-110 MB, so the broker's time to take them is on every window's latency
(``foresight_forecasts_send_seconds_total``). This sends the same window of forecasts (62-point
horizon, a daily-like profile per series) to the embedded broker as the agent does (``await
send`` per message, four partitions in turn, one producer, the worker's batch size and linger),
once as framed batches (:data:`streams.records.FORECASTS_FRAME`, what the model agent writes) and
once as their JSON form (base64 columns, ``ForecastColumns.to_json`` of the same rows), interleaved
``--reps`` times, and prints JSON: bytes a forecast, the median seconds to send and flush the
window each way (encoding included), the time spent waiting in ``send``, and the ratio
framed / JSON.

    python benchmarks/forecasts_wire.py [--series 100000] [--reps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from streams import records  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.broker import EmbeddedBroker  # noqa: E402
from streams.worker.context import PRODUCER_LINGER_MS, PRODUCER_MAX_BATCH_BYTES  # noqa: E402

#: forecasts a points message makes at 100,000 series (a partition's share of a window)
PER_MESSAGE = 5_000
HORIZON = 62
PARTITIONS = 4


def window(n: int, seed: int = 0) -> records.ForecastColumns:
    """``n`` forecasts of a 62-point horizon: each series its own level and phase, a widening band."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(10, 1000, n)[:, None]
    h = np.arange(HORIZON)[None, :]
    yhat = level * (1 + 0.3 * np.sin(2 * np.pi * (h + rng.uniform(0, 8640, n)[:, None]) / 8640))
    w = 0.1 * level * np.sqrt(1 + h / 10)
    return records.ForecastColumns([f"svc-{i:06d}/requests" for i in range(n)], np.full(n, 1.7e9), 10.0,
                                   np.stack([yhat, yhat - w, yhat + w], -1), 0.8, "SeasonalEnsemble",
                                   np.ones(n, bool), rng.random(n), np.zeros(n, bool), rng.random(n),
                                   np.zeros(n, bool), rng.random(n))


def encoders(cols: records.ForecastColumns) -> dict[str, object]:
    """Per format, a function giving one points message's forecasts messages (encoded now)."""
    def framed() -> list[bytes]:
        return [b for _, b in records.forecast_batches([cols])]

    # the JSON form of the same messages (the same rows each): the columns' base64 and the head
    cuts = np.cumsum([0] + [n for n, _ in records.forecast_batches([cols])])
    parts = [cols.take(np.arange(a, b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

    def as_json() -> list[bytes]:
        return [orjson.dumps(c.to_json(), option=orjson.OPT_SERIALIZE_NUMPY) for c in parts]
    return {"framed": framed, "json": as_json}


async def send_window(bootstrap: str, topic: str, encode, messages: int) -> tuple[float, float, int]:
    """(seconds to encode, send and flush ``messages`` points messages' forecasts, seconds
    waiting in ``send``, bytes sent)."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=PRODUCER_LINGER_MS,
                         max_batch_size=PRODUCER_MAX_BATCH_BYTES)
    await p.start()
    try:
        t0, waited, sent = time.perf_counter(), 0.0, 0
        for m in range(messages):
            for body in encode():
                t = time.perf_counter()
                await p.send(topic, body, partition=m % PARTITIONS)
                waited += time.perf_counter() - t
                sent += len(body)
        await p.flush()
        return time.perf_counter() - t0, waited, sent
    finally:
        await p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=100_000, help="forecasts in the window")
    ap.add_argument("--reps", type=int, default=5, help="windows sent each way, interleaved")
    args = ap.parse_args()
    per = min(PER_MESSAGE, args.series)
    messages = -(-args.series // per)
    fmt = encoders(window(per))
    runs: dict[str, list[tuple[float, float, int]]] = {k: [] for k in fmt}
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, ["forecasts"], PARTITIONS)
        for _ in range(args.reps):
            for name, encode in fmt.items():
                runs[name].append(asyncio.run(send_window(broker.bootstrap, "forecasts", encode, messages)))
    out: dict[str, object] = {"series": messages * per, "horizon": HORIZON, "reps": args.reps}
    for name, rs in runs.items():
        out[name] = {"bytes_per_forecast": round(rs[0][2] / (messages * per), 1),
                     "window_s_median": round(statistics.median(r[0] for r in rs), 3),
                     "send_wait_s_median": round(statistics.median(r[1] for r in rs), 3),
                     "window_s": [round(r[0], 3) for r in rs]}
    out["ratio_framed_vs_json"] = round(out["framed"]["window_s_median"] / out["json"]["window_s_median"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
