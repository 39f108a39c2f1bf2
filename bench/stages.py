"""Both stage cores in one process, without a broker: CPU per event of the per-event work alone, compiled
against the Python source in the same run. ``python -m bench.stages [--events N] [--rounds R]``.

Not part of ``python -m bench`` (no broker, seconds to run). What it drives is what a worker's two stages do
with a backlog, minus Kafka and RocksDB: ``stream.bench`` workload records (the drains' mix) in runs of 500 per
partition, as the consumer hands them over; caller batches of ``batch_size`` through ``core.caller_items`` and
the caller ``StageCore`` (rules, dedup, outage counting, the changelog values, the hot subjects); each caller
batch's by-DID bundles through ``core.did_items`` and the DID ``StageCore`` in batches of
``did_batch_records``. Tables are dictionaries, alerts and forwards are kept in memory.

Why: a drain's events/s moves 10-30% between rounds on a shared 2-core machine (bench/README.md), so a change
of a few percent to the core cannot be seen there. Here the rounds of one invocation move 3-5%; the machine's
own speed still moved ~25% between invocations minutes apart (2026-12-08), so compare two builds by alternating
invocations (``--json``, one checkout each), several pairs, and read the pairs' ratios. The
baseline is the same code interpreted (``BINDWATCH_NATIVE=off``, a child process), so the ratio says what
mypyc's build gives; the cycle collector is set as the worker sets it (``stream.app``: everything loaded frozen,
the threshold of ``BINDWATCH_GC_THRESHOLD``'s default).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench import workload
from schemas import decode
from schemas.alerts import Alert
from schemas.events import BindingFailureFacts
from stream import bundle, native
from stream import core as core_items
from stream.config import StreamSettings
from stream.core import BundleForwarder, StageCore
from stream.counting import StageCounter
from stream.intake import Record
from stream.metrics import StreamMetrics
from stream.rules import Kind, Policy
from tests.support.tables import MemoryTable

PARTITIONS = 8
RUN = 500
"""Records of one partition handed over at once (about what one fetch gives per partition in a drain)."""
EVENTS_TOPIC = "events"
BY_DID_TOPIC = "by-did"


class Message:
    """What the stages read of a fetched record (aiokafka's ``ConsumerRecord`` as Faust hands it over)."""

    __slots__ = ("generation_id", "key", "offset", "partition", "timestamp", "topic", "tracked", "value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes, ts: float) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key, self.value, self.timestamp = key, value, ts
        self.generation_id, self.tracked = 1, False


class Alerts:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, alerts: Sequence[Alert]) -> None:
        self.sent += len(alerts)


def wall_ms() -> int:
    return int(time.time() * 1000)


def backlog(n: int, tag: str) -> list[Message]:
    """The drains' workload (``bench.workload.backlog``), keyed and partitioned as the gateway writes it, in
    runs of ``RUN`` records per partition."""
    parts: list[list[Message]] = [[] for _ in range(PARTITIONS)]
    for key, value, ts, _headers in workload.backlog(n, tag):
        p = bundle.partition_for(key.decode(), PARTITIONS)
        parts[p].append(Message(EVENTS_TOPIC, p, len(parts[p]), key, value, ts / 1000))
    out: list[Message] = []
    for start in range(0, max(len(part) for part in parts), RUN):
        for part in parts:
            out.extend(part[start : start + RUN])
    return out


async def drain(messages: list[Message], s: StreamSettings) -> dict[str, Any]:
    """Both stages over ``messages``; seconds each stage's batches took, and what came out."""
    metrics, policy = StreamMetrics(), Policy()
    forwarded: list[Message] = []
    offsets = [0] * PARTITIONS

    async def send(partition: int, value: bytes) -> None:
        forwarded.append(Message(BY_DID_TOPIC, partition, offsets[partition], None, value, time.time()))
        offsets[partition] += 1

    alerts = Alerts()
    common: dict[str, Any] = {"metrics": metrics, "partitions": PARTITIONS, "hot_subjects": s.hot_subjects}
    caller = StageCore(
        Kind.CALLER,
        MemoryTable(PARTITIONS),
        alerts,
        policy,
        wall_ms,
        forwarder=BundleForwarder(send, PARTITIONS),
        counter=StageCounter(Kind.CALLER, wall_ms),
        **common,
    )
    did = StageCore(
        Kind.DID, MemoryTable(PARTITIONS), alerts, policy, wall_ms, counter=StageCounter(Kind.DID, wall_ms), **common
    )
    seconds = {"caller": 0.0, "did": 0.0}
    items = {"caller": 0, "did": 0}
    refused: list[str] = []

    def caller_decode(raw: bytes) -> BindingFailureFacts | None:
        return decode(BindingFailureFacts, raw)

    def invalid(exc: ValueError) -> None:
        refused.append(str(exc))

    for start in range(0, len(messages), s.batch_size):
        records = [Record(m) for m in messages[start : start + s.batch_size]]
        t0 = time.perf_counter()
        batch = core_items.caller_items(records, "caller-ticks", caller_decode, lambda: None)
        await caller.process(batch)
        t1 = time.perf_counter()
        items["caller"] += len(batch)
        bundles, forwarded[:] = list(forwarded), []
        for j in range(0, len(bundles), s.did_batch_records):
            did_batch = core_items.did_items(
                [Record(m) for m in bundles[j : j + s.did_batch_records]], "did-ticks", invalid
            )
            items["did"] += len(did_batch)
            await did.process(did_batch)
        t2 = time.perf_counter()
        seconds["caller"] += t1 - t0
        seconds["did"] += t2 - t1
    if refused:
        raise RuntimeError(f"the DID stage refused {len(refused)} bundles: {refused[:3]}")
    return {"seconds": seconds, "items": items, "alerts": alerts.sent}


def measure(n: int, rounds: int) -> dict[str, Any]:
    """``rounds`` drains of one backlog of ``n`` events in this process (fresh cores and tables each round):
    the best round's µs per event of each stage."""
    s = StreamSettings()
    messages = backlog(n, "stages")
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(s.gc_threshold, gen1, gen2)
    runs = [asyncio.run(drain(messages, s)) for _ in range(rounds)]
    best = min(runs, key=lambda r: r["seconds"]["caller"] + r["seconds"]["did"])
    per = {stage: round(sec / n * 1e6, 2) for stage, sec in best["seconds"].items()}
    return {
        "compiled": native.running_compiled(),
        "events": n,
        "rounds": rounds,
        "us_per_event": {**per, "both": round(per["caller"] + per["did"], 2)},
        "all_rounds_us": [round((r["seconds"]["caller"] + r["seconds"]["did"]) / n * 1e6, 2) for r in runs],
        "items": best["items"],
        "alerts": best["alerts"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stages")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print this process's figures as JSON (the baseline's way)")
    args = ap.parse_args(argv)
    if args.events < 1 or args.rounds < 1:
        ap.error("--events and --rounds must be at least 1")
    ours = measure(args.events, args.rounds)
    if args.json:
        print(json.dumps(ours))
        return 0
    if not ours["compiled"]:
        print(f"bench.stages: the compiled core is not in use ({native.STATUS.reason}); run scripts/bootstrap.sh")
        return 1
    env = {**os.environ, "BINDWATCH_NATIVE": "off"}
    argv_ = [sys.executable, "-m", "bench.stages", "--json", "--events", str(args.events), "--rounds", str(args.rounds)]
    base = json.loads(subprocess.run(argv_, env=env, check=True, capture_output=True, text=True).stdout)
    print(f"both stages in one process, {args.events} events, best of {args.rounds} rounds (µs per event):")
    print("| stage | compiled | source (baseline) | ratio compiled/source |")
    print("|---|---:|---:|---:|")
    for stage in ("caller", "did", "both"):
        a, b = ours["us_per_event"][stage], base["us_per_event"][stage]
        print(f"| {stage} | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    print(f"every round, compiled: {ours['all_rounds_us']}; source: {base['all_rounds_us']}")
    print(f"items: {ours['items']}, alerts: {ours['alerts']} (source: {base['items']}, {base['alerts']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
