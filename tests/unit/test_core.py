"""The stage core (stream/core.py) without a broker: the crash-ordering invariant, by crashing a run at
every step in turn and replaying from the last commit.

The doubles model what a worker's crash (SIGKILL) leaves behind: alerts that reached the alert topic stay
there, acknowledged or not; table writes and forwards sit in the producer's buffer until the commit
flushes them, and a crash may lose either, both or neither of them (all four are run);
the offsets are those of the last commit. Whatever the step, replaying must end with exactly the table a
run without a crash writes (nothing lost, nothing counted twice) and every alert of that run on the topic.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from schemas import Alert
from schemas.alerts import AlertStatus, Rule
from stream import bundle, rules
from stream.core import BundleForwarder, Item, StageCore, rows_in
from stream.metrics import StreamMetrics
from stream.rules import Failure, Kind, Policy, SubjectState

P = Policy()
NOW = 1_790_000_000_000
T0 = 1_774_782_000_000


class Crash(Exception):
    """The worker dies here."""


class Plan:
    """Numbers the steps of a run and crashes before step ``at`` (never if None); keeps a journal."""

    def __init__(self, at: int | None = None) -> None:
        self.at = at
        self.n = 0
        self.journal: list[str] = []

    def step(self, name: str) -> None:
        if self.n == self.at:
            raise Crash(name)
        self.n += 1
        self.journal.append(name)


@dataclass
class World:
    """What survives a crash: the input topic, the committed offset, the changelog, the output topics."""

    events: list[tuple[str, Failure, str]]  # (caller, failure as the caller sees it, did)
    committed: int = 0
    changelog: dict[str, bytes] = field(default_factory=dict)
    alert_topic: list[Alert] = field(default_factory=list)
    by_did: list[bundle.Entry] = field(default_factory=list)


class FakeTable:
    """Restored from the changelog at start; writes reach the changelog only when flushed."""

    partitions = 8

    def __init__(self, world: World, plan: Plan) -> None:
        self.world = world
        self.plan = plan
        self.data = dict(world.changelog)
        self.pending: list[tuple[str, bytes | None]] = []

    def get(self, key: str, where: Any) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes, where: Any) -> None:
        self.plan.step("table.set")
        self.data[key] = value
        self.pending.append((key, value))

    def delete(self, key: str, where: Any) -> None:
        self.plan.step("table.delete")
        del self.data[key]
        self.pending.append((key, None))

    def items(self, partition: int | None = None) -> Iterable[tuple[str, bytes]]:
        return rows_in(self.data.items(), partition, self.partitions)

    async def written(self) -> None:
        """The records are sent and acknowledged: they are on the changelog."""
        self.plan.step("table.written")
        self.flush()

    def flush(self) -> None:
        for key, value in self.pending:
            if value is None:
                self.world.changelog.pop(key, None)
            else:
                self.world.changelog[key] = value
        self.pending.clear()


class FakeAlerts:
    """Each alert reaches the topic as it is sent; the acknowledgement comes after the last one."""

    def __init__(self, world: World, plan: Plan) -> None:
        self.world = world
        self.plan = plan

    async def send(self, alerts: Sequence[Alert]) -> None:
        for a in alerts:
            self.plan.step("alert.send")
            self.world.alert_topic.append(a)
        self.plan.step("alert.ack")


class FakeForwards:
    """The by-DID producer: records reach the topic when flushed."""

    def __init__(self, world: World, plan: Plan) -> None:
        self.world = world
        self.plan = plan
        self.pending: list[bundle.Entry] = []

    async def send(self, partition: int, value: bytes) -> None:
        self.plan.step("forward")
        self.pending += bundle.decode(value)

    def flush(self) -> None:
        self.world.by_did += self.pending
        self.pending.clear()


async def run_callers(world: World, plan: Plan, sent: tuple[bool, bool] = (False, False), batch: int = 5) -> bool:
    """A caller-stage worker from the last commit to the end of the input; False if it crashed. ``sent``:
    whether the buffered table writes, and the buffered forwards, reached the broker before the crash."""
    table = FakeTable(world, plan)
    forwards = FakeForwards(world, plan)
    core = StageCore(
        Kind.CALLER, table, FakeAlerts(world, plan), P, lambda: NOW, forwarder=BundleForwarder(forwards.send, 4)
    )
    try:
        while world.committed < len(world.events):
            chunk = world.events[world.committed : world.committed + batch]
            items = [Item(caller, None, f, forward=bundle.Entry(did, caller, f.ts, f.rid)) for caller, f, did in chunk]
            await core.process(items)
            plan.step("commit")  # Faust flushes the producer, then commits the offsets
            table.flush()
            forwards.flush()
            world.committed += len(chunk)
    except Crash:
        if sent[0]:
            table.flush()
        if sent[1]:
            forwards.flush()
        return False
    return True


def the_input() -> list[tuple[str, Failure, str]]:
    """Four callers: a retrier (caller_repeat + pair_repeat), a scanner, a quiet one, a storm; with retries
    of earlier pushes (NXCLOUD re-sends) scattered through."""
    out: list[tuple[str, Failure, str]] = []
    for i in range(4):
        out.append(("c-retry", Failure(T0 + i * 1000, f"r{i}", "d-1"), "d-1"))
        out.append(("c-scan", Failure(T0 + i * 1000, f"s{i}", f"d-{i + 2}"), f"d-{i + 2}"))
    out.append(("c-scan", Failure(T0 + 9000, "s9", "d-9"), "d-9"))
    out.append(("c-quiet", Failure(T0, "q0", "d-1"), "d-1"))
    out += [("c-storm", Failure(T0 + i * 100, f"x{i}", "d-7"), "d-7") for i in range(8)]
    retries = [out[0], out[3], out[9], out[12]]
    return [*out[:6], retries[0], *out[6:14], *retries[1:], *out[14:]]


def alert_ids(alerts: Iterable[Alert]) -> Counter[str]:
    return Counter(a.alertId for a in alerts)


def reference() -> tuple[World, list[str]]:
    world = World(the_input())
    plan = Plan()
    assert asyncio.run(run_callers(world, plan))
    return world, plan.journal


def test_the_reference_run_counts_each_push_once_and_fires_every_rule() -> None:
    world, _ = reference()
    distinct: dict[str, set[str]] = {}
    for caller, f, _did in world.events:
        distinct.setdefault(caller, set()).add(f.rid)
    got = {k: {f.rid for f in SubjectState.load(v).events} for k, v in world.changelog.items()}
    assert got == distinct
    assert {a.rule for a in world.alert_topic} == {Rule.CALLER_REPEAT, Rule.PAIR_REPEAT, Rule.CALLER_SCAN}
    assert len(alert_ids(world.alert_topic)) == len(world.alert_topic)  # no alert twice without a crash
    assert sorted(e.rid for e in world.by_did) == sorted(f.rid for _c, f, _d in world.events)


def test_each_batch_acknowledges_alerts_then_writes_tables_then_forwards_then_commits() -> None:
    _, journal = reference()
    order = {"alert.send": 0, "alert.ack": 1, "table.set": 2, "table.written": 3, "forward": 4, "commit": 5}
    batches = "|".join(journal).split("|commit")
    assert len(batches) == -(-len(the_input()) // 5) + 1 and batches[-1] == ""
    assert all(b.count("alert.ack") == 1 for b in batches[:-1])
    for b in batches[:-1]:
        steps = [order[s] for s in b.strip("|").split("|")] + [5]
        assert steps == sorted(steps), b
        assert "table.set" in b and b.count("table.written") == 1 and "forward" in b


STEPS = len(reference()[1])


SENT = {
    "all-lost": (False, False),
    "table-sent": (True, False),
    "forwards-sent": (False, True),
    "all-sent": (True, True),
}


@pytest.mark.parametrize("sent", list(SENT.values()), ids=list(SENT))
@pytest.mark.parametrize("at", range(STEPS))
def test_a_crash_at_any_step_loses_nothing_and_counts_nothing_twice(at: int, sent: tuple[bool, bool]) -> None:
    want, journal = reference()
    world = World(the_input())
    plan = Plan(at)
    assert not asyncio.run(run_callers(world, plan, sent))
    assert asyncio.run(run_callers(world, Plan())), "the replay must not crash"
    # Exactly the reference table: every push counted once, the same alert states.
    assert world.changelog == want.changelog, f"crash before step {at} ({journal[at]})"
    # Every alert of the reference reached the topic; a re-sent one carries the same alertId.
    assert set(alert_ids(world.alert_topic)) == set(alert_ids(want.alert_topic))
    # Every push reached the DID stage at least once, and the DID stage counts each once.
    assert {e.rid for e in world.by_did} == {f.rid for _c, f, _d in world.events}
    assert did_counts(world.by_did) == did_counts(want.by_did)


def did_counts(entries: list[bundle.Entry]) -> dict[str, int]:
    """Run the DID stage (no crash) over the forwarded entries, in bundles of 4."""
    world = World([])
    plan = Plan()
    table = FakeTable(world, plan)
    core = StageCore(Kind.DID, table, FakeAlerts(world, plan), P, lambda: NOW)
    for i in range(0, len(entries), 4):
        asyncio.run(core.process([Item(e.did, None, Failure(e.ts, e.rid, e.caller)) for e in entries[i : i + 4]]))
    return {k: len(SubjectState.load(v).events) for k, v in table.data.items()}


class BlockingAlerts:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[Alert] = []

    async def send(self, alerts: Sequence[Alert]) -> None:
        self.sent += alerts
        await self.release.wait()


def test_no_table_write_before_the_alerts_are_acknowledged() -> None:
    async def run() -> tuple[int, int, int]:
        world = World([])
        table = FakeTable(world, Plan())
        sink = BlockingAlerts()
        core = StageCore(Kind.CALLER, table, sink, P, lambda: NOW)
        items = [Item("c", None, Failure(T0 + i, f"r{i}", "d")) for i in range(3)]
        task = asyncio.create_task(core.process(items))
        await asyncio.sleep(0.05)
        waiting = (len(sink.sent), len(table.pending) + len(world.changelog))
        sink.release.set()
        await asyncio.wait_for(task, 5)
        return (*waiting, len(world.changelog))

    assert asyncio.run(run()) == (1, 0, 1)  # pair_repeat sent; the one write only after the ack


def test_a_failing_alert_producer_leaves_the_table_untouched() -> None:
    class Failing:
        async def send(self, alerts: Sequence[Alert]) -> None:
            if alerts:
                raise ConnectionError("broker gone")

    table = FakeTable(World([]), Plan())
    core = StageCore(Kind.CALLER, table, Failing(), P, lambda: NOW)
    with pytest.raises(ConnectionError):
        asyncio.run(core.process([Item("c", None, Failure(T0 + i, f"r{i}", "d")) for i in range(3)]))
    assert table.data == {} and core.due == {}


def test_each_subject_is_read_and_written_once_per_batch() -> None:
    reads: Counter[str] = Counter()

    class CountingTable(FakeTable):
        def get(self, key: str, where: Any) -> bytes | None:
            reads[key] += 1
            return super().get(key, where)

    world = World([])
    plan = Plan()
    table = CountingTable(world, plan)
    core = StageCore(Kind.CALLER, table, FakeAlerts(world, plan), P, lambda: NOW)
    items = [Item(c, None, Failure(T0 + i, f"{c}{i}", "d")) for i in range(6) for c in ("a", "b")]
    asyncio.run(core.process(items))
    assert reads == {"a": 1, "b": 1} and plan.journal.count("table.set") == 2


def test_ticks_resolve_quiet_subjects_then_delete_them_after_the_horizon() -> None:
    clock = [NOW]
    world = World([])
    plan = Plan()
    table = FakeTable(world, plan)
    core = StageCore(Kind.DID, table, FakeAlerts(world, plan), P, lambda: clock[0])
    asyncio.run(core.process([Item("d", None, Failure(T0 + i, f"r{i}", f"c{i}")) for i in range(5)]))
    assert [a.status for a in world.alert_topic] == [AlertStatus.FIRING] and "d" in core.due
    quiet = P.resolve_after_ms(P.did_hot)
    assert core.take_due(NOW + quiet - 1) == []
    clock[0] = NOW + quiet
    assert core.take_due(clock[0]) == ["d"] and core.due == {}
    asyncio.run(core.process([Item("d", None)]))
    assert [a.status for a in world.alert_topic] == [AlertStatus.FIRING, AlertStatus.RESOLVED]
    assert not SubjectState.load(table.data["d"]).is_firing()
    h = P.horizon_ms(Kind.DID)
    assert core.collectable(NOW + h, 100) == []
    clock[0] = NOW + h + 1
    assert core.collectable(clock[0], 100) == ["d"]
    asyncio.run(core.process([Item("d", None)]))
    assert table.data == {} and plan.journal[-2:] == ["table.delete", "table.written"]
    asyncio.run(core.process([Item("d", None)]))  # a tick for a subject already gone changes nothing
    assert table.data == {}


def test_rebuild_due_finds_the_firing_subjects_of_a_restored_table() -> None:
    world = World([])
    plan = Plan()
    table = FakeTable(world, plan)
    first = StageCore(Kind.CALLER, table, FakeAlerts(world, plan), P, lambda: NOW)
    asyncio.run(first.process([Item("c", None, Failure(T0 + i, f"r{i}", "d")) for i in range(3)]))
    asyncio.run(first.process([Item("q", None, Failure(T0, "q0", "d"))]))
    restored = StageCore(Kind.CALLER, table, FakeAlerts(world, plan), P, lambda: NOW)
    restored.rebuild_due()
    assert restored.due == {"c": NOW + min(P.resolve_after_ms(s) for s in P.specs(Kind.CALLER))}


def test_describe_answers_the_query_api() -> None:
    world = World([])
    plan = Plan()
    table = FakeTable(world, plan)
    core = StageCore(Kind.CALLER, table, FakeAlerts(world, plan), P, lambda: NOW)
    asyncio.run(core.process([Item("c", None, Failure(T0 + i, f"r{i}", "de"[i % 2])) for i in range(3)]))
    body = core.describe(table.data["c"], "caller")
    assert (body["caller"], body["retainedFailures"], body["lastRequestId"]) == ("c", 3, "r2")
    assert body["lastFailureAt"] == "2026-03-29T11:00:00.002000Z"
    assert [(f["requestId"], f["other"]) for f in body["failures"]] == [("r2", "d"), ("r1", "e"), ("r0", "d")]
    assert body["failures"][0]["at"] == body["lastFailureAt"]
    assert body["windows"]["caller_repeat"]["count"] == 3
    assert {a["rule"] for a in body["activeAlerts"]} == {"caller_repeat"}
    assert all(a["fingerprint"] == rules.fingerprint(Rule(a["rule"]), "c", a["did"]) for a in body["activeAlerts"])


def test_a_batch_counts_each_event_once_per_result_in_the_metrics() -> None:
    """The core counts a batch's events per result and adds each count once (a labelled ``inc`` per event took a
    lock each time): the totals are per event all the same."""
    from tests.unit.test_hot_subjects import T0, Alerts, Table

    metrics = StreamMetrics()
    core = StageCore(Kind.CALLER, Table(), Alerts(), Policy(), lambda: T0 + 600_000, metrics=metrics)
    f = [Failure(T0 + i, f"r{i}", "x") for i in range(3)]
    asyncio.run(
        core.process([Item("a", None, f[0]), Item("a", None, f[0]), Item("b", None, f[1]), Item("a", None, f[2])])
    )
    asyncio.run(core.process([Item("b", None, f[1])]))
    sample = metrics.registry.get_sample_value
    assert sample("bindwatch_stream_events_total", {"stage": "caller", "result": "new"}) == 3
    assert sample("bindwatch_stream_events_total", {"stage": "caller", "result": "duplicate"}) == 2
