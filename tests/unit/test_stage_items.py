"""The stages' items of a batch of records (``stream.core.caller_items``, ``did_items``): what each record becomes,
and what is counted and skipped. Runs against the compiled core and the source, like every unit test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from pydantic import ValidationError

from schemas import decode, encode
from schemas.events import BindingFailureFacts
from stream import bundle
from stream.core import caller_items, did_items
from stream.intake import Record
from stream.rules import Failure
from tests.support.events import event


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def facts_or_none(refused: list[bytes]) -> Callable[[bytes], BindingFailureFacts | None]:
    def decode_or_skip(raw: bytes) -> BindingFailureFacts | None:
        try:
            return decode(BindingFailureFacts, raw)
        except ValidationError:
            refused.append(raw)
            return None

    return decode_or_skip


def test_caller_records_become_failures_ticks_and_counted_skips() -> None:
    ok = event("rid-1", "8613800000001", "8613900000002", timedelta(minutes=3))
    zero = event("rid-2", "8613800000001", "8613900000002", timedelta(minutes=4), code=0)
    records = [
        Record(Message("events", 3, 10, b"8613800000001", encode(ok))),
        Record(Message("ticks", 1, 5, b"8613800000009", b"")),
        Record(Message("events", 3, 11, b"x", b"{not json")),
        Record(Message("events", 3, 12, b"8613800000001", encode(zero))),
    ]
    refused: list[bytes] = []
    ignored: list[None] = []
    items = caller_items(records, "ticks", facts_or_none(refused), lambda: ignored.append(None))
    assert [(i.key, i.failure is None) for i in items] == [("8613800000001", False), ("8613800000009", True)]
    first = items[0]
    entry = bundle.entry_of(ok)
    assert (first.failure, first.forward) == (Failure(entry.ts, "rid-1", "8613900000002"), entry)
    assert (first.partition, first.offset, first.action, first.where) == (3, 10, ok.action, records[0])
    assert refused == [b"{not json"] and len(ignored) == 1


def test_did_records_become_one_failure_per_bundle_entry_and_undecodable_ones_are_reported() -> None:
    entries = [bundle.Entry("d1", "c1", 1_000, "r1"), bundle.Entry("d2", "c2", 2_000, "r2")]
    records = [
        Record(Message("by-did", 2, 7, b"", bundle.encode(entries))),
        Record(Message("did-ticks", 0, 1, b"d9", b"")),
        Record(Message("by-did", 2, 8, b"", b"[]")),
    ]
    bad: list[ValueError] = []
    items = did_items(records, "did-ticks", bad.append)
    assert [(i.key, i.failure, i.partition, i.offset) for i in items] == [
        ("d1", Failure(1_000, "r1", "c1"), 2, 7),
        ("d2", Failure(2_000, "r2", "c2"), 2, 7),
        ("d9", None, None, None),
    ]
    assert len(bad) == 1 and "JSON object" in str(bad[0])
