"""Table tests of outage detection and the overview (stream/outage.py): no Faust, no Kafka, explicit clocks.

``Sim`` plays the workers and the aggregator the way the Faust layer will: per-subject dedup gives each
failure's verdict, each partition of each stage counts its own subjects and sends absolute partials every 10 s,
the aggregator merges them and applies the rule.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.alerts import Alert, AlertStatus, Rule, Severity
from stream import outage, rules
from stream.bundle import partition_for
from stream.outage import (
    MINUTE_MS,
    Aggregate,
    OutagePolicy,
    Partial,
    PartitionCounts,
    RecentTop,
    Verdict,
    minute_of,
)
from stream.rules import Failure, Kind, Policy, SubjectState

P = OutagePolicy()
T0 = int(datetime(2026, 11, 29, 8, 0, tzinfo=UTC).timestamp() * 1000)  # minute-aligned wall clock
STEP_MS = 10_000  # publish and evaluate every 10 s


def at(minutes: float) -> int:
    return T0 + int(minutes * MINUTE_MS)


@dataclass
class Sim:
    partitions: int = 2
    policy: OutagePolicy = P
    counts: dict[Kind, list[PartitionCounts]] = field(default_factory=dict)
    tops: dict[Kind, list[RecentTop]] = field(default_factory=dict)
    seen: dict[tuple[Kind, str], dict[str, int]] = field(default_factory=dict)  # the per-subject dedup
    minutes: dict[tuple[Kind, str], dict[int, int]] = field(default_factory=dict)  # its failures per minute
    offsets: dict[tuple[Kind, int], int] = field(default_factory=dict)
    agg: Aggregate = field(default_factory=Aggregate)
    alerts: list[Alert] = field(default_factory=list)
    next_rid: int = 0

    def __post_init__(self) -> None:
        # counting starts at T0 (wall clock) in every partition
        self.counts = {k: [PartitionCounts(k, p, since_ts=T0) for p in range(self.partitions)] for k in Kind}
        self.tops = {k: [RecentTop() for _ in range(self.partitions)] for k in Kind}

    def fail(self, ts: int, caller: str, did: str, now: int, action: str | None = "queryAXB", rid: str = "") -> None:
        if not rid:
            rid = f"r{self.next_rid}"
            self.next_rid += 1
        for kind, subject in ((Kind.CALLER, caller), (Kind.DID, did)):
            p = partition_for(subject, self.partitions)
            mine = self.seen.setdefault((kind, subject), {})
            per_minute = self.minutes.setdefault((kind, subject), {})
            verdict = Verdict.DUPLICATE if rid in mine else Verdict.NEW
            k = minute_of(ts)
            others = [m * MINUTE_MS for m in per_minute if abs(m - k) < outage.WINDOW_MINUTES]
            if verdict is Verdict.NEW:
                mine[rid] = ts
                per_minute[k] = per_minute.get(k, 0) + 1
                self.tops[kind][p].add(subject, ts)
            offset = self.offsets.get((kind, p), 0)
            self.offsets[(kind, p)] = offset + 1
            c = self.counts[kind][p]
            c.count(ts, verdict, action, others, now)
            c.advance(offset)

    def publish(self, now: int) -> list[Alert]:
        for kind in Kind:
            for p in range(self.partitions):
                top = self.tops[kind][p].top(now)
                self.agg.merge(self.counts[kind][p].partial(now, top, {}))
        out = self.agg.evaluate(now, self.policy, self.partitions)
        self.alerts += out
        return out

    def run(self, start: float, end: float, per_minute: Callable[[int], Iterable[tuple[str, str]]]) -> None:
        """Wall clock from ``start`` to ``end`` minutes; in each minute ``i`` the failures ``per_minute(i)``,
        spread evenly, each pushed at its occurrence time; publish every 10 s."""
        now = at(start)
        pending: list[tuple[int, str, str]] = []
        for i in range(int(start), int(end)):
            items = list(per_minute(i))
            pending += [(at(i) + j * MINUTE_MS // max(1, len(items)), c, d) for j, (c, d) in enumerate(items)]
        pending.sort()
        while now < at(end):
            now += STEP_MS
            while pending and pending[0][0] < now:
                ts, c, d = pending.pop(0)
                self.fail(ts, c, d, now)
            self.publish(now)

    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.status is AlertStatus.FIRING]


def quiet(i: int) -> list[tuple[str, str]]:
    """4 failures a minute from 4 of 20 callers on 20 DIDs: a 5-minute total of 20."""
    return [(f"8521000{(4 * i + j) % 20:02d}", f"8529000{(4 * i + j) % 20:02d}") for j in range(4)]


def burst(callers: int, dids: int, minutes: int, per_caller: int = 1) -> Callable[[int], list[tuple[str, str]]]:
    """``callers`` distinct callers over ``dids`` DIDs, each failing ``per_caller`` times, spread over
    ``minutes`` minutes (the issue's outage: 300 callers over 40 DIDs within 3 minutes)."""
    items = [(f"8526{c:05d}", f"8527{c % dids:05d}") for _ in range(per_caller) for c in range(callers)]
    size = -(-len(items) // minutes)
    return lambda i: items[i * size : (i + 1) * size]


def baseline_then(spike: Callable[[int], list[tuple[str, str]]], spike_minutes: int, sim: Sim | None = None) -> Sim:
    sim = sim or Sim()
    sim.run(0, 65, quiet)  # a quiet hour: the baseline
    sim.run(65, 65 + spike_minutes, lambda i: quiet(i) + spike(i - 65))
    return sim


# --- firing ---------------------------------------------------------------------------------------------------
def test_quiet_baseline_then_an_outage_fires_once_with_its_figures() -> None:
    sim = baseline_then(burst(300, 40, 3), 6)
    [a] = sim.alerts
    assert (a.rule, a.status, a.severity, a.caller, a.did) == (
        Rule.BINDING_OUTAGE,
        AlertStatus.FIRING,
        Severity.WARNING,
        None,
        None,
    )
    assert a.baseline == 20.0 and a.threshold == 200  # max(200, 4 x 20)
    assert a.count >= 200 and a.distinctCallers is not None and a.distinctCallers >= 50
    assert a.distinctDids is not None and 40 <= a.distinctDids <= 60
    assert a.windowSeconds == 300 and (a.windowEnd - a.windowStart).total_seconds() == 300
    assert a.sampleRequestIds == [] and a.outageFingerprint is None
    assert a.fingerprint.startswith("binding_outage:") and a.fingerprint == sim.agg.outage_fingerprint()
    fired_at = a.emittedAt.timestamp() * 1000
    assert at(66) < fired_at <= at(67.5)  # the 200th failure of the burst came at 67:00


def test_the_quiet_hour_alone_never_fires_and_its_figures_are_exact() -> None:
    sim = Sim()
    sim.run(0, 65, quiet)
    assert sim.alerts == []
    fig = sim.agg.figures(at(65) - 1)
    # minute 64 is the current one and has its 4 failures; the window is minutes 60..64
    assert (fig.failures, fig.baseline) == (20, 20.0)
    assert fig.callers == 20 and fig.dids == 20  # 5 minutes x 4 distinct of 20
    over = sim.agg.overview(at(65) - 1, P, 2, 30_000)
    assert [m.newFailures for m in over.minutes] == [4] * 60
    assert over.outage.status == "quiet" and over.outage.threshold == 200


NO_FIRE_CASES = [
    # (name, spike per minute after the quiet hour, minutes)
    ("below the floor: 150 callers once each", burst(150, 40, 3), 6),
    ("25 callers, 10 failures each: 45 callers with the quiet ones", burst(25, 25, 3, per_caller=10), 6),
    ("one scanner at 1,000 failures a minute", lambda i: [("85255555555", f"8528{j:05d}") for j in range(1000)], 6),
    ("29 callers at 100 a minute: 49 in all", lambda i: [(f"8524{c:05d}", f"8523{c:05d}") for c in range(29)] * 100, 4),
]


@pytest.mark.parametrize(("name", "spike", "minutes"), NO_FIRE_CASES, ids=[c[0] for c in NO_FIRE_CASES])
def test_no_outage(name: str, spike: Callable[[int], list[tuple[str, str]]], minutes: int) -> None:
    sim = baseline_then(spike, minutes)
    assert sim.alerts == []
    fig = sim.agg.figures(at(65 + minutes) - 1)
    assert fig.failures > 0  # the spike was counted, it just is no outage


def test_a_busy_baseline_raises_the_threshold_above_the_floor() -> None:
    """Baseline 100 a minute (500 per 5 minutes): 300 extra failures do not fire, 2,000 do (threshold 2,000)."""

    def busy(i: int) -> list[tuple[str, str]]:
        return [(f"8521{(100 * i + j) % 500:05d}", f"8529{j:05d}") for j in range(100)]

    sim = baseline_then(burst(300, 40, 3), 6, Sim())
    assert len(sim.alerts) == 1  # the control: the same burst fires over a quiet hour
    sim = Sim()
    sim.run(0, 65, busy)
    # from a cold start: 500 failures in 5 minutes from 500 callers, but the past is unknown, not quiet
    assert sim.alerts == [] and sim.agg.figures(at(65) - 1).baseline_windows == 56  # ending at 4..59
    sim.run(65, 71, lambda i: busy(i) + burst(300, 40, 3)(i - 65))
    assert sim.alerts == [] and sim.agg.figures(at(71) - 1).baseline == 500.0
    sim.run(71, 75, lambda i: busy(i) + burst(2400, 40, 3)(i - 71))
    [a] = sim.alerts
    assert a.threshold == 2000 and a.count >= 2000


def test_no_firing_while_the_baseline_warms_up() -> None:
    policy = OutagePolicy(min_failures=10, min_callers=10)
    steady = Sim(policy=policy)  # 100 failures in 5 minutes from 20 callers, from the first minute on
    steady.run(0, 30, lambda i: [(f"85210{c}", f"85290{c}") for c in range(20)])
    assert steady.alerts == [] and steady.agg.figures(at(30) - 1).baseline_windows == 21  # ending at 4..24
    armed = Sim(policy=policy)
    armed.run(0, 22, lambda i: [])
    assert armed.agg.figures(at(23) - 1).baseline_windows == 14
    armed.run(22, 23, lambda i: [(f"85210{c}", f"85290{c}") for c in range(20)])  # evaluated 22:10 .. 23:00
    [a] = armed.alerts  # not during minute 22 (14 windows), but at 23:00 (15 windows, ending at 4..18)
    assert a.emittedAt == datetime.fromtimestamp(at(23) / 1000, tz=UTC)
    assert (a.baseline, a.threshold, a.count) == (0.0, 10, 20)


def test_history_is_known_from_event_time_so_a_new_aggregator_or_a_backfill_needs_no_warm_up() -> None:
    """The baseline's history starts where the partitions' knowledge does (``since_ts``), not when the
    aggregator started: an aggregator that moved to another worker, or workers that read an hour of pushes
    from the topic at start, judge at once."""
    sim = Sim()
    sim.counts = {k: [PartitionCounts(k, p, since_ts=at(65)) for p in range(2)] for k in Kind}  # start now
    now = at(65.5)
    for i in range(65):  # an hour of quiet pushes, all read now (a backlog)
        for j, (c, d) in enumerate(quiet(i)):
            sim.fail(at(i) + j * 15_000, c, d, now)
    for c, d in burst(300, 40, 1)(0):
        sim.fail(at(65) + 1000, c, d, now)
    [a] = sim.publish(now)
    assert (a.baseline, a.threshold) == (20.0, 200)
    assert sim.agg.figures(now).baseline_windows == 57  # windows ending at 4..60: history begins at minute 0


def test_threshold_boundary_is_inclusive() -> None:
    policy = OutagePolicy(min_failures=10, min_callers=10)
    sim = Sim(policy=policy)
    sim.run(0, 65, lambda i: [])
    sim.run(65, 66, lambda i: [(f"85210{c}", f"85290{c}") for c in range(9)])
    assert sim.alerts == []
    sim.run(66, 67, lambda i: [("852109", "852909")])  # the 10th failure, from a 10th caller
    assert len(sim.alerts) == 1 and sim.alerts[0].count == 10 and sim.alerts[0].distinctCallers == 10


# --- lifecycle ------------------------------------------------------------------------------------------------
def fig(failures: int, callers: int = 100, baseline: float = 0.0) -> outage.Figures:
    return outage.Figures(failures, callers, 40, baseline, 60, at(0), at(0), at(1))


def test_hysteresis_resolves_only_after_the_total_stayed_below_half_for_the_resolve_period() -> None:
    state = outage.OutageState()
    now = at(0)
    assert [a.status for a in outage.evaluate(state, fig(400), now, P)] == [AlertStatus.FIRING]
    assert state.level == 200
    timeline = [  # (seconds after firing, 5-minute total, what is emitted)
        (60, 150, []),  # below the threshold but not below half: still firing, no timer
        (120, 99, []),  # below half (100): the timer starts
        (400, 100, []),  # back at half: the timer is reset
        (460, 99, []),  # below half again: a new timer
        (759, 0, []),  # 299 s below half
        (760, 0, [AlertStatus.RESOLVED]),  # 300 s: resolved
        (800, 0, []),  # and only once
    ]
    for seconds, failures, expected in timeline:
        out = outage.evaluate(state, fig(failures), now + seconds * 1000, P)
        assert [a.status for a in out] == expected, seconds
        if seconds == 460:
            assert outage.next_due_ms(state, P) == now + 760_000
    assert not state.firing and outage.next_due_ms(state, P) is None


def test_severity_rise_then_repeat_interval_then_a_new_episode_after_resolution() -> None:
    state = outage.OutageState()
    now = at(0)
    [first] = outage.evaluate(state, fig(300), now, P)
    assert first.severity is Severity.WARNING
    assert outage.evaluate(state, fig(1999), now + 10_000, P) == []  # 9.995 x the level of 200
    [rise] = outage.evaluate(state, fig(2000), now + 20_000, P)
    assert (rise.severity, rise.status, rise.count, rise.threshold) == (
        Severity.CRITICAL,
        AlertStatus.FIRING,
        2000,
        200,
    )
    assert outage.evaluate(state, fig(5000), now + 30_000, P) == []
    repeat_ms = P.repeat_interval_s * 1000
    assert outage.evaluate(state, fig(5000), now + 20_000 + repeat_ms - 1, P) == []
    [again] = outage.evaluate(state, fig(5000), now + 20_000 + repeat_ms, P)
    assert again.severity is Severity.CRITICAL and again.fingerprint == first.fingerprint
    ids = {first.alertId, rise.alertId, again.alertId}
    assert len(ids) == 3
    later = now + 2 * repeat_ms
    outage.evaluate(state, fig(0), later, P)
    [resolved] = outage.evaluate(state, fig(0), later + P.resolve_s * 1000, P)
    assert resolved.status is AlertStatus.RESOLVED and resolved.fingerprint == first.fingerprint
    [second] = outage.evaluate(state, fig(300), later + 10 * repeat_ms, P)
    assert second.fingerprint != first.fingerprint and state.episode == 2 and second.severity is Severity.WARNING


def test_per_number_alerts_carry_the_outage_fingerprint_and_keep_their_ids() -> None:
    caller = SubjectState(Kind.CALLER, "852121199")
    per_number = [
        a for i in range(3) for a in rules.apply(caller, Failure(at(0) + i, f"r{i}", "d1"), at(1), Policy()).alerts
    ]
    state = outage.OutageState()
    [out] = outage.evaluate(state, fig(300), at(1), P)
    stamped = outage.with_outage([*per_number, out], state.fingerprint())
    assert [a.outageFingerprint for a in stamped] == [out.fingerprint] * len(per_number) + [None]
    assert [a.alertId for a in stamped] == [a.alertId for a in [*per_number, out]]
    assert outage.with_outage(per_number, None) == per_number and per_number[0].outageFingerprint is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 200), st.integers(0, 3000), st.integers(0, 120)), min_size=1, max_size=80))
