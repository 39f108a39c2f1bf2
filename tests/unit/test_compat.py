"""One test per Faust / mode internal that ``stream/compat.py`` relies on: each fails when an upgrade
removes, renames or changes it. Run this file first when upgrading faust-streaming or mode-streaming."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import gc
import inspect
import time
import types
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import faust
import faust.streams
import pytest
from aiokafka.structs import ConsumerRecord as AioConsumerRecord
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from mode import Service

import stream.app  # noqa: F401  (importing the app applies the fixes)
from stream import compat
from stream.config import StreamSettings
from stream.intake import Intake, Record

# The one third-party leak accepted here (see the fixture): mode.threads.ServiceThread's unclosed thread loop.
pytestmark = [
    pytest.mark.filterwarnings("ignore:unclosed event loop:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture
def app() -> Iterator[faust.App]:
    # No broker is contacted: an App connects only when started as a worker.
    a = faust.App("compat-test", broker="kafka://127.0.0.1:1", store="memory://", value_serializer="raw")
    yield a
    # Reaching the table manager makes the app create an event loop: close it, or its self-pipe socket is
    # collected later, during some other test, as an unraisable ResourceWarning (warnings are errors).
    if not a.loop.is_closed():
        a.loop.close()
    # mode's ServiceThread builds an event loop for Faust's consumer thread when an agent test touches the
    # consumer, and never closes it when the thread never started. Collect it here, inside this file's tests,
    # where the filter below names it, instead of at random in a later test.
    gc.collect()


class Ev:
    """Stands for a Faust event (``use_event`` keeps only a weak reference)."""


def test_use_event_makes_the_event_fausts_current_event() -> None:
    ev = Ev()

    def run() -> Any:
        assert faust.streams.current_event() is None
        compat.use_event(ev)
        return faust.streams.current_event()

    assert contextvars.copy_context().run(run) is ev


def test_use_raw_keys_makes_the_changelog_key_the_raw_number(app: faust.App) -> None:
    table = app.Table("t", key_type=str, value_type=bytes, partitions=2)
    assert table.changelog_topic.prepare_key("123", None, None)[0] == b'"123"'  # why it is needed
    compat.use_raw_keys(table)
    assert table.changelog_topic.prepare_key("123", None, None)[0] == b"123"
    assert table.changelog_topic.get_topic_name() == "compat-test-t-changelog"


def test_changelog_topic_name_is_the_one_faust_uses(app: faust.App) -> None:
    table = app.Table("dids", key_type=str, value_type=bytes, partitions=2)
    assert compat.changelog_topic_name(app.conf.id, "dids") == table.changelog_topic.get_topic_name()


def test_crashed_agents_sees_an_actor_that_crashed(app: faust.App) -> None:
    @app.agent(app.topic("x", value_type=bytes))
    async def boom(events: Any) -> None:
        async for value in events:
            if value == b"crash":
                raise RuntimeError("boom")

    async def run() -> tuple[list[str], list[str]]:
        app.finalize()
        app.flow_control.resume()
        async with boom.test_context() as agent:
            holder = types.SimpleNamespace(agents={"boom": agent})
            await agent.put(b"fine")
            before = compat.crashed_agents(holder)
            with pytest.raises(RuntimeError, match="boom"):
                await agent.put(b"crash")
            return before, compat.crashed_agents(holder)

    assert asyncio.run(run()) == ([], ["boom"])


def test_recovery_completed_reads_the_recovery_event(app: faust.App) -> None:
    assert compat.recovery_completed(app) is False
    app.tables.recovery.completed.set()  # type: ignore[attr-defined]  # TableManagerT omits it; Recovery sets it
    assert compat.recovery_completed(app) is True


# --- the ProducerBuffer.flush fix ------------------------------------------------------------------
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


def test_drain_waits_until_the_buffer_is_empty() -> None:
    async def run() -> int:
        buf = SlowBuffer(3)
        task = asyncio.create_task(buf.sender())
        await compat.drain(buf)
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


class SlowChannel:
    def __init__(self) -> None:
        self.published = 0

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(0.3)
        self.published += 1


def test_patched_flush_drains_a_real_producer_buffer(app: faust.App) -> None:
    """The patch against Faust's own buffer: its ``size``, ``state``, ``message_sent`` and background sender."""

    async def run() -> tuple[int, int]:
        channel = SlowChannel()
        buf = ProducerBuffer()
        buf.app = app
        await buf.start()
        for _ in range(3):
            buf.put(types.SimpleNamespace(message=types.SimpleNamespace(channel=channel)))  # type: ignore[arg-type]
        await buf.flush()
        left = buf.size
        await buf.stop()
        return left, channel.published

    left, published = asyncio.run(run())
    assert left == 0 and published == 3  # the last one too: flush waits for the message being sent


def test_flush_waits_for_the_message_the_sender_has_taken(app: faust.App) -> None:
    """Once Faust's sender has taken a message, the buffer's ``size`` is 0 while the message is still on its
    way to the Kafka producer (``_send_pending``: aiokafka's ``send`` waits for metadata and for room in the
    partition's batch). A flush that looked at ``size`` alone returned then, and the commit that followed
    covered a table update that a crash could still lose. Uses ``_send_pending`` and ``_handle_pending``."""

    async def run() -> tuple[tuple[int, int, int], int, int]:
        channel = SlowChannel()
        buf = ProducerBuffer()
        buf.app = app
        await buf.start()
        buf.put(types.SimpleNamespace(message=types.SimpleNamespace(channel=channel)))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)  # the sender has taken it; publishing takes 0.3 s
        taken = (buf.size, compat.sending(buf), channel.published)
        await buf.flush()
        published, after = channel.published, compat.sending(buf)
        await buf.stop()
        return taken, published, after

    taken, published, after = asyncio.run(run())
    assert taken == (0, 1, 0)  # what ``size`` cannot see
    assert published == 1 and after == 0


