#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, broker+controller) for development and tests, without Docker.
#
#   scripts/kafka.sh start    fetch (first time) with Maven, format storage, start, wait until it answers
#   scripts/kafka.sh stop     stop the broker started by this script (SIGTERM, then SIGKILL after a bound)
#   scripts/kafka.sh status   say whether it runs and answers
#   scripts/kafka.sh fetch    only fetch the jars into the cache
#   scripts/kafka.sh pause|resume   SIGSTOP / SIGCONT the broker (fault tests)
#   scripts/kafka.sh classpath      print the classpath (to run Kafka's own tools, e.g. the console consumer)
#
# A local 3-node cluster (each node broker+controller, KRaft quorum of 3; small heaps):
#   BINDWATCH_KAFKA_NODES=3 scripts/kafka.sh start|stop|status|wipe   all nodes; node i listens on PORT+2(i-1),
#                                                  its controller on PORT+2(i-1)+1 (19092,19094,19096 by default)
#   scripts/kafka.sh node-stop|node-kill|node-start|node-pause|node-resume I   one node (1-based) of the cluster
#   scripts/kafka.sh bootstrap      print the bootstrap list (one address, or the cluster's three)
#
# Environment (defaults):
#   KAFKA_VERSION=4.4.0   BINDWATCH_KAFKA_PORT=19092   BINDWATCH_KAFKA_CONTROLLER_PORT=19093
#   BINDWATCH_KAFKA_HOME=<repo>/.kafka   (git-ignored: jars, data, log, pid)
#   BINDWATCH_KAFKA_START_TIMEOUT=90     seconds to wait for the broker to answer
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA_VERSION=${KAFKA_VERSION:-$(cat "$ROOT/scripts/KAFKA_VERSION")}
LOG4J_VERSION=2.24.3
# Kafka's POM brings slf4j-api 1.7 through a transitive path; log4j-slf4j2-impl needs the 2.x API.
SLF4J_VERSION=2.0.17
BASE_PORT=${BINDWATCH_KAFKA_PORT:-19092}
NODES=${BINDWATCH_KAFKA_NODES:-1}
PORT=$BASE_PORT
CPORT=${BINDWATCH_KAFKA_CONTROLLER_PORT:-$((BASE_PORT + 1))}
NODE_ID=1
HOME_DIR=${BINDWATCH_KAFKA_HOME:-$ROOT/.kafka}
LIBS=$HOME_DIR/dist/$KAFKA_VERSION/libs
START_TIMEOUT=${BINDWATCH_KAFKA_START_TIMEOUT:-90}
HEAP=${BINDWATCH_KAFKA_HEAP:-}

# select_node I: point PORT, CPORT, RUN, ... at node I of the cluster (node 1 alone when NODES=1)
select_node() {
  NODE_ID=$1
  if [ "$NODES" -gt 1 ]; then
    PORT=$((BASE_PORT + 2 * (NODE_ID - 1)))
    CPORT=$((PORT + 1))
  fi
  RUN=$HOME_DIR/run-$PORT
  DATA=$RUN/data
  PIDFILE=$RUN/kafka.pid
  LOGFILE=$RUN/kafka.log
  CONF=$RUN/server.properties
}
select_node 1

voters() {
  if [ "$NODES" -eq 1 ]; then echo "1@127.0.0.1:$CPORT"; return; fi
  local i v=""
  for i in $(seq 1 "$NODES"); do v="$v${v:+,}$i@127.0.0.1:$((BASE_PORT + 2 * (i - 1) + 1))"; done
  echo "$v"
}

bootstrap_list() {
  local i b=""
  for i in $(seq 1 "$NODES"); do b="$b${b:+,}127.0.0.1:$((BASE_PORT + 2 * (i - 1)))"; done
  echo "$b"
}

die() { echo "kafka.sh: $*" >&2; exit 1; }

