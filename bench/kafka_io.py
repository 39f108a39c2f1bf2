"""Kafka for the benchmarks: names and topics per run, a fast backlog producer, the plain-consumer baseline,
record counting, and an alert watcher that notes when each alert became readable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from bench.workload import Record
from schemas import Alert, BindingFailureEvent, decode
from schemas.topics import HEADER_REQUEST_ID
from stream.config import StreamSettings
from tests.support import kafka

PARTITIONS = 8


def tag(prefix: str) -> str:
    return kafka.unique(f"bench-{prefix}")


def stream_settings(bootstrap: str, run: str, events_topic: str | None = None) -> StreamSettings:
    """Topic names and app id of one run (a shared events topic may be passed: several apps read one backlog)."""
    return kafka.Names(run).settings(bootstrap, PARTITIONS, events_topic)


def setup(s: StreamSettings) -> None:
    """The project's topics, the tables' changelogs included (stream.admin creates them before a worker starts)."""
    kafka.create(s)


# --- producing a backlog --------------------------------------------------------------------------------
def produce(bootstrap: str, topic: str, records: Iterable[Record]) -> dict[str, float]:
    t0 = time.monotonic()
    options = {**kafka.FAST_PRODUCER, "client_id": "bindwatch-bench-backlog"}
    n = kafka.produce(bootstrap, topic, records, options)
    dt = time.monotonic() - t0
    return {"records": n, "seconds": round(dt, 2), "records_per_s": round(n / dt)}


# --- the plain-consumer baseline --------------------------------------------------------------------------
async def _plain_consume(bootstrap: str, topic: str, n: int, timeout: float) -> dict[str, float]:
    consumer = kafka.reader(bootstrap, topic, max_poll_records=10_000, client_id="bindwatch-bench-plain")
    t_start = time.monotonic()
    await asyncio.wait_for(consumer.start(), 30)
    seen = 0
    t_first: float | None = None
    try:
        while seen < n and time.monotonic() - t_start < timeout:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for recs in batch.values():
                for m in recs:
                    decode(BindingFailureEvent, m.value)
                    seen += 1
            if seen and t_first is None:
                t_first = time.monotonic()
    finally:
        await asyncio.wait_for(consumer.stop(), 30)
    t_end = time.monotonic()
    secs = t_end - (t_first or t_start)
    return {
        "events": seen,
        "seconds": round(secs, 2),
        "events_per_s": round(seen / secs) if secs > 0 else 0,
        "complete": seen >= n,
    }


def plain_consume(bootstrap: str, topic: str, n: int, timeout: float) -> dict[str, float]:
    """Read ``n`` records from the start of ``topic`` and decode each (schemas.decode): the stream's floor."""
    return asyncio.run(_plain_consume(bootstrap, topic, n, timeout))


# --- what is on a topic ---------------------------------------------------------------------------------
async def _topic_census(bootstrap: str, topic: str, timeout: float) -> dict[str, int]:
    consumer = kafka.reader(bootstrap, topic, max_poll_records=20_000)
    await asyncio.wait_for(consumer.start(), 30)
    try:
        tps = sorted(consumer.assignment())  # without a group: every partition of the topic
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        total = sum(end[tp] - begin[tp] for tp in tps)
        rids: set[bytes] = set()
        read = 0
        deadline = time.monotonic() + timeout
        while read < total and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                for m in recs:
                    read += 1
                    rids.update(v for k, v in m.headers if k == HEADER_REQUEST_ID)
        return {"records": total, "read": read, "distinct_request_ids": len(rids)}
    finally:
        await asyncio.wait_for(consumer.stop(), 30)


def topic_census(bootstrap: str, topic: str, timeout: float = 120) -> dict[str, int]:
    """Records on the topic (end - beginning offsets) and distinct requestId headers among them."""
    return asyncio.run(_topic_census(bootstrap, topic, timeout))


# --- alerts as they become readable ---------------------------------------------------------------------
@dataclass
class AlertWatcher:
    """Tail the alerts topic from the end in a background task; note the wall time each alert was read."""

    bootstrap: str
    topic: str
    seen: list[tuple[float, Alert]] = field(default_factory=list)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = kafka.reader(
            self.bootstrap,
            self.topic,
            fetch_max_wait_ms=5,  # read an alert as soon as it is there
            client_id="bindwatch-bench-alerts",
        )
        await asyncio.wait_for(self._consumer.start(), 30)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for recs in batch.values():
                for m in recs:
                    self.seen.append((now, decode(Alert, m.value)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await asyncio.wait_for(self._consumer.stop(), 30)
