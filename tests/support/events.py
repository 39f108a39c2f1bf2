"""Build NXCLOUD pushes and input events, and compute, with the pure rules, what the stream must make of them."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from schemas import BindingFailureEvent, encode
from schemas.codec import headers as record_headers
from stream import rules
from stream.rules import Failure, Kind, Policy, SubjectState
from tests.support.kafka import Headers

BASE = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
NXCLOUD_ZONE = timezone(timedelta(hours=8))


def push(rid: str, caller: str, did: str, at: datetime, code: int = 10013) -> dict[str, object]:
    """An NXCLOUD push body as the vendor sends it (zone-less local occurrence time, UTC+8)."""
    return {
        "code": code,
        "msg": "binding not exist",
        "requestId": rid,
        "data": {
            "action": "queryAXB",
            "requestParams": {"caller": caller, "did": did},
            "occurrenceTime": at.astimezone(NXCLOUD_ZONE).strftime("%Y-%m-%d %H:%M:%S"),
        },
    }


DELETE = object()
"""``set_path`` value that removes the field."""


def set_path(body: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """Set (or, with ``DELETE``, remove) the field at the dotted ``path`` of a JSON object; returns ``body``."""
    node = body
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return body


def _offset(zone: timezone) -> str:
    minutes = int(zone.utcoffset(None).total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def event(
    rid: str,
    caller: str,
    did: str,
    at: datetime | timedelta,
    code: int = 10013,
    *,
    zone: timezone = UTC,
    received: datetime | None = None,
) -> BindingFailureEvent:
    """The event the gateway makes of a push: ``at`` is an aware time or an offset from ``BASE``; the raw
    occurrence time is written in ``zone``."""
    when = BASE + at if isinstance(at, timedelta) else at
    return BindingFailureEvent(
        requestId=rid,
        code=code,
        msg="binding not exist",
        action="queryAXB",
        caller=caller,
        callerRaw=caller,
        did=did,
        didRaw=did,
        occurredAt=when,
        occurrenceTimeRaw=when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
        occurrenceTimeZone=_offset(zone),
        receivedAt=received or datetime.now(UTC),
    )


def record(e: BindingFailureEvent) -> tuple[bytes, bytes, int, Headers]:
    """``(key, value, timestamp ms, headers)`` as the gateway writes the event."""
    return e.caller.encode(), encode(e), int(e.occurredAt.timestamp() * 1000), record_headers(e, e.requestId)


def records(events: list[BindingFailureEvent]) -> list[tuple[bytes | None, bytes, int | None]]:
    """Records of the events, stamped by the broker (the stream reads times from the value only).

    Not with the occurrence time as the gateway does: the tests' events lie months back (``BASE``), and the
    events topic's 7-day retention would delete them at the broker's next retention check (every 5 minutes
    from its start), under a test that is still reading them ("Fetch offset ... is out of range").
    """
    return [(e.caller.encode(), encode(e), None) for e in events]


def expected(
    events: list[BindingFailureEvent], policy: Policy
) -> tuple[Counter[tuple[str, str, str]], dict[str, int], dict[str, int]]:
    """(multiset of (fingerprint, status, severity) over firing and final resolution, distinct counts per
    caller, per DID). Applies each subject's events in the order given, then resolves everything."""
    states: dict[tuple[Kind, str], SubjectState] = {}
    out: Counter[tuple[str, str, str]] = Counter()
    now = 1_000
    for e in events:
        ts = int(e.occurredAt.timestamp() * 1000)
        for kind, subject, other in ((Kind.CALLER, e.caller, e.did), (Kind.DID, e.did, e.caller)):
            st = states.setdefault((kind, subject), SubjectState(kind, subject))
            for a in rules.apply(st, Failure(ts, e.requestId, other), now, policy).alerts:
                out[(a.fingerprint, a.status.value, a.severity.value)] += 1
    for st in states.values():
        for a in rules.tick(st, 10**13, policy):
            out[(a.fingerprint, a.status.value, a.severity.value)] += 1
    callers = {s: len(st.events) for (k, s), st in states.items() if k is Kind.CALLER}
    dids = {s: len(st.events) for (k, s), st in states.items() if k is Kind.DID}
    return out, callers, dids
