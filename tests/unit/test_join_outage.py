"""Per-number alerts that fired before a binding outage was known join it (issue 18: one problem, one alert).

An outage is detected only once its 5-minute total crosses the threshold, and the workers hear of it up to
one publish interval later: the per-number alerts of its first minutes went out without its fingerprint,
and Alertmanager's inhibition (``equal: [outage]``) could not mute them. At the subject's next tick, every
firing alert whose episode began within the outage's window is re-emitted with the fingerprint, once; an
alert that began before the window is another problem and keeps speaking.
"""

from __future__ import annotations

import asyncio

from schemas.alerts import AlertStatus, Rule
from stream import rules, state
from stream.core import Item, StageCore
from stream.outage import MINUTE_MS, WINDOW_MINUTES, OutageRef
from stream.rules import Failure, Kind, Policy, SubjectState
from tests.unit.test_core import FakeAlerts, FakeTable, Plan, World

P = Policy()
FIRED = 1_790_000_000_000 - 1_790_000_000_000 % MINUTE_MS + 30_000  # wall clock, mid-minute
WINDOW = (FIRED // MINUTE_MS - WINDOW_MINUTES + 1) * MINUTE_MS
OUT = OutageRef.fired_at("binding_outage:0123456789abcdef0123", FIRED)


def firing_pair(first_ts: int) -> SubjectState:
    s = SubjectState(Kind.CALLER, "8521")
    for i in range(3):
        rules.apply(s, Failure(first_ts + i * 1000, f"r{i}", "8529"), FIRED - 60_000, P)
    assert s.is_firing()
    return s


def test_the_window_is_the_five_minutes_the_outage_fired_on() -> None:
    assert OUT.window_start_ms == WINDOW == (FIRED // MINUTE_MS - 4) * MINUTE_MS


def test_an_alert_of_the_window_joins_once_with_a_new_id() -> None:
    s = firing_pair(WINDOW + 1000)
    before = {k: (a.seq, a.episode) for k, a in s.alerts.items()}
    joined = rules.join_outage(s, OUT.fingerprint, OUT.window_start_ms, FIRED, P)
    assert [a.rule for a in joined] == [Rule.PAIR_REPEAT]
    [a] = joined
    assert a.status is AlertStatus.FIRING and a.count == 3
    key = rules._key(Rule.PAIR_REPEAT, "8529")
    assert s.alerts[key].seq == before[key][0] + 1 and s.alerts[key].episode == before[key][1]
    assert s.alerts[key].outage == OUT.fingerprint
    assert rules.join_outage(s, OUT.fingerprint, OUT.window_start_ms, FIRED + 5000, P) == []  # once


def test_an_alert_that_began_before_the_window_keeps_speaking() -> None:
    s = firing_pair(WINDOW - 60_000)
    assert rules.join_outage(s, OUT.fingerprint, OUT.window_start_ms, FIRED, P) == []


def test_a_resolved_alert_does_not_join() -> None:
    s = firing_pair(WINDOW + 1000)
    rules.tick(s, FIRED + P.resolve_after_ms(P.pair_repeat), P)
    assert not s.is_firing()
    assert rules.join_outage(s, OUT.fingerprint, OUT.window_start_ms, FIRED + 10**7, P) == []


def test_a_later_outage_is_joined_again() -> None:
    s = firing_pair(WINDOW + 1000)
    rules.join_outage(s, OUT.fingerprint, OUT.window_start_ms, FIRED, P)
    assert len(rules.join_outage(s, "binding_outage:other", OUT.window_start_ms, FIRED + 1, P)) == 1


def test_the_outage_an_alert_joined_survives_the_table() -> None:
    s = firing_pair(WINDOW + 1000)
    rules.join_outage(s, OUT.fingerprint, OUT.window_start_ms, FIRED, P)
    again = state.load(state.dump(s))
    assert {k: a.outage for k, a in again.alerts.items()} == {k: a.outage for k, a in s.alerts.items()}
    assert rules.join_outage(again, OUT.fingerprint, OUT.window_start_ms, FIRED + 1, P) == []


def test_a_value_without_the_field_reads_as_not_joined() -> None:
    s = firing_pair(WINDOW + 1000)
    assert b'"ou"' not in state.dump(s)  # absent unless joined: older workers read it unchanged
    assert all(a.outage is None for a in state.load(state.dump(s)).alerts.values())


def core_with(ref: list[OutageRef | None]) -> tuple[StageCore, World, FakeTable]:
    world = World([])
    plan = Plan()
    table = FakeTable(world, plan)
    core = StageCore(Kind.CALLER, table, FakeAlerts(world, plan), P, lambda: FIRED, firing_outage=lambda: ref[0])
    return core, world, table


def test_the_core_joins_at_the_next_tick_and_stamps_the_update() -> None:
    ref: list[OutageRef | None] = [None]
    core, world, table = core_with(ref)
    fails = [Item("8521", None, Failure(WINDOW + 1000 + i, f"r{i}", "8529")) for i in range(3)]
    asyncio.run(core.process(fails))
    assert [(a.rule, a.outageFingerprint) for a in world.alert_topic] == [(Rule.PAIR_REPEAT, None)]
    ref[0] = OUT
    asyncio.run(core.process([Item("8521", None)]))  # the tick the timer sends when the outage fires
    assert [(a.rule, a.status, a.outageFingerprint) for a in world.alert_topic[1:]] == [
        (Rule.PAIR_REPEAT, AlertStatus.FIRING, OUT.fingerprint)
    ]
    assert world.alert_topic[1].alertId != world.alert_topic[0].alertId
    asyncio.run(core.process([Item("8521", None)]))  # a second tick: nothing more
    assert len(world.alert_topic) == 2
    assert SubjectState.load(table.data["8521"]).alerts[rules._key(Rule.PAIR_REPEAT, "8529")].outage == OUT.fingerprint


def test_an_alert_emitted_during_the_outage_is_not_sent_again_at_the_tick() -> None:
    core, world, _table = core_with([OUT])
    asyncio.run(core.process([Item("8521", None, Failure(WINDOW + 1000 + i, f"r{i}", "8529")) for i in range(3)]))
    assert [a.outageFingerprint for a in world.alert_topic] == [OUT.fingerprint]
    asyncio.run(core.process([Item("8521", None)]))
    assert len(world.alert_topic) == 1


def test_the_did_stage_joins_too() -> None:
    world = World([])
    plan = Plan()
    table = FakeTable(world, plan)
    ref: list[OutageRef | None] = [None]
    core = StageCore(Kind.DID, table, FakeAlerts(world, plan), P, lambda: FIRED, firing_outage=lambda: ref[0])
    asyncio.run(core.process([Item("8529", None, Failure(WINDOW + i, f"r{i}", f"852{i}")) for i in range(5)]))
    ref[0] = OUT
    asyncio.run(core.process([Item("8529", None)]))
    assert [(a.rule, a.outageFingerprint) for a in world.alert_topic] == [
        (Rule.DID_HOT, None),
        (Rule.DID_HOT, OUT.fingerprint),
    ]