def test_lifecycle_invariants_hold_for_any_sequence_of_figures(steps: list[tuple[int, int, int]]) -> None:
    state, now = outage.OutageState(), at(0)
    seen: list[tuple[int, int]] = []  # (time, failures) of every evaluation
    emitted: list[tuple[int, int, Alert]] = []  # (time, failures, alert)
    for dt, failures, callers in steps:
        now += dt * 1000
        seen.append((now, failures))
        emitted += [(now, failures, a) for a in outage.evaluate(state, fig(failures, callers), now, P)]
    assert len({a.alertId for _, _, a in emitted}) == len(emitted)
    episodes: dict[str, list[tuple[int, int, Alert]]] = {}
    for e in emitted:
        episodes.setdefault(e[2].fingerprint, []).append(e)
    for chain in episodes.values():
        t0, f0, first = chain[0]
        assert first.status is AlertStatus.FIRING and f0 >= first.threshold
        assert first.distinctCallers is not None and first.distinctCallers >= P.min_callers
        statuses = [a.status for _, _, a in chain]
        assert AlertStatus.RESOLVED not in statuses[:-1]  # at most one resolution, and it ends the episode
        severities = [a.severity is Severity.CRITICAL for _, _, a in chain if a.status is AlertStatus.FIRING]
        assert severities == sorted(severities)  # severity never falls within an episode
        if statuses[-1] is AlertStatus.RESOLVED:
            t_end = chain[-1][0]
            # every evaluation in the resolve period before it was below half the firing level
            period = [f for t, f in seen if t_end - P.resolve_s * 1000 <= t <= t_end]
            assert all(f * 2 < first.threshold for f in period)
            assert any(t <= t_end - P.resolve_s * 1000 for t, _ in seen if t >= t0)
    # one open episode at most: every episode but the last is resolved
    assert all(chain[-1][2].status is AlertStatus.RESOLVED for chain in list(episodes.values())[:-1])


