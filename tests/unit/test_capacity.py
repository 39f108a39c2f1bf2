"""bench/capacity.py: the capacity model's arithmetic, against figures worked out by hand."""

from __future__ import annotations

import pytest

from bench.capacity import FIGURES, Figures, plan, pow2_at_least, table

SIMPLE = Figures(
    gateway_us_per_push=300,
    worker_us_per_event=400,
    broker_us_per_event=100,
    broker_fixed_cores=0.3,
    standby_us_per_event=200,
    standbys=1,
    bytes_per_event={"events": 500, "by-did": 100, "alerts": 10, "callers changelog": 400, "dids changelog": 400},
)


@pytest.mark.parametrize(("n", "want"), [(0, 1), (1, 1), (2, 2), (3, 4), (16, 16), (17, 32)])
def test_pow2_at_least(n: int, want: int) -> None:
    assert pow2_at_least(n) == want


def test_a_rate_worked_out_by_hand() -> None:
    p = plan(10_000, SIMPLE)
    # gateway: 10,000 x 300 us = 3.0 cores, at 60% -> 5 pods
    assert p.gateway_pods == 5
    # worker: 10,000 x (400 + 1 standby x 200) us = 6.0 cores, at 60% -> 10 pods; partitions: 2 x 10 -> 32
    assert (p.worker_pods, p.partitions) == (10, 32)
    # broker: (0.3 + 10,000 x 100 us) / 0.6 = 2.17 cores
    assert p.broker_cores == 2.2
    # written 1,410 B per event: 14.1 MB/s into leaders, x3 on disk; out: 2 follower copies (28.2) + the worker's
    # events and by-did (6.0) + one standby's changelogs (8.0) + the console's alerts (0.1) = 42.3 MB/s
    assert (p.produce_mb_s, p.disk_write_mb_s, p.network_out_mb_s) == (14.1, 42.3, 42.3)
    assert p.total_cores == pytest.approx(5 + 10 + 2.2)


def test_small_rates_keep_the_availability_floors() -> None:
    p = plan(10, SIMPLE)
    assert (p.gateway_pods, p.worker_pods, p.partitions) == (3, 2, 8)


def test_the_documented_table_renders_every_rate() -> None:
    lines = table(FIGURES).splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["1,000", "10,000", "100,000"]