def test_fausts_sender_takes_the_message_before_it_is_sent() -> None:
    """The order ``sending`` relies on: ``_handle_pending`` takes a message off ``pending`` (``size`` drops),
    awaits ``_send_pending``, and only then sets ``message_sent``."""
    src = inspect.getsource(ProducerBuffer._handle_pending.fun)  # a mode ServiceTask
    get, send, sent = (
        src.index("await get_pending()"),
        src.index("await send_pending(msg)"),
        src.index("self.message_sent.set()"),
    )
    assert get < send < sent
    assert "send_pending = self._send_pending" in src


def test_the_fix_is_installed() -> None:
    assert ProducerBuffer.flush is compat.drain
    assert ProducerBuffer._send_pending is compat._send_pending_counted
    assert ProducerBuffer.max_messages == compat.BUFFER_MAX_MESSAGES


class CountingBuffer(ProducerBuffer):
    """A buffer of a given size whose flushes are counted (Faust's ``wait_until_ebb`` decides on its own)."""

    def __init__(self, size: int) -> None:  # no Service start: only wait_until_ebb is exercised
        self._size = size
        self.flushes = 0

    @property
    def size(self) -> int:
        return self._size

    async def flush_atmost(self, max_messages: int | None) -> int:
        self.flushes += 1
        return 0


@pytest.mark.parametrize(
    ("size", "flushes"), [(600, 0), (compat.BUFFER_MAX_MESSAGES, 0), (compat.BUFFER_MAX_MESSAGES + 1, 1)]
)
def test_the_conductor_waits_only_beyond_the_raised_limit(size: int, flushes: int) -> None:
    """Faust's ``wait_until_ebb`` reads ``max_messages``: a batch of table writes (600 > Faust's 100) passes."""
    buf = CountingBuffer(size)
    asyncio.run(buf.wait_until_ebb())
    assert buf.flushes == flushes


