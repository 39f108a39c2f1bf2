"""The compiled stream core (stream/native.py): a build is used only when it was made from the sources on disk,
``BINDWATCH_NATIVE`` chooses, and this very test run runs the mode it asked for."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stream import native

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def copy_sources(to: Path) -> Path:
    package = to / "stream"
    package.mkdir(parents=True)
    for name in native.MODULES:
        shutil.copy(native.PACKAGE / f"{name}.py", package / f"{name}.py")
    return package


def fake_build(package: Path) -> None:
    """What a build leaves (contents do not matter to ``built_status``): every extension and the digest."""
    for name in (*native.MODULES, f"{native.GROUP}__mypyc"):
        (package / f"{name}{SUFFIX}").write_bytes(b"")
    (package / native.DIGEST_FILE.name).write_text(native.source_digest(package) + "\n")


def test_the_digest_covers_every_compiled_module(tmp_path: Path) -> None:
    package = copy_sources(tmp_path)
    before = native.source_digest(package)
    assert before == native.source_digest(native.PACKAGE)
    for name in native.MODULES:
        path = package / f"{name}.py"
        original = path.read_bytes()
        path.write_bytes(original + b"\n# edited\n")
        assert native.source_digest(package) != before, name
        path.write_bytes(original)
    assert native.source_digest(package) == before


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (None, "built from the current sources"),
        ("edit rules.py", "the sources changed since the build"),
        ("remove the digest", "built without a digest"),
        ("remove core's extension", "not built (no compiled core)"),
        ("remove the group library", f"not built (no compiled {native.GROUP}__mypyc)"),
    ],
)
def test_built_status_says_whether_the_build_is_of_these_sources(
    tmp_path: Path, damage: str | None, reason: str
) -> None:
    package = copy_sources(tmp_path)
    fake_build(package)
    if damage == "edit rules.py":
        with (package / "rules.py").open("a") as f:
            f.write("\n# edited after the build\n")
    elif damage == "remove the digest":
        (package / native.DIGEST_FILE.name).unlink()
    elif damage == "remove core's extension":
        (package / f"core{SUFFIX}").unlink()
    elif damage == "remove the group library":
        (package / f"{native.GROUP}__mypyc{SUFFIX}").unlink()
    status = native.built_status(package)
    assert status.compiled is (damage is None)
    assert status.reason.startswith(reason)
    if damage is not None:
        assert "python -m stream.build_native" in status.reason


def test_require_without_a_current_build_fails_naming_the_reason(tmp_path: Path) -> None:
    package = copy_sources(tmp_path)
    with pytest.raises(native.NativeBuildError, match=r"BINDWATCH_NATIVE=require.*not built \(no compiled"):
        native.select("require", package="elsewhere", directory=package)


def test_an_unknown_mode_is_refused_naming_the_variable() -> None:
    with pytest.raises(native.NativeBuildError, match=r"BINDWATCH_NATIVE='fast' is not one of auto, off, require"):
        native.select("fast")


def _import_in_subprocess(root: Path, mode: str) -> str:
    """Where ``stream.rules`` comes from in a fresh interpreter run in ``root`` (``-c`` puts it first on the path)."""
    env = {**os.environ, "BINDWATCH_NATIVE": mode}
    code = (
        "import stream.rules, stream.native as n; print(stream.rules.__file__, n.STATUS.compiled, n.running_compiled())"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_off_imports_the_source_even_beside_a_build(tmp_path: Path) -> None:
    shutil.copytree(native.PACKAGE, tmp_path / "stream", ignore=shutil.ignore_patterns("__pycache__"))
    out = _import_in_subprocess(tmp_path, "off")
    assert out.endswith("rules.py False False"), out
    assert out.startswith(str(tmp_path / "stream")), out


def test_a_source_edited_after_the_build_is_what_runs(tmp_path: Path) -> None:
    """The build is used from the copy when it is current (if this checkout is built), and never once a compiled
    module's source changed: a compiled file beside an edited source would otherwise run the old code."""
    shutil.copytree(native.PACKAGE, tmp_path / "stream", ignore=shutil.ignore_patterns("__pycache__"))
    if native.built_status().compiled:
        out = _import_in_subprocess(tmp_path, "auto")
        assert out.endswith(f"{SUFFIX} True True") and str(tmp_path) in out, out
    with (tmp_path / "stream" / "rules.py").open("a") as f:
        f.write("\nEDITED = True\n")
    out = _import_in_subprocess(tmp_path, "auto")
    assert out.startswith(str(tmp_path / "stream" / "rules.py")), out
    assert out.endswith("rules.py False False"), out


def test_this_run_runs_the_mode_it_asked_for() -> None:
    """``scripts/test.sh`` runs the unit tier with ``require`` and with ``off``: each must really be what ran."""
    import stream.core  # noqa: F401  (imported by most tests anyway; here to be sure)

    mode = os.environ.get("BINDWATCH_NATIVE", "auto")
    expected = {"require": True, "off": False}.get(mode, native.built_status().compiled)
    assert native.STATUS.compiled is expected
    assert native.running_compiled() is expected


def test_the_settings_field_accepts_exactly_the_modes_select_does() -> None:
    """``BINDWATCH_NATIVE`` is read twice: by ``select`` at import and validated by the settings class."""
    from typing import get_args

    from stream.config import StreamSettings

    assert get_args(StreamSettings.model_fields["native"].annotation) == native.MODES