def test_alert_ids_are_deterministic() -> None:
    def story() -> list[str]:
        s = outage.OutageState()
        out = outage.evaluate(s, fig(300), at(0), P) + outage.evaluate(s, fig(3000), at(1), P)
        return [a.alertId for a in out]

    assert story() == story() and len(set(story())) == 2


def test_an_outage_that_stops_resolves_by_wall_clock_with_no_new_failures() -> None:
    sim = baseline_then(burst(300, 40, 3), 4)
    assert len(sim.firing()) == 1
    sim.run(69, 90, lambda i: [])  # no failure at all: only the timer evaluates
    resolved = [a for a in sim.alerts if a.status is AlertStatus.RESOLVED]
    assert len(resolved) == 1 and len(sim.firing()) == 1
    # the burst was 68:00 at the latest; the total fell below 100 when minute 66 left the window (72:00),
    # so it resolves 300 s after the first evaluation below half
    assert at(77) <= resolved[0].emittedAt.timestamp() * 1000 <= at(77) + STEP_MS


def test_a_flapping_outage_stays_one_alert() -> None:
    """Waves of failures every 4 minutes: between waves the total never stays below half for 5 minutes."""
    sim = Sim()
    sim.run(0, 65, quiet)
    sim.run(65, 95, lambda i: quiet(i) + (burst(300, 40, 1)(0) if (i - 65) % 4 == 0 else []))
    assert len(sim.firing()) == 1 and [a for a in sim.alerts if a.status is AlertStatus.RESOLVED] == []


