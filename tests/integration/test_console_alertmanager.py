"""The console against a real broker and a real Prometheus Alertmanager (the shipped configuration, only the
webhook URL and the timings changed), with the console as a real process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas import AlertStatus, Severity
from tests.support.alertmanager import Alertmanager, Webhook, config_difference, config_for_tests, console
from tests.support.alerts import alert_record, fingerprint
from tests.support.kafka import produce, unique
from tests.support.procs import Service, url

pytestmark = pytest.mark.integration
RESEND = 3.0  # seconds; firing alerts are kept alive in Alertmanager for 4x this
TIMING = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = probe()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if got:
                return got
            last = got
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await asyncio.wait_for(admin.start(), 30)
    try:
        spec = NewTopic(topic, 3, 1, topic_configs={"cleanup.policy": "compact,delete"})
        await asyncio.wait_for(admin.create_topics([spec]), 30)
    finally:
        await admin.close()


@dataclass
class Stack:
    bootstrap: str
    topic: str
    group: str
    am: Alertmanager
    webhook: Webhook
    console: Service
    logdir: Path

    def send(self, *records: tuple[bytes, bytes, None]) -> None:
        produce(self.bootstrap, self.topic, list(records))

    def by_fp(self) -> dict[str, dict[str, Any]]:
        return {a["labels"]["fingerprint"]: a for a in self.am.alerts()}

    def metric(self, name: str) -> float:
        text = httpx.get(url(self.console, "/metrics"), timeout=5).text
        for line in text.splitlines():
            if line.rsplit(" ", 1)[0] == name:
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} not in /metrics")


@pytest.fixture(scope="module")
def stack(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    bootstrap = broker.bootstrap
    logdir = tmp_path_factory.mktemp("console")
    topic = unique("console") + ".alerts"
    asyncio.run(_create_topic(bootstrap, topic))
    webhook = Webhook()
    config = config_for_tests(webhook.url, TIMING)
    assert config_difference(config) == []  # the routing and inhibition under test are the shipped ones
    am = Alertmanager(config, logdir)
    group = unique("console-group")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "BINDWATCH_ALERTS_TOPIC": topic,
        "BINDWATCH_CONSOLE_GROUP_ID": group,
        "BINDWATCH_ALERTMANAGER_URLS": am.url,
        "BINDWATCH_ALERTMANAGER_RESEND_SECONDS": str(RESEND),
        "BINDWATCH_ALERTMANAGER_TIMEOUT_SECONDS": "2",
        "BINDWATCH_ALERTMANAGER_EXTRA_LABELS": "team=telephony",
        "BINDWATCH_RUNBOOK_URL": "https://runbooks.example.com/bindwatch/{rule}",
        "BINDWATCH_WORKER_QUERY_URL": "http://stream.example:6066",
    }
    svc = console(env, logdir)
    try:
        am.start()
        svc.start(timeout=90)
        yield Stack(bootstrap, topic, group, am, webhook, svc, logdir)
    finally:
        svc.stop()
        am.stop()
        webhook.close()


def test_firing_alert_reaches_alertmanager_with_the_documented_labels_and_the_webhook(stack: Stack) -> None:
    fp = fingerprint("caller_repeat")
    other = fingerprint("did_hot")
    stack.send(
        alert_record(fp, caller="852121199", count=4),
        alert_record(other, rule="did_hot", caller=None, did="85299999999", severity=Severity.CRITICAL),
    )
    t0 = time.monotonic()
    found = eventually(lambda: stack.by_fp().get(fp), 10, "the firing alert in GET /api/v2/alerts")
    print(f"\n[console] firing alert in Alertmanager after {time.monotonic() - t0:.2f}s")
    labels = found["labels"]
    assert labels == {
        "alertname": "BindingFailureCallerRepeat",
        "rule": "caller_repeat",
        "severity": "warning",
        "fingerprint": fp,
        "caller": "852121199",
        "team": "telephony",
    }
    assert found["status"]["state"] == "active"
    assert "852121199" in found["annotations"]["summary"] and "4 times" in found["annotations"]["summary"]
    assert "rid-0" in found["annotations"]["description"]
    assert found["annotations"]["runbook_url"] == "https://runbooks.example.com/bindwatch/caller_repeat"
    assert found["generatorURL"] == "http://stream.example:6066/v1/callers/852121199"
    ends = datetime.fromisoformat(found["endsAt"])
    assert timedelta(seconds=2 * RESEND) < ends - datetime.now(UTC) <= timedelta(seconds=4 * RESEND + 1)
    did_alert = eventually(lambda: stack.by_fp().get(other), 10, "the did_hot alert")
    assert did_alert["labels"]["did"] == "85299999999" and "caller" not in did_alert["labels"]
    assert did_alert["labels"]["alertname"] == "BindingFailureDidHot"

    def notified(status: str) -> bool:
        return any(s == status and a["labels"]["fingerprint"] == fp for s, a in stack.webhook.alerts())

    eventually(lambda: notified("firing"), 15, "a firing notification at the webhook receiver")

    stack.send(alert_record(fp, status=AlertStatus.RESOLVED, caller="852121199", count=4))
    eventually(lambda: fp not in stack.by_fp(), 10, "the resolved alert gone from the active alerts")
    eventually(lambda: notified("resolved"), 15, "a resolved notification at the webhook receiver")
    assert other in stack.by_fp()  # only the resolved one ended


def test_a_firing_binding_outage_suppresses_the_per_number_alerts_it_explains(stack: Stack) -> None:
    outage = fingerprint("binding_outage")
    inside = fingerprint("caller_repeat")
    outside = fingerprint("caller_repeat")
    stack.send(
        alert_record(outage, rule="binding_outage", caller=None, did=None, count=900, severity=Severity.CRITICAL),
        alert_record(inside, caller="85261110001", extra={"outageFingerprint": outage}),
        alert_record(outside, caller="85261110002"),
    )

    def states() -> dict[str, dict[str, Any]] | None:
        by = stack.by_fp()
        if {outage, inside, outside} <= set(by) and by[inside]["status"]["state"] == "suppressed":
            return by
        return None

    by = eventually(states, 15, "the per-number alert suppressed by the outage")
    assert by[outage]["labels"]["alertname"] == "BindingFailureBindingOutage"
    assert by[outage]["labels"]["outage"] == outage and by[inside]["labels"]["outage"] == outage
    assert by[inside]["status"]["inhibitedBy"], by[inside]
    assert by[outage]["status"]["state"] == "active"
    assert by[outside]["status"]["state"] == "active" and not by[outside]["status"]["inhibitedBy"]

    # The outage resolves: the alert it muted is active again.
    stack.send(alert_record(outage, rule="binding_outage", caller=None, status=AlertStatus.RESOLVED, count=900))
    eventually(
        lambda: stack.by_fp().get(inside, {}).get("status", {}).get("state") == "active",
        15,
        "the per-number alert active again after the outage resolved",
    )


def test_a_pair_repeat_mutes_the_same_callers_caller_repeat(stack: Stack) -> None:
    """The shipped inhibit rule for one problem, one alert: should a caller_repeat still be active next to the
    pair_repeat (or caller_scan) that explains it, Alertmanager suppresses it; another caller's stays active."""
    explained, pair, other = fingerprint("caller_repeat"), fingerprint("pair_repeat"), fingerprint("caller_repeat")
    stack.send(
        alert_record(explained, caller="85265550001"),
        alert_record(pair, rule="pair_repeat", caller="85265550001", did="85265550002"),
        alert_record(other, caller="85265550003"),
    )
    by = eventually(
        lambda: (b := stack.by_fp()).get(explained, {}).get("status", {}).get("state") == "suppressed" and b,
        15,
        "the explained caller_repeat suppressed",
    )
    assert by[explained]["status"]["inhibitedBy"], by[explained]
    assert by[pair]["status"]["state"] == "active"
    assert by[other]["status"]["state"] == "active" and not by[other]["status"]["inhibitedBy"]


