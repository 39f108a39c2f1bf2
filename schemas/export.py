"""The JSON Schemas of the public contracts, generated from the models: ``python -m schemas.export [--check]``.

Without arguments it (re)writes ``schemas/json/*.schema.json``; with ``--check`` it writes nothing and exits 1
when a committed file differs from what the models generate (CI runs the same comparison in
``tests/unit/test_contracts.py``).

Topic values are described as consumers read them (pydantic's serialisation mode: what ``schemas.codec.encode``
writes): every datetime is an ISO-8601 UTC string ending in ``Z``, and unknown properties are allowed (a v1
reader must accept fields added later within v1; the producers themselves never write one). The NXCLOUD push
is described as the gateway reads it (validation mode). Schemas are JSON Schema draft-07, the dialect AsyncAPI
3.0 payloads and most validators in other languages understand.

Which fields are ``required`` is part of the v1 contract, not a by-product of Python defaults: each contract's
``v1_fields`` are in every record since the topic began. A field added later within v1 must have a default
and is listed as optional, because records written before it stay on the topics; removing a v1 field is a
breaking change that needs ``*.v2`` topics (schemas/README.md). Both rules are enforced here.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import core_schema

from schemas.alerts import Alert
from schemas.codec import schema_id
from schemas.events import BindingFailureEvent, DeadLetterRecord, _Contract
from schemas.overview import Overview
from schemas.push import NxcloudPush

JSON_DIR = Path(__file__).resolve().parent / "json"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
UTC_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?Z$"
"""What ``schemas.events.utc_iso`` writes: seconds, microseconds only when non-zero, always ``Z``."""


class ContractError(ValueError):
    """A model change that the versioning policy (schemas/README.md) does not allow within v1."""


@dataclass(frozen=True)
class Contract:
    model: type[BaseModel]
    filename: str
    mode: JsonSchemaMode
    v1_fields: frozenset[str] | None = None
    """Fields every v1 record carries (required); ``None``: pydantic's rule (required unless defaulted)."""

    @property
    def schema_uri(self) -> str:
        return f"urn:bindwatch:schema:{self.filename.removesuffix('.schema.json')}"

    @property
    def path(self) -> Path:
        return JSON_DIR / self.filename


CONTRACTS: tuple[Contract, ...] = (
    Contract(
        BindingFailureEvent,
        "binding-failure-event.v1.schema.json",
        "serialization",
        frozenset(
            "schemaVersion requestId code msg action caller callerRaw did didRaw occurredAt occurrenceTimeRaw "
            "occurrenceTimeZone receivedAt extra".split()
        ),
    ),
    Contract(
        DeadLetterRecord,
        "dead-letter-record.v1.schema.json",
        "serialization",
        frozenset("schemaVersion receivedAt sourceAddress contentType requestId reasons bodyBase64 bodySize".split()),
    ),
    Contract(
        Alert,
        "alert.v1.schema.json",
        "serialization",
        frozenset(
            "schemaVersion alertId fingerprint rule status severity caller did count distinctDids threshold "
            "windowSeconds windowStart windowEnd firstOccurredAt lastOccurredAt sampleRequestIds emittedAt".split()
        ),
    ),
    Contract(
        Overview,
        "overview.v1.schema.json",
        "serialization",
        frozenset("schemaVersion generatedAt minutes outage topCallers topDids firingAlerts partitions".split()),
    ),
    Contract(NxcloudPush, "nxcloud-push.schema.json", "validation"),
)


class _Generator(GenerateJsonSchema):
    """pydantic's generator, told what ``_Contract._times`` does and without auto-made field titles."""

    def ser_schema(
        self, schema: core_schema.SerSchema | core_schema.IncExSeqSerSchema | core_schema.IncExDictSerSchema
    ) -> JsonSchemaValue | None:
        # _times declares `-> Any` because it applies to every field; it changes only datetimes (to UTC 'Z'
        # strings, see datetime_schema), so each field keeps the shape of its own type.
        if schema.get("function") is _Contract._times:
            return None
        return super().ser_schema(schema)

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        out = super().datetime_schema(schema)
        if self.mode == "serialization":
            out["pattern"] = UTC_TIMESTAMP
        return out

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # "Requestid" and the like say nothing the property name does not