class RecordingRestore:
    """Stands for ``stream.restore.BulkRestore``: records what the recovery hook hands it."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any], bool]] = []

    async def load(self, offsets: Any, highwaters: Any, tables: Any, stop: asyncio.Event) -> None:
        self.calls.append((dict(offsets), dict(highwaters), dict(tables), stop.is_set()))
        for tp, hw in highwaters.items():
            offsets[tp] = hw  # what a complete load leaves


class EarliestConsumer:
    async def earliest_offsets(self, *tps: Any) -> dict[Any, int]:
        return dict.fromkeys(tps, 0)


def test_bulk_restore_runs_after_faust_builds_the_active_offsets(app: faust.App) -> None:
    """The hook needs ``Recovery._build_offsets(consumer, tps, destination, title)``, the Recovery's
    ``active_highwaters``, ``tp_to_table`` and ``signal_recovery_start``, and the order of the steps of
    ``_restart_recovery``: active high-water marks, then active offsets, then the seek to them."""
    from faust.tables.recovery import Recovery
    from faust.types import TP

    assert Recovery._build_offsets is compat._build_offsets_then_bulk_restore
    src = inspect.getsource(Recovery._restart_recovery.fun)  # a mode ServiceTask
    hw = src.index("_build_highwaters)(\n                        consumer, assigned_active_tps, active_highwaters")
    offs = src.index("_build_offsets)(\n                        consumer, assigned_active_tps, active_offsets")
    seek = src.index("_seek_offsets)(\n                        consumer, assigned_active_tps, active_offsets")
    assert hw < offs < seek
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    table = app.Table("t", key_type=str, value_type=bytes, partitions=2)
    tp = TP("compat-test-t-changelog", 1)
    recovery.tp_to_table[tp] = table
    recovery.active_highwaters[tp] = 41
    restore = RecordingRestore()

    def build(title: str) -> Any:
        destination: Any = Counter({tp: None})
        asyncio.run(recovery._build_offsets(EarliestConsumer(), {tp}, destination, title))
        return destination

    assert build("active") == {tp: -1} and not restore.calls  # no restore given: Faust's own offsets only
    compat.use_bulk_restore(app, restore)  # type: ignore[arg-type]
    assert build("standby") == {tp: -1} and not restore.calls  # standbys are left to Faust
    assert build("active") == {tp: 41}  # Faust's seek starts after what the restore applied
    assert restore.calls == [({tp: -1}, {tp: 41}, {tp: table}, False)]
    assert isinstance(recovery.signal_recovery_start, asyncio.Event)


# --- the batching loop (take_batches) ----------------------------------------------------------------
class Batches:
    """A stream over a memory channel, read with ``compat.take_batches``; records what was acknowledged
    by the time each batch was handed out."""

    def __init__(self, app: faust.App) -> None:
        app.finalize()
        app.flow_control.resume()
        self.channel = app.channel()
        self.stream = app.stream(aiter(self.channel))
        self.acked: list[Any] = []
        ack = self.stream.ack

        async def recording_ack(event: Any) -> bool:
            self.acked.append(event.value)
            return await ack(event)

        self.stream.ack = recording_ack  # type: ignore[method-assign]

    async def send(self, *values: int) -> None:
        for v in values:
            await self.channel.send(value=v)


def test_take_batches_fills_batches_and_acks_each_only_after_the_agent_is_done(app: faust.App) -> None:
    async def run() -> list[tuple[list[Any], list[Any]]]:
        b = Batches(app)
        await b.stream.maybe_start()
        got: list[tuple[list[Any], list[Any]]] = []

        async def consume() -> None:
            async for batch in compat.take_batches(b.stream, 3, 0.05):
                got.append(([e.value for e in batch], list(b.acked)))
                if sum(len(g[0]) for g in got) >= 7:
                    break

        task = asyncio.create_task(consume())
        await b.send(*range(7))
        await asyncio.wait_for(task, 10)
        return got

    assert asyncio.run(run()) == [([0, 1, 2], []), ([3, 4, 5], [0, 1, 2]), ([6], [0, 1, 2, 3, 4, 5])]


def test_take_batches_waits_within_from_the_first_event_and_reads_on_while_a_batch_is_processed(
    app: faust.App,
) -> None:
    """The property ``take_events`` lacks: events that arrived while a batch was processed, and have waited
    ``within`` already, are handed out as soon as the agent asks, not after another full wait."""
    within = 1.0

    async def run() -> tuple[float, list[Any], float, list[Any]]:
        b = Batches(app)
        await b.stream.maybe_start()
        loop = asyncio.get_running_loop()
        it = aiter(compat.take_batches(b.stream, 100, within))
        t0 = loop.time()
        await b.send(0)
        first = await asyncio.wait_for(anext(it), 10)
        first_after = loop.time() - t0
        await b.send(1, 2)  # arrive while the agent "processes" the first batch
        await asyncio.sleep(within * 1.2)
        t1 = loop.time()
        second = await asyncio.wait_for(anext(it), 10)
        second_after = loop.time() - t1
        await it.aclose()  # type: ignore[attr-defined]
        return first_after, [e.value for e in first], second_after, [e.value for e in second]

    first_after, first, second_after, second = asyncio.run(run())
    assert first == [0] and first_after >= within * 0.95  # a lone event waits ``within`` for company
    assert second == [1, 2] and second_after < within * 0.5  # they waited during processing: no second wait


def test_fausts_take_events_waits_again_after_each_batch(app: faust.App) -> None:
    """Documents why ``take_batches`` exists: the same scenario with Faust's ``take_events`` pays the full
    ``within`` again after the agent returns (and read nothing into the batch meanwhile)."""
    within = 1.0

    async def run() -> float:
        b = Batches(app)
        await b.stream.maybe_start()
        loop = asyncio.get_running_loop()
        it = aiter(b.stream.take_events(100, within))  # type: ignore[attr-defined]  # on Stream, not StreamT
        await b.send(0)
        await asyncio.wait_for(anext(it), 10)
        await b.send(1, 2)
        await asyncio.sleep(within * 1.2)
        t1 = loop.time()
        await asyncio.wait_for(anext(it), 10)
        return loop.time() - t1

    assert asyncio.run(run()) >= within * 0.95


def test_take_batches_does_not_ack_a_batch_whose_processing_failed(app: faust.App) -> None:
    async def run() -> list[Any]:
        b = Batches(app)
        await b.stream.maybe_start()

        async def consume() -> None:
            async for _batch in compat.take_batches(b.stream, 2, 0.05):
                raise RuntimeError("the core failed")

        task = asyncio.create_task(consume())
        await b.send(0, 1)
        with pytest.raises(RuntimeError, match="the core failed"):
            await asyncio.wait_for(task, 10)
        return b.acked

    assert asyncio.run(run()) == []


def test_take_batches_rejects_an_empty_batch_size(app: faust.App) -> None:
    async def run() -> None:
        b = Batches(app)
        async for _ in compat.take_batches(b.stream, 0, 0.05):
            pass

    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(run())


def test_kafka_producer_is_the_aiokafka_producer_inside_fausts(app: faust.App) -> None:
    """``Producer._producer`` is there (None until the worker starts it) and aiokafka offers the batch API
    that ``stream.changelog`` uses."""
    from aiokafka import AIOKafkaProducer

    producer = app.producer
    assert producer._producer is None  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="has not started"):
        compat.kafka_producer(app)
    fake = object()
    producer._producer = fake  # type: ignore[attr-defined]
    assert compat.kafka_producer(app) is fake
    assert callable(AIOKafkaProducer.create_batch) and inspect.iscoroutinefunction(AIOKafkaProducer.send_batch)


# --- a standby promoted to active (issue 17, the failed standby run) -------------------------------
class ServedConsumer:
    """Stands for the bulk restore's aiokafka consumer: serves one changelog partition from where it is
    sought, and records that position."""

    def __init__(self, records: list[Any]) -> None:
        self.records = records
        self.sought: list[int] = []
        self.pos = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assign(self, tps: list[Any]) -> None: ...

    def seek(self, tp: Any, offset: int) -> None:
        self.sought.append(offset)
        self.pos = offset

    async def position(self, tp: Any) -> int:
        return self.pos

    async def getmany(self, *tps: Any, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        recs = [r for r in self.records if r.offset >= self.pos]
        if not recs:
            return {}
        self.pos = recs[-1].offset + 1
        return {tps[0]: recs}


def test_a_promoted_standby_resumes_from_what_its_copy_applied(tmp_path: Any) -> None:
    """Faust's promotion of a standby partition with the bulk restore hooked in, on real Faust objects and a
    real RocksDB store: ``Recovery.add_active`` (what ``Recovery.on_rebalance`` calls) starts the partition at
    the offset its standby copy *persisted* (records the standby had read but not yet applied do not count),
    and the bulk restore applies exactly the records after it up to the high-water mark, in order. A start
    taken from the standby's in-memory offset would skip records 6 and 7 and leave k0 and k1 stale."""
    from aiokafka import TopicPartition
    from faust.events import Event
    from faust.tables.recovery import Recovery
    from faust.types import TP
    from faust.types.tuples import Message

    from stream.restore import BulkRestore

    a = faust.App("promo-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    try:
        table = a.Table("t", key_type=str, value_type=bytes, partitions=2)
        compat.use_raw_keys(table)
        tp = TP("promo-test-t-changelog", 1)
        keys = [b"k0", b"k1", b"k2"]
        log = [Message(tp.topic, 1, o, 0.0, 0, None, keys[o % 3], b"v%d" % o, None) for o in range(10)]
        # The standby copy: Faust's _slurp_changelogs applied records 0-5 (a batch, then the offset) and had
        # read 6 and 7 into its buffer when the rebalance came.
        table.apply_changelog_batch([Event(a, m.key, m.value, None, m) for m in log[:6]])
        recovery = Recovery(a, a.tables)
        recovery.add_standby(table, tp)
        recovery.standby_offsets[tp] = 7
        # The promotion: the changelog partition becomes active; high-water mark 9 (the dead worker's last write).
        recovery.add_active(table, tp)
        assert recovery.active_offsets[tp] == 5
        recovery.active_highwaters[tp] = 9
        served = ServedConsumer(
            [types.SimpleNamespace(topic=m.topic, partition=1, offset=m.offset, key=m.key, value=m.value) for m in log]
        )
        compat.use_bulk_restore(a, BulkRestore("unused:9092", 30.0, consumer_factory=lambda: served))
        asyncio.run(recovery._build_offsets(EarliestConsumer(), {tp}, recovery.active_offsets, "active"))  # type: ignore[arg-type]

        assert served.sought == [6]
        assert recovery.active_offsets[tp] == 9  # Faust's own recovery has nothing left to read
        assert table.persisted_offset(tp) == 9
        ev = Ev()
        ev.message = TopicPartition(tp.topic, 1)  # type: ignore[attr-defined]

        def read() -> list[bytes]:
            compat.use_event(ev)  # reads go to partition 1's database
            return [table[k.decode()] for k in keys]

        assert contextvars.copy_context().run(read) == [b"v9", b"v7", b"v8"]
    finally:
        if not a.loop.is_closed():
            a.loop.close()
        gc.collect()


def test_fausts_copy_of_a_partition_resumes_after_its_own_last_write(tmp_path: Any) -> None:
    """Documents the Faust behaviour behind hypothesis 3 of the failed standby run (``docs/reliability.md``):
    the persisted offset of a partition a worker writes is the offset of its *own* last acknowledged changelog
    write (``Table._on_changelog_sent``), and a standby copy (or a promotion) of that partition on the same
    worker starts there. If another worker's records sit before it (two writers during a rebalance), the copy
    never reads them."""
    from faust.tables.recovery import Recovery
    from faust.types import TP

    a = faust.App("own-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    try:
        table = a.Table("t", key_type=str, value_type=bytes, partitions=2)
        tp = TP("own-test-t-changelog", 0)

        def acked(offset: int) -> Any:  # the future of one of this worker's changelog writes, acknowledged
            return types.SimpleNamespace(result=lambda: types.SimpleNamespace(topic_partition=tp, offset=offset))

        table._on_changelog_sent(acked(4))  # type: ignore[attr-defined]  # its write, while it owned the partition
        # offset 5: the new owner's first write; offset 6: this worker's late write, acknowledged after it
        table._on_changelog_sent(acked(6))  # type: ignore[attr-defined]
        recovery = Recovery(a, a.tables)
        recovery.add_standby(table, tp)  # the partition is this worker's standby now
        assert recovery.standby_offsets[tp] == 6  # record 5 is behind the copy's start: never applied
    finally:
        if not a.loop.is_closed():
            a.loop.close()
        gc.collect()


# --- Consumer.wait_first: the eager start of the conductor's callback ---------------------------------------------


class Waiter(Service):
    """A mode service to call the patched ``wait_first`` on (it reads only ``_stopped`` and ``_crashed``)."""


def test_the_drain_loop_hands_each_record_to_wait_first_and_the_consumer_gets_the_eager_one() -> None:
    from faust.transport.consumer import Consumer

    source = inspect.getsource(compat._ORIGINAL_DRAIN_MESSAGES)  # Faust's, which _deliver follows
    assert "await self.wait_first(" in source and "callback(message), self.suspend_flow.wait()" in source
    assert Consumer.wait_first is compat._wait_first_eagerly
    assert Service.wait_first is not compat._wait_first_eagerly  # only the consumer: other services keep mode's


def test_a_callback_that_never_suspends_completes_without_a_task() -> None:
    steps: list[str] = []

    async def callback() -> str:
        steps.append("ran")
        return "done"

    async def run() -> tuple[Any, int]:
        svc = Waiter()
        flow = asyncio.Event()
        other = flow.wait()
        tasks_before = len(asyncio.all_tasks())
        results = await compat._wait_first_eagerly(svc, callback(), other)
        assert inspect.getcoroutinestate(other) == inspect.CORO_CLOSED  # closed, never left to warn "was never awaited"
        return results, len(asyncio.all_tasks()) - tasks_before

    results, new_tasks = asyncio.run(run())
    assert steps == ["ran"] and new_tasks == 0
    assert results.results == ["done"] and not results.stopped


def test_a_callback_that_suspends_is_finished_as_mode_would() -> None:
    async def run() -> Any:
        svc = Waiter()
        loop = asyncio.get_running_loop()
        gate: asyncio.Future[int] = loop.create_future()

        async def callback() -> int:
            got = await gate  # suspends: the rest runs in a task
            await asyncio.sleep(0)
            return got + 1

        loop.call_later(0.01, gate.set_result, 41)
        flow = asyncio.Event()
        return await asyncio.wait_for(compat._wait_first_eagerly(svc, callback(), flow.wait()), 5)

    results = asyncio.run(run())
    assert results.results == [42] and not results.stopped


def test_a_suspended_callback_is_cancelled_when_the_flow_is_suspended_first() -> None:
    cleaned: list[str] = []

    async def run() -> Any:
        svc = Waiter()
        loop = asyncio.get_running_loop()
        never: asyncio.Future[None] = loop.create_future()
        flow = asyncio.Event()

        async def callback() -> None:
            try:
                await never
            finally:
                cleaned.append("cancelled")

        loop.call_later(0.01, flow.set)
        results = await asyncio.wait_for(compat._wait_first_eagerly(svc, callback(), flow.wait()), 5)
        await asyncio.sleep(0.01)  # let the cancelled task run its cleanup
        return results

    results = asyncio.run(run())
    assert results.results == [True]  # the flow event won
    assert cleaned == ["cancelled"]


@pytest.mark.parametrize("suspends", [False, True], ids=["at once", "after a suspension"])
def test_a_callback_that_raises_propagates_its_error(suspends: bool) -> None:
    async def run() -> None:
        svc = Waiter()

        async def callback() -> None:
            if suspends:
                await asyncio.sleep(0)
            raise ValueError("undecodable")

        flow = asyncio.Event()
        other = flow.wait()
        with pytest.raises(ValueError, match="undecodable"):
            await asyncio.wait_for(compat._wait_first_eagerly(svc, callback(), other), 5)
        if not suspends:
            assert inspect.getcoroutinestate(other) == inspect.CORO_CLOSED

    asyncio.run(run())


def test_a_stopped_service_reports_stopped_as_mode_does() -> None:
    async def run() -> tuple[Any, Any]:
        before = Waiter()
        before._stopped.set()

        async def callback() -> str:
            return "ran"

        by_mode = await Service.wait_first(before, callback())
        eager = await compat._wait_first_eagerly(before, callback())
        return by_mode, eager

    by_mode, eager = asyncio.run(run())
    assert by_mode.stopped and eager.stopped


def test_the_worker_starts_without_fausts_monitor_among_its_sensors() -> None:
    """Faust's ``App.on_init_dependencies`` adds its ``Monitor`` to the sensors every record goes through;
    the worker's app takes it out again, and keeps ``app.monitor`` for the consumer's direct calls."""
    from stream.app import create_app

    app = create_app(StreamSettings(app_id="monitor-unit", log_level="ERROR"))
    assert list(app.on_init_dependencies())  # the services Faust starts are still returned
    assert app.monitor not in set(app.sensors)
    assert app.monitor is not None and hasattr(app.monitor, "on_tp_commit")
    app.on_init_dependencies()  # a second start (Faust does not, but it must not fail) changes nothing
    assert app.monitor not in set(app.sensors)


# --- the direct input (stream.intake) ------------------------------------------------------------------
def test_use_intake_routes_the_topics_records_to_the_intake_and_leaves_others_to_faust(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    faust_got: list[Any] = []

    def fausts_compiler(conductor: Any) -> Any:  # Faust's own handler would need a consumer: a stand-in
        async def on_message(message: Any) -> None:
            faust_got.append(message)

        return on_message

    monkeypatch.setattr(compat, "_ORIGINAL_COMPILE_MESSAGE_HANDLER", fausts_compiler)
    app.flow_control.resume()
    topic = app.topic("events", "ticks", value_type=bytes)
    other = app.topic("elsewhere", value_type=bytes)
    intake = Intake(app, topic.topics, 10, 0.05)
    compat.use_intake(app, topic, intake)
    app.topics.add(other)
    assert topic in app.topics and other in app.topics  # subscribed

    def msg(topic: str) -> Any:
        return ConsumerMessage(topic, 0, 5, 1.0, 0, [], b"k", b"v", None, 1, 1, TP(topic, 0), generation_id=0)

    async def deliver() -> None:
        for name in ("events", "ticks", "elsewhere"):
            await app.topics.on_message(msg(name))

    asyncio.run(deliver())
    assert len(intake) == 2 and [m.topic for m in faust_got] == ["elsewhere"]
    managed: Any = app.flow_control._queues  # cleared at a revocation (typed for mode's queues only)
    assert intake in managed


def test_fausts_consumer_and_message_offer_what_the_intake_uses() -> None:
    """Guards an upgrade: the names the intake calls on Faust's consumer and message types."""
    from faust.transport.consumer import Consumer

    for name in ("ack", "on_buffer_full", "on_buffer_drop", "unacked", "wait_empty"):
        assert hasattr(Consumer, name), name
    assert isinstance(ProducerBuffer.max_messages, int) and isinstance(ProducerBuffer.size, property)
    m = ConsumerMessage("t", 0, 5, 1.0, 0, [], b"k", b"v", None, 1, 1, TP("t", 0), generation_id=7)
    assert m.generation_id == 7 and m.tracked is False
    assert Record(m).key == "k" and Record(m).value == b"v"


def test_note_stream_inbound_feeds_fausts_livelock_check(app: faust.App) -> None:
    """Without it, the aiokafka driver's ``verify_event_path`` finds no inbound time for a partition read
    through the intake and logs "Stream has not started processing" for it after five minutes."""
    import time

    from faust.transport.drivers import aiokafka as driver

    assert "monitor.stream_inbound_time.get(tp)" in inspect.getsource(driver.AIOKafkaConsumerThread.verify_event_path)
    monitor = app.monitor
    before = time.monotonic()
    msgs = [
        ConsumerMessage("events", p, 5, 1.0, 0, [], b"k", b"v", None, 1, 1, TP("events", p), generation_id=0)
        for p in (0, 3, 3)
    ]
    compat.note_stream_inbound(app, [Record(m) for m in msgs])
    assert set(monitor.stream_inbound_time) == {TP("events", 0), TP("events", 3)}
    assert all(t >= before for t in monitor.stream_inbound_time.values())
    compat.note_stream_inbound(app, [])  # an empty batch changes nothing


def test_aiokafka_and_faust_offer_what_wake_fetch_uses() -> None:
    """Guards an upgrade: the waiter ``fetched_records`` sleeps on, and where Faust keeps the consumer thread's
    loop and aiokafka consumer, and that it hands the fetch its live set of active partitions."""
    from aiokafka.consumer.fetcher import Fetcher
    from faust.transport.drivers import aiokafka as driver

    assert "self._create_fetch_waiter()" in inspect.getsource(Fetcher.fetched_records)
    assert "self._fetch_waiters = set()" in inspect.getsource(Fetcher.__init__)
    assert callable(Fetcher._notify)
    assert "self._consumer = self._create_consumer(loop=self.thread_loop)" in inspect.getsource(
        driver.AIOKafkaConsumerThread.on_start
    )
    assert "getmany(timeout=1.0)" in inspect.getsource(compat._ORIGINAL_DRAIN_MESSAGES)
    assert "_wait_next_records(1.0)" in inspect.getsource(compat._drain_messages_in_runs)  # the same second
    assert "active_partitions = self._get_active_partitions()" in inspect.getsource(driver.Consumer._wait_next_records)


def test_wake_fetch_wakes_a_fetch_waiting_in_the_consumer_thread() -> None:
    """A waiter made by aiokafka's own ``_create_fetch_waiter`` in another thread's loop is woken from this
    thread (without it, the wait below runs into its deadline)."""
    import threading
    from concurrent.futures import Future
    from types import SimpleNamespace

    from aiokafka.consumer.fetcher import Fetcher

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        fetcher: Any = SimpleNamespace(_loop=loop, _fetch_waiters=set())
        fetcher._notify = types.MethodType(Fetcher._notify, fetcher)
        fetcher._create_fetch_waiter = types.MethodType(Fetcher._create_fetch_waiter, fetcher)

        async def wait() -> str:
            waiter = fetcher._create_fetch_waiter()
            await asyncio.wait_for(waiter, timeout=30)
            return "woken"

        waiting: Future[str] = asyncio.run_coroutine_threadsafe(wait(), loop)
        while not fetcher._fetch_waiters:
            time.sleep(0.001)
        app: Any = SimpleNamespace(
            consumer=SimpleNamespace(
                _thread=SimpleNamespace(thread_loop=loop, _consumer=SimpleNamespace(_fetcher=fetcher))
            )
        )
        compat.wake_fetch(app)
        assert waiting.result(timeout=10) == "woken"
        compat.wake_fetch(SimpleNamespace(consumer=SimpleNamespace()))  # no consumer thread: nothing to wake
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_fausts_worker_consumer_long_polls_1500_ms_and_aiokafka_reads_the_wait_from_the_consumer() -> None:
    """Why ``use_fetch_max_wait`` exists, and what it relies on: Faust passes a hardcoded 1,500 to the worker
    consumer, and aiokafka's consumer hands its ``_fetch_max_wait_ms`` to the Fetcher it makes in ``start``."""
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert "fetch_max_wait_ms=1500" in inspect.getsource(compat._ORIGINAL_CREATE_WORKER_CONSUMER)
    assert AIOKafkaConsumerThread._create_worker_consumer is compat._create_worker_consumer_with_fetch_wait
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)


def test_the_worker_consumer_gets_the_apps_long_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The patched ``_create_worker_consumer`` replaces Faust's wait with the app's; an app that set none keeps
    Faust's. (Faust's real method is not run here: it needs a consumer thread, whose event loop mode never
    closes; the test above checks what the patch relies on in Faust and aiokafka.)"""
    from types import SimpleNamespace

    monkeypatch.setattr(
        compat, "_ORIGINAL_CREATE_WORKER_CONSUMER", lambda self, transport: SimpleNamespace(_fetch_max_wait_ms=1500)
    )
    thread: Any = SimpleNamespace(app=SimpleNamespace())
    assert compat._create_worker_consumer_with_fetch_wait(thread, None)._fetch_max_wait_ms == 1500
    compat.use_fetch_max_wait(thread.app, 100)
    assert compat._create_worker_consumer_with_fetch_wait(thread, None)._fetch_max_wait_ms == 100


def test_ack_all_leaves_fausts_consumer_as_acking_each_message_in_turn_does(app: faust.App) -> None:
    """``compat.ack_all`` against Faust's own ``Consumer.ack``, on two real consumers of one app, over a batch with
    every case ``Consumer.ack`` tells apart: two partitions, a message acknowledged before, an offset repeated by
    a second message, one below the committed offset, one of a topic without acknowledgements."""
    app.topics.acking_topics.add("events")  # what the conductor's subscription adds for a topic with acks on
    assert app.topics.acks_enabled_for("events") and not app.topics.acks_enabled_for("quiet")

    def batch() -> list[Any]:
        made = [
            ConsumerMessage(t, p, o, 1.0, 0, [], b"k", b"v", None, 1, 1, TP(t, p), generation_id=0)
            for t, p, o in [("events", 0, 5), ("events", 1, 9), ("events", 0, 6), ("events", 0, 3), ("quiet", 0, 1)]
        ]
        made.append(ConsumerMessage("events", 1, 9, 1.0, 0, [], b"k", b"v", None, 1, 1, TP("events", 1)))
        made[2].acked = True  # acknowledged before
        return made

    def state(consumer: Any, msgs: list[Any]) -> tuple[Any, ...]:
        return (
            {tp: list(v) for tp, v in consumer._acked.items() if v},
            {tp: set(v) for tp, v in consumer._acked_index.items() if v},
            consumer._n_acked,
            sorted((m.topic, m.partition, m.offset) for m in consumer._unacked_messages),
            [m.acked for m in msgs],
        )

    results = []
    for bulk in (False, True):

        async def nothing(*args: Any) -> None:
            return None

        consumer: Any = app.transport.create_consumer(
            callback=nothing, on_partitions_revoked=nothing, on_partitions_assigned=nothing
        )
        consumer._committed_offset[TP("events", 0)] = 4  # offset 3 of partition 0 is below it
        msgs = batch()
        for m in msgs:
            consumer._unacked_messages.add(m)
        waiter = consumer._waiting_for_ack = asyncio.get_event_loop_policy().new_event_loop().create_future()
        if bulk:
            compat.ack_all(consumer, msgs)
        else:
            for m in msgs:
                consumer.ack(m)
        results.append((state(consumer, msgs), waiter.done()))
        waiter.get_loop().close()
    assert results[0] == results[1]
    (acked, index, n, unacked, flags), woken = results[1]
    assert index == {TP("events", 0): {5}, TP("events", 1): {9}}
    assert acked == {TP("events", 0): [5], TP("events", 1): [9]} and n == 2 and woken
    # left unacknowledged, as Faust leaves them: below the committed offset, acknowledged before, the repeated
    # offset's second message, and the topic without acks
    assert unacked == [("events", 0, 3), ("events", 0, 6), ("events", 1, 9), ("quiet", 0, 1)] and all(flags)


def test_buffer_queue_counts_what_the_producer_buffers_size_counts(app: faust.App) -> None:
    """The intake reads ``len(compat.buffer_queue(buffer))`` per record instead of ``ProducerBuffer.size``: on
    Faust's own buffer they agree as it fills and drains; a threaded producer's buffer, or a double, gets None
    (the intake then asks ``size``)."""

    async def run() -> list[tuple[int, int]]:
        buf = ProducerBuffer()
        buf.app = app
        queue = compat.buffer_queue(buf)
        assert queue is not None
        seen = [(len(queue), buf.size)]
        for _ in range(3):
            buf.put(types.SimpleNamespace())  # type: ignore[arg-type]  # never sent: the sender is not started
            seen.append((len(queue), buf.size))
        await buf.pending.get()
        seen.append((len(queue), buf.size))
        return seen

    assert asyncio.run(run()) == [(0, 0), (1, 1), (2, 2), (3, 3), (2, 2)]
    assert compat.buffer_queue(types.SimpleNamespace(size=0, max_messages=1)) is None
    threaded = ProducerBuffer()
    threaded.app = types.SimpleNamespace(conf=types.SimpleNamespace(producer_threaded=True))  # type: ignore[assignment]
    assert compat.buffer_queue(threaded) is None


def test_send_now_ends_the_linger_of_one_topics_batches_in_aiokafkas_own_accumulator() -> None:
    """``compat.send_now`` on a real ``AIOKafkaProducer`` (never started: nothing is sent): the open batches of
    the topic stop lingering and take no more records, aiokafka's sender is woken, another topic's batch keeps
    its linger, and another partition's first record opens a batch that lingers as before."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", linger_ms=60_000)
        acc = producer._message_accumulator
        alerts, other = TopicPartition("alerts", 0), TopicPartition("forwards", 0)
        for tp in (alerts, alerts, other):
            await acc.add_message(tp, b"k", b"v", timeout=1)
        assert [len(acc._batches[tp]) for tp in (alerts, other)] == [1, 1]
        assert acc._batches[alerts][0].remaining_linger() and acc._batches[other][0].remaining_linger()
        # what the sender's pass over lingering batches leaves (``drain_by_nodes``): a new future, which it awaits
        # until the next record or the end of the linger
        acc._waiter_future = asyncio.get_running_loop().create_future()
        compat.send_now(producer, "alerts")
        first = acc._batches[alerts][0]
        assert first.remaining_linger() is None and first._builder.closed()  # leaves at the sender's next turn
        assert first.record_count == 2
        assert acc._waiter_future.done()  # the sender, waiting for a linger to end, is woken
        assert acc._batches[other][0].remaining_linger() and not acc._batches[other][0]._builder.closed()
        # a partition of the topic without a batch then opens one that lingers as before
        await acc.add_message(TopicPartition("alerts", 1), b"k", b"v", timeout=1)
        assert acc._batches[TopicPartition("alerts", 1)][0].remaining_linger()
        compat.send_now(producer, "alerts")  # the future set by that new batch is not set twice
        assert acc._batches[TopicPartition("alerts", 1)][0].remaining_linger() is None
        await producer.stop()

    asyncio.run(run())


# --- Consumer._drain_messages: an intake's records in runs ------------------------------------------------------


def test_fausts_drain_loop_and_getmany_are_the_ones_the_run_wise_copy_follows() -> None:
    """``compat._drain_messages_in_runs`` copies the rules of these two Faust methods; an upgrade that changes
    either must be read against it (then update the copy and these digests)."""
    import hashlib

    from faust.transport.consumer import Consumer

    def digest(fn: Any) -> str:
        return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]

    assert Consumer._drain_messages is compat._drain_messages_in_runs
    assert digest(compat._ORIGINAL_DRAIN_MESSAGES) == "44a2500309e83c63", "Faust's _drain_messages changed"
    assert digest(Consumer.getmany) == "4b168d84882a70d6", "Faust's getmany changed"


