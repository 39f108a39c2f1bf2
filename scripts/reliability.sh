#!/usr/bin/env bash
# Run the reliability scenarios in their long form (before a release) and regenerate docs/reliability.md.
# BINDWATCH_RELIABILITY_PROFILE=ci gives the short form the test command runs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/bootstrap.sh
results=$(mktemp)
trap 'rm -f "$results"' EXIT
BINDWATCH_RELIABILITY_PROFILE=${BINDWATCH_RELIABILITY_PROFILE:-full} BINDWATCH_RELIABILITY_RESULTS=$results \
  .venv/bin/pytest tests/reliability -q -p no:cacheprovider -o timeout=1200
.venv/bin/python -m tests.reliability.report "$results" >docs/reliability.md
echo "reliability.sh: wrote docs/reliability.md"
