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
from typing import Any, NamedTuple, Protocol

from faust.types import TP

from stream import compat


class BatchProducer(Protocol):
    """What is used of ``aiokafka.AIOKafkaProducer``: its public batch interface."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any: ...


class Write(NamedTuple):
    """One table write: ``value`` None deletes ``key``. ``where`` is the input record it came with (its
    partition is the changelog partition, as in Faust). The functions here take any 4-tuple in this order
    (``Row``): ``BatchedTable`` queues plain tuples, one or two per event, because a named tuple's
    constructor is a Python function (``namedtuple`` generates it) and a plain tuple is built in C."""

    partition: int
    key: str
    value: bytes | None
    where: Any


Row = tuple[int, str, bytes | None, Any]
"""A ``Write`` as a plain tuple: (partition, key, value, where)."""


MAX_RECORD_BYTES = 1_000_000
"""The largest changelog record sent (key and value): Kafka's default ``max.message.bytes`` is 1 MiB per record
batch. aiokafka's batch interface, unlike its ``send``, does not check it, and the broker's refusal would fail the
batch on every replay. A subject stays far below it (``max_events_per_subject`` 2,000 failures: ~150 KB)."""


async def send_batches(producer: BatchProducer, topic: str, writes: Iterable[Row]) -> dict[int, int]:
    """Send ``writes`` to ``topic``, each partition's in their order; return once the broker acknowledged all
    of them, with the offset of the last record written to each partition.

    A partition's writes usually fit one batch. When they do not, the next batch of that partition is sent only
    once the one before is acknowledged: aiokafka keeps one batch per partition in flight and retries it in
    order, but a batch that fails for good (or expires) would not stop the next one, and a later record (a
    subject) would then be stored without an earlier one (the partition's outage counts). Partitions go in
    parallel. Each batch is closed before it is sent, so it leaves at once instead of after the linger."""
    by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
    for partition, text, value, _where in writes:
        key = text.encode()
        size = len(key) + len(value or b"")
        if size > MAX_RECORD_BYTES:
            raise ValueError(f"a {size}-byte changelog record for partition {partition} exceeds {MAX_RECORD_BYTES}")
        part = by_partition.get(partition)
        if part is None:  # not ``setdefault``: it would build a list for every write
            part = by_partition[partition] = []
        part.append((key, value))
    sent: list[tuple[int, int, Any]] = []  # partition, records in the batch, its delivery future
    for partition, part in by_partition.items():
        batch, n = producer.create_batch(), 0
        for key, value in part:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                batch.close()
                delivery = await producer.send_batch(batch, topic, partition=partition)
                await delivery  # acknowledged before the next batch of this partition goes (see above)
                sent.append((partition, n, delivery))
                batch, n = producer.create_batch(), 0
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise RuntimeError("an empty producer batch refused a record")  # aiokafka takes any first one
            n += 1
        batch.close()
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
        self.pending: list[Row] = []

    def get(self, key: str, where: Any) -> bytes | None:
        db = compat.partition_db(self.table, where.message.partition)
        if db is not None:
            found: bytes | None = db.get(key.encode())
            return found
        compat.use_event(where)
        value: bytes | None = self.table.get(key)
        return value

    def set(self, key: str, value: bytes, where: Any) -> None:
        self.pending.append((where.message.partition, key, value, where))

    def delete(self, key: str, where: Any) -> None:
        self.pending.append((where.message.partition, key, None, where))

    def items(self, partition: int | None = None) -> Iterable[tuple[str, bytes]]:
        if partition is None:
            items: Iterable[tuple[str, bytes]] = self.table.items()
            return items
        return compat.partition_items(self.table, partition)

    async def written(self) -> None:
        """Send the pending writes, and once acknowledged store them and their partitions' offsets."""
        if not self.pending:
            return
        writes, self.pending = self.pending, []
        last = await send_batches(self.producer(), self.topic, writes)
        store(self.table, writes)
        for partition, offset in last.items():
            self.table.data.set_persisted_offset(TP(self.topic, partition), offset)


def store(table: Any, writes: Sequence[Row]) -> None:
    """Apply acknowledged writes to the table's local store, in their order: not through the table, whose
    ``__setitem__`` would send each to the changelog again. On RocksDB, as one write batch per partition database
    (``compat.partition_db``): one write-ahead-log append per partition instead of one per subject, and each
    partition's writes land together. On any other store through ``Table.data``, which writes to the partition
    of the current event."""
    if compat.on_rocksdb(table):
        batches: dict[int, Any] = {}
        for partition, key, value, _where in writes:
            wb = batches.get(partition)
            if wb is None:
                wb = batches[partition] = compat.write_batch()
            if value is None:
                wb.delete(key.encode())
            else:
                wb.put(key.encode(), value)
        for partition, wb in batches.items():
            db = compat.partition_db(table, partition)
            if db is None:
                raise RuntimeError(f"partition {partition} of a RocksDB table has no database")
            db.write(wb)
        return
    data = table.data
    for _partition, key, value, where in writes:
        compat.use_event(where)
        if value is None:
            if key in data:
                del data[key]
        else:
            data[key] = value
