"""Every use of a private or undocumented Faust / mode internal, and every patch of one, in one place.

Checked against faust-streaming 0.15.3 and mode-streaming 0.7.1. Each function names the internal it
touches and why; ``tests/unit/test_compat.py`` has a test per internal that fails when an upgrade removes,
renames or changes it. When upgrading Faust or mode, run that file first; nothing outside this module may
reach into their private attributes (``grep -rn "\\._" stream/`` finds only this file on Faust objects).

The patch (``apply_fixes``, applied when ``stream.app`` is imported):

``ProducerBuffer.flush`` (faust-streaming 0.15.3) returns as soon as 100 ms pass without a message being
sent, even when messages are still buffered. Table changelog writes go through that buffer
(``send_soon``), and the consumer flushes it right before committing offsets: under load, a commit (on a
timer, on rebalance, on shutdown) could then store an offset whose changelog write was still in the buffer,
and a worker leaving or crashing afterwards lost that table update for good. Found by the reliability
scenario "second worker joins, then leaves" (one count short, intermittently, under load). The replacement
(``drain``) drains the buffer completely: a commit waits until every table update it covers was handed to
the Kafka producer (whose own flush then waits for the broker's acknowledgement).

``ProducerBuffer._send_pending`` is counted while it runs (``sending``): the buffer's ``size`` drops as soon as
its sender *takes* a message, but handing it to aiokafka can take a while (``AIOKafkaProducer.send`` waits for
metadata, and for the partition's full batch to be drained, one produce round trip on a slow cluster), and
aiokafka's ``flush`` only waits for the batches that exist when it is called. So ``drain`` on ``size`` alone let
a commit cover one table update still on its way; a worker SIGKILLed (or a partition handed over) right after
lost it while its event stayed committed. ``drain`` waits for that message too.

``ProducerBuffer.max_messages`` (faust-streaming 0.15.3: 100): above it, the conductor logs ``producer buffer
full`` and stops taking records until 100 were sent. One batch writes up to ``batch_size`` (500) subjects,
so every batch crossed it: a warning per batch and a stall on every one (issue 13 counted 1,505 in one
drain). ``BUFFER_MAX_MESSAGES`` leaves room for a few batches; beyond that the back-pressure still works.
(Since ``stream.changelog`` the callers and DIDs tables no longer write through this buffer; the outage table
still does.)

The batching loop (``take_batches``) replaces ``Stream.take_events``, which stops reading while the agent
processes a batch and starts its wait only afterwards: see ``take_batches``. The stages no longer read through a
stream at all unless ``BINDWATCH_DIRECT_INPUT`` is off: the conductor's message handler
(``Conductor._compile_message_handler``) hands a record of a topic given to ``use_intake`` to that
``stream.intake.Intake`` first, before its lock and per-partition handlers.

``Consumer.wait_first`` (mode's ``Service.wait_first``, on Faust's consumer only) starts a coroutine eagerly:
the consumer's drain loop hands every fetched record to the conductor as
``wait_first(callback(message), suspend_flow.wait())``, and mode makes four tasks for it (the callback, the
flow event, the stopped and crashed events), an ``asyncio.wait`` and three cancellations, though the callback
almost always completes without suspending. ``_wait_first_eagerly`` runs the first coroutine's first step at
once, as Python 3.12's eager tasks do; only if it suspends does mode's ``wait_first`` take over, with the rest
of that coroutine as a task. The same coroutine scheduled as a task by mode would also have run its first step
before any of the other three (tasks start in the order they were made), so nothing is reordered.

``Consumer._drain_messages`` (with ``Consumer.getmany``) hands the conductor one record at a time, and each costs
an async generator step, the flow, generation and partition checks, the partition's highwater and the monitor's
end offset, a ``wait_first`` with its flow coroutine, and two handler coroutines, though an intake
(``stream.intake``) only appends the record to a list. ``_drain_messages_in_runs`` is that loop with the same
rules, but a fetch's records of a partition whose topic has an intake go to it as one run
(``Intake.on_messages``): one set of those checks and one hand-over per partition and fetch. Records of other
topics (the outage partials, changelogs) keep Faust's path record by record. Measured 2026-12-07 (Intel Xeon,
``bench/README.md``).

``AIOKafkaConsumerThread._create_worker_consumer`` hardcodes the consumer's fetch long-poll at 1,500 ms. aiokafka
keeps one fetch in flight per broker, and a fetch built while the busy partitions still have records buffered
holds only the quiet ones (the tick topics, the outage partials): the broker then keeps it the whole 1.5 s,
and records produced meanwhile to a busy partition (the by-DID bundles the caller stage forwards) wait for it.
In a backlog drain the DID stage got its input in bursts 1-2 s old, and the drain ended with the worker idle
for up to 1.5 s while its last bundles sat at the broker (issue 13, measured 2026-12-07). ``use_fetch_max_wait``
sets the long-poll of the app's worker consumer (``StreamSettings.fetch_max_wait_ms``).

The hook (``apply_fixes`` too, active only for an app given a ``BulkRestore`` by ``use_bulk_restore``):
``Recovery._build_offsets`` is followed by ``stream.restore.BulkRestore.load``, which restores the active
changelog partitions in bulk before Faust's record-by-record recovery starts (see ``stream.restore``).
"""

