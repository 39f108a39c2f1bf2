"""The stream's compiled core: the per-event modules built to C extensions with mypyc, and the rule that decides
whether a process runs them or their Python source.

mypyc compiles these modules, unchanged, from the same type annotations that strict mypy already checks. The
modules are the ones each event passes through (rules, state encoding, the stage core, outage counting, bundles,
the tables' changelog writes);
compiled, they cost about 1.35x less CPU (``bench/README.md``). The Python source stays the reference: every unit
test runs against both (``scripts/test.sh``), and a machine without a C compiler runs the source.

A compiled module sits next to its source (``stream/rules.cpython-311-x86_64-linux-gnu.so``) and Python prefers
it, so a source edited after the build would silently not run. The build therefore records a digest of the
sources it compiled (``stream/native.digest``), and ``select`` (run by ``stream/__init__.py`` before any of these
modules is imported) loads the compiled modules only when that digest matches the sources on disk; otherwise it
makes Python import the source, all of it: the compiled modules call each other directly, so they are used all
together or not at all.

``BINDWATCH_NATIVE`` chooses, read at import because it decides how modules are imported (before any settings
object can exist):

- ``auto`` (default): compiled when built from the current sources, else the source;
- ``off``: always the source (a fallback, and arm A of the benchmark's comparison);
- ``require``: compiled, or the import of ``stream`` fails saying why (what CI and the benchmarks run).

Build: ``python -m stream.build_native`` (``scripts/bootstrap.sh`` runs it when the sources changed).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
MODULES = ("bundle", "changelog", "core", "counting", "outage", "rules", "state")
"""The compiled modules of ``stream`` (one mypyc group: they call each other without Python's call protocol)."""
GROUP = "native"
"""mypyc's group name: its shared library is ``stream/native__mypyc.*.so``."""
DIGEST_FILE = PACKAGE / "native.digest"
MODES = ("auto", "off", "require")


class NativeBuildError(ImportError):
    """``BINDWATCH_NATIVE=require`` and the compiled modules are missing or older than their source, or the
    variable has a value this module does not know."""


@dataclass(frozen=True)
class Status:
    compiled: bool
    """The compiled modules are the ones imported."""
    reason: str
    """Why (for the worker's start-up log line)."""


def source_digest(package: Path = PACKAGE) -> str:
    """A digest of what a build compiles: the modules' sources and the interpreter they were compiled for."""
    h = hashlib.sha256(sys.implementation.cache_tag.encode())
    for name in MODULES:
        h.update(f"\0{name}\0".encode())
        h.update((package / f"{name}.py").read_bytes())
    return h.hexdigest()


def _extension(package: Path, name: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = package / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def built_status(package: Path = PACKAGE) -> Status:
    """Whether ``package`` holds a build of its current sources (every module and the group's library)."""
    missing = [n for n in (*MODULES, f"{GROUP}__mypyc") if _extension(package, n) is None]
    if missing:
        return Status(False, f"not built (no compiled {', '.join(missing)}): run `python -m stream.build_native`")
    try:
        recorded = (package / DIGEST_FILE.name).read_text().strip()
    except FileNotFoundError:
        return Status(False, "built without a digest (an interrupted build?): run `python -m stream.build_native`")
    if recorded != source_digest(package):
        return Status(False, "the sources changed since the build: run `python -m stream.build_native`")
    return Status(True, "built from the current sources")


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Imports the compiled modules from their ``.py`` files although a compiled file sits beside them."""

    def __init__(self, package: str, directory: Path) -> None:
        self.names = {f"{package}.{name}": directory / f"{name}.py" for name in MODULES}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.names.get(fullname)
        return None if source is None else importlib.util.spec_from_file_location(fullname, source)


STATUS = Status(False, "not selected yet")


def select(mode: str | None = None, package: str = "stream", directory: Path = PACKAGE) -> Status:
    """Decide compiled or source for this process (see the module docstring); idempotent."""
    global STATUS
    mode = (os.environ.get("BINDWATCH_NATIVE", "auto") if mode is None else mode).strip().lower()
    if mode not in MODES:
        raise NativeBuildError(f"BINDWATCH_NATIVE={mode!r} is not one of {', '.join(MODES)}")
    built = built_status(directory)
    if mode == "require" and not built.compiled:
        raise NativeBuildError(f"BINDWATCH_NATIVE=require, but the compiled stream core cannot be used: {built.reason}")
    if mode == "off":
        built = Status(False, "BINDWATCH_NATIVE=off")
    if not built.compiled and not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst(package, directory))
    STATUS = built
    return built


def running_compiled() -> bool:
    """Whether the modules imported so far came from the compiled files (the truth, whatever ``STATUS`` says)."""
    loaded = [sys.modules.get(f"stream.{name}") for name in MODULES]
    files = [getattr(m, "__file__", "") or "" for m in loaded if m is not None]
    return bool(files) and all(f.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)) for f in files)


_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
paths, group, temp = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
sys.argv[1:] = ["-q", "build_ext", "--inplace", "--build-temp", temp]
setup(name="bindwatch-native", py_modules=[], ext_modules=mypycify(paths, group_name=group, target_dir=temp))
"""


def build(package: Path = PACKAGE) -> None:
    """Compile the modules in place (about 25 s on 2 cores), then record the digest of what was compiled."""
    digest = source_digest(package)
    digest_file = package / DIGEST_FILE.name
    digest_file.unlink(missing_ok=True)  # no digest while the files are replaced: an interrupted build is not used
    paths = ",".join(f"{package.name}/{name}.py" for name in MODULES)
    temp = package.parent / "build" / "native"
    group = f"{package.name}.{GROUP}"
    run = subprocess.run(
        [sys.executable, "-c", _SETUP, paths, group, str(temp)], cwd=package.parent, capture_output=True, text=True
    )
    if run.returncode != 0:  # the compiler's own words: a missing compiler or Python header, or a mypyc error
        tail = "\n".join((run.stdout + run.stderr).splitlines()[-30:])
        raise NativeBuildError(f"building the compiled stream core failed (exit {run.returncode}):\n{tail}")
    digest_file.write_text(digest + "\n")
