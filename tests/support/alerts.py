"""Alert records as the stream workers (and, for binding_outage, the outage work of issue 14) write them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas import Alert, AlertStatus, Rule, Severity


def fingerprint(rule: str) -> str:
    return f"{rule}:{uuid.uuid4().hex[:20]}"


def alert_record(
    fp: str,
    *,
    rule: str = "caller_repeat",
    status: AlertStatus = AlertStatus.FIRING,
    severity: Severity = Severity.WARNING,
    caller: str | None = "852121199",
    did: str | None = None,
    count: int = 3,
    emitted: datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[bytes, bytes, None]:
    """(key, value, timestamp) of one alert change. A rule the schema's enum lacks (binding_outage) and fields
    added by other work (outageFingerprint) are written the way those producers will: additive JSON."""
    emitted = emitted or datetime.now(UTC)
    first = emitted - timedelta(minutes=5)
    known = rule in Rule.__members__.values()
    a = Alert(
        alertId=f"{fp}:{status.value}:{uuid.uuid4().hex[:8]}",
        fingerprint=fp,
        rule=Rule(rule) if known else Rule.DID_HOT,
        status=status,
        severity=severity,
        caller=caller,
        did=did,
        count=count,
        threshold=3,
        windowSeconds=600,
        windowStart=first,
        windowEnd=first + timedelta(seconds=600),
        firstOccurredAt=first,
        lastOccurredAt=emitted - timedelta(seconds=10),
        sampleRequestIds=[f"rid-{i}" for i in range(min(count, 3))],
        emittedAt=emitted,
    )
    doc = a.model_dump(mode="json")
    doc["rule"] = rule
    doc.update(extra or {})
    return fp.encode(), orjson.dumps(doc), None