from __future__ import annotations

import asyncio
import time
import types
import weakref
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Sequence, Sized
from typing import Any

import rocksdict
from faust.streams import _current_event
from faust.tables.recovery import Recovery
from faust.transport.conductor import Conductor
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import ack_lock
from mode import Service
from mode.services import WaitResults
from mode.utils.futures import notify

from stream.core import rows_in
from stream.restore import BulkRestore

_PATCHED = "_bindwatch_drains"
_SENDING = "_bindwatch_sending"
BUFFER_MAX_MESSAGES = 5000
"""Table writes the producer buffer holds before the conductor waits for it (``ProducerBuffer.max_messages``)."""
_RESTORE_PATCHED = "_bindwatch_bulk_restore"
_INTAKE_PATCHED = "_bindwatch_intake"
_ORIGINAL_CREATE_WORKER_CONSUMER = AIOKafkaConsumerThread._create_worker_consumer
_INTAKES_ATTR = "bindwatch_intakes"
_RUNS_PATCHED = "_bindwatch_drain_in_runs"
_RESTORE_ATTR = "bindwatch_bulk_restore"


def use_event(ev: Any) -> None:
    """Make ``ev`` Faust's current event in this task: table reads and writes go to its partition.

    Why: Faust finds the partition of a table operation from the current event, a context variable
    (private ``faust.streams._current_event``) that its stream sets per message. With ``take_batches``
    the stream runs in another task, so the agent sets it for each subject it reads or writes. (Also
    guarded end to end by ``check_changelog_partitions`` in ``tests/integration/test_stream.py``.)
    """
    _current_event.set(weakref.ref(ev))


def use_raw_keys(table: Any) -> None:
    """Serialise the table's keys as raw UTF-8 bytes, in the table and in its changelog topic.

    Why: query routing hashes the serialised key, which must equal the producer's key bytes (a JSON-quoted
    key would hash to another partition and route queries to the wrong worker). Faust derives a table's key
    serializer from ``key_type`` (JSON for ``str``) and offers no argument for it, so it is set afterwards,
    and the changelog topic, built from the old serializer, is rebuilt with the private
    ``Table._new_changelog_topic``.
    """
    table.key_serializer = "raw"
    table.changelog_topic = table._new_changelog_topic()


def changelog_topic_name(app_id: str, table: str) -> str:
    """The name Faust gives a table's changelog topic (``Table._changelog_topic_name``, undocumented).

    Why: ``stream.admin`` creates the changelogs before any worker starts (Faust sometimes created them too
    late for its own partition check: ``PartitionsMismatch '...-dids-changelog has 0 partitions'``).
    """
    return f"{app_id}-{table}-changelog"


def partition_items(table: Any, partition: int) -> Iterator[tuple[str, bytes]]:
    """One partition's rows of a Faust table (keys raw UTF-8, ``use_raw_keys``) in ascending key order.

    Faust's RocksDB store keeps one database per partition (the private ``Store._dbs``) and iterates them in
    key order; the table's own ``items`` only iterates every active partition at once. Any other store (the
    memory store of the integration tests) is filtered and sorted."""
    data = table.data
    dbs = getattr(data, "_dbs", None)
    if dbs is None:
        yield from rows_in(table.items(), partition, table.partitions)
        return
    db = dbs.get(partition)
    if db is None:  # nothing stored for it yet
        return
    for key, value in data._visible_items(db):
        yield key.decode(), value


