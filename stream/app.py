"""The Faust application: topics, tables, agents, timers and query pages. Run: ``faust -A stream.app worker``.

The layer is thin on purpose: each agent decodes, calls ``stream.rules``, sends what the rule returns,
and writes the table. It works in batches (the caller agent takes up to ``batch_size`` events; the DID
agent gets one bundle record per caller batch and partition, see ``stream.bundle``): every subject in a
batch is read once, changed in memory and written once. The ordering inside a batch is what makes a crash
harmless:

1. the batch's alerts are sent and *acknowledged* before any table write; after a crash in between, the
   events are processed again and yield the same alerts with the same ``alertId``s;
2. a table write stores the dedup record, the counts and the alert state of a subject as one value;
3. every event (duplicate or not) is forwarded to the per-DID topic, so a forward lost in a crash is
   made good on reprocessing; the DID agent deduplicates on its own;
4. the batch's offsets are acknowledged only after all of this (``take_events``), and Faust flushes the
   producer (changelogs and forwards) before it commits them.

Wall-clock work (resolving quiet subjects, deleting stale ones) cannot write a table from a timer, so
the timer sends a *tick* for a subject to a topic co-partitioned with the table, and the same agent
applies it in stream context.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.exceptions import SameNode
from faust.streams import _current_event  # private: see use_event
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from pydantic import ValidationError

from schemas import Alert, BindingFailureEvent, decode, encode
from schemas.codec import headers as record_headers
from schemas.numbers import mask_number, normalise_number
from stream import bundle, faust_fixes, logs, rules
from stream.config import StreamSettings, get_settings

faust_fixes.apply()

log = logging.getLogger("bindwatch.stream")


def wall_ms() -> int:
    return int(time.time() * 1000)


class StreamMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "bindwatch_stream_events",
            "Events seen by stage and result (new, duplicate, too_late, invalid, ignored).",
            ["stage", "result"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "bindwatch_stream_alerts",
            "Alerts emitted by rule and status.",
            ["rule", "status"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "bindwatch_stream_event_time_lag_seconds",
            "Wall clock minus the occurrence time of the last event processed, by stage.",
            ["stage"],
            registry=self.registry,
        )
        self.deleted = Counter(
            "bindwatch_stream_subjects_deleted",
            "Quiet subjects removed from state.",
            ["stage"],
            registry=self.registry,
        )
        self.firing = Gauge(
            "bindwatch_stream_firing_subjects",
            "Subjects with a firing alert on this worker.",
            ["stage"],
            registry=self.registry,
        )


@dataclass
class Stage:
    """One subject kind: its table, input topic, tick topic and local index of what is due."""

    kind: rules.Kind
    table: Any
    ticks: Any
    due: dict[str, int] = field(default_factory=dict)
    gc_iter: Iterator[tuple[str, bytes]] | None = None


def use_event(ev: Any) -> None:
    """Make ``ev`` Faust's current event in this task: table reads and writes go to its partition.

    Faust finds the partition of a table operation from the current event (a context variable that its
    stream sets per message). With ``take_events`` the stream runs in another task, so the agent sets it
    for each subject it writes. (Private: faust-streaming 0.15.3 ``faust.streams._current_event``;
    ``check_changelog_partitions`` in the two-worker test of ``tests/integration/test_stream.py`` catches a
    change.)
    """
    _current_event.set(weakref.ref(ev))


class Batch:
    """The subjects one batch touches: each read from the table once, changed in memory, written once."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.now = wall_ms()
        self.states: dict[str, rules.SubjectState | None] = {}
        self.events: dict[str, Any] = {}  # key -> an event of its partition
        self.dirty: dict[str, None] = {}  # ordered set of keys to write
        self.alerts: list[Alert] = []
        self.last_ts: int | None = None

    def state(self, key: str, ev: Any) -> rules.SubjectState | None:
        if key in self.states:
            return self.states[key]
        use_event(ev)
        raw = self.stage.table.get(key)
        state = rules.SubjectState.load(raw) if raw else None
        self.states[key] = state
        self.events[key] = ev
        return state

    def put(self, key: str, state: rules.SubjectState | None) -> None:
        """Keep ``state`` for writing (``None``: delete the subject)."""
        self.states[key] = state
        self.dirty[key] = None

    def changed(self) -> Iterator[tuple[str, rules.SubjectState | None]]:
        for key in self.dirty:
            yield key, self.states[key]


