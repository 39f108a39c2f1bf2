"""binding_outage and the overview with two workers as real processes on a real broker."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from schemas import Alert, BindingFailureEvent, Overview, decode
from schemas.alerts import AlertStatus, Rule
from tests.support import procs
from tests.support.events import event, records
from tests.support.kafka import Names, Rec, consume, produce, setup_topics

pytestmark = pytest.mark.integration
OUTAGE_ENV = {
    "BINDWATCH_OUTAGE_PUBLISH_SECONDS": "1",
    "BINDWATCH_OVERVIEW_PUBLISH_SECONDS": "1",
    "BINDWATCH_OUTAGE_RESOLVE_SECONDS": "10",
    "BINDWATCH_COMMIT_INTERVAL_SECONDS": "0.5",
    "BINDWATCH_TICK_SECONDS": "0.5",
    "BINDWATCH_STORE": "memory://",
    "BINDWATCH_SESSION_TIMEOUT_SECONDS": "6",
}


def unique_alerts(recs: list[Rec]) -> list[Alert]:
    return list({a.alertId: a for a in (decode(Alert, r.value or b"") for r in recs)}.values())


def outages(recs: list[Rec], status: AlertStatus) -> list[Alert]:
    return [a for a in unique_alerts(recs) if a.rule is Rule.BINDING_OUTAGE and a.status is status]


def produce_now(bootstrap: str, topic: str, events: list[BindingFailureEvent]) -> None:
    # stamped with the producer's clock: the broker's retention check must not delete the input (test_stream.py)
    produce(bootstrap, topic, [(k, v, None) for k, v, _ts in records(events)])


def test_an_outage_fires_once_marks_per_number_alerts_is_counted_exactly_across_a_sigkill_and_resolves(
    bootstrap: str, logdir: Path
) -> None:
    names = Names.new("out")
    s = setup_topics(bootstrap, names)
    env = {**names.env(bootstrap), **OUTAGE_ENV}
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0)
    # a quiet hour (read as a backlog: the partitions' knowledge starts 65 minutes back, no warm-up wait):
    # 4 failures a minute from 4 of 20 callers, until 4 minutes ago
    quiet = [
        event(f"q{i}-{j}", f"8521000{(4 * i + j) % 20:02d}", f"8529000{(4 * i + j) % 20:02d}", at)
        for i in range(62)
        for j in range(4)
        if (at := start - timedelta(minutes=65 - i) + timedelta(seconds=15 * j))
    ]
    # the outage, 2 minutes ago (so that it leaves the 5-minute window within 3 minutes): 300 callers, 40 DIDs
    burst = [
        event(f"b{c}", f"8526{c:05d}", f"8527{c % 40:05d}", start - timedelta(minutes=2) + timedelta(seconds=c / 10))
        for c in range(300)
    ]
    retries = quiet[:20] + burst[:10]
    sent = quiet + burst
    workers = [procs.worker(env, logdir, f"worker-{n}").start(timeout=120) for n in ("a", "b")]
    try:
        produce_now(bootstrap, s.events_topic, sent + retries)
        time.sleep(1)
        workers[1].kill()  # SIGKILL during the burst: no flush, no commit; then back with its state from Kafka
        workers[1].start(timeout=120)
        recs = consume(bootstrap, s.alerts_topic, lambda r: bool(outages(r, AlertStatus.FIRING)), timeout=90)
        [fired] = outages(recs, AlertStatus.FIRING)
        # the floor, since the quiet hour's 5-minute totals are 20 (fewer while its backlog is still being read)
        assert (fired.caller, fired.did, fired.threshold) == (None, None, 200)
        assert fired.baseline is not None and fired.baseline <= 20.0
        # it fires at the first judgement past the threshold, however far the burst's counting has got
        assert fired.count >= 200 and fired.distinctCallers is not None and fired.distinctCallers >= 50

        # per-number alerts emitted more than 10 s after the outage fired carry its fingerprint
        time.sleep(11)
        late = [event(f"late{i}", "852199990001", "852988880001", datetime.now(UTC)) for i in range(3)]
        produce_now(bootstrap, s.events_topic, late)

        def has_late(r: list[Rec]) -> bool:
            return any(a.caller == "852199990001" for a in unique_alerts(r))

        recs = consume(bootstrap, s.alerts_topic, has_late, timeout=60)
        after = [
            a
            for a in unique_alerts(recs)
            if a.rule is not Rule.BINDING_OUTAGE and a.emittedAt > fired.emittedAt + timedelta(seconds=10)
        ]
        assert after and all(a.outageFingerprint == fired.fingerprint for a in after), after

        # the per-number alerts that fired in the outage's window before it was detected joined it: the latest
        # record of each carries its fingerprint (the burst's 40 did_hot among them), so Alertmanager mutes them
        latest: dict[str, Alert] = {}
        for a in sorted(unique_alerts(recs), key=lambda a: (a.emittedAt, a.alertId)):
            if a.rule is not Rule.BINDING_OUTAGE:
                latest[a.fingerprint] = a
        window_start = fired.emittedAt.replace(second=0, microsecond=0) - timedelta(minutes=4)
        in_window = [a for a in latest.values() if a.status is AlertStatus.FIRING and a.firstOccurredAt >= window_start]
        assert len({a.did for a in in_window if a.rule is Rule.DID_HOT}) == 40, in_window
        assert [a for a in in_window if a.outageFingerprint != fired.fingerprint] == []

        # the overview, from either worker (routed to the aggregator), counts exactly what was sent
        def totals(doc: Overview) -> tuple[int, int]:
            shown = {m.minute for m in doc.minutes}
            in_view = [e for e in sent + late if e.occurredAt.replace(second=0, microsecond=0) in shown]
            dups = [e for e in retries if e.occurredAt.replace(second=0, microsecond=0) in shown]
            return len(in_view), len(dups)

        deadline = time.monotonic() + 60
        while True:
            docs = [decode(Overview, httpx.get(procs.url(w, "/v1/overview"), timeout=10).content) for w in workers]
            got = [(sum(m.newFailures for m in d.minutes), sum(m.duplicates for m in d.minutes)) for d in docs]
            if all(g == totals(d) for g, d in zip(got, docs, strict=True)) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert got == [totals(d) for d in docs], got
        assert all(d.outage.fingerprint in (fired.fingerprint, None) for d in docs)
        published = consume(bootstrap, s.overview_topic, lambda r: len(r) > 0, timeout=30)
        assert {r.key for r in published} == {b"global"}
        decode(Overview, published[-1].value or b"")

        # calm: the burst leaves the 5-minute window, and 10 s later the outage resolves, once
        recs = consume(bootstrap, s.alerts_topic, lambda r: bool(outages(r, AlertStatus.RESOLVED)), timeout=240)
        [resolved] = outages(recs, AlertStatus.RESOLVED)
        assert resolved.fingerprint == fired.fingerprint
        assert len(outages(recs, AlertStatus.FIRING)) == 1
    finally:
        for w in workers:
            w.stop()
