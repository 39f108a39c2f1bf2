"""Structured logs for both services: one JSON object per line, through python-json-logger.

Both the gateway and the stream worker format every record of the process (their own, uvicorn's, Faust's,
mode's, aiokafka's) with ``JsonFormatter``, installed as the root logger's one handler by ``dict_config``.
This module imports only the standard library, python-json-logger and ``schemas.numbers``, so that neither
service pulls the other's framework through it.

The fields of a line, stable for log queries::

    {"ts": "2026-01-15T11:00:00.123Z", "level": "info", "logger": "bindwatch.gateway", "msg": "push accepted",
     ...structured fields..., "exc": "Traceback ..."}

Structured fields come from ``log.info("...", extra={"fields": {...}})`` (flattened into the line) or from
plain ``extra={...}`` keys. Phone numbers are personal data: with masking on, the fields in
``NUMBER_FIELDS`` go through ``schemas.numbers.mask_number`` here, whatever the caller did (the function
keeps the length, so masking an already masked number changes nothing).
"""

from __future__ import annotations

import logging
import logging.config
import sys
import time
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from schemas.numbers import mask_number

NUMBER_FIELDS = frozenset({"caller", "did", "callerRaw", "didRaw", "number"})
"""Structured fields that hold a phone number: masked in every line when masking is on."""

_DROPPED = frozenset({"color_message"})  # uvicorn's ANSI-coloured copy of the message


def level_name(level: str | int) -> str:
    """``"info"``, ``"WARN"``, ``20`` -> the logging module's name (``"INFO"``, ``"WARNING"``, ``"INFO"``);
    a ``ValueError`` saying what is accepted when it is none."""
    if isinstance(level, int):
        return logging.getLevelName(level)
    name = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level.strip().upper(), level.strip().upper())
    if name not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError(f"log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return name


class JsonFormatter(OrjsonFormatter):
    """The one formatter of both services (see the module docstring for the fields)."""

    def __init__(self, *, mask_numbers: bool = True) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "message": "msg", "exc_info": "exc"},
            reserved_attrs=[*RESERVED_ATTRS, *_DROPPED],
        )
        self.mask_numbers = mask_numbers

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        created = log_data.pop("_created", None)
        fields = log_data.pop("fields", None)
        if isinstance(fields, dict):
            log_data.update(fields)
        if self.mask_numbers:
            for key in NUMBER_FIELDS & log_data.keys():
                if isinstance(log_data[key], str):
                    log_data[key] = mask_number(log_data[key])
        level = log_data.pop("level", None)
        head = {
            "ts": created,
            "level": level.lower() if isinstance(level, str) else level,
            "logger": log_data.pop("logger", None),
            "msg": log_data.pop("msg", None),
        }
        return {**head, **log_data}

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["_created"] = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        )


def dict_config(level: str | int, *, mask_numbers: bool = True) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` that sends every record at ``level`` or above to stdout as JSON.

    Loggers that exist already keep working (``disable_existing_loggers`` is off).
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "mask_numbers": mask_numbers}},
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stdout}},
        "root": {"level": level_name(level), "handlers": ["stdout"]},
    }


def configure(level: str | int, *, mask_numbers: bool = True) -> None:
    """Apply ``dict_config`` to this process (replaces the root logger's handlers)."""
    logging.config.dictConfig(dict_config(level, mask_numbers=mask_numbers))
