"""The stored table value (stream/state.py): golden bytes of every format version ever written load to
exactly the state they stand for; the current encoder writes exactly its golden bytes; the frozen v0
encoder used by the restore integration test writes exactly what the release wrote."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.alerts import Rule, Severity
from stream import rules, state
from stream.rules import AlertState, Failure, Kind, Policy, SubjectState
from stream.state import StateFormatError
from tests.fixtures.state.legacy_v0 import dump_v0
from tests.fixtures.state.scenarios import SCENARIOS, describe, from_description

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "state"
VERSIONS = sorted(int(d.name[1:]) for d in FIXTURES.glob("v*") if d.is_dir())
GOLDEN = [(v, name) for v in VERSIONS for name in sorted(SCENARIOS)]


def golden(version: int, name: str) -> tuple[bytes, SubjectState]:
    d = FIXTURES / f"v{version}"
    return (d / f"{name}.bin").read_bytes(), from_description(orjson.loads((d / f"{name}.json").read_bytes()))


def test_every_version_this_worker_reads_has_golden_fixtures() -> None:
    assert tuple(VERSIONS) == state.READS and state.VERSION == max(VERSIONS)
    for v in VERSIONS:
        assert sorted(p.stem for p in (FIXTURES / f"v{v}").glob("*.bin")) == sorted(SCENARIOS)


@pytest.mark.parametrize(("version", "name"), GOLDEN, ids=[f"v{v}-{n}" for v, n in GOLDEN])
def test_golden_value_loads_to_exactly_its_state(version: int, name: str) -> None:
    data, expected = golden(version, name)
    assert state.version_of(data) == version
    loaded = SubjectState.load(data)
    assert loaded == expected
    assert describe(loaded) == describe(expected)  # field by field, with a readable diff on failure
    assert all(type(f) is rules.Failure for f in loaded.events)  # named tuples, though built in C (TUPLE_NEW)
    assert rules.peek(data) == (expected.is_firing(), expected.last_activity_wall)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_current_encoder_writes_exactly_the_golden_bytes(name: str) -> None:
    data, expected = golden(state.VERSION, name)
    assert expected.dump() == data


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_frozen_v0_encoder_writes_what_the_release_wrote(name: str) -> None:
    data, expected = golden(0, name)
    assert dump_v0(expected) == data


def test_restored_v0_state_counts_on_like_the_original() -> None:
    """A v0 value read by this release and fed more failures gives the same state and alerts as the
    state it stands for (built field by field) fed the same failures."""
    data, original = golden(0, "caller_repeat_firing")
    restored = SubjectState.load(data)
    more = [Failure(1_774_782_100_000 + i, f"more-{i}", f"8529000009{i}") for i in range(4)]
    for f in more:
        a = rules.apply(original, f, 1_790_000_100_000, Policy())
        b = rules.apply(restored, f, 1_790_000_100_000, Policy())
        assert a == b
    assert restored == original and SubjectState.load(restored.dump()) == original


states = st.builds(
    lambda items, now, kind: _built(items, now, kind),
    st.lists(st.tuples(st.integers(0, 4000), st.text(max_size=8), st.sampled_from(["d1", "d2", "d3", "", "é"]))),
    st.integers(0, 9_999_999_999_999),
    st.sampled_from(Kind),
)


def _built(items: list[tuple[int, str, str]], now: int, kind: Kind) -> SubjectState:
    s = SubjectState(kind, "8613800000001")
    for ts, rid, other in items:
        rules.apply(s, Failure(1_774_782_000_000 + ts * 1000, rid, other), now, Policy(max_events=12))
    return s


@settings(max_examples=150, deadline=None)
@given(states)
def test_any_state_round_trips_through_every_version(s: SubjectState) -> None:
    for data in (s.dump(), dump_v0(s)):
        assert SubjectState.load(data) == s
        assert rules.peek(data) == (s.is_firing(), s.last_activity_wall)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"F0000000000001" + orjson.dumps({"v": 2, "k": "caller"}), "version 2"),
        (b"F0000000000001" + orjson.dumps({"v": "1"}), "not an integer"),
        (b"Q0000000000001" + orjson.dumps({"v": 1, "k": "caller", "s": "1"}), "damaged"),
        (
            b"Q0000000000001" + orjson.dumps({"k": "caller", "s": "1", "e": [[1, "r"]], "a": {}, "f": None, "w": 1}),
            "damaged",
        ),
        (b"Q0000000000001" + orjson.dumps({"k": "nobody", "s": "1", "e": [], "a": {}, "f": None, "w": 1}), "damaged"),
        (b"Q0000000000001[]", "JSON list"),
        (b"Q0000000000001{", "not JSON"),
        (b'{"k": "caller"}', "prefix"),
        (b"", "prefix"),
    ],
)
def test_unreadable_values_are_refused_saying_why(data: bytes, says: str) -> None:
    with pytest.raises(StateFormatError, match=says):
        SubjectState.load(data)


def test_damaged_value_message_holds_no_number() -> None:
    data = b"Q0000000000001" + orjson.dumps({"v": 1, "k": "caller", "s": "8613800000001", "e": {"t": [1]}})
    with pytest.raises(StateFormatError) as info:
        SubjectState.load(data)
    assert "8613800000001" not in str(info.value)


def test_v1_is_smaller_than_v0_for_a_storm() -> None:
    s = SubjectState(Kind.DID, "85290000009", last_activity_wall=1)
    s.events = [Failure(1_774_782_000_000 + i, f"1640920940635{i:06d}", f"86139{i:06d}") for i in range(2000)]
    s.alerts["did_hot"] = AlertState(Rule.DID_HOT, None, 1, True, Severity.CRITICAL, 1, 1, 1, 1, {})
    assert len(s.dump()) < len(dump_v0(s))


@pytest.mark.parametrize(("version", "name"), GOLDEN, ids=[f"v{v}-{n}" for v, n in GOLDEN])
def test_event_times_of_a_golden_value_are_those_of_its_state(version: int, name: str) -> None:
    data, expected = golden(version, name)
    assert state.event_times(data) == [f.ts for f in expected.events]


@settings(max_examples=150, deadline=None)
@given(states)
def test_event_times_read_without_decoding_equal_a_full_load(s: SubjectState) -> None:
    for data in (s.dump(), dump_v0(s)):
        assert state.event_times(data) == [f.ts for f in SubjectState.load(data).events]


def test_event_times_of_a_subject_that_looks_like_the_marker() -> None:
    s = SubjectState(
        Kind.CALLER, '1,"e":{"t":[7]'
    )  # not a number, yet a key is a string: the reader must not be fooled
    s.events = [Failure(5, "r1", "x"), Failure(9, "r2", "y")]
    assert state.event_times(s.dump()) == [5, 9]


def test_event_times_refuses_a_damaged_value_like_load() -> None:
    with pytest.raises(StateFormatError):
        state.event_times(b"Q0000000000000" + b'{"v":1,"k":"caller"')
