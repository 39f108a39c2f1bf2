#!/usr/bin/env bash
# Run the reliability scenarios in their long form (before a release) and regenerate docs/reliability.md.
#   scripts/reliability.sh             every scenario (single broker, the 3-broker cluster, connection abuse)
#   scripts/reliability.sh --cluster   only the 3-broker cluster profile (tests/reliability/test_cluster.py)
# BINDWATCH_RELIABILITY_PROFILE=ci gives the short form the test command runs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/bootstrap.sh
target=tests/reliability
out=docs/reliability.md
if [ "${1:-}" = "--cluster" ]; then
  target=tests/reliability/test_cluster.py
  out=var/reliability-cluster.md
  mkdir -p var
fi
results=$(mktemp)
trap 'rm -f "$results"' EXIT
BINDWATCH_RELIABILITY_PROFILE=${BINDWATCH_RELIABILITY_PROFILE:-full} BINDWATCH_RELIABILITY_RESULTS=$results \
  .venv/bin/pytest "$target" -q -p no:cacheprovider -o timeout=1800
.venv/bin/python -m tests.reliability.report "$results" >"$out"
echo "reliability.sh: wrote $out"
