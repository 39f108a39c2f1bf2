"""The reliability rig: a broker of its own (it is stopped and paused), a gateway and a worker as processes.

Profiles: ``ci`` (default, short, runs in the test command) and ``full`` (``scripts/reliability.sh``, before a
release: longer load, a 30 s broker outage, duplicates minutes later). Results go to
``$BINDWATCH_RELIABILITY_RESULTS`` (JSON lines) for ``docs/reliability.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import procs
from tests.support.broker import LocalBroker, LocalCluster
from tests.support.kafka import Names, setup_topics
from tests.support.nxcloud import Ledger

PROFILES = {
    "ci": {"rate": 150, "load": 10, "outage": 10, "pause": 6, "dup_delay": 3, "bound": 2},
    "full": {"rate": 300, "load": 40, "outage": 30, "pause": 10, "dup_delay": 120, "bound": 2},
}
PROFILE_NAME = os.environ.get("BINDWATCH_RELIABILITY_PROFILE", "ci")
PROFILE = PROFILES[PROFILE_NAME]
TOKEN = "reliability-token-7f3a"


@dataclass
class Rig:
    broker: LocalBroker | LocalCluster
    names: Names
    gateway: procs.Service
    worker: procs.Service
    logdir: Path
    env: dict[str, str]
    ledgers: list[Ledger] = field(default_factory=list)
    results: list[dict[str, object]] = field(default_factory=list)

    @property
    def push_url(self) -> str:
        return procs.url(self.gateway, "/v1/nxcloud/binding-failures")


@pytest.fixture(scope="package")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    logdir = tmp_path_factory.mktemp("reliability")
    broker = LocalBroker(
        int(os.environ.get("BINDWATCH_TEST_FAULT_KAFKA_PORT", "19292")),
        int(os.environ.get("BINDWATCH_TEST_FAULT_KAFKA_PORT", "19292")) + 1,
    )
    broker.wipe()
    broker.start()
    names = Names.new("rel")
    setup_topics(broker.bootstrap, names, partitions=4)
    env = {
        **names.env(broker.bootstrap, partitions=4),
        "BINDWATCH_PUSH_TOKENS": TOKEN,
        "BINDWATCH_PRODUCE_TIMEOUT_SECONDS": str(PROFILE["bound"]),
        "BINDWATCH_STORE": "rocksdb://",
        "BINDWATCH_COMMIT_INTERVAL_SECONDS": "1",
    }
    gw = procs.gateway(env, logdir)
    wk = procs.worker({**env, "BINDWATCH_GROUP_INSTANCE_ID": "reliability-w1"}, logdir, "w1")
    r = Rig(broker, names, gw, wk, logdir, env)
    try:
        gw.start()
        wk.start(timeout=120)
        yield r
    finally:
        gw.stop()
        wk.stop()
        broker.stop()
        broker.wipe()
        write_results(r.results)


def write_results(rows: list[dict[str, object]]) -> None:
    """Append result rows (JSON lines) for docs/reliability.md, when BINDWATCH_RELIABILITY_RESULTS names a file."""
    out = os.environ.get("BINDWATCH_RELIABILITY_RESULTS")
    if out:
        with Path(out).open("a") as f:
            for row in rows:
                f.write(json.dumps({**row, "profile": PROFILE_NAME}) + "\n")
