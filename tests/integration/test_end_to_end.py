"""The walking skeleton, for real: gateway and worker as processes, a real broker, an ordinary consumer."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import httpx
import pytest

from schemas import Alert, AlertStatus, Rule, decode
from schemas.push import DEMO_PUSH
from stream import native
from tests.support import procs
from tests.support.kafka import Names, Rec, consume, setup_topics

pytestmark = pytest.mark.integration
TOKEN = "e2e-secret-token-1"


def push(request_id: str, minute: int) -> dict[str, object]:
    body = copy.deepcopy(DEMO_PUSH)
    body["requestId"] = request_id
    body["data"]["occurrenceTime"] = f"2023-03-29 11:3{minute}:53"
    return body


def test_three_failures_of_one_caller_make_one_alert(bootstrap: str, logdir: Path) -> None:
    names = Names.new("e2e")
    setup_topics(bootstrap, names, partitions=4)
    env = names.env(bootstrap, partitions=4)
    gw = procs.gateway({**env, "BINDWATCH_PUSH_TOKENS": TOKEN}, logdir)
    wk = procs.worker({**env, "BINDWATCH_STORE": "rocksdb://"}, logdir)
    try:
        gw.start()
        wk.start(timeout=120)
        url = procs.url(gw, f"/v1/nxcloud/binding-failures?token={TOKEN}")
        for i, rid in enumerate(["1640920940635361280", "1640920940635361281", "1640920940635361282"]):
            r = httpx.post(url, json=push(rid, i), timeout=10)
            assert r.status_code == 200, r.text
            assert r.json() == {"status": "accepted", "requestId": rid}

        def has_pair_alert(recs: list[Rec]) -> bool:
            return any(decode(Alert, r.payload).rule is Rule.PAIR_REPEAT for r in recs)

        records = consume(bootstrap, f"{names.tag}.alerts", has_pair_alert, timeout=60)
        # Let a possible duplicate arrive before counting.
        records = consume(bootstrap, f"{names.tag}.alerts", lambda r: False, timeout=3)
        alerts = [decode(Alert, r.payload) for r in records]
        # One caller retrying one DID is one problem: the pair's (caller_repeat is explained by it).
        assert len(alerts) == 1, alerts
        a = alerts[0]
        assert (a.rule, a.caller, a.did, a.status, a.count, a.threshold, a.windowSeconds) == (
            Rule.PAIR_REPEAT,
            "852121199",
            "85299999999",
            AlertStatus.FIRING,
            3,
            3,
            1800,
        )
        assert sorted(a.sampleRequestIds) == ["1640920940635361280", "1640920940635361281", "1640920940635361282"]
        assert (
            records[[decode(Alert, r.payload).rule for r in records].index(Rule.PAIR_REPEAT)].key
            == a.fingerprint.encode()
        )

        events = consume(bootstrap, f"{names.tag}.events", lambda r: len(r) >= 3, timeout=20)
        assert len(events) == 3 and {e.key for e in events} == {b"852121199"}

        q = httpx.get(procs.url(wk, "/v1/callers/+852121199"), timeout=10)
        assert q.status_code == 200, q.text
        body = q.json()
        assert body["retainedFailures"] == 3
        assert body["windows"]["caller_repeat"]["count"] == 3
        assert body["windows"]["caller_repeat"]["explainedBy"] == [a.fingerprint]
        assert {x["rule"] for x in body["activeAlerts"]} == {"pair_repeat"}
        assert httpx.get(procs.url(wk, "/v1/dids/85299999999"), timeout=10).json()["retainedFailures"] == 3
        assert httpx.get(procs.url(wk, "/v1/callers/999000111"), timeout=10).status_code == 404
        assert httpx.get(procs.url(wk, "/v1/dids/999000111"), timeout=10).status_code == 404
        # The worker says which stream core it runs: compiled wherever the build is current (the test command
        # requires it), and the alert above came from that core.
        compiled = native.built_status().compiled and os.environ.get("BINDWATCH_NATIVE", "auto") != "off"
        worker_metrics = httpx.get(procs.url(wk, "/metrics"), timeout=10).text
        assert f"bindwatch_stream_compiled_core {1.0 if compiled else 0.0}" in worker_metrics
    finally:
        gw.stop()
        wk.stop()
    gw_log = gw.log_text()
    assert TOKEN not in gw_log and TOKEN not in wk.log_text()
    assert ("stream core: compiled" if compiled else "stream core: Python source") in wk.log_text()
    assert "threshold (1000000, 10, 10)" in wk.log_text()  # BINDWATCH_GC_THRESHOLD's default, set at start
    assert "consumer fetch long-poll: 100 ms" in wk.log_text()  # BINDWATCH_FETCH_MAX_WAIT_MS's, not Faust's 1,500
    assert "852121199" not in gw_log and "85299999999" not in gw_log, "numbers must be masked in logs"
    assert '"requestId":"1640920940635361280"' in gw_log.replace(" ", "")
