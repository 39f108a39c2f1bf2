"""How the caller rules share the work (stream/rules.py, "One problem, one alert"): for every scenario,
every order of arrival (late events included) ends with exactly the expected firing alerts; a
caller_repeat that fired before what explains it was known is resolved pointing to it; what a rule no
longer emits stays visible in the query."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from schemas.alerts import Alert, AlertStatus, Rule
from stream import rules
from stream.rules import Failure, Kind, Policy, SubjectState

P = Policy()
T0 = int(datetime(2026, 3, 29, 11, 0, tzinfo=UTC).timestamp() * 1000)
NOW = 1_800_000_000_000
CALLER = "8613800000001"
M = 60_000


def fp(rule: Rule, did: str | None = None) -> str:
    return rules.fingerprint(rule, CALLER, did)


REPEAT, SCAN = fp(Rule.CALLER_REPEAT), fp(Rule.CALLER_SCAN)


def pair(did: str) -> str:
    return fp(Rule.PAIR_REPEAT, did)


# (name, failures as (minute, DID), the alerts firing at the end)
SCENARIOS: list[tuple[str, list[tuple[float, str]], set[str]]] = [
    ("below every threshold", [(0, "d1"), (1, "d2")], set()),
    ("a caller retrying one DID: the pair speaks", [(0, "d1"), (1, "d1"), (2, "d1")], {pair("d1")}),
    ("retrying one DID and failing on another", [(0, "d1"), (1, "d1"), (2, "d1"), (3, "d2")], {pair("d1"), REPEAT}),
    ("two DIDs twice each: the caller speaks", [(0, "d1"), (1, "d2"), (2, "d1"), (3, "d2")], {REPEAT}),
    (
        "two DIDs three times each: two pairs explain all",
        [(0, "d1"), (1, "d2"), (2, "d1"), (3, "d2"), (4, "d1"), (5, "d2")],
        {pair("d1"), pair("d2")},
    ),
    ("a scanner: the scan speaks", [(i, f"d{i}") for i in range(6)], {SCAN}),
    (
        "a scanner retrying one DID: the scan and the pair (pair_repeat at 2, to keep it to 720 orders)",
        [(0, "d0"), (1, "d1"), (2, "d2"), (3, "d3"), (4, "d4"), (5, "d2")],
        {SCAN, pair("d2")},
    ),
    (
        "a retried DID early, other DIDs 25 minutes later: two problems",
        [(0, "d1"), (1, "d1"), (2, "d1"), (25, "d2"), (26, "d3"), (27, "d4")],
        {pair("d1"), REPEAT},
    ),
    ("repeats 11 minutes apart never cross", [(0, "d1"), (5, "d2"), (11, "d3")], set()),
]


def run(order: list[tuple[float, str]], policy: Policy = P) -> tuple[SubjectState, list[Alert]]:
    state = SubjectState(Kind.CALLER, CALLER)
    alerts: list[Alert] = []
    for i, (minute, did) in enumerate(order):
        rid = f"r{minute}-{did}"
        alerts += rules.apply(state, Failure(T0 + int(minute * M), rid, did), NOW + i, policy).alerts
    return state, alerts


def firing(state: SubjectState) -> set[str]:
    return {rules.fingerprint(a.rule, state.subject, a.other) for a in state.alerts.values() if a.firing}


@pytest.mark.parametrize(("name", "failures", "want"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_every_order_of_arrival_ends_with_the_same_alerts(
    name: str, failures: list[tuple[float, str]], want: set[str]
) -> None:
    policy = Policy(pair_repeat=rules.RuleSpec(Rule.PAIR_REPEAT, 2, 1800)) if "pair_repeat at 2" in name else P
    for order in itertools.permutations(failures):
        state, alerts = run(list(order), policy)
        assert firing(state) == want, order
        assert len(state.events) == len(set(failures)), order  # every failure counted once
        fired = {a.fingerprint for a in alerts if a.status is AlertStatus.FIRING}
        assert want <= fired, order
        for a in alerts:
            if a.status is AlertStatus.RESOLVED:
                # Only a superseded caller_repeat resolves here (no wall-clock tick in this test), pointing to
                # an alert that fired in the same run and is still firing.
                assert a.rule is Rule.CALLER_REPEAT and a.supersededBy in want & fired, (order, a)
            else:
                assert a.supersededBy is None
        if REPEAT in fired and REPEAT not in want:
            assert [a.status for a in alerts if a.fingerprint == REPEAT] == [
                AlertStatus.FIRING,
                AlertStatus.RESOLVED,
            ], order


def test_caller_repeat_handed_over_to_the_scan_carries_its_numbers_and_the_pointer() -> None:
    _, alerts = run([(i, f"d{i}") for i in range(5)])
    assert [(a.rule, a.status) for a in alerts] == [
        (Rule.CALLER_REPEAT, AlertStatus.FIRING),
        (Rule.CALLER_SCAN, AlertStatus.FIRING),
        (Rule.CALLER_REPEAT, AlertStatus.RESOLVED),
    ]
    fired, scan, resolved = alerts
    assert resolved.supersededBy == scan.fingerprint == SCAN
    assert resolved.alertId != fired.alertId and resolved.count == fired.count == 3
    assert resolved.sampleRequestIds == fired.sampleRequestIds


def test_suppressed_repeats_stay_visible_in_the_query_and_in_the_explaining_alert() -> None:
    state, alerts = run([(0, "d1"), (1, "d1"), (2, "d1")])
    [p] = alerts
    assert (p.rule, p.count, p.sampleRequestIds) == (Rule.PAIR_REPEAT, 3, ["r0-d1", "r1-d1", "r2-d1"])
    window = rules.window_counts(state, P)["caller_repeat"]
    assert window["count"] == 3 and window["explainedBy"] == [pair("d1")]
    scanner, _ = run([(i, f"d{i}") for i in range(6)])
    assert rules.window_counts(scanner, P)["caller_repeat"]["explainedBy"] == [SCAN]
    speaking, _ = run([(0, "d1"), (1, "d2"), (2, "d1")])
    assert "explainedBy" not in rules.window_counts(speaking, P)["caller_repeat"]


def test_caller_repeat_speaks_again_once_a_new_dids_failure_is_not_explained() -> None:
    state, alerts = run([(0, "d1"), (1, "d1"), (2, "d1")])
    assert REPEAT not in {a.fingerprint for a in alerts}
    more = rules.apply(state, Failure(T0 + 3 * M, "x", "d9"), NOW + 10, P).alerts
    assert [(a.rule, a.status) for a in more] == [(Rule.CALLER_REPEAT, AlertStatus.FIRING)]


def test_no_caller_repeat_while_the_scan_fires_however_many_repeats() -> None:
    state, alerts = run([(i / 10, f"d{i % 6}") for i in range(60)])
    assert firing(state) == {SCAN} | {pair(f"d{i}") for i in range(6)}
    assert [a.status for a in alerts if a.rule is Rule.CALLER_REPEAT] == [AlertStatus.FIRING, AlertStatus.RESOLVED]


def test_a_pair_out_of_reach_does_not_silence_the_caller() -> None:
    """With pair_repeat set higher than caller_repeat, a caller retrying one DID is a caller_repeat until
    the pair fires, which then takes over."""
    policy = Policy(pair_repeat=rules.RuleSpec(Rule.PAIR_REPEAT, 5, 1800))
    state, _ = run([(0, "d1"), (1, "d1"), (2, "d1")], policy)
    assert firing(state) == {REPEAT}
    more = [rules.apply(state, Failure(T0 + (3 + i) * M, f"y{i}", "d1"), NOW + 10 + i, policy).alerts for i in (0, 1)]
    assert [(a.rule, a.status, a.supersededBy) for a in more[1]] == [
        (Rule.PAIR_REPEAT, AlertStatus.FIRING, None),
        (Rule.CALLER_REPEAT, AlertStatus.RESOLVED, pair("d1")),
    ]
    assert firing(state) == {pair("d1")}


DID = "85290000009"


def run_did(order: list[tuple[float, str]], policy: Policy = P) -> tuple[SubjectState, list[Alert]]:
    state = SubjectState(Kind.DID, DID)
    alerts: list[Alert] = []
    for i, (minute, caller) in enumerate(order):
        rid = f"r{minute}-{caller}-{i}"
        alerts += rules.apply(state, Failure(T0 + int(minute * M), rid, caller), NOW + i, policy).alerts
    return state, alerts


HOT = rules.fingerprint(Rule.DID_HOT, DID)
DID_SCENARIOS: list[tuple[str, list[tuple[float, str]], set[str]]] = [
    ("one caller five times: the pair's problem", [(i, "c1") for i in range(5)], set()),
    ("five callers once each: a hot DID", [(i, f"c{i}") for i in range(5)], {HOT}),
    ("one caller four times and another once", [(0, "c1"), (1, "c1"), (2, "c1"), (3, "c1"), (4, "c2")], {HOT}),
    (
        "the second caller 20 minutes later is outside the window",
        [(0, "c1"), (1, "c1"), (2, "c1"), (3, "c1"), (4, "c1"), (24, "c2")],
        set(),
    ),
]


@pytest.mark.parametrize(("name", "failures", "want"), DID_SCENARIOS, ids=[s[0] for s in DID_SCENARIOS])
def test_did_hot_in_every_order_of_arrival(name: str, failures: list[tuple[float, str]], want: set[str]) -> None:
    for order in itertools.permutations(failures):
        state, alerts = run_did(list(order))
        assert firing(state) == want, order
        assert {a.fingerprint for a in alerts} == want, order


def test_a_did_failing_for_one_caller_points_to_the_pair_in_the_query() -> None:
    state, _ = run_did([(i, "c1") for i in range(6)])
    window = rules.window_counts(state, P)["did_hot"]
    assert window["count"] == 6 and window["explainedBy"] == [rules.fingerprint(Rule.PAIR_REPEAT, "c1", DID)]


def test_did_hot_speaks_for_one_caller_when_the_pair_rule_could_not() -> None:
    policy = Policy(pair_repeat=rules.RuleSpec(Rule.PAIR_REPEAT, 6, 1800))
    state, alerts = run_did([(i, "c1") for i in range(5)], policy)
    assert firing(state) == {HOT} and [a.rule for a in alerts] == [Rule.DID_HOT]