class FetchingConsumer(Service):
    """What the drain loop uses of Faust's consumer, with the fetches given (each a ``{TP: [record, ...]}``); once
    they are taken it stops. ``delivered`` is what reached Faust's per-record callback, ``gaps`` what
    ``_add_gap`` got."""

    consumer_stopped_errors = ()

    def __init__(self, app: faust.App, fetches: list[dict[TP, list[Any]]]) -> None:
        super().__init__()
        self.app = app
        self.fetches = list(fetches)
        self._read_offset: dict[TP, int | None] = collections.defaultdict(lambda: None)
        self._buffered_partitions: set[TP] = set()
        self.flow_active = True
        self.suspend_flow = asyncio.Event()
        self._commit_every: int | None = None
        self._n_acked = 0
        self.commits = 0
        self.seeks = 0
        self.scheduler = app.conf.ConsumerScheduler()  # type: ignore[operator]  # a class Faust types loosely
        self.diag: Any = types.SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self.delivered: list[Any] = []
        self.gaps: list[tuple[TP, int, int]] = []
        self.active: set[TP] | None = None
        self.on_fetch: Any = None

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        if not self.fetches:
            self._stopped.set()
            return None, None
        if self.on_fetch is not None:
            self.on_fetch(self)
        return self.fetches.pop(0), self.active

    def highwater(self, tp: TP) -> int:
        return 1000

    def _to_message(self, tp: TP, record: Any) -> Any:
        return AIOKafkaConsumer._to_message(self, tp, record)  # type: ignore[arg-type]  # Faust's own conversion

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        self.gaps.append((tp, offset_from, offset_to))

    async def commit(self) -> bool:
        self.commits += 1
        return True

    async def perform_seek(self) -> None:
        self.seeks += 1

    async def callback(self, message: Any) -> None:
        self.delivered.append(message)

    wait_first = compat._wait_first_eagerly


