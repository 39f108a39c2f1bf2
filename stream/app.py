"""The Faust application: topics, tables, agents, timers and query pages. Run: ``faust -A stream.app worker``.

The layer is thin on purpose: each agent decodes, calls ``stream.rules``, sends what the rule returns,
and writes the table. The ordering inside an agent is what makes a crash harmless:

1. alerts are sent and *acknowledged* before the table is written; after a crash in between, the
   event is processed again and yields the same alert with the same ``alertId``;
2. the table write stores the dedup record, the counts and the alert state as one value;
3. every event (duplicate or not) is forwarded to the per-DID topic, so a forward lost in a crash is
   made good on reprocessing; the DID agent deduplicates on its own;
4. Faust flushes the producer (changelog and forwards) before it commits the input offset.

Wall-clock work (resolving quiet subjects, deleting stale ones) cannot write a table from a timer, so
the timer sends a *tick* for a subject to a topic co-partitioned with the table, and the same agent
applies it in stream context.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from pydantic import ValidationError

from schemas import Alert, BindingFailureEvent, decode, encode
from schemas.codec import headers as record_headers
from schemas.numbers import mask_number, normalise_number
from stream import faust_fixes, rules
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
    gc_keys: list[str] = field(default_factory=list)
    gc_pos: int = 0


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
        broker_session_timeout=s.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, s.session_timeout_seconds / 3),
        consumer_group_instance_id=s.group_instance_id,
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
        """Send alerts and wait for the broker's acknowledgement (before the table write)."""
        for a in alerts:
            await app.producer.send_and_wait(
                s.alerts_topic, a.fingerprint.encode(), encode(a), None, None, record_headers(a)
            )
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

    def store(stage: Stage, key: str, state: rules.SubjectState) -> None:
        stage.table[key] = state.dump()
        due = rules.next_due_ms(state, policy)
        if due is None:
            stage.due.pop(key, None)
        else:
            stage.due[key] = due
        metrics.firing.labels(stage.kind.value).set(len(stage.due))

    async def on_event(stage: Stage, key: str, raw: bytes) -> BindingFailureEvent | None:
        name = stage.kind.value
        try:
            event = decode(BindingFailureEvent, raw)
        except ValidationError as exc:
            metrics.events.labels(name, "invalid").inc()
            log.error("skipping an undecodable record on %s: %s", name, exc.errors(include_input=False)[:3])
            return None
        if event.code == 0:
            metrics.events.labels(name, "ignored").inc()
            return event
        subject = event.caller if stage.kind is rules.Kind.CALLER else event.did
        other = event.did if stage.kind is rules.Kind.CALLER else event.caller
        now = wall_ms()
        current = stage.table.get(subject)
        state = rules.SubjectState.load(current) if current else rules.SubjectState(stage.kind, subject)
        failure = rules.Failure(int(event.occurredAt.timestamp() * 1000), event.requestId, other)
        outcome = rules.apply(state, failure, now, policy)
        metrics.events.labels(name, outcome.reason).inc()
        metrics.lag.labels(name).set(max(0.0, (now - failure.ts) / 1000))
        if outcome.counted:
            await emit(outcome.alerts)
            store(stage, subject, state)
        return event

    async def on_tick(stage: Stage, key: str) -> None:
        current = stage.table.get(key)
        if current is None:
            stage.due.pop(key, None)
            return
        now = wall_ms()
        state = rules.SubjectState.load(current)
        resolved = rules.tick(state, now, policy)
        await emit(resolved)
        if not state.is_firing() and rules.collectable(state.dump(), now, policy.horizon_ms(stage.kind)):
            del stage.table[key]
            stage.due.pop(key, None)
            metrics.deleted.labels(stage.kind.value).inc()
        elif resolved:
            store(stage, key, state)

    @app.agent(app.topic(s.events_topic, s.caller_ticks_topic, key_type=str, value_type=bytes))
    async def count_by_caller(stream: Any) -> None:
        stage = stages[rules.Kind.CALLER]
        async for ev in stream.events():
            key = ev.key if isinstance(ev.key, str) else (ev.key or b"").decode(errors="replace")
            if ev.message.topic == s.caller_ticks_topic:
                await on_tick(stage, key)
                continue
            event = await on_event(stage, key, ev.value)
            if event is not None and event.code != 0:
                # Forward every event, duplicates too: a forward lost in a crash is made good on replay.
                await by_did_topic.send(key=event.did, value=ev.value, headers=ev.headers)

    @app.agent(app.topic(s.by_did_topic, s.did_ticks_topic, key_type=str, value_type=bytes))
    async def count_by_did(stream: Any) -> None:
        stage = stages[rules.Kind.DID]
        async for ev in stream.events():
            key = ev.key if isinstance(ev.key, str) else (ev.key or b"").decode(errors="replace")
            if ev.message.topic == s.did_ticks_topic:
                await on_tick(stage, key)
            else:
                await on_event(stage, key, ev.value)

    def rebuild_index(stage: Stage) -> Any:
        async def _rebuild() -> None:
            stage.due.clear()
            resolve_min = min(policy.resolve_after_ms(sp) for sp in policy.specs(stage.kind))
            for key, value in stage.table.items():
                firing, last = rules.peek(value)
                if firing:
                    stage.due[key] = last + resolve_min
            stage.gc_keys, stage.gc_pos = [], 0
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
        """Visit a slice of the local table; send a tick for each subject quiet beyond the horizon."""
        if stage.gc_pos >= len(stage.gc_keys):
            stage.gc_keys, stage.gc_pos = list(stage.table.keys()), 0
        horizon = policy.horizon_ms(stage.kind)
        end = min(stage.gc_pos + s.gc_batch, len(stage.gc_keys))
        for key in stage.gc_keys[stage.gc_pos : end]:
            value = stage.table.get(key)
            if value is not None and rules.collectable(value, now, horizon):
                await stage.ticks.send(key=key, value=b"tick")
        stage.gc_pos = end

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
