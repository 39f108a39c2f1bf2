"""The outage counts in the stage core: a crash at any step, with any prefix of the batch's table writes on
the changelog, never loses or double-counts a failure (the counts are written before the subjects).

Reuses the crash harness of ``tests/unit/test_core.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from stream import bundle
from stream.core import Item, StageCore
from stream.counting import StageCounter, counts_key
from stream.outage import PartitionCounts
from stream.rules import Kind, SubjectState
from tests.unit.test_core import T0, Crash, FakeAlerts, FakeTable, P, Plan, World, the_input

NOW = T0 + 120_000  # the input is recent: its minutes are within the retained range


async def run(world: World, plan: Plan, reach: int | None = None, batch: int = 5) -> bool:
    """A caller-stage worker with outage counting, from the last commit; False if it crashed. ``reach``: how
    many of the pending table writes (in order) reached the changelog before the crash (None: all)."""
    table = FakeTable(world, plan)
    core = StageCore(
        Kind.CALLER, table, FakeAlerts(world, plan), P, lambda: NOW, counter=StageCounter(Kind.CALLER, lambda: NOW)
    )
    try:
        while world.committed < len(world.events):
            start = world.committed
            chunk = world.events[start : start + batch]
            items = [
                Item(c, None, f, bundle.Entry(d, c, f.ts, f.rid), partition=0, offset=start + i, action="queryAXB")
                for i, (c, f, d) in enumerate(chunk)
            ]
            await core.process(items)
            plan.step("commit")
            table.flush()
            world.committed += len(chunk)
    except Crash:
        table.pending = table.pending[: len(table.pending) if reach is None else reach]
        table.flush()
        return False
    return True


def counts(world: World) -> PartitionCounts:
    return PartitionCounts.load(world.changelog[counts_key(0)])


def reference() -> tuple[World, int]:
    world, plan = World(the_input()), Plan()
    assert asyncio.run(run(world, plan))
    return world, len(plan.journal)


def test_the_counts_are_the_input_deduplicated() -> None:
    world, _ = reference()
    c = counts(world)
    rids = [f.rid for _c, f, _d in world.events]
    assert sum(m.new for m in c.minutes.values()) == len(set(rids))
    assert sum(m.dup for m in c.minutes.values()) == len(rids) - len(set(rids))
    assert c.offset == len(rids) - 1 and c.since_ts is not None and c.since_ts <= T0


@pytest.mark.parametrize("reach", [0, 1, 2, 3, None])
@pytest.mark.parametrize("at", range(reference()[1]))
def test_a_crash_at_any_step_counts_each_failure_once(at: int, reach: int | None) -> None:
    want, _ = reference()
    world = World(the_input())
    assert not asyncio.run(run(world, Plan(at), reach))
    assert asyncio.run(run(world, Plan())), "the replay must not crash"
    assert counts(world) == counts(want), f"crash before step {at}, {reach} writes kept"
    assert world.changelog == want.changelog


def test_firing_alerts_per_rule_and_partition_match_the_states_and_survive_a_restart() -> None:
    world = World(the_input())
    plan = Plan()
    table = FakeTable(world, plan)
    core = StageCore(Kind.CALLER, table, FakeAlerts(world, plan), P, lambda: NOW)
    items = [Item(c, None, f, bundle.Entry(d, c, f.ts, f.rid)) for c, f, d in world.events]
    asyncio.run(core.process(items))
    want: dict[int, dict[str, int]] = {}
    for key, value in table.data.items():
        for a in SubjectState.load(value).alerts.values():
            if a.firing:
                per = want.setdefault(bundle.partition_for(key, 4), {})
                per[a.rule.value] = per.get(a.rule.value, 0) + 1
    assert want and core.firing_counts(4) == want
    restarted = StageCore(Kind.CALLER, table, FakeAlerts(world, plan), P, lambda: NOW)
    restarted.rebuild_due()
    assert restarted.firing_counts(4) == want


def test_a_restarted_core_rebuilds_the_top_10_from_the_subjects() -> None:
    fresh = World(the_input())
    live = StageCounter(Kind.CALLER, lambda: NOW)
    table = FakeTable(fresh, Plan())
    core = StageCore(Kind.CALLER, table, FakeAlerts(fresh, Plan()), P, lambda: NOW, counter=live, partitions=1)
    items = [
        Item(c, None, f, bundle.Entry(d, c, f.ts, f.rid), partition=0, offset=i)
        for i, (c, f, d) in enumerate(fresh.events)
    ]
    asyncio.run(core.process(items))
    want = live.top(0).top(NOW)
    assert want
    rebuilt = StageCounter(Kind.CALLER, lambda: NOW)
    alerts = FakeAlerts(fresh, Plan())
    restarted = StageCore(Kind.CALLER, core.table, alerts, P, lambda: NOW, counter=rebuilt, partitions=1)
    restarted.rebuild_due()
    assert rebuilt.top(0).top(NOW) == want
    # the first batch or partial loads the partition's counts: the top 10 stays
    rebuilt.get(0, lambda key: table.get(key, None))
    assert rebuilt.top(0).top(NOW) == want


def test_with_outage_detection_off_the_stage_counts_nothing_and_counts_subjects_the_same() -> None:
    """BINDWATCH_OUTAGE_DETECTION=false gives the stages no counter: no reserved counts key is written, and the
    subjects' states are exactly those of a run with counting on (the per-number rules do not depend on it)."""
    on, _ = reference()
    world, plan = World(the_input()), Plan()
    table = FakeTable(world, plan)
    core = StageCore(Kind.CALLER, table, FakeAlerts(world, plan), P, lambda: NOW)

    async def drain() -> None:
        for start in range(0, len(world.events), 5):
            chunk = world.events[start : start + 5]
            items = [
                Item(c, None, f, bundle.Entry(d, c, f.ts, f.rid), partition=0, offset=start + i, action="queryAXB")
                for i, (c, f, d) in enumerate(chunk)
            ]
            await core.process(items)
            table.flush()

    asyncio.run(drain())
    assert counts_key(0) not in world.changelog
    subjects_on = {k: SubjectState.load(v).events for k, v in on.changelog.items() if k != counts_key(0)}
    subjects_off = {k: SubjectState.load(v).events for k, v in world.changelog.items()}
    assert subjects_off == subjects_on and subjects_off