def partition_db(table: Any, partition: int) -> Any | None:
    """The RocksDB database of one partition of ``table`` on Faust's RocksDB store (opened if it is not yet, as
    Faust does), or None when the table is on any other store (the memory store of some integration tests).

    Why: ``stream.changelog.BatchedTable`` reads and writes a batch's subjects there directly, with the calls
    Faust's store makes (``Store._get``, ``_set``, ``_del``: ``get``, ``put`` and ``delete`` of the raw key on
    the database of the current event's partition). Through the table, a read passes ``Mapping.get``, Faust's
    table sensors and its serializing store, and a subject not stored yet (most subjects of a backlog) raises
    and catches a ``KeyError`` on the way; a write sets the current event per key, and a delete of a key Faust
    has not seen looks in every partition's database. In the drain profile of issue 13 these paths were 14% of
    the worker's CPU. Keys are raw UTF-8 (``use_raw_keys``) and values raw bytes, as Faust stores them
    (``tests/unit/test_changelog.py`` reads through one and writes through the other). Faust's key index (the
    partition a key was last seen in, used by reads outside any event: the query pages) is not updated: such a
    read asks each partition's bloom filter, as it does for any key it has not seen. Uses the private
    ``Store._db_for_partition``.
    """
    open_db = getattr(table.data, "_db_for_partition", None)
    return None if open_db is None else open_db(partition)


def on_rocksdb(table: Any) -> bool:
    """Whether ``table`` is on Faust's RocksDB store (``partition_db`` answers for it)."""
    return hasattr(table.data, "_db_for_partition")


def write_batch() -> Any:
    """An empty RocksDB write batch for ``partition_db``'s databases: rocksdict's, in raw mode, as Faust's
    ``Store.apply_changelog_batch`` makes them (Faust opens its databases with ``Options(raw_mode=True)``)."""
    return rocksdict.WriteBatch(raw_mode=True)


def without_monitor_sensor(app: Any) -> None:
    """Keep Faust's ``Monitor`` out of the app's sensors, where ``App.on_init_dependencies`` puts it at start.

    Every record then went through four sensor calls per record (message in, stream event in and out, message
    out), each looping over the sensors and updating the monitor's counters, time stamps and per-partition
    dicts: ~2.5% of a worker's drain in the py-spy profile of issue 13. bindwatch reports through its own
    Prometheus metrics (``stream.metrics``) and serves none of Faust's monitor views. ``app.monitor`` itself
    stays: Faust's consumer calls it directly for end offsets and commits."""
    original = app.on_init_dependencies

    def on_init_dependencies() -> Any:
        dependencies = original()
        if app.monitor in set(app.sensors):
            app.sensors.remove(app.monitor)
        return dependencies

    app.on_init_dependencies = on_init_dependencies


def note_stream_inbound(app: Any, events: Sequence[Any]) -> None:
    """Tell Faust's livelock check that the stages read these records' partitions (``Monitor.stream_inbound_time``).

    Why: the aiokafka driver's ``verify_event_path`` (every 2.5 commit intervals) logs an error for each partition
    that has a lag but whose stream has not taken an event for ``stream_processing_timeout`` (300 s), or ever.
    Faust's stream sets that time through the Monitor sensor; the stages read without a stream
    (``stream.intake``) and the Monitor is no longer a sensor (``without_monitor_sensor``), so a worker running
    five minutes would log "Stream has not started processing" for every partition with a lag. Once per batch."""
    monitor = app.monitor
    if monitor is None or not events:
        return
    inbound = monitor.stream_inbound_time
    now = time.monotonic()
    for tp in {ev.message.tp for ev in events}:
        inbound[tp] = now


def crashed_agents(app: Any) -> list[str]:
    """Names of the agents one of whose actors has crashed.

    Why: a worker whose agent crashed counts nothing any more and must not look ready; Faust exposes no
    such state, so this reads the private ``Agent._actors`` and mode's private ``Service._crashed`` event.
    """
    out = []
    for name, agent in app.agents.items():
        for actor in list(agent._actors):
            if actor._crashed.is_set():
                out.append(str(name))
    return out


def recovery_completed(app: Any) -> bool:
    """True once the tables have been restored from their changelogs.

    Why: readiness waits for it; ``app.tables.recovery.completed`` is an undocumented attribute (an
    ``Event`` of ``faust.tables.recovery.Recovery``).
    """
    return bool(app.tables.recovery.completed.is_set())


def buffer_queue(buf: Any) -> Sized | None:
    """What ``ProducerBuffer.size`` counts, to be counted with ``len``: the deque under its pending queue (created
    once, with the buffer), or None for a threaded producer's buffer or any other object.

    Why: ``size`` is a property that reads ``app.conf.producer_threaded`` through Faust's settings registry (a
    Python ``__getattribute__``) and calls ``typing.cast`` twice; the intake asks for it per record (2.7% of a
    drain's GIL profile, with ``app.producer``)."""
    pending = getattr(buf, "pending", None)
    app = getattr(buf, "app", None)
    if pending is None or app is None or app.conf.producer_threaded:
        return None
    queue: Sized = pending._queue
    return queue