# --- event time -----------------------------------------------------------------------------------------------
def test_late_failures_count_in_their_own_minute() -> None:
    c = PartitionCounts(Kind.CALLER, 0)
    now = at(10.5)
    c.count(at(2.2), Verdict.NEW, "queryAXB", [], now)  # 8 minutes late
    c.count(at(2.7), Verdict.DUPLICATE, "queryAXB", [], now)
    c.count(at(10.1), Verdict.NEW, None, [], now)
    assert c.minutes[minute_of(at(2))].new == 1 and c.minutes[minute_of(at(2))].dup == 1
    assert c.minutes[minute_of(at(10))].actions == {"(none)": 1}
    # the late failure raised the distinct counts of the windows ending at minutes 2..6, not the current ones
    assert {m - minute_of(T0): x.distinct for m, x in c.minutes.items() if x.distinct} == {
        2: 1,
        3: 1,
        4: 1,
        5: 1,
        6: 1,
        10: 1,
        11: 1,
        12: 1,
        13: 1,
        14: 1,
    }


def test_future_stamped_failures_count_now_and_too_old_ones_not_at_all() -> None:
    c = PartitionCounts(Kind.CALLER, 0)
    now = at(100.5)
    c.count(at(107), Verdict.NEW, "a", [], now)  # a clock ahead by 7 minutes
    c.count(at(100.5 - outage.RETAIN_MINUTES), Verdict.NEW, "a", [], now)  # older than anything kept
    c.count(at(90), Verdict.TOO_LATE, "a", [], now)  # refused by the dedup: never counted
    assert {m - minute_of(T0): x.new for m, x in c.minutes.items() if x.new} == {100: 1}


