#!/usr/bin/env bash
# Run the benchmarks (issue #6): bench/run.sh [--quick] [--events N] [name ...]
# Installs what they need (pinned: bench/requirements.txt into .venv; wrk from apt; vegeta with go install into
# .tools/bin), starts a broker on 127.0.0.1:19592 (BENCH_KAFKA_PORT to change) unless KAFKA_BOOTSTRAP_SERVERS is
# set, and writes results to bench/results/<time>-<mode>/ (git-ignored). Load goes to 127.0.0.1 only. See bench/README.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VEGETA_VERSION=v12.13.0

scripts/bootstrap.sh
stamp=.venv/.bindwatch-bench-req
want=$(sha256sum bench/requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bench: installing bench/requirements.txt into .venv..." >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -r bench/requirements.txt >&2
  echo "$want" >"$stamp"
fi
if ! command -v wrk >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "bench: wrk is missing: install it (apt-get install wrk)" >&2; exit 1; }
  echo "bench: installing wrk (apt)..." >&2
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
fi
if [ ! -x .tools/bin/vegeta ]; then
  command -v go >/dev/null 2>&1 || { echo "bench: vegeta is missing and Go is not installed to build it" >&2; exit 1; }
  echo "bench: installing vegeta $VEGETA_VERSION (go install)..." >&2
  GOBIN="$ROOT/.tools/bin" go install "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
fi
exec .venv/bin/python -m bench "$@"
