"""The published contracts against the models, the code and the AsyncAPI 3.0 specification (all offline).

* schemas/json/*.schema.json must be exactly what ``python -m schemas.export`` generates from the models, and
  must accept what the code really writes (the gateway's records, the rules' alerts) and refuse what it never
  writes.
* schemas/asyncapi.yaml must be a valid AsyncAPI 3.0.0 document, its examples must be valid payloads and
  headers, and its topic names, keys, headers and topic settings must be the ones the code uses.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from gateway.app import PUSH_PATH, create_app
from gateway.config import GatewaySettings
from gateway.publisher import MemoryPublisher, Record
from schemas import (
    ALERTS_TOPIC,
    DLQ_TOPIC,
    EVENTS_TOPIC,
    OVERVIEW_TOPIC,
    Alert,
    AlertStatus,
    BindingFailureEvent,
    DeadLetterRecord,
    NxcloudPush,
    Overview,
    Rule,
    decode,
    encode,
    export,
)
from schemas.alerts import Severity
from schemas.codec import headers, schema_id
from schemas.push import DEMO_PUSH
from schemas.topics import OVERVIEW_KEY
from stream import outage, rules
from stream.admin import topic_specs
from stream.config import StreamSettings
from stream.rules import Failure, Kind, Policy, SubjectState
from tests.support.contracts import (
    ASYNCAPI_SPEC,
    asyncapi_document,
    asyncapi_spec_validator,
    channel_message,
    committed_schema,
    contract,
    deref,
    errors,
    file_validator,
    kafka_channels,
    payload_path,
    schema_validator,
    value_validator,
)

ASYNCAPI_SPEC_SHA256 = "d4571a420e6ffb7fcc7066c95a6db1202f299a3c51daa103d0706bf30f95e626"
"""sha256 of schemas/3.0.0.json in the npm package @asyncapi/specs 6.11.1 (see schemas/vendor/README.md)."""

TOPIC_MODELS: dict[str, type[BaseModel]] = {
    EVENTS_TOPIC: BindingFailureEvent,
    DLQ_TOPIC: DeadLetterRecord,
    ALERTS_TOPIC: Alert,
    OVERVIEW_TOPIC: Overview,
}
TOKEN = "contract-token"


def as_json(model: BaseModel) -> Any:
    """What a consumer parses: the bytes ``schemas.encode`` puts on the topic."""
    return json.loads(encode(model))


# --- the committed JSON Schemas are the models' -------------------------------------------------------------------
def test_committed_json_schemas_are_exactly_what_the_models_generate() -> None:
    problems = export.drift()
    assert not problems, "\n".join(problems) + "\n\nrun `.venv/bin/python -m schemas.export` and commit schemas/json/"


@pytest.mark.parametrize("c", export.CONTRACTS, ids=lambda c: c.filename)
def test_committed_schema_is_draft_07_with_an_id(c: export.Contract) -> None:
    schema = committed_schema(c.model)
    value_validator(c.model)  # check_schema: a valid draft-07 schema
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["$id"] == c.schema_uri
    assert schema["title"] == c.model.__name__


def test_check_mode_fails_on_drift_and_write_mode_repairs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "JSON_DIR", tmp_path)
    assert export.main(["--check"]) == 1  # nothing there yet
    assert export.main([]) == 0
    assert export.main(["--check"]) == 0
    alert = contract(Alert).path
    alert.write_text(alert.read_text().replace('"maxItems": 10', '"maxItems": 11'))
    assert [p.split(":")[0] for p in export.drift()] == [alert.name]
    assert export.main(["--check"]) == 1
    (tmp_path / "old.v0.schema.json").write_text("{}")
    export.main([])
    assert export.drift() == ["old.v0.schema.json: not generated from any model (delete it, or add its model)"]


# --- the versioning policy is enforced by the generator -----------------------------------------------------------
class EventWithOptionalAddition(BindingFailureEvent):
    carrier: str | None = None


class EventWithRequiredAddition(BindingFailureEvent):
    carrier: str


def test_a_field_added_within_v1_is_optional_in_the_schema() -> None:
    c = dataclasses.replace(contract(BindingFailureEvent), model=EventWithOptionalAddition)
    schema = export.build(c)
    assert "carrier" in schema["properties"]
    assert "carrier" not in schema["required"]
    v1_fields = contract(BindingFailureEvent).v1_fields
    assert v1_fields is not None
    assert set(schema["required"]) == v1_fields


def test_a_required_addition_or_a_removal_is_refused_within_v1() -> None:
    c = dataclasses.replace(contract(BindingFailureEvent), model=EventWithRequiredAddition)
    with pytest.raises(export.ContractError, match=r"\['carrier'\] were added without a default"):
        export.build(c)
    base = contract(Alert)
    assert base.v1_fields is not None
    gone = dataclasses.replace(base, v1_fields=base.v1_fields | {"subject"})
    with pytest.raises(export.ContractError, match=r"no longer has v1 field\(s\) \['subject'\].*v2"):
        export.build(gone)


# --- what the code really writes validates; what it never writes does not ----------------------------------------
@pytest.fixture
def gateway_records() -> Iterator[list[Record]]:
    """Records the real gateway writes for a valid push, a push with unknown fields and two invalid bodies."""
    pub = MemoryPublisher()
    with TestClient(create_app(GatewaySettings(push_tokens=TOKEN), pub)) as client:
        url = f"{PUSH_PATH}?token={TOKEN}"
        extended = copy.deepcopy(DEMO_PUSH)
        extended["requestId"] = 1640920940635361281  # NXCLOUD may send it as a JSON integer
        extended["data"]["action"] = None
        extended["data"]["requestParams"].update(caller="+852 1211 99", callerType="mobile")
        extended["vendorTrace"] = {"span": 7}
        for body in (DEMO_PUSH, extended):
            assert client.post(url, json=body).json()["status"] == "accepted"
        no_params = b'{"code":10013,"requestId":"r-dlq-1","data":{"occurrenceTime":"2023-03-29 11:36:53"}}'
        for raw in (no_params, b"\xff\xfe not json"):
            r = client.post(url, content=raw, headers={"content-type": "application/json"})
            assert r.json()["status"] == "dead-lettered", r.text
        yield pub.records


def test_gateway_records_match_the_schemas_keys_and_headers(gateway_records: list[Record]) -> None:
    doc = asyncapi_document()
    channels = kafka_channels(doc)
    assert sorted(r.topic for r in gateway_records) == sorted([EVENTS_TOPIC] * 2 + [DLQ_TOPIC] * 2)
    for rec in gateway_records:
        model = TOPIC_MODELS[rec.topic]
        value = json.loads(rec.value)
        assert errors(value_validator(model), value) == []
        message = channel_message(doc, channels[rec.topic])
        hdrs = {k: v.decode() for k, v in rec.headers}
        assert errors(schema_validator(doc, message["headers"]), hdrs) == []
        assert hdrs["schema"] == f"bindwatch.{model.__name__}/{value['schemaVersion']}"
        key_schema = message["bindings"]["kafka"]["key"]
        key = None if rec.key is None else rec.key.decode()
        assert errors(schema_validator(doc, key_schema), key) == []
        if model is BindingFailureEvent:
            assert key == value["caller"] and hdrs["requestId"] == value["requestId"]
        elif value["requestId"] is not None:
            assert hdrs["requestId"] == value["requestId"]
        else:
            assert "requestId" not in hdrs
    events = [json.loads(r.value) for r in gateway_records if r.topic == EVENTS_TOPIC]
    assert events[1]["extra"] == {"vendorTrace": {"span": 7}, "data.requestParams.callerType": "mobile"}


def alerts_of_every_rule() -> list[Alert]:
    """Firing and resolved alerts of all four rules, made by the real rules."""
    t0 = int(datetime(2023, 3, 29, 3, 0, tzinfo=UTC).timestamp() * 1000)
    now = 1_800_000_000_123  # wall clock with milliseconds: emittedAt gets a fraction
    caller = SubjectState(Kind.CALLER, "852121199")
    did = SubjectState(Kind.DID, "85299999999")
    out: list[Alert] = []
    for i in range(6):
        out += rules.apply(caller, Failure(t0 + i * 1000, f"c{i}", f"8529000000{i % 5}"), now, Policy()).alerts
        out += rules.apply(caller, Failure(t0 + i * 1000 + 1, f"p{i}", "85291111111"), now, Policy()).alerts
        out += rules.apply(did, Failure(t0 + i * 1000, f"d{i}", f"85212{i}"), now, Policy()).alerts
    later = now + 3_600_000
    out += rules.tick(caller, later, Policy()) + rules.tick(did, later, Policy())
    return out + outage_alerts(now)


def outage_alerts(now: int) -> list[Alert]:
    """binding_outage firing, its severity rise and its resolution, made by the real rule."""
    state, policy = outage.OutageState(), outage.OutagePolicy()
    start = now - 240_000

    def fig(failures: int) -> outage.Figures:
        return outage.Figures(failures, 400, 120, 95.0, 60, start - start % 60_000, start, now - 1500)

    out = outage.evaluate(state, fig(500), now, policy) + outage.evaluate(state, fig(4000), now + 10_000, policy)
    out += outage.evaluate(state, fig(0), now + 20_000, policy)
    return out + outage.evaluate(state, fig(0), now + 20_000 + policy.resolve_s * 1000, policy)


def test_alerts_of_every_rule_and_status_validate() -> None:
    alerts = alerts_of_every_rule()
    assert {(a.rule, a.status) for a in alerts} == {(r, s) for r in Rule for s in AlertStatus}
    v = value_validator(Alert)
    doc = asyncapi_document()
    message = channel_message(doc, kafka_channels(doc)[ALERTS_TOPIC])
    key_v = schema_validator(doc, message["bindings"]["kafka"]["key"])
    header_v = schema_validator(doc, message["headers"])
    for a in alerts:
        assert errors(v, as_json(a)) == []
        assert errors(key_v, a.fingerprint) == []
        if a.rule is Rule.BINDING_OUTAGE:
            assert (a.caller, a.did, a.outageFingerprint) == (None, None, None)
            assert a.distinctCallers is not None and a.baseline is not None
        else:
            assert (a.distinctCallers, a.baseline, a.outageFingerprint) == (None, None, None)
        assert errors(header_v, {k: b.decode() for k, b in headers(a)}) == []


def test_overviews_the_aggregator_builds_validate() -> None:
    """A quiet overview and one during an outage, built by the real aggregator from real partials."""
    now = 1_800_000_000_123
    agg = outage.Aggregate()
    quiet = agg.overview(now, outage.OutagePolicy(), 8, 30_000)
    minute = now // 60_000
    for kind in rules.Kind:
        for p in range(8):
            counts = outage.PartitionCounts(kind, p, 100 + p, now - 2000, since_ts=now - 7_200_000)
            counts.minutes[minute] = outage.Minute(60, 3, 150, {"queryAXB": 55, "(none)": 5})
            agg.merge(counts.partial(now, [(f"8521{p}{i:04d}", 20 - i) for i in range(10)], {"did_hot": p}))
    assert [a.rule for a in agg.evaluate(now, outage.OutagePolicy(min_failures=100), 8)] == [Rule.BINDING_OUTAGE]
    busy = agg.overview(now, outage.OutagePolicy(), 8, 30_000)
    v = value_validator(Overview)
    doc = asyncapi_document()
    header_v = schema_validator(doc, channel_message(doc, kafka_channels(doc)[OVERVIEW_TOPIC])["headers"])
    for o in (quiet, busy):
        assert errors(v, as_json(o)) == []
        assert errors(header_v, {k: b.decode() for k, b in headers(o)}) == []
    assert busy.outage.status == "firing" and busy.outage.severity is Severity.WARNING
    assert len(busy.topCallers) == 10 and busy.minutes[-1].newFailures == 8 * 60


def test_alert_enumerations_only_grow_where_the_policy_allows() -> None:
    """`rule` may gain values within v1 (a new kind of alert, e.g. binding_outage); `status` and `severity`
    are closed, and no value ever goes away (schemas/README.md)."""
    defs = committed_schema(Alert)["definitions"]
    assert set(defs["Rule"]["enum"]) >= {"caller_repeat", "did_hot", "pair_repeat", "caller_scan"}
    assert defs["AlertStatus"]["enum"] == ["firing", "resolved"]
    assert defs["Severity"]["enum"] == ["warning", "critical"]


@settings(max_examples=150, deadline=None)
@given(
    occurred=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone(timedelta(hours=8)))
    ),
    received=st.datetimes(timezones=st.just(UTC)),
    request_id=st.text(min_size=1, max_size=128),
    extra=st.dictionaries(st.text(max_size=10), st.none() | st.integers() | st.text(max_size=10), max_size=3),
)
def test_any_event_validates(occurred: datetime, received: datetime, request_id: str, extra: dict[str, Any]) -> None:
    ev = BindingFailureEvent(
        requestId=request_id,
        code=10013,
        msg="binding not exist",
        action=None,
        caller="852121199",
        callerRaw="+852 121199",
        did="85299999999",
        didRaw="85299999999",
        occurredAt=occurred,
        occurrenceTimeRaw="x",
        occurrenceTimeZone="+08:00",
        receivedAt=received,
        extra=extra,
    )
    assert errors(value_validator(BindingFailureEvent), as_json(ev)) == []


def demo_event() -> dict[str, Any]:
    push = NxcloudPush.model_validate(DEMO_PUSH)
    event = BindingFailureEvent.from_push(push, timezone(timedelta(hours=8)), datetime.now(UTC))
    value: dict[str, Any] = as_json(event)
    return value


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"occurredAt": "2023-03-29T03:36:53+00:00"}, "times end in Z"),
        ({"receivedAt": "2023-03-29 03:36:53Z"}, "ISO-8601 with a T"),
        ({"requestId": 1640920940635361280}, "requestId is text"),
        ({"schemaVersion": 2}, "v1 only"),
        ({"caller": None}, "caller is required text"),
    ],
)
def test_event_schema_refuses_what_the_code_never_writes(change: dict[str, Any], why: str) -> None:
    assert errors(value_validator(BindingFailureEvent), demo_event()) == []
    assert errors(value_validator(BindingFailureEvent), {**demo_event(), **change}), why


def test_every_v1_field_is_required_and_unknown_fields_are_tolerated() -> None:
    v = value_validator(BindingFailureEvent)
    for name in contract(BindingFailureEvent).v1_fields or ():
        missing = {k: x for k, x in demo_event().items() if k != name}
        assert errors(v, missing), f"{name} must be required"
    assert errors(v, {**demo_event(), "addedInV1_1": "x"}) == []  # a v1 reader accepts later additions


# --- the AsyncAPI document ----------------------------------------------------------------------------------------
def test_vendored_asyncapi_spec_is_the_published_one() -> None:
    assert hashlib.sha256(ASYNCAPI_SPEC.read_bytes()).hexdigest() == ASYNCAPI_SPEC_SHA256


def test_asyncapi_document_is_valid_asyncapi_3_0() -> None:
    doc = asyncapi_document()
    assert doc["asyncapi"] == "3.0.0"
    assert [f"{e.json_path}: {e.message[:300]}" for e in asyncapi_spec_validator().iter_errors(doc)] == []


def test_the_spec_validator_does_reject_a_broken_document() -> None:
    """Negative control: a registry that resolved nothing, or a schema that accepts anything, would pass above."""
    v = asyncapi_spec_validator()
    for path, value in [
        (("channels", "alerts", "bindings", "kafka", "partitions"), 0),
        (("components", "messages", "alert", "bindings", "kafka", "bindingVersion"), "9.9.9"),
        (("operations", "publishAlert", "action"), "publish"),
        (("components", "messages", "alert", "examples", 0, "key"), "x"),
    ]:
        doc = asyncapi_document()
        node: Any = doc
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
        assert not v.is_valid(doc), f"{'.'.join(map(str, path))}={value!r} should be invalid"


def test_topic_names_are_the_code_constants() -> None:
    doc = asyncapi_document()
    assert sorted(kafka_channels(doc)) == sorted([EVENTS_TOPIC, DLQ_TOPIC, ALERTS_TOPIC, OVERVIEW_TOPIC])
    [http] = [ch for ch in doc["channels"].values() if {"$ref": "#/servers/gateway"} in ch["servers"]]
    assert http["address"] == PUSH_PATH


def test_topic_settings_are_the_ones_stream_admin_creates() -> None:
    defaults = StreamSettings.model_construct()  # the documented defaults, whatever this shell's environment says
    specs = {t.name: t for t in topic_specs(defaults)}
    for topic, ch in kafka_channels(asyncapi_document()).items():
        binding = ch["bindings"]["kafka"]
        spec = specs[topic]
        assert binding["partitions"] == spec.num_partitions, topic
        config = binding["topicConfiguration"]
        assert config["retention.ms"] == int(spec.topic_configs["retention.ms"]), topic
        assert config["cleanup.policy"] == spec.topic_configs.get("cleanup.policy", "delete").split(","), topic


def test_messages_reference_the_committed_schemas_and_name_the_header_schema() -> None:
    doc = asyncapi_document()
    for topic, ch in kafka_channels(doc).items():
        model = TOPIC_MODELS[topic]
        message = channel_message(doc, ch)
        assert message["name"] == model.__name__
        assert payload_path(message) == contract(model).path
        assert message["payload"]["schemaFormat"] == "application/schema+json;version=draft-07"
        header_schema = deref(doc, message["headers"])
        assert header_schema["properties"]["schema"]["const"] == schema_id(model)
        assert header_schema["properties"]["content-type"]["const"] == "application/json"
    [push] = [m for m in doc["components"]["messages"].values() if m["name"] == "NxcloudPush"]
    assert payload_path(push) == contract(NxcloudPush).path


def all_examples() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    messages = asyncapi_document()["components"]["messages"]
    return [(f"{name}/{ex['name']}", msg, ex) for name, msg in messages.items() for ex in msg["examples"]]


@pytest.mark.parametrize(("name", "message", "example"), all_examples(), ids=[e[0] for e in all_examples()])
def test_examples_are_valid_payloads_and_headers(name: str, message: dict[str, Any], example: dict[str, Any]) -> None:
    doc = asyncapi_document()
    [c] = [c for c in export.CONTRACTS if c.model.__name__ == message["name"]]
    assert errors(file_validator(payload_path(message)), example["payload"]) == []
    parsed = decode(c.model, json.dumps(example["payload"]))  # the model reads it too
    if c.mode == "serialization":  # and writes exactly the example back: it is what the topic carries
        assert as_json(parsed) == example["payload"]
        assert errors(schema_validator(doc, message["headers"]), example["headers"]) == []
        assert example["headers"]["schema"] == schema_id(c.model)
        key_schema = message["bindings"]["kafka"]["key"]
        for key in key_schema.get("examples", []):
            assert errors(schema_validator(doc, key_schema), key) == []
        if c.model is BindingFailureEvent:
            assert key_schema["examples"] == [example["payload"]["caller"]]
            assert example["headers"]["requestId"] == example["payload"]["requestId"]
        if c.model is Alert:
            p = example["payload"]
            assert p["fingerprint"] in key_schema["examples"]
            if p["rule"] == Rule.BINDING_OUTAGE:
                episodes = {outage.OutageState(episode=e).fingerprint() for e in range(1, 100)}
                assert p["fingerprint"] in episodes
            else:
                subject, other = (p["did"], None) if p["rule"] == Rule.DID_HOT else (p["caller"], p["did"])
                assert p["fingerprint"] == rules.fingerprint(Rule(p["rule"]), subject, other)
            if p["outageFingerprint"] is not None:
                assert p["outageFingerprint"] in key_schema["examples"]
        if c.model is Overview:
            assert key_schema["examples"] == [OVERVIEW_KEY]
            p = example["payload"]
            assert set(p["firingAlerts"]) == {r.value for r in Rule}
        if c.model is DeadLetterRecord:
            body = base64.b64decode(example["payload"]["bodyBase64"])
            assert len(body) == example["payload"]["bodySize"]
