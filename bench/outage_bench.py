"""CPU cost of the outage counting (stream/outage.py) per event, as a ratio to the per-subject rules alone.

In process, no broker: the same events go through ``stream.rules.apply`` for the caller and the DID stage
(the baseline: what each stage does per event today, without Faust and Kafka), and again with the outage
counting the stages will add (``neighbours`` + ``PartitionCounts.count`` + ``RecentTop.add``), plus one partial
per partition and stage every 5 s of event time and the aggregator merging them. Runs alternate, best of
``rounds``. The stream worker's full per-event cost (Faust, Kafka, RocksDB) is far larger than the baseline
here, so the ratio is a lower bound for the end-to-end throughput ratio.
"""

from __future__ import annotations

import random
import time
from typing import Any

from stream import outage, rules
from stream.bundle import partition_for
from stream.rules import Failure, Kind, Policy, SubjectState

PARTITIONS = 8
PUBLISH_MS = 5_000


def events(n: int, seed: int = 7) -> list[tuple[int, str, str, str]]:
    """(ts, rid, caller, did) at 2,500 events/s of event time (about one worker's measured drain rate, so a
    partial every 5 s covers as many events as it would in the worker), 3,000 callers (a few busy ones),
    800 DIDs, 2% retries."""
    rnd = random.Random(seed)
    t0 = 1_800_000_000_000
    out = []
    for i in range(n):
        caller = f"8526{rnd.randrange(3000):05d}" if rnd.random() < 0.9 else f"8521{rnd.randrange(30):05d}"
        did = f"8529{rnd.randrange(800):05d}"
        ts = t0 + i * 2 // 5
        out.append((ts, f"r{i}", caller, did))
        if rnd.random() < 0.02:
            out.append((ts, f"r{i}", caller, did))  # an NXCLOUD retry
    return out


def _run(items: list[tuple[int, str, str, str]], counting: bool) -> float:
    policy = Policy()
    states: dict[tuple[Kind, str], SubjectState] = {}
    counts = {k: [outage.PartitionCounts(k, p) for p in range(PARTITIONS)] for k in Kind}
    tops = {k: [outage.RecentTop() for _ in range(PARTITIONS)] for k in Kind}
    agg = outage.Aggregate()
    partition: dict[str, int] = {}  # the worker knows it from the record; keep murmur2 out of the measure
    next_publish = items[0][0] + PUBLISH_MS
    start = time.process_time()
    for offset, (ts, rid, caller, did) in enumerate(items):
        now = ts + 500
        for kind, subject, other in ((Kind.CALLER, caller, did), (Kind.DID, did, caller)):
            state = states.get((kind, subject))
            if state is None:
                state = states[(kind, subject)] = SubjectState(kind, subject)
            f = Failure(ts, rid, other)
            out = rules.apply(state, f, now, policy)
            if counting:
                p = partition.get(subject, -1)
                if p < 0:
                    p = partition[subject] = partition_for(subject, PARTITIONS)
                near = outage.neighbours(state.events, f) if out.counted else []
                c = counts[kind][p]
                c.count(ts, out.reason, "queryAXB", near, now, state.floor_ts)
                c.advance(offset)
                if out.counted:
                    tops[kind][p].add(subject, ts)
        if counting and now >= next_publish:
            next_publish += PUBLISH_MS
            for kind in Kind:
                for p in range(PARTITIONS):
                    agg.merge(counts[kind][p].partial(now, tops[kind][p].top(now)))
            agg.evaluate(now, outage.OutagePolicy(), PARTITIONS)
    return time.process_time() - start


def measure(n: int, rounds: int = 3) -> dict[str, Any]:
    items = events(n)
    plain, counted = [], []
    for _ in range(rounds):
        plain.append(_run(items, False))
        counted.append(_run(items, True))
    base, withc = min(plain), min(counted)
    return {
        "events": len(items),
        "rules_only_us_per_event": round(base / len(items) * 1e6, 2),
        "with_counting_us_per_event": round(withc / len(items) * 1e6, 2),
        "added_us_per_event": round((withc - base) / len(items) * 1e6, 2),
        "ratio_throughput": round(base / withc, 4),
        "rounds": rounds,
    }


def outage_counting(ctx: Any) -> dict[str, Any]:
    """The benchmark entry (``python -m bench outage_counting``): 200,000 events (quick 30,000)."""
    return measure(int(ctx.pick(200_000, 30_000)))


if __name__ == "__main__":
    import sys

    print(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 30_000))
