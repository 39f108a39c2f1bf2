"""``bench/run.sh stream_settings_ab``'s reading of ``BENCH_AB``: a typo must fail the run, not measure the
defaults against themselves."""

import pytest

from bench.stream_bench import parse_ab


def test_pairs_are_read() -> None:
    assert parse_ab("BINDWATCH_BATCH_SIZE=2000  BINDWATCH_PRODUCER_LINGER_MS=0") == {
        "BINDWATCH_BATCH_SIZE": "2000",
        "BINDWATCH_PRODUCER_LINGER_MS": "0",
    }


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("BINDWATCH_BATCH_SIZE", "'BINDWATCH_BATCH_SIZE'"),
        ("BATCH_SIZE=2000", "'BATCH_SIZE=2000'"),
    ],
)
def test_a_bad_spec_is_refused_naming_it(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_ab(spec)
