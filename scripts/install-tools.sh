#!/usr/bin/env bash
# Install the pinned command-line tools that the deployment checks (tests/deploy) use into .tools/bin
# (git-ignored). Idempotent: does nothing when the pinned versions are already there. Called by bootstrap.sh.
#
#   kustomize  built from its Go module with `go install` (Go module proxy), so no binary download is needed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUSTOMIZE_VERSION=v5.8.2 # v5.8.3 needs Go 1.27
BIN=$ROOT/.tools/bin

if [ -x "$BIN/kustomize" ] && [ "$("$BIN/kustomize" version 2>/dev/null)" = "$KUSTOMIZE_VERSION" ]; then
  exit 0
fi
GO=$(command -v go || true)
[ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; }
[ -n "$GO" ] || {
  echo "install-tools: Go is missing: it builds kustomize $KUSTOMIZE_VERSION for the deployment checks." >&2
  echo "install-tools: install Go 1.26+ ('apt-get install golang-go' or the official tarball) and run again." >&2
  exit 1
}
echo "install-tools: building kustomize $KUSTOMIZE_VERSION into .tools/bin (first run only)..." >&2
mkdir -p "$BIN"
# GOTOOLCHAIN=local: use this machine's Go, never fetch another toolchain; -buildvcs=false: no git needed.
GOBIN=$BIN GOTOOLCHAIN=local GOFLAGS=-buildvcs=false "$GO" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
got=$("$BIN/kustomize" version)
[ "$got" = "$KUSTOMIZE_VERSION" ] || { echo "install-tools: expected kustomize $KUSTOMIZE_VERSION, got $got" >&2; exit 1; }
