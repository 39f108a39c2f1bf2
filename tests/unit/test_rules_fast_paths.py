"""The rules' fast paths give exactly what the general code gives (issue 13: a storm's subject holds up to
``max_events`` failures, and two per-push scans over them made a storm drain slowly).

* ``_best_window``: when the new failure is the newest, one bisection instead of a sweep;
* ``SubjectState.rids``: the dedup looks the requestId up in a set kept in step with ``events``;
* ``_unexplained_window``: when every DID its windows can reach has a firing pair_repeat, no sweep;
* ``_measure_bound`` for caller_scan (distinct DIDs within a window of the new failure): no sweep when even
  that cannot reach the threshold.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import islice

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.alerts import Rule
from stream import rules, state
from stream.rules import Failure, Kind, Policy, SubjectState

T0 = 1_790_000_000_000
P = Policy()

failures = st.lists(
    st.builds(
        Failure,
        st.integers(T0, T0 + 3 * 3600_000).map(lambda t: t - t % 1000),  # whole seconds: ties happen
        st.text("abcdef", min_size=1, max_size=3),
        st.sampled_from(["d1", "d2", "d3"]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(failures, st.sampled_from([P.caller_repeat, P.did_hot, P.pair_repeat, P.caller_scan]))
def test_the_best_window_of_the_newest_failure_is_the_sweep_s(fs: list[Failure], spec: rules.RuleSpec) -> None:
    subset = sorted(fs)
    new = subset[-1]
    assert rules._best_window(subset, spec, new) == rules._best_window_scan(subset, spec, new)


@settings(max_examples=200, deadline=None)
@given(failures, st.integers(1, 8))
def test_dedup_with_the_rid_set_matches_a_fresh_scan(fs: list[Failure], max_events: int) -> None:
    """Push by push (retries, late and out-of-order ones, pruning by max_events and by the horizon), the state
    kept with its rid set ends equal to one whose set is rebuilt before every push, with the same outcomes."""
    policy = replace(P, max_events=max_events, allowed_lateness_s=600)
    kept = SubjectState(Kind.DID, "8529")
    fresh = SubjectState(Kind.DID, "8529")
    now = T0 + 4 * 3600_000
    for f in fs + fs[::3]:  # every third one again: NXCLOUD's retries
        fresh.rids = None
        a = rules.apply(kept, f, now, policy)
        b = rules.apply(fresh, f, now, policy)
        assert (a.counted, a.reason, a.alerts) == (b.counted, b.reason, b.alerts)
        assert kept.rids == {e.rid for e in kept.events}
    assert kept.events == fresh.events
    assert state.dump(kept) == state.dump(fresh)


@settings(max_examples=300, deadline=None)
@given(failures, st.data(), st.sampled_from([P.caller_repeat, P.did_hot, P.pair_repeat, P.caller_scan]))
def test_the_measure_bound_is_never_below_the_best_window(
    fs: list[Failure], data: st.DataObject, spec: rules.RuleSpec
) -> None:
    """A firing alert skips the window search when even the bound cannot reach a severity rise, and a quiet
    caller_scan when it cannot reach the threshold: sound only if the bound is at least the measure, wherever
    ``new`` falls (late pushes included). For caller_scan the measure is distinct DIDs; the failures drawn
    have up to three, so the test also asks for a bound below the failure count there."""
    subset = sorted(fs)
    new = data.draw(st.sampled_from(subset))
    measure, _start, _inside = rules._best_window_scan(subset, spec, new)
    bound = rules._measure_bound(subset, spec, new)
    assert bound >= measure
    if spec.rule is Rule.CALLER_SCAN:
        assert bound <= len({f.other for f in subset})


def test_the_cached_horizon_follows_each_policys_own_windows() -> None:
    """``Policy.horizon_ms`` is computed once per instance: a policy made with other windows (directly or by
    ``dataclasses.replace``) has its own, never the defaults'."""
    assert P.horizon_ms(Kind.CALLER) == (1800 + 5400) * 1000  # pair_repeat's window is the longest
    assert P.horizon_ms(Kind.DID) == (600 + 5400) * 1000
    wide = replace(P, did_hot=replace(P.did_hot, window_s=7200), allowed_lateness_s=60)
    assert wide.horizon_ms(Kind.DID) == (7200 + 60) * 1000
    assert wide.horizon_ms(Kind.CALLER) == (1800 + 60) * 1000
    assert P.horizon_ms(Kind.DID) == (600 + 5400) * 1000  # the original is untouched
    # A failure just inside the wide DID horizon counts; the default policy refuses it as too late.
    newest = Failure(T0 + 8000 * 1000, "new", "c1")
    old = Failure(T0 + 8000 * 1000 - wide.horizon_ms(Kind.DID) + 1000, "old", "c2")
    for policy, reason in ((wide, "new"), (P, "too_late")):
        s = SubjectState(Kind.DID, "d")
        rules.apply(s, newest, T0 + 9000 * 1000, policy)
        assert rules.apply(s, old, T0 + 9000 * 1000, policy).reason == reason


def _unexplained_by_sweep(s: SubjectState, policy: Policy, lo: int, hi: int) -> bool:
    """The definition, window by window: some crossing window starting in [lo, hi) holds a failure whose
    DID has no firing pair_repeat."""
    for j, end in rules._windows(s, policy, lo, hi):
        if any(not rules._pair_firing(s, f.other) for f in islice(s.events, j, end)):
            return True
    return False


@settings(max_examples=400, deadline=None)
@given(failures, st.sets(st.sampled_from(["d1", "d2", "d3"])), st.data())
def test_the_unexplained_window_shortcut_answers_as_the_sweep(
    fs: list[Failure], pairs_firing: set[str], data: st.DataObject
) -> None:
    """Whichever pairs fire (none, some, all the DIDs) and whichever range of window starts is asked, the
    answer is the sweep's: the shortcut may only skip the sweep when the sweep would say False."""
    s = SubjectState(Kind.CALLER, "8548")
    s.events = sorted(set(fs))
    for d in pairs_firing:
        a = s.alerts[rules._key(Rule.PAIR_REPEAT, d)] = rules.AlertState(Rule.PAIR_REPEAT, d)
        a.firing = True
    n = len(s.events)
    lo = data.draw(st.integers(0, n))
    hi = data.draw(st.integers(lo, n))
    assert rules._unexplained_window(s, P, lo, hi) == _unexplained_by_sweep(s, P, lo, hi)
