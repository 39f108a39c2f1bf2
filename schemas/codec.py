"""The one serialisation path for topic values: pydantic JSON in, pydantic JSON out."""

from typing import TypeVar

from pydantic import BaseModel

from schemas.topics import HEADER_CONTENT_TYPE, HEADER_REQUEST_ID, HEADER_SCHEMA

M = TypeVar("M", bound=BaseModel)


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


def decode(cls: type[M], data: bytes | str) -> M:
    """Parse and validate; raises ``pydantic.ValidationError`` naming the wrong fields."""
    return cls.model_validate_json(data)


def schema_id(cls: type[BaseModel]) -> str:
    version = cls.model_fields["schemaVersion"].default
    return f"bindwatch.{cls.__name__}/{version}"


def headers(model: BaseModel, request_id: str | None = None) -> list[tuple[str, bytes]]:
    """Kafka headers every record carries: its schema and version, and the requestId where there is one."""
    out = [
        (HEADER_SCHEMA, schema_id(type(model)).encode()),
        (HEADER_CONTENT_TYPE, b"application/json"),
    ]
    if request_id is not None:
        out.append((HEADER_REQUEST_ID, request_id.encode()))
    return out
