"""Alert rules as pure functions over plain data: no Faust, no Kafka, no clock of their own.

One ``SubjectState`` holds everything known about one subject (a caller, or a DID): the failures
within the retention horizon and the state of each alert about it. Because dedup records, counts and
alert state live in the *same* value, one table write stores them together: after a crash they cannot
disagree (the changelog holds either the whole update or none of it).

Counting is exact and sliding: "3 in 10 minutes" fires when 3 failures fall within *any* 10-minute span
(``[t, t + window]``, both ends included), wherever the clock boundaries are. Event time is the push's
occurrence time; a push may arrive late and out of order, and the counts come out as if in order as
long as it is no older than ``horizon`` behind the newest failure of its subject.

Wall-clock (processing) time, ``now``, drives only what has to happen without a next event: repeat
updates, and resolution of a subject that went quiet.

One problem, one alert: the most specific explanation speaks. ``did_hot`` needs failures from at least
two callers in its window (one caller's are that pair's problem, when the pair rule is sure to fire for
them: ``_pair_implied``). ``caller_repeat`` needs a failure that no firing ``pair_repeat`` of the caller
covers, and stays silent while ``caller_scan`` fires; if it fired before its explanation arrived, it is
resolved at once with ``supersededBy`` pointing to it. The alerts firing at the end do not depend on the
order of arrival (``tests/unit/test_precedence.py``). ``explained_by`` tells the query what speaks instead.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from operator import attrgetter, itemgetter
from typing import Any, Final, NamedTuple

from schemas.alerts import Alert, AlertStatus, Rule, Severity

MAX_SAMPLES: Final = 10
_TS: Final = attrgetter("ts")
_RID: Final = itemgetter(1)


class Kind(StrEnum):
    CALLER = "caller"
    DID = "did"


@dataclass(frozen=True)
class RuleSpec:
    rule: Rule
    threshold: int
    window_s: int
    critical_factor: int = 10

    @property
    def window_ms(self) -> int:
        return self.window_s * 1000


@dataclass(frozen=True)
class Policy:
    """Thresholds and timings for every rule; defaults are the documented ones."""

    caller_repeat: RuleSpec = RuleSpec(Rule.CALLER_REPEAT, 3, 600)
    did_hot: RuleSpec = RuleSpec(Rule.DID_HOT, 5, 600)
    pair_repeat: RuleSpec = RuleSpec(Rule.PAIR_REPEAT, 3, 1800)
    caller_scan: RuleSpec = RuleSpec(Rule.CALLER_SCAN, 5, 600)
    repeat_interval_s: int = 3600
    resolve_after_s: int | None = None
    """Quiet period before ``resolved``; ``None`` means one window of the rule."""
    allowed_lateness_s: int = 5400
    """How far behind its subject's newest failure a push may arrive and still count (and dedup)."""
    max_events: int = 2000
    """Failures kept per subject; beyond it a storm counts as 'at least max_events'."""
    _horizons: dict[Kind, int] = field(init=False, repr=False, compare=False, default_factory=dict)
    """``horizon_ms`` per kind, computed once: ``apply`` asks for every event."""

    def __post_init__(self) -> None:
        for kind in Kind:
            self._horizons[kind] = (max(s.window_s for s in self.specs(kind)) + self.allowed_lateness_s) * 1000

    def specs(self, kind: Kind) -> tuple[RuleSpec, ...]:
        if kind is Kind.DID:
            return (self.did_hot,)
        return (self.caller_repeat, self.caller_scan, self.pair_repeat)

    def horizon_ms(self, kind: Kind) -> int:
        return self._horizons[kind]

    def resolve_after_ms(self, spec: RuleSpec) -> int:
        return (self.resolve_after_s if self.resolve_after_s is not None else spec.window_s) * 1000


class Failure(NamedTuple):
    """One failure as a subject sees it. ``other`` is the DID for a caller subject, the caller for a DID.

    A named tuple, ordered by (ts, rid, other): the sorted insert, the dedup horizon's bisect and the outage
    counting's ``neighbours`` compare failures a few times per event each, and a tuple compares in C where an
    ``order=True`` dataclass ran a generated ``__lt__`` that built two tuples per comparison (issue 13's in-process
    profile: 617,000 such calls for 30,000 events, 10% of the time); a frozen dataclass was also slower to build.
    """

    ts: int  # event time, epoch ms
    rid: str
    other: str


