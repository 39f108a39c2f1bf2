"""The stream worker as a real process on a real broker: scenario, crash and restart, two workers."""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from schemas import Alert, BindingFailureEvent, decode
from stream.bundle import partition_for
from stream.config import StreamSettings
from stream.counting import counts_key, is_reserved
from tests.support import procs
from tests.support.events import event, expected, records
from tests.support.kafka import Names, Rec, consume, produce, setup_topics

pytestmark = pytest.mark.integration
S = timedelta(seconds=1)
M = timedelta(minutes=1)
FAST = {
    "BINDWATCH_TICK_SECONDS": "0.5",
    "BINDWATCH_RESOLVE_AFTER_SECONDS": "8",
    "BINDWATCH_COMMIT_INTERVAL_SECONDS": "0.5",
}


def scenario() -> list[BindingFailureEvent]:
    ev: list[BindingFailureEvent] = []
    # A: a burst across a clock boundary (11:09:58, 11:09:59, 11:10:01), then NXCLOUD retries of the same pushes
    burst = [
        event(f"a{i}", "8613800000001", "85290000001", at)
        for i, at in enumerate((9 * M + 58 * S, 9 * M + 59 * S, 10 * M + S))
    ]
    ev += burst + burst[:2]
    # B: late and out-of-order; only the last arrival completes 3 within 10 minutes (11:05, 11:12, 11:14)
    ev += [event(f"b{i}", "8613800000002", "85290000002", at) for i, at in enumerate((20 * M, 5 * M, 12 * M, 14 * M))]
    # C: a scanner, 6 distinct DIDs in 6 minutes
    ev += [event(f"c{i}", "8613800000003", f"8529100000{i}", i * M) for i in range(6)]
    # D: a storm on one DID from 60 different callers within 10 minutes (crosses 10x the threshold)
    ev += [event(f"d{i}", f"86139000{i:05d}", "85290000009", i * 5 * S) for i in range(60)]
    # E: two failures only, and a success code that must not count
    ev += [
        event("e1", "8613800000005", "85290000005", M),
        event("e2", "8613800000005", "85290000005", 2 * M),
        event("e3", "8613800000005", "85290000005", 3 * M, code=0),
    ]
    return ev


def records_now(events: list[BindingFailureEvent]) -> list[tuple[bytes | None, bytes, int | None]]:
    """The events as records stamped with the producer's clock, not their occurrence time.

    The inputs occur in January 2026 (``tests.support.events.BASE``): stamped with that time, they are
    older than the events topic's 7-day retention, and the broker deletes them at its next retention check
    (every 5 minutes), whichever test is running then. That is what made the SIGKILL test fall short of its
    counts once: the restarted worker found its committed offsets out of range and nothing left to read.
    """
    return [(key, value, None) for key, value, _ts in records(events)]


def metric(worker: procs.Service, name: str, labels: str) -> float:
    text = httpx.get(procs.url(worker, "/metrics"), timeout=5).text
    m = re.search(rf"^{name}{{{re.escape(labels)}}} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def wait_processed(worker: procs.Service, stage: str, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        total = sum(
            metric(worker, "bindwatch_stream_events_total", f'result="{r}",stage="{stage}"')
            for r in ("new", "duplicate", "too_late", "ignored")
        )
        if total >= n:
            return
        time.sleep(0.3)
    raise AssertionError(f"{stage} processed fewer than {n} events in {timeout}s:\n{worker.log_tail()}")


def alert_keys(recs: list[Rec]) -> Counter[tuple[str, str, str]]:
    alerts = [decode(Alert, r.payload) for r in recs]
    unique = {a.alertId: a for a in alerts}  # at-least-once: a re-sent emission has the same alertId
    return Counter((a.fingerprint, a.status.value, a.severity.value) for a in unique.values())


