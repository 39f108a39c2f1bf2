"""The stages' input: records taken from Faust's consumer as it fetches them, in batches, without a Faust stream.

Why (issue 13): through an agent's stream, every record cost the conductor an ``Event`` (key and value through
Faust's codec machinery), a put on the agent's queue with its pressure checks, and then the stream's iterator
one event-loop turn, a context variable, the sensors and a processor call, before ``take_batches`` added it to a
batch; after the batch, an ``Event.ack`` each. In the drain profile of 2026-12-06 that input path was about 18%
of the worker's CPU, more than the rules. Here the consumer's drain loop hands a fetch's records of a partition
of a stage's topics to ``Intake.on_messages`` at once (``stream.compat.use_intake`` registers the intake;
``compat``'s drain loop and, for a single record, the conductor's handler call it), which appends them to a
list; the stage's task takes batches off that list.

What Faust's stream did that matters is kept, rule for rule (``faust.streams.Stream._c_aiter``, 0.15.3):

* **acknowledgement**: a record is tracked as unacknowledged (``Consumer.unacked``) when it is taken into a
  batch, and acknowledged (``Consumer.ack``, which is what lets the offset be committed) only once the stage
  asks for the next batch, that is after ``StageCore.process`` returned (the whole batch in one pass,
  ``compat.ack_all``). A batch whose processing raised is
  never acknowledged (the worker exits, ``stream.app.run_batch``), so it is replayed from the last commit.
* **rebalances**: Faust suspends its flow control, clears the queues it manages (this list is one of them:
  ``FlowControlEvent.manage_queue``), then waits until nothing is unacknowledged (``Consumer.wait_empty``): the
  batch being processed holds the revocation until it is done, as before. Nothing is taken while the flow is
  suspended. A record fetched under an earlier consumer generation is dropped without acknowledgement (Faust's
  stream acknowledged it); the consumer seeks its partitions to their committed offsets after the rebalance.
* **resumes**: mode's flow control also clears its queues on every *resume*, and Faust's recovery resumes it
  several times, while records of the new generation may already have been delivered (between its partition
  resume and its seek to the committed offsets). An agent's queue lost them there; when the consumer did not
  read them again (a partition without a committed offset is not sought), its gap handling could commit past
  them (faust-streaming #596). The intake keeps what waits on a resume: a record read twice is a duplicate,
  which the requestId dedup counts once.
* **back-pressure**: the conductor never waits here (it would stall the other stage's partitions too). Once
  ``limit`` records wait, the partition of each further run is taken out of the fetch
  (``Consumer.on_buffer_full``, what Faust does when an agent's queue is under pressure); the partitions are
  fetched again once the list has drained below half of ``limit`` (``on_buffer_drop``), and the fetch in
  progress is woken to see them (``compat.wake_fetch``: otherwise their records, already fetched, waited up to
  a second). What was already fetched is still appended. ``limit`` defaults to 16 batches: at 4 the caller
  stage starved. A revocation forgets the paused partitions (Faust resumes every assigned partition after the
  rebalance, and resuming one at the revocation could put a revoked partition back among those fetched); a
  resume keeps them.
* **flow control and the producer**: each run waits, as each record did in Faust's handler, while the flow is
  suspended and while the producer's buffer is full.

Batching is ``take_batches``'s: a batch is taken when ``max_`` records wait, or when the oldest has waited
``within``; under a backlog the next batch fills while one is processed, and what is left after a full batch
counts its wait from the first arrival of the batch before it (at most ``within``, never longer).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Collection, Sequence, Sized
from typing import Any

from faust.types import TP

from stream import compat


class Record:
    """One input record as a stage sees it: what ``stream.app`` and ``stream.changelog`` use of a Faust
    ``Event`` (``key`` as text, ``value`` as bytes, ``message`` for the partition, offset and timestamp). It can
    stand as Faust's current event for a table not stored in RocksDB (``stream.compat.use_event``), for which a
    table needs only ``message``."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Any) -> None:
        self.message = message

    @property
    def key(self) -> str:
        """Read only for ticks (an event's subject is in its value): decoded when asked, not per record."""
        key = self.message.key
        return key.decode(errors="replace") if isinstance(key, bytes) else (key or "")

    @property
    def value(self) -> bytes:
        value: bytes | None = self.message.value
        return value if value is not None else b""


INTAKE_BATCHES = 16
"""Batches' worth of records that may wait before the fetch of their partitions pauses (the default ``limit``)."""


