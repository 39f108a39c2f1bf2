"""The Faust application: topics, tables, agents, timers and query pages.

Run: ``faust -L uvloop -A stream.app worker`` (uvloop: the worker spends a third of its CPU in the event loop).

The layer only wires: each stage's task takes its records in batches straight from Faust's consumer
(``stream.intake``; with ``BINDWATCH_DIRECT_INPUT=false``, an agent's stream through ``compat.take_batches``),
decodes them into ``stream.core.Item``s and hands the batch to the stage's ``StageCore`` (the caller stage takes
up to ``batch_size`` events at once; the DID stage up to ``did_batch_records`` bundle records, one per caller
batch and partition, see ``stream.bundle``). The
core owns the batch logic and the order that makes a crash harmless (alerts acknowledged, then tables
written, then events forwarded, then offsets acknowledged): see ``stream.core``. Here, the adapters give
the core Faust's table, producer and topics; the stages acknowledge a batch's offsets only after
the core returned, and the worker exits if the core raises (``run_batch``). Faust internals are used only
through ``stream.compat``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.exceptions import SameNode
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from schemas import Alert, Overview, decode, encode
from schemas.codec import headers as record_headers
from schemas.events import BindingFailureFacts
from schemas.numbers import mask_number, normalise_number
from schemas.topics import OVERVIEW_KEY
from stream import compat, logs, native, outage, rules
from stream import core as core_items
from stream.changelog import BatchedTable
from stream.config import StreamSettings, get_settings
from stream.core import BundleForwarder, Item, StageCore
from stream.counting import OUTAGE_TABLE, StageCounter
from stream.intake import INTAKE_BATCHES, Intake
from stream.metrics import StreamMetrics
from stream.restore import BulkRestore

compat.apply_fixes()

log = logging.getLogger("bindwatch.stream")

EXIT_BATCH_FAILED = 70
"""Exit status of a worker whose batch failed (``run_batch``)."""


CHANGELOG_BATCH_BYTES = 256 * 1024
"""The producer's batch size: a batch's table writes to one changelog partition go as one record batch
(``stream.changelog``), which Faust's 16 KiB default split into several, each a round trip of its own."""


def wall_ms() -> int:
    return int(time.time() * 1000)


