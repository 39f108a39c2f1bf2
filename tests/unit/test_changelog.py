"""``stream.changelog``: a batch's table writes as one producer batch per changelog partition, stored only
once the broker acknowledged them. A recording producer stands in for aiokafka here; the real producer and
broker are exercised by the worker in ``tests/integration`` (every count checked against the changelog
restore in ``test_restore.py`` and the reliability suite)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.changelog import MAX_RECORD_BYTES, BatchedTable, Write, send_batches


@dataclass
class Batch:
    capacity: int
    records: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    closed: bool = False

    def append(self, *, key: bytes, value: bytes | None, timestamp: Any) -> object | None:
        if self.closed or len(self.records) >= self.capacity:
            return None
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        self.closed = True


class Producer:
    """Records what was sent per partition; offsets as the broker would give them; deliveries resolve when
    ``release`` is set (or fail with ``error``)."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self.log: dict[int, list[tuple[bytes, bytes | None]]] = {}
        self.batches = 0
        self.release = asyncio.Event()
        self.release.set()
        self.error: Exception | None = None
        self.deliveries: list[asyncio.Task[None]] = []
        self.journal: list[str] = []

    def create_batch(self) -> Batch:
        return Batch(self.capacity)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        assert topic == "app-callers-changelog"
        assert batch.closed, "an open batch waits for the linger before it is sent"
        self.batches += 1
        self.journal.append(f"send {partition}")
        log = self.log.setdefault(partition, [])
        base = len(log)
        log += batch.records
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def deliver() -> None:
            await self.release.wait()
            if self.error is not None:
                done.set_exception(self.error)
            else:
                self.journal.append(f"ack {partition}")
                done.set_result(SimpleNamespace(offset=base))

        self.deliveries.append(asyncio.ensure_future(deliver()))
        return done


class Where:
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


class Store(dict[str, bytes]):
    def __init__(self) -> None:
        super().__init__()
        self.offsets: dict[int, int] = {}

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.offsets[tp.partition] = offset


class Table:
    def __init__(self) -> None:
        self.data = Store()
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: "app-callers-changelog")

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def items(self) -> list[tuple[str, bytes]]:
        return list(self.data.items())


