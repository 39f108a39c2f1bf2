"""``stream.restore.BulkRestore`` against a consumer double: what it applies, where it stops, the offsets it
leaves for Faust's recovery. (Against a real broker and RocksDB: ``tests/integration/test_restore.py``.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition

from stream.restore import BulkRestore

A = TopicPartition("app-callers-changelog", 0)
B = TopicPartition("app-callers-changelog", 1)


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class FakeConsumer:
    """Serves each partition's records from its position, ``per_fetch`` at a time; a gap in the offsets stands
    for a compacted record."""

    logs: dict[TopicPartition, list[Rec]]
    per_fetch: int = 2
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    """Log end offsets (default: after the last record)."""
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    fetches: int = 0
    started: bool = False
    stopped: bool = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(tps, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Rec]]:
        self.fetches += 1
        out = {}
        for tp in tps:
            recs = [r for r in self.logs[tp] if r.offset >= self.positions[tp]][: self.per_fetch]
            if recs:
                out[tp] = recs
                self.positions[tp] = recs[-1].offset + 1
            else:
                end = self.ends.get(tp, max([r.offset + 1 for r in self.logs[tp]], default=0))
                self.positions[tp] = max(self.positions[tp], end)
        return out


@dataclass
class Table:
    applied: list[tuple[int, int, bytes | None, bytes | None]] = field(default_factory=list)
    batches: int = 0

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        self.batches += 1
        for ev in batch:
            m = ev.message
            assert ev.key == m.key and ev.value == m.value and m.tp == (m.topic, m.partition)
            self.applied.append((m.partition, m.offset, m.key, m.value))


def log_of(tp: TopicPartition, offsets: Iterable[int]) -> list[Rec]:
    return [Rec(tp.topic, tp.partition, o, f"k{o}".encode(), None if o % 5 == 4 else f"v{o}".encode()) for o in offsets]


def run(restore: BulkRestore, offsets: dict[Any, int | None], highwaters: dict[Any, int | None], tables: Any) -> Any:
    return asyncio.run(restore.load(offsets, highwaters, tables, asyncio.Event()))


def test_applies_every_record_after_the_persisted_offset_up_to_the_high_water_mark() -> None:
    consumer = FakeConsumer({A: log_of(A, range(10)), B: log_of(B, range(7))})
    table = Table()
    offsets: dict[Any, int | None] = {A: 2, B: None}
    # A record written after Faust measured the mark (offset 9 of A) is left to Faust's own recovery.
    out = run(BulkRestore("x", 60, consumer_factory=lambda: consumer), offsets, {A: 8, B: 6}, {A: table, B: table})
    assert sorted(table.applied) == sorted(
        [(0, o, f"k{o}".encode(), None if o % 5 == 4 else f"v{o}".encode()) for o in range(3, 9)]
        + [(1, o, f"k{o}".encode(), None if o % 5 == 4 else f"v{o}".encode()) for o in range(7)]
    )
    assert offsets == {A: 8, B: 6}
    assert out.records == 13 and out.finished
    assert consumer.stopped


def test_per_partition_order_is_kept_and_tombstones_pass_as_none() -> None:
    consumer = FakeConsumer({A: log_of(A, range(12))}, per_fetch=5)
    table = Table()
    run(BulkRestore("x", 60, consumer_factory=lambda: consumer), {A: -1}, {A: 11}, {A: table})
    assert [o for _p, o, _k, _v in table.applied] == list(range(12))
    assert [v for _p, o, _k, v in table.applied if o % 5 == 4] == [None, None]
    assert table.batches == 3


def test_nothing_to_do_opens_no_consumer() -> None:
    made: list[FakeConsumer] = []

    def factory() -> FakeConsumer:
        made.append(FakeConsumer({}))
        return made[-1]

    offsets: dict[Any, int | None] = {A: 5, B: None}
    out = run(BulkRestore("x", 60, consumer_factory=factory), offsets, {A: 5, B: -1}, {A: Table(), B: Table()})
    assert out.records == 0 and out.finished and not made and offsets == {A: 5, B: None}


def test_a_mark_without_a_record_at_it_ends_the_partition() -> None:
    # Offsets 5..9 were compacted away (or 9 is a control record): the consumer's position passes the mark.
    consumer = FakeConsumer({A: log_of(A, range(5))}, ends={A: 10})
    offsets: dict[Any, int | None] = {A: None}
    out = run(BulkRestore("x", 60, consumer_factory=lambda: consumer), offsets, {A: 9}, {A: Table()})
    assert out.finished and out.records == 5 and offsets == {A: 9}


@pytest.mark.parametrize("why", ["budget", "rebalance"])
def test_stops_early_leaving_offsets_at_what_was_applied(why: str) -> None:
    consumer = FakeConsumer({A: log_of(A, range(100))}, per_fetch=10)
    table = Table()
    stop = asyncio.Event()
    ticks = iter(range(1000))

    def clock() -> float:  # one tick per check: the budget of 3.5 allows the first three fetches
        return float(next(ticks))

    budget = 3.5 if why == "budget" else 1000

    class Stopping(FakeConsumer):
        async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int) -> dict[Any, list[Rec]]:
            if self.fetches == 3 and why == "rebalance":
                stop.set()
            return await super().getmany(*tps, timeout_ms=timeout_ms, max_records=max_records)

    c = Stopping(consumer.logs, per_fetch=10)
    offsets: dict[Any, int | None] = {A: None}
    out = asyncio.run(
        BulkRestore("x", budget, clock=clock, consumer_factory=lambda: c).load(offsets, {A: 99}, {A: table}, stop)
    )
    assert not out.finished and c.stopped
    n = len(table.applied)
    assert 0 < n < 100 and n % 10 == 0
    assert offsets == {A: n - 1}  # Faust's recovery starts right after the last applied record
    assert [o for _p, o, _k, _v in table.applied] == list(range(n))
