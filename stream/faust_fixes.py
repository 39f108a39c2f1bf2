"""Fixes for Faust defects that break bindwatch's guarantees, applied when ``stream.app`` is imported.

``ProducerBuffer.flush`` (faust-streaming 0.15.3) returns as soon as 100 ms pass without a message being
sent, even when messages are still buffered. Table changelog writes go through that buffer
(``send_soon``), and the consumer flushes it right before committing offsets: under load, a commit (on a
timer, on rebalance, on shutdown) could then store an offset whose changelog write was still in the buffer,
and a worker leaving or crashing afterwards lost that table update for good. Found by the reliability
scenario "second worker joins, then leaves" (one count short, intermittently, under load).

The replacement drains the buffer completely: a commit waits until every table update it covers was handed
to the Kafka producer (whose own flush then waits for the broker's acknowledgement).
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.producer import ProducerBuffer

_PATCHED = "_bindwatch_drains"


async def drain(self: Any) -> None:
    """Flush *all* buffered messages, however long the background sender takes."""
    while self.size:
        if self.state != "running":
            raise RuntimeError(f"Cannot flush: producer buffer is {self.state} with {self.size} messages left")
        self.message_sent.clear()
        try:
            await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
        except TimeoutError:
            continue  # still sending (slow broker or busy loop): keep waiting, never drop


def apply() -> None:
    if not getattr(ProducerBuffer, _PATCHED, False):
        ProducerBuffer.flush = drain  # type: ignore[method-assign]
        setattr(ProducerBuffer, _PATCHED, True)