class KafkaAlerts:
    """``stream.core.AlertSink`` on the worker's producer: returns once the broker acknowledged every alert."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app = app
        self.topic = topic

    async def send(self, alerts: Sequence[Alert]) -> None:
        sent = [
            await self.app.producer.send(self.topic, a.fingerprint.encode(), encode(a), None, None, record_headers(a))
            for a in alerts
        ]
        if sent:
            compat.send_now(compat.kafka_producer(self.app), self.topic)  # no linger: the stage waits for them
            await asyncio.gather(*sent)


async def run_batch(core: StageCore, events: Sequence[Any], to_items: Callable[[Sequence[Any]], list[Item]]) -> None:
    """Turn one batch of records into items and process them, or end the worker without acknowledging it.

    If either raises, the batch's events must not be acknowledged: they would be committed with their table
    updates missing. Faust's supervisor would restart the agent on the records after them, and the passive
    reader acknowledges what it reads between the batching loop's end and its restart
    (``compat.take_batches``); so the worker exits at once (no flush, no commit), and the next start replays
    from the last commit, which the dedup makes exact.
    """
    stage = core.kind.value
    metrics = core.metrics
    try:
        started = time.monotonic()
        oldest_ms = oldest_timestamp_ms(events)
        if oldest_ms is not None:
            metrics.waited.labels(stage).observe(max(0.0, time.time() - oldest_ms / 1000))
        await core.process(to_items(events))
        metrics.batch_seconds.labels(stage).observe(time.monotonic() - started)
    except Exception:
        log.critical("a %s batch failed; exiting so that it is replayed from the last commit", stage, exc_info=True)
        logging.shutdown()
        os._exit(EXIT_BATCH_FAILED)


async def run_stage(
    app: faust.App, core: StageCore, intake: Intake, to_items: Callable[[Sequence[Any]], list[Item]]
) -> None:
    """A stage's task on the direct input: every batch through ``run_batch``; if taking batches itself fails,
    the worker exits as ``run_batch`` does (a stage that stopped would leave its partitions unread)."""
    try:
        async for records in intake.batches():
            compat.note_stream_inbound(app, records)  # Faust's livelock check: these partitions are read
            await run_batch(core, records, to_items)
    except Exception:
        log.critical("the %s stage's input failed; exiting", core.kind.value, exc_info=True)
        logging.shutdown()
        os._exit(EXIT_BATCH_FAILED)


def oldest_timestamp_ms(events: Sequence[Any]) -> int | None:
    """The earliest Kafka timestamp among a batch's records (ms), or None when they carry none."""
    stamps = [ev.message.timestamp for ev in events if ev.message.timestamp]
    return int(min(stamps) * 1000) if stamps else None


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
        table_standby_replicas=s.standby_replicas,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=s.commit_interval_seconds,
        stream_recovery_delay=0.2,
        web_host=s.web_host,
        web_port=s.web_port,
        canonical_url=s.canonical_url or f"http://{s.web_host}:{s.web_port}",
        producer_acks=-1,
        producer_linger=s.producer_linger_ms / 1000,
        producer_max_batch_size=CHANGELOG_BATCH_BYTES,
        broker_session_timeout=s.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, s.session_timeout_seconds / 3),
        consumer_group_instance_id=s.group_instance_id,
        logging_config=logs.logging_config(s),  # JSON lines at BINDWATCH_LOG_LEVEL: see stream.logs
    )
    app.bindwatch_metrics = metrics  # type: ignore[attr-defined]
    compat.use_fetch_max_wait(app, s.fetch_max_wait_ms)
    compat.without_monitor_sensor(app)
    if s.bulk_restore_seconds > 0 and s.store.startswith("rocksdb"):
        compat.use_bulk_restore(app, BulkRestore(s.kafka_bootstrap_servers, s.bulk_restore_seconds))

    def topic(name: str, **kw: Any) -> Any:
        return app.topic(name, key_type=str, value_type=bytes, partitions=s.partitions, **kw)

    by_did_topic = topic(s.by_did_topic, internal=True)
    caller_ticks = topic(s.caller_ticks_topic, internal=True)
    did_ticks = topic(s.did_ticks_topic, internal=True)

    callers = app.Table("callers", partitions=s.partitions, key_type=str, value_type=bytes)
    dids = app.Table("dids", partitions=s.partitions, key_type=str, value_type=bytes)
    for t in (callers, dids):
        compat.use_raw_keys(t)

    def mask(n: str) -> str | None:
        return mask_number(n) if s.mask_numbers_in_logs else n

    async def forward(partition: int, value: bytes) -> None:
        await by_did_topic.send(value=value, partition=partition)

    def producer() -> Any:
        return compat.kafka_producer(app)

    alerts = KafkaAlerts(app, s.alerts_topic)
    # The firing outage, as this worker last heard of it (the overview topic, or its own aggregator), and the
    # one whose alerts it last sent ticks for (see wall_clock_ticks).
    known_outage: dict[str, outage.OutageRef | None] = {"ref": None, "joined": None}
    counters = {kind: StageCounter(kind, wall_ms) for kind in rules.Kind}
    common: dict[str, Any] = {
        "metrics": metrics,
        "mask": mask,
        "firing_outage": lambda: known_outage["ref"],
        "partitions": s.partitions,
        "hot_subjects": s.hot_subjects,
    }
    caller_core = StageCore(
        rules.Kind.CALLER,
        BatchedTable(callers, producer),
        alerts,
        policy,
        wall_ms,
        forwarder=BundleForwarder(forward, s.partitions),
        counter=counters[rules.Kind.CALLER] if s.outage_detection else None,
        **common,
    )
    did_core = StageCore(
        rules.Kind.DID,
        BatchedTable(dids, producer),
        alerts,
        policy,
        wall_ms,
        counter=counters[rules.Kind.DID] if s.outage_detection else None,
        **common,
    )
    cores = ((caller_core, caller_ticks, callers), (did_core, did_ticks, dids))

    def decode_or_skip(name: str, raw: bytes) -> BindingFailureFacts | None:
        try:
            return decode(BindingFailureFacts, raw)
        except ValidationError as exc:
            metrics.seen(name, "invalid")
            log.error("skipping an undecodable record on %s: %s", name, exc.errors(include_input=False)[:3])
            return None

    def caller_decode(raw: bytes) -> BindingFailureFacts | None:
        return decode_or_skip("caller", raw)

    def ignored() -> None:
        metrics.seen("caller", "ignored")

    def undecodable_bundle(exc: ValueError) -> None:
        metrics.seen("did", "invalid")
        log.error("skipping an undecodable record on did: %s", exc)

    def caller_items(events: Sequence[Any]) -> list[Item]:
        return core_items.caller_items(events, s.caller_ticks_topic, caller_decode, ignored)

    def did_items(events: Sequence[Any]) -> list[Item]:
        return core_items.did_items(events, s.did_ticks_topic, undecodable_bundle)

    caller_input = app.topic(s.events_topic, s.caller_ticks_topic, key_type=str, value_type=bytes)
    did_input = app.topic(s.by_did_topic, s.did_ticks_topic, key_type=str, value_type=bytes)
    if s.direct_input:
        # Records wait for a stage, before the fetch of their partition pauses, up to 16 batches (at least what an
        # agent's queue held, Faust's stream_buffer_maxsize): each pause and resume costs the stage a fetch round
        # trip, and at 4 batches the caller stage waited for input a third of a drain (bench/README.md).
        most = app.conf.stream_buffer_maxsize
        wait = s.batch_wait_ms / 1000
        caller_intake = Intake(
            app, caller_input.topics, s.batch_size, wait, limit=max(most, INTAKE_BATCHES * s.batch_size)
        )
        did_intake = Intake(
            app, did_input.topics, s.did_batch_records, wait, limit=max(most, INTAKE_BATCHES * s.did_batch_records)
        )
        compat.use_intake(app, caller_input, caller_intake)
        compat.use_intake(app, did_input, did_intake)

        @app.task  # type: ignore[untyped-decorator]
        async def count_by_caller() -> None:
            """Events in batches: each caller read and written once per batch; one by-DID bundle per partition."""
            await run_stage(app, caller_core, caller_intake, caller_items)

        @app.task  # type: ignore[untyped-decorator]
        async def count_by_did() -> None:
            """Bundles (and ticks) in batches: each DID in a batch read and written once."""
            await run_stage(app, did_core, did_intake, did_items)

    else:

        @app.agent(caller_input)
        async def count_by_caller(stream: Any) -> None:
            async for events in compat.take_batches(stream, s.batch_size, s.batch_wait_ms / 1000):
                compat.note_stream_inbound(app, events)
                await run_batch(caller_core, events, caller_items)

        @app.agent(did_input)
        async def count_by_did(stream: Any) -> None:
            async for events in compat.take_batches(stream, s.did_batch_records, s.batch_wait_ms / 1000):
                compat.note_stream_inbound(app, events)
                await run_batch(did_core, events, did_items)

    def held(topic: str) -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}

    def stored_offset(table: Any, partition: int) -> int | None:
        """The changelog offset the local store holds a partition up to (None: the store does not say)."""
        offset: int | None = table.data.persisted_offset(TP(table.changelog_topic.get_topic_name(), partition))
        return offset

    # Per stage: the partitions whose index was whole at the last revoke, and their stored offsets then. A
    # partition held again whose offset has not moved was written by nobody since: its index stays valid.
    indexed_at_revoke: dict[rules.Kind, dict[int, int | None]] = {kind: {} for kind in rules.Kind}

    def rebuild_index(core: StageCore, table: Any, topic: str) -> Any:
        async def _rebuild() -> None:
            # Only started here: the pass runs in rebuild_indexes, beside the batches, so the worker counts
            # and answers as soon as its tables are recovered (StageCore.begin_rebuild says why that is safe).
            before = indexed_at_revoke[core.kind]
            keep = {p for p, at in before.items() if at is not None and stored_offset(table, p) == at}
            core.begin_rebuild(held(topic), keep)
            before.clear()
            known_outage["joined"] = None  # subjects this worker now holds may not have joined a firing outage

        return _rebuild

    callers.on_recover(rebuild_index(caller_core, callers, s.events_topic))
    dids.on_recover(rebuild_index(did_core, dids, s.by_did_topic))

    @app.task  # type: ignore[untyped-decorator]
    async def at_start() -> None:
        """Once, at start (logging is configured by then): the cycle collector's threshold, compiled or source and
        why (``stream.native``), and the long-poll the consumer really uses (``stream.compat``)."""
        metrics.time_gc()
        if s.gc_threshold:
            gc.collect()
            gc.freeze()  # what start-up loaded lives as long as the process: never scan it again
            _, gen1, gen2 = gc.get_threshold()
            gc.set_threshold(s.gc_threshold, gen1, gen2)
            log.info("cycle collector: %d objects frozen, threshold %s", gc.get_freeze_count(), gc.get_threshold())
        compiled = native.running_compiled()
        metrics.compiled_core.set(1 if compiled else 0)
        if compiled:
            log.info("stream core: compiled (%s)", native.STATUS.reason)
        else:
            log.warning(
                "stream core: Python source, ~1.2x the CPU per event of the compiled one (%s)", native.STATUS.reason
            )
        for _ in range(300):  # the consumer's fetcher exists once the consumer thread has started it (~seconds)
            wait = compat.fetch_max_wait(app)
            if wait is not None:
                log.info("consumer fetch long-poll: %d ms", wait)
                return
            await asyncio.sleep(0.1)
        log.warning("consumer fetch long-poll: unknown (the consumer had not started its fetcher after 30 s)")

    @app.task  # type: ignore[untyped-decorator]
    async def rebuild_indexes() -> None:
        """Drive the index rebuilds a slice at a time (a few ms each), yielding to the batches in between."""
        while True:
            busy = False
            for core, _ticks, _table in cores:
                if core.rebuilding and not app.rebalancing:
                    busy = True
                    if core.rebuild_step(seconds=s.rebuild_slice_ms / 1000):
                        known_outage["joined"] = None  # now every firing subject is known: join them (ticks)
                    await asyncio.sleep(0)
            if not busy:
                await asyncio.sleep(0.1)

    @app.timer(interval=s.tick_seconds)  # type: ignore[untyped-decorator]
    async def wall_clock_ticks() -> None:
        """Send a tick for each subject with something due, and for each quiet beyond the horizon (the
        garbage-collection scan visits ``gc_batch`` subjects per tick)."""
        if app.rebalancing:
            return
        now = wall_ms()
        ref = known_outage["ref"]
        rebuilt = not any(core.rebuilding for core, _ticks, _table in cores)
        if ref is not None and ref != known_outage["joined"] and rebuilt:
            # An outage fired: every subject with a firing alert gets a tick, at which the alerts that began
            # within the outage's window join it (rules.join_outage), so Alertmanager's inhibition mutes them.
            for core, ticks, _table in cores:
                for key in list(core.firing):
                    await ticks.send(key=key, value=b"tick")
        known_outage["joined"] = ref
        for core, ticks, _table in cores:
            for key in core.take_due(now):
                await ticks.send(key=key, value=b"tick")
            for key in core.collectable(now, s.gc_batch):
                await ticks.send(key=key, value=b"tick")

    async def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        for core, _ticks, table in cores:
            core.restart_scan()  # start the next pass over what this worker holds after the rebalance
            core.forget()  # another worker may write these subjects now: read them from the table again
            core.stop_rebuild()  # the next recovery reads the partitions whose index is not whole then
            indexed_at_revoke[core.kind] = {p: stored_offset(table, p) for p in core.indexed_partitions()}
        for counter in counters.values():
            counter.forget_counts()  # read back from the table: another worker may have counted meanwhile
        known_outage["joined"] = None

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]  # mode's receiver type is too narrow

    def subject_view(core: StageCore, table: Any, label: str) -> type[View]:
        class SubjectView(View):
            async def get(self, request: Request, number: str) -> Response:
                key = normalise_number(number)
                try:
                    return await app.router.route_req(table.name, key, self.web, request)
                except SameNode:
                    pass
                except Exception as exc:  # routing needs assignment metadata; say so instead of crashing
                    return self.json({"error": "not_ready", "message": f"cannot route yet: {exc!r}"}, status=503)
                value = table.get(key)
                if value is None:
                    return self.json(
                        {"error": "not_found", "message": f"no recent failures for this {label}"}, status=404
                    )
                return self.json(core.describe(value, label))

        return SubjectView

    # --- outage detection and the overview (stream/outage.py, docs/outage.md) ----------------------------------
    outage_policy = s.outage_policy()
    partials_topic = app.topic(s.outage_partials_topic, key_type=str, value_type=bytes, partitions=1, internal=True)
    outage_table = app.Table(OUTAGE_TABLE, partitions=1, key_type=str, value_type=bytes)
    compat.use_raw_keys(outage_table)
    fresh_ms = int(3 * s.outage_publish_seconds * 1000)
    aggregator: dict[str, Any] = {"agg": None, "published": 0}

    def stage_topics() -> dict[rules.Kind, str]:
        return {rules.Kind.CALLER: s.events_topic, rules.Kind.DID: s.by_did_topic}

    @app.timer(interval=s.outage_publish_seconds)  # type: ignore[untyped-decorator]
    async def send_partials() -> None:
        """Each owned partition's absolute counts to the aggregator: one record per partition and stage.

        A partition no batch has touched since this worker got it is read from the table first (its key is
        unique to it, so no current event is needed), but only once recovery has completed: counts read
        half-restored would be written back by the next batch."""
        if not s.outage_detection or app.rebalancing or not compat.recovery_completed(app):
            return
        now = wall_ms()
        stage_cores = {rules.Kind.CALLER: (caller_core, callers), rules.Kind.DID: (did_core, dids)}
        for kind, name in stage_topics().items():
            core, table = stage_cores[kind]
            mine = held(name)
            for p in mine:
                counters[kind].get(p, table.get)
            firing = core.firing_counts(s.partitions)
            # a partition whose index is still being rebuilt would report too few firing alerts and a partial
            # top 10: it sends its counts only, and the aggregator keeps the firing counts and top 10 it holds
            unindexed = {p for p in mine if not core.indexed(p)}
            for partial in counters[kind].partials(now, mine, firing, unindexed):
                await partials_topic.send(key=partial.key, value=partial.encode())

    async def publish_overview(agg: outage.Aggregate, now: int) -> None:
        doc = agg.overview(now, outage_policy, s.partitions, fresh_ms)
        await app.producer.send(s.overview_topic, OVERVIEW_KEY.encode(), encode(doc), None, None, record_headers(doc))
        aggregator["published"] = now

    @app.agent(partials_topic)
    async def aggregate(stream: Any) -> None:
        """The one aggregator (the owner of the partials topic's one partition): merge, judge, publish."""
        async for ev in stream.events():
            agg: outage.Aggregate | None = aggregator["agg"]
            if agg is None:
                raw = outage_table.get(OVERVIEW_KEY)
                agg = aggregator["agg"] = outage.Aggregate.load(raw) if raw else outage.Aggregate()
            try:
                agg.merge(outage.Partial.decode(ev.value))
            except ValueError as exc:
                metrics.seen("outage", "invalid")
                log.error("skipping an undecodable outage partial: %s", exc)
                continue
            now = wall_ms()
            agg.prune(now)
            before = agg.outage.doc()
            raised = agg.evaluate(now, outage_policy, s.partitions)
            if raised:
                await alerts.send(raised)  # acknowledged before the state is written: a re-send has the same id
                for a in raised:
                    metrics.alerts.labels(a.rule.value, a.status.value).inc()
                    log.info("alert %s %s %s count=%d", a.rule.value, a.status.value, a.severity.value, a.count)
            if agg.outage.doc() != before:
                outage_table[OVERVIEW_KEY] = agg.dump(with_partials=False)
            known_outage["ref"] = agg.outage_ref()
            if raised or now - aggregator["published"] >= s.overview_publish_seconds * 1000:
                await publish_overview(agg, now)

    @app.task  # type: ignore[untyped-decorator]
    async def follow_overview() -> None:
        """Every worker reads the overview topic (no consumer group: all of them read it) to learn of a firing
        outage: its aggregator publishes at once when the outage changes."""
        tp = TopicPartition(s.overview_topic, 0)
        while True:
            consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap_servers, enable_auto_commit=False)
            try:
                await consumer.start()
                consumer.assign([tp])
                await consumer.seek_to_end(tp)
                end = await consumer.position(tp)
                if end > 0:
                    consumer.seek(tp, end - 1)
                while True:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for record in batch.get(tp, []):
                        try:
                            doc = decode(Overview, record.value or b"")
                        except ValidationError:
                            continue
                        if aggregator["agg"] is None:  # the aggregator's own knowledge is fresher
                            o = doc.outage
                            known_outage["ref"] = (
                                outage.OutageRef.fired_at(o.fingerprint, int(o.firingSince.timestamp() * 1000))
                                if o.fingerprint is not None and o.firingSince is not None
                                else None
                            )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cannot read %s (retrying): %r", s.overview_topic, exc)
                await asyncio.sleep(2)
            finally:
                await consumer.stop()

    @app.page("/v1/overview")
    class OverviewView(View):
        async def get(self, request: Request) -> Response:
            try:
                return await app.router.route_req(outage_table.name, OVERVIEW_KEY, self.web, request)
            except SameNode:
                pass
            except Exception as exc:  # routing needs assignment metadata; say so instead of crashing
                return self.json({"error": "not_ready", "message": f"cannot route yet: {exc!r}"}, status=503)
            agg = aggregator["agg"]
            if agg is None:
                msg = "no counts have reached the aggregator yet"
                return self.json({"error": "not_ready", "message": msg}, status=503)
            doc = agg.overview(wall_ms(), outage_policy, s.partitions, fresh_ms)
            return self.bytes(encode(doc), content_type="application/json")

    app.page("/v1/callers/{number}")(subject_view(caller_core, callers, "caller"))
    app.page("/v1/dids/{number}")(subject_view(did_core, dids, "did"))

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Request) -> Response:
        return web.bytes(  # type: ignore[no-any-return]
            generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0]
        )

    @app.page("/healthz")
    async def healthz(web: Any, request: Request) -> Response:
        return web.json({"status": "alive"})  # type: ignore[no-any-return]

    @app.page("/readyz")
    async def readyz(web: Any, request: Request) -> Response:
        recovered = compat.recovery_completed(app)
        crashed = compat.crashed_agents(app)
        ready = recovered and not app.rebalancing and not crashed
        return web.json(  # type: ignore[no-any-return]
            {
                "status": "ready" if ready else "not ready",
                "recovered": recovered,
                "rebalancing": bool(app.rebalancing),
                "crashedAgents": crashed,
                # partitions whose index of firing subjects is still being rebuilt (counts and answers are
                # exact meanwhile; resolutions and the overview's firing counts of those partitions wait)
                "indexPending": {core.kind.value: core.pending_partitions() for core, _t, _tb in cores},
            },
            status=200 if ready else 503,
        )

    return app


app = create_app()
