#!/usr/bin/env bash
# Create .venv and install the pinned dependencies (requirements/lock.txt) and bindwatch itself.
# Idempotent: does nothing when the lock file has not changed since the last install.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || { echo "bootstrap: $PY not found; bindwatch needs Python 3.11+" >&2; exit 1; }
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "bootstrap: Python 3.11+ is needed, found $("$PY" --version)" >&2; exit 1; }
stamp=.venv/.bindwatch-lock
want=$(cat requirements/lock.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "bootstrap: installing pinned dependencies into .venv (first run, or the lock changed)..." >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip==26.3" >&2 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/lock.txt >&2
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . >&2
echo "$want" >"$stamp"
