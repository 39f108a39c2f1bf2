"""Dockerfile and .dockerignore (read, since no Docker engine is here) and the pins the image installs."""

from __future__ import annotations

import subprocess
import sys

from tests.deploy import image_checks
from tests.deploy.support import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()


def test_dockerfile_builds_the_image_it_should() -> None:
    assert image_checks.dockerfile_problems(DOCKERFILE) == []


def test_dockerignore_sends_what_the_dockerfile_copies_and_nothing_private() -> None:
    assert image_checks.dockerignore_problems(DOCKERFILE, DOCKERIGNORE) == []


def test_every_runtime_dependency_is_pinned_in_the_lock() -> None:
    # The image installs bindwatch's dependencies with the lock as constraints: anything outside the lock
    # would be resolved freshly at build time, and deploy/check_pins.py would fail the build.
    closure = image_checks.dependency_closure(["bindwatch"])
    assert {"fastapi", "faust-streaming", "aiokafka", "rocksdict", "uvloop"} <= set(closure)
    assert image_checks.pin_problems(closure) == []


def test_the_deployment_checks_own_tools_are_pinned_in_the_lock() -> None:
    closure = image_checks.dependency_closure(["kubernetes-validate", "jsonschema", "pyyaml", "packaging"])
    assert image_checks.pin_problems(closure) == []


def test_check_pins_script_passes_a_locked_env_and_fails_an_unpinned_one() -> None:
    script = [sys.executable, str(ROOT / "deploy" / "check_pins.py"), str(ROOT / "requirements" / "lock.txt")]
    fastapi = image_checks.lock_pins()["fastapi"]
    good = f"fastapi=={fastapi}\nbindwatch @ file:///src\n"
    ok = subprocess.run(script, input=good, capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    bad = "fastapi==0.163.1\nleftpad==1.0\n"
    failed = subprocess.run(script, input=bad, capture_output=True, text=True, timeout=30, check=False)
    assert failed.returncode == 1
    assert f"fastapi 0.163.1 is installed but the lock file pins {fastapi}" in failed.stderr
    assert "leftpad 1.0 is installed but not pinned" in failed.stderr
