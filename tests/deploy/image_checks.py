"""Checks for the Dockerfile, .dockerignore and the pins the image installs. Each returns problems.

There is no Docker engine here, so the Dockerfile is read, not built: these checks hold it to what the
image must be (multi-stage, slim 3.11, deps from the lock, non-root numeric user, no build tools at run time).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata as md

from packaging.requirements import Requirement

from tests.deploy.support import CONSOLE, GATEWAY, LONG_RUNNING, ROOT, WORKER, accepted_env_names, role_of

BUILD_TOOLS = ("apt-get install", "apk add", "gcc", "g++", "build-essential", "make ", "pip install", "cargo")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instr, _, rest = line.partition(" ")
        instr, rest = instr.upper(), rest.strip()
        if instr == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and instr == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        elif stages:
            stages[-1].instructions.append((instr, rest))
    return args, stages


def _exec_form(rest: str) -> list[str] | None:
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def _env_pairs(rest: str) -> dict[str, str]:
    words = shlex.split(rest)
    if len(words) >= 2 and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}  # legacy "ENV NAME value"
    return dict(w.split("=", 1) for w in words)


def image_env(text: str | None = None) -> dict[str, str]:
    """The environment the image's runtime stage sets (ENV): every container of the image starts with it."""
    _, stages = parse_dockerfile(text if text is not None else (ROOT / "Dockerfile").read_text())
    env: dict[str, str] = {}
    for instr, rest in stages[-1].instructions if stages else []:
        if instr == "ENV":
            env.update(_env_pairs(rest))
    return env


def dockerfile_problems(text: str) -> list[str]:
    _, stages = parse_dockerfile(text)
    if len(stages) < 2:
        return ["Dockerfile: must be multi-stage (build, then a runtime stage)"]
    problems = []
    final = stages[-1]
    if not re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", final.base):
        problems.append(f"Dockerfile: the runtime stage must be a slim Python 3.11 image, not {final.base!r}")
    build_text = "\n".join(rest for stage in stages[:-1] for instr, rest in stage.instructions if instr == "RUN")
    if not re.search(r"(-c|--constraint|-r|--requirement)\s+requirements/lock\.txt", build_text):
        problems.append("Dockerfile: dependencies must be installed from requirements/lock.txt")
    if not re.search(r"install\s[^\n]*--no-deps[^\n]*\s\.(\s|$)", build_text):
        problems.append("Dockerfile: the project must be installed with `pip install --no-deps .`")
    if "check_pins.py" not in build_text:
        problems.append("Dockerfile: the build must verify the installed pins (deploy/check_pins.py)")
    users = [rest for instr, rest in final.instructions if instr == "USER"]
    if not users:
        problems.append("Dockerfile: the runtime stage must set USER (a numeric non-root uid)")
    else:
        uid = users[-1].split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            problems.append(f"Dockerfile: USER {users[-1]!r} must be a numeric non-root uid (runAsNonRoot checks it)")
    for instr, rest in final.instructions:
        if instr == "RUN" and any(tool in rest for tool in BUILD_TOOLS):
            problems.append(f"Dockerfile: the runtime stage installs or builds something: RUN {rest[:80]}")
    names = {s.name for s in stages[:-1] if s.name}
    if not any(instr == "COPY" and re.search(r"--from=(\S+)", rest) for instr, rest in final.instructions):
        problems.append(f"Dockerfile: the runtime stage must COPY --from one of the build stages {sorted(names)}")
    cmds = [_exec_form(rest) for instr, rest in final.instructions if instr == "CMD"]
    if not cmds or cmds[-1] is None or role_of(cmds[-1]) is not GATEWAY:
        problems.append('Dockerfile: CMD must be the gateway in exec form: ["python", "-m", "gateway"]')
    accepted = (
        accepted_env_names(GATEWAY.settings_cls)
        | accepted_env_names(WORKER.settings_cls)
        | accepted_env_names(CONSOLE.settings_cls)
    )
    for name in image_env(text):
        if name.startswith(("BINDWATCH_", "KAFKA_")) and name not in accepted:
            problems.append(f"Dockerfile: ENV {name} is not read by any settings class")
    exposed = {int(p.split("/")[0]) for instr, rest in final.instructions if instr == "EXPOSE" for p in rest.split()}
    for role in LONG_RUNNING:
        assert role.port_field is not None
        default = role.settings_cls.model_fields[role.port_field].default
        if default not in exposed:
            problems.append(f"Dockerfile: EXPOSE lacks the {role.name}'s port {default}")
    return problems


def copy_sources(text: str) -> list[str]:
    """Paths the Dockerfile copies from the build context."""
    _, stages = parse_dockerfile(text)
    sources = []
    for stage in stages:
        for instr, rest in stage.instructions:
            if instr in ("COPY", "ADD") and "--from=" not in rest:
                words = [w for w in rest.split() if not w.startswith("--")]
                sources += words[:-1]
    return sources


def dockerignore_excludes(patterns: Iterable[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    excluded = False
    parts = path.split("/")
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, p) for p in prefixes):
            excluded = not negate
    return excluded


def dockerignore_problems(dockerfile: str, dockerignore: str) -> list[str]:
    patterns = dockerignore.splitlines()
    problems = []
    for source in copy_sources(dockerfile):
        probe = source if (ROOT / source).is_file() else f"{source.rstrip('/')}/__init__.py"
        if dockerignore_excludes(patterns, probe):
            problems.append(f".dockerignore: excludes {probe}, which the Dockerfile copies")
    for private in (".git/config", ".venv/bin/python", ".tools/bin/kustomize", ".kafka/dist/x", "var/dev-token"):
        if not dockerignore_excludes(patterns, private):
            problems.append(f".dockerignore: {private} would be sent to the build")
    for cache in ("gateway/__pycache__/app.cpython-311.pyc",):
        if not dockerignore_excludes(patterns, cache):
            problems.append(f".dockerignore: {cache} would be sent to the build")
    return problems


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(roots: Iterable[str]) -> dict[str, str]:
    """{name: installed version} of the root requirements and all they need (markers evaluated, extras followed)."""
    found: dict[str, str] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        key = (_canonical(req.name), frozenset(req.extras))
        if key in done:
            continue
        done.add(key)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            found[key[0]] = "(not installed)"
            continue
        found[_canonical(dist.metadata["Name"])] = dist.version
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                todo.append(sub)
    return found


def load_check_pins() -> object:
    """deploy/check_pins.py (the script the image build runs) as a module."""
    spec = importlib.util.spec_from_file_location("check_pins", ROOT / "deploy" / "check_pins.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lock_pins() -> dict[str, str]:
    module = load_check_pins()
    pins: dict[str, str] = module.parse_pins((ROOT / "requirements" / "lock.txt").read_text().splitlines())  # type: ignore[attr-defined]
    return pins


def pin_problems(installed: Mapping[str, str]) -> list[str]:
    module = load_check_pins()
    problems: list[str] = module.mismatches(installed, lock_pins())  # type: ignore[attr-defined]
    return problems
