"""docker-compose.yml: valid against the Compose specification, and agrees with the code."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from gateway.connections import FD_RESERVE
from tests.deploy import compose_checks
from tests.deploy.support import InterpolationError, load_compose


def test_compose_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    assert compose_checks.schema_problems(compose) == []


def test_compose_agrees_with_the_code(compose: dict[str, Any], served: dict[str, frozenset[str]]) -> None:
    assert compose_checks.compose_problems(compose, served) == []


def test_compose_refuses_to_start_without_push_tokens() -> None:
    with pytest.raises(InterpolationError, match="BINDWATCH_PUSH_TOKENS"):
        load_compose({})


def test_vendored_compose_schema_is_the_recorded_file() -> None:
    readme = (compose_checks.COMPOSE_SCHEMA.parent / "README.md").read_text()
    recorded = re.search(r"sha256 `([0-9a-f]{64})`", readme)
    assert recorded is not None
    assert hashlib.sha256(compose_checks.COMPOSE_SCHEMA.read_bytes()).hexdigest() == recorded.group(1)


def test_the_gateway_container_has_the_open_files_its_connection_limit_assumes(compose: dict[str, Any]) -> None:
    """gateway/connections.py holds up to BINDWATCH_MAX_CONNECTIONS sockets plus a reserve: the container's nofile
    limit must allow that, or the limit is lowered at start (with a warning) and the figures in the docs are wrong."""
    gw = compose["services"]["gateway"]
    nofile = gw["ulimits"]["nofile"]
    wanted = int(gw["environment"]["BINDWATCH_MAX_CONNECTIONS"])
    assert int(nofile["soft"]) >= wanted + FD_RESERVE and int(nofile["hard"]) >= int(nofile["soft"])