class Intake:
    """The records of one stage's topics, from the conductor to the stage's batches (see the module docstring).

    ``app`` is used for its consumer (``unacked``, ``ack``, ``on_buffer_full``, ``on_buffer_drop``), its flow
    control, its producer's buffer and its consumer generation."""

    def __init__(self, app: Any, topics: Collection[str], max_: int, within: float, *, limit: int = 0) -> None:
        if max_ < 1:
            raise ValueError(f"max_ must be at least 1, got {max_}")
        self.app = app
        self.topics = frozenset(topics)
        self.max = max_
        self.within = within
        self.limit = limit or INTAKE_BATCHES * max_
        """Records waiting beyond which the fetch of a record's partition pauses."""
        self._pending: deque[Any] = deque()
        self._first_at = 0.0
        self._arrived: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._paused: set[Any] = set()
        self._buffer: tuple[Any, Sized | None] | None = None
        """The producer's buffer and what its size counts (``compat.buffer_queue``), found at the first record."""

    def __len__(self) -> int:
        return len(self._pending)

    def clear(self) -> None:
        """Faust's flow control calls this with the agents' queues: at a revocation (the flow suspended), forget
        what waits and which partitions this paused; on a resume (the flow active), keep both (module
        docstring)."""
        if self.app.flow_control.is_active():
            return
        self._pending.clear()
        self._paused.clear()
        self._full_clear()

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._arrived is None or self._full is None:
            self._arrived, self._full = asyncio.Event(), asyncio.Event()
        return self._arrived, self._full

    async def on_message(self, message: Any) -> None:
        """The conductor's handler for a partition of this stage's topics: one call per fetched record."""
        await self.on_messages((message,))

    async def on_messages(self, messages: Sequence[Any]) -> None:
        """Append ``messages``, fetched records of one partition in their order (``compat``'s drain loop hands
        over a fetch's records of a partition at once): the checks ``on_message`` made per record, made once
        for the run. Nothing awaits between the appends, so the run stays whole, as it would have with no
        other task scheduled between its records."""
        if not messages:
            return
        app = self.app
        if not app.flow_control.is_active():
            await app.flow_control.acquire()
        if self._buffer is None:
            buffer = app.producer.buffer
            self._buffer = (buffer, compat.buffer_queue(buffer))
        buffer, queue = self._buffer
        if (len(queue) if queue is not None else buffer.size) > buffer.max_messages:
            await buffer.wait_until_ebb()
        arrived, full = self._events()
        pending = self._pending
        if not pending:
            self._first_at = asyncio.get_running_loop().time()
            arrived.set()
        pending.extend(messages)
        n = len(pending)
        if n >= self.max:
            full.set()
        if n >= self.limit:
            message = messages[-1]
            tp = TP(message.topic, message.partition)  # Faust's type: the consumer's partition sets hold only it
            if tp not in self._paused:
                self._paused.add(tp)
                app.consumer.on_buffer_full(tp)

    def _resume_fetching(self) -> None:
        if self._paused and len(self._pending) < self.limit // 2:
            consumer = self.app.consumer
            for tp in self._paused:
                consumer.on_buffer_drop(tp)
            self._paused.clear()
            compat.wake_fetch(self.app)  # the fetch in progress ignores them until woken (compat.wake_fetch)

    def _take(self) -> list[Record]:
        """Up to ``max`` waiting records, tracked as unacknowledged; stale ones dropped (module docstring).
        Called only while the flow is active."""
        app = self.app
        pending = self._pending
        unacked = app.consumer.unacked
        generation = app.consumer_generation_id
        batch: list[Record] = []
        while pending and len(batch) < self.max:
            message = pending.popleft()
            if message.generation_id != generation:
                continue  # fetched before a rebalance: read again from the committed offset, never acknowledged
            message.tracked = True
            unacked.add(message)
            batch.append(Record(message))
        # what is left keeps ``_first_at`` (it arrived after it): it waits no longer than ``within`` from it
        self._resume_fetching()
        return batch

    def _full_clear(self) -> None:
        if self._full is not None:
            self._full.clear()

    async def batches(self) -> AsyncIterator[list[Record]]:
        """The stage's batches; a batch is acknowledged when the next one is asked for (never when the
        generator is closed by an exception or a cancellation)."""
        loop = asyncio.get_running_loop()
        arrived, full = self._events()
        consumer = self.app.consumer
        flow = self.app.flow_control
        while True:
            if not flow.is_active():  # a rebalance or recovery: take nothing until the flow resumes
                await flow.acquire()
                continue
            if not self._pending:
                arrived.clear()
                await arrived.wait()
                continue
            left = self._first_at + self.within - loop.time()
            if left > 0 and len(self._pending) < self.max:
                full.clear()
                try:
                    await asyncio.wait_for(full.wait(), timeout=left)
                except TimeoutError:
                    pass
            batch = self._take()
            if len(self._pending) < self.max:
                full.clear()
            if not batch:
                continue
            yield batch
            compat.ack_all(consumer, [record.message for record in batch])