TUPLE_NEW: Final[Any] = tuple.__new__
"""``tuple.__new__``: builds a named tuple from a tuple of its fields in C. Calling the class itself runs the
``__new__`` that ``namedtuple`` generates, a Python function (``<lambda>`` in a drain's GIL profile: 1.6%, a frame
for each of the four named tuples built per event)."""


def failure(ts: int, rid: str, other: str) -> Failure:
    """``Failure(ts, rid, other)``, built in C (``TUPLE_NEW``): equal, of the same type."""
    f: Failure = TUPLE_NEW(Failure, (ts, rid, other))
    return f


# The dataclasses below write their own ``__init__`` (``init=False``; eq and repr stay the dataclass's): compiled,
# the one ``dataclass`` generates is interpreted Python (0.20 µs per Outcome against 0.05, two per event).


@dataclass(init=False)
class AlertState:
    rule: Rule
    other: str | None  # the DID of a pair alert
    episode: int
    firing: bool
    severity: Severity
    seq: int  # emissions within the episode
    first_ts: int
    last_emit_wall: int
    last_activity_wall: int
    last: dict[str, Any]  # the last emitted alert's numbers
    outage: str | None
    """The binding outage this alert was last emitted as part of (its fingerprint), if any."""

    def __init__(
        self,
        rule: Rule,
        other: str | None,
        episode: int = 0,
        firing: bool = False,
        severity: Severity = Severity.WARNING,
        seq: int = 0,
        first_ts: int = 0,
        last_emit_wall: int = 0,
        last_activity_wall: int = 0,
        last: dict[str, Any] | None = None,
        outage: str | None = None,
    ) -> None:
        self.rule = rule
        self.other = other
        self.episode = episode
        self.firing = firing
        self.severity = severity
        self.seq = seq
        self.first_ts = first_ts
        self.last_emit_wall = last_emit_wall
        self.last_activity_wall = last_activity_wall
        self.last = {} if last is None else last
        self.outage = outage


@dataclass(init=False)
class SubjectState:
    kind: Kind
    subject: str
    events: list[Failure]  # sorted by (ts, rid, other)
    alerts: dict[str, AlertState]
    floor_ts: int | None  # failures at or before this were evicted: refuse them, never recount
    last_activity_wall: int
    rids: set[str] | None = field(repr=False, compare=False)
    """The requestIds of ``events``, built at the first dedup check and kept in step by ``apply`` (not stored):
    a storm's subject holds up to ``max_events`` failures, and scanning them for every push cost O(n) each."""

    def __init__(
        self,
        kind: Kind,
        subject: str,
        events: list[Failure] | None = None,
        alerts: dict[str, AlertState] | None = None,
        floor_ts: int | None = None,
        last_activity_wall: int = 0,
        rids: set[str] | None = None,
    ) -> None:
        self.kind = kind
        self.subject = subject
        self.events = [] if events is None else events
        self.alerts = {} if alerts is None else alerts
        self.floor_ts = floor_ts
        self.last_activity_wall = last_activity_wall
        self.rids = rids

    def has_rid(self, rid: str) -> bool:
        if self.rids is None:
            self.rids = set(map(_RID, self.events))
        return rid in self.rids

    # --- persistence (one table value; the format and its versions: ``stream.state``) ---------
    def dump(self) -> bytes:
        """The table value of this state, in the current format (``stream.state.dump``)."""
        from stream import state  # the format module imports this one

        return state.dump(self)

    @classmethod
    def load(cls, data: bytes) -> SubjectState:
        """The state in a table value of any format version ever written (``stream.state.load``)."""
        from stream import state

        return state.load(data)

    def is_firing(self) -> bool:
        return any(a.firing for a in self.alerts.values())


def peek(data: bytes) -> tuple[bool, int]:
    """(firing, last activity wall ms) from a dumped value, without parsing it."""
    return data[:1] == b"F", int(data[1:14])