def test_a_silence_created_through_alertmanager_mutes_one_callers_alert(stack: Stack) -> None:
    silenced, loud = fingerprint("caller_repeat"), fingerprint("caller_repeat")
    stack.send(alert_record(silenced, caller="85262220001"), alert_record(loud, caller="85262220002"))
    eventually(lambda: {silenced, loud} <= set(stack.by_fp()), 10, "both alerts in Alertmanager")
    now = datetime.now(UTC)
    r = httpx.post(
        f"{stack.am.url}/api/v2/silences",
        json={
            "matchers": [{"name": "caller", "value": "85262220001", "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "bindwatch tests",
            "comment": "known customer migration",
        },
        timeout=5,
    )
    assert r.status_code == 200, r.text
    silence_id = r.json()["silenceID"]
    by = eventually(
        lambda: (b := stack.by_fp())[silenced]["status"]["state"] == "suppressed" and b,
        10,
        "the caller's alert silenced",
    )
    assert by[silenced]["status"]["silencedBy"] == [silence_id]
    assert by[loud]["status"]["state"] == "active"
    time.sleep(RESEND + 1)  # a resend does not undo the silence
    assert stack.by_fp()[silenced]["status"]["state"] == "suppressed"


def _firing_in_view(stack: Stack) -> set[str]:
    """Fingerprints this module left firing (the test above resolved some)."""
    return {fp for fp, a in stack.by_fp().items() if a["labels"].get("team") == "telephony"}


def _settled_firing(stack: Stack) -> set[str]:
    """The firing fingerprints once Alertmanager holds every alert the console's view has firing (empty until
    then): a test that starts right after another one restarted something must not take a half-filled
    Alertmanager for its starting point."""
    got = _firing_in_view(stack)
    return got if got and len(got) == stack.metric('bindwatch_console_alerts{status="firing"}') else set()


def test_alertmanager_killed_and_restarted_empty_gets_every_firing_alert_back_within_one_resend(stack: Stack) -> None:
    before = eventually(lambda: _settled_firing(stack), 10, "firing alerts before the kill")
    assert len(before) >= 5
    firing = stack.metric('bindwatch_console_alerts{status="firing"}')
    stack.am.kill()
    # Alertmanager down does not stop consumption: an alert that fires meanwhile reaches the view ...
    during = fingerprint("caller_scan")
    stack.send(alert_record(during, rule="caller_scan", caller="85264440001", extra={"distinctDids": 7}))
    eventually(
        lambda: stack.metric('bindwatch_console_alerts{status="firing"}') == firing + 1, 10, "consumed while AM is down"
    )
    eventually(lambda: httpx.get(stack.console.ready_url, timeout=5).status_code == 503, 3 * RESEND, "not ready")
    stack.am.start()
    before = before | {during}  # ... and Alertmanager when it returns
    # Empty storage: nothing but what the console sends. It may already have resent some or all of its view
    # (the "during" alert included) by the time this asks, so the bound is the view, not the set before.
    assert set(stack.by_fp()) <= before
    t0 = time.monotonic()
    eventually(lambda: _firing_in_view(stack) == before, RESEND + 5, "every firing alert back")
    took = time.monotonic() - t0
    print(f"\n[console] all {len(before)} firing alerts back in a restarted Alertmanager after {took:.2f}s")
    assert took <= RESEND + 2  # one resend interval, plus a margin for a loaded machine
    eventually(lambda: httpx.get(stack.console.ready_url, timeout=5).status_code == 200, 10, "console ready again")


def test_console_killed_and_restarted_rebuilds_its_view_without_loss_or_false_resolution(stack: Stack) -> None:
    before = eventually(lambda: _settled_firing(stack), 3 * RESEND, "firing alerts before the kill")
    firing_metric = stack.metric('bindwatch_console_alerts{status="firing"}')
    resolved_metric = stack.metric('bindwatch_console_alerts{status="resolved"}')
    notified_before = len(stack.webhook.alerts())
    stack.console.kill()
    # While it is down, one more alert fires: it must not be lost.
    late = fingerprint("pair_repeat")
    stack.send(alert_record(late, rule="pair_repeat", caller="85263330001", did="85263330002"))
    stack.console.start(timeout=60)
    eventually(lambda: _firing_in_view(stack) == before | {late}, RESEND + 5, "the view rebuilt and delivered")
    assert stack.metric('bindwatch_console_alerts{status="firing"}') == firing_metric + 1
    assert stack.metric('bindwatch_console_alerts{status="resolved"}') == resolved_metric
    assert stack.metric("bindwatch_console_view_rebuilt") == 1
    time.sleep(RESEND + 1)
    assert _firing_in_view(stack) == before | {late}
    resolved_since = [
        a["labels"]["fingerprint"] for s, a in stack.webhook.alerts()[notified_before:] if s == "resolved"
    ]
    assert [fp for fp in resolved_since if fp in before] == []  # nothing was resolved by mistake


def test_console_without_alertmanager_runs_and_says_so(stack: Stack, tmp_path: Path) -> None:
    svc = console(
        {
            "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
            "BINDWATCH_ALERTS_TOPIC": stack.topic,
            "BINDWATCH_CONSOLE_GROUP_ID": unique("console-alone"),
        },
        tmp_path,
        "console-alone",
    )
    try:
        svc.start(timeout=90)
        ready = httpx.get(svc.ready_url, timeout=5).json()
        assert ready["viewRebuilt"] is True
        assert "not configured" in ready["alertmanager"]
        assert "no Alertmanager configured" in svc.log_text()
        main = httpx.get(url(stack.console, "/metrics"), timeout=5).text
        alone = httpx.get(url(svc, "/metrics"), timeout=5).text

        def counts(text: str) -> list[str]:
            return [line for line in text.splitlines() if line.startswith("bindwatch_console_alerts{")]

        assert counts(alone) == counts(main)  # the same view from the same topic
        group = svc.env["BINDWATCH_CONSOLE_GROUP_ID"]
        assert eventually(lambda: _committed_equals_end(stack, group), 15, "offsets committed to the end")
        # SIGTERM: a clean stop (last commit, consumer closed), not uvicorn re-raising the signal mid-shutdown.
        assert svc.stop() == 0, svc.log_tail()
        assert "console stopped" in svc.log_text()
    finally:
        svc.stop()


def _committed_equals_end(stack: Stack, group: str) -> bool:
    async def check() -> bool:
        c = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=group, enable_auto_commit=False)
        await asyncio.wait_for(c.start(), 30)
        try:
            tps = [TopicPartition(stack.topic, p) for p in range(3)]
            end = await c.end_offsets(tps)
            committed = {tp: await c.committed(tp) for tp in tps}
            return all((committed[tp] or 0) == end[tp] for tp in tps)
        finally:
            await c.stop()

    return asyncio.run(check())
