"""Structured logs (schemas.logs) as both services set them up: JSON lines, masked numbers, levels from settings."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mode.utils.logging import setup_logging
from pydantic import SecretStr

from gateway.app import PUSH_PATH, create_app
from gateway.config import GatewaySettings
from gateway.observability import configure_logging
from gateway.publisher import MemoryPublisher
from schemas import logs
from schemas.numbers import mask_number
from stream.config import StreamSettings
from stream.logs import logging_config

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CALLER, DID = "85212345678", "8613800000001"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each test configures the root logger: put back what pytest had (its capture handlers, the level)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger("uvicorn.access")
    access_state = (access.disabled, access.propagate)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        access.disabled, access.propagate = access_state


def lines(out: str) -> list[dict[str, Any]]:
    """Every line of ``out`` parsed as JSON (fails the test on a line that is not)."""
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_a_line_is_one_json_object_with_the_stable_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO")
    logging.getLogger("bindwatch.test").info(
        "push %s", "accepted", extra={"fields": {"requestId": "1640920940635361280", "status": 200}}
    )
    [line] = lines(capsys.readouterr().out)
    assert list(line)[:4] == ["ts", "level", "logger", "msg"]
    assert TS.match(line["ts"]), line["ts"]
    assert line["level"] == "info"
    assert line["logger"] == "bindwatch.test"
    assert line["msg"] == "push accepted"
    assert line["requestId"] == "1640920940635361280"  # fields are flattened into the line
    assert line["status"] == 200
    assert "fields" not in line


def test_an_exception_goes_into_exc_and_plain_extra_keys_are_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO")
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        logging.getLogger("bindwatch.test").exception("failed", extra={"stage": "caller"})
    [line] = lines(capsys.readouterr().out)
    assert line["level"] == "error"
    assert line["stage"] == "caller"
    assert "ZeroDivisionError: boom" in line["exc"]
    assert line["exc"].startswith("Traceback")


@pytest.mark.parametrize("mask", [True, False])
def test_numbers_are_masked_by_mask_number_when_masking_is_on(mask: bool, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", mask_numbers=mask)
    log = logging.getLogger("bindwatch.test")
    log.info("alert", extra={"fields": {"caller": CALLER, "did": DID, "requestId": "12345678901"}})
    log.info("again", extra={"fields": {"caller": mask_number(CALLER)}})  # already masked by the caller
    first, second = lines(capsys.readouterr().out)
    assert first["caller"] == (mask_number(CALLER) if mask else CALLER)
    assert first["did"] == (mask_number(DID) if mask else DID)
    assert first["requestId"] == "12345678901"  # not a number field: never masked
    assert second["caller"] == mask_number(CALLER)
    if mask:
        assert CALLER not in json.dumps(first)
        assert first["caller"].endswith(CALLER[-4:])


@pytest.mark.parametrize(
    ("level", "shown"),
    [("DEBUG", ["debug", "info", "warning"]), ("info", ["info", "warning"]), ("WARN", ["warning"])],
)
def test_the_level_setting_filters(level: str, shown: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(level)
    log = logging.getLogger("bindwatch.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    assert [line["level"] for line in lines(capsys.readouterr().out)] == shown


def test_an_unknown_level_is_refused_with_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="DEBUG, INFO, WARNING, ERROR or CRITICAL"):
        logs.dict_config("LOUD")


def test_gateway_logs_its_pushes_and_uvicorns_lines_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    settings = GatewaySettings(push_tokens=SecretStr("t0k3n"), log_level="INFO")
    configure_logging(settings.log_level, mask_numbers=settings.mask_numbers_in_logs)
    logging.getLogger("uvicorn.error").info("Started server process", extra={"color_message": "\x1b[1mStarted"})
    logging.getLogger("uvicorn.access").info("GET /?token=t0k3n")  # disabled: it would print the token
    body = {
        "code": 10013,
        "msg": "binding not exist",
        "requestId": "1640920940635361280",
        "data": {
            "action": "queryAXB",
            "requestParams": {"caller": CALLER, "did": DID},
            "occurrenceTime": "2023-03-29 11:36:53",
        },
    }
    with TestClient(create_app(settings, MemoryPublisher())) as client:
        assert client.post(f"{PUSH_PATH}?token=t0k3n", json=body).status_code == 200
    # The test's own HTTP client (httpx) logs the URL it called; the gateway's lines are the others.
    parsed = [p for p in lines(capsys.readouterr().out) if p["logger"] != "httpx"]
    out = json.dumps(parsed)
    assert {"logger": "uvicorn.error", "msg": "Started server process"}.items() <= parsed[0].items()
    assert "color_message" not in parsed[0]
    [push] = [p for p in parsed if p["logger"] == "bindwatch.gateway"]
    assert push["msg"] == "push accepted"
    assert push["caller"] == mask_number(CALLER)
    assert push["did"] == mask_number(DID)
    assert CALLER not in out and DID not in out and "t0k3n" not in out


@pytest.mark.parametrize(("level", "mask"), [("INFO", True), ("WARNING", False)])
def test_the_worker_config_is_applied_the_way_faust_applies_it(
    level: str, mask: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """``faust worker`` hands the app's ``logging_config`` to mode's ``setup_logging`` (its ``-l`` level only
    shapes the default config that this one replaces): Faust's loggers and ours come out as JSON, at the
    worker's own ``BINDWATCH_LOG_LEVEL``."""
    settings = StreamSettings(log_level=level, mask_numbers_in_logs=mask)
    setup_logging(loglevel="debug", logging_config=logging_config(settings))
    logging.getLogger("faust.worker").info("[^Worker]: Starting...")
    logging.getLogger("bindwatch.stream").warning("alert firing", extra={"fields": {"caller": CALLER}})
    parsed = lines(capsys.readouterr().out)
    assert [p["logger"] for p in parsed] == (["faust.worker"] if level == "INFO" else []) + ["bindwatch.stream"]
    assert parsed[-1]["caller"] == (mask_number(CALLER) if mask else CALLER)


def test_the_stream_app_hands_its_logging_config_to_faust() -> None:
    from stream.app import create_app as create_stream_app

    settings = StreamSettings(log_level="ERROR", app_id="logs-unit")
    conf = create_stream_app(settings).conf.logging_config
    assert conf["root"]["level"] == "ERROR"
    assert conf["formatters"]["json"]["()"] is logs.JsonFormatter