def test_a_subjects_other_failures_keep_it_counted_once_per_window() -> None:
    def windows(ts: int, others: list[int], floor_ts: int | None = None) -> list[int]:
        return [j - minute_of(T0) for j in outage.distinct_windows(ts, others, floor_ts)]

    assert windows(at(10), []) == [10, 11, 12, 13, 14]
    # a failure two minutes earlier already counts in the windows ending at 10..12
    assert windows(at(10), [at(8)]) == [13, 14]
    assert windows(at(10), [at(3), at(8), at(4)]) == [13, 14]  # only the nearest one matters
    assert windows(at(10), [at(12.5), at(14)]) == [10, 11]
    assert windows(at(10), [at(8), at(12.5)]) == []
    assert windows(at(10), [at(10.9)]) == []
    assert windows(at(10), [at(16)]) == [10, 11, 12, 13, 14]
    # evicted failures up to 9:00: windows that reach back to minute 9 are taken as already counted
    assert windows(at(10), [], floor_ts=at(9)) == [14]
    assert windows(at(10), [], floor_ts=at(11)) == []


def test_a_partial_stays_far_below_kafkas_record_limit_whatever_the_actions() -> None:
    """Hostile input: every retained minute full of the longest distinct actions, and a full top 10."""
    c = PartitionCounts(Kind.CALLER, 0)
    now = at(outage.RETAIN_MINUTES)
    for minute in range(1, outage.RETAIN_MINUTES + 1):
        for i in range(outage.MAX_ACTIONS + 5):
            c.count(at(minute) - 1, Verdict.NEW, f"{i:04d}" + "x" * 500, [], now)
    top = [(f"{'9' * 20}{i}", 10**9) for i in range(10)]
    size = len(c.partial(now, top, {r.value: 10**9 for r in Rule}).encode())
    full = [m for m in c.minutes.values() if len(m.actions) == outage.MAX_ACTIONS + 1]
    assert len(full) == outage.RETAIN_MINUTES - 1 and size < 256 * 1024, size  # limit: 1 MiB


def test_an_unknown_verdict_is_refused_before_anything_changes() -> None:
    c = PartitionCounts(Kind.CALLER, 0)
    with pytest.raises(ValueError, match="unknown verdict"):
        c.count(at(1), "counted", "q", [], at(1))
    assert c == PartitionCounts(Kind.CALLER, 0)


