"""Shared fixtures. The broker comes from tests/support/broker.py; integration tests never skip."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import BrokerUnavailable, ProvidedBroker, provide


@pytest.fixture(scope="session")
def broker() -> Iterator[ProvidedBroker]:
    t0 = time.monotonic()
    try:
        b = provide(int(os.environ.get("BINDWATCH_TEST_KAFKA_PORT", "19192")))
    except BrokerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    print(f"\n[bindwatch tests] Kafka broker from {b.source} at {b.bootstrap} in {time.monotonic() - t0:.1f}s")
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def bootstrap(broker: ProvidedBroker) -> str:
    return broker.bootstrap


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d