def sending(buf: Any) -> int:
    """Messages the buffer's sender has taken and is still handing to the Kafka producer (0 or 1)."""
    return int(getattr(buf, _SENDING, 0))


async def _send_pending_counted(self: Any, fut: Any) -> None:
    """``ProducerBuffer._send_pending``, counted in ``sending`` while it runs (its ``_handle_pending`` task
    takes a message from ``pending``, awaits this, then sets ``message_sent``)."""
    setattr(self, _SENDING, sending(self) + 1)
    try:
        await _ORIGINAL_SEND_PENDING(self, fut)
    finally:
        setattr(self, _SENDING, sending(self) - 1)


async def drain(self: Any) -> None:
    """Flush *all* buffered messages, however long the background sender takes, including the one it is
    handing to the Kafka producer (replaces ``ProducerBuffer.flush``; uses its ``size``, ``state`` and
    ``message_sent``, set by ``_handle_pending``, and ``sending``)."""
    while self.size or sending(self):
        if self.size and self.state != "running":
            raise RuntimeError(f"Cannot flush: producer buffer is {self.state} with {self.size} messages left")
        self.message_sent.clear()
        try:
            await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
        except TimeoutError:
            continue  # still sending (slow broker or busy loop): keep waiting, never drop


async def take_batches(stream: Any, max_: int, within: float) -> AsyncIterator[list[Any]]:
    """Yield the stream's events in batches of at most ``max_``, and acknowledge a batch only once the agent
    asks for the next one (it has processed the batch: tables written, alerts acknowledged).

    Why not ``Stream.take_events`` (faust-streaming 0.15.3): it stops moving records into its buffer while the
    agent processes a batch, and starts its ``within`` wait only after the agent returns. Every cycle then
    costs processing *plus* the full wait, and a stage falls behind well before it runs out of CPU: at 1,000
    pushes/s on 2 shared cores the worker used 0.37 cores while a queue of 1-3 s built up (issue 13).

    Here the stream keeps being read into the next batch while one is processed, and ``within`` counts from
    the arrival of the batch's first event: a batch is taken when it is full, or when its oldest event has
    waited ``within``. Under a backlog, batches fill while the previous one is processed; at a moderate rate
    an event waits at most ``within`` plus the processing of the batch before it. Back-pressure: once ``max_``
    events wait, reading stops until the batch is taken (the stream's channel and then Faust's flow control
    hold the rest).

    Acknowledgement: ``enable_acks`` is off while this runs (as ``take_events`` does), so Faust's iterator
    acknowledges nothing; a batch is acknowledged after the agent resumes the generator, never when the
    generator is closed by an exception or cancellation (the batch is then replayed from the last commit,
    which the requestId dedup makes exact). Unacknowledged events also hold Faust's rebalance
    (``stream_wait_empty``) until their batch is processed, as they did in ``take_events``.

    Uses the private ``Stream._enable_passive`` (the background task that runs the stream's processors) and
    the stream's ``current_event``, ``add_processor``, ``enable_acks`` and ``ack``.
    """
    if max_ < 1:
        raise ValueError(f"max_ must be at least 1, got {max_}")
    loop = asyncio.get_running_loop()
    pending: list[Any] = []
    first_at = 0.0
    arrived = asyncio.Event()  # pending is not empty
    full = asyncio.Event()  # pending holds max_
    taken = asyncio.Event()  # the full batch was taken: reading may go on
    taken.set()

    async def add(value: Any) -> Any:
        nonlocal first_at
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_batches found no current event")
        if not pending:
            first_at = loop.time()
            arrived.set()
        pending.append(event)
        if len(pending) >= max_:
            full.set()
            taken.clear()
            await stream.wait(taken)
        return value

    acks_before = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))
    queue = stream.channel.queue  # what the stream reads from, filled by Faust's conductor meanwhile
    try:
        while not stream.should_stop:
            if not pending:
                arrived.clear()
                await stream.wait_for_stopped(arrived)
                continue
            # Top up from what already waits in the channel: the background task moves one event per loop
            # turn, and while the agent processed the last batch it got a turn only at the agent's awaits.
            for _ in range(max_):
                if len(pending) >= max_ or queue.empty():
                    break
                await asyncio.sleep(0)
            left = first_at + within - loop.time()
            if left > 0 and len(pending) < max_:
                await stream.wait_for_stopped(full, timeout=left)
            batch = pending[:]
            pending.clear()
            full.clear()
            taken.set()
            yield batch
            for event in batch:
                await stream.ack(event)
    finally:
        stream.enable_acks = acks_before
        stream._processors.remove(add)


