"""Decoded subjects kept between batches (``StageCore.hot_subjects``) change nothing but the speed: a core
that keeps them and one that reads and decodes every subject from the table in every batch emit the same
alerts and leave the same table, for any batches of failures, duplicates and ticks (hypothesis), including
when the kept subjects are evicted, forgotten at a rebalance, or a batch fails half-way."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stream.core
from schemas import Alert
from stream.core import Item, StageCore, rows_in
from stream.rules import Failure, Kind, Policy

P = Policy()
T0 = 1_774_782_000_000
MINUTE = 60_000


class Table:
    partitions = 8

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.reads = 0

    def get(self, key: str, where: Any) -> bytes | None:
        self.reads += 1
        return self.data.get(key)

    def set(self, key: str, value: bytes, where: Any) -> None:
        self.data[key] = value

    def delete(self, key: str, where: Any) -> None:
        self.data.pop(key, None)

    def items(self, partition: int | None = None) -> Iterable[tuple[str, bytes]]:
        return rows_in(self.data.items(), partition, self.partitions)

    async def written(self) -> None:
        pass


class Alerts:
    def __init__(self) -> None:
        self.sent: list[Alert] = []
        self.fail_next = False

    async def send(self, alerts: Sequence[Alert]) -> None:
        if self.fail_next and alerts:
            self.fail_next = False
            raise ConnectionError("broker gone")
        self.sent += alerts


def core(kind: Kind, hot: int, clock: list[int]) -> tuple[StageCore, Table, Alerts]:
    table, alerts = Table(), Alerts()
    return StageCore(kind, table, alerts, P, lambda: clock[0], hot_subjects=hot), table, alerts


# One step: a batch of (subject, minute offset, requestId number, other) failures or (subject, None, ...) ticks,
# then how far the wall clock moves, whether the core forgets (a rebalance), whether the alert producer fails.
item_st = st.tuples(
    st.sampled_from(["a", "b", "c", "d"]),
    st.one_of(st.none(), st.integers(0, 40)),
    st.integers(0, 30),
    st.sampled_from(["x", "y", "z"]),
)
step_st = st.tuples(
    st.lists(item_st, min_size=1, max_size=12),
    st.integers(0, 20 * MINUTE),
    st.booleans(),
    st.booleans(),
)


def items_of(batch: list[tuple[str, int | None, int, str]]) -> list[Item]:
    return [
        Item(key, None) if minute is None else Item(key, None, Failure(T0 + minute * MINUTE, f"r{rid}", other))
        for key, minute, rid, other in batch
    ]


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(list(Kind)), hot=st.integers(1, 3), steps=st.lists(step_st, max_size=12))
def test_keeping_subjects_decoded_changes_no_alert_and_no_table_value(
    kind: Kind, hot: int, steps: list[tuple[list[tuple[str, int | None, int, str]], int, bool, bool]]
) -> None:
    clock = [T0 + 10 * MINUTE]
    kept, kept_table, kept_alerts = core(kind, hot, clock)
    plain, plain_table, plain_alerts = core(kind, 0, clock)

    async def run() -> None:
        for batch, advance, rebalance, fail in steps:
            items = items_of(batch)
            results = []
            for c, a in ((kept, kept_alerts), (plain, plain_alerts)):
                a.fail_next = fail
                try:
                    await c.process(items)
                    results.append(True)
                except ConnectionError:
                    results.append(False)
            assert results[0] == results[1]
            if rebalance:
                kept.forget()
            assert kept_table.data == plain_table.data
            clock[0] += advance

    asyncio.run(run())
    assert [a.model_dump() for a in kept_alerts.sent] == [a.model_dump() for a in plain_alerts.sent]


def test_a_subject_seen_again_is_not_read_from_the_table_until_forgotten() -> None:
    clock = [T0 + 10 * MINUTE]
    c, table, _ = core(Kind.CALLER, 10, clock)

    async def run() -> list[int]:
        reads = []
        for i in range(3):
            await c.process([Item("a", None, Failure(T0 + i * 1000, f"r{i}", "d"))])
            reads.append(table.reads)
        c.forget()
        await c.process([Item("a", None, Failure(T0 + 5000, "r5", "d"))])
        reads.append(table.reads)
        return reads

    assert asyncio.run(run()) == [1, 1, 1, 2]


def test_a_failed_batch_keeps_nothing_the_table_does_not_hold() -> None:
    clock = [T0 + 10 * MINUTE]
    c, table, alerts = core(Kind.CALLER, 10, clock)

    async def run() -> bytes | None:
        await c.process([Item("a", None, Failure(T0, "r0", "d"))])
        before = table.data["a"]
        alerts.fail_next = True
        with pytest.raises(ConnectionError):  # two more: caller_repeat and pair_repeat fire, their send fails
            await c.process([Item("a", None, Failure(T0 + i, f"r{i}", "d")) for i in (1, 2)])
        assert table.data["a"] == before
        await c.process([Item("a", None, Failure(T0 + 3, "r3", "d"))])  # read back from the table
        return table.data["a"]

    after = asyncio.run(run())
    assert after is not None and table.reads == 2


@pytest.mark.parametrize(("budget", "reads"), [(0, [2, 4, 6]), (10**9, [2, 2, 2])])
def test_the_kept_subjects_stay_within_the_byte_budget(
    monkeypatch: pytest.MonkeyPatch, budget: int, reads: list[int]
) -> None:
    monkeypatch.setattr(stream.core, "HOT_VALUE_BYTES", budget)
    clock = [T0 + 10 * MINUTE]
    c, table, _ = core(Kind.CALLER, 10, clock)

    async def run() -> list[int]:
        out = []
        for i in range(3):
            await c.process([Item(k, None, Failure(T0 + i * 1000, f"{k}{i}", "d")) for k in ("a", "b")])
            out.append(table.reads)
        return out

    assert asyncio.run(run()) == reads
    assert c._hot_bytes == sum(len(table.data[k]) for k in c._hot) <= budget
