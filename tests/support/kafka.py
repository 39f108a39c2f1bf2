"""Kafka helpers for tests: unique names, topic set-up, bounded produce and consume."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.admin import create_topics
from stream.config import StreamSettings


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Names:
    """Topic names, app id and group for one test: every Kafka test is isolated by name."""

    tag: str

    @classmethod
    def new(cls, prefix: str = "t") -> Names:
        return cls(unique(prefix))

    def env(self, bootstrap: str, partitions: int = 4) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "BINDWATCH_EVENTS_TOPIC": f"{self.tag}.events",
            "BINDWATCH_DLQ_TOPIC": f"{self.tag}.dlq",
            "BINDWATCH_BY_DID_TOPIC": f"{self.tag}.by-did",
            "BINDWATCH_ALERTS_TOPIC": f"{self.tag}.alerts",
            "BINDWATCH_OVERVIEW_TOPIC": f"{self.tag}.overview",
            "BINDWATCH_OUTAGE_PARTIALS_TOPIC": f"{self.tag}.outage-partials",
            "BINDWATCH_APP_ID": f"{self.tag}-app",
            "BINDWATCH_PARTITIONS": str(partitions),
        }

    def settings(self, bootstrap: str, partitions: int = 4) -> StreamSettings:
        return StreamSettings(
            kafka_bootstrap_servers=bootstrap,
            events_topic=f"{self.tag}.events",
            dlq_topic=f"{self.tag}.dlq",
            by_did_topic=f"{self.tag}.by-did",
            alerts_topic=f"{self.tag}.alerts",
            overview_topic=f"{self.tag}.overview",
            outage_partials_topic=f"{self.tag}.outage-partials",
            app_id=f"{self.tag}-app",
            partitions=partitions,
        )


def setup_topics(bootstrap: str, names: Names, partitions: int = 4) -> StreamSettings:
    s = names.settings(bootstrap, partitions)
    asyncio.run(create_topics(s))
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


async def _consume(bootstrap: str, topic: str, done: Callable[[list[Rec]], bool], timeout: float) -> list[Rec]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
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


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, int | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await asyncio.wait_for(producer.start(), 30)
    try:
        futs = [await producer.send(topic, v, key=k, timestamp_ms=ts) for k, v, ts in records]
        await asyncio.wait_for(asyncio.gather(*futs), 60)
    finally:
        await asyncio.wait_for(producer.stop(), 30)


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, int | None]]) -> None:
    asyncio.run(_produce(bootstrap, topic, records))
