"""The published contracts as tests read them: committed JSON Schemas, the AsyncAPI document, the vendored spec.

Everything resolves offline: the AsyncAPI 3.0.0 JSON Schema is vendored (schemas/vendor/) and its ``$ref``s
are served from a local ``referencing`` registry; nothing is fetched.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator
from pydantic import BaseModel
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from schemas.export import CONTRACTS, Contract

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = ROOT / "schemas"
ASYNCAPI = SCHEMAS_DIR / "asyncapi.yaml"
ASYNCAPI_SPEC = SCHEMAS_DIR / "vendor" / "asyncapi-3.0.0.schema.json"


def contract(model: type[BaseModel]) -> Contract:
    [c] = [c for c in CONTRACTS if c.model is model]
    return c


def committed_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(contract(model).path.read_text(encoding="utf-8"))
    return schema


def value_validator(model: type[BaseModel]) -> Draft7Validator:
    """Validator for the committed JSON Schema of ``model`` (what a consumer in another language would use)."""
    return file_validator(contract(model).path)


def file_validator(path: Path) -> Draft7Validator:
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def errors(validator: Draft7Validator, instance: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(instance)]


@cache
def _asyncapi_text() -> str:
    return ASYNCAPI.read_text(encoding="utf-8")


def asyncapi_document() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(_asyncapi_text())
    return doc


def asyncapi_spec_validator() -> Draft7Validator:
    """The official AsyncAPI 3.0.0 JSON Schema, with every ``$ref`` resolved from the vendored bundle."""
    spec = json.loads(ASYNCAPI_SPEC.read_text(encoding="utf-8"))
    registry: Registry[Any] = (Resource.from_contents(spec, default_specification=DRAFT7) @ Registry()).crawl()
    return Draft7Validator(spec, registry=registry)


def local(doc: dict[str, Any], ref: str) -> Any:
    """Follow a document-local ``#/a/b`` reference."""
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and set(node) == {"$ref"} and node["$ref"].startswith("#/"):
        node = local(doc, node["$ref"])
    return node


def schema_validator(doc: dict[str, Any], schema: Any) -> Draft7Validator:
    """Validator for a schema written in the AsyncAPI document (headers, keys), local refs followed."""
    resolved = deref(doc, schema)
    Draft7Validator.check_schema(resolved)
    return Draft7Validator(resolved)


def kafka_channels(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Channels on the Kafka server, by address (the topic name)."""
    out = {}
    for ch in doc["channels"].values():
        if {"$ref": "#/servers/kafka"} in ch.get("servers", []):
            out[ch["address"]] = ch
    return out


def channel_message(doc: dict[str, Any], channel: dict[str, Any]) -> dict[str, Any]:
    [msg] = channel["messages"].values()
    message: dict[str, Any] = deref(doc, msg)
    return message


def payload_path(message: dict[str, Any]) -> Path:
    ref: str = message["payload"]["schema"]["$ref"]
    return (ASYNCAPI.parent / ref).resolve()
