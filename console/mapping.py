"""An alert change as an Alertmanager API v2 alert (``POST /api/v2/alerts``). Pure: explicit clock, no I/O.

Labels identify an alert in Alertmanager, so they hold only what is stable for one problem: ``alertname``
(``BindingFailure`` + the rule in CamelCase, e.g. ``BindingFailureCallerRepeat``), ``rule``, ``severity``,
``fingerprint``, ``caller`` / ``did`` (when the rule has one), ``outage`` (the outage fingerprint: the alert's own
for ``binding_outage``, the one a per-number alert names during an outage; the shipped ``inhibit_rules`` mute
per-number alerts whose ``outage`` equals a firing outage's), then the static extra labels (which never
override the ones above). Counts and times change on every update, so they are annotations.
"""

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from console.config import ConsoleSettings
from console.records import OUTAGE_RULE, AlertChange
from schemas.alerts import AlertStatus
from schemas.numbers import mask_number

ALERTNAME_PREFIX = "BindingFailure"
CORE_LABELS = ("alertname", "rule", "severity", "fingerprint", "caller", "did", "outage")
KEEP_ALIVE_FACTOR = 4
"""A firing alert's ``endsAt`` is now + this times the resend interval: Alertmanager resolves it by itself only
after several resends were missed (the console is down), never between two of them."""


def alertname(rule: str) -> str:
    return ALERTNAME_PREFIX + "".join(part.capitalize() for part in rule.split("_"))


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _number(n: str | None, mask: bool) -> str | None:
    return mask_number(n) if mask else n


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def summary(a: AlertChange, mask: bool) -> str:
    caller, did = _number(a.caller, mask), _number(a.did, mask)
    window = _minutes(a.windowSeconds)
    subject = {
        "caller_repeat": f"caller {caller} hit 'binding not exist' {a.count} times",
        "did_hot": f"DID {did} hit 'binding not exist' {a.count} times",
        "pair_repeat": f"caller {caller} dialled DID {did} without a binding {a.count} times",
        "caller_scan": f"caller {caller} dialled {a.distinctDids} DIDs without a binding",
        OUTAGE_RULE: f"binding outage: {a.count} 'binding not exist' failures",
    }.get(a.rule, f"{a.rule}: {a.count} failures (caller {caller}, DID {did})")
    return f"{subject} in {window} (threshold {a.threshold}, {a.severity})"


def description(a: AlertChange, mask: bool) -> str:
    lines = [
        f"Rule {a.rule}: {a.count} failures in a {_minutes(a.windowSeconds)} window "
        f"({_iso(a.windowStart)} to {_iso(a.windowEnd)}), threshold {a.threshold}.",
        f"First failure of this episode {_iso(a.firstOccurredAt)}, latest {_iso(a.lastOccurredAt)}.",
    ]
    if a.distinctDids is not None:
        lines.append(f"Distinct DIDs: {a.distinctDids}.")
    if a.outageFingerprint:
        lines.append(f"Part of binding outage {a.outageFingerprint}.")
    if a.supersededBy:
        lines.append(f"Explained from now on by {a.supersededBy}: follow that alert instead.")
    if a.sampleRequestIds:
        lines.append("Sample requestIds: " + ", ".join(a.sampleRequestIds) + ".")
    if a.status is AlertStatus.RESOLVED:
        lines.append(f"Resolved at {_iso(a.emittedAt)}.")
    return "\n".join(lines)


def generator_url(a: AlertChange, s: ConsoleSettings) -> str:
    base = s.worker_query_url.rstrip("/")
    if s.notify_mask_numbers:
        return base  # a masked number would be a broken link; the labels carry the fingerprint
    if a.caller is not None:
        return f"{base}/v1/callers/{quote(a.caller, safe='')}"
    if a.did is not None:
        return f"{base}/v1/dids/{quote(a.did, safe='')}"
    return f"{base}/v1/overview"


def labels(a: AlertChange, s: ConsoleSettings) -> dict[str, str]:
    mask = s.notify_mask_numbers
    out = {k: v for k, v in s.alertmanager_extra_labels.items() if k not in CORE_LABELS}
    out |= {"alertname": alertname(a.rule), "rule": a.rule, "severity": a.severity, "fingerprint": a.fingerprint}
    caller, did, outage = _number(a.caller, mask), _number(a.did, mask), a.outage
    if caller:
        out["caller"] = caller
    if did:
        out["did"] = did
    if outage:
        out["outage"] = outage
    return out


def to_alertmanager(a: AlertChange, s: ConsoleSettings, now: datetime, ended: datetime | None = None) -> dict[str, Any]:
    """The API v2 ``postableAlert`` for this change, sent at ``now`` (UTC-aware); ``ended`` forces an end time
    (for a label set the alert no longer has)."""
    mask = s.notify_mask_numbers
    if ended is not None:
        ends = ended
    elif a.status is AlertStatus.FIRING:
        ends = now + timedelta(seconds=KEEP_ALIVE_FACTOR * s.alertmanager_resend_seconds)
    else:
        ends = a.emittedAt
    starts = min(a.firstOccurredAt, ends)  # Alertmanager rejects endsAt before startsAt
    annotations = {"summary": summary(a, mask), "description": description(a, mask)}
    if s.runbook_url:
        annotations["runbook_url"] = s.runbook_url.replace("{rule}", a.rule)
    if a.supersededBy:  # an annotation, not a label: labels identify the alert, and this one just ended
        annotations["superseded_by"] = a.supersededBy
    return {
        "labels": labels(a, s),
        "annotations": annotations,
        "startsAt": _iso(starts),
        "endsAt": _iso(ends),
        "generatorURL": generator_url(a, s),
    }
