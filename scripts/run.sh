#!/usr/bin/env bash
# Run bindwatch locally: install (pinned), start a local Kafka unless KAFKA_BOOTSTRAP_SERVERS is given,
# create the topics, start the gateway, one stream worker and the console, plus a local Alertmanager fed by the
# console when .tools/bin/alertmanager exists (scripts/install-tools.sh alertmanager builds it, ~3 minutes once),
# and print how to use them. Ctrl-C stops everything this script started.
#   CONSOLE_PORT (8081), ALERTMANAGER_PORT (9093): where the console and the local Alertmanager listen.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/bootstrap.sh
mkdir -p var/run
started_kafka=0
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  scripts/kafka.sh start
  started_kafka=1
  export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:${BINDWATCH_KAFKA_PORT:-19092}
fi
if [ -z "${BINDWATCH_PUSH_TOKENS:-}" ]; then
  [ -s var/dev-token ] || .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))' >var/dev-token
  BINDWATCH_PUSH_TOKENS=$(cat var/dev-token)
  export BINDWATCH_PUSH_TOKENS
fi
export BINDWATCH_PORT=${BINDWATCH_PORT:-8080} BINDWATCH_WEB_PORT=${BINDWATCH_WEB_PORT:-6066}
export BINDWATCH_DATA_DIR=${BINDWATCH_DATA_DIR:-$ROOT/var/stream}
CONSOLE_PORT=${CONSOLE_PORT:-8081} ALERTMANAGER_PORT=${ALERTMANAGER_PORT:-9093}
.venv/bin/python -m stream.admin create-topics

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "run.sh: stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ "$started_kafka" = 1 ] && [ -z "${BINDWATCH_KEEP_KAFKA:-}" ]; then scripts/kafka.sh stop; fi
}
trap cleanup EXIT INT TERM

.venv/bin/python -m gateway >>var/run/gateway.log 2>&1 &
pids+=($!)
.venv/bin/faust -L uvloop -A stream.app worker -l info >>var/run/worker.log 2>&1 &
pids+=($!)
am_urls=""
if [ -x .tools/bin/alertmanager ]; then
  # The shipped configuration; its example webhook receiver points nowhere, so notifications fail in its log
  # (var/run/alertmanager.log) while the alerts, silences and inhibitions show in its API.
  mkdir -p var/alertmanager
  .tools/bin/alertmanager --config.file=deploy/alertmanager/alertmanager.yml --storage.path=var/alertmanager \
    --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" --cluster.listen-address= >>var/run/alertmanager.log 2>&1 &
  pids+=($!)
  am_urls=http://127.0.0.1:$ALERTMANAGER_PORT
fi
[ -s var/console-token ] || .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))' >var/console-token
BINDWATCH_CONSOLE_TOKENS=$(cat var/console-token) BINDWATCH_PORT=$CONSOLE_PORT BINDWATCH_ALERTMANAGER_URLS=$am_urls \
  BINDWATCH_WORKER_QUERY_URL=http://127.0.0.1:$BINDWATCH_WEB_PORT .venv/bin/python -m console >>var/run/console.log 2>&1 &
pids+=($!)

wait_ready() {
  local url=$1 name=$2 log=$3
  for _ in $(seq 1 240); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { tail -n 30 "$log" >&2; echo "run.sh: $name exited" >&2; exit 1; }; done
    sleep 0.5
  done
  tail -n 30 "$log" >&2; echo "run.sh: $name not ready after 120s" >&2; exit 1
}
wait_ready "http://127.0.0.1:$BINDWATCH_PORT/readyz" gateway var/run/gateway.log
wait_ready "http://127.0.0.1:$BINDWATCH_WEB_PORT/readyz" worker var/run/worker.log
if [ -n "$am_urls" ]; then
  wait_ready "http://127.0.0.1:$ALERTMANAGER_PORT/-/ready" alertmanager var/run/alertmanager.log
  am_line="Alertmanager http://127.0.0.1:$ALERTMANAGER_PORT  (fed by the console; GET /api/v2/alerts)"
else
  am_line="Alertmanager none: build it with scripts/install-tools.sh alertmanager (~3 min, once) and run again"
fi
wait_ready "http://127.0.0.1:$CONSOLE_PORT/readyz" console var/run/console.log

cat <<TXT

bindwatch is running.
  Kafka      $KAFKA_BOOTSTRAP_SERVERS
  Push URL   http://127.0.0.1:$BINDWATCH_PORT/v1/nxcloud/binding-failures?token=$BINDWATCH_PUSH_TOKENS
  Worker     http://127.0.0.1:$BINDWATCH_WEB_PORT  (GET /v1/callers/{number}, /v1/dids/{number}, /metrics)
  Console    http://127.0.0.1:$CONSOLE_PORT  (the operators' page; sign in with the token in var/console-token)
  $am_line
  Logs       var/run/gateway.log, var/run/worker.log, var/run/console.log

Post the demo push (change requestId to count it again; three within 10 minutes make an alert):
  curl -s -X POST 'http://127.0.0.1:$BINDWATCH_PORT/v1/nxcloud/binding-failures?token=$BINDWATCH_PUSH_TOKENS' \\
    -H 'Content-Type: application/json' \\
    -d '{"code":10013,"msg":"binding not exist","requestId":"1640920940635361280","data":{"action":"queryAXB","requestParams":{"caller":"852121199","did":"85299999999"},"occurrenceTime":"2023-03-29 11:36:53"}}'

Watch alerts as they arrive (another terminal):
  KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS .venv/bin/python docs/alerts_consumer.py --from-beginning
$( [ -n "$am_urls" ] && printf '%s\n  %s' "or as Alertmanager has them:" "curl -s http://127.0.0.1:$ALERTMANAGER_PORT/api/v2/alerts")

Ctrl-C stops the gateway, the worker, the console$( [ -n "$am_urls" ] && echo ", Alertmanager")$( [ "$started_kafka" = 1 ] && echo " and the local Kafka").
TXT
wait -n "${pids[@]}" || true
echo "run.sh: a service exited; see var/run/*.log" >&2
exit 1
