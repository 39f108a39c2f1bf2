"""What the console reads of an alert record: ``schemas.alerts.Alert``, read tolerantly.

The console must show every alert the workers write, including ones from a newer producer within v1: a rule
added later (``binding_outage``) and additive fields (``outageFingerprint``, ``supersededBy``, and whatever comes
next). ``schemas.alerts.Alert`` validates ``rule`` against today's enum and would drop such a record, so the
console reads the same JSON (through ``schemas.codec.decode``, the one path) into this model: ``rule`` and
``severity`` as text, unknown fields kept. ``tests/unit/test_console.py`` checks that every alert the real rules
emit reads back here with the same values, so the two cannot drift apart silently.
"""

from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.alerts import AlertStatus

OUTAGE_RULE = "binding_outage"
"""The rule of the one alert that names a binding outage (issue 14); per-number alerts point to it."""


class AlertChange(BaseModel):
    """One change of one alert, as written to ``bindwatch.alerts.v1`` (key: ``fingerprint``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schemaVersion: int
    alertId: str
    fingerprint: str
    rule: str
    status: AlertStatus
    severity: str
    caller: str | None
    did: str | None
    count: int
    distinctDids: int | None = None
    threshold: int
    windowSeconds: int
    windowStart: AwareDatetime
    windowEnd: AwareDatetime
    firstOccurredAt: AwareDatetime
    lastOccurredAt: AwareDatetime
    sampleRequestIds: list[str]
    emittedAt: AwareDatetime
    outageFingerprint: str | None = None
    """The binding outage this per-number alert belongs to (added by the outage work; absent before)."""
    supersededBy: str | None = None
    """The fingerprint of the alert that explains this one (added by the alert-noise work; absent before)."""

    @property
    def outage(self) -> str | None:
        """The outage this alert is part of: its own fingerprint for the outage alert, else the one it names."""
        return self.fingerprint if self.rule == OUTAGE_RULE else self.outageFingerprint
