"""The console without Kafka: reading alert records, the view, the Alertmanager mapping, delivery (through
httpx's MockTransport), settings and the HTTP endpoints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from console.alertmanager import Alertmanagers
from console.app import create_app
from console.config import ConsoleSettings
from console.mapping import alertname, labels, to_alertmanager
from console.records import AlertChange
from console.service import ConsoleState, ViewFeeder
from console.view import AlertView, Applied
from schemas import AlertStatus, Severity, decode, encode
from tests.support.alerts import alert_record
from tests.unit.test_contracts import alerts_of_every_rule

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def change(fp: str = "caller_repeat:aaaa", **kw: Any) -> AlertChange:
    return decode(AlertChange, alert_record(fp, **kw)[1])


def settings(**kw: Any) -> ConsoleSettings:
    return ConsoleSettings(alertmanager_urls=["http://am-a:9093", "http://am-b:9093"], **kw)


# ---- reading records ---------------------------------------------------------------------------------------


def test_every_alert_the_rules_emit_reads_back_with_the_same_values() -> None:
    alerts = alerts_of_every_rule()
    assert alerts
    for a in alerts:
        read = decode(AlertChange, encode(a)).model_dump(mode="json")
        want = a.model_dump(mode="json")
        assert {k: read.get(k) for k in want} == want  # every field the stream writes reads back the same


def test_a_rule_and_fields_added_later_within_v1_are_read_not_dropped() -> None:
    a = change("binding_outage:1", rule="binding_outage", caller=None, extra={"baseline": 12, "supersededBy": "x:1"})
    assert (a.rule, a.outage, a.supersededBy) == ("binding_outage", "binding_outage:1", "x:1")
    inside = change(extra={"outageFingerprint": "binding_outage:1"})
    assert inside.outage == "binding_outage:1"
    assert change().outage is None


# ---- the view ----------------------------------------------------------------------------------------------


def test_the_view_keeps_the_latest_change_per_fingerprint() -> None:
    view = AlertView()
    first = change(emitted=NOW)
    assert view.apply(first) is Applied.CHANGED
    assert view.apply(first) is Applied.DUPLICATE
    resolved = change(status=AlertStatus.RESOLVED, emitted=NOW + timedelta(minutes=5))
    older = change(severity=Severity.CRITICAL, emitted=NOW + timedelta(minutes=1))
    assert view.apply(resolved) is Applied.CHANGED
    assert view.apply(older) is Applied.STALE
    assert view.get(first.fingerprint) == resolved
    assert view.apply(change("did_hot:b", rule="did_hot", caller=None, did="85299999999")) is Applied.CHANGED
    assert (len(view), view.count(AlertStatus.FIRING), view.count(AlertStatus.RESOLVED)) == (2, 1, 1)
    assert [a.fingerprint for a in view.firing()] == ["did_hot:b"]


# ---- the Alertmanager alert --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        (
            {"rule": "caller_repeat", "caller": "852121199"},
            {"alertname": "BindingFailureCallerRepeat", "rule": "caller_repeat", "caller": "852121199"},
        ),
        (
            {"rule": "did_hot", "caller": None, "did": "85299999999"},
            {"alertname": "BindingFailureDidHot", "rule": "did_hot", "did": "85299999999"},
        ),
        (
            {"rule": "pair_repeat", "caller": "852121199", "did": "85299999999"},
            {
                "alertname": "BindingFailurePairRepeat",
                "rule": "pair_repeat",
                "caller": "852121199",
                "did": "85299999999",
            },
        ),
        (
            {"rule": "caller_scan", "caller": "852121199", "extra": {"outageFingerprint": "binding_outage:o"}},
            {
                "alertname": "BindingFailureCallerScan",
                "rule": "caller_scan",
                "caller": "852121199",
                "outage": "binding_outage:o",
            },
        ),
        (
            {"rule": "binding_outage", "caller": None},
            {"alertname": "BindingFailureBindingOutage", "rule": "binding_outage", "outage": "f"},
        ),
    ],
)
def test_labels_per_rule(kw: dict[str, Any], expected: dict[str, str]) -> None:
    a = change("f", **kw)
    assert labels(a, settings()) == {**expected, "severity": "warning", "fingerprint": "f"}


def test_masking_extra_labels_and_runbook() -> None:
    s = settings(
        notify_mask_numbers=True,
        alertmanager_extra_labels="team=telephony, rule=spoofed",
        runbook_url="https://rb.example/{rule}",
    )
    a = change("f", rule="pair_repeat", caller="852121199", did="85299999999")
    out = to_alertmanager(a, s, NOW)
    assert out["labels"]["caller"] == "*****1199" and out["labels"]["did"] == "*******9999"
    assert out["labels"]["team"] == "telephony" and out["labels"]["rule"] == "pair_repeat"  # static never overrides
    assert "852121199" not in orjson.dumps(out).decode() and "85299999999" not in orjson.dumps(out).decode()
    assert out["generatorURL"] == s.worker_query_url
    assert out["annotations"]["runbook_url"] == "https://rb.example/pair_repeat"


def test_a_superseded_alert_says_which_alert_explains_it() -> None:
    s = settings()
    superseded = change(status=AlertStatus.RESOLVED, emitted=NOW, extra={"supersededBy": "caller_scan:9"})
    out = to_alertmanager(superseded, s, NOW)
    assert out["annotations"]["superseded_by"] == "caller_scan:9"
    assert "caller_scan:9" in out["annotations"]["description"]
    assert "superseded_by" not in out["labels"]  # labels identify the alert: it must stay the same alert
    assert "superseded_by" not in to_alertmanager(change(emitted=NOW), s, NOW)["annotations"]


def test_firing_is_kept_alive_for_four_resends_and_resolved_ends_at_its_resolution() -> None:
    s = settings(alertmanager_resend_seconds=60)
    firing = to_alertmanager(change(emitted=NOW), s, NOW)
    assert firing["endsAt"] == "2026-11-29T10:04:00Z"
    assert firing["startsAt"] == "2026-11-29T09:55:00Z"  # firstOccurredAt: when the episode began
    assert firing["generatorURL"] == "http://127.0.0.1:6066/v1/callers/852121199"
    ended = NOW + timedelta(minutes=30)
    resolved = to_alertmanager(change(status=AlertStatus.RESOLVED, emitted=ended), s, ended + timedelta(hours=1))
    assert resolved["endsAt"] == "2026-11-29T10:30:00Z"
    summary, description = resolved["annotations"]["summary"], resolved["annotations"]["description"]
    assert "\n" not in summary and "3 times" in summary and "threshold 3" in summary
    assert "rid-0, rid-1, rid-2" in description and "10 min window" in description
    assert alertname("some_new_rule") == "BindingFailureSomeNewRule"


# ---- settings ----------------------------------------------------------------------------------------------


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINDWATCH_ALERTMANAGER_URLS", "http://a:9093/, http://b:9093")
    monkeypatch.setenv("BINDWATCH_ALERTMANAGER_EXTRA_LABELS", "team=telephony,env=prod")
    s = ConsoleSettings()
    assert s.alertmanager_urls == ["http://a:9093", "http://b:9093"]
    assert s.alertmanager_extra_labels == {"team": "telephony", "env": "prod"}
    assert (s.alertmanager_resend_seconds, s.port, s.notify_mask_numbers) == (60.0, 8081, False)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BINDWATCH_ALERTMANAGER_URLS", "ftp://alertmanager:9093", "is not an http"),
        ("BINDWATCH_ALERTMANAGER_EXTRA_LABELS", "team", "is not name=value"),
        ("BINDWATCH_ALERTMANAGER_EXTRA_LABELS", "my-team=x", "must match"),
        ("BINDWATCH_ALERTMANAGER_RESEND_SECONDS", "0", "greater than or equal"),
    ],
)
def test_settings_that_cannot_work_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        ConsoleSettings()


# ---- delivery ----------------------------------------------------------------------------------------------


class FakeAlertmanagers:
    """Answers per host: a status code, or an exception to raise; records what each received."""

    def __init__(self) -> None:
        self.answer: dict[str, int | Exception] = {}
        self.received: dict[str, list[list[dict[str, Any]]]] = {}

    def handler(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        assert request.url.path == "/api/v2/alerts" and request.method == "POST"
        answer = self.answer.get(host, 200)
        if isinstance(answer, Exception):
            raise answer
        if answer == 200:
            self.received.setdefault(host, []).append(orjson.loads(request.content))
        return httpx.Response(answer, text="" if answer == 200 else "bad alert")

    def fingerprints(self, host: str) -> list[set[str]]:
        return [{a["labels"]["fingerprint"] for a in call} for call in self.received.get(host, [])]


def run(coro_fn: Callable[[Alertmanagers, FakeAlertmanagers, ConsoleState], Any], **kw: Any) -> ConsoleState:
    async def main() -> ConsoleState:
        fake = FakeAlertmanagers()
        state = ConsoleState(settings(**{"alertmanager_retries": 2, **kw}))
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
            state.alertmanagers = Alertmanagers(state.settings, state.view, state.metrics, client, clock=lambda: NOW)
            state.rebuilt = True
            await coro_fn(state.alertmanagers, fake, state)
        return state

    return asyncio.run(main())


def feed(state: ConsoleState, *changes: tuple[bytes, bytes, None]) -> None:
    feeder = ViewFeeder(state)
    for _, value, _ in changes:
        feeder.apply(value, "test")


def test_every_change_goes_to_every_alertmanager_and_a_failed_one_gets_it_when_back() -> None:
    async def scenario(ams: Alertmanagers, fake: FakeAlertmanagers, state: ConsoleState) -> None:
        fake.answer["am-b"] = httpx.ConnectError("refused")
        before = NOW - timedelta(minutes=1)
        feed(
            state,
            alert_record("caller_repeat:1", emitted=before),
            alert_record("did_hot:2", rule="did_hot", caller=None, did="1", emitted=before),
        )
        await ams.deliver(full=False)
        assert fake.fingerprints("am-a") == [{"caller_repeat:1", "did_hot:2"}]
        assert (ams.pending("http://am-a:9093"), ams.pending("http://am-b:9093")) == (0, 2)
        assert ams.reachable == {"http://am-a:9093": True, "http://am-b:9093": False}
        feed(state, alert_record("caller_repeat:1", status=AlertStatus.RESOLVED, emitted=NOW))
        del fake.answer["am-b"]
        await ams.deliver(full=False)
        sent = fake.received["am-b"][0]
        assert {a["labels"]["fingerprint"]: a["endsAt"] for a in sent}["caller_repeat:1"] < "2026-11-29T10:00:01Z"
        assert ams.pending("http://am-b:9093") == 0

    state = run(scenario)
    assert state.metrics.posts.labels("error")._value.get() == 3  # one call and its 2 retries, then no more
    assert state.metrics.posts.labels("ok")._value.get() == 3


def test_the_full_resend_carries_every_firing_alert_and_no_resolved_one() -> None:
    async def scenario(ams: Alertmanagers, fake: FakeAlertmanagers, state: ConsoleState) -> None:
        feed(state, alert_record("a:1"), alert_record("a:2"), alert_record("a:3", status=AlertStatus.RESOLVED))
        await ams.deliver(full=False)
        fake.received.clear()
        await ams.deliver(full=True)
        assert fake.fingerprints("am-a") == [{"a:1", "a:2"}]
        assert ams.last_full["http://am-a:9093"] is not None

    run(scenario)


def test_rejected_alerts_are_not_retried_and_stay_owed() -> None:
    async def scenario(ams: Alertmanagers, fake: FakeAlertmanagers, state: ConsoleState) -> None:
        fake.answer["am-a"] = 400
        feed(state, alert_record("a:1"))
        await ams.deliver(full=False)
        assert ams.pending("http://am-a:9093") == 1

    state = run(scenario)
    assert state.metrics.posts.labels("rejected")._value.get() == 1


def test_a_call_that_hangs_is_bounded() -> None:
    async def scenario(ams: Alertmanagers, fake: FakeAlertmanagers, state: ConsoleState) -> None:
        async def hang(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(30)
            return httpx.Response(200)

        ams.client = httpx.AsyncClient(transport=httpx.MockTransport(hang))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await ams.post("http://am-a:9093", []) is False
        assert loop.time() - t0 < 2.0  # 3 attempts of 0.2 s plus 0.25 + 0.5 s of backoff
        await ams.client.aclose()

    state = run(scenario, alertmanager_timeout_seconds=0.2)
    assert state.metrics.posts.labels("timeout")._value.get() == 3


def test_a_label_change_ends_the_old_label_set_in_alertmanager() -> None:
    async def scenario(ams: Alertmanagers, fake: FakeAlertmanagers, state: ConsoleState) -> None:
        feed(state, alert_record("a:1", emitted=NOW - timedelta(minutes=2)))
        await ams.deliver(full=False)
        fake.received.clear()
        feed(state, alert_record("a:1", severity=Severity.CRITICAL, emitted=NOW - timedelta(minutes=1)))
        await ams.deliver(full=False)
        retired, current = fake.received["am-a"]
        assert [(a["labels"]["severity"], a["endsAt"]) for a in retired] == [("warning", "2026-11-29T10:00:00Z")]
        assert [a["labels"]["severity"] for a in current] == ["critical"]

    run(scenario)


def test_an_unreadable_record_is_counted_and_skipped() -> None:
    state = ConsoleState(ConsoleSettings())
    ViewFeeder(state).apply(b'{"fingerprint": "x"}', "t[0]@1")
    ViewFeeder(state).apply(None, "t[0]@2")
    assert len(state.view) == 0
    assert state.metrics.records.labels("invalid")._value.get() == 2


# ---- HTTP --------------------------------------------------------------------------------------------------


def test_health_readiness_and_metrics_without_alertmanager() -> None:
    state = ConsoleState(ConsoleSettings())
    with TestClient(create_app(state)) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503  # the view is not rebuilt yet
        feed(state, alert_record("a:1", caller="85261234567"), alert_record("a:2", status=AlertStatus.RESOLVED))
        state.rebuilt = True
        r = client.get("/readyz")
        assert r.status_code == 200 and "not configured" in r.json()["alertmanager"]
        metrics = client.get("/metrics").text
        assert 'bindwatch_console_alerts{status="firing"} 1.0' in metrics
        assert 'bindwatch_console_alerts{status="resolved"} 1.0' in metrics
        assert "85261234567" not in metrics and "1234567" not in metrics


def test_not_ready_while_no_alertmanager_answers() -> None:
    async def scenario(ams: Alertmanagers, fake: FakeAlertmanagers, state: ConsoleState) -> None:
        fake.answer["am-a"] = fake.answer["am-b"] = 503
        await ams.deliver(full=True)

    state = run(scenario, alertmanager_retries=0)
    with TestClient(create_app(state)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert [a["reachable"] for a in r.json()["alertmanagers"]] == [False, False]


def test_every_console_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Alerts in Alertmanager: the console", 1)[1].split("\n## ", 1)[0]
    for name, info in ConsoleSettings.model_fields.items():
        env = "KAFKA_BOOTSTRAP_SERVERS" if info.validation_alias else f"BINDWATCH_{name.upper()}"
        assert f"`{env}`" in section, env


def test_the_uvicorn_method_the_console_overrides_still_exists() -> None:
    # console.__main__._Server replaces it so that SIGTERM is not re-raised before the consumer closes; if an
    # upgrade renames it, uvicorn would capture signals again (the integration test's exit code 0 fails too).
    import uvicorn

    from console.__main__ import _Server

    assert "capture_signals" in vars(uvicorn.Server)
    assert "capture_signals" in vars(_Server)


def test_resend_lag_grows_while_an_alertmanager_misses_resends() -> None:
    async def scenario(ams: Alertmanagers, fake: FakeAlertmanagers, state: ConsoleState) -> None:
        assert ams.resend_lag() == 0.0  # not started
        ams._started = time.monotonic() - 100  # started 100 s ago, resend every 60 s, nothing delivered
        fake.answer["am-b"] = 503
        await ams.deliver(full=True)
        assert 39 < ams.resend_lag() < 45  # am-b is 40 s behind schedule
        del fake.answer["am-b"]
        await ams.deliver(full=True)
        assert ams.resend_lag() == 0.0

    run(scenario, alertmanager_retries=0, alertmanager_resend_seconds=60)
