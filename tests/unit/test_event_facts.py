"""``BindingFailureFacts``, the stream's read of an event: the event's own types for the fields it reads, the
same values as the full model, and a clear refusal of a record that lacks or mistypes one of them."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from pydantic import ValidationError

from schemas import BindingFailureEvent, decode, encode
from schemas.events import BindingFailureFacts
from stream import bundle
from tests.support.events import event


def test_each_field_has_the_events_type() -> None:
    full = BindingFailureEvent.model_fields
    for name, field in BindingFailureFacts.model_fields.items():
        assert name in full, f"{name} is not a field of BindingFailureEvent"
        assert field.annotation == full[name].annotation, name
        assert field.default == full[name].default, name


@pytest.mark.parametrize("code", [10013, 0])
def test_the_facts_of_an_event_are_the_full_models_values(code: int) -> None:
    raw = encode(event("rid-1", "8613800000001", "8613900000002", timedelta(minutes=3), code))
    full, facts = decode(BindingFailureEvent, raw), decode(BindingFailureFacts, raw)
    for name in BindingFailureFacts.model_fields:
        assert getattr(facts, name) == getattr(full, name), name
    assert bundle.entry_of(facts) == bundle.entry_of(full)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d.pop("caller"), "caller"),
        (lambda d: d.update(occurredAt="2026-12-07T10:00:00"), "occurredAt"),  # no offset: not an instant
        (lambda d: d.update(code="x"), "code"),
        (lambda d: d.update(schemaVersion=2), "schemaVersion"),
    ],
)
def test_a_record_missing_or_mistyping_a_counted_field_is_refused_naming_it(change: object, named: str) -> None:
    doc = orjson.loads(encode(event("rid-1", "8613800000001", "8613900000002", timedelta(minutes=3))))
    change(doc)  # type: ignore[operator]
    with pytest.raises(ValidationError) as caught:
        decode(BindingFailureFacts, orjson.dumps(doc))
    assert named in {str(e["loc"][0]) for e in caught.value.errors()}