@pytest.mark.parametrize("direct_input", ["true", "false"], ids=["direct-input", "stream-input"])
def test_scenario_yields_exactly_the_expected_alerts(bootstrap: str, logdir: Path, direct_input: str) -> None:
    """Both input paths (``stream.intake``, and the agents' streams kept as the fallback) give the same alerts."""
    names = Names.new("scn")
    s = setup_topics(bootstrap, names)
    policy = StreamSettings(resolve_after_seconds=8).policy()
    events = scenario()
    want, callers, dids = expected([e for e in events if e.code != 0], policy)
    env = {**names.env(bootstrap), **FAST, "BINDWATCH_STORE": "memory://", "BINDWATCH_DIRECT_INPUT": direct_input}
    wk = procs.worker(env, logdir, f"worker-{direct_input}").start(timeout=120)
    try:
        produce(bootstrap, s.events_topic, records_now(events))
        got_firing: Counter[tuple[str, str, str]] = Counter()
        n_want = sum(want.values())
        recs = consume(bootstrap, s.alerts_topic, lambda r: len(alert_keys(r)) >= n_want, timeout=60)
        got_firing = alert_keys(recs)
        assert got_firing == want, f"missing {want - got_firing}, unexpected {got_firing - want}"
        assert sum(1 for k in want if k[1] == "resolved") == sum(
            1 for k in want if k[1] == "firing" and k[2] == "warning"
        )
        assert {k[0].split(":")[0] for k in want} == {"caller_repeat", "pair_repeat", "caller_scan", "did_hot"}
        # no more than the expected alerts arrive afterwards
        assert alert_keys(consume(bootstrap, s.alerts_topic, timeout=3)) == want
        assert metric(wk, "bindwatch_stream_events_total", 'result="duplicate",stage="caller"') == 2
        assert metric(wk, "bindwatch_stream_events_total", 'result="ignored",stage="caller"') == 1
        for caller, n in callers.items():
            r = httpx.get(procs.url(wk, f"/v1/callers/{caller}"), timeout=5)
            assert r.status_code == 200 and r.json()["retainedFailures"] == n, (caller, r.text)
        r = httpx.get(procs.url(wk, "/v1/dids/85290000009"), timeout=5).json()
        assert r["retainedFailures"] == dids["85290000009"] == 60
    finally:
        wk.stop()


