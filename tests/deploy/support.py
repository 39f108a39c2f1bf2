"""What the deployment checks know about the code: settings, commands, endpoints; and how files are loaded.

Everything here is derived from the program itself (the settings classes, the FastAPI and Faust apps, the
modules and console scripts in the venv), so the checks follow the code instead of a copy of it.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from fastapi.testclient import TestClient
from pydantic import AliasChoices, AliasPath, ValidationError
from pydantic_settings import BaseSettings

from console import ConfigError as ConsoleConfigError
from console.app import create_app as create_console_app
from console.config import ConsoleSettings
from console.service import ConsoleState
from gateway import ConfigError
from gateway.app import create_app as create_gateway_app
from gateway.config import GatewaySettings
from gateway.publisher import MemoryPublisher
from stream.config import StreamSettings

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / ".tools" / "bin" / "kustomize"
OVERLAYS = ("dev", "prod")
KAFKA_VERSION = (ROOT / "scripts" / "KAFKA_VERSION").read_text().strip()
LOG_LEVELS = frozenset({"debug", "info", "warn", "warning", "error", "critical"})


Settings = GatewaySettings | StreamSettings | ConsoleSettings


@dataclass(frozen=True)
class Role:
    """One way the image is run: which settings class reads its environment and which port it serves."""

    name: str
    settings_cls: type[GatewaySettings] | type[StreamSettings] | type[ConsoleSettings]
    port_field: str | None  # the settings field holding the HTTP port; None for one-shot commands
    long_running: bool


GATEWAY = Role("gateway", GatewaySettings, "port", True)
WORKER = Role("worker", StreamSettings, "web_port", True)
TOPICS = Role("topics", StreamSettings, None, False)
CONSOLE = Role("console", ConsoleSettings, "port", True)
LONG_RUNNING = (GATEWAY, WORKER, CONSOLE)
ALERTMANAGER_VERSION = re.search(
    r"^ALERTMANAGER_VERSION=(\S+)", (ROOT / "scripts" / "install-tools.sh").read_text(), re.M
).group(1)  # type: ignore[union-attr]
"""The Alertmanager the console's integration tests run; compose must run the same one."""


def role_of(command: list[str]) -> Role | None:
    """The role a container plays, from its command; None for a command bindwatch does not have."""
    if command[:3] == ["python", "-m", "gateway"]:
        return GATEWAY
    if command[:1] == ["faust"] and faust_app(command) == "stream.app" and "worker" in command:
        return WORKER
    if command[:3] == ["python", "-m", "stream.admin"]:
        return TOPICS
    if command[:3] == ["python", "-m", "console"]:
        return CONSOLE
    return None


# ---- settings -------------------------------------------------------------------------------------------


def accepted_env_names(cls: type[BaseSettings]) -> frozenset[str]:
    """Environment variable names a settings class reads: env_prefix + field name, or its validation aliases."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    names: set[str] = set()
    for field_name, info in cls.model_fields.items():
        alias = info.validation_alias or info.alias
        if alias is None:
            names.add(f"{prefix}{field_name}".upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
            for choice in choices:
                first = choice.path[0] if isinstance(choice, AliasPath) else choice
                if isinstance(first, str):
                    names.add(first.upper())
    return frozenset(names)


def settings_from_env(role: Role, env: Mapping[str, str]) -> tuple[Settings | None, str | None]:
    """Build the role's settings exactly as the program does: from this environment and nothing else."""
    try:
        with mock.patch.dict(os.environ, dict(env), clear=True):
            settings: Settings = role.settings_cls()
        if isinstance(settings, GatewaySettings | ConsoleSettings):
            settings.check()
    except (ValidationError, ConfigError, ConsoleConfigError) as exc:
        return None, " ".join(str(exc).split())
    return settings, None


def env_name_problems(role: Role, env: Mapping[str, str], referenced: set[str], where: str) -> list[str]:
    """BINDWATCH_*/KAFKA_* names must be read by the role's settings; any other name must be used by one."""
    accepted = accepted_env_names(role.settings_cls)
    problems = []
    for name in env:
        if name.startswith(("BINDWATCH_", "KAFKA_")):
            if name not in accepted:
                problems.append(f"{where}: {name} is not read by {role.settings_cls.__name__} (no such setting)")
        elif name not in referenced:
            problems.append(f"{where}: {name} is set but neither a setting nor used by another variable")
    return problems


# ---- commands -------------------------------------------------------------------------------------------


