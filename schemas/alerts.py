"""Alerts emitted by the stream workers. Value of ``bindwatch.alerts.v1``; key: ``fingerprint``."""

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.events import SCHEMA_VERSION, _Contract


class Rule(StrEnum):
    CALLER_REPEAT = "caller_repeat"
    """One caller keeps dialling numbers with no binding (rebind, or call them back)."""
    DID_HOT = "did_hot"
    """Many failures on one DID (a recycled or stale number printed somewhere)."""
    PAIR_REPEAT = "pair_repeat"
    """One caller keeps dialling the same DID."""
    CALLER_SCAN = "caller_scan"
    """One caller dials many distinct DIDs (a scanner: fraud, complaint-rate risk)."""


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class Alert(_Contract):
    """One alert state change: first firing, a repeat or severity rise while firing, or resolution."""

    schemaVersion: Literal[1] = SCHEMA_VERSION
    alertId: str = Field(description="Deterministic id of this emission; a re-sent duplicate has the same id.")
    fingerprint: str = Field(description="rule + hashed subject; the Kafka key, stable for one problem.")
    rule: Rule
    status: AlertStatus
    severity: Severity
    caller: str | None = Field(description="Caller number, or null for did_hot.")
    did: str | None = Field(description="DID, or null for caller_repeat and caller_scan.")
    count: int = Field(description="Failures in the window (for caller_scan: failures by the caller).")
    distinctDids: int | None = Field(default=None, description="Distinct DIDs in the window (caller_scan only).")
    threshold: int
    windowSeconds: int
    windowStart: AwareDatetime = Field(description="Start of the window that crossed the threshold (event time).")
    windowEnd: AwareDatetime = Field(description="windowStart + windowSeconds.")
    firstOccurredAt: AwareDatetime = Field(description="First failure of this episode (event time).")
    lastOccurredAt: AwareDatetime = Field(description="Latest failure seen for the subject (event time).")
    sampleRequestIds: list[str] = Field(max_length=10, description="Up to 10 requestIds from the window.")
    emittedAt: AwareDatetime = Field(description="Wall-clock time the worker emitted this.")
    supersededBy: str | None = Field(
        default=None,
        description="On a resolved alert: the fingerprint of the firing alert that explains this one from now "
        "on (a caller_repeat handed over to the caller's caller_scan or pair_repeat). Added within v1.",
    )