def random_input(n_distinct: int, seed: int) -> list[BindingFailureEvent]:
    rnd = random.Random(seed)
    callers = [f"86137{i:06d}" for i in range(100)]
    dids = [f"85292{i:06d}" for i in range(60)]
    base = [
        event(f"rid-{seed}-{i}", rnd.choice(callers), rnd.choice(dids), timedelta(seconds=rnd.randint(0, 1800)))
        for i in range(n_distinct)
    ]
    dups = rnd.sample(base, n_distinct // 5)  # NXCLOUD retries of some pushes
    out = base + dups
    rnd.shuffle(out)
    return out


def check_counts(worker: procs.Service, callers: dict[str, int], dids: dict[str, int], timeout: float = 60) -> None:
    """Poll until every count equals the distinct input. A worker draining a backlog after a restart may
    need a while (the bound is generous); the failure says whether counts were still moving, which tells a
    slow drain from a lost update."""
    deadline = time.monotonic() + timeout
    wrong: dict[str, tuple[int, object]] = {}
    previous: dict[str, tuple[int, object]] = {}
    while time.monotonic() < deadline:
        previous, wrong = wrong, {}
        for path, want in [
            *((f"/v1/callers/{c}", n) for c, n in callers.items()),
            *((f"/v1/dids/{d}", n) for d, n in dids.items()),
        ]:
            r = httpx.get(procs.url(worker, path), timeout=10)
            got = r.json().get("retainedFailures") if r.status_code == 200 else r.status_code
            if got != want:
                wrong[path] = (want, got)
        if not wrong:
            return
        time.sleep(2)
    moving = "still changing at the deadline" if wrong != previous else "not changing any more"
    raise AssertionError(
        f"counts differ from the distinct input ({moving}; want, got): {dict(list(wrong.items())[:10])}"
    )


def test_sigkill_mid_stream_and_restart_keeps_counts_exact(bootstrap: str, logdir: Path) -> None:
    names = Names.new("kill")
    s = setup_topics(bootstrap, names)
    events = random_input(5000, seed=7)
    want, callers, dids = expected(events, StreamSettings().policy())
    env = {
        **names.env(bootstrap),
        "BINDWATCH_STORE": "rocksdb://",
        "BINDWATCH_COMMIT_INTERVAL_SECONDS": "1",
        "BINDWATCH_GROUP_INSTANCE_ID": "kill-test-worker-0",  # rejoin at once after the restart
    }
    wk = procs.worker(env, logdir)
    wk.start(timeout=120)
    try:
        produce(bootstrap, s.events_topic, records_now(events))
        wait_processed(wk, "caller", 1500)
        wk.kill()  # SIGKILL: no flush, no commit, no shutdown hook
        wk.start(timeout=120)
        check_counts(wk, callers, dids, timeout=240)
        recs = consume(bootstrap, s.alerts_topic, lambda r: alert_keys(r) == want, timeout=30)
        got = alert_keys(recs)
        firing = {k: v for k, v in got.items() if k[1] == "firing"}
        assert firing == {k: v for k, v in want.items() if k[1] == "firing"}, "alerts differ after the crash"
    finally:
        wk.stop()
    assert "Traceback" not in wk.log_text().split("===== start #2")[-1], wk.log_tail()


def test_two_workers_split_partitions_and_match_one_worker(bootstrap: str, logdir: Path) -> None:
    events = random_input(1500, seed=11)
    want, callers, dids = expected(events, StreamSettings().policy())
    names = Names.new("two")
    s = setup_topics(bootstrap, names)
    env = {**names.env(bootstrap), "BINDWATCH_STORE": "memory://"}
    w1 = procs.worker(env, logdir, "w1")
    w2 = procs.worker(env, logdir, "w2")
    try:
        w1.start(timeout=120)
        w2.start(timeout=120)
        w1.wait_ready(60)  # w1 rebalanced when w2 joined
        produce(bootstrap, s.events_topic, records_now(events))
        check_counts(w1, callers, dids, timeout=240)  # asked through w1 only: keys w2 owns are routed to it
        recs = consume(bootstrap, s.alerts_topic, lambda r: alert_keys(r) == want, timeout=30)
        firing = {k: v for k, v in alert_keys(recs).items() if k[1] == "firing"}
        assert firing == {k: v for k, v in want.items() if k[1] == "firing"}
        n1 = metric(w1, "bindwatch_stream_events_total", 'result="new",stage="caller"')
        n2 = metric(w2, "bindwatch_stream_events_total", 'result="new",stage="caller"')
        assert n1 > 0 and n2 > 0, f"both workers must take part (w1={n1}, w2={n2})"
        assert n1 + n2 == sum(callers.values())
        check_changelog_partitions(bootstrap, s, {"callers": len(callers), "dids": len(dids)})
    finally:
        w1.stop()
        w2.stop()


def check_changelog_partitions(bootstrap: str, s: StreamSettings, subjects: dict[str, int]) -> None:
    """Every changelog record sits in the partition of its key's hash: the partition queries are routed by
    and a restore reads. The caller stage writes a batch that spans partitions, so it has to put each write
    in its subject's partition itself (``stream.changelog.BatchedTable`` via ``stream.compat.use_event``); a slip
    would show here. The outage counts of partition p (key ``~counts:p``, ``stream.counting``) must sit in p."""
    for table, n in subjects.items():
        topic = f"{s.app_id}-{table}-changelog"

        def all_keys(recs: list[Rec], n: int = n) -> bool:  # every subject, and each partition's counts key
            return len({x.key for x in recs}) >= n + s.partitions

        recs = consume(bootstrap, topic, all_keys, timeout=30)
        counts = [r for r in recs if r.key is not None and is_reserved(r.key.decode())]
        recs = [r for r in recs if r not in counts]
        assert len({r.key for r in recs}) == n, f"{topic}: {len({r.key for r in recs})} keys, expected {n}"
        wrong = [r for r in recs if r.key is None or r.partition != partition_for(r.key.decode(), s.partitions)]
        assert not wrong, f"{topic}: {len(wrong)} of {len(recs)} records in another partition than their key's"
        placed = {(r.key, r.partition) for r in counts}
        assert placed == {(counts_key(p).encode(), p) for p in range(s.partitions)}, f"{topic}: {placed}"