@dataclass(init=False)
class Outcome:
    counted: bool
    reason: str  # "new", "duplicate", "too_late"
    alerts: list[Alert]

    def __init__(self, counted: bool, reason: str, alerts: list[Alert] | None = None) -> None:
        self.counted = counted
        self.reason = reason
        self.alerts = [] if alerts is None else alerts


# --- public API ------------------------------------------------------------------------------
def apply(state: SubjectState, failure: Failure, now_ms: int, policy: Policy) -> Outcome:
    """Add one failure (if new) and return what to emit. Mutates ``state``."""
    if state.has_rid(failure.rid):
        return Outcome(False, "duplicate")
    events = state.events
    newest = events[-1].ts if events and events[-1].ts > failure.ts else failure.ts
    cutoff = newest - policy.horizon_ms(state.kind)
    if failure.ts < cutoff or (state.floor_ts is not None and failure.ts <= state.floor_ts):
        return Outcome(False, "too_late")
    insort(state.events, failure)
    if state.rids is not None:
        state.rids.add(failure.rid)
    _prune(state, cutoff, policy.max_events)
    state.last_activity_wall = now_ms
    if state.kind is Kind.DID:
        if _one_caller_explains(state, policy, failure):
            return Outcome(True, "new")
        return Outcome(True, "new", _evaluate(state, policy.did_hot, None, state.events, failure, now_ms, policy))
    # The caller rules, most specific first: pair_repeat and caller_scan explain caller_repeat (see below).
    pair = [f for f in state.events if f.other == failure.other]
    pair_key = _key(Rule.PAIR_REPEAT, failure.other)
    episode = state.alerts[pair_key].episode if pair_key in state.alerts else 0
    emitted = _evaluate(state, policy.pair_repeat, failure.other, pair, failure, now_ms, policy)
    pair_started = state.alerts[pair_key].episode != episode if pair_key in state.alerts else False
    emitted += _evaluate(state, policy.caller_scan, None, state.events, failure, now_ms, policy)
    emitted += _caller_repeat(state, failure, now_ms, policy, recheck=pair_started)
    return Outcome(True, "new", emitted)


def tick(state: SubjectState, now_ms: int, policy: Policy) -> list[Alert]:
    """Resolve every firing alert of the subject that has been quiet long enough. Mutates ``state``."""
    out: list[Alert] = []
    for a in state.alerts.values():
        spec = _spec(policy, a.rule)
        if a.firing and now_ms - a.last_activity_wall >= policy.resolve_after_ms(spec):
            a.firing = False
            a.seq += 1
            a.last_emit_wall = now_ms
            out.append(_alert(state, a, AlertStatus.RESOLVED, now_ms, spec, **a.last))
    return out


def join_outage(state: SubjectState, outage: str, window_start_ms: int, now_ms: int, policy: Policy) -> list[Alert]:
    """Re-emit, as part of the firing outage ``outage``, each firing alert of the subject whose episode began
    within the outage's window (first failure at or after ``window_start_ms``, event time) and that was not
    yet emitted as part of it. Mutates ``state``.

    Why: per-number alerts that fired in the minutes before the outage was detected went out without its
    fingerprint, so Alertmanager's inhibition could not mute them; the update carries it (the worker stamps
    every alert of a batch with the firing outage), well within Alertmanager's ``group_wait``. An alert
    that began before the window (a chronic scanner) is another problem and keeps speaking.
    """
    out: list[Alert] = []
    for a in state.alerts.values():
        if a.firing and a.outage != outage and a.first_ts >= window_start_ms:
            a.seq += 1
            a.last_emit_wall = now_ms
            a.outage = outage
            out.append(_alert(state, a, AlertStatus.FIRING, now_ms, _spec(policy, a.rule), **a.last))
    return out


def note_outage(state: SubjectState, outage: str, now_ms: int) -> None:
    """Record that the alerts of ``state`` emitted at ``now_ms`` went out as part of ``outage``."""
    for a in state.alerts.values():
        if a.last_emit_wall == now_ms:
            a.outage = outage


def next_due_ms(state: SubjectState, policy: Policy) -> int | None:
    """Wall-clock time at which ``tick`` would resolve something, or None."""
    if not state.alerts:  # most subjects never alerted: no list
        return None
    due = [
        a.last_activity_wall + policy.resolve_after_ms(_spec(policy, a.rule)) for a in state.alerts.values() if a.firing
    ]
    return min(due) if due else None


