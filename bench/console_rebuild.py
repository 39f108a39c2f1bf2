"""How long the console takes to rebuild its view at start, as a ratio to a plain aiokafka read of the same
topic in the same run: ``python -m bench.console_rebuild [--fingerprints 100000] [--rounds 3]``.

Needs a broker: ``KAFKA_BOOTSTRAP_SERVERS`` (default 127.0.0.1:19592, the benchmarks' own, see bench/README.md).
The topic is made like the workers make ``bindwatch.alerts.v1`` (8 partitions, keyed by fingerprint): one
``firing`` record per fingerprint, then a ``resolved`` one for every tenth. Each round runs, in alternating
order, on the same topic:

* **plain**: an aiokafka consumer (no group) reading every record to the end offsets, nothing else;
* **decode**: the same, plus ``schemas.decode`` of each value into the console's record model;
* **console**: ``console.service.consume`` as the service runs it (assign, seek to beginning, end offsets,
  decode, apply to the view, commit), timed to the moment the view is rebuilt.

Writes ``bench/results/console-rebuild-<time>.json`` and prints a Markdown table. Bounded: every read has a
deadline; the topic is left for inspection (named ``bench-console-*``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.kafka_io import produce
from bench.workload import Record
from console.config import ConsoleSettings
from console.records import AlertChange
from console.service import ConsoleState, consume
from schemas import AlertStatus, decode
from tests.support.alerts import alert_record

PARTITIONS = 8
RESULTS = Path(__file__).resolve().parent / "results"


def records(fingerprints: int) -> Iterator[Record]:
    rules = ("caller_repeat", "did_hot", "pair_repeat", "caller_scan")
    for i in range(fingerprints):
        rule = rules[i % 4]
        key, value, _ = alert_record(
            f"{rule}:{i:020x}", rule=rule, caller=f"8526{i:07d}", did=f"8529{i:07d}" if i % 2 else None
        )
        yield key, value, int(time.time() * 1000), []
    for i in range(0, fingerprints, 10):
        rule = rules[i % 4]
        key, value, _ = alert_record(f"{rule}:{i:020x}", rule=rule, caller=f"8526{i:07d}", status=AlertStatus.RESOLVED)
        yield key, value, int(time.time() * 1000), []


async def _create(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await asyncio.wait_for(admin.start(), 30)
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact,delete"})])
    finally:
        await admin.close()


async def _read(bootstrap: str, topic: str, decode_values: bool, timeout: float = 300) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    t0 = time.monotonic()
    await asyncio.wait_for(consumer.start(), 30)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while time.monotonic() - t0 < timeout:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for recs in batch.values():
                for m in recs:
                    if decode_values:
                        decode(AlertChange, m.value or b"")
            if all([await consumer.position(tp) >= off for tp, off in end.items()]):
                return time.monotonic() - t0
        raise TimeoutError(f"{topic} not read within {timeout}s")
    finally:
        await asyncio.wait_for(consumer.stop(), 30)


async def _console(bootstrap: str, topic: str, timeout: float = 300) -> tuple[float, int]:
    state = ConsoleState(
        ConsoleSettings(
            kafka_bootstrap_servers=bootstrap, alerts_topic=topic, console_group_id=f"{topic}-{uuid.uuid4().hex[:6]}"
        )
    )
    started = asyncio.Event()
    t0 = time.monotonic()
    task = asyncio.create_task(consume(state, started))
    try:
        await asyncio.wait_for(started.wait(), timeout)
        took = time.monotonic() - t0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return took, len(state.view)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--fingerprints", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19592")
    topic = f"bench-console-{uuid.uuid4().hex[:8]}"
    asyncio.run(_create(bootstrap, topic))
    produced = produce(bootstrap, topic, records(args.fingerprints))
    runs: dict[str, list[float]] = {"plain": [], "decode": [], "console": []}
    view_size = 0
    for r in range(args.rounds):
        order = ["plain", "decode", "console"] if r % 2 == 0 else ["console", "decode", "plain"]
        for name in order:
            if name == "console":
                took, view_size = asyncio.run(_console(bootstrap, topic))
            else:
                took = asyncio.run(_read(bootstrap, topic, decode_values=name == "decode"))
            runs[name].append(took)
            print(f"round {r + 1} {name}: {took:.2f}s", flush=True)
    assert view_size == args.fingerprints, f"the view holds {view_size} alerts, {args.fingerprints} expected"
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "when": datetime.now(UTC).isoformat(),
        "fingerprints": args.fingerprints,
        "records": produced["records"],
        "topic": topic,
        "seconds": runs,
        "median_seconds": med,
        "console_over_plain": round(med["console"] / med["plain"], 2),
        "console_over_decode": round(med["console"] / med["decode"], 2),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"console-rebuild-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"\n| read of {produced['records']:,} records ({args.fingerprints:,} fingerprints) | median s | ratio |")
    print("|---|---|---|")
    for name in ("plain", "decode", "console"):
        print(f"| {name} | {med[name]:.2f} | {med[name] / med['plain']:.2f}x |")
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
