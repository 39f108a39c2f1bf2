#!/usr/bin/env bash
# The whole test suite: install (pinned), lint, type-check, unit and integration tests on a real broker.
# The broker comes from KAFKA_BOOTSTRAP_SERVERS, else testcontainers (Docker), else scripts/kafka.sh.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
start=$SECONDS
scripts/bootstrap.sh
scripts/install-tools.sh  # kustomize for the deployment checks (tests/deploy); only the tests need Go
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
.venv/bin/pytest "$@"
echo "test.sh: all checks passed in $((SECONDS - start))s"
