"""``stream.intake``: the stages' direct input keeps every rule of Faust's stream that exactness and
rebalances depend on (acknowledge after processing, never on failure; track what a batch holds so a revocation
waits for it; drop what a rebalance made stale; back-pressure by pausing fetches, never by blocking the
conductor). The app around it is a double with Faust's own flow control and partition type; the patch that
routes the conductor to it, and the names used of Faust's consumer and message, are tested against a real
Faust app in ``test_compat.py``."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from mode.utils.queues import FlowControlEvent

from stream import compat
from stream.intake import Intake, Record


class FakeConsumer:
    def __init__(self) -> None:
        self.unacked: set[Any] = set()
        self.acked: list[int] = []
        self.paused: list[TP] = []
        self.resumed: list[TP] = []

    def ack(self, message: Any) -> bool:
        self.unacked.discard(message)
        self.acked.append(message.offset)
        return True

    def on_buffer_full(self, tp: TP) -> None:
        assert isinstance(tp, TP)  # Faust's consumer asserts this when it next lists its active partitions
        self.paused.append(tp)

    def on_buffer_drop(self, tp: TP) -> None:
        assert isinstance(tp, TP)
        self.resumed.append(tp)


class FakeApp:
    def __init__(self) -> None:
        self.consumer = FakeConsumer()
        self.flow_control = FlowControlEvent()
        self.flow_control.resume()
        self.consumer_generation_id = 1

        async def ebb() -> None:
            return None

        self.producer = SimpleNamespace(buffer=SimpleNamespace(size=0, max_messages=100, wait_until_ebb=ebb))


class Msg:
    """What the intake uses of Faust's ``ConsumerMessage`` (hashable by identity, as Faust's is)."""

    def __init__(self, offset: int, generation: int = 1, partition: int = 0, key: bytes | None = b"k") -> None:
        self.topic = "events"
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = b"v%d" % offset
        self.generation_id = generation
        self.tracked = False


def offsets(batch: list[Record]) -> list[int]:
    return [r.message.offset for r in batch]


def test_batches_fill_and_each_is_acknowledged_only_when_the_next_is_asked_for() -> None:
    app = FakeApp()
    intake = Intake(app, ["events"], 3, 0.05)

    async def run() -> list[tuple[list[int], list[int], int]]:
        for i in range(7):
            await intake.on_message(Msg(i))
        got = []
        async for batch in intake.batches():
            got.append((offsets(batch), list(app.consumer.acked), len(app.consumer.unacked)))
            if sum(len(g[0]) for g in got) == 7:
                break
        return got

    assert asyncio.run(run()) == [([0, 1, 2], [], 3), ([3, 4, 5], [0, 1, 2], 3), ([6], [0, 1, 2, 3, 4, 5], 1)]


def test_taken_records_are_tracked_as_unacknowledged_until_acknowledged() -> None:
    """``Consumer.wait_empty`` (a revocation) waits for exactly these: the batch being processed."""
    app = FakeApp()
    intake = Intake(app, ["events"], 2, 0.01)

    async def run() -> tuple[set[int], list[bool], set[int]]:
        for i in range(3):
            await intake.on_message(Msg(i))
        it = aiter(intake.batches())
        first = await anext(it)
        during = {m.offset for m in app.consumer.unacked}
        tracked = [r.message.tracked for r in first]
        await anext(it)
        return during, tracked, {m.offset for m in app.consumer.unacked}

    during, tracked, after = asyncio.run(run())
    assert during == {0, 1} and tracked == [True, True]
    assert after == {2}  # the first batch acknowledged, the second now tracked; the waiting one was not


def test_a_batch_whose_processing_failed_is_never_acknowledged() -> None:
    app = FakeApp()
    intake = Intake(app, ["events"], 2, 0.01)

    async def run() -> None:
        await intake.on_message(Msg(0))
        await intake.on_message(Msg(1))
        async for _batch in intake.batches():
            raise RuntimeError("the core failed")

    with pytest.raises(RuntimeError, match="the core failed"):
        asyncio.run(run())
    assert app.consumer.acked == []


def test_within_counts_from_the_first_arrival_and_records_that_waited_during_processing_go_at_once() -> None:
    within = 0.5
    app = FakeApp()
    intake = Intake(app, ["events"], 100, within)

    async def run() -> tuple[float, list[int], float, list[int]]:
        loop = asyncio.get_running_loop()
        it = aiter(intake.batches())
        t0 = loop.time()
        await intake.on_message(Msg(0))
        first = await asyncio.wait_for(anext(it), 10)
        first_after = loop.time() - t0
        await intake.on_message(Msg(1))  # arrive while the stage "processes" the first batch
        await intake.on_message(Msg(2))
        await asyncio.sleep(within * 1.2)
        t1 = loop.time()
        second = await asyncio.wait_for(anext(it), 10)
        return first_after, offsets(first), loop.time() - t1, offsets(second)

    first_after, first, second_after, second = asyncio.run(run())
    assert first == [0] and first_after >= within * 0.95  # a lone record waits ``within`` for company
    assert second == [1, 2] and second_after < within * 0.5  # no second wait


def test_a_full_batch_goes_without_waiting() -> None:
    app = FakeApp()
    intake = Intake(app, ["events"], 3, 30.0)

    async def run() -> list[int]:
        it = aiter(intake.batches())
        task = asyncio.ensure_future(anext(it))
        for i in range(3):
            await intake.on_message(Msg(i))
        return offsets(await asyncio.wait_for(task, 5))

    assert asyncio.run(run()) == [0, 1, 2]


def test_records_of_an_earlier_generation_are_dropped_unacknowledged() -> None:
    app = FakeApp()
    intake = Intake(app, ["events"], 10, 0.01)

    async def run() -> list[int]:
        await intake.on_message(Msg(0, generation=1))
        await intake.on_message(Msg(1, generation=2))
        app.consumer_generation_id = 2  # a rebalance happened meanwhile: offset 0 was fetched before it
        return offsets(await anext(aiter(intake.batches())))

    assert asyncio.run(run()) == [1]
    assert app.consumer.acked == []  # 0 never: the consumer seeks to the committed offset after a rebalance
    assert {m.offset for m in app.consumer.unacked} == {1}


def test_nothing_is_taken_while_the_flow_is_suspended_and_a_resume_keeps_what_waits() -> None:
    """mode clears its managed queues on every resume, and Faust's recovery resumes several times while records
    of the new generation may already be waiting: dropping them could leave a hole the commit goes past
    (faust-streaming #596). They are kept, and taken once the flow is active."""
    app = FakeApp()
    intake = Intake(app, ["events"], 10, 0.01, limit=2)
    app.flow_control.manage_queue(intake)  # type: ignore[arg-type]  # what compat.use_intake does

    async def run() -> tuple[bool, list[int]]:
        await intake.on_message(Msg(0))
        await intake.on_message(Msg(1))  # the limit: partition 0's fetch paused
        app.flow_control.suspend()  # recovery pauses the flow (without a clear)...
        waiting = asyncio.ensure_future(anext(aiter(intake.batches())))
        await asyncio.sleep(0.05)
        held = not waiting.done()
        app.flow_control.resume()  # ...and resumes it, which clears every managed queue
        return held, offsets(await asyncio.wait_for(waiting, 5))

    held, taken = asyncio.run(run())
    assert held and taken == [0, 1]
    assert app.consumer.paused == [TP("events", 0)]
    assert app.consumer.resumed == [TP("events", 0)]  # kept across the resume, fetched again once drained


def test_what_is_left_after_a_full_batch_waits_no_longer_than_within_from_its_batchs_first_arrival() -> None:
    """Leftovers arrived while the batch before them filled: their wait counts from then, not from the take."""
    within = 0.5
    app = FakeApp()
    intake = Intake(app, ["events"], 2, within)

    async def run() -> tuple[list[int], list[int], float]:
        loop = asyncio.get_running_loop()
        for i in range(3):
            await intake.on_message(Msg(i))
        await asyncio.sleep(within * 0.8)  # the stage was busy: the records have waited most of ``within``
        it = aiter(intake.batches())
        first = offsets(await asyncio.wait_for(anext(it), 5))
        t = loop.time()
        second = offsets(await asyncio.wait_for(anext(it), 5))
        return first, second, loop.time() - t

    first, second, second_after = asyncio.run(run())
    assert (first, second) == ([0, 1], [2])
    assert second_after < within * 0.6  # the rest of its wait, not another full ``within`` after the take


def test_the_flow_controls_clear_at_a_revocation_forgets_what_waits() -> None:
    app = FakeApp()
    intake = Intake(app, ["events"], 10, 0.01, limit=2)
    app.flow_control.manage_queue(intake)  # type: ignore[arg-type]  # what compat.use_intake does

    async def run() -> None:
        for i in range(3):
            await intake.on_message(Msg(i))

    asyncio.run(run())
    assert len(intake) == 3 and app.consumer.paused == [TP("events", 0)]
    app.flow_control.suspend()  # Faust's revocation: suspend, then clear every managed queue
    app.flow_control.clear()
    assert len(intake) == 0
    # not resumed here (the partition may be revoked: Faust's recovery resumes the assigned ones), and forgotten:
    # a later drain below the limit must not resume it either
    assert app.consumer.resumed == []

    app.flow_control.resume()  # the recovery after the rebalance (a resume clears the queues too: keeps them)

    async def drain() -> None:
        await intake.on_message(Msg(9))
        await anext(aiter(intake.batches()))  # one record waits, far below half the limit

    asyncio.run(drain())
    assert app.consumer.resumed == []


def test_arrival_waits_for_the_flow_and_the_producer_buffer_like_fausts_handler() -> None:
    app = FakeApp()
    ebbs: list[int] = []

    async def ebb() -> None:
        ebbs.append(1)

    buffer = SimpleNamespace(size=0, max_messages=100, wait_until_ebb=ebb)
    app.producer = SimpleNamespace(buffer=buffer)
    intake = Intake(app, ["events"], 10, 0.01)

    async def run() -> tuple[bool, int, list[int]]:
        app.flow_control.suspend()
        arrival = asyncio.ensure_future(intake.on_message(Msg(0)))
        await asyncio.sleep(0.05)
        blocked = not arrival.done() and len(intake) == 0
        app.flow_control.resume()
        await asyncio.wait_for(arrival, 5)
        ebbs_below = list(ebbs)
        buffer.size = 101  # Faust's buffer over its limit: the record waits until it ebbs
        await intake.on_message(Msg(1))
        return blocked, len(intake), ebbs_below

    assert asyncio.run(run()) == (True, 2, [])
    assert ebbs == [1]


def test_arrival_waits_for_fausts_own_producer_buffer_over_its_limit() -> None:
    """The same with Faust's ``ProducerBuffer``, whose size the intake counts without its ``size`` property
    (``compat.buffer_queue``): a record arriving while it holds more than ``max_messages`` waits for it to ebb."""
    app = FakeApp()
    ebbs: list[int] = []
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
    buffer.max_messages = 2

    async def ebb() -> None:
        ebbs.append(buffer.size)
        while buffer.size > buffer.max_messages:
            buffer.pending.get_nowait()

    buffer.wait_until_ebb = ebb  # type: ignore[method-assign]
    app.producer = SimpleNamespace(buffer=buffer)
    intake = Intake(app, ["events"], 10, 0.01)

    async def run() -> None:
        for i in range(5):
            if i >= 2:
                buffer.pending.put_nowait(object())
            await intake.on_message(Msg(i))

    asyncio.run(run())
    assert ebbs == [3] and len(intake) == 5  # at 1 and 2 waiting it went on; at 3 the arrival waited


def test_back_pressure_pauses_each_partition_once_and_resumes_them_below_half_the_limit() -> None:
    app = FakeApp()
    intake = Intake(app, ["events"], 2, 0.01, limit=4)

    async def run() -> tuple[list[TP], list[TP], list[TP]]:
        for i in range(6):
            await intake.on_message(Msg(i, partition=i % 2))
        paused = list(app.consumer.paused)
        it = aiter(intake.batches())
        await anext(it)  # 4 wait: not below half of the limit yet
        resumed_early = list(app.consumer.resumed)
        await anext(it)  # 2 wait... the take leaves 2: still not below half (2)
        await anext(it)  # none wait
        return paused, resumed_early, list(app.consumer.resumed)

    paused, resumed_early, resumed = asyncio.run(run())
    assert paused == [TP("events", 1), TP("events", 0)]  # records 3 and 4 crossed the limit; 5 changed nothing
    assert resumed_early == []
    assert sorted(resumed) == [TP("events", 0), TP("events", 1)]


def test_a_resume_wakes_the_fetch_waiting_in_the_consumer_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The resumed partitions' records already wait in aiokafka's buffer: without the wake, the fetch in progress
    returns them only when another partition's records come or its second is up (``compat.wake_fetch``)."""
    app = FakeApp()
    woken: list[int] = []
    monkeypatch.setattr(compat, "wake_fetch", lambda a: woken.append(len(app.consumer.resumed)))
    intake = Intake(app, ["events"], 2, 0.01, limit=4)

    async def run() -> list[int]:
        for i in range(6):
            await intake.on_message(Msg(i, partition=i % 2))
        it = aiter(intake.batches())
        await anext(it)
        await anext(it)
        before = list(woken)
        await anext(it)  # below half the limit: both partitions resumed, then one wake
        return before

    assert asyncio.run(run()) == []
    assert woken == [2]  # once, after both partitions were resumed


def test_records_carry_the_key_as_text_and_the_value_as_bytes() -> None:
    assert (Record(Msg(0, key=b"852")).key, Record(Msg(0, key=None)).key) == ("852", "")
    assert Record(Msg(4)).value == b"v4"
    assert Record(Msg(4)).message.offset == 4


def test_an_empty_batch_size_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Intake(FakeApp(), ["events"], 0, 0.05)


def test_a_run_of_one_partitions_records_is_appended_whole_and_pauses_its_partition_once() -> None:
    """``compat``'s drain loop hands over a fetch's records of a partition at once (``on_messages``): they wait in
    their order, a batch fills from them as from single records, and crossing the limit pauses the partition once,
    not once per record beyond it."""
    app = FakeApp()
    intake = Intake(app, ["events"], 4, 5.0, limit=6)

    async def run() -> tuple[list[int], list[int]]:
        await intake.on_messages([Msg(i, partition=1) for i in range(3)])
        await intake.on_messages([])  # nothing fetched for it: nothing changes
        await intake.on_messages([Msg(i, partition=1) for i in range(3, 9)])
        assert len(intake) == 9
        stage = aiter(intake.batches())
        first = offsets(await asyncio.wait_for(anext(stage), 5))  # full at once: no wait for ``within``
        second = offsets(await asyncio.wait_for(anext(stage), 5))
        return first, second

    first, second = asyncio.run(run())
    assert first == [0, 1, 2, 3] and second == [4, 5, 6, 7]
    assert app.consumer.paused == [TP("events", 1)]
    assert app.consumer.resumed == [TP("events", 1)]  # once fewer than half the limit wait (the second batch taken)