def test_actions_are_bounded() -> None:
    c = PartitionCounts(Kind.CALLER, 0)
    for i in range(40):
        c.count(at(1), Verdict.NEW, f"action{i}", [], at(1))
    c.count(at(1), Verdict.NEW, "x" * 500, [], at(1))
    actions = c.minutes[minute_of(at(1))].actions
    assert len(actions) == 33 and actions["(other)"] == 9 and sum(actions.values()) == 41


def rules_world(
    items: list[tuple[int, str, str]], partitions: int, now: int
) -> tuple[list[PartitionCounts], list[PartitionCounts]]:
    """The real dedup (stream.rules.apply) and ``neighbours`` on its states, as the stages will call them."""
    counts = {k: [PartitionCounts(k, p) for p in range(partitions)] for k in Kind}
    states: dict[tuple[Kind, str], SubjectState] = {}
    for ts, rid, caller in items:
        did = f"d{int(caller[1:]) % 3}"
        for kind, subject, other in ((Kind.CALLER, caller, did), (Kind.DID, did, caller)):
            state = states.setdefault((kind, subject), SubjectState(kind, subject))
            f = Failure(ts, rid, other)
            out = rules.apply(state, f, now, Policy())
            near = outage.neighbours(state.events, f) if out.counted else []
            counts[kind][partition_for(subject, partitions)].count(ts, out.reason, None, near, now, state.floor_ts)
    return counts[Kind.CALLER], counts[Kind.DID]


