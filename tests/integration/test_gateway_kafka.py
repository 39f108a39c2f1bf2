"""The gateway against a real broker: what it stores, and what it answers while the broker is down."""

from __future__ import annotations

import base64
import copy
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schemas import BindingFailureEvent, DeadLetterRecord, decode
from schemas.push import DEMO_PUSH
from tests.support import procs
from tests.support.broker import LocalBroker
from tests.support.kafka import Names, consume, setup_topics

pytestmark = pytest.mark.integration
TOKEN = "gw-int-token"


def test_demo_push_lands_on_the_topic_exactly_as_normalised(bootstrap: str, logdir: Path) -> None:
    names = Names.new("gw")
    setup_topics(bootstrap, names)
    gw = procs.gateway({**names.env(bootstrap), "BINDWATCH_PUSH_TOKENS": TOKEN}, logdir).start()
    try:
        url = procs.url(gw, "/v1/nxcloud/binding-failures")
        r = httpx.post(url, params={"token": TOKEN}, json=DEMO_PUSH, timeout=10)
        assert r.status_code == 200, r.text
        bad = b'{"code":10013,"requestId":"x1","data":{"requestParams":{"caller":"1"}}}\xff'
        r2 = httpx.post(
            url,
            headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
            content=bad,
            timeout=10,
        )
        assert r2.status_code == 200 and r2.json()["status"] == "dead-lettered", r2.text
        assert httpx.post(url, params={"token": "wrong"}, json=DEMO_PUSH, timeout=10).status_code == 401
    finally:
        gw.stop()
    [rec] = consume(bootstrap, f"{names.tag}.events", lambda r: len(r) >= 1)
    ev = decode(BindingFailureEvent, rec.payload)
    expected = {
        "schemaVersion": 1,
        "requestId": "1640920940635361280",
        "code": 10013,
        "msg": "binding not exist",
        "action": "queryAXB",
        "caller": "852121199",
        "callerRaw": "852121199",
        "did": "85299999999",
        "didRaw": "85299999999",
        "occurredAt": "2023-03-29T03:36:53Z",
        "occurrenceTimeRaw": "2023-03-29 11:36:53",
        "occurrenceTimeZone": "+08:00",
        "extra": {},
    }
    got = ev.model_dump(mode="json")
    assert got.pop("receivedAt").endswith("Z")
    assert got == expected
    assert rec.key == b"852121199"
    # the 2023 demo push is older than the topic's retention: stamped a day before receipt (gateway/app.py)
    received_ms = ev.receivedAt.timestamp() * 1000
    assert received_ms - 24.1 * 3600_000 < rec.timestamp < received_ms - 23.9 * 3600_000
    assert rec.headers == {
        "schema": b"bindwatch.BindingFailureEvent/1",
        "content-type": b"application/json",
        "requestId": b"1640920940635361280",
    }
    [dl] = consume(bootstrap, f"{names.tag}.dlq", lambda r: len(r) >= 1)
    record = decode(DeadLetterRecord, dl.payload)
    assert base64.b64decode(record.bodyBase64) == bad
    assert record.reasons[0].loc == "body" and record.sourceAddress == "127.0.0.1"
    # only the one event and the one dead letter were written: the 401 wrote nothing
    assert len(consume(bootstrap, f"{names.tag}.events", timeout=2)) == 1


@pytest.fixture
def private_broker() -> Iterator[LocalBroker]:
    """A broker of this test's own, which it may stop and start (the shared one must stay up)."""
    port = int(os.environ.get("BINDWATCH_TEST_FAULT_KAFKA_PORT", "19292"))
    b = LocalBroker(port, port + 1)
    b.wipe()
    b.start()
    try:
        yield b
    finally:
        b.stop()
        b.wipe()


def push(rid: str) -> dict[str, object]:
    body = copy.deepcopy(DEMO_PUSH)
    body["requestId"] = rid
    return body


def test_broker_down_means_503_within_the_bound_then_recovery_without_restart(
    private_broker: LocalBroker, logdir: Path
) -> None:
    bootstrap = private_broker.bootstrap
    names = Names.new("down")
    setup_topics(bootstrap, names)
    bound = 2.0
    gw = procs.gateway(
        {**names.env(bootstrap), "BINDWATCH_PUSH_TOKENS": TOKEN, "BINDWATCH_PRODUCE_TIMEOUT_SECONDS": str(bound)},
        logdir,
    ).start()
    url = procs.url(gw, "/v1/nxcloud/binding-failures")
    accepted: list[str] = []
    try:
        r = httpx.post(url, params={"token": TOKEN}, json=push("before-1"), timeout=10)
        assert r.status_code == 200
        accepted.append("before-1")

        private_broker.stop()
        for i in range(4):
            t0 = time.monotonic()
            r = httpx.post(url, params={"token": TOKEN}, json=push(f"down-{i}"), timeout=30)
            elapsed = time.monotonic() - t0
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "60" and r.json()["error"] == "kafka_unavailable"
            assert elapsed <= bound + 1.5, f"answered after {elapsed:.2f}s, bound is {bound}s"
        assert httpx.get(procs.url(gw, "/readyz"), timeout=5).status_code == 503

        private_broker.start()
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline:  # what NXCLOUD does: retry until 200
            status = httpx.post(url, params={"token": TOKEN}, json=push("after-1"), timeout=30).status_code
            if status == 200:
                accepted.append("after-1")
                break
            assert status == 503
            time.sleep(1)
        assert status == 200, "the gateway did not recover without a restart"
        r = httpx.post(url, params={"token": TOKEN}, json=push("after-2"), timeout=30)
        assert r.status_code == 200
        accepted.append("after-2")
        assert httpx.get(procs.url(gw, "/readyz"), timeout=5).status_code == 200
        metrics = httpx.get(procs.url(gw, "/metrics"), timeout=5).text
        assert 'bindwatch_gateway_requests_total{outcome="unavailable"}' in metrics
    finally:
        gw.stop()
    records = consume(
        bootstrap,
        f"{names.tag}.events",
        lambda recs: set(accepted) <= {r.headers["requestId"].decode() for r in recs},
        timeout=30,
    )
    on_topic = {r.headers["requestId"].decode() for r in records}
    assert set(accepted) <= on_topic, f"acknowledged but missing: {set(accepted) - on_topic}"
