"""Outage detection and the live overview, as pure data and functions: no Faust, no Kafka, no clock of their own.

Three parts, in the order the data flows:

1. ``PartitionCounts``: one partition's counts per minute of event time, kept by the worker that owns the
   partition, for each of the two stages. The caller stage counts new failures (the per-subject dedup in
   ``stream.rules`` gives the verdict), duplicates, failures per ``data.action`` and the distinct callers of the
   5 minutes ending at each minute; the DID stage counts the distinct DIDs. Every number lives in exactly one
   partition of its stage, so per-partition distinct counts add up exactly: no sets cross the wire, no sketch.
   The distinct count needs no set either: a new failure at minute ``k`` raises the count of each 5-minute
   window ending at ``k .. k+4`` in which its subject had no other failure, and the subject's other failures are
   already in its ``SubjectState`` (``neighbours``).
2. ``Partial``: what a worker sends to the single-partition internal topic, one record per owned partition at a
   bounded interval (not one per event): the partition's *absolute* counts, never increments. The aggregator
   keeps, per (stage, partition), the partial with the highest ``order_key`` (the input offset it covers, then
   its top-10 window, its send time and its bytes). Replacing by a total order is idempotent, commutative and
   associative: a partial re-sent after a crash, or read twice, or out of order, never double counts.
3. ``Aggregate``: the merged state (global per-minute totals, global top 10, firing alerts per rule, the
   ``binding_outage`` rule's state) and the ``Overview`` document built from it.

Why a partial's counts are exact after a crash (phase 2 must keep this): ``PartitionCounts`` records the input
offset it covers (``offset``). The worker writes it to its table *before* the batch's subject states, in the
same changelog partition, so a crash leaves either both, the counts alone, or neither; on replay it skips what
``covers`` says was counted, and the subjects (not written) give the same verdicts again. Counting is then a
function of the input prefix, so two workers that covered the same offset hold the same counts, and the
partial with the higher offset supersedes the lower one.

Event time (the push's occurrence time) decides the minute a failure counts in, so a late push counts in its
own minute; wall-clock time (``now_ms``) decides which minutes are "the last 5 / 10 / 60", and drives
resolution, as in ``stream.rules``.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import statistics
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import orjson

from schemas.alerts import Alert, AlertStatus, Rule, Severity
from schemas.overview import Coverage, OutageStatus, Overview, OverviewMinute, StageCoverage, TopNumber
from stream.rules import Failure, Kind, fingerprint

MINUTE_MS: Final = 60_000
STABLE_LAG_MINUTES: Final = 8
"""``PartitionCounts.dump`` re-joins the rows of the newest minutes only (a failure changes its own minute and
the 4 after it; late ones more, then the whole is re-joined once)."""
WINDOW_MINUTES: Final = 5
"""Span of the distinct counts and of the outage rule."""
TOP_MINUTES: Final = 10
"""Span of the top-10 lists."""
TOP_N: Final = 10
HISTORY_MINUTES: Final = 60
"""Rows of the overview."""
BASELINE_WINDOWS: Final = 60
"""5-minute totals in the baseline: the windows ending at each of the 60 minutes before the current window."""
MIN_BASELINE_WINDOWS: Final = 15
"""The rule waits until the baseline has this many 5-minute totals (24 minutes after the earliest ``since_ts`` of
the caller partitions): an unknown past is not a quiet one, and a busy system would page at start."""
RETAIN_MINUTES: Final = WINDOW_MINUTES + BASELINE_WINDOWS + 10
"""Minutes a partition and the aggregator keep: enough for the baseline, with slack for late pushes."""
MAX_ACTIONS: Final = 32
"""Distinct ``data.action`` values per minute and partition; more are counted as ``(other)`` (untrusted input)."""
MAX_ACTION_LENGTH: Final = 64
NO_ACTION: Final = "(none)"
OTHER_ACTION: Final = "(other)"
PARTIAL_VERSION = 1
AGGREGATE_VERSION = 1


class Verdict(StrEnum):
    """What the per-subject dedup (``stream.rules.apply``) decided: its ``Outcome.reason``."""

    NEW = "new"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"


_VERDICTS: Final = frozenset(Verdict)


def minute_of(ts_ms: int) -> int:
    """Epoch minute of an epoch-ms time."""
    return ts_ms // MINUTE_MS


def neighbours(events: Sequence[Failure], new: Failure) -> list[int]:
    """The times of the subject's failures just before and just after ``new`` (0 to 2 of them), from its sorted
    ``SubjectState.events`` after ``new`` was inserted: all ``PartitionCounts.count`` needs. O(log n).

    Only the nearest other failure on each side matters: the latest one at or before ``new`` covers the most
    windows that end after it, the earliest one at or after it the most windows that end before it.
    """
    i = bisect_left(events, new)
    out = []
    if i > 0:
        out.append(events[i - 1].ts)
    if i + 1 < len(events):
        out.append(events[i + 1].ts)
    return out


def distinct_windows(ts: int, others: Iterable[int], floor_ts: int | None = None) -> range:
    """The minutes of ``distinct_bounds``, as a range."""
    lo, hi = distinct_bounds(ts, others, floor_ts)
    return range(lo, hi)


def distinct_bounds(ts: int, others: Iterable[int], floor_ts: int | None = None) -> tuple[int, int]:
    """The minutes ``j`` (``lo <= j < hi``, returned as ``lo, hi``) whose 5-minute distinct count (window
    ``[j-4, j]``) the subject's new failure at ``ts`` raises: those in ``k .. k+4`` (``k`` its minute) where
    the subject had no other failure.

    A failure at minute ``m <= k`` already counts in the windows ending at ``k .. m+4``; one at ``m >= k`` in
    those ending at ``m .. k+4``; so the nearest other on each side decides (``neighbours``).
    ``floor_ts``: the subject's eviction floor (``SubjectState.floor_ts``). Failures at or before it were dropped
    from the state, so its minute and every earlier one count as "had a failure": a subject beyond
    ``max_events`` is under-counted rather than counted twice.
    """
    k = minute_of(ts)
    before: int | None = None
    after: int | None = None
    for t in others:
        m = minute_of(t)
        if m <= k and (before is None or m > before):
            before = m
        if m >= k and (after is None or m < after):
            after = m
    if floor_ts is not None:
        floor = min(minute_of(floor_ts), k)
        before = floor if before is None else max(before, floor)
    lo = k if before is None else max(k, before + WINDOW_MINUTES)
    hi = k + WINDOW_MINUTES - 1 if after is None else min(k + WINDOW_MINUTES - 1, after - 1)
    return lo, hi + 1  # a pair, not a range: compiled, the caller's loop over it then allocates nothing


@dataclass
class Minute:
    """One partition's counts for one minute of event time."""

    new: int = 0
    dup: int = 0
    distinct: int = 0
    """Subjects of this stage with a new failure in the 5 minutes ending with this minute."""
    actions: dict[str, int] = field(default_factory=dict)

    def row(self, minute: int) -> list[Any]:
        return [minute, self.new, self.dup, self.distinct, self.actions]

    @classmethod
    def of_row(cls, row: Any) -> tuple[int, Minute]:
        if not (isinstance(row, list) and len(row) == 5 and all(type(x) is int for x in row[:4])):
            raise ValueError("minute row is not [minute, new, dup, distinct, actions]")
        actions = row[4]
        if not (isinstance(actions, dict) and all(type(v) is int for v in actions.values())):
            raise ValueError("minute actions are not {action: count}")
        return row[0], cls(row[1], row[2], row[3], dict(actions))


