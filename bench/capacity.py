"""The capacity model of docs/deployment.md: partitions, pods, cores and broker traffic for a push rate, computed
from measured figures (never guessed), so the table can be regenerated when a figure changes.

    python -m bench.capacity                     # the Markdown table for 1,000 / 10,000 / 100,000 pushes/s
    python -m bench.capacity sizes [--events N]  # measure the bytes each event leaves on each topic

``sizes`` starts a local broker (``BENCH_KAFKA_PORT``), writes the benchmark backlog (``bench/workload.py``: 90%
once-seen numbers, repeat callers and hot DIDs) to a fresh events topic, drains it with one worker (RocksDB,
production topology) and reads the on-disk size of each topic's log segments (Kafka's record batches: keys,
values, headers and batch overhead), divided by the events drained.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

RATES = (1_000, 10_000, 100_000)


@dataclass(frozen=True)
class Figures:
    """Measured inputs, each with where it was measured."""

    gateway_us_per_push: float
    worker_us_per_event: float
    broker_us_per_event: float  # the whole 3-broker cluster, replication factor 3, gateway and worker traffic
    broker_fixed_cores: float  # the same cluster's CPU with no load (controllers, replica fetchers, group heartbeats)
    standby_us_per_event: float  # a standby's CPU to apply one event's changelog records
    bytes_per_event: dict[str, float]  # on-disk bytes per event on each topic (one replica)
    sources: dict[str, str] = field(default_factory=dict)
    headroom: float = 0.6  # plan every core to run at most this busy
    replication: int = 3
    standbys: int = 1  # the prod overlay keeps one standby per table partition (docs/deployment.md)
    min_gateways: int = 3  # availability: a PDB of 1 and a node loss still leave one
    min_workers: int = 2  # one worker lost leaves one counting while the other is replaced
    min_partitions: int = 8


# The figures the docs' table uses (bench/README.md and docs/deployment.md name the runs).
FIGURES = Figures(
    gateway_us_per_push=331,
    worker_us_per_event=207,
    broker_us_per_event=550,
    broker_fixed_cores=0.35,
    # A standby adds 0.72x-1.16x the worker's own CPU per event (stream_failover at 1,000,000 events, two runs on
    # 2026-12-02: 1,107 against 644 and 1,478 against 683 us per event): the larger share, 1.16 x 207 us.
    standby_us_per_event=240,
    bytes_per_event={
        "events": 538,  # written by the gateway (one push per produce request at these rates): the cluster run
        "by-did": 80.4,
        "alerts": 10.9,
        "callers changelog": 283.6,  # one record batch per partition and batch (stream/changelog.py)
        "dids changelog": 203.8,
        "outage partials": 4.3,
        "overview": 0.8,
    },
    sources={
        "gateway_us_per_push": "bench/README.md, gateway_throughput 2026-11-29 11:24, commit b9752c2, 1 uvicorn worker",
        "worker_us_per_event": "bench/README.md, latest run: stream_throughput, 1 worker, outage detection on, "
        "2026-11-29 14:54, commit 2fb8dfd, quiet machine",
        "broker_us_per_event": "docs/reliability.md cluster run 2026-11-29 11:48-12:33: CPU of the 3 brokers sampled "
        "every 10 s against events accepted, least squares over 129 intervals (0.35 cores + 550 us per event)",
        "standby_us_per_event": "bench/README.md, stream_failover 20261202T160140Z-quick and 20261202T182938Z-quick: "
        "a standby adds 1.16x and 0.72x the worker's own CPU per event; 1.16 x 207 us",
        "bytes_per_event": "python -m bench.capacity sizes --events 10000 (bench workload, on-disk); events topic "
        "from the cluster run (gateway-written)",
    },
)


@dataclass(frozen=True)
class Plan:
    rate: int
    partitions: int
    gateway_pods: int
    worker_pods: int
    gateway_cores: float
    worker_cores: float
    broker_cores: float
    produce_mb_s: float  # client writes into leaders
    disk_write_mb_s: float  # all replicas
    network_out_mb_s: float  # replication fetches plus consumers (workers, standbys, console)

    @property
    def total_cores(self) -> float:
        return self.gateway_cores + self.worker_cores + self.broker_cores


def pow2_at_least(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def plan(rate: int, f: Figures) -> Plan:
    """One gateway pod is one uvicorn process and one worker pod one Faust event loop: each uses at most one core,
    planned at ``headroom``. Partitions: a power of two with room to double the workers (Faust's table partitions
    cannot change without a new app id). Broker traffic from the bytes per event on each topic."""
    gw_cores = rate * f.gateway_us_per_push / 1e6
    wk_cores = rate * (f.worker_us_per_event + f.standbys * f.standby_us_per_event) / 1e6
    gateways = max(f.min_gateways, math.ceil(gw_cores / f.headroom))
    workers = max(f.min_workers, math.ceil(wk_cores / f.headroom))
    partitions = max(f.min_partitions, pow2_at_least(2 * workers))
    b = f.bytes_per_event
    written = sum(b.values())
    changelogs = sum(v for k, v in b.items() if k.endswith("changelog"))
    # What consumers fetch: the worker reads the events and the by-DID forwards; each standby reads the changelogs;
    # the console reads the alerts. Followers fetch every write once each.
    consumed = b.get("events", 0) + b.get("by-did", 0) + f.standbys * changelogs + b.get("alerts", 0)
    return Plan(
        rate=rate,
        partitions=partitions,
        gateway_pods=gateways,
        worker_pods=workers,
        gateway_cores=round(gateways * 1.0, 1),
        worker_cores=round(workers * 1.0, 1),
        broker_cores=round((f.broker_fixed_cores + rate * f.broker_us_per_event / 1e6) / f.headroom, 1),
        produce_mb_s=round(rate * written / 1e6, 2),
        disk_write_mb_s=round(rate * written * f.replication / 1e6, 2),
        network_out_mb_s=round(rate * (written * (f.replication - 1) + consumed) / 1e6, 2),
    )


def table(f: Figures, rates: tuple[int, ...] = RATES) -> str:
    rows = [plan(r, f) for r in rates]
    out = [
        "| pushes/s | partitions | gateway pods (1 core each) | worker pods (1 core each) | broker cores "
        "(whole cluster) | cores in all | produce MB/s | disk writes MB/s (3 replicas) | broker network out MB/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in rows:
        out.append(
            f"| {p.rate:,} | {p.partitions} | {p.gateway_pods} | {p.worker_pods} | {p.broker_cores} "
            f"| {p.total_cores:.1f} | {p.produce_mb_s} | {p.disk_write_mb_s} | {p.network_out_mb_s} |"
        )
    return "\n".join(out)


# --- measuring the bytes per event ---------------------------------------------------------------------------
def topic_bytes(data_dir: Path) -> dict[str, int]:
    """On-disk bytes of each topic's log segments (all its partitions) in one broker's log directory."""
    sizes: dict[str, int] = {}
    for tp in data_dir.iterdir():
        if tp.is_dir() and "-" in tp.name and tp.name.rsplit("-", 1)[1].isdigit():
            topic = tp.name.rsplit("-", 1)[0]
            sizes[topic] = sizes.get(topic, 0) + sum(seg.stat().st_size for seg in tp.glob("*.log"))
    return sizes


async def _records(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Records on each topic (end minus beginning offsets, all partitions)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        out: dict[str, int] = {}
        for d in described:
            tps = [TopicPartition(d["topic"], p["partition"]) for p in d["partitions"]]
            begin, end = await c.beginning_offsets(tps), await c.end_offsets(tps)
            out[d["topic"]] = sum(end[tp] - begin[tp] for tp in tps)
        return out
    finally:
        await c.stop()


def measure_sizes(n: int, out: Path) -> dict[str, object]:
    from bench import kafka_io, services, stream_bench, workload
    from tests.support import kafka, procs
    from tests.support.broker import ROOT

    broker = services.broker()
    if broker.local is None:
        raise SystemExit("sizes needs a broker it starts (unset KAFKA_BOOTSTRAP_SERVERS): it reads the log directory")
    try:
        run = kafka_io.tag("sizes")
        s = kafka_io.stream_settings(broker.bootstrap, run)
        kafka_io.setup(s)
        kafka_io.produce(broker.bootstrap, s.events_topic, workload.backlog(n, run))
        logs = out / "logs"
        w = services.worker({**kafka.env_of(s), "BINDWATCH_DATA_DIR": str(out / "state")}, logs, "sizes-worker")
        with procs.running(w, timeout=180):
            drained = stream_bench._wait_drained([w], n, 90 + n / 250)
        sizes = topic_bytes(ROOT / ".kafka" / f"run-{broker.local.port}" / "data")
        roles = {
            "events": s.events_topic,
            "by-did": s.by_did_topic,
            "alerts": s.alerts_topic,
            "callers changelog": f"{s.app_id}-callers-changelog",
            "dids changelog": f"{s.app_id}-dids-changelog",
            "outage changelog": f"{s.app_id}-outage-changelog",
            "overview": s.overview_topic,
            "outage partials": s.outage_partials_topic,
        }
        records = asyncio.run(asyncio.wait_for(_records(broker.bootstrap, list(roles.values())), 60))
        return {
            "events": n,
            "records_per_event": {k: round(records.get(t, 0) / n, 3) for k, t in roles.items()},
            "drained": drained["complete"],
            "drain_seconds": drained["seconds"],
            "bytes_per_event": {k: round(sizes.get(t, 0) / n, 1) for k, t in roles.items()},
            "topic_bytes": {k: sizes.get(t, 0) for k, t in roles.items()},
        }
    finally:
        broker.stop()


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.capacity")
    ap.add_argument("what", nargs="?", default="table", choices=["table", "sizes"])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=Path("bench/results/capacity"))
    a = ap.parse_args(argv)
    if a.what == "sizes":
        a.out.mkdir(parents=True, exist_ok=True)
        print(json.dumps(measure_sizes(a.events, a.out), indent=2))
    else:
        print(table(FIGURES))
        print()
        for name, source in FIGURES.sources.items():
            print(f"* `{name}`: {source}")


if __name__ == "__main__":
    main(sys.argv[1:])
