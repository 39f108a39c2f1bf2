"""Faults injected for real while NXCLOUD (simulated) pushes: nothing lost, nothing counted twice.

The scenarios run in order against one rig (a long-lived gateway and worker, as in production), and each
check covers everything sent so far: counts and alerts are compared with what the pure rules compute from
the distinct accepted pushes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas import Alert, BindingFailureEvent, decode
from stream.config import StreamSettings
from tests.reliability.conftest import PROFILE, Rig
from tests.support import procs
from tests.support.events import expected
from tests.support.kafka import consume
from tests.support.nxcloud import Ledger, Simulator, run_in_thread

pytestmark = pytest.mark.integration


def run_scenario(
    rig: Rig,
    name: str,
    fault: Callable[[], None],
    seed: int,
    duplicate_share: float = 0.0,
    duplicate_delay: float = 0.0,
    rate: float | None = None,
    load: float | None = None,
) -> dict[str, object]:
    rate = rate or PROFILE["rate"]
    load = load or PROFILE["load"]
    sim = Simulator(
        rig.push_url,
        rig.env["BINDWATCH_PUSH_TOKENS"],
        rate=rate,
        duration=load,
        seed=seed,
        duplicate_share=duplicate_share,
        duplicate_delay=duplicate_delay,
    )
    started = time.monotonic()
    thread, ledger = run_in_thread(sim)
    time.sleep(load / 3)
    fault()
    thread.join(timeout=load + 60 * 11 + duplicate_delay)
    assert not thread.is_alive(), "the simulator did not finish in its bound"
    rig.ledgers.append(ledger)
    row = verify(rig, name, ledger)
    row["rate"], row["load_seconds"] = rate, load
    row["unavailable_seconds"] = ledger.unavailable_seconds()
    row["seconds"] = round(time.monotonic() - started, 1)
    rig.results.append(row)
    assert row["given_up"] == 0, row
    assert row["lost"] == 0, row
    assert row["double_counted"] == 0 and row["under_counted"] == 0, row
    assert row["alerts_missing"] == 0 and row["alerts_unexpected"] == 0, row
    assert row["duplicate_firing"] == 0, row
    return row


def verify(rig: Rig, name: str, ledger: Ledger) -> dict[str, object]:
    accepted = {rid for lg in rig.ledgers for rid in lg.accepted}
    topic = rig.env["BINDWATCH_EVENTS_TOPIC"]
    records = consume(
        rig.broker.bootstrap,
        topic,
        lambda recs: accepted <= {r.headers["requestId"].decode() for r in recs},
        timeout=60,
    )
    seen: dict[str, BindingFailureEvent] = {}
    for r in records:
        ev = decode(BindingFailureEvent, r.payload)
        seen.setdefault(ev.requestId, ev)
    lost = accepted - set(seen)
    distinct = list(seen.values())
    want_alerts, callers, dids = expected(distinct, StreamSettings().policy())
    want_firing = Counter({k: v for k, v in want_alerts.items() if k[1] == "firing"})

    # counts: poll until the worker has caught up (bounded), then compare every subject
    t_counts = time.monotonic()
    deadline = t_counts + 240
    with httpx.Client(timeout=10) as client:
        while True:
            got = {}
            for path, n in [
                *((f"/v1/callers/{c}", n) for c, n in callers.items()),
                *((f"/v1/dids/{d}", n) for d, n in dids.items()),
            ]:
                resp = client.get(procs.url(rig.worker, path))
                got[path] = (n, resp.json().get("retainedFailures", 0) if resp.status_code == 200 else 0)
            if all(g == w for w, g in got.values()) or time.monotonic() > deadline:
                break
            time.sleep(2)
    counts_current_after = round(time.monotonic() - t_counts, 1)
    # Records not yet consumed by the workers' group when the counts were last read: with wrong counts, lag means
    # the workers were still behind, no lag means state was lost.
    lag = group_lag(rig.broker.bootstrap, rig.env["BINDWATCH_APP_ID"], [topic, rig.env["BINDWATCH_BY_DID_TOPIC"]])
    over = sum(max(0, g - w) for w, g in got.values())
    under = sum(max(0, w - g) for w, g in got.values())

    alert_recs = consume(rig.broker.bootstrap, rig.env["BINDWATCH_ALERTS_TOPIC"], timeout=4)
    alerts = [decode(Alert, r.payload) for r in alert_recs]
    by_id = {a.alertId: a for a in alerts}
    got_firing: Counter[tuple[str, str, str]] = Counter(
        (a.fingerprint, a.status.value, a.severity.value) for a in by_id.values() if a.status.value == "firing"
    )
    first_firing = Counter(
        a.fingerprint for a in by_id.values() if a.status.value == "firing" and a.severity.value == "warning"
    )
    s = ledger.summary()
    return {
        "scenario": name,
        "rate": PROFILE["rate"],
        "load_seconds": PROFILE["load"],
        "offered": s["offered"],
        "accepted": s["accepted"],
        "retried": s["retried"],
        "given_up": s["given_up"],
        "redelivered": s["redelivered"],
        "statuses": s["statuses"],
        "lost": len(lost),
        "double_counted": over,
        "under_counted": under,
        "alerts_expected": sum(want_firing.values()),
        "alerts_produced": sum(got_firing.values()),
        "alerts_missing": sum((want_firing - got_firing).values()),
        "alerts_unexpected": sum((got_firing - want_firing).values()),
        "duplicate_firing": sum(1 for n in first_firing.values() if n > 1),
        "resent_alert_records": len(alerts) - len(by_id),
        "counts_current_after_s": counts_current_after,
        "lag_at_check": lag,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def group_lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """End offsets minus the group's committed offsets, summed over ``topics``' partitions."""

    async def lag() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(group)
            described = await admin.describe_topics(topics)
            tps = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
            ends = await consumer.end_offsets(tps)
            return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(asyncio.wait_for(lag(), 60))


def test_steady_load_without_faults(rig: Rig) -> None:
    run_scenario(rig, "no fault (baseline)", lambda: None, seed=1)


def test_broker_stopped_and_restarted(rig: Rig) -> None:
    def fault() -> None:
        rig.broker.stop()
        time.sleep(PROFILE["outage"])
        rig.broker.start()

    run_scenario(rig, f"broker stopped {PROFILE['outage']}s", fault, seed=2)


def test_broker_paused_longer_than_the_gateway_bound(rig: Rig) -> None:
    def fault() -> None:
        rig.broker.pause()
        time.sleep(PROFILE["pause"])
        rig.broker.resume()

    run_scenario(rig, f"broker paused (SIGSTOP) {PROFILE['pause']}s > {PROFILE['bound']}s bound", fault, seed=3)


def test_gateway_killed_and_restarted(rig: Rig) -> None:
    def fault() -> None:
        rig.gateway.kill()
        time.sleep(1)
        rig.gateway.start()

    run_scenario(rig, "gateway SIGKILL + restart", fault, seed=4)


def test_worker_killed_and_restarted(rig: Rig) -> None:
    def fault() -> None:
        rig.worker.kill()
        rig.worker.start(timeout=120)

    run_scenario(rig, "worker SIGKILL + restart", fault, seed=5)


def test_second_worker_joins_and_leaves(rig: Rig) -> None:
    second = procs.worker(rig.env, rig.logdir, "w2")

    def fault() -> None:
        second.start(timeout=120)
        time.sleep(PROFILE["load"] / 3)
        second.stop()

    try:
        run_scenario(rig, "second worker joins, then leaves (rebalances)", fault, seed=6)
    finally:
        second.stop()


def test_nxcloud_delivers_pushes_twice_and_later(rig: Rig) -> None:
    run_scenario(
        rig,
        f"30% of pushes delivered again {PROFILE['dup_delay']}s later",
        lambda: None,
        seed=7,
        duplicate_share=0.3,
        duplicate_delay=float(PROFILE["dup_delay"]),
    )
