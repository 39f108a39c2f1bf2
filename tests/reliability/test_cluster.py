"""The cluster profile (issue 17): a 3-node KRaft cluster, topics with replication factor 3 and
``min.insync.replicas=2``, the gateway and a worker as processes, NXCLOUD (simulated) pushing at 500/s, and the
faults a production cluster sees: a partition leader dies, brokers are rolled, a broker stalls, a worker pod is
lost with its disk while a second worker keeps standby copies of its tables.

After each scenario the same checks as the single-broker suite (test_faults.verify): every 200 is on the topic,
every count exact, the firing alerts equal what the pure rules compute. Also recorded: for how many seconds
pushes got something other than 200 (the gateway's 503s while leadership moves).

``ci`` (in the test command): the leader SIGKILL only. ``full`` (``scripts/reliability.sh --cluster``): all.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.reliability.conftest import PROFILE_NAME, TOKEN, Rig, write_results
from tests.reliability.test_faults import run_scenario
from tests.support import procs
from tests.support.broker import LocalCluster
from tests.support.kafka import Names

pytestmark = pytest.mark.integration
CLUSTER_PROFILES = {
    "ci": {"rate": 500, "load": 12, "down": 6},
    "full": {"rate": 500, "load": 60, "down": 20},
}
CP = CLUSTER_PROFILES[PROFILE_NAME]


@pytest.fixture(scope="module")
def cluster_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rig, LocalCluster]]:
    logdir = tmp_path_factory.mktemp("cluster")
    cluster = LocalCluster(int(os.environ.get("BINDWATCH_TEST_CLUSTER_KAFKA_PORT", "19800")))
    cluster.wipe()
    cluster.start()
    names = Names.new("clu")
    env = {
        **names.env(cluster.bootstrap, partitions=4),
        "BINDWATCH_REPLICATION_FACTOR": "3",
        "BINDWATCH_PUSH_TOKENS": TOKEN,
        "BINDWATCH_PRODUCE_TIMEOUT_SECONDS": "2",
        "BINDWATCH_STORE": "rocksdb://",
        "BINDWATCH_COMMIT_INTERVAL_SECONDS": "1",
        # As the prod overlay (docs/deployment.md). The standby scenario adds a second worker; with one worker Faust
        # assigns no standby, so the broker scenarios run with none.
        "BINDWATCH_STANDBY_REPLICAS": "1",
    }
    s = names.settings(cluster.bootstrap, partitions=4).model_copy(update={"replication_factor": 3})
    asyncio.run(_create(s))
    gw = procs.gateway(env, logdir, "gw-cluster")
    wk = procs.worker({**env, "BINDWATCH_GROUP_INSTANCE_ID": "cluster-w1"}, logdir, "w-cluster")
    rig = Rig(cluster, names, gw, wk, logdir, env)
    try:
        gw.start()
        wk.start(timeout=180)
        yield rig, cluster
    finally:
        write_results([{**row, "cluster": True} for row in rig.results])
        gw.stop()
        wk.stop()
        cluster.wipe()


async def _create(s: object) -> None:
    from stream.admin import create_topics
    from stream.config import StreamSettings

    assert isinstance(s, StreamSettings)
    await create_topics(s, bound=60)


def busiest_leader(bootstrap: str, topic: str) -> int:
    """Node id leading the events topic's partition with the most records."""

    async def find() -> int:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await c.start()
        await admin.start()
        try:
            [desc] = await admin.describe_topics([topic])
            leaders = {p["partition"]: p["leader"] for p in desc["partitions"]}
            ends = await c.end_offsets([TopicPartition(topic, p) for p in leaders])
            busiest = max(ends, key=lambda tp: ends[tp]).partition
            leader = leaders[busiest]
            assert isinstance(leader, int) and leader >= 1, leader
            return leader
        finally:
            await c.stop()
            await admin.close()

    return asyncio.run(asyncio.wait_for(find(), 30))


@pytest.mark.timeout(900)  # a 3-node cluster start, a worker start, the scenario, and the stop, on 2 cores
def test_the_busiest_partition_leader_is_killed_and_restarted(cluster_rig: tuple[Rig, LocalCluster]) -> None:
    rig, cluster = cluster_rig
    killed: list[int] = []

    def fault() -> None:
        node = busiest_leader(cluster.bootstrap, rig.env["BINDWATCH_EVENTS_TOPIC"])
        killed.append(node)
        cluster.node("kill", node)
        time.sleep(CP["down"])
        cluster.node("start", node)

    row = run_scenario(
        rig,
        f"leader of the busiest partition SIGKILLed {CP['down']}s",
        fault,
        seed=11,
        rate=CP["rate"],
        load=CP["load"],
    )
    row["killed_node"] = killed[0]


