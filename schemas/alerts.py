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
    BINDING_OUTAGE = "binding_outage"
    """Failures across many callers far above the trailing hour's level: bindings broke at large
    (the customer's binding integration, early expiry, an NXCLOUD incident). ``caller`` and ``did`` are null."""


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
    caller: str | None = Field(description="Caller number, or null for did_hot and binding_outage.")
    did: str | None = Field(description="DID, or null for caller_repeat, caller_scan and binding_outage.")
    count: int = Field(
        description="Failures in the window (for caller_scan: failures by the caller; for binding_outage: new "
        "failures of all callers)."
    )
    distinctDids: int | None = Field(
        default=None, description="Distinct DIDs that failed in the window (caller_scan and binding_outage only)."
    )
    threshold: int
    windowSeconds: int
    windowStart: AwareDatetime = Field(description="Start of the window that crossed the threshold (event time).")
    windowEnd: AwareDatetime = Field(description="windowStart + windowSeconds.")
    firstOccurredAt: AwareDatetime = Field(description="First failure of this episode (event time).")
    lastOccurredAt: AwareDatetime = Field(description="Latest failure seen for the subject (event time).")
    sampleRequestIds: list[str] = Field(
        max_length=10, description="Up to 10 requestIds from the window (none for binding_outage)."
    )
    emittedAt: AwareDatetime = Field(description="Wall-clock time the worker emitted this.")
    # --- added within v1 (optional: records written before them stay on the topic) ---------------------------
    supersededBy: str | None = Field(
        default=None,
        description="On a resolved alert: the fingerprint of the firing alert that explains this one from now "
        "on (a caller_repeat handed over to the caller's caller_scan or pair_repeat). Added within v1.",
    )
    outageFingerprint: str | None = Field(
        default=None,
        description="On a per-number alert emitted while a binding_outage is firing: that outage's fingerprint "
        "(route or suppress the alert with it); null otherwise, and always null on binding_outage itself.",
    )
    distinctCallers: int | None = Field(
        default=None, description="Distinct callers that failed in the window (binding_outage only)."
    )
    baseline: float | None = Field(
        default=None,
        description="binding_outage only: the usual failures per window, the median of the trailing hour's "
        "5-minute totals; `threshold` is max(the configured floor, factor x baseline).",
    )