class RunIntake:
    """An intake that records the runs it is handed."""

    def __init__(self) -> None:
        self.runs: list[list[tuple[str, int, int]]] = []

    async def on_messages(self, messages: Any) -> None:
        self.runs.append([(m.topic, m.partition, m.offset) for m in messages])


def records(topic: str, partition: int, offsets: Iterable[int]) -> list[Any]:
    return [AioConsumerRecord(topic, partition, o, 1_000, 0, b"k", b"v", None, 1, 1, ()) for o in offsets]


def drain(app: faust.App, consumer: FetchingConsumer, intake: Any, topics: Iterable[str]) -> None:
    topics = list(topics)
    app.__dict__[compat._INTAKES_ATTR] = {name: intake for name in topics}
    app.topics.add(app.topic(*topics, value_type=bytes))  # acknowledged per record: gaps are tracked for it

    async def run() -> None:
        await app.topics._update_indices()  # type: ignore[attr-defined]  # what a subscription change runs: the topics' acks take effect
        await asyncio.wait_for(compat._drain_messages_in_runs(consumer, Service()), 5)

    asyncio.run(run())


def test_an_intakes_records_arrive_as_one_run_per_fetched_partition_and_others_one_at_a_time(app: faust.App) -> None:
    e0, e1, other = TP("events", 0), TP("events", 1), TP("elsewhere", 0)
    consumer = FetchingConsumer(
        app,
        [
            {e0: records("events", 0, range(3)), other: records("elsewhere", 0, [7, 8]), e1: records("events", 1, [5])},
            {e0: records("events", 0, [3, 4])},
        ],
    )
    intake = RunIntake()
    drain(app, consumer, intake, ["events"])
    assert intake.runs == [
        [("events", 0, 0), ("events", 0, 1), ("events", 0, 2)],
        [("events", 1, 5)],
        [("events", 0, 3), ("events", 0, 4)],
    ]
    assert [(m.topic, m.offset) for m in consumer.delivered] == [("elsewhere", 7), ("elsewhere", 8)]
    assert consumer._read_offset[e0] == 4 and consumer._read_offset[e1] == 5 and consumer._read_offset[other] == 8