need() {
  command -v java >/dev/null 2>&1 || die "Java is missing: install a JDK 17+ (e.g. 'apt-get install openjdk-17-jre-headless') or set KAFKA_BOOTSTRAP_SERVERS to an existing broker."
  local v
  v=$(java -version 2>&1 | awk -F'"' '/version/ {print $2}' | cut -d. -f1)
  [ "${v:-0}" -ge 17 ] 2>/dev/null || die "Java 17+ is needed for Kafka $KAFKA_VERSION; found '$(java -version 2>&1 | head -n1)'."
}

fetch() {
  [ -f "$LIBS/.complete" ] && return 0
  need
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is missing: it fetches Kafka from Maven Central. Install it ('apt-get install maven') or set KAFKA_BOOTSTRAP_SERVERS to an existing broker."
  local work=$HOME_DIR/dist/$KAFKA_VERSION
  mkdir -p "$work"
  cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>bindwatch.local</groupId><artifactId>kafka-dist</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION from Maven Central (first run only)..." >&2
  rm -rf "$LIBS"
  if ! mvn -B -q -f "$work/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS" >"$work/mvn.log" 2>&1; then
    tail -n 30 "$work/mvn.log" >&2
    die "Maven could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION (log: $work/mvn.log)."
  fi
  cat >"$work/log4j2.properties" <<'LOG'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
LOG
  touch "$LIBS/.complete"
}

classpath() { echo "$LIBS/*"; }

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

answers() {
  # A broker answers when the admin API lists topics. Uses Kafka's own client, so no Python is needed here.
  timeout 20 java -cp "$(classpath)" -Dlog4j2.configurationFile="$HOME_DIR/dist/$KAFKA_VERSION/log4j2.properties" \
    -Dlog4j2.level=ERROR org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$PORT" --list >/dev/null 2>&1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

write_conf() {
  mkdir -p "$DATA"
  # One node: replication factor 1 everywhere. A cluster: what production runs (3 replicas, min ISR 2).
  local rf=1 isr=1
  if [ "$NODES" -ge 3 ]; then rf=3; isr=2; fi
  cat >"$CONF" <<PROPS
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
num.partitions=1
default.replication.factor=$rf
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
min.insync.replicas=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
log.segment.bytes=67108864
log.cleaner.dedupe.buffer.size=33554432
PROPS
}

start_node() {
  fetch
  if running; then
    echo "kafka.sh: node $NODE_ID already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
    return 0
  fi
  if port_open; then
    die "port $PORT is taken by another process; set BINDWATCH_KAFKA_PORT or KAFKA_BOOTSTRAP_SERVERS."
  fi
  mkdir -p "$RUN"
  write_conf
  local heap=${HEAP:-$([ "$NODES" -gt 1 ] && echo 384m || echo 768m)}
  local jopts=(-Xms128m "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$HOME_DIR/dist/$KAFKA_VERSION/log4j2.properties")
  if [ ! -f "$DATA/meta.properties" ]; then
    java "${jopts[@]}" -cp "$(classpath)" kafka.tools.StorageTool format -t bindwatch-local-cluster-01 -c "$CONF" >>"$LOGFILE" 2>&1 \
      || { tail -n 20 "$LOGFILE" >&2; die "formatting KRaft storage failed (log: $LOGFILE)"; }
  fi
  # setsid: the broker outlives the shell that started it, in its own process group.
  setsid nohup java "${jopts[@]}" -cp "$(classpath)" kafka.Kafka "$CONF" >>"$LOGFILE" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
}

wait_answers() {
  local t0=$1
  while ! port_open || ! answers; do
    if ! running; then
      tail -n 30 "$LOGFILE" >&2
      die "node $NODE_ID exited during start-up (log: $LOGFILE)"
    fi
    if [ $((SECONDS - t0)) -ge "$START_TIMEOUT" ]; then
      tail -n 30 "$LOGFILE" >&2
      die "node $NODE_ID did not answer within ${START_TIMEOUT}s (log: $LOGFILE)"
    fi
    sleep 0.5
  done
}

start() {
  local t0=$SECONDS i
  # A KRaft quorum of 3 elects a leader only once a majority runs: start every node, then wait for each.
  for i in $(seq 1 "$NODES"); do select_node "$i"; start_node; done
  for i in $(seq 1 "$NODES"); do select_node "$i"; wait_answers "$t0"; done
  if [ "$NODES" -eq 1 ]; then
    echo "kafka.sh: Apache Kafka $KAFKA_VERSION answers on 127.0.0.1:$PORT after $((SECONDS - t0))s (pid $(cat "$PIDFILE"), log $LOGFILE)"
  else
    echo "kafka.sh: Apache Kafka $KAFKA_VERSION cluster of $NODES answers on $(bootstrap_list) after $((SECONDS - t0))s (logs $HOME_DIR/run-<port>/kafka.log)"
  fi
}

stop_node() {
  if ! running; then
    echo "kafka.sh: node $NODE_ID not running"
    rm -f "$PIDFILE"
    return 0
  fi
  local pid
  pid=$(cat "$PIDFILE")
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka.sh: broker did not stop in 30s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  echo "kafka.sh: node $NODE_ID stopped"
}

all_nodes() { local i; for i in $(seq 1 "$NODES"); do select_node "$i"; "$@"; done; }

# Stop every node at once: stopped one by one, the last nodes of a KRaft quorum wait for a majority that is gone.
stop_all() {
  [ "$NODES" -eq 1 ] && { stop_node; return; }
  local i pids=()
  for i in $(seq 1 "$NODES"); do
    select_node "$i"
    if running; then pids+=("$(cat "$PIDFILE")"); fi
  done
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 40); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for i in $(seq 1 "$NODES"); do select_node "$i"; rm -f "$PIDFILE"; done
  echo "kafka.sh: cluster of $NODES stopped"
}