def _draft7(node: Any) -> Any:
    """pydantic writes draft 2020-12; the subset it uses maps onto draft-07 by renaming ``$defs``."""
    if isinstance(node, list):
        return [_draft7(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {("definitions" if k == "$defs" else k): _draft7(v) for k, v in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str):
        out["$ref"] = ref.replace("#/$defs/", "#/definitions/")
        if len(out) > 1:  # draft-07 ignores keywords beside $ref: keep them effective
            out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _tolerant(node: Any) -> Any:
    """Drop ``additionalProperties: false``: a v1 reader must accept fields added later within v1."""
    if isinstance(node, list):
        return [_tolerant(v) for v in node]
    if not isinstance(node, dict):
        return node
    return {k: _tolerant(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}


def _required(contract: Contract, generated: list[str]) -> list[str]:
    if contract.v1_fields is None:
        return generated
    fields = contract.model.model_fields
    name = contract.model.__name__
    removed = sorted(contract.v1_fields - fields.keys())
    if removed:
        raise ContractError(
            f"{name} no longer has v1 field(s) {removed}: removing or renaming a field is a breaking change; "
            "publish a v2 schema on new *.v2 topics instead (schemas/README.md)"
        )
    added = [f for f in fields if f not in contract.v1_fields and fields[f].is_required()]
    if added:
        raise ContractError(
            f"{name} field(s) {added} were added without a default: within v1 a new field must be optional, "
            "because records written before it stay on the topic (schemas/README.md)"
        )
    return [f for f in fields if f in contract.v1_fields]


def build(contract: Contract) -> dict[str, Any]:
    """The JSON Schema document for one contract."""
    body = _draft7(contract.model.model_json_schema(mode=contract.mode, schema_generator=_Generator))
    if contract.mode == "serialization":
        body = _tolerant(body)
    body["required"] = _required(contract, body.get("required", []))
    source = f"{contract.model.__module__}.{contract.model.__qualname__}"
    head: dict[str, Any] = {
        "$schema": DRAFT_07,
        "$id": contract.schema_uri,
        "$comment": f"Generated from {source} ({contract.mode} mode) by `python -m schemas.export`; do not edit.",
    }
    if "schemaVersion" in contract.model.model_fields:
        head["$comment"] += f" Kafka header schema={schema_id(contract.model)}."
    return {**head, **body}


def render(contract: Contract) -> str:
    return json.dumps(build(contract), indent=2, ensure_ascii=False) + "\n"


def drift() -> list[str]:
    """One message per committed file that differs from the models (or is missing, or is not generated)."""
    problems: list[str] = []
    for c in CONTRACTS:
        want = render(c)
        have = c.path.read_text(encoding="utf-8") if c.path.exists() else None
        if have is None:
            problems.append(f"{c.path.name}: missing")
        elif have != want:
            diff = difflib.unified_diff(have.splitlines(), want.splitlines(), "committed", "generated", lineterm="")
            problems.append(f"{c.path.name}: differs from {c.model.__name__}\n" + "\n".join(list(diff)[:40]))
    known = {c.filename for c in CONTRACTS}
    stray = [p.name for p in sorted(JSON_DIR.glob("*.schema.json")) if p.name not in known]
    return problems + [f"{name}: not generated from any model (delete it, or add its model)" for name in stray]


def write() -> list[Path]:
    JSON_DIR.mkdir(exist_ok=True)
    written = []
    for c in CONTRACTS:
        text = render(c)
        if not c.path.exists() or c.path.read_text(encoding="utf-8") != text:
            c.path.write_text(text, encoding="utf-8")
            written.append(c.path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a committed file drifted")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = drift()
            for p in problems:
                print(f"schemas/json/{p}", file=sys.stderr)
            if problems:
                print("run `python -m schemas.export` and commit the result", file=sys.stderr)
                return 1
            print(f"schemas/json: {len(CONTRACTS)} schemas match the models")
            return 0
        written = write()
    except ContractError as exc:
        print(f"schemas.export: {exc}", file=sys.stderr)
        return 2
    print(f"schemas/json: {len(written)} of {len(CONTRACTS)} files rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
