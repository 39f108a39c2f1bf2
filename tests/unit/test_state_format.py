"""The stored table value: golden bytes of every format version ever written, and the frozen v0 encoder."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream import rules
from stream.rules import Failure, Kind, Policy, SubjectState
from tests.fixtures.state.legacy_v0 import dump_v0
from tests.fixtures.state.scenarios import SCENARIOS, describe, from_description

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "state"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_frozen_v0_encoder_writes_what_the_release_wrote(name: str) -> None:
    golden = (FIXTURES / "v0" / f"{name}.bin").read_bytes()
    expected = from_description(orjson.loads((FIXTURES / "v0" / f"{name}.json").read_bytes()))
    assert describe(expected) == describe(SCENARIOS[name]())
    assert dump_v0(expected) == golden


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4000), st.text(max_size=8), st.sampled_from(["d1", "d2", "d3", "d4", "d5"]))),
    st.integers(0, 9_999_999_999_999),
)
def test_frozen_v0_encoder_matches_the_release_on_any_state(items: list[tuple[int, str, str]], now: int) -> None:
    state = SubjectState(Kind.CALLER, "8613800000001")
    for ts, rid, did in items:
        rules.apply(state, Failure(1_774_782_000_000 + ts * 1000, rid, did), now, Policy())
    assert dump_v0(state) == state.dump()
