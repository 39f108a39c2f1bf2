#!/usr/bin/env bash
# Create .venv and install the pinned dependencies (requirements/lock.txt) and bindwatch itself.
# Idempotent: installs nothing when the lock file has not changed since the last install, and compiles the stream
# core only when its source changed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || { echo "bootstrap: $PY not found; bindwatch needs Python 3.11+" >&2; exit 1; }
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "bootstrap: Python 3.11+ is needed, found $("$PY" --version)" >&2; exit 1; }
stamp=.venv/.bindwatch-lock
want=$(cat requirements/lock.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if ! { [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
  echo "bootstrap: installing pinned dependencies into .venv (first run, or the lock changed)..." >&2
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip==26.3" >&2 || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/lock.txt >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . >&2
  echo "$want" >"$stamp"
fi
# The compiled stream core (stream/native.py): built with mypyc (from the lock) and the C compiler, when missing or
# older than its source (~25 s). Without a compiler the worker runs the same code from source, ~1.2x the CPU per
# event: a warning here, not a failure (the test command requires the build: BINDWATCH_NATIVE=require).
if ! BINDWATCH_NATIVE=off .venv/bin/python -m stream.build_native --status >/dev/null; then
  echo "bootstrap: compiling the stream core (mypyc, ~25 s)..." >&2
  BINDWATCH_NATIVE=off .venv/bin/python -m stream.build_native \
    || echo "bootstrap: WARNING: the compiled stream core did not build; the worker runs its Python source" >&2
fi