@dataclass
class PartitionCounts:
    """The minute counts of one partition of one stage, kept in the owning worker's table (``dump``/``load``)."""

    stage: Kind
    partition: int
    offset: int = -1
    """Input offset of the last record counted: the watermark that makes replays harmless (module docstring)."""
    newest_ts: int | None = None
    minutes: dict[int, Minute] = field(default_factory=dict)
    since_ts: int | None = None
    """Where this partition's knowledge begins: create it with the wall-clock time counting starts (from then on
    every failure of the partition is seen, earlier ones too, as the consumer starts at the earliest offset);
    a failure counted from before lowers it. Minutes before it are unknown rather than quiet, and the baseline
    leaves them out (``MIN_BASELINE_WINDOWS``). ``None``: nothing known yet."""
    _rows: dict[int, bytes] = field(default_factory=dict, repr=False, compare=False)
    """Each minute's encoded row as last dumped; ``count`` and ``prune`` drop the rows they change."""
    _stable: tuple[int, bytes] | None = field(default=None, repr=False, compare=False)
    """(boundary minute, the joined rows of every minute before it) as last dumped; ``count`` and ``prune``
    drop it when they change a minute before the boundary. The worker writes these counts once per batch
    and partition, and a batch changes the newest few of the ~70 minutes kept: joining only those makes
    ``dump`` several times cheaper (it was most of outage counting's cost, issue 14)."""

    def covers(self, offset: int) -> bool:
        """True when the record at ``offset`` was already counted (a replay after a crash): skip it."""
        return offset <= self.offset

    def advance(self, offset: int) -> None:
        """Mark every record up to ``offset`` counted; call after counting a record's failures."""
        self.offset = max(self.offset, offset)

    def count(
        self,
        ts: int,
        verdict: Verdict | str,
        action: str | None,
        others: Iterable[int],
        now_ms: int,
        floor_ts: int | None = None,
    ) -> None:
        """Count one failure of a subject of this partition, with the dedup's ``verdict``.

        ``others``: the subject's other failure times (``neighbours``); ``now_ms`` (wall clock) bounds the
        minutes kept: a push older than the retained range is not counted here (it is older than any figure
        shown), and a push stamped in the future counts in the current minute, so no minute that has not begun
        holds failures (its distinct windows are then approximate: the only case that is not exact).
        """
        if verdict not in _VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}")
        if verdict == Verdict.TOO_LATE:
            return
        now_minute = now_ms // MINUTE_MS
        minute = min(ts // MINUTE_MS, now_minute)
        if minute <= now_minute - RETAIN_MINUTES:
            return
        start = minute * MINUTE_MS
        if self.since_ts is None or start < self.since_ts:
            self.since_ts = start
        minutes = self.minutes
        m = minutes.get(minute)
        if m is None:
            m = minutes[minute] = Minute()
        rows = self._rows
        if minute in rows:
            del rows[minute]
        if self._stable is not None and minute < self._stable[0]:
            self._stable = None
        if verdict == Verdict.DUPLICATE:
            m.dup += 1
            return
        m.new += 1
        key = NO_ACTION if not action else action[:MAX_ACTION_LENGTH]
        actions = m.actions
        if key not in actions and len(actions) >= MAX_ACTIONS:
            key = OTHER_ACTION
        actions[key] = actions.get(key, 0) + 1
        if self.newest_ts is None or ts > self.newest_ts:
            self.newest_ts = ts
        if ts > now_ms:
            ts, others = now_ms, [min(t, now_ms) for t in others]
        lo, hi = distinct_bounds(ts, others, floor_ts)
        for j in range(lo, hi):
            d = minutes.get(j)
            if d is None:
                d = minutes[j] = Minute()
            d.distinct += 1
            if j in rows:
                del rows[j]
            if self._stable is not None and j < self._stable[0]:
                self._stable = None

    def prune(self, now_ms: int) -> None:
        cut = minute_of(now_ms) - RETAIN_MINUTES
        for minute in [m for m in self.minutes if m <= cut]:
            del self.minutes[minute]
            self._rows.pop(minute, None)
            self._stable = None

    # --- persistence (one table value per partition, versioned) ---------------------------------------------
    def dump(self) -> bytes:
        """``orjson.dumps(self._doc())``, byte for byte, from the cached rows of the minutes that did not change."""
        rows = self._rows
        minutes = self.minutes
        keys = sorted(minutes)

        def encoded(minute: int) -> bytes:
            enc = rows.get(minute)
            if enc is None:
                enc = rows[minute] = orjson.dumps(minutes[minute].row(minute))
            return enc

        if self._stable is None:
            boundary = keys[-1] - STABLE_LAG_MINUTES if keys else 0
            self._stable = (boundary, b",".join([encoded(k) for k in keys[: bisect_left(keys, boundary)]]))
        boundary, prefix = self._stable
        recent = [encoded(k) for k in keys[bisect_left(keys, boundary) :]]
        parts = [prefix, *recent] if prefix else recent
        d = orjson.dumps
        return b"".join(
            (
                b'{"v":',
                d(PARTIAL_VERSION),
                b',"k":',
                d(self.stage.value),
                b',"p":',
                d(self.partition),
                b',"o":',
                d(self.offset),
                b',"n":',
                d(self.newest_ts),
                b',"m":[',
                b",".join(parts),
                b'],"s":',
                d(self.since_ts),
                b"}",
            )
        )

    def _doc(self) -> dict[str, Any]:
        return {
            "v": PARTIAL_VERSION,
            "k": self.stage.value,
            "p": self.partition,
            "o": self.offset,
            "n": self.newest_ts,
            "m": [m.row(minute) for minute, m in sorted(self.minutes.items())],
            "s": self.since_ts,
        }

    @classmethod
    def load(cls, data: bytes) -> PartitionCounts:
        return cls._of_doc(_versioned(data, "partition counts"))

    @classmethod
    def _of_doc(cls, doc: dict[str, Any]) -> PartitionCounts:
        try:
            stage, partition, offset, newest = Kind(doc["k"]), doc["p"], doc["o"], doc["n"]
            rows, since = doc["m"], doc["s"]
        except (KeyError, ValueError) as exc:
            raise ValueError(f"partition counts without a valid {exc}") from None
        if type(partition) is not int or type(offset) is not int:
            raise ValueError("partition and offset must be integers")
        if not all(x is None or type(x) is int for x in (newest, since)):
            raise ValueError("newest and since times must be integers or null")
        if not isinstance(rows, list):
            raise ValueError("minutes are not a list")
        return cls(stage, partition, offset, newest, dict(Minute.of_row(r) for r in rows), since)

    def partial(
        self,
        now_ms: int,
        top: Sequence[tuple[str, int]] = (),
        firing: Mapping[str, int] | None = None,
        indexed: bool = True,
    ) -> Partial:
        """What to send to the aggregator now: these counts (pruned to the retained minutes), with the
        partition's top 10 of the last 10 minutes (``RecentTop``) and its firing alerts per rule, or (not
        ``indexed``: its worker is still rebuilding its index) without them."""
        self.prune(now_ms)
        return Partial(
            counts=PartitionCounts(
                self.stage,
                self.partition,
                self.offset,
                self.newest_ts,
                {k: replace(m, actions=dict(m.actions)) for k, m in self.minutes.items()},
                self.since_ts,
            ),
            top=tuple(top) if indexed else (),
            top_end=minute_of(now_ms),
            firing=dict(firing or {}) if indexed else {},
            sent_ms=now_ms,
            indexed=indexed,
        )


def _versioned(data: bytes, what: str, version: int = PARTIAL_VERSION) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{what}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{what}: expected a JSON object")
    if doc.get("v") != version:
        raise ValueError(f"{what}: unknown version {doc.get('v')!r} (this worker reads {version})")
    return doc


class RecentTop:
    """Failures per subject in the last 10 minutes of one partition, for its top 10. In memory only: the owner
    rebuilds it after a restart or rebalance from the subjects' retained failures (``advance(now)``, then ``add``
    each one: older minutes are refused at once instead of held until the next ``top``).

    Keeps a running total per subject, so ``top`` costs O(subjects), not O(failures).
    """

    def __init__(self) -> None:
        self.cut = -(2**62)  # minutes below this are outside the window
        self.by_minute: dict[int, dict[str, int]] = {}
        self.totals: dict[str, int] = {}

    def add(self, subject: str, ts: int) -> None:
        minute = minute_of(ts)
        if minute < self.cut:
            return
        bucket = self.by_minute.get(minute)
        if bucket is None:  # not ``setdefault``: it would build a dict for every failure
            bucket = self.by_minute[minute] = {}
        bucket[subject] = bucket.get(subject, 0) + 1
        self.totals[subject] = self.totals.get(subject, 0) + 1

    def advance(self, now_ms: int) -> None:
        """Drop minutes older than the last 10 (this minute and the 9 before)."""
        cut = minute_of(now_ms) - TOP_MINUTES + 1
        if cut <= self.cut:
            return
        self.cut = cut
        for minute in [m for m in self.by_minute if m < cut]:
            for subject, n in self.by_minute.pop(minute).items():
                left = self.totals[subject] - n
                if left:
                    self.totals[subject] = left
                else:
                    del self.totals[subject]

    def top(self, now_ms: int, n: int = TOP_N) -> list[tuple[str, int]]:
        """The ``n`` subjects with most failures in the last 10 minutes; ties by subject, so that the global
        top 10 is always within the union of the partitions' top 10s (the same total order everywhere)."""
        self.advance(now_ms)
        return heapq.nsmallest(n, self.totals.items(), key=_rank)


def _rank(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


@dataclass(frozen=True)
class Partial:
    """One record of the internal partials topic: a partition's absolute counts (see the module docstring)."""

    counts: PartitionCounts
    top: tuple[tuple[str, int], ...]
    top_end: int
    """Epoch minute the top-10 window ends at."""
    firing: dict[str, int]
    """Firing alerts per rule among the partition's subjects."""
    sent_ms: int
    indexed: bool = True
    """False: the sender was still rebuilding its index of the partition (``StageCore.begin_rebuild``), so the
    top 10 and firing counts are unknown and the aggregator keeps those it holds; the counts are exact."""

    @property
    def key(self) -> str:
        return f"{self.counts.stage.value}:{self.counts.partition}"

    def encode(self) -> bytes:
        doc = self.counts._doc()
        doc.update(t=[list(x) for x in self.top], te=self.top_end, f=self.firing, w=self.sent_ms)
        if not self.indexed:
            doc["x"] = 1
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def decode(cls, data: bytes) -> Partial:
        """Parse a record; ``ValueError`` naming what is wrong (never the numbers: they are personal data)."""
        doc = _versioned(data, "partial")
        counts = PartitionCounts._of_doc(doc)
        top, top_end, firing, sent = doc.get("t"), doc.get("te"), doc.get("f"), doc.get("w")
        if not (isinstance(top, list) and all(_is_top_entry(x) for x in top)):
            raise ValueError("partial: top is not [[number, failures], ...]")
        if type(top_end) is not int or type(sent) is not int:
            raise ValueError("partial: top end and send time must be integers")
        if not (isinstance(firing, dict) and all(type(v) is int for v in firing.values())):
            raise ValueError("partial: firing is not {rule: count}")
        if doc.get("x", 0) not in (0, 1):
            raise ValueError("partial: x (index pending) must be 1 or absent")
        return cls(counts, tuple((s, n) for s, n in top), top_end, firing, sent, indexed=not doc.get("x"))

    def order_key(self) -> tuple[int, int, int, bytes]:
        """Total order of partials of one partition: the later one replaces the earlier.

        The input offset comes first (the counts are a function of the offset covered), then the top-10
        window and the send time (a quiet partition's later partial has a fresher top 10), then the bytes,
        so that even two partials equal in all that merge the same in any order.
        """
        return (self.counts.offset, self.top_end, self.sent_ms, self.encode())


def _is_top_entry(x: Any) -> bool:
    return isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and type(x[1]) is int


# --- the binding_outage rule --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutagePolicy:
    """Settings of ``binding_outage`` (defaults and why: README, "Outage detection").

    * ``min_failures`` 200 in 5 minutes (40 a minute): a floor far above what a few broken numbers make (a
      ``did_hot`` needs 5 in 10 minutes), so a quiet system never pages for a handful of failures.
    * ``factor`` 4: a 5-minute total four times the usual one. Normal "binding not exist" traffic (expired
      bindings, misdials) varies by less than 2x over an hour; a broken binding integration multiplies it by
      10-100x, so 4 leaves margin on both sides.
    * ``min_callers`` 50 distinct callers: one scanner, one broken caller or one customer's device is one
      caller, however many failures it makes; an outage hits everybody who calls.
    * ``resolve_s`` 300: the total must stay below half the level it fired at for 5 minutes of wall clock, so
      a flapping outage (retries in waves) stays one alert.
    """

    min_failures: int = 200
    factor: float = 4.0
    min_callers: int = 50
    resolve_s: int = 300
    critical_factor: int = 10
    repeat_interval_s: int = 3600

    def threshold(self, baseline: float) -> int:
        return max(self.min_failures, math.ceil(self.factor * baseline))


@dataclass(frozen=True)
class Figures:
    """The inputs of the rule at one evaluation, all over the 5 minutes ending with the current minute."""

    failures: int
    callers: int
    dids: int
    baseline: float
    baseline_windows: int
    """How many 5-minute totals the baseline is the median of: only windows since counting began."""
    window_start_ms: int
    first_ts: int | None
    """Start of the first minute of the window with a failure."""
    last_ts: int | None
    """Newest failure time seen (at most ``now``)."""


@dataclass
class OutageState:
    """The rule's memory: the same lifecycle fields as ``stream.rules.AlertState``, plus the hysteresis."""

    episode: int = 0
    firing: bool = False
    severity: Severity = Severity.WARNING
    seq: int = 0
    level: int = 0
    """Threshold in force when the episode fired: severity and resolution are measured against it."""
    first_ts: int = 0
    fired_wall: int = 0
    last_emit_wall: int = 0
    below_since_wall: int | None = None

    def fingerprint(self) -> str:
        """One fingerprint per episode (``binding_outage:<hash>``): the Kafka key of its alerts, and the
        ``outageFingerprint`` of the per-number alerts emitted during it."""
        return fingerprint(Rule.BINDING_OUTAGE, f"outage#{self.episode}")

    def doc(self) -> list[Any]:
        return [
            self.episode,
            self.firing,
            self.severity.value,
            self.seq,
            self.level,
            self.first_ts,
            self.fired_wall,
            self.last_emit_wall,
            self.below_since_wall,
        ]

    @classmethod
    def of_doc(cls, doc: Any) -> OutageState:
        if not (isinstance(doc, list) and len(doc) == 9):
            raise ValueError("outage state is not a 9-item list")
        ep, firing, sev, seq, level, first, fired, emit, below = doc
        return cls(ep, bool(firing), Severity(sev), seq, level, first, fired, emit, below)


def evaluate(state: OutageState, fig: Figures, now_ms: int, policy: OutagePolicy) -> list[Alert]:
    """Apply the rule once (the aggregator calls it on every merge and on a timer). Mutates ``state``.

    Fires when the 5-minute failures reach ``max(min_failures, factor x baseline)`` and at least
    ``min_callers`` distinct callers failed in them; critical at ``critical_factor`` x that level; an update on
    a severity rise or once per repeat interval; resolved once the 5-minute total has stayed below half the
    firing level for ``resolve_s`` of wall-clock time.
    """
    if not state.firing:
        threshold = policy.threshold(fig.baseline)
        if fig.baseline_windows < MIN_BASELINE_WINDOWS:
            return []
        if fig.failures < threshold or fig.callers < policy.min_callers:
            return []
        state.episode += 1
        state.firing, state.seq, state.level = True, 0, threshold
        state.severity = _severity(fig.failures, threshold, policy)
        state.first_ts = fig.first_ts if fig.first_ts is not None else fig.window_start_ms
        state.fired_wall = state.last_emit_wall = now_ms
        state.below_since_wall = None
        return [_alert(state, fig, AlertStatus.FIRING, now_ms)]
    if fig.failures * 2 < state.level:
        if state.below_since_wall is None:
            state.below_since_wall = now_ms
        if now_ms - state.below_since_wall >= policy.resolve_s * 1000:
            state.firing = False
            state.seq += 1
            state.last_emit_wall = now_ms
            state.below_since_wall = None
            return [_alert(state, fig, AlertStatus.RESOLVED, now_ms)]
        return []
    state.below_since_wall = None
    if state.severity is Severity.WARNING and _severity(fig.failures, state.level, policy) is Severity.CRITICAL:
        state.severity = Severity.CRITICAL
    elif now_ms - state.last_emit_wall < policy.repeat_interval_s * 1000:
        return []
    state.seq += 1
    state.last_emit_wall = now_ms
    return [_alert(state, fig, AlertStatus.FIRING, now_ms)]


def next_due_ms(state: OutageState, policy: OutagePolicy) -> int | None:
    """Wall-clock time at which ``evaluate`` would resolve the outage if nothing changes, or None."""
    if not state.firing or state.below_since_wall is None:
        return None
    return state.below_since_wall + policy.resolve_s * 1000


@dataclass(frozen=True, slots=True)
class OutageRef:
    """A firing outage as the workers know it: its fingerprint, and the first event time that belongs to it
    (the start of the 5-minute window it fired on). Per-number alerts whose episode began at or after that
    time join it (``stream.rules.join_outage``)."""

    fingerprint: str
    window_start_ms: int

    @classmethod
    def fired_at(cls, fingerprint: str, fired_wall_ms: int) -> OutageRef:
        return cls(fingerprint, (minute_of(fired_wall_ms) - WINDOW_MINUTES + 1) * MINUTE_MS)


def with_outage(alerts: Sequence[Alert], outage_fingerprint: str | None) -> list[Alert]:
    """The per-number alerts, each carrying the firing outage's fingerprint (``None``: no outage, unchanged).

    ``alertId`` stays what the rule made it: a re-sent emission keeps its id even if the outage changed in
    between, so a consumer's dedup by ``alertId`` still holds.
    """
    if outage_fingerprint is None:
        return list(alerts)
    return [
        a if a.rule is Rule.BINDING_OUTAGE else a.model_copy(update={"outageFingerprint": outage_fingerprint})
        for a in alerts
    ]


def _severity(failures: int, level: int, policy: OutagePolicy) -> Severity:
    return Severity.CRITICAL if failures >= level * policy.critical_factor else Severity.WARNING


def _ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _alert(state: OutageState, fig: Figures, status: AlertStatus, now_ms: int) -> Alert:
    fp = state.fingerprint()
    alert_id = hashlib.sha256(f"{fp}|{state.episode}|{state.seq}|{status.value}".encode()).hexdigest()[:32]
    window_s = WINDOW_MINUTES * 60
    return Alert(
        alertId=alert_id,
        fingerprint=fp,
        rule=Rule.BINDING_OUTAGE,
        status=status,
        severity=state.severity,
        caller=None,
        did=None,
        count=fig.failures,
        distinctDids=fig.dids,
        threshold=state.level,
        windowSeconds=window_s,
        windowStart=_ms(fig.window_start_ms),
        windowEnd=_ms(fig.window_start_ms + window_s * 1000),
        firstOccurredAt=_ms(state.first_ts),
        lastOccurredAt=_ms(fig.last_ts if fig.last_ts is not None else state.first_ts),
        sampleRequestIds=[],
        emittedAt=_ms(now_ms),
        distinctCallers=fig.callers,
        baseline=fig.baseline,
    )


# --- the aggregator -----------------------------------------------------------------------------------------------
@dataclass
class Totals:
    """Global counts of one minute: the caller stage's counts, and the distinct DIDs of the DID stage."""

    new: int = 0
    dup: int = 0
    callers: int = 0
    dids: int = 0
    actions: dict[str, int] = field(default_factory=dict)


@dataclass
class Aggregate:
    """The aggregator's merged state: the latest partial of every (stage, partition) and the outage rule's
    state. One value in a single-partition table (``dump``/``load``)."""

    partials: dict[str, Partial] = field(default_factory=dict)
    outage: OutageState = field(default_factory=OutageState)

    def merge(self, partial: Partial) -> bool:
        """Keep ``partial`` if it is later than the one held for its partition; True if it replaced it."""
        held = self.partials.get(partial.key)
        if held is not None and not partial.indexed:  # counts only: keep the top 10 and firing counts held
            partial = replace(partial, top=held.top, top_end=held.top_end, firing=held.firing, indexed=held.indexed)
        if held is not None and held.order_key() >= partial.order_key():
            return False
        self.partials[partial.key] = partial
        return True

    def prune(self, now_ms: int) -> None:
        """Forget partitions that have not reported for the retained range (a stage shrank, a topic was
        recreated): their counts are older than anything shown, and a restarted offset must not be refused."""
        cut = now_ms - RETAIN_MINUTES * MINUTE_MS
        for key in [k for k, p in self.partials.items() if p.sent_ms < cut]:
            del self.partials[key]

    def _stage(self, stage: Kind) -> list[Partial]:
        return [p for p in self.partials.values() if p.counts.stage is stage]

    def totals(self, first: int, last: int) -> dict[int, Totals]:
        """Global counts of the minutes ``first .. last`` (epoch minutes, both included)."""
        out = {m: Totals() for m in range(first, last + 1)}
        for p in self.partials.values():
            caller_stage = p.counts.stage is Kind.CALLER
            for minute, m in p.counts.minutes.items():
                t = out.get(minute)
                if t is None:
                    continue
                if caller_stage:
                    t.new += m.new
                    t.dup += m.dup
                    t.callers += m.distinct
                    for action, n in m.actions.items():
                        t.actions[action] = t.actions.get(action, 0) + n
                else:
                    t.dids += m.distinct
        return out

    def figures(self, now_ms: int) -> Figures:
        """The rule's inputs now: the window is this minute and the 4 before it; the baseline is the median of
        the 5-minute totals of the windows ending at each of the 60 minutes before that window.

        The median, not the mean: one spike (a scanner's burst, a retry wave) moves the mean of an hour as much
        as its size, but the median not at all, and an outage must fill more than half of the trailing hour
        before it raises its own threshold.
        """
        end = minute_of(now_ms)
        start = end - WINDOW_MINUTES + 1
        first = start - BASELINE_WINDOWS - WINDOW_MINUTES + 1
        t = self.totals(first, end)
        new = [t[m].new for m in range(first, end + 1)]
        sums = [sum(new[i : i + WINDOW_MINUTES]) for i in range(len(new) - WINDOW_MINUTES + 1)]
        since = [p.counts.since_ts for p in self._stage(Kind.CALLER) if p.counts.since_ts is not None]
        known = max(first, minute_of(min(since))) if since else end + 1
        # the windows that end before the current one starts, and start at or after the first known minute
        history = sums[max(0, known - first) : -WINDOW_MINUTES]
        window = [m for m in range(start, end + 1) if t[m].new]
        newest = [p.counts.newest_ts for p in self._stage(Kind.CALLER) if p.counts.newest_ts is not None]
        return Figures(
            failures=sums[-1],
            callers=t[end].callers,
            dids=t[end].dids,
            baseline=float(statistics.median(history)) if history else 0.0,
            baseline_windows=len(history),
            window_start_ms=start * MINUTE_MS,
            first_ts=window[0] * MINUTE_MS if window else None,
            last_ts=min(max(newest), now_ms) if newest else None,
        )

    def ready(self, partitions: int) -> bool:
        """True once every partition of both stages has reported at least once (after an aggregator restart,
        within one publish interval): before that the totals are partial and the rule must not judge them."""
        return all(len(self._stage(kind)) >= partitions for kind in Kind)

    def evaluate(self, now_ms: int, policy: OutagePolicy, partitions: int) -> list[Alert]:
        """Apply ``binding_outage`` to the merged counts, once they are complete. Mutates the outage state."""
        if not self.ready(partitions):
            return []
        return evaluate(self.outage, self.figures(now_ms), now_ms, policy)

    def top(self, stage: Kind, now_ms: int) -> list[tuple[str, int]]:
        """Global top 10 of the last 10 minutes, merged from the partitions' top 10s (exact: see ``RecentTop``).
        A partition whose latest top 10 covers no minute of the last 10 (its worker is gone) adds nothing."""
        cut = minute_of(now_ms) - TOP_MINUTES
        merged: dict[str, int] = {}
        for p in self._stage(stage):
            if p.top_end > cut:
                for subject, n in p.top:
                    merged[subject] = n
        return heapq.nsmallest(TOP_N, merged.items(), key=_rank)

    def firing(self) -> dict[str, int]:
        """Firing alerts per rule: the partitions' counts plus the outage itself."""
        out = {r.value: 0 for r in Rule}
        for p in self.partials.values():
            for rule, n in p.firing.items():
                if rule in out:
                    out[rule] += n
        out[Rule.BINDING_OUTAGE.value] += int(self.outage.firing)
        return out

    def coverage(self, now_ms: int, partitions: int, fresh_ms: int) -> Coverage:
        """Partitions per stage whose partial was sent within ``fresh_ms`` (use ~3 publish intervals)."""

        def stage(kind: Kind) -> StageCoverage:
            n = sum(1 for p in self._stage(kind) if now_ms - p.sent_ms <= fresh_ms)
            return StageCoverage(reporting=n, partitions=partitions)

        return Coverage(callers=stage(Kind.CALLER), dids=stage(Kind.DID))

    def overview(self, now_ms: int, policy: OutagePolicy, partitions: int, fresh_ms: int) -> Overview:
        """The document of ``GET /v1/overview`` and ``bindwatch.overview.v1``."""
        end = minute_of(now_ms)
        rows = self.totals(end - HISTORY_MINUTES + 1, end)
        fig = self.figures(now_ms)
        o = self.outage
        return Overview(
            generatedAt=_ms(now_ms),
            minutes=[
                OverviewMinute(
                    minute=_ms(m * MINUTE_MS),
                    newFailures=t.new,
                    duplicates=t.dup,
                    actions=dict(sorted(t.actions.items())),
                    distinctCallers5m=t.callers,
                    distinctDids5m=t.dids,
                )
                for m, t in sorted(rows.items())
            ],
            outage=OutageStatus(
                status="firing" if o.firing else "quiet",
                fingerprint=o.fingerprint() if o.firing else None,
                severity=o.severity if o.firing else None,
                firingSince=_ms(o.fired_wall) if o.firing else None,
                failures5m=fig.failures,
                distinctCallers5m=fig.callers,
                distinctDids5m=fig.dids,
                baseline=fig.baseline,
                baselineWindows=fig.baseline_windows,
                threshold=policy.threshold(fig.baseline),
                minCallers=policy.min_callers,
                firingLevel=o.level if o.firing else None,
            ),
            topCallers=[TopNumber(number=s, failures=n) for s, n in self.top(Kind.CALLER, now_ms)],
            topDids=[TopNumber(number=s, failures=n) for s, n in self.top(Kind.DID, now_ms)],
            firingAlerts=self.firing(),
            partitions=self.coverage(now_ms, partitions, fresh_ms),
        )

    def outage_fingerprint(self) -> str | None:
        """What per-number alerts carry as ``outageFingerprint`` now (workers learn it from the overview)."""
        return self.outage.fingerprint() if self.outage.firing else None

    def outage_ref(self) -> OutageRef | None:
        """The firing outage as the workers use it (``OutageRef``), or None."""
        o = self.outage
        return OutageRef.fired_at(o.fingerprint(), o.fired_wall) if o.firing else None

    # --- persistence ------------------------------------------------------------------------------------------
    def dump(self, with_partials: bool = True) -> bytes:
        """The table value. Without partials it is a few bytes: every worker re-sends its partitions' absolute
        counts at each interval, so after a restart the aggregator waits for them (``ready``) rather than
        rewriting tens of kilobytes per merge."""
        parts = [orjson.loads(p.encode()) for _, p in sorted(self.partials.items())] if with_partials else []
        return orjson.dumps({"v": AGGREGATE_VERSION, "p": parts, "o": self.outage.doc()})

    @classmethod
    def load(cls, data: bytes) -> Aggregate:
        doc = _versioned(data, "aggregate", AGGREGATE_VERSION)
        agg = cls(outage=OutageState.of_doc(doc.get("o")))
        for part in doc.get("p") or []:
            agg.merge(Partial.decode(orjson.dumps(part)))
        return agg