def kafka_producer(app: Any) -> Any:
    """The ``aiokafka.AIOKafkaProducer`` inside Faust's producer (private ``Producer._producer``).

    Why: ``stream.changelog`` sends a batch's table writes as aiokafka batches (``create_batch``,
    ``send_batch``), which Faust's producer does not offer. The same producer (and connection) Faust uses,
    so Faust's flush before a commit still covers everything the worker sent.
    """
    producer = app.producer._producer
    if producer is None:
        raise RuntimeError("the worker's producer has not started")
    return producer


def send_now(producer: Any, topic: str) -> None:
    """Make the records of ``topic`` waiting in ``producer`` (an ``aiokafka.AIOKafkaProducer``) leave now
    instead of after the linger: close its open batches and wake the sender, aiokafka's own way of ending a
    linger (``MessageAccumulator.flush_for_commit`` does both, for every topic, before a transaction commits).

    Why: a stage awaits the broker's acknowledgement of its alerts before it writes its tables (``stream.core``),
    so with ``producer_linger`` each batch with an alert waited the linger (10 ms) on top of the round trip, and
    the stage with it. A closed batch takes no more records: the next record of its partition waits until the
    sender has taken the batch (which it does at its next pass, woken here), as after a full batch. Private
    attributes of aiokafka 0.14 (``_message_accumulator``, its ``_batches`` and ``_waiter_future``, a batch's
    ``_builder``); ``tests/unit/test_compat.py`` holds them against the real producer's accumulator."""
    acc = producer._message_accumulator
    for tp, batches in acc._batches.items():
        if tp.topic == topic:
            for batch in batches:
                batch._builder.close()
    waiter = acc._waiter_future
    if not waiter.done():
        waiter.set_result(None)


def use_bulk_restore(app: Any, restore: BulkRestore | None) -> None:
    """Make ``app``'s table recovery start with ``restore`` (``stream.restore``); None: Faust's own only."""
    setattr(app, _RESTORE_ATTR, restore)


async def _build_offsets_then_bulk_restore(self: Any, consumer: Any, tps: Any, destination: Any, title: str) -> None:
    """``Recovery._build_offsets``, then (active partitions, when the app asked for it) the bulk restore.

    Why here: in ``Recovery._restart_recovery`` (faust-streaming 0.15.3) this step comes after the active
    high-water marks are built (``active_highwaters``) and before Faust seeks its consumer to the start
    offsets it leaves in ``destination`` (``active_offsets``), which the bulk restore advances; the step is
    cancelled if another rebalance starts (``signal_recovery_start``, also checked between batches). Faust
    bounds each step with ``broker_request_timeout`` and treats a timeout as a stop, so the restore's own
    budget must stay well below it (``StreamSettings.bulk_restore_seconds``). Uses the private
    ``_build_offsets``, ``active_highwaters``, ``tp_to_table`` and ``signal_recovery_start``.
    """
    await _ORIGINAL_BUILD_OFFSETS(self, consumer, tps, destination, title)
    restore: BulkRestore | None = getattr(self.app, _RESTORE_ATTR, None)
    if restore is None or title != "active" or not tps:
        return
    highwaters = {tp: self.active_highwaters.get(tp) for tp in tps}
    await restore.load(destination, highwaters, self.tp_to_table, self.signal_recovery_start)


_ORIGINAL_BUILD_OFFSETS = Recovery._build_offsets
_ORIGINAL_SEND_PENDING = ProducerBuffer._send_pending
_SERVICE_WAIT_FIRST = Service.wait_first
_EAGER_PATCHED = "_bindwatch_eager_wait_first"


