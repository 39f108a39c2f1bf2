"""The console's Kafka side: rebuild the view from the beginning of the alerts topic, then follow it.

Every partition is assigned to this one consumer (the console runs as one replica; it needs the whole topic)
and read from the beginning at start, whatever was committed: the topic is compacted by fingerprint, so
reading it through gives the latest change of every alert, as a Kafka Streams KTable would. The view is ready
("rebuilt") once the consumer has reached the end offsets it saw at start. Offsets are committed to the group
``BINDWATCH_CONSOLE_GROUP_ID`` only for records the view has applied (so lag shows in the usual tools), never
ahead of them.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from console.alertmanager import Alertmanagers
from console.config import ConsoleSettings
from console.mapping import labels
from console.observability import ConsoleMetrics
from console.records import AlertChange
from console.view import AlertView, Applied
from schemas.alerts import AlertStatus
from schemas.codec import decode
from schemas.numbers import mask_number
from schemas.overview import Overview

log = logging.getLogger("bindwatch.console")
COMMIT_INTERVAL_SECONDS = 1.0
TOPIC_WAIT_SECONDS = 2.0


@dataclass
class ConsoleState:
    """What the HTTP endpoints read: the view, the metrics, and where the console stands."""

    settings: ConsoleSettings
    view: AlertView = field(default_factory=AlertView)
    metrics: ConsoleMetrics = field(default_factory=ConsoleMetrics)
    alertmanagers: Alertmanagers | None = None
    rebuilt: bool = False
    rebuild_seconds: float | None = None
    kafka_error: str | None = None
    http: httpx.AsyncClient | None = None
    """The client the page's number lookups use to reach the worker query API (one per process)."""
    overview: Overview | None = None
    """The latest overview document the workers published (``None`` until one is read)."""
    overview_error: str | None = "not read yet"
    """Why there is no overview (the topic does not exist yet, Kafka is unreachable), or ``None``."""

    def refresh_gauges(self) -> None:
        for s in AlertStatus:
            self.metrics.alerts.labels(s.value).set(self.view.count(s))


class ViewFeeder:
    """Applies records to the view and says what changed; no Kafka here, so a unit test drives it directly."""

    def __init__(self, state: ConsoleState) -> None:
        self.state = state
        self._tally: dict[str, int] = {}

    def apply(self, value: bytes | None, where: str) -> None:
        """Apply one record (counted at once)."""
        self._apply(value, where)
        self.count()

    def apply_many(self, values: list[tuple[bytes | None, str]]) -> None:
        """Apply records in order, counting them once for all (a per-record counter costs as much as the view)."""
        for value, where in values:
            self._apply(value, where)
        self.count()

    def count(self) -> None:
        for result, n in self._tally.items():
            self.state.metrics.records.labels(result).inc(n)
        self._tally.clear()

    def _apply(self, value: bytes | None, where: str) -> None:
        st = self.state
        try:
            change = decode(AlertChange, value or b"")
        except ValidationError as exc:
            # Never applicable, whatever we do: counted, logged (field names only, no values), skipped.
            self._tally["invalid"] = self._tally.get("invalid", 0) + 1
            log.error(
                "unreadable alert record skipped",
                extra={"fields": {"at": where, "errors": [".".join(map(str, e["loc"])) for e in exc.errors()]}},
            )
            return
        previous = st.view.get(change.fingerprint)
        result = st.view.apply(change)
        self._tally[result.value] = self._tally.get(result.value, 0) + 1
        if result is Applied.CHANGED and st.rebuilt:
            mask = st.settings.mask_numbers_in_logs
            log.info(
                "alert changed",
                extra={
                    "fields": {
                        "fingerprint": change.fingerprint,
                        "rule": change.rule,
                        "status": change.status.value,
                        "severity": change.severity,
                        "caller": mask_number(change.caller) if mask else change.caller,
                        "did": mask_number(change.did) if mask else change.did,
                    }
                },
            )
            if st.alertmanagers is not None:
                if previous is not None and labels(previous, st.settings) != labels(change, st.settings):
                    st.alertmanagers.retire(previous)
                st.alertmanagers.changed(change.fingerprint)


async def _partitions(bootstrap: str, topic: str, state: ConsoleState) -> list[TopicPartition]:
    """The topic's partitions, waiting (and saying so) while it does not exist. Asked through the admin client:
    its metadata request never auto-creates the topic (a consumer's can, with the broker's default settings,
    which would not be compacted)."""
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await asyncio.wait_for(admin.start(), TOPIC_WAIT_SECONDS * 5)
            described = await asyncio.wait_for(admin.describe_topics([topic]), TOPIC_WAIT_SECONDS * 5)
            parts = sorted(p["partition"] for t in described if t["error_code"] == 0 for p in t["partitions"])
            why = f"topic {topic} not found"
        except (TimeoutError, KafkaError) as exc:
            parts, why = [], f"Kafka: {type(exc).__name__}: {exc}"
        finally:
            await admin.close()
        if parts:
            state.kafka_error = None
            return [TopicPartition(topic, p) for p in parts]
        state.kafka_error = why
        log.warning("waiting for the alerts topic", extra={"fields": {"topic": topic, "reason": why}})
        await asyncio.sleep(TOPIC_WAIT_SECONDS)


