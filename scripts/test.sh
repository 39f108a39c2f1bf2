#!/usr/bin/env bash
# The test suite (what CI runs, .ci/run): install (pinned), then
#   scripts/test.sh                 everything: ruff, mypy (strict, tests and bench included), every tier of pytest
#   scripts/test.sh tests/unit      one tier (or file, or node id): pytest on it only, no lint, no type-check.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x). Lint and type-check belong to the whole run:
# a single tier is for a fast answer while working (run `scripts/test.sh` before pushing).
# Go (to build kustomize) is needed only when the deployment tier (tests/deploy) is among what runs; a broker only
# when the integration or reliability tier is: KAFKA_BOOTSTRAP_SERVERS, else testcontainers (Docker), else
# scripts/kafka.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
start=$SECONDS

# Which paths did the arguments select? Arguments that name no existing path (options, their values) do not count.
paths=()
for arg in "$@"; do
  [[ $arg == -* ]] && continue
  candidate=${arg%%::*}
  [ -e "$candidate" ] && paths+=("$(realpath -m "$candidate")")
done
deploy=$ROOT/tests/deploy
needs_tools=0
if [ ${#paths[@]} -eq 0 ]; then
  needs_tools=1 # no path: pytest runs every tier
else
  for p in "${paths[@]}"; do
    if [[ $deploy == "$p" || $deploy == "$p"/* || $p == "$deploy"/* ]]; then needs_tools=1; fi
  done
fi

scripts/bootstrap.sh
if [ $needs_tools -eq 1 ]; then
  scripts/install-tools.sh # kustomize (tests/deploy), Alertmanager and Chromium (console integration tests)
fi
if [ ${#paths[@]} -eq 0 ]; then
  echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
  echo "== mypy"; .venv/bin/mypy
fi
# The unit tier runs on two pytest-xdist workers (BINDWATCH_UNIT_WORKERS; 0 runs it in-process): its tests share
# nothing, and on a 2-core machine that halves its sleeps and overlaps its collection, keeping it under a minute.
# The broker tiers share one session broker per run, so they run serially, in a second pytest run.
unit=$ROOT/tests/unit
workers=${BINDWATCH_UNIT_WORKERS:-2}
xdist=()
if [ "$workers" != 0 ]; then xdist=(-n "$workers"); fi
for arg in "$@"; do
  case $arg in -n | -n* | --numprocesses* | no:xdist) xdist=() ;; esac # the caller chose: theirs wins
done
# pytest exits 5 when it collected nothing: one of the two runs may select nothing (`-k`), not both.
collected=0
split_run() {
  local rc=0
  .venv/bin/pytest "$@" || rc=$?
  if [ $rc -eq 0 ]; then collected=1; elif [ $rc -ne 5 ]; then exit $rc; fi
}
if [ ${#paths[@]} -eq 0 ]; then
  # The stream core runs compiled (stream/native.py) wherever the worker runs for real, so every tier runs it
  # compiled, and the unit tier once more on its Python source: the source is the reference, and the fallback.
  echo "== pytest: unit (compiled stream core)"
  BINDWATCH_NATIVE=require split_run "${xdist[@]}" "$@" tests/unit
  echo "== pytest: unit (stream core from source)"
  BINDWATCH_NATIVE=off split_run "${xdist[@]}" "$@" tests/unit
  echo "== pytest: deploy, integration, reliability (the slowest tests are listed at the end)"
  BINDWATCH_NATIVE=require split_run --durations=15 "$@" --ignore=tests/unit
  [ $collected -eq 1 ] || { echo "test.sh: no test was selected" >&2; exit 5; }
elif [ ${#paths[@]} -eq 1 ] && [ "${paths[0]}" = "$unit" ]; then
  echo "== pytest: unit"
  .venv/bin/pytest "${xdist[@]}" "$@"
else
  echo "== pytest"
  .venv/bin/pytest "$@"
fi
echo "test.sh: all checks passed in $((SECONDS - start))s"
