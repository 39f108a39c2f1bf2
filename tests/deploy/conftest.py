"""Fixtures for the deployment checks: rendered overlays, the interpolated compose file, served endpoints.

No broker, no Docker, no network: kustomize is the pinned binary in .tools/bin (scripts/install-tools.sh).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.support import OVERLAYS, ROOT, kustomize_build, load_compose, served_paths

# The variables Compose would read from the shell; BINDWATCH_PUSH_TOKENS is required by the file.
COMPOSE_ENV = {"BINDWATCH_PUSH_TOKENS": "compose-test-token", "BINDWATCH_CONSOLE_TOKENS": "compose-console-token"}


@pytest.fixture(scope="session")
def served() -> dict[str, frozenset[str]]:
    return served_paths()


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: kustomize_build(ROOT / "k8s" / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE_ENV)
