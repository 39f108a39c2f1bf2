"""The pieces the checks stand on: names the settings read, endpoints served, commands, interpolation."""

from __future__ import annotations

import pytest

from gateway.config import GatewaySettings
from stream.config import StreamSettings
from tests.deploy import image_checks
from tests.deploy.support import (
    GATEWAY,
    TOPICS,
    WORKER,
    InterpolationError,
    accepted_env_names,
    command_problems,
    interpolate,
    role_of,
    settings_from_env,
)


def test_accepted_env_names_follow_the_settings_classes() -> None:
    gateway = accepted_env_names(GatewaySettings)
    stream = accepted_env_names(StreamSettings)
    assert {"BINDWATCH_PUSH_TOKENS", "BINDWATCH_PORT", "KAFKA_BOOTSTRAP_SERVERS"} <= gateway
    assert {"BINDWATCH_KAFKA_BOOTSTRAP_SERVERS", "BINDWATCH_WEB_PORT", "BINDWATCH_DATA_DIR"} <= stream
    assert "BINDWATCH_WEB_PORT" not in gateway
    assert "BINDWATCH_PUSH_TOKENS" not in stream
    # one name per field, plus the second alias of kafka_bootstrap_servers
    assert len(gateway) == len(GatewaySettings.model_fields) + 1
    assert len(stream) == len(StreamSettings.model_fields) + 1


def test_settings_from_env_reads_only_the_given_environment() -> None:
    settings, error = settings_from_env(WORKER, {"BINDWATCH_WEB_PORT": "7000", "KAFKA_BOOTSTRAP_SERVERS": "k:1"})
    assert error is None and isinstance(settings, StreamSettings)
    assert (settings.web_port, settings.kafka_bootstrap_servers, settings.partitions) == (7000, "k:1", 8)
    _, error = settings_from_env(WORKER, {"BINDWATCH_PARTITIONS": "none"})
    assert error is not None and "partitions" in error
    _, error = settings_from_env(GATEWAY, {})
    assert error is not None and "BINDWATCH_PUSH_TOKENS is empty" in error


def test_served_paths_come_from_the_real_apps(served: dict[str, frozenset[str]]) -> None:
    assert {"/healthz", "/readyz", "/metrics"} <= served["gateway"]
    assert {"/healthz", "/readyz", "/metrics"} <= served["worker"]
    assert "/ready" not in served["gateway"] | served["worker"]


@pytest.mark.parametrize(
    ("command", "role"),
    [
        (["python", "-m", "gateway"], GATEWAY),
        (["faust", "-L", "uvloop", "-A", "stream.app", "worker", "-l", "info"], WORKER),
        (["python", "-m", "stream.admin", "create-topics"], TOPICS),
    ],
)
def test_bindwatch_commands_exist(command: list[str], role: object) -> None:
    assert role_of(command) is role
    assert command_problems(command, "here") == []


@pytest.mark.parametrize(
    ("command", "complaint"),
    [
        (["python", "-m", "gatewayz"], "no such runnable module"),
        (["python", "-m", "stream"], "no such runnable module"),  # a package without __main__
        (["python", "-m", "stream.admin", "create-topic"], "has no command 'create-topic'"),
        (["faust", "-L", "uvloop", "-A", "stream.apps", "worker"], "does not exist"),
        (["faust", "-L", "uvloop", "-A", "stream.app", "workers"], "faust has no command"),
        (["faust", "-L", "uvloop", "-A", "stream.app", "worker", "-l", "loud"], "needs a log level"),
        (["faust", "-A", "stream.app", "worker", "-l", "info"], "without `-L uvloop`"),
        (["faust", "-L", "aio", "-A", "stream.app", "worker"], "runs on uvloop"),
        (["uvicorn", "gateway.app:app"], "none of bindwatch's commands"),
    ],
)
def test_wrong_commands_are_reported(command: list[str], complaint: str) -> None:
    assert any(complaint in p for p in command_problems(command, "here"))


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A}/$B", {"A": "1", "B": "2"}, "1/2"),
        ("$${A}", {"A": "1"}, "${A}"),
        ("${A:?need A}", {"A": "v"}, "v"),
    ],
)
def test_interpolation_follows_compose(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected


def test_required_variable_without_value_is_an_error() -> None:
    with pytest.raises(InterpolationError, match="need A"):
        interpolate({"k": ["${A:?need A}"]}, {"A": ""})


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("gateway/app.py", False),
        ("gateway/__pycache__/app.cpython-311.pyc", True),
        ("requirements/lock.txt", False),
        ("requirements/other.txt", True),
        (".venv/bin/python", True),
        ("tests/unit/test_rules.py", True),
    ],
)
def test_dockerignore_matching(path: str, excluded: bool) -> None:
    patterns = ["*", "!requirements/lock.txt", "!gateway/**", "**/__pycache__"]
    assert image_checks.dockerignore_excludes(patterns, path) is excluded
