"""One stage of the stream (callers, or DIDs) from a batch of input to the point where its offsets may be
acknowledged: no Faust, no Kafka. Its table, alert producer, forwarder, policy and clock are passed in, so
unit tests drive it with doubles that fail between any two steps (``tests/unit/test_core.py``);
``stream.app`` only wires it to Faust.

``StageCore.process(items)`` handles one batch. Every subject in it is read from the table once, changed
in memory by ``stream.rules`` and written once. The order of the steps is what makes a crash harmless:

1. the batch's alerts are sent and *acknowledged* by the broker before any table write; after a crash in
   between, the events are processed again and yield the same alerts with the same ``alertId``s;
2. a table write stores the dedup record, the counts and the alert state of a subject as one value, so
   after a crash they cannot disagree, and a replayed event finds its dedup record or is counted anew; the
   batch's writes are acknowledged by the broker (``SubjectTable.written``) before anything else happens;
3. (caller stage) every event, duplicate or not, is forwarded to the per-DID topic after the table
   writes, so a forward lost in a crash is made good on replay; the DID stage deduplicates on its own;
4. ``process`` returns only after all of this; the agent lets Faust acknowledge the batch's offsets only
   then, and Faust flushes the producer (the forwards) before it commits them. If ``process``
   raises, the worker exits without acknowledging (``stream.app``), so the batch is replayed.

Wall-clock work (resolving quiet subjects, deleting stale ones) cannot write a table from a timer, so the
timer sends a *tick* for a subject to a topic co-partitioned with the table (``due``, ``collectable``),
and the tick comes back here as an ``Item`` without a failure.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from schemas import Alert
from schemas.events import BindingFailureFacts
from schemas.numbers import mask_number
from stream import bundle, outage, rules
from stream import state as state_format
from stream.counting import StageCounter, counts_key, is_reserved, where_reader
from stream.metrics import StreamMetrics
from stream.rules import Failure, Kind, Policy, SubjectState
from stream.state import event_times

log = logging.getLogger("bindwatch.stream")


class SubjectTable(Protocol):
    """A stage's table as the core sees it. ``where`` is the input record a subject came with: Faust
    reads and writes the partition of that record (``stream.changelog.BatchedTable``)."""

    def get(self, key: str, where: Any) -> bytes | None: ...

    def set(self, key: str, value: bytes, where: Any) -> None: ...

    def delete(self, key: str, where: Any) -> None: ...

    def items(self, partition: int | None = None) -> Iterable[tuple[str, bytes]]:
        """The subjects this worker holds (its partitions only); with ``partition``, that partition's subjects
        in ascending key order (RocksDB's order: the index rebuild relies on it, see ``StageCore.rebuild_step``)."""
        ...

    async def written(self) -> None:
        """Return once every write so far is stored durably (its changelog record acknowledged); raise
        otherwise."""
        ...


class AlertSink(Protocol):
    async def send(self, alerts: Sequence[Alert]) -> None:
        """Return only once the broker has acknowledged every alert; raise otherwise."""
        ...


class Forwarder(Protocol):
    async def forward(self, entries: Sequence[bundle.Entry]) -> None:
        """Hand the entries to the producer of the per-DID topic."""
        ...


class Item:
    """One input of a batch: a failure of subject ``key``, or (``failure`` None) a wall-clock tick for it.

    A plain class: compiled (``stream.native``), its constructor is C. Two are built per event (one per stage);
    as a named tuple each construction ran the Python ``__new__`` that ``namedtuple`` generates (with the other
    named tuples of the path, 4% of a drain's GIL profile), and a frozen dataclass's ``__init__`` set each of
    the seven fields through ``object.__setattr__``."""

    def __init__(
        self,
        key: str,
        where: Any,
        failure: Failure | None = None,
        forward: bundle.Entry | None = None,
        partition: int | None = None,
        offset: int | None = None,
        action: str | None = None,
    ) -> None:
        self.key = key
        self.where = where
        self.failure = failure
        self.forward = forward
        """Caller stage: the by-DID entry to forward (duplicates too)."""
        self.partition = partition
        """Input partition and offset of the record (outage counting: a replayed record is counted once)."""
        self.offset = offset
        self.action = action
        """Caller stage: the push's ``data.action`` (counted per action in the overview)."""


def key_text(key: Any) -> str:
    """A record's key as text (ticks are keyed by their subject)."""
    if isinstance(key, str):
        return key
    return bytes(key or b"").decode(errors="replace")


def caller_items(
    records: Sequence[Any],
    ticks_topic: str,
    decode: Callable[[bytes], BindingFailureFacts | None],
    ignored: Callable[[], None],
) -> list[Item]:
    """The caller stage's items of a batch of records (``stream.intake.Record``s or Faust events): a tick per
    record of ``ticks_topic``, keyed by its subject; a failure per event. ``decode`` returns None for a record
    it refused (having counted and logged it); an event with ``code`` 0 is no failure: ``ignored`` counts it.
    Here, in the compiled core, rather than in ``stream.app``: it runs once per event (5% of a drain's GIL
    profile as Python)."""
    items: list[Item] = []
    for ev in records:
        msg = ev.message
        if msg.topic == ticks_topic:
            items.append(Item(key_text(ev.key), ev))
            continue
        raw = msg.value  # the message's, not ``Record.value``: that property is a Python frame per record
        event = decode(raw if raw is not None else b"")
        if event is None:
            continue
        if event.code == 0:
            ignored()
            continue
        e = bundle.entry_of(event)
        f = rules.failure(e.ts, e.rid, e.did)
        items.append(Item(event.caller, ev, f, e, msg.partition, msg.offset, event.action))
    return items


def did_items(records: Sequence[Any], ticks_topic: str, invalid: Callable[[ValueError], None]) -> list[Item]:
    """The DID stage's items of a batch of records: a tick per record of ``ticks_topic``; a failure per entry
    of each by-DID bundle (``stream.bundle``). A record that is no bundle is passed to ``invalid`` (which
    counts and logs it) and skipped."""
    items: list[Item] = []
    for ev in records:
        msg = ev.message
        if msg.topic == ticks_topic:
            items.append(Item(key_text(ev.key), ev))
            continue
        raw = msg.value
        try:
            entries = bundle.decode(raw if raw is not None else b"")
        except ValueError as exc:
            invalid(exc)
            continue
        partition, offset = msg.partition, msg.offset
        for e in entries:
            items.append(Item(e.did, ev, rules.failure(e.ts, e.rid, e.caller), None, partition, offset))
    return items


class BundleForwarder:
    """Forwards entries as one bundle record per DID partition (``stream.bundle``)."""

    def __init__(self, send: Callable[[int, bytes], Awaitable[Any]], partitions: int) -> None:
        self._send = send
        self._partitions = partitions

    async def forward(self, entries: Sequence[bundle.Entry]) -> None:
        by_partition: dict[int, list[bundle.Entry]] = {}
        for e in entries:
            p = bundle.partition_for(e.did, self._partitions)
            part = by_partition.get(p)
            if part is None:  # not ``setdefault``: it would build a list for every entry
                part = by_partition[p] = []
            part.append(e)
        for partition, part in by_partition.items():
            for chunk in bundle.chunks(part):
                await self._send(partition, bundle.encode(chunk))


HOT_VALUE_BYTES = 32 * 1024 * 1024
"""Table-value bytes of the subjects a stage keeps decoded (``hot_subjects``), on top of their count: a storm's
DID holds up to 2,000 failures (~150 KB); the decoded objects take a few times their value's size."""

FAILURES_SHOWN = 500
"""Retained failures the query API lists per subject (the newest; ``retainedFailures`` counts them all)."""


def rows_in(rows: Iterable[tuple[str, bytes]], partition: int | None, partitions: int) -> list[tuple[str, bytes]]:
    """``SubjectTable.items`` for a table not stored per partition (Faust's memory store, tests' tables): all
    rows, or those of ``partition`` in ascending key order."""
    if partition is None:
        return list(rows)
    return sorted((k, v) for k, v in rows if bundle.partition_for(k, partitions) == partition)


class StageCore:
    """The batch logic of one stage, and its local index of subjects with something due on the wall clock."""

    def __init__(
        self,
        kind: Kind,
        table: SubjectTable,
        alerts: AlertSink,
        policy: Policy,
        clock: Callable[[], int],
        *,
        forwarder: Forwarder | None = None,
        metrics: StreamMetrics | None = None,
        mask: Callable[[str], str | None] = mask_number,
        counter: StageCounter | None = None,
        firing_outage: Callable[[], outage.OutageRef | None] | None = None,
        partitions: int = 8,
        hot_subjects: int = 0,
    ) -> None:
        self.kind = kind
        self.table = table
        self.alerts = alerts
        self.policy = policy
        self.clock = clock
        self.forwarder = forwarder
        self.metrics = metrics or StreamMetrics()
        self.mask = mask
        self.counter = counter
        self.partitions = partitions
        """Partitions of the stage's input (a subject's partition is ``bundle.partition_for`` of its key)."""
        """Outage counts of this stage's partitions (``stream.counting``), written before the subjects."""
        self.firing_outage = firing_outage
        """The firing outage: stamped on this stage's alerts (``stream.outage.with_outage``), and joined by
        the alerts that fired before it was known, at their subject's next tick (``rules.join_outage``)."""
        self.firing: dict[str, frozenset[str]] = {}
        """The rules firing for each subject of this worker with a firing alert (the overview's counts)."""
        self.due: dict[str, int] = {}
        """Wall-clock ms at which each firing subject of this worker may resolve."""
        self._scan: Iterator[tuple[str, bytes]] | None = None
        self._horizon = policy.horizon_ms(kind)
        self._resolve_min = min(policy.resolve_after_ms(sp) for sp in policy.specs(kind))
        self.hot_subjects = hot_subjects
        """How many decoded subjects to keep between batches (0: none), least recently written dropped first."""
        self._hot: OrderedDict[str, tuple[SubjectState, int]] = OrderedDict()
        self._hot_bytes = 0
        """Subjects as last written by this core: the table value is ``state.dump()`` of exactly this object.
        An entry is taken out while its batch runs and put back only once the batch's writes are acknowledged,
        so a failed batch leaves nothing here that the table does not hold; ``forget`` empties it whenever
        another worker may have written (a rebalance, a recovery)."""
        self._rebuild: _Rebuild | None = None
        """The index rebuild in progress (``begin_rebuild``), or None once the index covers every subject."""
        self._held: set[int] = set()
        """The partitions the index is for (the last ``begin_rebuild``'s)."""

    # --- the batch ------------------------------------------------------------------------------
    async def process(self, items: Sequence[Item]) -> None:
        """Apply one batch; return once its offsets may be acknowledged (see the module docstring)."""
        now = self.clock()
        self.metrics.batch.labels(self.kind.value).observe(len(items))
        ref = self.firing_outage() if self.firing_outage is not None else None
        states: dict[str, SubjectState | None] = {}
        where: dict[str, Any] = {}
        dirty: dict[str, None] = {}  # ordered set of keys to write
        alerts: list[Alert] = []
        forwards: list[bundle.Entry] = []
        last_ts: int | None = None
        counted: dict[int, tuple[outage.PartitionCounts, Any, int, int]] = {}  # p -> counts, where, start, last
        results: dict[str, int] = {}  # events per result, counted in the metrics once per batch
        hot = self._hot
        for item in items:
            key = item.key
            if key not in states:
                cached = hot.pop(key, None) if hot else None
                if cached is not None:
                    states[key] = cached[0]
                    self._hot_bytes -= cached[1]
                else:
                    raw = self.table.get(key, item.where)
                    states[key] = state_format.load(raw) if raw else None  # not the method: it imports per call
                    if self._rebuild is not None:
                        self._index_before_use(key, raw, item.partition, now)
                where[key] = item.where
            state = states[key]
            if item.failure is None:  # a tick
                if state is None:
                    self.due.pop(key, None)
                    continue
                resolved = rules.tick(state, now, self.policy)
                if ref is not None:
                    resolved += rules.join_outage(state, ref.fingerprint, ref.window_start_ms, now, self.policy)
                alerts += resolved
                if not state.is_firing() and now - state.last_activity_wall > self._horizon:
                    states[key] = None
                    dirty[key] = None
                elif resolved:
                    dirty[key] = None
                continue
            if item.forward is not None:
                forwards.append(item.forward)
            if state is None:
                state = states[key] = SubjectState(self.kind, key)
            outcome = rules.apply(state, item.failure, now, self.policy)
            if self.counter is not None and item.partition is not None and item.offset is not None:
                self._count(item, outcome, state, now, counted)
            results[outcome.reason] = results.get(outcome.reason, 0) + 1
            last_ts = item.failure.ts
            if outcome.counted:
                dirty[key] = None
                alerts += outcome.alerts
        stage = self.kind.value
        for reason, n in results.items():
            self.metrics.seen(stage, reason, n)
        if ref is not None:
            alerts = outage.with_outage(alerts, ref.fingerprint)
            for key in dirty:
                changed = states[key]
                if changed is not None:
                    rules.note_outage(changed, ref.fingerprint, now)
        # 1. alerts acknowledged
        await self.alerts.send(alerts)
        self._log_alerts(alerts)
        # 2. then the outage counts of each partition, before its subjects (same changelog partition, in order)
        for p, (c, at, _start, last) in counted.items():
            c.advance(last)
            self.table.set(counts_key(p), c.dump(), at)
        # 2. then each changed subject written once, and the writes acknowledged
        sizes = {key: self._write(key, states[key], where[key]) for key in dirty}
        await self.table.written()
        if self.hot_subjects:
            self._keep_hot(sizes, states)
        # 3. then (caller stage) every event forwarded
        if self.forwarder is not None and forwards:
            await self.forwarder.forward(forwards)
        self.metrics.firing.labels(self.kind.value).set(len(self.due))
        if last_ts is not None:
            self.metrics.lag.labels(self.kind.value).set(max(0.0, (now - last_ts) / 1000))

    def _keep_hot(self, sizes: dict[str, int], states: dict[str, SubjectState | None]) -> None:
        hot = self._hot
        for key, size in sizes.items():
            state = states[key]
            if state is not None:
                hot[key] = (state, size)  # taken out at the batch's start: re-inserted as the most recent
                self._hot_bytes += size
        while hot and (len(hot) > self.hot_subjects or self._hot_bytes > HOT_VALUE_BYTES):
            self._hot_bytes -= hot.popitem(last=False)[1][1]

    def forget(self) -> None:
        """Drop the decoded subjects kept between batches: the table is the truth again (after a rebalance or a
        recovery, when another worker may have written them)."""
        self._hot.clear()
        self._hot_bytes = 0

    def _count(
        self,
        item: Item,
        outcome: rules.Outcome,
        state: SubjectState,
        now: int,
        counted: dict[int, tuple[outage.PartitionCounts, Any, int, int]],
    ) -> None:
        """Count one failure in its partition's outage counts, unless its record was counted before a crash."""
        assert self.counter is not None and item.partition is not None and item.offset is not None
        assert item.failure is not None
        entry = counted.get(item.partition)
        if entry is None:
            c = self.counter.get(item.partition, where_reader(self.table.get, item.where))
            entry = counted[item.partition] = (c, item.where, c.offset, item.offset)
        c, at, start, last = entry
        if item.offset > last:
            counted[item.partition] = (c, at, start, item.offset)
        if item.offset <= start:
            return  # counted before a crash (the counts were written before the subjects)
        f = item.failure
        near = outage.neighbours(state.events, f) if outcome.counted else []
        c.count(f.ts, outcome.reason, item.action, near, now, state.floor_ts)
        if outcome.counted:
            self.counter.top(item.partition).add(item.key, f.ts)

    def _write(self, key: str, state: SubjectState | None, where: Any) -> int:
        """Write one subject (None: delete it); return the size of the value written."""
        if state is None:
            self.table.delete(key, where)
            self.due.pop(key, None)
            self.firing.pop(key, None)
            self.metrics.deleted.labels(self.kind.value).inc()
            return 0
        value = state_format.dump(state)
        self.table.set(key, value, where)
        self._note_firing(key, state)
        due = rules.next_due_ms(state, self.policy)
        if due is None:
            self.due.pop(key, None)
        else:
            self.due[key] = due
        return len(value)

    def _note_firing(self, key: str, state: SubjectState) -> None:
        if not state.alerts:  # most subjects never alerted: no generator, no set
            self.firing.pop(key, None)
            return
        firing = frozenset(str(a.rule) for a in state.alerts.values() if a.firing)  # str(): see rules._key
        if firing:
            self.firing[key] = firing
        else:
            self.firing.pop(key, None)

    def firing_counts(self, partitions: int) -> dict[int, dict[str, int]]:
        """Firing alerts per rule, per partition (a subject's partition: ``bundle.partition_for`` of its key,
        in both stages), for the outage partials."""
        out: dict[int, dict[str, int]] = {}
        for key, firing in self.firing.items():
            per = out.setdefault(bundle.partition_for(key, partitions), {})
            for rule in firing:
                per[rule] = per.get(rule, 0) + 1
        return out

    def _log_alerts(self, alerts: Sequence[Alert]) -> None:
        for a in alerts:
            self.metrics.alerts.labels(a.rule.value, a.status.value).inc()
            log.info(
                "alert %s %s %s caller=%s did=%s count=%d",
                a.rule.value,
                a.status.value,
                a.severity.value,
                self.mask(a.caller) if a.caller else None,
                self.mask(a.did) if a.did else None,
                a.count,
            )

    # --- wall clock ----------------------------------------------------------------------------
    def begin_rebuild(self, partitions: Iterable[int], keep: Iterable[int] = ()) -> None:
        """Start rebuilding the index (firing subjects, their due times, the top 10s) for the subjects of
        ``partitions`` (all this worker holds now: after a recovery or a rebalance), except those of ``keep``:
        partitions this worker held and had indexed whole before, and that nobody wrote since (``stream.app``
        compares the persisted changelog offsets), whose entries stay. Cheap: the work is done by
        ``rebuild_step``, a slice at a time, while batches run, so a worker that takes over partitions counts
        and answers at once instead of after a pass over every subject it holds (about 6 µs per recently active
        subject: 12 s at 2,000,000; issue 17), and a rebalance that moves nothing re-reads nothing.

        Why batches may run meanwhile: a subject's index entry comes from its value as it was before this
        worker changed it, exactly once. A batch that reads a subject the pass has not reached yet indexes it
        from the value it read (``_index_before_use``) and the pass skips it later; one the pass has already
        passed is indexed. The pass reads each partition in ascending key order, so "passed" is a comparison
        with the last key it read. No batch is in flight here: Faust waits for the streams to be empty
        before a rebalance (``stream_wait_empty``), and a recovery happens only within one."""
        held = set(partitions)
        keep = set(keep) & held & self.indexed_partitions()
        self.forget()
        self._scan = None
        for index in (self.due, self.firing):
            for key in [k for k in index if bundle.partition_for(k, self.partitions) not in keep]:
                del index[key]
        if self.counter is not None:
            for p in [p for p in self.counter.tops if p not in keep]:
                del self.counter.tops[p]
        self._held = held
        todo = sorted(held - keep)
        self._rebuild = _Rebuild(todo) if todo else None
        self.metrics.firing.labels(self.kind.value).set(len(self.due))
        log.info("%s index: %d partitions kept, %d to read", self.kind.value, len(keep), len(todo))

    def indexed_partitions(self) -> set[int]:
        """The partitions held whose index is whole."""
        r = self._rebuild
        return self._held - set(r.todo) if r is not None else set(self._held)

    def stop_rebuild(self) -> None:
        """Abandon the rebuild in progress (its partitions are being revoked; the next recovery starts anew)."""
        r = self._rebuild
        if r is not None:
            self._held -= set(r.todo)
        self._rebuild = None

    @property
    def rebuilding(self) -> bool:
        return self._rebuild is not None

    def indexed(self, partition: int) -> bool:
        """True when the index holds every subject of ``partition`` (its firing counts and top 10 are whole)."""
        r = self._rebuild
        return r is None or partition not in r.todo

    def pending_partitions(self) -> int:
        return 0 if self._rebuild is None else len(self._rebuild.todo)

    def rebuild_step(self, limit: int | None = None, seconds: float | None = None) -> bool:
        """Index up to ``limit`` more subjects (None: no count), for at most about ``seconds`` (None: no time
        bound; the worker bounds by time only, since a subject with thousands of failures takes far longer than
        most); True once the rebuild is complete (or none is in progress)."""
        r = self._rebuild
        if r is None:
            return True
        done, now = 0, self.clock()
        stop = None if seconds is None else time.monotonic() + seconds
        while limit is None or done < limit:
            if r.rows is None:
                if not r.todo:
                    self._rebuild = None
                    self.metrics.firing.labels(self.kind.value).set(len(self.due))
                    took = time.monotonic() - r.started
                    log.info(
                        "%s index rebuilt in %.1f s: %d subjects read, %d firing",
                        self.kind.value,
                        took,
                        r.read,
                        len(self.due),
                    )
                    return True
                r.partition = r.todo[0]
                r.rows = iter(self.table.items(r.partition))
                r.cursor = None
                r.early = r.later.pop(r.partition, set())
            p = r.todo[0]
            for key, value in r.rows:
                r.cursor = key
                done += 1
                if not is_reserved(key) and key not in r.early:
                    self._index(key, value, p, now)
                    r.read += 1
                if done == limit or (stop is not None and done % 32 == 0 and time.monotonic() >= stop):
                    return False
            else:
                r.todo.pop(0)
                r.rows = None
        return False

    def rebuild_due(self) -> None:
        """Rebuild the whole index at once, in one pass over every subject held (no batch may run meanwhile)."""
        self.begin_rebuild(())
        self._held = set(range(self.partitions))
        now = self.clock()
        for key, value in self.table.items():
            if not is_reserved(key):
                self._index(key, value, bundle.partition_for(key, self.partitions), now)
        self.metrics.firing.labels(self.kind.value).set(len(self.due))

    def _index_before_use(self, key: str, raw: bytes | None, partition: int | None, now: int) -> None:
        """A batch read ``key`` while the rebuild runs: index it from this value unless the pass has already."""
        r = self._rebuild
        assert r is not None
        p = partition if partition is not None else bundle.partition_for(key, self.partitions)
        if p not in r.todo or (p == r.partition and r.cursor is not None and key <= r.cursor):
            return  # not rebuilt here, or already read by the pass
        early = r.early if p == r.partition else r.later.setdefault(p, set())
        if key in early:
            return  # indexed by an earlier batch
        early.add(key)
        if raw is not None:
            self._index(key, raw, p, now)

    def _index(self, key: str, value: bytes, partition: int, now: int) -> None:
        firing, last = rules.peek(value)
        if self.counter is not None and last >= now - (outage.TOP_MINUTES + 1) * outage.MINUTE_MS:
            top = self.counter.top(partition)  # active lately: its failures feed the top 10
            top.advance(now)
            for ts in event_times(value):
                top.add(key, ts)
        if firing:
            self.due[key] = last + self._resolve_min
            self._note_firing(key, state_format.load(value))

    def take_due(self, now: int) -> list[str]:
        """Subjects whose alerts may resolve by ``now``, removed from the index (a tick re-adds them)."""
        keys = [key for key, due in self.due.items() if due <= now]
        for key in keys:
            del self.due[key]
        return keys

    def collectable(self, now: int, limit: int) -> list[str]:
        """Visit the next ``limit`` subjects of the local table (one pass of an iterator, resumed at every
        call) and return those quiet beyond the horizon. Reading the value's prefix is enough."""
        if self._scan is None:
            self._scan = iter(self.table.items())
        out = []
        try:
            for _ in range(limit):
                key, value = next(self._scan)
                if not is_reserved(key) and rules.collectable(value, now, self._horizon):
                    out.append(key)
        except StopIteration:
            self._scan = None
        return out

    def restart_scan(self) -> None:
        """Start the next pass over what this worker holds (its partitions changed)."""
        self._scan = None

    # --- queries -------------------------------------------------------------------------------
    def describe(self, value: bytes, label: str) -> dict[str, Any]:
        """The answer of the query API for one stored subject."""
        state = state_format.load(value)
        last = state.events[-1] if state.events else None
        last_at = datetime.fromtimestamp(last.ts / 1000, tz=UTC) if last else None
        return {
            label: state.subject,
            "retainedFailures": len(state.events),
            "lastFailureAt": last_at.isoformat().replace("+00:00", "Z") if last_at else None,
            "lastRequestId": last.rid if last else None,
            # Each retained failure, newest first (the console's number page draws its timeline from these);
            # "other" is the DID for a caller and the caller for a DID.
            "failures": [
                {
                    "at": datetime.fromtimestamp(f.ts / 1000, tz=UTC).isoformat().replace("+00:00", "Z"),
                    "requestId": f.rid,
                    "other": f.other,
                }
                for f in reversed(state.events[-FAILURES_SHOWN:])
            ],
            "windows": rules.window_counts(state, self.policy),
            "activeAlerts": [
                {
                    "rule": a.rule.value,
                    "did": a.other,
                    "severity": a.severity.value,
                    "episode": a.episode,
                    "fingerprint": rules.fingerprint(a.rule, state.subject, a.other),
                    **{k: v for k, v in a.last.items() if k in ("count", "distinct")},
                }
                for a in state.alerts.values()
                if a.firing
            ],
        }


@dataclass(slots=True)
class _Rebuild:
    """The index rebuild in progress: partitions left (``todo``, the first being read), where the pass is."""

    todo: list[int]
    partition: int | None = None
    rows: Iterator[tuple[str, bytes]] | None = None
    cursor: str | None = None
    """The last key the pass read in ``partition``."""
    early: set[str] = field(default_factory=set)
    """Keys of ``partition`` beyond the cursor that batches indexed (the pass skips them)."""
    later: dict[int, set[str]] = field(default_factory=dict)
    """The same for partitions the pass has not reached."""
    read: int = 0
    started: float = field(default_factory=time.monotonic)
