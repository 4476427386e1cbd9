"""``foresight dlq``: inspect dead letters and send repaired ones back.

A dead letter (see :func:`streams.records.dead_letter_to_json`) holds only
the bad part of one input message, so replaying it never re-sends data that
was accepted.

- ``foresight dlq show [--topic events] [--reason R] [--limit N] [--json]``
  lists the dead letters of ``<prefix>.<topic>.dlq``: one line each (offset,
  reason, bad elements, error, the start of the bad bytes), or with
  ``--json`` one editable JSON object per line
  (``{"key", "topic", "reason", "count", "error", "raw"}``, ``raw`` as text).
- ``foresight dlq replay [--topic events] [--reason R] [--file F] [--dry-run]``
  sends dead letters back to their input topic: from the DLQ topic as they
  are (e.g. ``--reason future`` once a producer's clock is fixed), or from a
  file of ``show --json`` lines an operator repaired. Truncated dead letters
  (``too_large``) cannot be replayed and are reported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import orjson

from streams import kafka_config
from streams.records import DLQ_REASONS, DeadLetterRecord, parse_dead_letter
from streams.settings import Settings

#: input topics a dead letter may be replayed to (names under the topic prefix)
REPLAYABLE = ("events", "metrics")


@dataclass(frozen=True, slots=True)
class Entry:
    partition: int
    offset: int
    key: bytes | None
    record: DeadLetterRecord


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foresight dlq", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    for name, text in (("show", "list dead letters"), ("replay", "send dead letters back to their topic")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--broker", help="Kafka bootstrap servers (default FORESIGHT_BROKER)")
        p.add_argument("--topic-prefix", dest="topic_prefix", help="default FORESIGHT_TOPIC_PREFIX")
        p.add_argument("--topic", default="events", choices=["events", "metrics", "points", "decisions"],
                       help="whose dead letters (default events)")
        p.add_argument("--reason", choices=DLQ_REASONS, help="only dead letters with this reason")
        p.add_argument("--limit", type=int, default=0, help="at most N dead letters (0: all)")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")
        if name == "show":
            p.add_argument("--json", action="store_true", help="one editable JSON object per line")
        else:
            p.add_argument("--file", help="replay the (repaired) lines of `dlq show --json` instead")
            p.add_argument("--dry-run", action="store_true", help="say what would be sent, send nothing")
    return parser


def read_dead_letters(target: Settings | str, topic: str, timeout: float = 10.0) -> Iterator[Entry]:
    """Every dead letter of ``topic``, from the beginning until the topic is quiet.

    (Read until a poll comes back empty: end offsets are not trusted, since
    some Kafka-protocol brokers report them per batch.) Records that are not
    dead letters are skipped with a note on stderr. ``target``: the settings (broker and
    security) or a bare bootstrap address."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    settings = target if isinstance(target, Settings) else Settings(broker=target)
    c = KafkaConsumer(**kafka_config.client_kwargs(settings), enable_auto_commit=False, group_id=None)
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return
        c.assign(tps)
        c.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        first = True
        while time.monotonic() < deadline:
            batch = c.poll(timeout_ms=int(min(timeout, 5.0 if first else 1.0) * 1000))
            first = False
            if not batch:
                break
            for tp in sorted(batch, key=lambda t: t.partition):
                for m in batch[tp]:
                    try:
                        yield Entry(m.partition, m.offset, m.key, parse_dead_letter(m.value or b""))
                    except ValueError as exc:
                        print(f"skipping {topic}[{m.partition}]@{m.offset}: {exc}", file=sys.stderr)
    finally:
        c.close()


def _preview(raw: bytes, n: int = 60) -> str:
    text = raw[:n].decode("utf-8", "backslashreplace")
    return text + ("..." if len(raw) > n else "")


def show(entries: Iterator[Entry], out: IO[str], as_json: bool) -> int:
    n = 0
    for e in entries:
        r = e.record
        if as_json:
            line = {"key": None if e.key is None else e.key.decode("utf-8", "backslashreplace"),
                    "topic": r.topic, "partition": r.partition, "offset": r.offset,
                    "reason": r.reason, "reasons": r.reasons, "count": r.count,
                    "truncated": r.truncated, "error": r.error,
                    "raw": r.raw.decode("utf-8", "backslashreplace")}
            out.write(orjson.dumps(line).decode() + "\n")
        else:
            reasons = ",".join(f"{k}={v}" for k, v in sorted(r.reasons.items()))
            out.write(f"{e.partition}@{e.offset}\t{r.topic}[{r.partition}]@{r.offset}\t{reasons}\t"
                      f"{r.error[:120]}\t{_preview(r.raw)}{' (truncated)' if r.truncated else ''}\n")
        n += 1
    return n


def _lines(path: str) -> Iterator[tuple[bytes | None, str, bytes, bool]]:
    with open(path, "rb") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                o = orjson.loads(line)
                key = None if o.get("key") is None else str(o["key"]).encode()
                yield key, str(o["topic"]), str(o["raw"]).encode("utf-8"), bool(o.get("truncated"))
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise SystemExit(f"foresight dlq replay: {path}:{i}: not a `dlq show --json` line ({exc})") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    settings = Settings.from_env(broker=args.broker, topic_prefix=args.topic_prefix)
    if not settings.broker:
        print("foresight dlq: set --broker or FORESIGHT_BROKER", file=sys.stderr)
        return 2
    source = settings.topic(args.topic)
    dlq_topic = f"{source}.dlq"

    def selected() -> Iterator[Entry]:
        n = 0
        for e in read_dead_letters(settings, dlq_topic, args.timeout):
            if args.reason and args.reason not in e.record.reasons:
                continue
            yield e
            n += 1
            if args.limit and n >= args.limit:
                return

    if args.action == "show":
        n = show(selected(), sys.stdout, args.json)
        print(f"{n} dead letters in {dlq_topic}", file=sys.stderr)
        return 0

    allowed = {settings.topic(t) for t in REPLAYABLE}
    if args.file:
        todo = list(_lines(args.file))
    else:
        todo = [(e.key, e.record.topic, e.record.raw, e.record.truncated) for e in selected()]
    sent = skipped = 0
    producer = None
    if not args.dry_run:
        from kafka import KafkaProducer

        producer = KafkaProducer(**kafka_config.client_kwargs(settings), acks="all")
    try:
        for key, topic, raw, truncated in todo:
            if truncated or topic not in allowed:
                why = "truncated (too large to replay)" if truncated else f"topic {topic!r} is not an input topic"
                print(f"skipped: {why}", file=sys.stderr)
                skipped += 1
                continue
            if producer is not None:
                producer.send(topic, key=key, value=raw)
            sent += 1
        if producer is not None:
            producer.flush()
    finally:
        if producer is not None:
            producer.close()
    verb = "would send" if args.dry_run else "sent"
    print(f"{verb} {sent} dead letters back, skipped {skipped}", file=sys.stderr)
    return 0 if not skipped else 1


if __name__ == "__main__":
    sys.exit(main())
