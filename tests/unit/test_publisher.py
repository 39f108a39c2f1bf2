"""KafkaPublisher's own logic with a fake aiokafka producer: bounds, readiness, replacing a stuck producer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import NotConnected, PublishTimeout
from gateway.publisher import KafkaPublisher


class FakeCluster:
    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {0}


class FakeClient:
    cluster = FakeCluster()

    async def force_metadata_update(self) -> bool:
        return True


class FakeProducer:
    """``stuck``: every send hangs forever, as aiokafka's idempotent producer can after a broker restart."""

    def __init__(self, stuck: bool) -> None:
        self.stuck = stuck
        self.client = FakeClient()
        self.sent: list[bytes] = []
        self.stopped = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    async def send_and_wait(self, topic: str, value: bytes, **kw: Any) -> None:
        if self.stuck:
            await asyncio.Event().wait()
        self.sent.append(value)


class Publisher(KafkaPublisher):
    def __init__(self, producers: list[FakeProducer], **kw: Any) -> None:
        super().__init__("fake:9092", ["events"], timeout=0.2, shutdown_timeout=1.0, **kw)
        self.producers = producers
        self.made: list[FakeProducer] = []

    def _new_producer(self) -> Any:
        p = self.producers.pop(0)
        self.made.append(p)
        return p


async def publish(p: KafkaPublisher, value: bytes) -> None:
    await p.publish("events", value, key=None, headers=[], timestamp_ms=None)


async def wait_for_producer(p: KafkaPublisher) -> None:
    for _ in range(200):
        if p.readiness()[0]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(p.readiness())


def test_a_stuck_producer_is_replaced_and_writes_succeed_again() -> None:
    async def scenario() -> None:
        p = Publisher([FakeProducer(stuck=True), FakeProducer(stuck=False)])
        p._stuck_after = 0.5
        with pytest.raises(NotConnected):
            await publish(p, b"too early")  # the connector has not run yet: refuse at once
        await p.start()
        await wait_for_producer(p)
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(PublishTimeout):
            await publish(p, b"x")
        assert asyncio.get_running_loop().time() - t0 < 0.5, "the bound is enforced"
        assert p.readiness()[0] is False
        # NXCLOUD keeps retrying; the broker answers metadata, but the producer stays stuck: it is replaced
        for _ in range(60):
            try:
                await publish(p, b"retry")
                break
            except (PublishTimeout, NotConnected):
                await asyncio.sleep(0.1)
        assert p.recycled == 1 and p.made[0].stopped
        assert p.made[1].sent == [b"retry"]
        assert p.readiness() == (True, "ok")
        await p.stop()
        assert p.made[1].stopped

    asyncio.run(scenario())
