"""``stream.app.run_batch``: a batch whose decoding or processing fails ends the worker at once, without
acknowledging the batch (it is replayed from the last commit); a good batch is processed and timed."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

import stream.app as worker
from stream.core import Item
from stream.metrics import StreamMetrics
from stream.rules import Kind


class Exited(Exception):
    pass


class Core:
    def __init__(self, fail: bool) -> None:
        self.kind = Kind.CALLER
        self.metrics = StreamMetrics()
        self.fail = fail
        self.got: list[Item] = []

    async def process(self, items: Sequence[Item]) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.got += items


def records(n: int) -> list[Any]:
    return [SimpleNamespace(message=SimpleNamespace(timestamp=1_790_000_000.0 + i)) for i in range(n)]


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise Exited

    monkeypatch.setattr(os, "_exit", fake_exit)
    monkeypatch.setattr(logging, "shutdown", lambda: None)
    return codes


def items_of(events: Sequence[Any]) -> list[Item]:
    return [Item(f"k{i}", ev) for i, ev in enumerate(events)]


def test_a_good_batch_is_processed_and_timed(exits: list[int]) -> None:
    core = Core(fail=False)
    asyncio.run(worker.run_batch(core, records(3), items_of))  # type: ignore[arg-type]
    assert [i.key for i in core.got] == ["k0", "k1", "k2"] and exits == []
    sample = core.metrics.registry.get_sample_value
    assert sample("bindwatch_stream_batch_seconds_count", {"stage": "caller"}) == 1
    assert sample("bindwatch_stream_batch_wait_seconds_count", {"stage": "caller"}) == 1


@pytest.mark.parametrize("where", ["core", "decoding"])
def test_a_failed_batch_ends_the_worker_without_acknowledging(
    exits: list[int], where: str, caplog: pytest.LogCaptureFixture
) -> None:
    core = Core(fail=where == "core")

    def broken(events: Sequence[Any]) -> list[Item]:
        raise KeyError("no such field")

    with pytest.raises(Exited):
        asyncio.run(worker.run_batch(core, records(2), items_of if where == "core" else broken))  # type: ignore[arg-type]
    assert exits == [worker.EXIT_BATCH_FAILED]
    assert "a caller batch failed; exiting so that it is replayed from the last commit" in caplog.text


class OneBatchIntake:
    """An ``Intake`` double: one batch, then its input fails (``batches`` raises)."""

    def __init__(self, batch: list[Any]) -> None:
        self.batch = batch

    async def batches(self) -> Any:
        yield self.batch
        raise RuntimeError("the consumer went away")


def test_run_stage_feeds_fausts_livelock_check_processes_and_exits_when_its_input_fails(exits: list[int]) -> None:
    """Each batch marks its partitions as read (``compat.note_stream_inbound``: Faust's livelock check logs an
    error for a lagging partition whose stream took nothing for 5 minutes), is processed, and a failure of the
    input itself ends the worker like a failed batch (a stage that stopped would leave its partitions unread)."""
    batch = [SimpleNamespace(message=SimpleNamespace(timestamp=1_790_000_000.0, tp=("events", p))) for p in (1, 4)]
    app = SimpleNamespace(monitor=SimpleNamespace(stream_inbound_time={}))
    core = Core(fail=False)
    with pytest.raises(Exited):
        asyncio.run(worker.run_stage(app, core, OneBatchIntake(batch), items_of))  # type: ignore[arg-type]
    assert set(app.monitor.stream_inbound_time) == {("events", 1), ("events", 4)}
    assert len(core.got) == 2
    assert exits == [worker.EXIT_BATCH_FAILED]
