"""Gateway unit tests: the publisher is a test double; every malformed or hostile input has its answer."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway import ConfigError, PublishTimeout
from gateway.app import PUSH_PATH, create_app
from gateway.config import GatewaySettings
from gateway.publisher import MemoryPublisher
from schemas import BindingFailureEvent, DeadLetterRecord, decode
from schemas.push import DEMO_PUSH
from tests.support.events import DELETE, set_path

TOKEN = "unit-token-abc"
OLD_TOKEN = "rotated-out-token"


def settings(**kw: Any) -> GatewaySettings:
    return GatewaySettings(push_tokens=f"{TOKEN},{OLD_TOKEN}", **kw)


@pytest.fixture
def pub() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def client(pub: MemoryPublisher) -> Iterator[TestClient]:
    with TestClient(create_app(settings(), pub)) as c:
        yield c


def with_(path: str, value: Any) -> dict[str, Any]:
    return set_path(copy.deepcopy(DEMO_PUSH), path, value)


J = {"content-type": "application/json"}


def test_demo_push_is_accepted_and_normalised(client: TestClient, pub: MemoryPublisher) -> None:
    r = client.post(f"{PUSH_PATH}?token={TOKEN}", json=DEMO_PUSH)
    assert r.status_code == 200 and r.json() == {"status": "accepted", "requestId": "1640920940635361280"}
    [rec] = pub.records
    assert rec.topic == "nxcloud.binding-failures.v1" and rec.key == b"852121199"
    ev = decode(BindingFailureEvent, rec.value)
    assert ev.occurredAt.isoformat() == "2023-03-29T03:36:53+00:00"
    assert (ev.occurrenceTimeRaw, ev.occurrenceTimeZone) == ("2023-03-29 11:36:53", "+08:00")
    # a 2023 push is older than the events topic's retention: stamped 24 h before receipt, not in 2023
    assert rec.timestamp_ms is not None and rec.timestamp_ms < ev.receivedAt.timestamp() * 1000 - 23.9 * 3600_000
    assert rec.timestamp_ms > ev.receivedAt.timestamp() * 1000 - 24.1 * 3600_000
    assert dict(rec.headers) == {
        "schema": b"bindwatch.BindingFailureEvent/1",
        "content-type": b"application/json",
        "requestId": b"1640920940635361280",
    }


@pytest.mark.parametrize(
    ("age", "stamped_age"),
    [
        (timedelta(minutes=59), timedelta(minutes=59)),  # NXCLOUD's last retry: the event time, unchanged
        (timedelta(days=3), timedelta(days=1)),  # a replayed or mis-clocked push: never older than a day
        (-timedelta(minutes=10), -timedelta(minutes=1)),  # a sender's clock ahead: at most a minute ahead
    ],
)
def test_the_record_timestamp_is_the_event_time_within_bounds(
    client: TestClient, pub: MemoryPublisher, age: timedelta, stamped_age: timedelta
) -> None:
    """A record stamped further back than the topic's retention would be deleted before a worker reads it,
    although the push was answered 200; one stamped far ahead may be refused by the broker."""
    when = (datetime.now(UTC) - age).astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")
    r = client.post(f"{PUSH_PATH}?token={TOKEN}", json=with_("data.occurrenceTime", when))
    assert r.status_code == 200, r.text
    [rec] = pub.records
    ev = decode(BindingFailureEvent, rec.value)
    assert ev.occurrenceTimeRaw == when  # the event itself keeps its time
    assert rec.timestamp_ms is not None
    got_age = ev.receivedAt.timestamp() * 1000 - rec.timestamp_ms
    assert abs(got_age - stamped_age.total_seconds() * 1000) < 1500, (got_age, stamped_age)


ACCEPTED = [
    ("bearer header", {}, DEMO_PUSH, {"authorization": f"Bearer {TOKEN}"}),
    ("old token during rotation", {"token": OLD_TOKEN}, DEMO_PUSH, {}),
    ("requestId as a big JSON integer", {"token": TOKEN}, with_("requestId", 164092094063536128012345), {}),
    (
        "numbers with + and 00",
        {"token": TOKEN},
        with_("data.requestParams", {"caller": "+852121199", "did": "0085299999999"}),
        {},
    ),
    ("numbers as JSON integers", {"token": TOKEN}, with_("data.requestParams", {"caller": 852121199, "did": 852}), {}),
    ("short number", {"token": TOKEN}, with_("data.requestParams.did", "110"), {}),
    ("unknown extra fields kept", {"token": TOKEN}, {**DEMO_PUSH, "newField": {"x": 1}}, {}),
    ("code as digit string", {"token": TOKEN}, with_("code", "10013"), {}),
    ("time with explicit offset", {"token": TOKEN}, with_("data.occurrenceTime", "2023-03-29T11:36:53+02:00"), {}),
    ("no action, no msg", {"token": TOKEN}, with_("msg", DELETE), {}),
    ("charset in content type", {"token": TOKEN}, DEMO_PUSH, {"content-type": "application/json; charset=utf-8"}),
]


@pytest.mark.parametrize(("name", "query", "body", "headers"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_plausible_pushes_are_accepted(
    client: TestClient,
    pub: MemoryPublisher,
    name: str,
    query: dict[str, str],
    body: dict[str, Any],
    headers: dict[str, str],
) -> None:
    r = client.post(PUSH_PATH, params=query, content=json.dumps(body), headers={**J, **headers})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted"
    ev = decode(BindingFailureEvent, pub.records[-1].value)
    assert ev.requestId == str(body["requestId"])
    assert not ev.caller.startswith(("+", "00"))


def test_requestid_digits_are_never_lost(client: TestClient, pub: MemoryPublisher) -> None:
    raw = b'{"code":10013,"requestId":123456789012345678901234567890,"data":{"requestParams":{"caller":"1","did":"2"},"occurrenceTime":"2023-03-29 11:36:53"}}'  # noqa: E501
    assert client.post(f"{PUSH_PATH}?token={TOKEN}", content=raw, headers=J).status_code == 200
    assert decode(BindingFailureEvent, pub.records[-1].value).requestId == "123456789012345678901234567890"


def test_extra_fields_and_raw_values_survive(client: TestClient, pub: MemoryPublisher) -> None:
    body = with_("data.requestParams", {"caller": "+852 121199", "did": "0085299999999", "zone": "HK"})
    body["vendor"] = "x"
    client.post(f"{PUSH_PATH}?token={TOKEN}", json=body)
    ev = decode(BindingFailureEvent, pub.records[-1].value)
    assert (ev.caller, ev.callerRaw, ev.did, ev.didRaw) == ("852121199", "+852 121199", "85299999999", "0085299999999")
    assert ev.extra == {"vendor": "x", "data.requestParams.zone": "HK"}


# (name, query, raw body, headers, expected status, dead-letter field locations or None)
REJECTED: list[tuple[str, dict[str, str], bytes, dict[str, str], int, list[str] | None]] = [
    ("no token", {}, json.dumps(DEMO_PUSH).encode(), J, 401, None),
    ("wrong token", {"token": "nope"}, json.dumps(DEMO_PUSH).encode(), J, 401, None),
    ("token prefix", {"token": TOKEN[:-1]}, json.dumps(DEMO_PUSH).encode(), J, 401, None),
    ("empty bearer", {}, json.dumps(DEMO_PUSH).encode(), {**J, "authorization": "Bearer "}, 401, None),
    ("basic auth scheme", {}, json.dumps(DEMO_PUSH).encode(), {**J, "authorization": f"Basic {TOKEN}"}, 401, None),
    ("text/plain", {"token": TOKEN}, json.dumps(DEMO_PUSH).encode(), {"content-type": "text/plain"}, 415, None),
    ("form encoded", {"token": TOKEN}, b"a=1", {"content-type": "application/x-www-form-urlencoded"}, 415, None),
    ("no content type", {"token": TOKEN}, json.dumps(DEMO_PUSH).encode(), {"content-type": ""}, 415, None),
    ("body over 64 KiB", {"token": TOKEN}, b'{"x":"' + b"a" * 70000 + b'"}', J, 413, None),
    ("invalid JSON", {"token": TOKEN}, b'{"code": 10013,', J, 200, ["body"]),
    ("invalid UTF-8", {"token": TOKEN}, b'{"code":"\xff\xfe"}', J, 200, ["body"]),
    ("empty body", {"token": TOKEN}, b"", J, 200, ["body"]),
    ("JSON array", {"token": TOKEN}, b"[1,2,3]", J, 200, ["body"]),
    ("JSON string", {"token": TOKEN}, b'"hello"', J, 200, ["body"]),
    ("missing requestId", {"token": TOKEN}, json.dumps(with_("requestId", DELETE)).encode(), J, 200, ["requestId"]),
    (
        "requestId float",
        {"token": TOKEN},
        b'{"code":10013,"requestId":1.6409209406353613e18,"data":{"requestParams":{"caller":"1","did":"2"},'
        b'"occurrenceTime":"2023-03-29 11:36:53"}}',
        J,
        200,
        ["requestId"],
    ),
    ("requestId boolean", {"token": TOKEN}, json.dumps(with_("requestId", True)).encode(), J, 200, ["requestId"]),
    ("requestId empty", {"token": TOKEN}, json.dumps(with_("requestId", " ")).encode(), J, 200, ["requestId"]),
    ("requestId huge", {"token": TOKEN}, json.dumps(with_("requestId", "9" * 500)).encode(), J, 200, ["requestId"]),
    ("code not a number", {"token": TOKEN}, json.dumps(with_("code", "abc")).encode(), J, 200, ["code"]),
    ("code boolean", {"token": TOKEN}, json.dumps(with_("code", False)).encode(), J, 200, ["code"]),
    ("data missing", {"token": TOKEN}, json.dumps(with_("data", DELETE)).encode(), J, 200, ["data"]),
    ("data is a list", {"token": TOKEN}, json.dumps(with_("data", [1])).encode(), J, 200, ["data"]),
    (
        "caller missing",
        {"token": TOKEN},
        json.dumps(with_("data.requestParams.caller", DELETE)).encode(),
        J,
        200,
        ["data.requestParams.caller"],
    ),
    (
        "did is an object",
        {"token": TOKEN},
        json.dumps(with_("data.requestParams.did", {"a": 1})).encode(),
        J,
        200,
        ["data.requestParams.did"],
    ),
    (
        "caller empty",
        {"token": TOKEN},
        json.dumps(with_("data.requestParams.caller", "")).encode(),
        J,
        200,
        ["data.requestParams.caller"],
    ),
    (
        "bad occurrenceTime",
        {"token": TOKEN},
        json.dumps(with_("data.occurrenceTime", "yesterday")).encode(),
        J,
        200,
        ["data.occurrenceTime"],
    ),
    (
        "occurrenceTime a number",
        {"token": TOKEN},
        json.dumps(with_("data.occurrenceTime", 1680061013)).encode(),
        J,
        200,
        ["data.occurrenceTime"],
    ),
    (
        "several fields wrong",
        {"token": TOKEN},
        b'{"code":"x","requestId":null,"data":{}}',
        J,
        200,
        ["code", "requestId", "data.requestParams", "data.occurrenceTime"],
    ),
    ("deeply nested", {"token": TOKEN}, b'{"a":' * 5000 + b"1" + b"}" * 5000, J, 200, ["body"]),
]


@pytest.mark.parametrize(("name", "query", "raw", "headers", "status", "dlq"), REJECTED, ids=[c[0] for c in REJECTED])
def test_malformed_and_hostile_inputs(
    client: TestClient,
    pub: MemoryPublisher,
    name: str,
    query: dict[str, str],
    raw: bytes,
    headers: dict[str, str],
    status: int,
    dlq: list[str] | None,
) -> None:
    r = client.post(PUSH_PATH, params=query, content=raw, headers=headers)
    assert r.status_code == status, r.text
    body = r.json()
    assert TOKEN not in r.text
    if dlq is None:
        assert body["status"] == "rejected" and body["error"] and body["message"]
        assert pub.records == [], "nothing may be written for a rejected request"
        return
    assert body["status"] == "dead-lettered"
    assert sorted({f["loc"] for f in body["fields"]}) == sorted(dlq)
    [rec] = pub.records
    assert rec.topic == "nxcloud.binding-failures.dlq.v1" and rec.key is None
    dl = decode(DeadLetterRecord, rec.value)
    assert base64.b64decode(dl.bodyBase64) == raw, "the raw body is kept exactly"
    assert dl.bodySize == len(raw)
    assert sorted({x.loc for x in dl.reasons}) == sorted(dlq)
    assert dl.sourceAddress == "testclient"


def test_reject_mode_answers_422_and_stores_nothing(pub: MemoryPublisher) -> None:
    with TestClient(create_app(settings(invalid_push_mode="reject"), pub)) as c:
        r = c.post(f"{PUSH_PATH}?token={TOKEN}", json=with_("requestId", DELETE))
    assert r.status_code == 422 and r.json()["fields"][0]["loc"] == "requestId"
    assert pub.records == []


def test_wrong_method_is_405_json(client: TestClient) -> None:
    r = client.get(PUSH_PATH)
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    assert client.get("/nope").json()["error"] == "not_found"


def test_kafka_failure_is_503_with_retry_after_and_never_200(pub: MemoryPublisher) -> None:
    pub.fail_with = PublishTimeout("Kafka did not acknowledge within 5s")
    with TestClient(create_app(settings(), pub)) as c:
        r = c.post(f"{PUSH_PATH}?token={TOKEN}", json=DEMO_PUSH)
        bad = c.post(f"{PUSH_PATH}?token={TOKEN}", content=b"{", headers=J)
        ready = c.get("/readyz")
        metrics = c.get("/metrics").text
    assert r.status_code == 503 and r.headers["retry-after"] == "60" and r.json()["error"] == "kafka_unavailable"
    assert bad.status_code == 503, "a dead letter that was not stored must not be acknowledged either"
    assert ready.status_code == 503
    assert 'bindwatch_gateway_producer_errors_total{reason="timeout"} 2.0' in metrics
    assert 'bindwatch_gateway_requests_total{outcome="unavailable"} 2.0' in metrics


def test_allowlist_and_trusted_proxies(pub: MemoryPublisher) -> None:
    s = settings(allowed_sources="203.0.113.0/24", trusted_proxies="127.0.0.0/8")
    app = create_app(s, pub)
    with TestClient(app, client=("127.0.0.1", 5000)) as c:
        ok = c.post(f"{PUSH_PATH}?token={TOKEN}", json=DEMO_PUSH, headers={"x-forwarded-for": "203.0.113.7"})
        spoof = c.post(
            f"{PUSH_PATH}?token={TOKEN}", json=DEMO_PUSH, headers={"x-forwarded-for": "203.0.113.7, 198.51.100.1"}
        )
        direct = c.post(f"{PUSH_PATH}?token={TOKEN}", json=DEMO_PUSH)
    assert ok.status_code == 200
    assert spoof.status_code == 403  # the hop the trusted proxy saw is 198.51.100.1
    assert direct.status_code == 403
    with TestClient(create_app(settings(allowed_sources="203.0.113.0/24"), pub), client=("198.51.100.9", 1)) as c:
        # an untrusted peer cannot claim an allowed address through X-Forwarded-For
        r = c.post(f"{PUSH_PATH}?token={TOKEN}", json=DEMO_PUSH, headers={"x-forwarded-for": "203.0.113.7"})
    assert r.status_code == 403


def test_no_token_refuses_to_start_unless_insecure_flag() -> None:
    with pytest.raises(ConfigError, match="BINDWATCH_PUSH_TOKENS"):
        create_app(GatewaySettings(push_tokens=""), MemoryPublisher())
    app = create_app(GatewaySettings(push_tokens="", insecure_no_auth=True), pub := MemoryPublisher())
    with TestClient(app) as c:
        assert c.post(PUSH_PATH, json=DEMO_PUSH).status_code == 200
    assert len(pub.records) == 1


def test_metrics_have_no_numbers_or_tokens(client: TestClient) -> None:
    client.post(f"{PUSH_PATH}?token={TOKEN}", json=DEMO_PUSH)
    client.post(f"{PUSH_PATH}?token=bad", json=DEMO_PUSH)
    text = client.get("/metrics").text
    assert 'bindwatch_gateway_requests_total{outcome="accepted"} 1.0' in text
    assert 'bindwatch_gateway_requests_total{outcome="unauthorized"} 1.0' in text
    for secret in (TOKEN, "bad", "852121199", "85299999999"):
        assert f'"{secret}"' not in text


def test_one_masked_json_log_line_per_request(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="bindwatch.gateway")
    client.post(f"{PUSH_PATH}?token={TOKEN}", json=DEMO_PUSH)
    [rec] = [r for r in caplog.records if r.name == "bindwatch.gateway"]
    fields = rec.fields  # type: ignore[attr-defined]
    assert fields["outcome"] == "accepted" and fields["status"] == 200 and fields["requestId"] == "1640920940635361280"
    assert fields["caller"] == "*****1199" and fields["did"] == "*******9999"
    assert TOKEN not in json.dumps(fields)


def test_openapi_documents_the_push_with_the_demo_example(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    op = doc["paths"][PUSH_PATH]["post"]
    assert op["requestBody"]["content"]["application/json"]["example"] == DEMO_PUSH
    assert {"200", "401", "413", "415", "503"} <= set(op["responses"])
    assert "NxcloudPush" in doc["components"]["schemas"]


class Exploding(MemoryPublisher):
    async def publish(self, *a: Any, **kw: Any) -> None:
        raise RuntimeError("a defect")


def test_an_internal_defect_is_a_503_never_a_500() -> None:
    with TestClient(create_app(settings(), Exploding()), raise_server_exceptions=False) as c:
        r = c.post(f"{PUSH_PATH}?token={TOKEN}", json=DEMO_PUSH)
        metrics = c.get("/metrics").text
    assert r.status_code == 503 and r.json()["error"] == "internal_error" and r.headers["retry-after"] == "60"
    assert 'bindwatch_gateway_requests_total{outcome="internal_error"} 1.0' in metrics


@pytest.mark.parametrize("when", ["0001-01-01 00:00:00", "1969-12-31 23:59:59", "9999-12-31 23:59:59"])
def test_unrepresentable_times_are_dead_lettered(client: TestClient, pub: MemoryPublisher, when: str) -> None:
    r = client.post(f"{PUSH_PATH}?token={TOKEN}", json=with_("data.occurrenceTime", when))
    assert r.status_code == 200 and r.json()["status"] == "dead-lettered"
    assert r.json()["fields"][0]["loc"] == "data.occurrenceTime"