def test_records_below_the_read_offset_are_dropped_and_a_gap_is_registered_as_faust_does(app: faust.App) -> None:
    e0 = TP("events", 0)
    consumer = FetchingConsumer(app, [{e0: records("events", 0, [3, 4, 5, 9, 10])}])
    consumer._read_offset[e0] = 5  # read up to 5 already (Faust re-delivers the read offset itself: >=)
    intake = RunIntake()
    drain(app, consumer, intake, ["events"])
    assert intake.runs == [[("events", 0, 5), ("events", 0, 9), ("events", 0, 10)]]
    assert consumer.gaps == [(e0, 6, 9)]  # 6 to 8 never came (a compacted or transactional topic)
    assert consumer._read_offset[e0] == 10


def test_a_partition_no_longer_active_is_skipped_and_a_stopped_flow_ends_the_fetch(app: faust.App) -> None:
    e0, e1, e2 = TP("events", 0), TP("events", 1), TP("events", 2)
    consumer = FetchingConsumer(app, [{e0: records("events", 0, [0]), e1: records("events", 1, [0])}])
    consumer.active = {e1}  # e0 was paused while the fetch was in flight
    intake = RunIntake()
    drain(app, consumer, intake, ["events"])
    assert intake.runs == [[("events", 1, 0)]] and consumer._read_offset[e0] is None

    stopping = FetchingConsumer(app, [{e0: records("events", 0, [0]), e2: records("events", 2, [0])}])

    class StopsTheFlow(RunIntake):
        async def on_messages(self, messages: Any) -> None:
            await super().on_messages(messages)
            stopping.flow_active = False  # a rebalance began while the first run was handed over

    later = StopsTheFlow()
    drain(app, stopping, later, ["events"])
    assert later.runs == [[("events", 0, 0)]] and stopping._read_offset[e2] is None


