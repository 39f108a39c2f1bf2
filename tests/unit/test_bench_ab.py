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


def test_peer_rounds_alternate_which_side_drains_first_and_refuse_an_unknown_order() -> None:
    from bench.stream_bench import worker_drains_first

    assert [worker_drains_first("alternate", i) for i in range(4)] == [False, True, False, True]
    assert not any(worker_drains_first("peer-first", i) for i in range(3))
    assert all(worker_drains_first("worker-first", i) for i in range(3))
    with pytest.raises(ValueError, match="peer-first, worker-first or alternate"):
        worker_drains_first("random", 0)


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    from bench.stream_bench import median

    assert median([1.6, 1.2, 1.4]) == 1.4
    assert median([1.6, 1.2, 1.4, 1.3]) == 1.35
