"""A client we did not write reads every public topic.

Records are written by the project's own code paths (the gateway app in-process with its Kafka publisher, for
events and dead letters; the alert rules plus ``schemas.encode`` / ``schemas.codec.headers`` for alerts, as the
stream worker sends them). Then Apache Kafka's own Java console consumer reads each topic, and its plain-text
output is checked with nothing but the committed JSON Schemas: value, key and headers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from fastapi.testclient import TestClient

from gateway.app import PUSH_PATH, create_app
from gateway.config import GatewaySettings
from gateway.publisher import KafkaPublisher
from schemas import Alert, AlertStatus, BindingFailureEvent, DeadLetterRecord, encode
from schemas.codec import headers
from schemas.push import DEMO_PUSH
from stream import rules
from stream.config import StreamSettings
from stream.rules import Failure, Kind, Policy, SubjectState
from tests.support.contracts import ROOT, errors, value_validator
from tests.support.kafka import Names, setup_topics

pytestmark = pytest.mark.integration

TOKEN = "t"
NULL = "<no key>"
INVALID_BODY = b'{"code":10013,"requestId":"std-dlq-1","data":{"occurrenceTime":"2023-03-29 11:36:53"}}'
CONSUMER_IDLE_MS = 20_000
CONSUMER_BOUND_S = 90.0

LOG4J2_TO_STDERR = """\
status = error
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
"""


@dataclass
class Printed:
    """One record as the console consumer prints it: ``headers<TAB>key<TAB>value``."""

    headers: dict[str, str]
    key: str | None
    value: str


def parse(stdout: str) -> list[Printed]:
    out = []
    for line in stdout.splitlines():
        hdrs, key, value = line.split("\t", 2)
        pairs = [] if hdrs == "NO_HEADERS" else [h.split(":", 1) for h in hdrs.split(",")]
        out.append(Printed({k: v for k, v in pairs}, None if key == NULL else key, value))
    return out


def kafka_classpath() -> str:
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "kafka.sh"), "classpath"],
        capture_output=True,
        text=True,
        timeout=600,  # the first call may fetch the jars with Maven
        check=False,
    )
    assert r.returncode == 0, f"scripts/kafka.sh classpath failed (Java 17+ and Maven are needed):\n{r.stderr}"
    return r.stdout.strip()


def console_consumer(classpath: str, log_config: Path, bootstrap: str, topic: str, n: int) -> subprocess.Popen[str]:
    argv = [
        "java",
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={log_config}",
        "-cp",
        classpath,
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--from-beginning",
        "--max-messages",
        str(n),
        "--timeout-ms",
        str(CONSUMER_IDLE_MS),
        "--formatter-property",
        "print.key=true",
        "--formatter-property",
        "print.headers=true",
        "--formatter-property",
        f"null.literal={NULL}",
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def read_all(procs: dict[str, subprocess.Popen[str]]) -> dict[str, list[Printed]]:
    """Wait (bounded) for every console consumer; fail with its stderr if one did not finish cleanly."""
    out: dict[str, list[Printed]] = {}
    deadline = time.monotonic() + CONSUMER_BOUND_S
    try:
        for topic, proc in procs.items():
            try:
                stdout, stderr = proc.communicate(timeout=max(deadline - time.monotonic(), 1.0))
            except subprocess.TimeoutExpired:
                pytest.fail(f"console consumer for {topic} still running after {CONSUMER_BOUND_S:.0f}s")
            assert proc.returncode == 0, f"console consumer for {topic} exited {proc.returncode}:\n{stderr}"
            out[topic] = parse(stdout)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    return out


def write_through_gateway(bootstrap: str, s: StreamSettings) -> None:
    """One valid and one invalid push through the real gateway app and its Kafka publisher."""
    settings = GatewaySettings(
        kafka_bootstrap_servers=bootstrap, events_topic=s.events_topic, dlq_topic=s.dlq_topic, push_tokens=TOKEN
    )
    publisher = KafkaPublisher(bootstrap, [s.events_topic, s.dlq_topic], timeout=10.0, shutdown_timeout=10.0)
    with TestClient(create_app(settings, publisher)) as client:
        deadline = time.monotonic() + 60
        while (ready := client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, f"gateway not ready within 60s: {ready.text}"
            time.sleep(0.2)
        url = f"{PUSH_PATH}?token={TOKEN}"
        r = client.post(url, json=DEMO_PUSH)
        assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
        r = client.post(url, content=INVALID_BODY, headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["status"] == "dead-lettered", r.text


def caller_repeat_episode() -> list[Alert]:
    """A firing and a resolved alert from the real rules: three failures of one caller, then quiet."""
    state = SubjectState(Kind.CALLER, "852121199")
    t0 = 1_680_061_013_000
    now = int(time.time() * 1000)
    out: list[Alert] = []
    for i, did in enumerate(["85299999999", "85298888888", "85297777777"]):
        out += rules.apply(state, Failure(t0 + i * 60_000, f"std-{i}", did), now, Policy()).alerts
    out += rules.tick(state, now + 3_600_000, Policy())
    assert [(a.rule.value, a.status) for a in out] == [
        ("caller_repeat", AlertStatus.FIRING),
        ("caller_repeat", AlertStatus.RESOLVED),
    ]
    return out


async def _send_alerts(bootstrap: str, topic: str, alerts: list[Alert]) -> None:
    """As the stream worker sends them: key fingerprint, value ``encode``, headers ``codec.headers``, acks=all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await asyncio.wait_for(producer.start(), 30)
    try:
        for a in alerts:
            await asyncio.wait_for(
                producer.send_and_wait(topic, encode(a), key=a.fingerprint.encode(), headers=headers(a)), 30
            )
    finally:
        await asyncio.wait_for(producer.stop(), 30)


