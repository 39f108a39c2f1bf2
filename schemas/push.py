"""The NXCLOUD "binding not exist" push, as received (contract: shared/spec/nxcloud-binding-failure-push.md).

The model is lenient where NXCLOUD could plausibly vary (unknown extra fields are kept, numbers may arrive
as JSON numbers, a ``requestId`` may be a string or an integer) and strict where a value would otherwise be
silently wrong (a ``requestId`` given as a float has already lost digits; a time that is not a time).
"""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

MAX_ID_LENGTH = 128
MAX_NUMBER_LENGTH = 64
MIN_YEAR, MAX_YEAR = 1971, 9998


class PushValidationError(ValueError):
    """A push body that can never become valid. ``errors`` names each wrong field."""

    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{e['loc']}: {e['msg']}" for e in errors))

    @classmethod
    def from_pydantic(cls, exc: ValidationError) -> "PushValidationError":
        return cls(
            [
                {
                    "loc": ".".join(str(p) for p in e["loc"]) or "body",
                    "msg": e["msg"],
                    "type": e["type"],
                }
                for e in exc.errors(include_url=False, include_input=False)
            ]
        )


def _identifier(value: Any) -> Any:
    """Accept a string or an integer as an identifier, exactly; refuse what loses or fakes digits."""
    if isinstance(value, bool):
        raise ValueError("must be a string or an integer, not a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueError("must be a string or an integer; a decimal or exponent number may have lost digits")
    if isinstance(value, str):
        s = value.strip()
        if not s:
            raise ValueError("must not be empty")
        return s
    raise ValueError(f"must be a string or an integer, not {type(value).__name__}")


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


def _number_text(value: Any) -> Any:
    """A phone number given as a string or a JSON integer; kept as text."""
    if isinstance(value, bool):
        raise ValueError("must be a phone number string, not a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        return value
    raise ValueError(f"must be a phone number string, not {type(value).__name__}")


def _time_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"must be a time string like '2023-03-29 11:36:53', not {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"must be a time like '2023-03-29 11:36:53', got {value[:40]!r}") from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        # Outside this range the UTC instant or the Kafka timestamp cannot be represented.
        raise ValueError(f"must be a time between the years {MIN_YEAR} and {MAX_YEAR}, got {value[:40]!r}")
    return value


Identifier = Annotated[str, BeforeValidator(_identifier), Field(max_length=MAX_ID_LENGTH)]
NumberText = Annotated[str, BeforeValidator(_number_text), Field(max_length=MAX_NUMBER_LENGTH)]
TimeText = Annotated[str, BeforeValidator(_time_text), Field(max_length=64)]


DEMO_PUSH: dict[str, Any] = {
    "code": 10013,
    "msg": "binding not exist",
    "requestId": "1640920940635361280",
    "data": {
        "action": "queryAXB",
        "requestParams": {"caller": "852121199", "did": "85299999999"},
        "occurrenceTime": "2023-03-29 11:36:53",
    },
}
"""The push demo from NXCLOUD's contract."""


class RequestParams(BaseModel):
    """The numbers of the failed call."""

    model_config = ConfigDict(extra="allow", frozen=True)

    caller: NumberText = Field(description="Calling number (A), international digits.")
    did: NumberText = Field(description="DID: the intermediate number X the caller dialled.")


class PushData(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    action: str | None = Field(default=None, max_length=256, description="Request interface, e.g. queryAXB.")
    requestParams: RequestParams
    occurrenceTime: TimeText = Field(description="Local time without zone, e.g. '2023-03-29 11:36:53'.")


class NxcloudPush(BaseModel):
    """One push as NXCLOUD sends it. Unknown fields at any level are kept (``model_extra``)."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        json_schema_extra={"examples": [DEMO_PUSH]},
    )

    code: Annotated[int, BeforeValidator(_no_bool)] = Field(
        description="Return code; 10013 is 'binding not exist'. An integer, or digits in a string."
    )
    msg: str = Field(default="", max_length=1024)
    requestId: Identifier = Field(description="Request ID; a string or an integer, kept exactly as text.")
    data: PushData

    def extras(self) -> dict[str, Any]:
        """Unknown fields at every level, by dotted path, so that nothing NXCLOUD adds is lost."""
        out: dict[str, Any] = {}
        for prefix, model in (
            ("", self),
            ("data.", self.data),
            ("data.requestParams.", self.data.requestParams),
        ):
            for k, v in (model.model_extra or {}).items():
                out[prefix + k] = v
        return out