@cache
def _module_help(module: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    return out.stdout + out.stderr


def _module_runnable(module: str) -> bool:
    try:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(f"{module}.__main__")
    except ModuleNotFoundError:
        return False
    return spec is not None


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def command_problems(command: list[str], where: str) -> list[str]:
    """Does this command exist in the image (the venv mirrors the image's pins)?"""
    if len(command) >= 3 and command[:2] == ["python", "-m"]:
        module, args = command[2], command[3:]
        if not _module_runnable(module):
            return [f"{where}: `python -m {module}`: no such runnable module"]
        words = [a for a in args if not a.startswith("-")]
        usage = _module_help(module) if words else ""
        missing = [w for w in words if not re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", usage)]
        return [f"{where}: `python -m {module}` has no command {w!r}" for w in missing]
    if command[:1] == ["faust"]:
        return _faust_problems(command, where)
    return [f"{where}: {command!r} is none of bindwatch's commands"]


WORKER_LOOP = "uvloop"
"""The event loop every worker runs on (``faust -L uvloop``): the one its speed was measured with (bench/README.md)."""


def faust_app(command: list[str]) -> str | None:
    """The app module of a ``faust [-L LOOP] -A MODULE ...`` command."""
    rest = command[1:]
    if rest[:1] == ["-L"]:
        rest = rest[2:]
    return rest[1] if len(rest) >= 2 and rest[0] == "-A" else None


def _faust_problems(command: list[str], where: str) -> list[str]:
    from faust.cli.faust import cli

    problems = []
    scripts = {e.name for e in md.entry_points(group="console_scripts")}
    if "faust" not in scripts or not (Path(sys.executable).parent / "faust").exists():
        problems.append(f"{where}: the faust console script is not installed")
    rest = command[1:]
    if rest[:1] == ["-L"]:
        loop = rest[1] if len(rest) > 1 else None
        if loop != WORKER_LOOP:
            problems.append(f"{where}: faust -L {loop}: the worker runs on {WORKER_LOOP} (what bench/ measured)")
        elif not _module_exists(loop):
            problems.append(f"{where}: faust -L {loop}, but {loop} is not installed")
        rest = rest[2:]
    else:
        problems.append(f"{where}: faust without `-L {WORKER_LOOP}`: the default asyncio loop costs ~30% more CPU")
    if len(rest) < 3 or rest[0] != "-A":
        return [*problems, f"{where}: expected `faust -L {WORKER_LOOP} -A <module> worker ...`, got {command!r}"]
    if not _module_exists(rest[1]):
        problems.append(f"{where}: faust app module {rest[1]!r} does not exist")
    if rest[2] not in cli.commands:
        problems.append(f"{where}: faust has no command {rest[2]!r}")
    if "-l" in command:
        i = command.index("-l")
        if i + 1 >= len(command) or command[i + 1].lower() not in LOG_LEVELS:
            problems.append(f"{where}: faust -l needs a log level, got {command[i + 1 : i + 2]!r}")
    return problems


# ---- endpoints ------------------------------------------------------------------------------------------


@cache
def served_paths() -> dict[str, frozenset[str]]:
    """GET paths each long-running role answers, taken from the real applications."""
    app = create_gateway_app(GatewaySettings(push_tokens="x"), MemoryPublisher())
    gateway: set[str] = set()
    with TestClient(app) as client:
        for route in app.routes:
            path = getattr(route, "path", "")
            if "GET" in (getattr(route, "methods", None) or set()) and "{" not in path:
                if client.get(path).status_code not in (404, 405):
                    gateway.add(path)
    from stream import config as stream_config
    from stream.app import create_app as create_stream_app  # its import builds one app from the environment

    stream_config.get_settings.cache_clear()  # leave no settings cached from this process's environment
    with tempfile.TemporaryDirectory() as tmp:
        faust_app = create_stream_app(StreamSettings(store="memory://", data_dir=tmp))
        worker = {path for path, view in faust_app.web.views.items() if "{" not in path and hasattr(view, "get")}
    console_app = create_console_app(ConsoleState(ConsoleSettings()))
    console: set[str] = set()
    with TestClient(console_app) as client:
        for route in console_app.routes:
            path = getattr(route, "path", "")
            if "GET" in (getattr(route, "methods", None) or set()) and "{" not in path:
                if client.get(path).status_code not in (404, 405):
                    console.add(path)
    return {GATEWAY.name: frozenset(gateway), WORKER.name: frozenset(worker), CONSOLE.name: frozenset(console)}


# ---- files ----------------------------------------------------------------------------------------------


class InterpolationError(ValueError):
    pass


_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation ($$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err})."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        present = name in env and (env[name] != "" or op not in (":-", ":?"))
        if present:
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise InterpolationError(f"{name} is required: {arg}")
        return ""

    return _VAR.sub(sub, value)


def load_compose(env: Mapping[str, str]) -> dict[str, Any]:
    """docker-compose.yml as Compose sees it: YAML anchors merged, variables interpolated from ``env``."""
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    result: dict[str, Any] = interpolate(doc, env)
    return result


def kustomize_build(path: Path) -> list[dict[str, Any]]:
    if not KUSTOMIZE.exists():
        raise FileNotFoundError(f"{KUSTOMIZE} is missing: run scripts/install-tools.sh (scripts/bootstrap.sh does)")
    out = subprocess.run([str(KUSTOMIZE), "build", str(path)], capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"kustomize build {path} failed: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]
