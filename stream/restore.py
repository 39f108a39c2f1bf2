"""Cold restore in bulk: read a worker's table changelogs with a plain consumer and write them in batches.

Faust restores a table record by record: each changelog record goes through its consumer's fetch loop
(``wait_first``: four asyncio tasks per record), the conductor, a queue and the recovery loop (``wait_for``:
one more task, and a recount of what is left over every partition). Profiled on a cold restore (bench
``stream_restore``), that framework path is ~200 µs of CPU per record, so a worker that lost its disk
restored ~7,800 records/s, and the RocksDB writes themselves (already batched by Faust) were a few percent.

``BulkRestore.load`` does the same work at the start of Faust's recovery, before Faust's own consumer is
pointed at the changelogs (``stream.compat.bulk_restore`` hooks it in): one aiokafka consumer with no group
reads each active changelog partition from the table's persisted offset up to the high-water mark that
Faust just measured, and hands each fetched batch to the table's own ``apply_changelog_batch`` (one RocksDB
``WriteBatch`` per partition, then the persisted offset, exactly as Faust's recovery writes them). It then
moves Faust's start offsets to what it applied, and Faust reads only what is left (nothing, when the load
finished): the same records, applied in the same order by the same store method, so the restored table is
identical.

Bounded: the load stops at its time budget, when another rebalance starts, or when cancelled (Faust cancels
a recovery step on a new rebalance); what it has applied is persisted batch by batch (data, then offset), so
Faust continues from there and nothing is applied twice out of order or lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger("bindwatch.stream")


class ChangelogTable(Protocol):
    def apply_changelog_batch(self, batch: Iterable[Any]) -> None: ...


class _Message(NamedTuple):
    """The fields of a Faust ``Message`` that the stores' ``apply_changelog_batch`` reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class _Event:
    """Stands for a Faust changelog ``Event`` (raw keys and values: bindwatch's tables serialise neither)."""

    message: _Message

    @property
    def key(self) -> bytes | None:
        return self.message.key

    @property
    def value(self) -> bytes | None:
        return self.message.value


@dataclass
class Outcome:
    records: int = 0
    seconds: float = 0.0
    finished: bool = True
    """Every partition reached its high-water mark (else Faust's recovery reads the rest)."""


class BulkRestore:
    """Loads changelog partitions into their tables (see the module docstring)."""

    def __init__(
        self,
        bootstrap_servers: str,
        budget_seconds: float,
        *,
        max_records: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
        consumer_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.budget_seconds = budget_seconds
        self.max_records = max_records
        self.clock = clock
        self.consumer_factory = consumer_factory or self._consumer
        """Makes the consumer (an ``AIOKafkaConsumer``; unit tests pass a double)."""

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="bindwatch-restore",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )

    async def load(
        self,
        offsets: MutableMapping[Any, int | None],
        highwaters: Mapping[Any, int | None],
        tables: Mapping[Any, ChangelogTable],
        stop: asyncio.Event,
    ) -> Outcome:
        """Apply the records after ``offsets[tp]`` up to ``highwaters[tp]`` (both inclusive offsets of the last
        record, -1 or None for none) to ``tables[tp]``, and advance ``offsets[tp]`` to the last one applied."""
        t0 = self.clock()
        todo: dict[TopicPartition, int] = {}
        for tp, hw in highwaters.items():
            if hw is not None and hw > _last(offsets, tp) and tp in tables:
                todo[TopicPartition(tp.topic, tp.partition)] = hw
        out = Outcome()
        if not todo:
            return out
        keys = {TopicPartition(tp.topic, tp.partition): tp for tp in highwaters}
        consumer = self.consumer_factory()
        await asyncio.wait_for(consumer.start(), 30)
        try:
            consumer.assign(list(todo))
            for atp in todo:
                consumer.seek(atp, _last(offsets, keys[atp]) + 1)
            deadline = t0 + self.budget_seconds
            while todo:
                if stop.is_set() or self.clock() >= deadline:
                    out.finished = False
                    break
                batch = await consumer.getmany(*todo, timeout_ms=500, max_records=self.max_records)
                for atp, records in batch.items():
                    hw = todo.get(atp)
                    if hw is None:
                        continue
                    events = [
                        _Event(_Message(r.topic, r.partition, r.offset, r.key, r.value))
                        for r in records
                        if r.offset <= hw
                    ]
                    if events:
                        tables[keys[atp]].apply_changelog_batch(events)
                        offsets[keys[atp]] = events[-1].message.offset
                        out.records += len(events)
                for atp in [a for a, hw in todo.items() if _last(offsets, keys[a]) >= hw]:
                    del todo[atp]
                for atp, hw in list(todo.items()):
                    # Past the mark without a record at it (a compacted or control record): all of it is read.
                    if await consumer.position(atp) > hw:
                        offsets[keys[atp]] = hw
                        del todo[atp]
        finally:
            await asyncio.wait_for(consumer.stop(), 30)
        out.seconds = round(self.clock() - t0, 2)
        log.info(
            "bulk restore: %d changelog records in %.1f s (%s)",
            out.records,
            out.seconds,
            "complete" if out.finished else "partial: Faust's recovery reads the rest",
        )
        return out


def _last(offsets: Mapping[Any, int | None], tp: Any) -> int:
    """The offset of the last record applied (-1 for none: Faust's convention)."""
    v = offsets.get(tp)
    return -1 if v is None or v < 0 else v
