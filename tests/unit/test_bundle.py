"""The by-DID bundle: where each DID goes, what round-trips, and what a bad record is told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given
from hypothesis import strategies as st

from schemas import encode
from stream import bundle, rules
from stream.bundle import Entry
from tests.support.events import event

numbers = st.text(alphabet="0123456789", min_size=1, max_size=20)
entries = st.lists(
    st.builds(Entry, numbers, numbers, st.integers(0, 2**53), st.text(min_size=1, max_size=64)), max_size=50
)


@given(numbers, st.integers(1, 64))
def test_partition_is_the_one_kafkas_default_partitioner_picks(did: str, n: int) -> None:
    parts = list(range(n))
    assert bundle.partition_for(did, n) == DefaultPartitioner()(did.encode(), parts, parts)


@given(entries)
def test_round_trip(items: list[Entry]) -> None:
    got = bundle.decode(bundle.encode(items))
    assert got == items
    # built in C (rules.TUPLE_NEW), yet real named tuples: a plain tuple would compare equal above too
    assert all(type(e) is Entry for e in got)
    assert [(e.did, e.caller, e.ts, e.rid) for e in got] == [tuple(e) for e in items]


@given(numbers, numbers, st.integers(0, 4_102_444_800_000), st.text(min_size=1, max_size=64))  # up to 2100
def test_an_events_entry_and_failures_are_the_named_tuples_their_constructors_build(
    did: str, caller: str, ts: int, rid: str
) -> None:
    e = bundle.entry_of(event(rid, caller, did, datetime.fromtimestamp(ts // 1000, tz=UTC)))
    assert type(e) is Entry and e == Entry(did, caller, (ts // 1000) * 1000, rid) and e.did == did
    f = rules.failure(ts, rid, caller)
    assert type(f) is rules.Failure and f == rules.Failure(ts, rid, caller)
    assert (f.ts, f.rid, f.other) == (ts, rid, caller)
    assert f < rules.Failure(ts + 1, rid, caller)  # ordered as the tuple (ts, rid, other)


def test_chunks_cover_every_entry_in_order_and_bound_the_size() -> None:
    items = [Entry(str(i), "1", i, f"r{i}") for i in range(1234)]
    parts = list(bundle.chunks(items, 500))
    assert [len(p) for p in parts] == [500, 500, 234]
    assert [e for p in parts for e in p] == items
    assert len(bundle.encode(parts[0])) < 1_000_000


def test_the_per_event_format_of_earlier_versions_is_still_read() -> None:
    e = event("rid-1", "852111", "852222", timedelta(0))
    assert bundle.decode(encode(e)) == [Entry("852222", "852111", int(e.occurredAt.timestamp() * 1000), "rid-1")]


def test_a_legacy_event_that_is_not_a_failure_yields_nothing() -> None:
    assert bundle.decode(encode(event("rid-2", "852111", "852222", timedelta(0), code=0))) == []


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"v": 2, "e": []}', "unknown bundle version 2"),
        (b'{"v": 1}', "without an entry list"),
        (b'{"v": 1, "e": [["852000", "853000", "12", "r"]]}', "entry 0 is not [did, caller, epoch_ms, requestId]"),
        (b'{"v": 1, "e": [["852000", "853000", 12]]}', "entry 0"),
        (b'{"caller": "1"}', "neither a bundle nor an event"),
    ],
)
def test_a_bad_record_gets_an_error_naming_the_problem(raw: bytes, says: str) -> None:
    with pytest.raises(ValueError) as err:
        bundle.decode(raw)
    assert says in str(err.value)


def test_errors_do_not_carry_the_numbers() -> None:
    with pytest.raises(ValueError) as err:
        bundle.decode(b'{"v": 1, "e": [["85298765432", "85212345678", "x", "r"]]}')
    assert "85298765432" not in str(err.value) and "85212345678" not in str(err.value)


@given(st.binary(max_size=64))
def test_murmur2_equals_aiokafkas_for_any_bytes(data: bytes) -> None:
    assert bundle.murmur2(data) == murmur2(data)


@pytest.mark.parametrize("n", range(0, 13))
def test_murmur2_equals_aiokafkas_at_every_tail_length_and_extreme_bytes(n: int) -> None:
    for data in (b"\xff" * n, b"\x00" * n, bytes(range(250, 250 - n, -1)), ("8" * n).encode()):
        assert bundle.murmur2(data) == murmur2(data), data


def test_partition_for_agrees_with_kafkas_default_partitioner_on_phone_numbers() -> None:
    partitions = list(range(8))
    for i in range(2000):
        did = f"852{i * 7919 % 10**8:08d}"
        assert bundle.partition_for(did, 8) == DefaultPartitioner()(did.encode(), partitions, partitions)
