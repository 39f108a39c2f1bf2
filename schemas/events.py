"""Events written by the gateway: the normalised push and the dead-letter record."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from schemas.numbers import normalise_number
from schemas.push import NxcloudPush

SCHEMA_VERSION: Literal[1] = 1


def utc_iso(dt: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` (microseconds only when present): the one time format on every topic."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Contract(BaseModel):
    # Unknown fields are ignored when reading: a v1 reader must accept optional fields added later in v1.
    model_config = ConfigDict(frozen=True, extra="ignore")

    @field_serializer("*", when_used="json")
    def _times(self, v: Any) -> Any:
        return utc_iso(v) if isinstance(v, datetime) else v


class BindingFailureEvent(_Contract):
    """One NXCLOUD push, normalised. Value of ``nxcloud.binding-failures.v1``; key: ``caller``."""

    schemaVersion: Literal[1] = Field(default=SCHEMA_VERSION, description="Payload schema version.")
    requestId: str = Field(description="NXCLOUD requestId as text (never a number: no digits lost).")
    code: int = Field(description="NXCLOUD return code; 10013 means 'binding not exist'.")
    msg: str = Field(description="NXCLOUD return code description.")
    action: str | None = Field(description="NXCLOUD request interface, e.g. queryAXB.")
    caller: str = Field(description="Calling number, normalised: no leading '+' or '00', no separators.")
    callerRaw: str = Field(description="Calling number exactly as pushed.")
    did: str = Field(description="DID (intermediate number X), normalised like caller.")
    didRaw: str = Field(description="DID exactly as pushed.")
    occurredAt: AwareDatetime = Field(description="When the call failed, as a UTC instant.")
    occurrenceTimeRaw: str = Field(description="occurrenceTime exactly as pushed.")
    occurrenceTimeZone: str = Field(description="UTC offset used to read a zone-less occurrenceTime.")
    receivedAt: AwareDatetime = Field(description="When the gateway received the push (UTC).")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Fields NXCLOUD sent that this schema does not name, by dotted path."
    )

    @classmethod
    def from_push(cls, push: NxcloudPush, zone: timezone, received_at: datetime) -> "BindingFailureEvent":
        """Normalise a validated push. ``zone`` interprets an occurrenceTime that has no offset."""
        raw_time = push.data.occurrenceTime
        local = datetime.fromisoformat(raw_time.strip())
        if local.tzinfo is None:
            local = local.replace(tzinfo=zone)
        params = push.data.requestParams
        return cls(
            requestId=push.requestId,
            code=push.code,
            msg=push.msg,
            action=push.data.action,
            caller=normalise_number(params.caller),
            callerRaw=params.caller,
            did=normalise_number(params.did),
            didRaw=params.did,
            occurredAt=local.astimezone(UTC),
            occurrenceTimeRaw=raw_time,
            occurrenceTimeZone=format_offset(zone),
            receivedAt=received_at.astimezone(UTC),
            extra=push.extras(),
        )


class BindingFailureFacts(_Contract):
    """What counting a failure reads of a ``BindingFailureEvent``: the same JSON, validated for these fields
    only, the others ignored (``stream``'s caller stage). Every event on the topic was validated whole by the
    gateway that wrote it; validating all fourteen fields again cost the worker 5.6 us per event, these six
    3.1 (``bench/README.md``, issue 13). The types are the event's, field for field (a unit test holds them
    together), so a record this accepts gives the values the full model would, and a record missing or
    mistyping one of them is refused naming it. ``schemaVersion`` is read so that a future version is
    refused, not miscounted."""

    schemaVersion: Literal[1] = SCHEMA_VERSION
    requestId: str
    code: int
    action: str | None
    caller: str
    did: str
    occurredAt: AwareDatetime


def format_offset(zone: timezone) -> str:
    off = zone.utcoffset(None)
    sign = "-" if off < timedelta(0) else "+"
    minutes = abs(int(off.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class DeadLetterReason(_Contract):
    loc: str = Field(description="Dotted path of the wrong field, or 'body'.")
    msg: str = Field(description="What was wrong.")
    type: str = Field(description="Machine-readable error type.")


class DeadLetterRecord(_Contract):
    """An authenticated push that can never become valid. Value of ``nxcloud.binding-failures.dlq.v1``."""

    schemaVersion: Literal[1] = SCHEMA_VERSION
    receivedAt: AwareDatetime
    sourceAddress: str | None = Field(description="Client address as the gateway saw it (after trusted proxies).")
    contentType: str | None
    requestId: str | None = Field(default=None, description="requestId if one could be read from the body.")
    reasons: list[DeadLetterReason]
    bodyBase64: str = Field(description="The body exactly as received, base64: it may not be UTF-8.")
    bodySize: int