def test_a_fetch_that_returns_while_the_flow_is_stopped_is_sought_back_and_not_delivered(app: faust.App) -> None:
    """Faust's ``getmany`` rule: records fetched while a rebalance or recovery stopped the flow are dropped, and
    every partition goes back to its committed offset (``perform_seek``), so they are read again; aiokafka's
    position had moved past them."""
    e0, other = TP("events", 0), TP("elsewhere", 0)
    consumer = FetchingConsumer(app, [{e0: records("events", 0, [0, 1]), other: records("elsewhere", 0, [3])}, {}])
    consumer.flow_active = False
    intake = RunIntake()
    drain(app, consumer, intake, ["events"])
    assert intake.runs == [] and consumer.delivered == []
    assert consumer.seeks == 2  # an empty fetch too, as Faust's
    assert consumer._read_offset[e0] is None


def test_a_run_cancelled_by_a_suspended_flow_is_read_again_after_the_seek(app: faust.App) -> None:
    """A run waiting in ``on_messages`` (for the flow, or the producer's buffer) when the flow is suspended is
    cancelled whole, as Faust cancels its callback; the seek that follows (the rebalance's) sets the read offset
    back, and the records come again."""
    e0 = TP("events", 0)
    consumer = FetchingConsumer(app, [{e0: records("events", 0, [0, 1])}, {e0: records("events", 0, [0, 1])}])

    class Blocks(RunIntake):
        async def on_messages(self, messages: Any) -> None:
            if not self.runs and not hasattr(self, "blocked"):
                self.blocked = True
                asyncio.get_running_loop().call_later(0.01, consumer.suspend_flow.set)
                await asyncio.Event().wait()  # never: only the suspended flow ends this hand-over
            await super().on_messages(messages)

    def the_rebalance_seeks_back(c: FetchingConsumer) -> None:
        if len(c.fetches) == 1:  # before the second fetch
            assert c._read_offset[e0] == 1  # written before the hand-over that was cancelled
            c._read_offset[e0] = None  # what perform_seek sets for a partition without a committed offset
            c.suspend_flow.clear()

    consumer.on_fetch = the_rebalance_seeks_back
    intake = Blocks()
    drain(app, consumer, intake, ["events"])
    assert intake.runs == [[("events", 0, 0), ("events", 0, 1)]]  # once, whole, from the second fetch


def test_a_due_commit_is_made_before_the_next_run_is_handed_over(app: faust.App) -> None:
    e0 = TP("events", 0)
    consumer = FetchingConsumer(app, [{e0: records("events", 0, [0])}, {e0: records("events", 0, [1])}])
    consumer._commit_every = 10

    def acked_ten_before_the_second_fetch(c: FetchingConsumer) -> None:
        if len(c.fetches) == 1:
            c._n_acked = 10

    consumer.on_fetch = acked_ten_before_the_second_fetch
    drain(app, consumer, RunIntake(), ["events"])
    assert consumer.commits == 1 and consumer._n_acked == 0


def test_without_an_intake_the_drain_loop_is_fausts(app: faust.App, monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[Any] = []

    async def fausts(self: Any, fetcher: Any) -> None:
        called.append(self)

    monkeypatch.setattr(compat, "_ORIGINAL_DRAIN_MESSAGES", fausts)
    consumer = FetchingConsumer(app, [])
    asyncio.run(compat._drain_messages_in_runs(consumer, Service()))
    assert called == [consumer]