def collectable(state_value: bytes, now_ms: int, horizon_ms: int) -> bool:
    """True when a stored subject may be deleted: nothing firing and quiet for longer than the horizon.

    After that time a retry of one of its pushes is beyond NXCLOUD's retry schedule.
    """
    firing, last = peek(state_value)
    return not firing and now_ms - last > horizon_ms


def fingerprint(rule: Rule, subject: str, other: str | None = None) -> str:
    """Stable id of one problem: the rule and a hash of its subject (numbers stay out of keys)."""
    text = subject if other is None else f"{subject}>{other}"
    return f"{rule.value}:{hashlib.sha256(text.encode()).hexdigest()[:20]}"


def window_counts(state: SubjectState, policy: Policy) -> dict[str, dict[str, Any]]:
    """For queries: per rule, the failures in the window that ends at the subject's newest failure."""
    if not state.events:
        return {}
    newest = state.events[-1].ts
    out: dict[str, dict[str, Any]] = {}
    for spec in policy.specs(state.kind):
        in_window = [f for f in state.events if f.ts >= newest - spec.window_ms]
        entry: dict[str, Any] = {"threshold": spec.threshold, "windowSeconds": spec.window_s}
        if spec.rule is Rule.CALLER_SCAN:
            entry["distinctDids"] = len({f.other for f in in_window})
        elif spec.rule is Rule.PAIR_REPEAT:
            per: dict[str, int] = {}
            for f in in_window:
                per[f.other] = per.get(f.other, 0) + 1
            entry["perDid"] = dict(sorted(per.items(), key=lambda kv: -kv[1])[:20])
        else:
            entry["count"] = len(in_window)
        if spec.rule in (Rule.CALLER_REPEAT, Rule.DID_HOT) and not state.alerts.get(spec.rule.value, _QUIET).firing:
            explainers = explained_by(state, policy)
            if explainers:
                entry["explainedBy"] = explainers  # what speaks for these failures instead
        out[spec.rule.value] = entry
    return out


def explained_by(state: SubjectState, policy: Policy) -> list[str]:
    """Fingerprints of the alerts that explain the subject's failures instead of caller_repeat (or, for a
    DID, did_hot) right now; empty when nothing does. A caller: its firing caller_scan, else the firing
    pair_repeat alerts when every failure in every caller_repeat window that crosses the threshold is to one
    of their DIDs. A DID: the pair_repeat of its only caller, when one caller made all its failures."""
    if state.kind is Kind.DID:
        callers = {f.other for f in state.events}
        single = len(callers) == 1 and _pair_implied(policy) and len(state.events) >= policy.did_hot.threshold
        return [fingerprint(Rule.PAIR_REPEAT, callers.pop(), state.subject)] if single else []
    scan = state.alerts.get(_SCAN_KEY)
    if scan is not None and scan.firing:
        return [fingerprint(Rule.CALLER_SCAN, state.subject)]
    if not _crossing_windows(state, policy, 0, len(state.events)) or _unexplained_window(
        state, policy, 0, len(state.events)
    ):
        return []
    covered = {f.other for f in state.events if _pair_firing(state, f.other)}
    return [fingerprint(Rule.PAIR_REPEAT, state.subject, d) for d in sorted(covered)]


# --- internals -------------------------------------------------------------------------------
def _spec(policy: Policy, rule: Rule) -> RuleSpec:
    return {
        Rule.CALLER_REPEAT: policy.caller_repeat,
        Rule.DID_HOT: policy.did_hot,
        Rule.PAIR_REPEAT: policy.pair_repeat,
        Rule.CALLER_SCAN: policy.caller_scan,
    }[rule]


_QUIET: Final = AlertState(Rule.CALLER_REPEAT, None)


_SCAN_KEY: Final = Rule.CALLER_SCAN.value
_HOT_KEY: Final = Rule.DID_HOT.value


def _key(rule: Rule, other: str | None) -> str:
    """The key of a rule's alert in ``SubjectState.alerts``. ``str(rule)``, not ``rule.value``: the members are
    ``StrEnum``s, whose ``str`` is the value, in C; ``.value`` is the enum module's Python descriptor, a Python
    call per access even from the compiled core (about ten per event before, 2% of a drain)."""
    return str(rule) if other is None else f"{rule}>{other}"


