"""A stage's table writes, sent as one changelog batch per partition and stored once acknowledged.

Why not ``table[key] = value``: Faust turns every write into a ``FutureMessage``, a hop through its
producer buffer, an aiokafka ``send`` and a persisted-offset put in RocksDB as each acknowledgement comes in.
For a batch of 500 subjects that is 500 of each; in the drain profile of issue 13 the changelog path was about
a fifth of the worker's CPU. Here a batch's writes of one table become one aiokafka ``BatchBuilder`` per
changelog partition (more only when one fills), sent together; the same records, keys and partitions that
Faust would have written, so Faust's recovery, standbys and ``stream.restore`` read them as before.

The order is stricter than Faust's, which writes the local store at once and the changelog later:

1. the records are sent and *acknowledged* by the broker;
2. then the local store (RocksDB) is written;
3. then each partition's persisted offset (where a warm restart resumes reading the changelog).

A crash before 1 completes loses nothing (the batch's input is not acknowledged, so it is replayed). A crash
between 1 and 3 leaves the store behind its changelog, which the restart reads from the older persisted
offset. Faust's order could leave the store *ahead* of the changelog: a replayed event then found its
requestId in the local value, was not written again, and the changelog (what another worker restores from)
never got it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from faust.types import TP

from stream import compat


class BatchProducer(Protocol):
    """What is used of ``aiokafka.AIOKafkaProducer``: its public batch interface."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any: ...


@dataclass(frozen=True, slots=True)
class Write:
    """One table write: ``value`` None deletes ``key``. ``where`` is the input record it came with (its
    partition is the changelog partition, as in Faust)."""

    partition: int
    key: str
    value: bytes | None
    where: Any


async def send_batches(producer: BatchProducer, topic: str, writes: Iterable[Write]) -> dict[int, int]:
    """Send ``writes`` to ``topic``, each partition's in their order; return once the broker acknowledged all
    of them, with the offset of the last record written to each partition."""
    by_partition: dict[int, list[Write]] = {}
    for w in writes:
        by_partition.setdefault(w.partition, []).append(w)
    sent: list[tuple[int, int, Any]] = []  # partition, records in the batch, its delivery future
    for partition, part in by_partition.items():
        batch, n = producer.create_batch(), 0
        for w in part:
            key = w.key.encode()
            if batch.append(key=key, value=w.value, timestamp=None) is None:  # full: send it, start another
                sent.append((partition, n, await producer.send_batch(batch, topic, partition=partition)))
                batch, n = producer.create_batch(), 0
                if batch.append(key=key, value=w.value, timestamp=None) is None:
                    raise ValueError(f"a {len(w.value or b'')}-byte value does not fit an empty producer batch")
            n += 1
        sent.append((partition, n, await producer.send_batch(batch, topic, partition=partition)))
    last: dict[int, int] = {}
    for partition, n, delivery in sent:
        meta = await delivery
        last[partition] = max(last.get(partition, -1), meta.offset + n - 1)
    return last


class BatchedTable:
    """A Faust table as ``stream.core.SubjectTable`` whose writes wait for ``written`` (see the module
    docstring). Reads see the store, that is the table as of the last ``written``; the core reads a subject
    before it writes it, once per batch, so a batch never needs its own unwritten values back."""

    def __init__(self, table: Any, producer: Callable[[], BatchProducer]) -> None:
        self.table = table
        self.producer = producer
        self.topic: str = table.changelog_topic.get_topic_name()
        self.pending: list[Write] = []

    def get(self, key: str, where: Any) -> bytes | None:
        compat.use_event(where)
        value: bytes | None = self.table.get(key)
        return value

    def set(self, key: str, value: bytes, where: Any) -> None:
        self.pending.append(Write(where.message.partition, key, value, where))

    def delete(self, key: str, where: Any) -> None:
        self.pending.append(Write(where.message.partition, key, None, where))

    def items(self) -> Iterable[tuple[str, bytes]]:
        items: Iterable[tuple[str, bytes]] = self.table.items()
        return items

    async def written(self) -> None:
        """Send the pending writes, and once acknowledged store them and their partitions' offsets."""
        if not self.pending:
            return
        writes, self.pending = self.pending, []
        last = await send_batches(self.producer(), self.topic, writes)
        store(self.table.data, writes)
        for partition, offset in last.items():
            self.table.data.set_persisted_offset(TP(self.topic, partition), offset)


def store(data: Any, writes: Sequence[Write]) -> None:
    """Apply acknowledged writes to the local store (``Table.data``): not through the table, whose
    ``__setitem__`` would send each to the changelog again."""
    for w in writes:
        compat.use_event(w.where)  # the store writes to the partition of the current event
        if w.value is None:
            if w.key in data:
                del data[w.key]
        else:
            data[w.key] = w.value