@settings(max_examples=120, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20 * 60), st.integers(0, 7)), min_size=1, max_size=40),
    st.integers(1, 4),
    st.randoms(use_true_random=False),
)
def test_distinct_counts_add_up_exactly_whatever_the_arrival_order(
    raw: list[tuple[int, int]], partitions: int, rnd: random.Random
) -> None:
    items = [(at(0) + s * 1000, f"r{i}", f"c{c}") for i, (s, c) in enumerate(raw)]
    arrival = items + items[: len(items) // 2]  # with retries of some requestIds
    rnd.shuffle(arrival)
    now = at(30)
    callers, dids = rules_world(arrival, partitions, now)
    for minute in range(minute_of(at(0)), minute_of(at(25))):
        in_window = [(rid, c) for ts, rid, c in items if minute - 4 <= minute_of(ts) <= minute]
        want_callers = len({c for _, c in in_window})
        want_dids = len({f"d{int(c[1:]) % 3}" for _, c in in_window})
        got_callers = sum(p.minutes[minute].distinct for p in callers if minute in p.minutes)
        got_dids = sum(p.minutes[minute].distinct for p in dids if minute in p.minutes)
        assert (got_callers, got_dids) == (want_callers, want_dids), minute
    news = sum(m.new for p in callers for m in p.minutes.values())
    dups = sum(m.dup for p in callers for m in p.minutes.values())
    assert (news, dups) == (len(items), len(arrival) - len(items))


# --- partials: exact after a crash, idempotent and order-independent to merge ----------------------------------
def test_a_replay_after_a_crash_counts_each_record_once() -> None:
    records = [(i, at(1) + i * 1000, Verdict.NEW if i % 3 else Verdict.DUPLICATE) for i in range(30)]

    def feed(c: PartitionCounts, rs: list[tuple[int, int, Verdict]]) -> None:
        for offset, ts, verdict in rs:
            if not c.covers(offset):
                c.count(ts, verdict, "q", [], at(2))
                c.advance(offset)

    straight = PartitionCounts(Kind.CALLER, 3)
    feed(straight, records)
    crashed = PartitionCounts(Kind.CALLER, 3)
    feed(crashed, records[:17])
    restored = PartitionCounts.load(crashed.dump())  # what the changelog held
    feed(restored, records[9:])  # the consumer resumes from an older committed offset
    assert restored == straight and restored.offset == 29


def partial(partition: int, offset: int, sent: int, new: int, stage: Kind = Kind.CALLER) -> Partial:
    c = PartitionCounts(
        stage, partition, offset, at(1), {minute_of(at(1)): outage.Minute(new, 0, new, {"q": new})}, at(1)
    )
    return c.partial(sent, [(f"852{partition}", new)], {"caller_repeat": partition})


def test_merge_keeps_the_latest_partial_of_each_partition() -> None:
    agg = Aggregate()
    assert agg.merge(partial(0, 10, at(2), 5))
    assert not agg.merge(partial(0, 10, at(2), 5))  # the same record again
    assert not agg.merge(partial(0, 9, at(3), 4))  # an older offset, sent later (a replaying new owner)
    assert agg.merge(partial(0, 10, at(3), 5))  # same offset, fresher top 10
    assert agg.merge(partial(1, 0, at(3), 2))
    minute = minute_of(at(1))
    assert agg.totals(minute, minute)[minute].new == 7
    assert agg.firing()["caller_repeat"] == 1
    # a partition silent for the retained range is forgotten, so a restarted offset is taken again
    agg.prune(at(3) + outage.RETAIN_MINUTES * MINUTE_MS)
    assert set(agg.partials) == {"caller:0", "caller:1"}
    agg.prune(at(3) + outage.RETAIN_MINUTES * MINUTE_MS + 1)
    assert agg.partials == {} and agg.merge(partial(0, 0, at(80), 1))


def test_a_counts_only_partial_keeps_the_top_10_and_firing_counts_held() -> None:
    """A worker still rebuilding its index of a partition (``StageCore.begin_rebuild``) sends its exact counts
    without a top 10 or firing counts: the aggregator takes the counts and keeps what it held for the rest."""
    agg = Aggregate()
    assert agg.merge(partial(0, 10, at(2), 5))
    c = PartitionCounts(Kind.CALLER, 0, 12, at(1), {minute_of(at(1)): outage.Minute(7, 0, 7, {"q": 7})}, at(1))
    counts_only = c.partial(at(3), [("852999", 99)], {"caller_repeat": 9}, indexed=False)
    assert counts_only.top == () and counts_only.firing == {} and not counts_only.indexed
    assert Partial.decode(counts_only.encode()) == counts_only
    assert agg.merge(counts_only)
    minute = minute_of(at(1))
    assert agg.totals(minute, minute)[minute].new == 7  # the new counts
    assert agg.firing()["caller_repeat"] == 0 and agg.top(Kind.CALLER, at(3)) == [("8520", 5)]  # the held rest
    assert agg.partials["caller:0"].indexed
    fresh = Aggregate()  # nothing held: counts with an empty top 10, as a partition not seen yet
    assert (
        fresh.merge(counts_only)
        and fresh.top(Kind.CALLER, at(3)) == []
        and fresh.totals(minute, minute)[minute].new == 7
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50), st.integers(0, 5)), min_size=1, max_size=20),
    st.randoms(use_true_random=False),
)
def test_merging_partials_is_idempotent_and_order_independent(
    versions: list[tuple[int, int, int]], rnd: random.Random
) -> None:
    # a partition's counts grow with the offset they cover: (partition, offset, send step)
    parts = [partial(p, off, at(2) + sent * STEP_MS, off) for p, off, sent in versions]
    shuffled = parts + parts[: len(parts) // 2]
    rnd.shuffle(shuffled)
    a, b = Aggregate(), Aggregate()
    for x in parts:
        a.merge(x)
    for x in shuffled:
        b.merge(x)
    assert a.dump() == b.dump()
    latest = {
        p: max((x for x in parts if x.counts.partition == p), key=Partial.order_key) for p in {v[0] for v in versions}
    }
    minute = minute_of(at(1))
    assert b.totals(minute, minute)[minute].new == sum(x.counts.offset for x in latest.values())


def test_partial_and_aggregate_round_trip_through_bytes() -> None:
    sim = baseline_then(burst(300, 40, 3), 4)
    for p in sim.agg.partials.values():
        assert Partial.decode(p.encode()) == p
    again = Aggregate.load(sim.agg.dump())
    assert again.dump() == sim.agg.dump() and again.outage == sim.agg.outage
    small = Aggregate.load(sim.agg.dump(with_partials=False))
    assert small.partials == {} and small.outage == sim.agg.outage and not small.ready(2)
    assert PartitionCounts.load(sim.counts[Kind.CALLER][0].dump()) == sim.counts[Kind.CALLER][0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "expected a JSON object"),
        (b'{"v": 2}', "unknown version 2"),
        (b'{"v": 1, "k": "caller", "p": 0, "o": 1, "n": null, "s": null, "m": [[1, 2]]}', "minute row"),
        (b'{"v": 1, "k": "caller", "p": 0, "o": 1, "n": null, "s": null, "m": [], "t": [["852121199", "x"]]}', "top"),
        (
            b'{"v": 1, "k": "caller", "p": 0, "o": 1, "n": null, "s": null, "m": [], "t": [], "te": 1, "f": {}, '
            b'"w": 1, "x": 2}',
            "index pending",
        ),
    ],
)
def test_undecodable_partials_say_why_without_the_numbers(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Partial.decode(data)
    assert "852121199" not in str(info.value)


# --- the aggregate: readiness, top 10, overview -------------------------------------------------------------
def test_the_rule_waits_until_every_partition_has_reported() -> None:
    agg = Aggregate()
    huge = PartitionCounts(Kind.CALLER, 0, 1, at(5), {minute_of(at(5)): outage.Minute(10_000, 0, 10_000, {})}, at(-65))
    agg.merge(huge.partial(at(5.5)))
    assert not agg.ready(2) and agg.evaluate(at(5.5), P, 2) == []
    for kind, p in ((Kind.CALLER, 1), (Kind.DID, 0), (Kind.DID, 1)):
        agg.merge(PartitionCounts(kind, p).partial(at(5.5)))
    assert agg.ready(2) and len(agg.evaluate(at(5.5), P, 2)) == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 14 * 60)), min_size=1, max_size=80), st.integers(1, 5))