writes_st = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from("abcdef"), st.one_of(st.none(), st.binary(max_size=8))),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(writes=writes_st, capacity=st.integers(1, 5))
def test_each_partition_gets_its_writes_in_order_and_its_last_offset(
    writes: list[tuple[int, str, bytes | None]], capacity: int
) -> None:
    producer = Producer(capacity)
    ws = [Write(p, k, v, Where(p)) for p, k, v in writes]
    last = asyncio.run(send_batches(producer, "app-callers-changelog", ws))
    want: dict[int, list[tuple[bytes, bytes | None]]] = {}
    for p, k, v in writes:
        want.setdefault(p, []).append((k.encode(), v))
    assert producer.log == want
    assert last == {p: len(records) - 1 for p, records in want.items()}
    assert producer.batches == sum(-(-len(r) // capacity) for r in want.values())


def test_a_partitions_next_batch_goes_only_once_the_one_before_is_acknowledged() -> None:
    producer = Producer(capacity=2)
    ws = [Write(p, f"k{i}", b"v", Where(p)) for i in range(5) for p in (0, 1)]
    asyncio.run(send_batches(producer, "app-callers-changelog", ws))
    for p in (0, 1):
        mine = [e for e in producer.journal if e.endswith(f" {p}")]
        assert mine == [f"send {p}", f"ack {p}"] * 3  # never two of a partition's batches unacknowledged


def test_a_record_too_big_for_the_broker_is_an_error_naming_its_size_before_anything_is_sent() -> None:
    producer = Producer()
    big = b"x" * MAX_RECORD_BYTES
    with pytest.raises(ValueError, match=f"a {MAX_RECORD_BYTES + 1}-byte changelog record for partition 3 exceeds"):
        asyncio.run(send_batches(producer, "app-callers-changelog", [Write(3, "a", big, Where(3))]))
    assert producer.batches == 0


def test_writes_reach_the_store_and_its_offsets_only_after_the_broker_acknowledged_them() -> None:
    async def run() -> tuple[dict[str, bytes], dict[str, bytes], dict[int, int]]:
        producer = Producer()
        producer.release.clear()
        table = Table()
        table.data["gone"] = b"old"
        bt = BatchedTable(table, lambda: producer)
        bt.set("a", b"1", Where(0))
        bt.set("b", b"2", Where(1))
        bt.delete("gone", Where(1))
        task = asyncio.create_task(bt.written())
        await asyncio.sleep(0.05)
        before = dict(table.data)
        producer.release.set()
        await asyncio.wait_for(task, 5)
        return before, dict(table.data), table.data.offsets

    before, after, offsets = asyncio.run(run())
    assert before == {"gone": b"old"}
    assert after == {"a": b"1", "b": b"2"}
    assert offsets == {0: 0, 1: 1}


def test_a_failed_delivery_raises_and_leaves_the_store_as_it_was() -> None:
    async def run() -> dict[str, bytes]:
        producer = Producer()
        producer.error = ConnectionError("broker gone")
        table = Table()
        bt = BatchedTable(table, lambda: producer)
        bt.set("a", b"1", Where(0))
        with pytest.raises(ConnectionError, match="broker gone"):
            await bt.written()
        return dict(table.data)

    assert asyncio.run(run()) == {}


def test_reads_see_the_store_and_nothing_is_sent_without_writes() -> None:
    async def run() -> tuple[bytes | None, int]:
        producer = Producer()
        table = Table()
        table.data["a"] = b"1"
        bt = BatchedTable(table, lambda: producer)
        await bt.written()
        return bt.get("a", Where(0)), producer.batches

    assert asyncio.run(run()) == (b"1", 0)


def test_on_rocksdb_the_direct_reads_and_writes_agree_with_fausts_own(tmp_path: Any) -> None:
    """``BatchedTable`` reads and writes a RocksDB table's partition databases directly (``compat.partition_db``):
    what it writes, Faust's table reads (in an event's partition, and outside any event as the query pages do),
    and what Faust's store wrote, it reads; a delete removes the key for both."""
    import contextvars
    import gc

    import faust
    from faust.types import TP

    from stream import compat

    app = faust.App("app", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    try:
        table = app.Table("callers", key_type=str, value_type=bytes, partitions=4)
        compat.use_raw_keys(table)
        assert compat.partition_db(table, 2) is not None

        def in_event(partition: int, f: Any) -> Any:
            def run() -> Any:
                ev = Where(partition)  # use_event keeps a weak reference only
                compat.use_event(ev)
                return f()

            return contextvars.copy_context().run(run)

        in_event(1, lambda: table.data.__setitem__("8613800000001", b"by faust"))
        producer = Producer()
        bt = BatchedTable(table, lambda: producer)
        assert bt.get("8613800000001", Where(1)) == b"by faust"
        assert bt.get("8613800000001", Where(2)) is None  # another partition's database
        assert bt.get("8613899999999", Where(1)) is None  # never stored

        async def write() -> None:
            bt.set("8613800000002", b"direct \xe2\x9c\x93", Where(3))
            bt.set("8613800000001", b"updated", Where(1))
            await bt.written()
            bt.delete("8613800000002", Where(3))
            bt.set("8613800000003", b"three", Where(0))
            bt.set("8613800000004", b"gone again", Where(0))
            bt.delete("8613800000004", Where(0))  # in the same batch: applied in order
            await bt.written()

        asyncio.run(write())
        assert in_event(1, lambda: table.get("8613800000001")) == b"updated"
        assert table.get("8613800000001") == b"updated"  # outside any event: the query page's read
        assert table.get("8613800000003") == b"three"
        assert table.get("8613800000002") is None and in_event(3, lambda: table.get("8613800000002")) is None
        assert sorted(compat.partition_items(table, 0)) == [("8613800000003", b"three")]
        assert table.get("8613800000004") is None
        assert bt.get("8613800000003", Where(0)) == b"three"
        assert table.persisted_offset(TP("app-callers-changelog", 3)) == 1
    finally:
        if not app.loop.is_closed():
            app.loop.close()
        gc.collect()