def create_app(settings: StreamSettings | None = None) -> faust.App:
    s = settings or get_settings()
    policy = s.policy()
    metrics = StreamMetrics()
    app = faust.App(
        s.app_id,
        broker=[f"kafka://{b.strip()}" for b in s.kafka_bootstrap_servers.split(",")],
        store=s.store,
        datadir=s.data_dir,
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication_factor,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=s.commit_interval_seconds,
        stream_recovery_delay=0.2,
        web_host=s.web_host,
        web_port=s.web_port,
        canonical_url=s.canonical_url or f"http://{s.web_host}:{s.web_port}",
        producer_acks=-1,
        producer_linger=s.producer_linger_ms / 1000,
        broker_session_timeout=s.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, s.session_timeout_seconds / 3),
        consumer_group_instance_id=s.group_instance_id,
        logging_config=logs.logging_config(s),  # JSON lines at BINDWATCH_LOG_LEVEL: see stream.logs
    )
    app.bindwatch_metrics = metrics  # type: ignore[attr-defined]

    def topic(name: str, **kw: Any) -> Any:
        return app.topic(name, key_type=str, value_type=bytes, partitions=s.partitions, **kw)

    by_did_topic = topic(s.by_did_topic, internal=True)
    caller_ticks = topic(s.caller_ticks_topic, internal=True)
    did_ticks = topic(s.did_ticks_topic, internal=True)

    # Raw UTF-8 keys: query routing hashes the serialised key, which must equal the producer's key bytes
    # (a JSON-quoted key would hash to another partition and route queries to the wrong worker).
    # (Faust derives a table's key serializer from key_type and falls back to JSON for str; override it.)
    callers = app.Table("callers", partitions=s.partitions, key_type=str, value_type=bytes)
    dids = app.Table("dids", partitions=s.partitions, key_type=str, value_type=bytes)
    for t in (callers, dids):
        t.key_serializer = "raw"  # type: ignore[attr-defined]
        t.changelog_topic = t._new_changelog_topic()  # type: ignore[attr-defined]
    stages = {
        rules.Kind.CALLER: Stage(rules.Kind.CALLER, callers, caller_ticks),
        rules.Kind.DID: Stage(rules.Kind.DID, dids, did_ticks),
    }

    def mask(n: str) -> str | None:
        return mask_number(n) if s.mask_numbers_in_logs else n

    async def emit(alerts: list[Alert]) -> None:
        """Send alerts and wait for the broker's acknowledgement of all of them (before the table write)."""
        sent = [
            await app.producer.send(s.alerts_topic, a.fingerprint.encode(), encode(a), None, None, record_headers(a))
            for a in alerts
        ]
        if sent:
            await asyncio.gather(*sent)
        for a in alerts:
            metrics.alerts.labels(a.rule.value, a.status.value).inc()
            log.info(
                "alert %s %s %s caller=%s did=%s count=%d",
                a.rule.value,
                a.status.value,
                a.severity.value,
                mask(a.caller) if a.caller else None,
                mask(a.did) if a.did else None,
                a.count,
            )

    events_seen: dict[tuple[str, str], Any] = {}

    def seen(stage: str, result: str) -> None:
        child = events_seen.get((stage, result))
        if child is None:
            child = events_seen[(stage, result)] = metrics.events.labels(stage, result)
        child.inc()

    def decode_or_skip(name: str, raw: bytes) -> BindingFailureEvent | None:
        try:
            return decode(BindingFailureEvent, raw)
        except ValidationError as exc:
            seen(name, "invalid")
            log.error("skipping an undecodable record on %s: %s", name, exc.errors(include_input=False)[:3])
            return None

    def on_failure(batch: Batch, subject: str, failure: rules.Failure, ev: Any) -> None:
        state = batch.state(subject, ev)
        if state is None:
            state = rules.SubjectState(batch.stage.kind, subject)
        outcome = rules.apply(state, failure, batch.now, policy)
        seen(batch.stage.kind.value, outcome.reason)
        batch.last_ts = failure.ts
        if outcome.counted:
            batch.put(subject, state)
            batch.alerts += outcome.alerts

    def on_tick(batch: Batch, key: str, ev: Any) -> None:
        stage = batch.stage
        state = batch.state(key, ev)
        if state is None:
            stage.due.pop(key, None)
            return
        resolved = rules.tick(state, batch.now, policy)
        batch.alerts += resolved
        if not state.is_firing() and rules.collectable(state.dump(), batch.now, policy.horizon_ms(stage.kind)):
            batch.put(key, None)
        elif resolved:
            batch.put(key, state)

    async def finish(batch: Batch) -> None:
        """Send the batch's alerts and wait for the broker's acknowledgement, then write every changed
        subject once (the order that makes a crash in between harmless: see the module docstring)."""
        await emit(batch.alerts)
        stage = batch.stage
        for key, state in batch.changed():
            use_event(batch.events[key])  # the table writes to the partition of the current event
            if state is None:
                del stage.table[key]
                stage.due.pop(key, None)
                metrics.deleted.labels(stage.kind.value).inc()
                continue
            stage.table[key] = state.dump()
            due = rules.next_due_ms(state, policy)
            if due is None:
                stage.due.pop(key, None)
            else:
                stage.due[key] = due
        metrics.firing.labels(stage.kind.value).set(len(stage.due))
        if batch.last_ts is not None:
            metrics.lag.labels(stage.kind.value).set(max(0.0, (batch.now - batch.last_ts) / 1000))

    def key_of(ev: Any) -> str:
        return ev.key if isinstance(ev.key, str) else (ev.key or b"").decode(errors="replace")

    @app.agent(app.topic(s.events_topic, s.caller_ticks_topic, key_type=str, value_type=bytes))
    async def count_by_caller(stream: Any) -> None:
        """Events in batches: each caller read and written once per batch; one by-DID bundle per partition."""
        stage = stages[rules.Kind.CALLER]
        name = stage.kind.value
        async for events in stream.take_events(s.batch_size, within=s.batch_wait_ms / 1000):
            batch = Batch(stage)
            bundles: dict[int, list[bundle.Entry]] = {}
            for ev in events:
                if ev.message.topic == s.caller_ticks_topic:
                    on_tick(batch, key_of(ev), ev)
                    continue
                event = decode_or_skip(name, ev.value)
                if event is None:
                    continue
                if event.code == 0:
                    seen(name, "ignored")
                    continue
                entry = bundle.entry_of(event)
                on_failure(batch, event.caller, rules.Failure(entry.ts, entry.rid, entry.did), ev)
                # Forward every event, duplicates too: a forward lost in a crash is made good on replay.
                bundles.setdefault(bundle.partition_for(entry.did, s.partitions), []).append(entry)
            await finish(batch)
            for partition, entries in bundles.items():
                for chunk in bundle.chunks(entries):
                    await by_did_topic.send(value=bundle.encode(chunk), partition=partition)

    @app.agent(app.topic(s.by_did_topic, s.did_ticks_topic, key_type=str, value_type=bytes))
    async def count_by_did(stream: Any) -> None:
        stage = stages[rules.Kind.DID]
        name = stage.kind.value
        async for ev in stream.events():
            batch = Batch(stage)
            if ev.message.topic == s.did_ticks_topic:
                on_tick(batch, key_of(ev), ev)
            else:
                try:
                    entries = bundle.decode(ev.value)
                except ValueError as exc:
                    seen(name, "invalid")
                    log.error("skipping an undecodable record on %s: %s", name, exc)
                    continue
                for e in entries:
                    on_failure(batch, e.did, rules.Failure(e.ts, e.rid, e.caller), ev)
            await finish(batch)

    def rebuild_index(stage: Stage) -> Any:
        async def _rebuild() -> None:
            stage.due.clear()
            resolve_min = min(policy.resolve_after_ms(sp) for sp in policy.specs(stage.kind))
            for key, value in stage.table.items():
                firing, last = rules.peek(value)
                if firing:
                    stage.due[key] = last + resolve_min
            stage.gc_iter = None
            metrics.firing.labels(stage.kind.value).set(len(stage.due))

        return _rebuild

    callers.on_recover(rebuild_index(stages[rules.Kind.CALLER]))
    dids.on_recover(rebuild_index(stages[rules.Kind.DID]))

    @app.timer(interval=s.tick_seconds)  # type: ignore[untyped-decorator]
    async def wall_clock_ticks() -> None:
        if app.rebalancing:
            return
        now = wall_ms()
        for stage in stages.values():
            for key, due in list(stage.due.items()):
                if due <= now:
                    stage.due.pop(key, None)
                    await stage.ticks.send(key=key, value=b"tick")
            await gc_step(stage, now)

    async def gc_step(stage: Stage, now: int) -> None:
        """Visit the next ``gc_batch`` subjects of the local table (one pass of a RocksDB iterator, resumed at
        every tick); send a tick for each quiet beyond the horizon. Reading the value's prefix is enough."""
        if stage.gc_iter is None:
            stage.gc_iter = iter(stage.table.items())
        horizon = policy.horizon_ms(stage.kind)
        try:
            for _ in range(s.gc_batch):
                key, value = next(stage.gc_iter)
                if rules.collectable(value, now, horizon):
                    await stage.ticks.send(key=key, value=b"tick")
        except StopIteration:
            stage.gc_iter = None

    async def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        for stage in stages.values():
            stage.gc_iter = None  # start the next pass over what this worker holds after the rebalance

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]  # mode's receiver type is too narrow

    def subject_view(stage: Stage, label: str) -> type[View]:
        class SubjectView(View):
            async def get(self, request: Request, number: str) -> Response:
                key = normalise_number(number)
                try:
                    return await app.router.route_req(stage.table.name, key, self.web, request)
                except SameNode:
                    pass
                except Exception as exc:  # routing needs assignment metadata; say so instead of crashing
                    return self.json({"error": "not_ready", "message": f"cannot route yet: {exc!r}"}, status=503)
                value = stage.table.get(key)
                if value is None:
                    return self.json(
                        {"error": "not_found", "message": f"no recent failures for this {label}"}, status=404
                    )
                state = rules.SubjectState.load(value)
                return self.json(describe(state, label))

        return SubjectView

    def describe(state: rules.SubjectState, label: str) -> dict[str, Any]:
        last = state.events[-1] if state.events else None
        return {
            label: state.subject,
            "retainedFailures": len(state.events),
            "lastFailureAt": rules._ms(last.ts).isoformat().replace("+00:00", "Z") if last else None,
            "lastRequestId": last.rid if last else None,
            "windows": rules.window_counts(state, policy),
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

    app.page("/v1/callers/{number}")(subject_view(stages[rules.Kind.CALLER], "caller"))
    app.page("/v1/dids/{number}")(subject_view(stages[rules.Kind.DID], "did"))

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Request) -> Response:
        return web.bytes(  # type: ignore[no-any-return]
            generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0]
        )

    @app.page("/healthz")
    async def healthz(web: Any, request: Request) -> Response:
        return web.json({"status": "alive"})  # type: ignore[no-any-return]

    def crashed_agents() -> list[str]:
        """Agents whose actor crashed (mode's private ``_crashed`` event, faust-streaming 0.15.3): a worker
        that counts nothing any more must not look ready."""
        out = []
        for name, agent in app.agents.items():
            for actor in list(getattr(agent, "_actors", ())):
                ev = getattr(actor, "_crashed", None)
                if ev is not None and ev.is_set():
                    out.append(str(name))
        return out

    @app.page("/readyz")
    async def readyz(web: Any, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        crashed = crashed_agents()
        ready = recovered and not app.rebalancing and not crashed
        return web.json(  # type: ignore[no-any-return]
            {
                "status": "ready" if ready else "not ready",
                "recovered": recovered,
                "rebalancing": bool(app.rebalancing),
                "crashedAgents": crashed,
            },
            status=200 if ready else 503,
        )

    return app


app = create_app()