def test_global_top_10_is_exact(failures: list[tuple[int, int]], partitions: int) -> None:
    now = at(15)
    tops = [RecentTop() for _ in range(partitions)]
    for number, s in failures:
        tops[partition_for(f"n{number}", partitions)].add(f"n{number}", at(0) + s * 1000)
    agg = Aggregate()
    for p, top in enumerate(tops):
        agg.merge(PartitionCounts(Kind.CALLER, p).partial(now, top.top(now)))
    counts: dict[str, int] = {}
    for number, s in failures:
        if minute_of(at(0) + s * 1000) > minute_of(now) - 10:
            counts[f"n{number}"] = counts.get(f"n{number}", 0) + 1
    want = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert agg.top(Kind.CALLER, now) == want


def test_a_partitions_top_10_older_than_10_minutes_adds_nothing() -> None:
    agg = Aggregate()
    old, fresh = PartitionCounts(Kind.DID, 0), PartitionCounts(Kind.DID, 1)
    agg.merge(old.partial(at(0.5), [("85291", 50)]))
    agg.merge(fresh.partial(at(9.5), [("85292", 3)]))
    assert agg.top(Kind.DID, at(9.5)) == [("85291", 50), ("85292", 3)]  # its window (-9 .. 0) overlaps 0 .. 9
    assert agg.top(Kind.DID, at(10.5)) == [("85292", 3)]  # but not 1 .. 10


def test_overview_document() -> None:
    sim = baseline_then(burst(300, 40, 3), 4)
    now = at(69) - 1
    doc = sim.agg.overview(now, P, 2, 30_000)
    assert len(doc.minutes) == 60 and doc.minutes[-1].minute == datetime.fromtimestamp(at(68) / 1000, tz=UTC)
    assert sum(m.newFailures for m in doc.minutes) == 60 * 4 + 300  # 9:00..68:59 of the quiet feed, and the burst
    assert doc.minutes[-1].actions == {"queryAXB": doc.minutes[-1].newFailures}
    assert doc.outage.status == "firing" and doc.outage.fingerprint == sim.firing()[0].fingerprint
    assert doc.outage.firingLevel == 200 and doc.outage.severity is Severity.WARNING
    assert doc.firingAlerts == {r.value: int(r is Rule.BINDING_OUTAGE) for r in Rule}
    assert len(doc.topCallers) == 10 and len(doc.topDids) == 10
    assert doc.topDids[0].failures >= doc.topDids[-1].failures
    assert (doc.partitions.callers.reporting, doc.partitions.dids.partitions) == (2, 2)
    stale = sim.agg.overview(now + 60_000, P, 2, 30_000)
    assert stale.partitions.callers.reporting == 0  # nobody reported for a minute: say so


def test_settings_build_the_policy() -> None:
    from stream.config import StreamSettings

    s = StreamSettings(outage_min_failures=10, outage_factor=2.5, outage_min_callers=3, outage_resolve_seconds=60)
    assert s.outage_policy() == OutagePolicy(10, 2.5, 3, 60, s.critical_factor, s.repeat_interval_seconds)
    assert StreamSettings.model_construct().outage_policy() == P


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("count"),
                st.integers(0, 90),  # minutes back from now
                st.sampled_from(["new", "duplicate", "too_late"]),
                st.lists(st.integers(0, 12 * MINUTE_MS), max_size=3),  # the subject's other failures, ms back
            ),
            st.tuples(st.just("dump"), st.just(0), st.just("new"), st.just([])),
            st.tuples(st.just("prune"), st.integers(0, 30), st.just("new"), st.just([])),
        ),
        max_size=60,
    )
)
def test_the_cached_dump_is_byte_for_byte_the_full_encoding(ops: list[tuple[str, int, str, list[int]]]) -> None:
    """``PartitionCounts.dump`` re-encodes only what changed since the last dump; whatever the order of counts,
    dumps and prunes, it equals encoding the whole document, and it loads back equal."""
    now = T0 + 100 * MINUTE_MS
    c = PartitionCounts(Kind.CALLER, 3, since_ts=T0)
    for op, back, verdict, others in ops:
        if op == "count":
            ts = now - back * MINUTE_MS
            c.count(ts, verdict, "queryAXB", [ts - o for o in others], now)
        elif op == "prune":
            now += back * MINUTE_MS
            c.prune(now)
        assert c.dump() == orjson.dumps(c._doc())
    assert PartitionCounts.load(c.dump()) == c