class _Resumed:
    """The rest of a coroutine that has run up to its first suspension, which yielded ``first``: awaiting
    this (in a task) hands ``first`` up to the task, then drives the coroutine on, passing in and throwing in
    whatever the task sends, until it returns."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: types.CoroutineType[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.first
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation or error for the coroutine: pass it in
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _wait_first_eagerly(self: Any, *coros: Any, timeout: Any = None) -> WaitResults:
    """mode's ``Service.wait_first``, but the first coroutine runs its first step at once; when that step
    completes it, no task, ``asyncio.wait`` or cancellation is needed (see the module's docstring)."""
    first = coros[0] if coros else None
    if not isinstance(first, types.CoroutineType) or self._stopped.is_set() or self._crashed.is_set():
        return await _SERVICE_WAIT_FIRST(self, *coros, timeout=timeout)
    try:
        pending = first.send(None)
    except StopIteration as done:
        for other in coros[1:]:
            if isinstance(other, types.CoroutineType):
                other.close()  # never started: closing it is what a cancelled task would have done
        if self._stopped.is_set() or self._crashed.is_set():
            return WaitResults([], [], True)  # as mode's: a service that stopped meanwhile reports that
        return WaitResults([first], [done.value], False)
    except BaseException:
        for other in coros[1:]:
            if isinstance(other, types.CoroutineType):
                other.close()
        raise
    return await _SERVICE_WAIT_FIRST(self, _Resumed(first, pending), *coros[1:], timeout=timeout)


def ack_all(consumer: Any, messages: Iterable[Any]) -> None:
    """``consumer.ack(message)`` for each message, in order: on Faust's ``Consumer``, its bookkeeping for the whole
    batch in one critical section (``ack_lock``) and one wake-up of whoever waits for acknowledgements, rather
    than a lock, a conductor lookup and a wake-up per record (``Consumer.ack`` of faust-streaming 0.15.3, rule
    for rule: a message already acknowledged is skipped; one of a topic without acks, or below the committed
    offset, or whose offset was acknowledged before, is only marked; any other leaves the unacknowledged set and joins
    its partition's acknowledged offsets, which is what lets the commit move past it). No await in between: no
    commit, rebalance or other acknowledgement can interleave, as none could between the per-record calls.
    Any other consumer (the tests' doubles) is called per message."""
    if not isinstance(consumer, Consumer):
        for message in messages:
            consumer.ack(message)
        return
    acking = consumer.app.topics.acks_enabled_for
    committed_of = consumer._committed_offset
    index_of = consumer._acked_index
    acked_of = consumer._acked
    unacked = consumer._unacked_messages
    n, notified = 0, False
    with ack_lock:
        try:
            for message in messages:
                if message.acked:
                    continue
                message.acked = True
                if not acking(message.topic):
                    continue
                notified = True  # Faust's wakes the waiters for every record of a topic with acks
                tp, offset = message.tp, message.offset
                committed = committed_of[tp]
                if committed is None or offset >= committed:
                    index = index_of[tp]
                    if offset not in index:
                        unacked.discard(message)
                        index.add(offset)
                        acked_of[tp].append(offset)
                        n += 1
        finally:
            consumer._n_acked += n
            if notified:
                notify(consumer._waiting_for_ack)


def use_intake(app: Any, topic: Any, intake: Any) -> None:
    """Deliver the records of ``topic`` (a Faust topic, one or more names) to ``intake.on_message`` instead of
    to an agent's stream (``stream.intake``).

    The topic is registered with the conductor (``app.topics.add``: subscribed, acknowledged per record as an
    agent's topic is), and the intake with the flow control (``FlowControlEvent.manage_queue``, typed for mode's
    queues), which clears it at a revocation. The conductor's handler, compiled by the patched private
    ``Conductor._compile_message_handler`` (``apply_fixes``), looks the record's topic up among these first.
    Faust's handler takes an ``asyncio.Lock`` (guarding its partition-to-handler map while subscriptions change)
    and then the partition's handler for every record; an intake needs neither, its topics are fixed.
    """
    intakes: dict[str, Any] = app.__dict__.setdefault(_INTAKES_ATTR, {})
    for name in topic.topics:
        intakes[name] = intake
    app.topics.add(topic)
    app.flow_control.manage_queue(intake)


def wake_fetch(app: Any) -> None:
    """Make the fetch in progress look again at which partitions are active: call after ``on_buffer_drop``.

    Faust's fetcher asks aiokafka, in the consumer's own thread, for the records of the partitions active at that
    moment (``Consumer._get_active_partitions``, a live set) and waits up to a second (``getmany(timeout=1.0)``)
    on ``aiokafka.consumer.fetcher.Fetcher.fetched_records``, which sleeps on a waiter (``_fetch_waiters``) until
    a fetch brings records of *some* partition. A partition resumed meanwhile already has its records in
    aiokafka's buffer (aiokafka fetched them before the pause and fetches no more until they are taken), so
    they waited for another partition's records or the second: up to a second of an idle stage per pause, which
    starved the caller stage a third of a drain (``bench/README.md``). Notifying the waiters, in the consumer
    thread's loop (``ServiceThread.thread_loop``), makes ``fetched_records`` check the set again at once.
    A no-op when any of these is missing (another driver, a consumer not started).
    """
    thread = getattr(app.consumer, "_thread", None)
    loop = getattr(thread, "thread_loop", None)
    fetcher = _fetcher_of(thread)
    if loop is None or fetcher is None or loop.is_closed():
        return
    loop.call_soon_threadsafe(_notify_fetch_waiters, fetcher)


def _fetcher_of(thread: Any) -> Any:
    """aiokafka's Fetcher inside Faust's consumer thread (``AIOKafkaConsumerThread._consumer._fetcher``), or None
    before the thread has started its consumer."""
    return getattr(getattr(thread, "_consumer", None), "_fetcher", None)


def _notify_fetch_waiters(fetcher: Any) -> None:
    for waiter in list(fetcher._fetch_waiters):  # each removes itself when done, in a later callback
        fetcher._notify(waiter)


def _compile_message_handler_with_intakes(self: Any) -> Any:
    fausts = _ORIGINAL_COMPILE_MESSAGE_HANDLER(self)
    intakes: dict[str, Any] = self.app.__dict__.setdefault(_INTAKES_ATTR, {})
    get = intakes.get

    async def on_message(message: Any) -> None:
        intake = get(message.topic)
        if intake is not None:
            return await intake.on_message(message)  # type: ignore[no-any-return]
        return await fausts(message)  # type: ignore[no-any-return]

    return on_message


_ORIGINAL_COMPILE_MESSAGE_HANDLER = Conductor._compile_message_handler


async def _drain_messages_in_runs(self: Any, fetcher: Any) -> None:
    """Faust's ``Consumer._drain_messages`` with ``Consumer.getmany`` inlined (faust-streaming 0.15.3), rule for
    rule, except that a fetch's records of a partition whose topic has an intake (``use_intake``) go to it as one
    run (``Intake.on_messages``) instead of one at a time (module docstring). Records of other topics take
    Faust's path per record, in its round-robin order (``_deliver``), after the intakes' runs of the fetch.

    Kept from Faust: the loop's turn before each fetch; a fetch that returns while the flow is stopped is not
    delivered, and every partition is sought back to its committed offset (``perform_seek``); a stopped flow
    or a new consumer generation ends the fetch's delivery; a partition no longer active is skipped; records
    below the read offset are dropped (the read offset itself is read again, ``>=``); a gap in a topic with
    acks is registered (``_add_gap``); a due commit is made before a hand-over; the hand-over races the
    suspended flow (``wait_first``), which cancels it whole (``on_messages`` appends only after its waits).
    Changed: the read offset of a run is written before its hand-over, where Faust writes it after each
    callback, so a seek made while the run waits is not overwritten. Reviewed against Faust's source; the
    digests in ``tests/unit/test_compat.py`` fail when either of its two methods changes."""
    intakes: dict[str, Any] = self.app.__dict__.get(_INTAKES_ATTR) or {}
    if not intakes:
        return await _ORIGINAL_DRAIN_MESSAGES(self, fetcher)
    app = self.app
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    read_offset = self._read_offset
    set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
    acks_enabled_for = app.topics.acks_enabled_for
    to_message = self._to_message
    track_end = app.monitor.track_tp_end_offset
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            await self.sleep(0)  # as Faust's: a fetch that returns at once must not starve the loop
            if self.should_stop:
                unset_flag(CONSUMER_FETCHING)
                continue
            records, active = await self._wait_next_records(1.0)
            generation = app.consumer_generation_id
            if records is None or self.should_stop:
                unset_flag(CONSUMER_FETCHING)
                continue
            if not self.flow_active:
                # getmany's rule: what a fetch brought while the flow stopped (a rebalance, recovery) is not
                # delivered, and every partition goes back to its committed offset to be read again
                try:
                    await self.perform_seek()
                except Exception as exc:
                    self.log.warning("exception performing seek when flow not active: %r", exc)
                unset_flag(CONSUMER_FETCHING)
                continue
            others: dict[Any, Any] = {}
            for tp, fetched in records.items():
                intake = intakes.get(tp.topic)
                if intake is None:
                    others[tp] = fetched
                    continue
                if not self.flow_active or app.consumer_generation_id != generation:
                    break  # getmany stops the fetch's iteration here; the rest is fetched again
                if active is not None and tp not in active and tp not in self._buffered_partitions:
                    continue
                track_end(tp, self.highwater(tp))
                last = read_offset[tp]
                run = []
                for record in fetched:
                    offset = record.offset
                    if last is None or offset >= last:
                        if last and offset - last > 1 and acks_enabled_for(tp.topic):
                            await self._add_gap(tp, last + 1, offset)
                        run.append(to_message(tp, record))
                        last = offset
                if not run:
                    continue
                # before the hand-over (Faust writes it after the callback): a seek made while the run waits for
                # the flow or the producer's buffer then wins, and the records it sought back to are read again
                read_offset[tp] = last
                await _commit_if_due(self)
                await self.wait_first(intake.on_messages(run), self.suspend_flow.wait())
            if others:
                await _deliver(self, others, active, generation)
            unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


async def _commit_if_due(consumer: Any) -> None:
    every = consumer._commit_every
    if every is not None and consumer._n_acked >= every:
        consumer._n_acked = 0
        await consumer.commit()


async def _deliver(self: Any, records: Any, active: Any, generation: int) -> None:
    """Faust's per-record path (``getmany`` and the body of ``_drain_messages``) for records of topics without an
    intake."""
    app = self.app
    for n, (tp, record) in enumerate(self.scheduler.iterate(records), 1):
        if not self.flow_active or app.consumer_generation_id != generation:
            return
        if active is not None and tp not in active and tp not in self._buffered_partitions:
            continue
        if n % 100 == 0:
            await asyncio.sleep(0)
        app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        message = self._to_message(tp, record)
        offset = message.offset
        last = self._read_offset[tp]
        if last is None or offset >= last:
            if last and offset - last > 1 and app.topics.acks_enabled_for(message.topic):
                await self._add_gap(tp, last + 1, offset)
            await _commit_if_due(self)
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
            self._read_offset[tp] = offset


_ORIGINAL_DRAIN_MESSAGES = Consumer._drain_messages


_FETCH_WAIT_ATTR = "_bindwatch_fetch_max_wait_ms"
_FETCH_WAIT_PATCHED = "_bindwatch_fetch_max_wait"


def use_fetch_max_wait(app: Any, ms: int) -> None:
    """The fetch long-poll (``fetch_max_wait_ms``) of ``app``'s worker consumer, in place of Faust's 1,500 (module
    docstring); read when the consumer is created, so call it before the worker starts."""
    setattr(app, _FETCH_WAIT_ATTR, ms)


def fetch_max_wait(app: Any) -> int | None:
    """The long-poll the running worker consumer's fetcher uses (ms), or None before it has started."""
    ms: int | None = getattr(_fetcher_of(getattr(app.consumer, "_thread", None)), "_fetch_max_wait_ms", None)
    return ms


def _create_worker_consumer_with_fetch_wait(self: Any, transport: Any) -> Any:
    consumer = _ORIGINAL_CREATE_WORKER_CONSUMER(self, transport)
    ms = getattr(self.app, _FETCH_WAIT_ATTR, None)
    if ms is not None:
        consumer._fetch_max_wait_ms = ms  # aiokafka hands it to its Fetcher in ``start``
    return consumer


def apply_fixes() -> None:
    """Install the patches above (idempotent)."""
    if not getattr(ProducerBuffer, _PATCHED, False):
        ProducerBuffer.flush = drain  # type: ignore[method-assign]
        ProducerBuffer._send_pending = _send_pending_counted  # type: ignore[method-assign]
        setattr(ProducerBuffer, _PATCHED, True)
    ProducerBuffer.max_messages = BUFFER_MAX_MESSAGES
    if not getattr(Consumer, _EAGER_PATCHED, False):
        Consumer.wait_first = _wait_first_eagerly  # type: ignore[method-assign]
        setattr(Consumer, _EAGER_PATCHED, True)
    if not getattr(Conductor, _INTAKE_PATCHED, False):
        Conductor._compile_message_handler = _compile_message_handler_with_intakes  # type: ignore[method-assign]
        setattr(Conductor, _INTAKE_PATCHED, True)
    if not getattr(Consumer, _RUNS_PATCHED, False):
        Consumer._drain_messages = _drain_messages_in_runs  # type: ignore[method-assign]
        setattr(Consumer, _RUNS_PATCHED, True)
    if not getattr(AIOKafkaConsumerThread, _FETCH_WAIT_PATCHED, False):
        AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer_with_fetch_wait  # type: ignore[method-assign]
        setattr(AIOKafkaConsumerThread, _FETCH_WAIT_PATCHED, True)
    if not getattr(Recovery, _RESTORE_PATCHED, False):
        Recovery._build_offsets = _build_offsets_then_bulk_restore  # type: ignore[method-assign]
        setattr(Recovery, _RESTORE_PATCHED, True)
