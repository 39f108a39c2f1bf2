"""Overview documents as the workers' aggregator builds them (the real ``stream.outage`` code, not a copy)."""

from __future__ import annotations

from schemas.overview import Overview
from stream import outage, rules


def overview_doc(now_ms: int, *, busy: bool = True, partitions: int = 2) -> Overview:
    """A document built from real partials: ``busy`` gives every minute failures and ten top callers."""
    agg = outage.Aggregate()
    if busy:
        minute = now_ms // 60_000
        for kind in rules.Kind:
            for p in range(partitions):
                counts = outage.PartitionCounts(kind, p, 100 + p, now_ms - 2000, since_ts=now_ms - 7_200_000)
                for back in range(0, 60, 3):
                    counts.minutes[minute - back] = outage.Minute(10 + back, 1, 15, {"queryAXB": 10 + back})
                agg.merge(counts.partial(now_ms, [(f"8521{p}{i:04d}", 20 - i) for i in range(10)], {"did_hot": p}))
    return agg.overview(now_ms, outage.OutagePolicy(), partitions, 30_000)