def test_kafkas_console_consumer_reads_every_public_topic(bootstrap: str, tmp_path: Path) -> None:
    names = Names.new("std")
    s = setup_topics(bootstrap, names)
    write_through_gateway(bootstrap, s)
    alerts = caller_repeat_episode()
    asyncio.run(_send_alerts(bootstrap, s.alerts_topic, alerts))

    log_config = tmp_path / "log4j2.properties"
    log_config.write_text(LOG4J2_TO_STDERR)
    classpath = kafka_classpath()
    wanted = {s.events_topic: 1, s.dlq_topic: 1, s.alerts_topic: len(alerts)}
    read = read_all({t: console_consumer(classpath, log_config, bootstrap, t, n) for t, n in wanted.items()})
    assert {t: len(recs) for t, recs in read.items()} == wanted

    [event] = read[s.events_topic]
    value = json.loads(event.value)
    assert errors(value_validator(BindingFailureEvent), value) == []
    assert event.key == value["caller"] == "852121199"
    assert event.headers == {
        "schema": "bindwatch.BindingFailureEvent/1",
        "content-type": "application/json",
        "requestId": value["requestId"],
    }
    assert value["requestId"] == DEMO_PUSH["requestId"] and value["occurredAt"] == "2023-03-29T03:36:53Z"

    [dead] = read[s.dlq_topic]
    value = json.loads(dead.value)
    assert errors(value_validator(DeadLetterRecord), value) == []
    assert dead.key is None
    assert dead.headers == {
        "schema": "bindwatch.DeadLetterRecord/1",
        "content-type": "application/json",
        "requestId": "std-dlq-1",
    }
    assert base64.b64decode(value["bodyBase64"]) == INVALID_BODY and value["requestId"] == "std-dlq-1"

    values = [json.loads(rec.value) for rec in read[s.alerts_topic]]
    for rec, value in zip(read[s.alerts_topic], values, strict=True):
        assert errors(value_validator(Alert), value) == []
        assert rec.key == value["fingerprint"]
        assert rec.headers == {"schema": "bindwatch.Alert/1", "content-type": "application/json"}
    # one key, so one partition: the consumer sees the episode in emission order
    assert [v["status"] for v in values] == ["firing", "resolved"]
    assert [v["alertId"] for v in values] == [a.alertId for a in alerts]