# The longer scenarios are defined only in the full profile (scripts/reliability.sh --cluster), so the test
# command neither runs nor skips them.
if PROFILE_NAME == "full":

    def test_rolling_restart_of_every_broker_under_load(cluster_rig: tuple[Rig, LocalCluster]) -> None:
        rig, cluster = cluster_rig

        def fault() -> None:
            for node in (1, 2, 3):
                cluster.node("stop", node)
                cluster.node("start", node)
                time.sleep(5)

        run_scenario(rig, "rolling restart of the 3 brokers", fault, seed=12, rate=CP["rate"], load=CP["load"])

    def test_a_broker_stalls_longer_than_the_produce_bound(cluster_rig: tuple[Rig, LocalCluster]) -> None:
        rig, cluster = cluster_rig

        def fault() -> None:
            node = busiest_leader(cluster.bootstrap, rig.env["BINDWATCH_EVENTS_TOPIC"])
            cluster.node("pause", node)
            time.sleep(CP["down"])
            cluster.node("resume", node)

        run_scenario(
            rig, f"busiest leader SIGSTOPped {CP['down']}s > 2s bound", fault, seed=13, rate=CP["rate"], load=CP["load"]
        )

    def test_a_worker_lost_with_its_disk_is_replaced_by_its_standby(cluster_rig: tuple[Rig, LocalCluster]) -> None:
        """Two workers, each keeping a standby copy of the other's table partitions. One is SIGKILLed and its data
        directory deleted (a pod rescheduled onto a node without its disk); the survivor must take its partitions
        over from the standby copies, and the replacement (same static id, empty disk) must rejoin, with every
        count exact and nothing counted twice. *takeover*: from the SIGKILL until the survivor is ready again
        after the rebalance that gave it the lost partitions (the lost member's session timeout, 10 s here, is
        most of it)."""
        rig, _ = cluster_rig
        env = {**rig.env, "BINDWATCH_GROUP_INSTANCE_ID": "cluster-w2", "BINDWATCH_SESSION_TIMEOUT_SECONDS": "10"}
        second = procs.worker(env, rig.logdir, "w-cluster-2")
        data_dir = Path(second.env["BINDWATCH_DATA_DIR"])
        takeover: list[float | None] = []
        try:
            second.start(timeout=180)
            # Both ready: the rebalance that split the partitions and assigned the standbys is over.
            rig.worker.wait_ready(timeout=180)
            time.sleep(5)

            def fault() -> None:
                second.kill()
                t_kill = time.monotonic()
                shutil.rmtree(data_dir)
                takeover.append(ready_again_after_rebalance(rig.worker, t_kill, bound=120))
                second.start(timeout=300)  # the replacement pod: same name and static id, empty disk

            try:
                run_scenario(
                    rig,
                    "worker SIGKILLed, data directory deleted; survivor has standbys",
                    fault,
                    seed=14,
                    rate=CP["rate"],
                    load=CP["load"],
                )
            finally:
                if rig.results:
                    rig.results[-1]["takeover_s"] = takeover[0] if takeover else None
            assert takeover[0] is not None, "the survivor never went through a rebalance after the SIGKILL"
        finally:
            second.stop()
            # The replacement is a static member: it does not leave on SIGTERM. Wait out its session (10 s) and
            # the rebalance, so that the rig's worker owns every partition again.
            time.sleep(12)
            rig.worker.wait_ready(timeout=180)


def ready_again_after_rebalance(worker: procs.Service, since: float, bound: float) -> float | None:
    """Seconds from ``since`` until ``worker`` answers /readyz 200 after having answered otherwise (a rebalance,
    or the recovery of newly assigned partitions); None if it never stopped being ready within ``bound``."""
    seen_unready = False
    while time.monotonic() - since < bound:
        status, _ = procs.http_get(procs.url(worker, "/readyz"), timeout=2)
        if status != 200:
            seen_unready = True
        elif seen_unready:
            return round(time.monotonic() - since, 1)
        time.sleep(0.2)
    return None
