"""Kafka helpers for tests and benchmarks: unique names, topic set-up, bounded produce, topic readers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.admin import create_topics
from stream.config import StreamSettings

Headers = list[tuple[str, bytes]]
KafkaRecord = tuple[bytes | None, bytes, int | None] | tuple[bytes | None, bytes, int | None, Headers]
"""``(key, value, timestamp ms, [headers])`` as sent by ``produce``."""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def env_of(s: StreamSettings) -> dict[str, str]:
    """The environment that makes a service process use the topics and app id of ``s``."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "BINDWATCH_EVENTS_TOPIC": s.events_topic,
        "BINDWATCH_DLQ_TOPIC": s.dlq_topic,
        "BINDWATCH_BY_DID_TOPIC": s.by_did_topic,
        "BINDWATCH_ALERTS_TOPIC": s.alerts_topic,
        "BINDWATCH_OVERVIEW_TOPIC": s.overview_topic,
        "BINDWATCH_OUTAGE_PARTIALS_TOPIC": s.outage_partials_topic,
        "BINDWATCH_APP_ID": s.app_id,
        "BINDWATCH_PARTITIONS": str(s.partitions),
    }


@dataclass
class Names:
    """Topic names, app id and group for one test or benchmark run: every Kafka user is isolated by name."""

    tag: str

    @classmethod
    def new(cls, prefix: str = "t") -> Names:
        return cls(unique(prefix))

    def env(self, bootstrap: str, partitions: int = 4) -> dict[str, str]:
        return env_of(self.settings(bootstrap, partitions))

    def settings(self, bootstrap: str, partitions: int = 4, events_topic: str | None = None) -> StreamSettings:
        """Settings with this run's names (a shared ``events_topic`` may be passed: several apps read one)."""
        return StreamSettings(
            kafka_bootstrap_servers=bootstrap,
            events_topic=events_topic or f"{self.tag}.events",
            dlq_topic=f"{self.tag}.dlq",
            by_did_topic=f"{self.tag}.by-did",
            alerts_topic=f"{self.tag}.alerts",
            overview_topic=f"{self.tag}.overview",
            outage_partials_topic=f"{self.tag}.outage-partials",
            app_id=f"{self.tag}-app",
            partitions=partitions,
        )


def create(s: StreamSettings) -> None:
    """Every topic of ``s`` (``stream.admin.create_topics``: the changelogs included)."""
    asyncio.run(create_topics(s))


def setup_topics(bootstrap: str, names: Names, partitions: int = 4) -> StreamSettings:
    s = names.settings(bootstrap, partitions)
    create(s)
    return s


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp: int

    @property
    def payload(self) -> bytes:
        """The value; a tombstone (no value) where a test expects one fails it, saying where."""
        assert self.value is not None, f"a tombstone at {self.topic}[{self.partition}]@{self.offset}"
        return self.value


def reader(bootstrap: str, topic: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer of every partition of ``topic`` from its start, in no group (nothing is committed);
    ``options`` go to ``AIOKafkaConsumer`` (e.g. ``max_poll_records``, ``client_id``)."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        **options,
    )


async def _consume(bootstrap: str, topic: str, done: Callable[[list[Rec]], bool], timeout: float) -> list[Rec]:
    consumer = reader(bootstrap, topic)
    await asyncio.wait_for(consumer.start(), 30)
    out: list[Rec] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp_records in batch.values():
                for m in tp_records:
                    out.append(Rec(m.topic, m.partition, m.offset, m.key, m.value, dict(m.headers), m.timestamp))
            if done(out):
                break
    finally:
        await asyncio.wait_for(consumer.stop(), 30)
    return out


def consume(
    bootstrap: str, topic: str, done: Callable[[list[Rec]], bool] | None = None, timeout: float = 20.0
) -> list[Rec]:
    """Read the topic from the start until ``done(records)`` or ``timeout`` (then return what was read)."""
    return asyncio.run(_consume(bootstrap, topic, done or (lambda _r: False), timeout))


SAFE_PRODUCER: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 5}
"""What the tests produce with: acknowledged by every in-sync replica, no duplicates from retries."""
FAST_PRODUCER: dict[str, Any] = {
    "acks": 1,
    "linger_ms": 20,
    "max_batch_size": 512 * 1024,
    "max_request_size": 4 * 1024 * 1024,
}
"""What a benchmark fills a backlog with: large batches, the leader's acknowledgement only."""


async def produce_async(
    bootstrap: str, topic: str, records: Iterable[KafkaRecord], producer: dict[str, Any] | None = None
) -> int:
    """Send every record (``producer`` options, default ``SAFE_PRODUCER``) and wait for each acknowledgement,
    50,000 at a time at most; returns how many were sent."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, **(SAFE_PRODUCER if producer is None else producer))
    await asyncio.wait_for(p.start(), 30)
    n = 0
    pending: list[asyncio.Future[Any]] = []
    try:
        for r in records:
            headers = r[3] if len(r) == 4 else None
            # send() only appends to a batch (it waits only when the buffer is full): acks are awaited per chunk.
            pending.append(await p.send(topic, r[1], key=r[0], timestamp_ms=r[2], headers=headers))
            n += 1
            if len(pending) >= 50_000:
                await asyncio.wait_for(asyncio.gather(*pending), 120)
                pending = []
        await asyncio.wait_for(asyncio.gather(*pending), 120)
    finally:
        await asyncio.wait_for(p.stop(), 60)
    return n


def produce(bootstrap: str, topic: str, records: Iterable[KafkaRecord], producer: dict[str, Any] | None = None) -> int:
    return asyncio.run(produce_async(bootstrap, topic, records, producer))
