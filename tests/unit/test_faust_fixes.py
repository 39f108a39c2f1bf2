"""The ProducerBuffer flush fix: a commit must wait for every buffered table update, however slow."""

from __future__ import annotations

import asyncio

from faust.transport.producer import ProducerBuffer

import stream.app  # noqa: F401  (importing the app applies the fixes)
from stream import faust_fixes


class SlowBuffer:
    """Sends one message every 0.3 s: slower than Faust's 100 ms give-up."""

    def __init__(self, n: int) -> None:
        self.size = n
        self.state = "running"
        self.message_sent = asyncio.Event()

    async def sender(self) -> None:
        while self.size:
            await asyncio.sleep(0.3)
            self.size -= 1
            self.message_sent.set()


def test_flush_waits_until_the_buffer_is_empty() -> None:
    async def run() -> int:
        buf = SlowBuffer(3)
        task = asyncio.create_task(buf.sender())
        await faust_fixes.drain(buf)
        await task
        return buf.size

    assert asyncio.run(run()) == 0


def test_unpatched_faust_flush_gives_up_early() -> None:
    """Documents the defect: Faust's own flush_atmost returns with messages still buffered."""

    async def run() -> int:
        buf = SlowBuffer(3)
        task = asyncio.create_task(buf.sender())
        await ProducerBuffer.flush_atmost(buf, None)  # type: ignore[arg-type]
        left = buf.size
        task.cancel()
        return left

    assert asyncio.run(run()) > 0


def test_the_fix_is_installed() -> None:
    assert ProducerBuffer.flush is faust_fixes.drain