def _pair_firing(state: SubjectState, did: str) -> bool:
    a = state.alerts.get(_key(Rule.PAIR_REPEAT, did))
    return a is not None and a.firing


def _windows(state: SubjectState, policy: Policy, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """caller_repeat windows that cross its threshold, as index ranges [j, end) of ``state.events``, for
    every window that starts at a failure with index in [lo, hi). (A window crossing the threshold lies
    inside one of these, so they are the only ones to look at.)"""
    ev = state.events
    w = policy.caller_repeat.window_ms
    end = lo
    for j in range(lo, hi):
        end = max(end, j)
        while end < len(ev) and ev[end].ts <= ev[j].ts + w:
            end += 1
        if end - j >= policy.caller_repeat.threshold:
            yield j, end


def _crossing_windows(state: SubjectState, policy: Policy, lo: int, hi: int) -> bool:
    return next(_windows(state, policy, lo, hi), None) is not None


def _unexplained_window(state: SubjectState, policy: Policy, lo: int, hi: int) -> bool:
    """True if a crossing window starting in [lo, hi) holds a failure to a DID without a firing pair_repeat:
    caller_repeat then says something no pair alert does.

    First the cheap answer: every failure such a window can hold lies in ``events[lo:reach]`` (``reach``: past
    the last one within the window of the latest start), so when each DID among them has its pair_repeat
    firing, none is unexplained. That is a storm's caller (one DID, its pair firing from the third failure on):
    the window sweep below ran for every one of its pushes, O(failures in the window) generator steps each,
    and was the largest cost of a 100,000-event storm (``bench/README.md``)."""
    ev = state.events
    if hi <= lo:
        return False
    reach = bisect_right(ev, ev[hi - 1].ts + policy.caller_repeat.window_ms, key=_TS)
    if all(_pair_firing(state, d) for d in {f.other for f in ev[lo:reach]}):
        return False
    covered: dict[str, bool] = {}
    checked = lo  # failures before this index were seen covered (windows overlap: look at each once)
    for j, end in _windows(state, policy, lo, hi):
        for f in ev[max(j, checked) : end]:
            c = covered.get(f.other)
            if c is None:
                c = covered[f.other] = _pair_firing(state, f.other)
            if not c:
                return True
        checked = max(checked, end)
    return False


def _pair_implied(policy: Policy) -> bool:
    """True when did_hot's failures from a single caller always make that pair's pair_repeat fire (at least
    as low a threshold over at least as long a window): only then may the DID stage leave them to it, since
    it cannot see the caller table."""
    return (
        policy.pair_repeat.threshold <= policy.did_hot.threshold
        and policy.pair_repeat.window_s >= policy.did_hot.window_s
    )


def _one_caller_explains(state: SubjectState, policy: Policy, new: Failure) -> bool:
    """did_hot's precedence: a DID that fails for one caller only is that pair's problem (pair_repeat
    speaks); did_hot fires for a window holding failures from at least two callers. A window's callers
    only grow, so the outcome does not depend on the order of arrival."""
    if not _pair_implied(policy):
        return False
    a = state.alerts.get(_HOT_KEY)
    if a is not None and a.firing:
        return False  # already speaking: keep its activity and updates
    ev = state.events
    n = len(ev)
    w = policy.did_hot.window_ms
    end = lo = bisect_left(ev, new.ts - w, key=_TS)  # bisected in place: no list of times per event
    callers: dict[str, int] = {}
    for j in range(lo, bisect_right(ev, new.ts, key=_TS)):  # the windows [ts[j], ts[j] + w] containing ``new``
        limit = ev[j].ts + w
        while end < n and ev[end].ts <= limit:
            callers[ev[end].other] = callers.get(ev[end].other, 0) + 1
            end += 1
        if end - j >= policy.did_hot.threshold and len(callers) > 1:
            return False
        c = ev[j].other  # slide the start past ev[j]
        callers[c] -= 1
        if not callers[c]:
            del callers[c]
    return True


def _caller_repeat(state: SubjectState, new: Failure, now_ms: int, policy: Policy, *, recheck: bool) -> list[Alert]:
    """caller_repeat, unless a more specific alert explains the caller's repeats (module docstring).

    It fires only for a crossing window (one that contains ``new``: no other window changed) holding a
    failure that no firing pair_repeat covers, and never while caller_scan fires. If it is firing when
    caller_scan starts, or when a pair_repeat starts (``recheck``) and then covers every crossing window,
    it is resolved at once, pointing to what explains it (``supersededBy``).
    """
    spec = policy.caller_repeat
    a = state.alerts.get(_key(spec.rule, None))
    if a is not None and a.firing:
        explainers = explained_by(state, policy) if (recheck or _scan_firing(state)) else []
        if explainers:
            a.firing = False
            a.seq += 1
            a.last_emit_wall = now_ms
            return [_alert(state, a, AlertStatus.RESOLVED, now_ms, spec, superseded_by=explainers[0], **a.last)]
        return _evaluate(state, spec, None, state.events, new, now_ms, policy)
    if _scan_firing(state):
        return []
    ev = state.events
    i = bisect_left(ev, new)
    lo = bisect_left(ev, new.ts - spec.window_ms, key=_TS)
    if not _unexplained_window(state, policy, lo, i + 1):
        return []
    return _evaluate(state, spec, None, ev, new, now_ms, policy)


def _scan_firing(state: SubjectState) -> bool:
    a = state.alerts.get(_SCAN_KEY)
    return a is not None and a.firing


def _prune(state: SubjectState, cutoff: int, max_events: int) -> None:
    ev = state.events
    drop = bisect_left(ev, failure(cutoff, "", ""))  # built in C (TUPLE_NEW): the class runs a Python __new__
    if len(ev) - drop > max_events:
        drop = len(ev) - max_events
        state.floor_ts = max(state.floor_ts or 0, ev[drop - 1].ts)
    if drop:
        if state.rids is not None:
            state.rids.difference_update(f.rid for f in ev[:drop])
        del ev[:drop]


def _best_window(subset: list[Failure], spec: RuleSpec, new: Failure) -> tuple[int, int, list[Failure]]:
    """Among windows [s, s+W] that contain ``new`` and start at a failure, the one with most failures
    (most distinct DIDs for caller_scan). Returns (measure, start, failures in it); ties: earliest.

    When ``new`` is the newest failure (arrival in order: the common case, and every event of a storm), every
    window starting within W before it reaches the end, so the earliest start holds the most: one bisection
    instead of a sweep over the window (a storm's DID holds up to ``max_events`` failures in it).
    """
    if spec.rule is not Rule.CALLER_SCAN and subset and subset[-1] == new:
        lo = bisect_left(subset, new.ts - spec.window_ms, key=_TS)
        return (len(subset) - lo, subset[lo].ts, subset[lo:])
    return _best_window_scan(subset, spec, new)


def _measure_bound(subset: list[Failure], spec: RuleSpec, new: Failure) -> int:
    """An upper bound of ``_best_window``'s measure: a window of length W containing ``new`` lies within
    [new - W, new + W]. For counts, the failures there, in O(log n): a storm's subject, firing and out of
    order, no longer sweeps its whole window for every push. For caller_scan, the distinct DIDs there, in
    O(k) for k failures but without the sweep's counting: a caller failing to one or two DIDs (a storm's
    callers, every retrier) is never near caller_scan's threshold, and its sweep ran for every push."""
    w = spec.window_ms
    lo = bisect_left(subset, new.ts - w, key=_TS)
    hi = bisect_right(subset, new.ts + w, key=_TS)
    if spec.rule is Rule.CALLER_SCAN:
        return len({f.other for f in subset[lo:hi]})
    return hi - lo


def _best_window_scan(subset: list[Failure], spec: RuleSpec, new: Failure) -> tuple[int, int, list[Failure]]:
    """``_best_window`` for any ``new``: one sweep with two pointers, O(k log n) for k failures within a
    window of ``new``."""
    times = [f.ts for f in subset]
    w = spec.window_ms
    lo = bisect_left(times, new.ts - w)
    hi = bisect_right(times, new.ts)
    distinct = spec.rule is Rule.CALLER_SCAN
    best_measure, best_j, best_end = 0, -1, -1
    end = lo
    seen: dict[str, int] = {}
    for j in range(lo, hi):
        limit = times[j] + w
        while end < len(times) and times[end] <= limit:
            if distinct:
                seen[subset[end].other] = seen.get(subset[end].other, 0) + 1
            end += 1
        measure = len(seen) if distinct else end - j
        if measure > best_measure:
            best_measure, best_j, best_end = measure, j, end
        if distinct:  # slide the start past subset[j]
            o = subset[j].other
            seen[o] -= 1
            if not seen[o]:
                del seen[o]
    if best_j < 0:
        return (0, new.ts, [new])
    return (best_measure, times[best_j], subset[best_j:best_end])


def _evaluate(
    state: SubjectState,
    spec: RuleSpec,
    other: str | None,
    subset: list[Failure],
    new: Failure,
    now_ms: int,
    policy: Policy,
) -> list[Alert]:
    key = _key(spec.rule, other)
    a = state.alerts.get(key)
    if a is not None and a.firing:
        a.last_activity_wall = now_ms
        if now_ms - a.last_emit_wall < policy.repeat_interval_s * 1000 and (
            a.severity is Severity.CRITICAL or _measure_bound(subset, spec, new) < spec.threshold * spec.critical_factor
        ):
            return []  # firing, no repeat due, and no severity rise possible: nothing to emit, no window to find
    elif spec.rule is Rule.CALLER_SCAN and _measure_bound(subset, spec, new) < spec.threshold:
        return []  # no window can reach the threshold: the sweep below would return the same
    measure, start, inside = _best_window(subset, spec, new)
    if measure < spec.threshold:
        return []
    severity = Severity.CRITICAL if measure >= spec.threshold * spec.critical_factor else Severity.WARNING
    numbers = _numbers(state, spec, measure, start, inside, subset)
    if a is None:
        a = state.alerts[key] = AlertState(spec.rule, other)
    if not a.firing:
        a.episode += 1
        a.firing, a.seq, a.severity = True, 0, severity
        a.first_ts = inside[0].ts
        a.last_activity_wall = a.last_emit_wall = now_ms
    elif severity is Severity.CRITICAL and a.severity is Severity.WARNING:
        a.severity, a.seq, a.last_emit_wall = severity, a.seq + 1, now_ms
    elif now_ms - a.last_emit_wall >= policy.repeat_interval_s * 1000:
        a.seq, a.last_emit_wall = a.seq + 1, now_ms
    else:
        return []
    a.last = numbers
    return [_alert(state, a, AlertStatus.FIRING, now_ms, spec, **numbers)]


def _numbers(
    state: SubjectState, spec: RuleSpec, measure: int, start: int, inside: list[Failure], subset: list[Failure]
) -> dict[str, Any]:
    return {
        "count": len(inside),
        "distinct": measure if spec.rule is Rule.CALLER_SCAN else None,
        "start": start,
        "last_ts": subset[-1].ts,
        "samples": [f.rid for f in inside[:MAX_SAMPLES]],
    }


def _ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _alert(
    state: SubjectState,
    a: AlertState,
    status: AlertStatus,
    now_ms: int,
    spec: RuleSpec,
    *,
    count: int,
    distinct: int | None,
    start: int,
    last_ts: int,
    samples: list[str],
    superseded_by: str | None = None,
) -> Alert:
    caller = state.subject if state.kind is Kind.CALLER else None
    did = state.subject if state.kind is Kind.DID else a.other
    fp = fingerprint(spec.rule, state.subject, a.other)
    alert_id = hashlib.sha256(f"{fp}|{a.episode}|{a.seq}|{status.value}".encode()).hexdigest()[:32]
    return Alert(
        alertId=alert_id,
        fingerprint=fp,
        rule=spec.rule,
        status=status,
        severity=a.severity,
        caller=caller,
        did=did,
        count=count,
        distinctDids=distinct,
        threshold=spec.threshold,
        windowSeconds=spec.window_s,
        windowStart=_ms(start),
        windowEnd=_ms(start + spec.window_ms),
        firstOccurredAt=_ms(a.first_ts),
        lastOccurredAt=_ms(last_ts),
        sampleRequestIds=samples,
        emittedAt=_ms(now_ms),
        supersededBy=superseded_by,
    )
