"""The I/O seam: the gateway publishes through ``Publisher``; Kafka and an in-memory double satisfy it."""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gateway import NotConnected, PublishError, PublishTimeout

log = logging.getLogger("bindwatch.gateway.publisher")

Headers = list[tuple[str, bytes]]


class Publisher(Protocol):
    async def start(self) -> None:
        """Begin connecting; must not block on an unreachable broker."""

    async def stop(self) -> None:
        """Flush and close, bounded in time."""

    async def publish(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Headers, timestamp_ms: int | None
    ) -> None:
        """Return only once the broker durably acknowledged the record; else raise ``PublishError``."""

    def readiness(self) -> tuple[bool, str]:
        """(ready, human-readable reason)."""


@dataclass
class Record:
    topic: str
    value: bytes
    key: bytes | None
    headers: Headers
    timestamp_ms: int | None


@dataclass
class MemoryPublisher:
    """Test double and benchmark baseline: keeps records in a list; can be told to fail."""

    records: list[Record] = field(default_factory=list)
    fail_with: PublishError | None = None
    delay_seconds: float = 0.0
    keep: bool = True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Headers, timestamp_ms: int | None
    ) -> None:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.fail_with is not None:
            raise self.fail_with
        if self.keep:
            self.records.append(Record(topic, value, key, headers, timestamp_ms))

    def readiness(self) -> tuple[bool, str]:
        return (self.fail_with is None, "memory publisher")


class KafkaPublisher:
    """Idempotent, ``acks=all`` aiokafka producer with every wait bounded.

    aiokafka's ``send_and_wait`` can wait forever while the broker is down (aiokafka#1101), so each
    publish is bounded by ``timeout``. A publish that timed out may still be written later; the stream
    deduplicates by requestId, and NXCLOUD retries because we answered 503.

    Self-healing: if the broker answers metadata requests again but writes still time out for longer
    than ``stuck_after`` (seen with aiokafka's idempotent producer after a broker restart under load),
    the producer is replaced by a new one instead of waiting for an operator to restart the gateway.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: list[str],
        *,
        timeout: float,
        shutdown_timeout: float,
        linger_ms: int = 1,
        client_id: str = "bindwatch-gateway",
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topics = topics
        self._timeout = timeout
        self._shutdown_timeout = shutdown_timeout
        self._linger_ms = linger_ms
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._healthy = False
        self._reason = "connecting to Kafka"
        self._last_ack = time.monotonic()
        self._last_fail = 0.0
        self._stuck_after = max(2 * timeout, 5.0)
        self.recycled = 0

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self._linger_ms,
            # The broker's own request timeout stays generous: our bound is enforced around each send, and
            # a short request timeout makes the idempotent producer retry writes it cannot tell apart.
            request_timeout_ms=30000,
            retry_backoff_ms=100,
            metadata_max_age_ms=30000,
        )

    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_loop(), name="kafka-connect")

    async def _connect_loop(self) -> None:
        backoff = 0.5
        while self._producer is None:
            producer = self._new_producer()
            try:
                await asyncio.wait_for(producer.start(), timeout=max(self._timeout, 5.0))
            except (KafkaError, OSError, TimeoutError) as exc:
                self._reason = f"cannot connect to Kafka at {self._bootstrap}: {type(exc).__name__}"
                log.warning("kafka not reachable, retrying in %.1fs: %s", backoff, self._reason)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), timeout=2.0)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._producer = producer
            await self._refresh_health()
            log.info("kafka producer connected to %s", self._bootstrap)

    async def _refresh_health(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        try:
            updated = await asyncio.wait_for(producer.client.force_metadata_update(), timeout=self._timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            updated, why = False, type(exc).__name__
        else:
            why = "no broker answered"
        if not updated:
            self._healthy, self._reason = False, f"Kafka metadata unavailable: {why}"
            return False
        missing = [t for t in self._topics if producer.client.cluster.partitions_for_topic(t) is None]
        if missing:
            self._healthy, self._reason = False, f"topics not found: {', '.join(missing)}"
            return False
        self._healthy, self._reason = True, "ok"
        return True

    async def _probe_until_healthy(self) -> None:
        """While writes fail: probe the broker once a second; replace a producer that stays stuck."""
        reachable_since: float | None = None
        while self._last_fail > self._last_ack:
            if await self._refresh_health():
                now = time.monotonic()
                reachable_since = reachable_since or now
                failed_while_reachable = self._last_fail > reachable_since + self._timeout
                if failed_while_reachable and now - reachable_since > self._stuck_after:
                    await self._recycle("writes keep timing out while the broker answers")
                    return
            else:
                reachable_since = None
            await asyncio.sleep(1.0)

    async def _recycle(self, why: str) -> None:
        old, self._producer = self._producer, None
        self._healthy, self._reason = False, f"restarting the Kafka producer: {why}"
        self.recycled += 1
        log.warning("replacing the Kafka producer: %s", why)
        if old is not None:
            asyncio.create_task(self._stop_quietly(old), name="kafka-old-producer-stop")  # noqa: RUF006
        self._last_ack = time.monotonic()
        self._connector = asyncio.create_task(self._connect_loop(), name="kafka-connect")

    async def _stop_quietly(self, producer: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(producer.stop(), timeout=self._shutdown_timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("the replaced Kafka producer did not stop cleanly: %r", exc)

    def _mark_unhealthy(self, reason: str) -> None:
        self._healthy, self._reason = False, reason
        self._last_fail = time.monotonic()
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe_until_healthy(), name="kafka-probe")

    async def publish(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Headers, timestamp_ms: int | None
    ) -> None:
        producer = self._producer
        if producer is None:
            raise NotConnected(self._reason)
        try:
            await asyncio.wait_for(
                producer.send_and_wait(topic, value, key=key, headers=headers, timestamp_ms=timestamp_ms),
                timeout=self._timeout,
            )
        except TimeoutError:
            self._mark_unhealthy(f"no acknowledgement from Kafka within {self._timeout:g}s")
            raise PublishTimeout(f"Kafka did not acknowledge within {self._timeout:g}s") from None
        except KafkaError as exc:
            self._mark_unhealthy(f"Kafka error: {type(exc).__name__}")
            raise PublishError(f"Kafka refused the write: {type(exc).__name__}") from exc
        self._last_ack = time.monotonic()
        if not self._healthy:
            self._healthy, self._reason = True, "ok"

    def readiness(self) -> tuple[bool, str]:
        return (self._producer is not None and self._healthy, self._reason)

    async def stop(self) -> None:
        for task in (self._connector, self._prober):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), timeout=self._shutdown_timeout)
            except (TimeoutError, KafkaError) as exc:
                log.error("kafka producer did not stop within %.1fs: %r", self._shutdown_timeout, exc)
