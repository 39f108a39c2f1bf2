"""The outage counts of one stage's partitions on this worker (``stream.outage``), kept in the stage's own table.

Each partition's ``PartitionCounts`` is stored under the reserved key ``~counts:<partition>`` (numbers are
digits only, so no subject can have it) in the partition of that partition's records: its changelog record
goes to the same changelog partition as the partition's subjects, where Kafka keeps their order.
``StageCore`` writes it before the batch's subjects (see ``stream.outage``: why a crash never counts twice).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream.outage import Partial, PartitionCounts, RecentTop
from stream.rules import Kind

RESERVED_PREFIX = "~"
OUTAGE_TABLE = "outage"
"""The aggregator's one-partition table (key ``global``): the outage rule's state."""


def counts_key(partition: int) -> str:
    return f"{RESERVED_PREFIX}counts:{partition}"


def is_reserved(key: str) -> bool:
    """True for keys that hold no subject (scans of the subjects skip them)."""
    return key.startswith(RESERVED_PREFIX)


class StageCounter:
    """Per owned partition: the counts (persisted) and the top 10 of the last 10 minutes (in memory)."""

    def __init__(self, kind: Kind, clock: Callable[[], int]) -> None:
        self.kind = kind
        self.clock = clock
        self.counts: dict[int, PartitionCounts] = {}
        self.tops: dict[int, RecentTop] = {}

    def get(self, partition: int, read: Callable[[str], bytes | None]) -> PartitionCounts:
        """The partition's counts: in memory, else from the table, else new (knowledge begins now)."""
        c = self.counts.get(partition)
        if c is None:
            raw = read(counts_key(partition))
            c = PartitionCounts.load(raw) if raw else PartitionCounts(self.kind, partition, since_ts=self.clock())
            self.counts[partition] = c
            # not a new top 10: the index rebuild (``StageCore.begin_rebuild``) may have filled it already
            self.top(partition).advance(self.clock())
        return c

    def top(self, partition: int) -> RecentTop:
        top = self.tops.get(partition)
        if top is None:  # not ``setdefault``: it would build a RecentTop for every failure counted
            top = self.tops[partition] = RecentTop()
        return top

    def partials(
        self,
        now: int,
        partitions: set[int] | None = None,
        firing: dict[int, dict[str, int]] | None = None,
        unindexed: set[int] | frozenset[int] = frozenset(),
    ) -> list[Partial]:
        """One partial per partition held (or per partition in ``partitions``: new, empty ones for those not
        seen yet, so the aggregator hears from every partition), with its firing alerts per rule; for those
        in ``unindexed`` (the index rebuild has not read them yet) counts only."""
        keys = set(self.counts) if partitions is None else partitions
        out = []
        for p in sorted(keys):
            c = self.counts.get(p) or PartitionCounts(self.kind, p, since_ts=now)
            if p in unindexed:
                out.append(c.partial(now, indexed=False))
            else:
                out.append(c.partial(now, self.top(p).top(now), (firing or {}).get(p, {})))
        return out

    def forget_counts(self) -> None:
        """Read every partition's counts from the table again (at a rebalance: another worker may have counted
        meanwhile). The top 10s are the index's: ``StageCore.begin_rebuild`` drops those it cannot keep."""
        self.counts.clear()


def where_reader(get: Callable[[str, Any], bytes | None], where: Any) -> Callable[[str], bytes | None]:
    return lambda key: get(key, where)