status() {
  if running && answers; then
    echo "kafka.sh: running (pid $(cat "$PIDFILE")) and answering on 127.0.0.1:$PORT"
  elif running; then
    echo "kafka.sh: process $(cat "$PIDFILE") runs but does not answer on 127.0.0.1:$PORT"; return 1
  else
    echo "kafka.sh: not running"; return 3
  fi
}

node_arg() {
  [ -n "${2:-}" ] && [ "$2" -ge 1 ] 2>/dev/null && [ "$2" -le "$NODES" ] \
    || die "usage: BINDWATCH_KAFKA_NODES=$NODES $0 $1 <node 1..$NODES>"
  select_node "$2"
}

case "${1:-}" in
  start) start ;;
  stop) stop_all ;;
  status) all_nodes status ;;
  fetch) fetch; echo "kafka.sh: Kafka $KAFKA_VERSION jars in $LIBS" ;;
  classpath) fetch >&2; classpath ;;
  bootstrap) bootstrap_list ;;
  pause) all_nodes eval 'running && kill -STOP "$(cat "$PIDFILE")"' ;;
  resume) all_nodes eval 'running && kill -CONT "$(cat "$PIDFILE")"' ;;
  wipe) stop_all; all_nodes eval 'rm -rf "$RUN"' ;;
  node-start) node_arg "$@"; start_node; wait_answers "$SECONDS"; echo "kafka.sh: node $2 answers on 127.0.0.1:$PORT" ;;
  node-stop) node_arg "$@"; stop_node ;;
  node-kill) node_arg "$@"; running && kill -KILL "$(cat "$PIDFILE")"; rm -f "$PIDFILE"; echo "kafka.sh: node $2 killed" ;;
  node-pause) node_arg "$@"; running && kill -STOP "$(cat "$PIDFILE")" ;;
  node-resume) node_arg "$@"; running && kill -CONT "$(cat "$PIDFILE")" ;;
  *) echo "usage: $0 {start|stop|status|fetch|classpath|bootstrap|pause|resume|wipe|node-start|node-stop|node-kill|node-pause|node-resume N}" >&2; exit 2 ;;
esac