async def consume(state: ConsoleState, started: asyncio.Event) -> None:
    """Rebuild, then follow the topic until cancelled. Sets ``started`` once the view is rebuilt."""
    s = state.settings
    consumer = AIOKafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap_servers,
        group_id=s.console_group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    feeder = ViewFeeder(state)
    applied: dict[TopicPartition, int] = {}
    t0 = time.monotonic()
    await consumer.start()
    try:
        tps = await _partitions(s.kafka_bootstrap_servers, s.alerts_topic, state)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        log.info(
            "rebuilding the view",
            extra={"fields": {"topic": s.alerts_topic, "partitions": len(tps), "records": sum(end.values())}},
        )
        last_commit = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batch.items():
                feeder.apply_many([(m.value, f"{tp.topic}[{tp.partition}]@{m.offset}") for m in records])
                if records:
                    applied[tp] = records[-1].offset + 1
            if not state.rebuilt and all(await _positions_reached(consumer, end)):
                state.rebuilt = True
                state.rebuild_seconds = time.monotonic() - t0
                state.metrics.rebuilt.set(1)
                state.metrics.rebuild_seconds.set(state.rebuild_seconds)
                log.info(
                    "view rebuilt",
                    extra={
                        "fields": {
                            "seconds": round(state.rebuild_seconds, 3),
                            "alerts": len(state.view),
                            "firing": state.view.count(AlertStatus.FIRING),
                        }
                    },
                )
                if state.alertmanagers is not None:
                    state.alertmanagers.owe_view()
                started.set()
            state.refresh_gauges()
            if applied and time.monotonic() - last_commit >= COMMIT_INTERVAL_SECONDS:
                await _commit(consumer, applied)
                applied = {}
                last_commit = time.monotonic()
    finally:
        try:
            if applied:
                await asyncio.wait_for(_commit(consumer, applied), s.shutdown_timeout_seconds)
        finally:
            await asyncio.wait_for(consumer.stop(), s.shutdown_timeout_seconds)


def apply_overview(state: ConsoleState, value: bytes | None, where: str) -> None:
    """Keep the newest overview document; an unreadable one is logged (field names only) and skipped."""
    try:
        doc = decode(Overview, value or b"")
    except ValidationError as exc:
        log.error(
            "unreadable overview record skipped",
            extra={"fields": {"at": where, "errors": [".".join(map(str, e["loc"])) for e in exc.errors()]}},
        )
        return
    if state.overview is None or doc.generatedAt >= state.overview.generatedAt:
        state.overview = doc
        state.overview_error = None


async def follow_overview(state: ConsoleState) -> None:
    """Follow ``bindwatch.overview.v1`` (one partition, compacted, key ``global``) from its beginning: the last
    record read is the latest document. While the topic does not exist (no worker has published yet) the page
    says so and this waits; it never creates the topic."""
    s = state.settings
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap_servers)
        try:
            await asyncio.wait_for(admin.start(), TOPIC_WAIT_SECONDS * 5)
            described = await asyncio.wait_for(admin.describe_topics([s.overview_topic]), TOPIC_WAIT_SECONDS * 5)
            parts = sorted(p["partition"] for t in described if t["error_code"] == 0 for p in t["partitions"])
            why = f"topic {s.overview_topic} not found: no worker has published an overview yet"
        except (TimeoutError, KafkaError) as exc:
            parts, why = [], f"Kafka: {type(exc).__name__}: {exc}"
        finally:
            await admin.close()
        if parts:
            break
        state.overview_error = why
        await asyncio.sleep(TOPIC_WAIT_SECONDS * 2)
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(s.overview_topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=100)
            for tp, records in batch.items():
                for m in records:
                    apply_overview(state, m.value, f"{tp.topic}[{tp.partition}]@{m.offset}")
    finally:
        await asyncio.wait_for(consumer.stop(), s.shutdown_timeout_seconds)


async def _positions_reached(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> list[bool]:
    return [await consumer.position(tp) >= offset for tp, offset in end.items()]


async def _commit(consumer: AIOKafkaConsumer, applied: dict[TopicPartition, int]) -> None:
    try:
        await consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in applied.items()})
    except Exception as exc:  # a failed commit only means a longer re-read; the view is rebuilt anyway
        log.warning("offset commit failed", extra={"fields": {"reason": f"{type(exc).__name__}: {exc}"}})
