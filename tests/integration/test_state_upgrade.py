"""A worker of this release restores table changelogs written in the format of the release before it
(version 0, commit 4244c67) and counts on exactly.

How the old changelog is made: the first half of the input is counted by the pure rules and each
subject's state is written to the changelog topics exactly as the old release stored it
(``tests/fixtures/state/legacy_v0.dump_v0``, checked byte for byte against golden values that release
generated, in ``tests/unit/test_state_format.py``), at the partition of its key, where that release's
worker put it. This leaves out the old worker process itself: it would need the old code at test time
(a git checkout), and what the new worker reads on restore is the changelog, which is what is written.
Then the new worker starts with an empty state directory, so it restores everything from the changelog,
the second half of the input (with retries of first-half pushes) is sent, and the counts and alerts must
be exactly those of one uninterrupted run of the rules over the whole input.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from schemas import BindingFailureEvent
from stream import rules, state
from stream.bundle import partition_for
from stream.compat import changelog_topic_name
from stream.counting import is_reserved
from stream.rules import Failure, Kind, Policy, SubjectState
from tests.fixtures.state.legacy_v0 import dump_v0
from tests.integration.test_stream import alert_keys, check_counts, records_now
from tests.support import procs
from tests.support.events import event
from tests.support.kafka import Names, consume, produce, setup_topics

pytestmark = pytest.mark.integration

Key = tuple[str, str, str]  # (fingerprint, status, severity)


def the_input(seed: int) -> tuple[list[BindingFailureEvent], list[BindingFailureEvent]]:
    """Two halves over the same callers and DIDs; the second re-sends a fifth of the first (retries)."""
    rnd = random.Random(seed)
    callers = [f"86137{i:06d}" for i in range(60)]
    dids = [f"85292{i:06d}" for i in range(40)]

    def some(n: int, tag: str) -> list[BindingFailureEvent]:
        return [
            event(f"up-{tag}-{i}", rnd.choice(callers), rnd.choice(dids), timedelta(seconds=rnd.randint(0, 1800)))
            for i in range(n)
        ]

    first = some(500, "a")
    second = some(500, "b") + rnd.sample(first, 100)
    rnd.shuffle(second)
    return first, second


def count(
    states: dict[tuple[Kind, str], SubjectState], events: list[BindingFailureEvent], policy: Policy, now: int
) -> Counter[Key]:
    """Apply ``events`` to ``states`` with the pure rules; the firing alerts they emit."""
    out: Counter[Key] = Counter()
    for e in events:
        ts = int(e.occurredAt.timestamp() * 1000)
        for kind, subject, other in ((Kind.CALLER, e.caller, e.did), (Kind.DID, e.did, e.caller)):
            st = states.setdefault((kind, subject), SubjectState(kind, subject))
            for a in rules.apply(st, Failure(ts, e.requestId, other), now, policy).alerts:
                out[(a.fingerprint, a.status.value, a.severity.value)] += 1
    return out


async def _write_changelogs(
    bootstrap: str, app_id: str, partitions: int, values: dict[tuple[Kind, str], bytes]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await asyncio.wait_for(producer.start(), 30)
    try:
        futs = [
            await producer.send(
                changelog_topic_name(app_id, "callers" if kind is Kind.CALLER else "dids"),
                value,
                key=subject.encode(),
                partition=partition_for(subject, partitions),
            )
            for (kind, subject), value in values.items()
        ]
        await asyncio.wait_for(asyncio.gather(*futs), 60)
    finally:
        await asyncio.wait_for(producer.stop(), 30)


def test_worker_restores_a_v0_changelog_and_counts_on_exactly(bootstrap: str, logdir: Path) -> None:
    names = Names.new("upg")
    s = setup_topics(bootstrap, names)
    policy = Policy()  # the worker's defaults
    first, second = the_input(seed=5)
    # The old release's state after the first half. Its wall clock is now, so nothing resolves in the test.
    states: dict[tuple[Kind, str], SubjectState] = {}
    fired_before = count(states, first, policy, now=int(time.time() * 1000))
    old_values = {k: dump_v0(st) for k, st in states.items()}
    assert {state.version_of(v) for v in old_values.values()} == {0}
    firing_subject = next(k for k, st in states.items() if k[0] is Kind.CALLER and st.is_firing())
    asyncio.run(_write_changelogs(bootstrap, s.app_id, s.partitions, old_values))
    # What one uninterrupted run makes of the rest.
    fired_after = count(states, second, policy, now=int(time.time() * 1000))
    callers = {subj: len(st.events) for (k, subj), st in states.items() if k is Kind.CALLER}
    dids = {subj: len(st.events) for (k, subj), st in states.items() if k is Kind.DID}
    assert fired_before and fired_after, "the input must fire alerts before and after the upgrade"

    wk = procs.worker({**names.env(bootstrap), "BINDWATCH_STORE": "rocksdb://"}, logdir)
    wk.start(timeout=120)  # ready only once the tables are restored
    try:
        body = httpx.get(procs.url(wk, f"/v1/callers/{firing_subject[1]}"), timeout=10).json()
        restored = states[firing_subject]
        assert {a["fingerprint"] for a in body["activeAlerts"]} == {
            rules.fingerprint(a.rule, restored.subject, a.other) for a in restored.alerts.values() if a.firing
        }, body
        produce(bootstrap, s.events_topic, records_now(second))
        check_counts(wk, callers, dids, timeout=240)
        want = {k: v for k, v in fired_after.items() if k[1] == "firing"}
        recs = consume(bootstrap, s.alerts_topic, lambda r: alert_keys(r) == want, timeout=60)
        got = {k: v for k, v in alert_keys(recs).items() if k[1] == "firing"}
        # Exactly the alerts the second half raises: none of those the old release already sent fires again.
        assert got == want, f"missing {Counter(want) - Counter(got)}, unexpected {Counter(got) - Counter(want)}"
    finally:
        wk.stop()
    log = wk.log_text()
    assert "Traceback" not in log and "StateFormatError" not in log, wk.log_tail()
    # Both formats were on the changelog: the old values restored, the new worker's writes in the current one.
    topic = changelog_topic_name(s.app_id, "callers")
    versions = Counter(
        state.version_of(r.value)
        for r in consume(bootstrap, topic, timeout=10)
        if r.value and not (r.key is not None and is_reserved(r.key.decode()))  # ~counts: the outage counts
    )
    assert versions[0] == len([k for k in old_values if k[0] is Kind.CALLER]) and versions[state.VERSION] > 0
