#!/usr/bin/env bash
# Install the pinned command-line tools that the tests use into .tools/bin (git-ignored). Idempotent: does
# nothing for a tool whose pinned version is already there. Called by bootstrap.sh and by the tests that need one.
#
#   kustomize     built from its Go module with `go install` (Go module proxy), so no binary download is needed;
#                 the deployment checks (tests/deploy) use it.
#   alertmanager  Prometheus Alertmanager, built from its Go module; the console's integration tests run it.
#                 `go install ...@version` fails (ui/web.go embeds app/dist, whose built web assets are not in the
#                 module), so the module source is copied to a writable folder, the two embedded index.html files
#                 get placeholders (the API works without the web UI) and `go build ./cmd/alertmanager` runs there
#                 (about 3 minutes on 2 cores, first run only).
#
#   scripts/install-tools.sh                 both tools
#   scripts/install-tools.sh kustomize       only kustomize
#   scripts/install-tools.sh alertmanager    only alertmanager
#   scripts/install-tools.sh chromium        only Chromium (Debian's package: the console page's browser tests)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUSTOMIZE_VERSION=v5.8.2 # v5.8.3 needs Go 1.27
# Keep in step with the prom/alertmanager image tag in docker-compose.yml (tests/deploy checks it).
ALERTMANAGER_VERSION=v0.35.0
BIN=$ROOT/.tools/bin

find_go() {
  GO=$(command -v go || true)
  [ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; }
  [ -n "$GO" ] || {
    echo "install-tools: Go is missing: it builds $1 for the tests." >&2
    echo "install-tools: install Go 1.26+ ('apt-get install golang-go' or the official tarball) and run again." >&2
    exit 1
  }
}

install_kustomize() {
  if [ -x "$BIN/kustomize" ] && [ "$("$BIN/kustomize" version 2>/dev/null)" = "$KUSTOMIZE_VERSION" ]; then
    return 0
  fi
  find_go "kustomize $KUSTOMIZE_VERSION"
  echo "install-tools: building kustomize $KUSTOMIZE_VERSION into .tools/bin (first run only)..." >&2
  mkdir -p "$BIN"
  # GOTOOLCHAIN=local: use this machine's Go, never fetch another toolchain; -buildvcs=false: no git needed.
  GOBIN=$BIN GOTOOLCHAIN=local GOFLAGS=-buildvcs=false "$GO" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  local got
  got=$("$BIN/kustomize" version)
  [ "$got" = "$KUSTOMIZE_VERSION" ] || { echo "install-tools: expected kustomize $KUSTOMIZE_VERSION, got $got" >&2; exit 1; }
}

alertmanager_version() {
  # "alertmanager, version 0.35.0 (branch: ...)" -> v0.35.0
  "$BIN/alertmanager" --version 2>&1 | sed -n 's/^alertmanager, version \([^ ]*\).*/v\1/p'
}

install_alertmanager() {
  if [ -x "$BIN/alertmanager" ] && [ "$(alertmanager_version)" = "$ALERTMANAGER_VERSION" ]; then
    return 0
  fi
  find_go "alertmanager $ALERTMANAGER_VERSION"
  mkdir -p "$BIN"
  # One build at a time per checkout: tests may call this concurrently with a manual run.
  exec 9>"$BIN/.alertmanager.lock"
  flock 9
  if [ -x "$BIN/alertmanager" ] && [ "$(alertmanager_version)" = "$ALERTMANAGER_VERSION" ]; then
    return 0
  fi
  echo "install-tools: building alertmanager $ALERTMANAGER_VERSION into .tools/bin (first run only, ~3 min)..." >&2
  local mod dir work
  export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
  mod=$(cd /tmp && "$GO" mod download -json "github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION")
  dir=$(printf '%s' "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [ -d "$dir" ] || { echo "install-tools: go mod download gave no source folder for alertmanager" >&2; exit 1; }
  work=$(mktemp -d "${TMPDIR:-/tmp}/alertmanager-src.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  cp -r "$dir/." "$work/"
  chmod -R u+w "$work"
  mkdir -p "$work/ui/app/dist/elm" "$work/ui/app/dist/mantine"
  for ui in elm mantine; do
    echo '<!doctype html><title>Alertmanager</title><p>Web UI not built; use the API (/api/v2).</p>' \
      >"$work/ui/app/dist/$ui/index.html"
  done
  local v=${ALERTMANAGER_VERSION#v}
  (cd "$work" && "$GO" build -o "$BIN/alertmanager.tmp" \
    -ldflags "-X github.com/prometheus/common/version.Version=$v -X github.com/prometheus/common/version.Branch=HEAD" \
    ./cmd/alertmanager)
  mv "$BIN/alertmanager.tmp" "$BIN/alertmanager"
  local got
  got=$(alertmanager_version)
  [ "$got" = "$ALERTMANAGER_VERSION" ] || {
    echo "install-tools: expected alertmanager $ALERTMANAGER_VERSION, got '$got'" >&2
    exit 1
  }
}

# Headless Chromium for tests/integration/test_console_page.py. Browser builds cannot be downloaded here (no
# Playwright downloads): Debian's package is the one source, installed with apt when we are root.
install_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-tools: chromium is missing: install Debian's package ('apt-get install -y chromium') and run again." >&2
    exit 1
  fi
  echo "install-tools: installing chromium (apt, first run only)..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
  command -v chromium >/dev/null 2>&1 || { echo "install-tools: chromium did not install" >&2; exit 1; }
}

case "${1:-all}" in
  kustomize) install_kustomize ;;
  alertmanager) install_alertmanager ;;
  chromium) install_chromium ;;
  all)
    install_kustomize
    install_alertmanager
    install_chromium
    ;;
  *)
    echo "usage: $0 [kustomize|alertmanager|chromium]" >&2
    exit 2
    ;;
esac
