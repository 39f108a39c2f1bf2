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
        "a scanner retrying one DID: the scan and the pair",
        [(0, "d0"), (1, "d1"), (2, "d2"), (3, "d3"), (4, "d4"), (5, "d2"), (6, "d2")],
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
    orders = list(itertools.permutations(failures))
    assert len(orders) == len(set(orders)) or len(set(failures)) < len(failures)
    for order in orders:
        state, alerts = run(list(order))
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


def test_did_rules_are_untouched() -> None:
    state = SubjectState(Kind.DID, "85290000009")
    out = [rules.apply(state, Failure(T0 + i, f"r{i}", f"c{i}"), NOW, P).alerts for i in range(5)]
    assert [a.rule for a in out[4]] == [Rule.DID_HOT] and rules.explained_by(state, P) == []
