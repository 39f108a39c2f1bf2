"""The index rebuild beside the batches (``StageCore.begin_rebuild`` / ``rebuild_step``, issue 17): a worker that
takes over partitions counts and answers at once, and rebuilds its index of firing subjects (due times, firing
rules, the outage top 10s) a slice at a time between batches. Whatever the interleaving, the index it ends with
equals the one of a worker that rebuilt everything first and then ran the same batches (hypothesis)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from stream import bundle
from stream.core import Item, StageCore
from stream.counting import StageCounter
from stream.outage import MINUTE_MS
from stream.rules import Failure, Kind, Policy
from tests.unit.test_hot_subjects import Alerts, Table

P = Policy()
NOW = 1_790_000_000_000
PARTITIONS = 8
CALLERS = [f"8613{n:07d}" for n in (11, 23, 37, 41, 59, 61, 73, 89, 97, 103, 127, 131)]
"""Spread over the 8 partitions (murmur2 of the key), several to a partition."""


def make_core(table: Table, hot: int = 0) -> StageCore:
    counter = StageCounter(Kind.CALLER, lambda: NOW)
    return StageCore(
        Kind.CALLER, table, Alerts(), P, lambda: NOW, counter=counter, partitions=PARTITIONS, hot_subjects=hot
    )


# (caller index, minutes before NOW, requestId number, DID) or a tick (minutes None)
event_st = st.tuples(
    st.integers(0, len(CALLERS) - 1),
    st.one_of(st.none(), st.integers(0, 14)),
    st.integers(0, 400),
    st.sampled_from(["d1", "d2", "d3", "d4"]),
)


def items_of(events: Sequence[tuple[int, int | None, int, str]], first_offset: int) -> list[Item]:
    out = []
    for i, (c, minutes, rid, did) in enumerate(events):
        key = CALLERS[c]
        if minutes is None:
            out.append(Item(key, None))  # a tick: no partition, as the app's ticks carry none
            continue
        f = Failure(NOW - minutes * MINUTE_MS, f"r{rid}", did)
        p = bundle.partition_for(key, PARTITIONS)
        out.append(Item(key, None, f, bundle.Entry(did, key, f.ts, f.rid), partition=p, offset=first_offset + i))
    return out


def index_of(core: StageCore) -> tuple[object, ...]:
    assert core.counter is not None
    tops = {p: (t.totals, t.by_minute) for p, t in core.counter.tops.items() if t.totals}
    return dict(core.due), dict(core.firing), tops, core.firing_counts(PARTITIONS)


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(event_st, max_size=60),
    batches=st.lists(st.lists(event_st, min_size=1, max_size=8), max_size=8),
    slices=st.lists(st.integers(0, 4), min_size=8, max_size=8),
    held=st.sets(st.integers(0, PARTITIONS - 1), min_size=1),
    prev=st.sets(st.integers(0, PARTITIONS - 1)),
    hot=st.integers(0, 3),
)
def test_an_index_rebuilt_beside_the_batches_equals_one_rebuilt_before_them(
    before: list[tuple[int, int | None, int, str]],
    batches: list[list[tuple[int, int | None, int, str]]],
    slices: list[int],
    held: set[int],
    prev: set[int],
    hot: int,
) -> None:
    """``prev``: partitions this worker held and indexed before the rebalance, unchanged since; those it holds
    again keep their index (a rebalance that moves nothing reads nothing)."""
    # the previous owner's table; the new owner holds the partitions in ``held``
    previous = Table()
    asyncio.run(make_core(previous).process(items_of(before, 0)))
    kept = {k: v for k, v in previous.data.items() if k.startswith("~") or bundle.partition_for(k, PARTITIONS) in held}
    mine = [[e for e in b if bundle.partition_for(CALLERS[e[0]], PARTITIONS) in held] for b in batches]
    offsets = [1000 + 100 * i for i in range(len(mine))]

    first = Table()
    first.data = dict(kept)
    reference = make_core(first)
    reference.rebuild_due()
    beside = Table()
    beside.data = dict(kept)
    core = make_core(beside, hot)
    core.begin_rebuild(prev)
    while not core.rebuild_step(3):
        pass
    core.begin_rebuild(held, keep=prev)
    assert core.rebuilding == bool(held - prev)
    assert core.indexed_partitions() == held & prev

    async def run() -> None:
        for i, batch in enumerate(mine):
            for _ in range(slices[i]):
                core.rebuild_step(1 + i % 3)  # slices of 1 to 3 subjects: the pass stops anywhere
            await core.process(items_of(batch, offsets[i]))
            await reference.process(items_of(batch, offsets[i]))
        while not core.rebuild_step(2):
            pass

    asyncio.run(run())
    assert not core.rebuilding and core.indexed_partitions() == held
    assert beside.data == first.data
    assert index_of(core) == index_of(reference)


def test_partitions_report_indexed_as_the_pass_reads_them() -> None:
    table = firing_table()  # each caller fires caller_repeat
    core = make_core(table)
    held = sorted({bundle.partition_for(c, PARTITIONS) for c in CALLERS})
    core.begin_rebuild(held)
    assert core.pending_partitions() == len(held) and not core.firing
    seen = []
    while not core.rebuild_step(1):
        seen.append(sum(core.indexed(p) for p in held))
    assert seen == sorted(seen) and seen[0] == 0  # partitions complete one after another, in order
    assert len(core.firing) == len(CALLERS) and core.pending_partitions() == 0


def test_a_revoke_abandons_the_rebuild_and_the_next_starts_afresh() -> None:
    table = firing_table()
    core = make_core(table)
    core.begin_rebuild(range(PARTITIONS))
    core.rebuild_step(5)
    core.stop_rebuild()
    assert not core.rebuilding and core.rebuild_step(5)
    core.begin_rebuild(range(PARTITIONS))
    assert not core.firing  # what the abandoned pass indexed is gone: the partitions may have moved
    while not core.rebuild_step(3):
        pass
    reference = make_core(table)
    reference.rebuild_due()
    assert index_of(core) == index_of(reference)


class CountingTable(Table):
    """Records which partitions the pass reads."""

    def __init__(self) -> None:
        super().__init__()
        self.read: list[int] = []

    def items(self, partition: int | None = None) -> list[tuple[str, bytes]]:
        if partition is not None:
            self.read.append(partition)
        return list(super().items(partition))


def firing_table() -> CountingTable:
    """The table of a previous owner whose every caller fires caller_repeat."""
    previous = Table()
    events = [(c, 1, 100 * k + c, "d1") for k in range(3) for c in range(len(CALLERS))]
    asyncio.run(make_core(previous).process(items_of(events, 0)))
    table = CountingTable()
    table.data = dict(previous.data)
    return table


def test_a_rebalance_reads_only_the_partitions_not_kept() -> None:
    table = firing_table()
    core = make_core(table)
    core.begin_rebuild(range(4))
    while not core.rebuild_step(100):
        pass
    assert table.read == [0, 1, 2, 3]
    table.read.clear()
    # partitions 0 and 1 stay unchanged, 2 was written by another worker meanwhile, 3 moved away, 4 and 5 came
    core.begin_rebuild({0, 1, 2, 4, 5}, keep={0, 1, 3})
    while not core.rebuild_step(100):
        pass
    assert table.read == [2, 4, 5]
    reference = make_core(table)
    reference.begin_rebuild({0, 1, 2, 4, 5})
    while not reference.rebuild_step(100):
        pass
    assert index_of(core) == index_of(reference)
    assert all(bundle.partition_for(k, PARTITIONS) != 3 for k in core.firing)  # what moved away is forgotten


def test_a_partition_the_abandoned_pass_had_not_finished_is_never_kept() -> None:
    table = firing_table()
    core = make_core(table)
    core.begin_rebuild(range(PARTITIONS))
    core.rebuild_step(1)  # partition 0 is being read
    core.stop_rebuild()
    assert core.indexed_partitions() == set()
    core.begin_rebuild(range(PARTITIONS), keep=range(PARTITIONS))
    assert core.pending_partitions() == PARTITIONS


def test_a_slice_stops_at_its_time_budget() -> None:
    table = Table()
    many = [f"8613{n:07d}" for n in range(400)]
    items = [Item(c, None, Failure(NOW - MINUTE_MS, f"r{i}", "d1")) for i, c in enumerate(many)]
    asyncio.run(make_core(table).process(items))
    core = make_core(table)
    core.begin_rebuild(range(PARTITIONS))
    assert not core.rebuild_step(seconds=0.0)  # stops at the first time check (32 subjects)
    assert core.rebuild_step(seconds=10.0)  # as the worker calls it: no count bound
