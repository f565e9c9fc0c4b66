#!/usr/bin/env bash
# -----------------------------------------------------------------------------
# Newsflow local stack: a REAL single-node Apache Kafka (KRaft, broker+controller)
# and a REAL Elasticsearch 9.x on 127.0.0.1 -- no docker needed.
#
# Usage:
#   deploy/local/stack.sh up      [kafka|es]   start (idempotent; no arg = both)
#   deploy/local/stack.sh down    [kafka|es]   stop what this script started
#   deploy/local/stack.sh restart kafka|es     down + up (data is kept)
#   deploy/local/stack.sh status  [--quiet]    one line per service; exit 0 iff both up
#   deploy/local/stack.sh logs    [kafka|es]   tail -n 100 of the service logs
#
# Environment (defaults):
#   NEWSFLOW_STATE_DIR     <repo>/.local    all state: jars, ES unpack, data, logs, pids
#   KAFKA_PORT             9092             PLAINTEXT listener (clients)
#   KAFKA_CONTROLLER_PORT  9093             KRaft controller listener
#   KAFKA_BROKERS          1                KRaft nodes (broker + controller each). Node n listens on
#                                           every base port + 2(n-1) (3 nodes: 9092, 9094, 9096;
#                                           controllers 9093, 9095, 9097); from 3 nodes on, internal
#                                           topics and the topic default get replication 3 and
#                                           min.insync.replicas 2. A state dir keeps its node count.
#   KAFKA_HEAP             512m
#   KAFKA_SASL_SSL_PORT    (empty)          an extra SASL_SSL listener (SCRAM-SHA-512 over TLS) for
#                                           secured clients; needs the stores below
#   KAFKA_SSL_KEYSTORE     (empty)          PKCS12: the broker's key and certificate chain
#   KAFKA_SSL_TRUSTSTORE   (empty)          PKCS12: the CA that signs client certificates
#   KAFKA_SSL_PASSWORD     (empty)          password of both stores
#   KAFKA_SSL_CLIENT_AUTH  required         required (mutual TLS) | requested | none
#   KAFKA_SCRAM_USERS      (empty)          user=password[,user=password]: SCRAM-SHA-512 users,
#                                           created when the storage is formatted (first 'up')
#   ES_PORT                9200             HTTP
#   ES_TRANSPORT_PORT      9300
#   ES_HEAP                512m
#   ES_VERSION             9.5.4            integ-test-zip from Maven Central
#   KAFKA_START_TIMEOUT    120 (s)          ES_START_TIMEOUT 180 (s)   STOP_TIMEOUT 30 (s)
#   NEWSFLOW_REUSE_FOREIGN 1                if the port is served by a stack.sh service of
#                                           ANOTHER state dir (e.g. CI in a fresh clone while
#                                           the work tree's stack runs): up/status accept it,
#                                           down/restart stop it. 0 = treat as port conflict.
#   ES_JAVA_HOME           auto: newest JDK >= 21 under /usr/lib/jvm
#   ES_EXTRA_JAVA_OPTS     (empty)          appended to ES_JAVA_OPTS
#   KAFKA_JAVA_HOME        auto: `java` on PATH if >= 17, else newest JDK >= 17
#
# Layout under $NEWSFLOW_STATE_DIR:
#   kafka/lib/             broker jars (resolved once with Maven from deploy/pom.xml)
#   kafka/data/            log.dirs + KRaft metadata (formatted once, never reformatted)
#   kafka/node-N/          node N > 1 of a cluster: its own data/, logs/, server.properties, pid
#   kafka/brokers          the number of nodes the state dir was formatted for
#   kafka/logs/            server.log (log4j2, deploy/local/kafka-log4j2.xml), kafka.out
#   kafka/server.properties, kafka/cluster.id, kafka/kafka.pid
#   es/home/               unpacked Elasticsearch (config/elasticsearch.yml is generated)
#   es/data/ es/logs/ es/tmp/ es/run/   (owned by user newsflow-es when run as root)
#   es/es.pid
#
# Elasticsearch refuses to run as root: when uid is 0 it runs as the system user
# `newsflow-es` (created on demand). The integ-test-zip contains only the server
# plus the transport-netty4, x-pack-core, x-pack-security and apm modules (no
# analysis-common, ingest-common, lang-painless, reindex, data-streams, ml, ...).
# -----------------------------------------------------------------------------
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"
DEPLOY_DIR="$REPO_ROOT/deploy"
POM="$DEPLOY_DIR/pom.xml"
KAFKA_LOG4J2_CONFIG="$SCRIPT_DIR/kafka-log4j2.xml"

NEWSFLOW_STATE_DIR="${NEWSFLOW_STATE_DIR:-$REPO_ROOT/.local}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_BROKERS="${KAFKA_BROKERS:-1}"
KAFKA_SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-}"
KAFKA_SSL_CLIENT_AUTH="${KAFKA_SSL_CLIENT_AUTH:-required}"
KAFKA_SCRAM_USERS="${KAFKA_SCRAM_USERS:-}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
ES_PORT="${ES_PORT:-9200}"
ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-9300}"
ES_HEAP="${ES_HEAP:-512m}"
# Newest 9.x integ-test-zip that Maven Central serves (checked 2026-11: 9.5.4;
# 9.5.5/9.5.6 and 9.3.x/9.4.x are not published there).
ES_VERSION="${ES_VERSION:-9.5.4}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
ES_START_TIMEOUT="${ES_START_TIMEOUT:-180}"
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"
# 1: a Kafka/ES that another newsflow state dir (another clone, e.g. CI) started on
# our port counts as running for up/status, and `down` stops it. 0: port conflict.
NEWSFLOW_REUSE_FOREIGN="${NEWSFLOW_REUSE_FOREIGN:-1}"

KAFKA_VERSION="4.3.1"   # keep in sync with deploy/pom.xml
# Fully qualified so that Maven needs no plugin-prefix metadata lookup.
MVN_DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
ES_USER="newsflow-es"
ES_CLUSTER_NAME="newsflow-local"

# ----------------------------------------------------------------- helpers ---
log()  { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die()  { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '3,/^# ----/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

validate_port() {
  if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < 1 || $2 > 65535)); then die "$1 must be a port number, got '$2'"; fi
}

# Resolve the state dir to an absolute path (it may be given relative to $PWD).
init_state_dir() {
  mkdir -p "$NEWSFLOW_STATE_DIR" || die "cannot create NEWSFLOW_STATE_DIR=$NEWSFLOW_STATE_DIR"
  NEWSFLOW_STATE_DIR="$(cd "$NEWSFLOW_STATE_DIR" && pwd -P)"
  KAFKA_DIR="$NEWSFLOW_STATE_DIR/kafka"
  ES_DIR="$NEWSFLOW_STATE_DIR/es"
  ES_HOME="$ES_DIR/home"
  ES_PID_FILE="$ES_DIR/es.pid"
  use_kafka_node 1
}

# Serialise up/down/restart between concurrent callers (e.g. parallel test jobs).
# NOTE: fd 9 must never leak into the daemons (they would hold the lock forever),
# hence the `9>&-` on every launch below.
take_lock() {
  exec 9>"$NEWSFLOW_STATE_DIR/.stack.lock"
  if ! flock -w 600 9; then die "could not get $NEWSFLOW_STATE_DIR/.stack.lock within 600 s"; fi
}

now() { date +%s; }

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() { timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

port_owner() {
  command -v ss >/dev/null 2>&1 || return 0
  ss -Htlnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -1
}

require_port_free() {
  local port=$1 owner
  if port_open "$port"; then
    owner="$(port_owner "$port")"
    die "port $port is in use by another process${owner:+ ($owner)}"
  fi
}

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

is_our_kafka() { cmdline_of "$1" | grep -qF "kafka.Kafka $KNODE_DIR/server.properties "; }
is_our_es()    { local c; c="$(cmdline_of "$1")"
                 [[ $c == *org.elasticsearch.bootstrap.Elasticsearch* && $c == *"-Des.path.home=$ES_HOME "* ]]; }

# pid listening on 127.0.0.1:$1 (visible for root or the same user; else empty).
port_pid() {
  command -v ss >/dev/null 2>&1 || return 0
  ss -Htlnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
}

# "<pid> <state dir>" if the service's port is served by a newsflow stack process
# started from ANOTHER state dir -- typically CI running in a fresh clone while the
# developer's stack (<work tree>/.local) is still up. Empty otherwise.
foreign_service() { # kafka|es
  local svc=$1 port pid c re dir
  [[ $NEWSFLOW_REUSE_FOREIGN == 1 ]] || return 0
  if [[ $svc == kafka ]]; then port=$KAFKA_PORT; else port=$ES_PORT; fi
  pid="$(port_pid "$port")"
  [[ -n $pid ]] || return 0
  c="$(cmdline_of "$pid") "
  if [[ $svc == kafka ]]; then
    re='kafka\.Kafka (/[^ ]*)/kafka/server\.properties '
    [[ $c == *kafka-log4j2.xml* && $c =~ $re ]] || return 0
    dir=${BASH_REMATCH[1]}
  else
    re='-Des\.path\.home=(/[^ ]*)/es/home '
    [[ $c == *org.elasticsearch.bootstrap.Elasticsearch* && $c =~ $re ]] || return 0
    dir=${BASH_REMATCH[1]}
    [[ -f $dir/es/home/.newsflow-es-version ]] || return 0
  fi
  [[ $dir != "$NEWSFLOW_STATE_DIR" ]] || return 0
  echo "$pid $dir"
}

is_our() { # kafka|es pid
  pid_alive "$2" || return 1
  if [[ $1 == kafka ]]; then is_our_kafka "$2"; else is_our_es "$2"; fi
}

# Print the pid of our running service (empty if none). Stale pid files are
# removed; a live server of this state dir whose pid file went missing (deleted,
# or start interrupted) is found by its command line and its pid file rewritten.
service_pid() { # kafka|es
  local svc=$1 file pid="" f
  if [[ $svc == kafka ]]; then file=$KAFKA_PID_FILE; else file=$ES_PID_FILE; fi
  if [[ -f $file ]]; then
    pid="$(tr -dc '0-9' <"$file" 2>/dev/null || true)"
    if is_our "$svc" "$pid"; then echo "$pid"; return 0; fi
    rm -f "$file" 2>/dev/null || true
  fi
  local needle
  if [[ $svc == kafka ]]; then needle="$KNODE_DIR/server.properties"; else needle="-Des.path.home=$ES_HOME"; fi
  for f in $(grep -lsaF -e "$needle" /proc/[0-9]*/cmdline 2>/dev/null || true); do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    if is_our "$svc" "$pid"; then
      echo "$pid" >"$file" 2>/dev/null || true
      echo "$pid"; return 0
    fi
  done
}

# Major version of a java binary (17, 21, 25, ...); 0 if it does not run.
java_major() {
  local v
  v="$("$1" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')" || true
  [[ -n $v ]] || { echo 0; return; }
  if [[ $v == 1.* ]]; then v=${v#1.}; fi
  v=${v%%[.+-]*}
  [[ $v =~ ^[0-9]+$ ]] && echo "$v" || echo 0
}

# Newest JDK home under /usr/lib/jvm whose java major is >= $1 (empty if none).
newest_jdk_home() {
  local min=$1 best="" bestv=0 d real v
  local -A seen=()
  for d in /usr/lib/jvm/*/; do
    d=${d%/}
    [[ -x $d/bin/java ]] || continue
    real="$(readlink -f "$d")"
    [[ -z ${seen[$real]:-} ]] || continue
    seen[$real]=1
    v="$(java_major "$d/bin/java")"
    if ((v >= min && v > bestv)); then best=$real; bestv=$v; fi
  done
  echo "$best"
}

kafka_java() {
  local j
  if [[ -n ${KAFKA_JAVA_HOME:-} ]]; then
    j="$KAFKA_JAVA_HOME/bin/java"
    (($(java_major "$j") >= 17)) || die "KAFKA_JAVA_HOME=$KAFKA_JAVA_HOME is not a Java >= 17"
    echo "$j"; return
  fi
  if j="$(command -v java)" && (($(java_major "$j") >= 17)); then echo "$j"; return; fi
  j="$(newest_jdk_home 17)"
  [[ -n $j ]] || die "Kafka $KAFKA_VERSION needs Java >= 17: none on PATH or under /usr/lib/jvm"
  echo "$j/bin/java"
}

es_java_home() {
  local h
  if [[ -n ${ES_JAVA_HOME:-} ]]; then
    (($(java_major "$ES_JAVA_HOME/bin/java") >= 21)) ||
      die "ES_JAVA_HOME=$ES_JAVA_HOME is not a JDK >= 21 (Elasticsearch $ES_VERSION needs Java 21+)"
    echo "$ES_JAVA_HOME"; return
  fi
  h="$(newest_jdk_home 21)"
  [[ -n $h ]] || die "Elasticsearch $ES_VERSION needs a JDK >= 21 and none was found under /usr/lib/jvm (install e.g. a Temurin 21/25 JDK or set ES_JAVA_HOME)"
  echo "$h"
}

require_cmd() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed${2:+ ($2)}"; }

# Run maven, streaming a compact progress view, full output kept in $1.
run_maven() { # logfile args...
  local logfile=$1; shift
  require_cmd mvn "apt-get install maven"
  local rc=0
  mvn -B -Dstyle.color=never "$@" >"$logfile" 2>&1 &
  local mpid=$!
  # Progress: a line every 25 downloaded files (mvn -B prints no byte counters).
  tail -n +1 -F --pid="$mpid" "$logfile" 2>/dev/null |
    awk '/^\[INFO\] Downloaded from/ { n++; f=$5; sub(/.*\//, "", f)
                                         if (n % 25 == 1 || f ~ /\.zip$/) printf "[stack]   ... %d files fetched (%s)\n", n, f; fflush() }
         /BUILD (SUCCESS|FAILURE)/ { print "[stack]   maven: " $2 " " $3 }' || true
  wait "$mpid" || rc=$?
  return "$rc"
}

maven_failed() { # what logfile
  printf '[stack] ERROR: Maven could not resolve %s (is Maven Central reachable?). Maven said:\n' "$1" >&2
  grep -E '^\[ERROR\] [^ ]|transfer failed|Could not (transfer|resolve|find)|UnknownHost|Connect' "$2" |
    grep -v '^\[ERROR\] \[Help 1\]\|Re-run Maven\|full stack trace\|For more information' | head -n 12 | cut -c1-400 | sed 's/^/    /' >&2
  printf '[stack] full Maven output: %s\n' "$2" >&2
  exit 1
}

# Kill a daemon by pid: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL; then make
# sure nothing of its process group / children survives.
stop_pid() { # name pid [state dir it belongs to]
  local name=$1 pid=$2 owner_dir=${3:-$NEWSFLOW_STATE_DIR} pgid kids t0
  pgid="$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' || true)"
  kids="$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ' || true)"
  log "$name: stopping pid $pid (SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  t0=$(now)
  while pid_alive "$pid" && (($(now) - t0 < STOP_TIMEOUT)); do sleep 0.5; done
  if pid_alive "$pid"; then
    warn "$name: pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  # Leftovers: children it forked, and its own process group (we start every
  # daemon in a new session, so that group holds nothing but our processes).
  local k
  if [[ -n $pgid && $pgid != "$(ps -o pgid= -p $$ | tr -d ' ')" && $pgid -gt 1 ]]; then
    kids="$kids $(pgrep -g "$pgid" 2>/dev/null | tr '\n' ' ' || true)"
  fi
  for k in $kids; do
    # only processes that belong to our state dir (pids may have been reused)
    if pid_alive "$k" && [[ $(cmdline_of "$k") == *"$owner_dir"* ]]; then
      warn "$name: killing leftover process $k"
      kill -KILL "$k" 2>/dev/null || true
    fi
  done
  t0=$(now)
  while pid_alive "$pid" && (($(now) - t0 < 10)); do sleep 0.2; done
  pid_alive "$pid" && die "$name: could not stop pid $pid"
  log "$name: stopped"
}

# =================================================================== Kafka ===
ensure_kafka_jars() {
  local lib="$KAFKA_DIR/lib" marker want
  marker="$lib/.resolved"
  want="kafka=$KAFKA_VERSION pom=$(sha256sum "$POM" | cut -c1-16)"
  if [[ -f $marker && "$(cat "$marker")" == "$want" ]]; then return 0; fi
  log "kafka: resolving Kafka $KAFKA_VERSION jars with Maven from deploy/pom.xml (first run only) ..."
  local t0 tmp="$KAFKA_DIR/lib.tmp" mlog="$KAFKA_DIR/logs/maven.log"
  t0=$(now)
  rm -rf "$tmp"
  run_maven "$mlog" -f "$POM" "$MVN_DEP_PLUGIN:copy-dependencies" -DincludeScope=runtime \
    -DoutputDirectory="$tmp" || maven_failed "the Kafka $KAFKA_VERSION jars" "$mlog"
  compgen -G "$tmp/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null || maven_failed "kafka_2.13-$KAFKA_VERSION.jar" "$mlog"
  rm -rf "$lib"
  mv "$tmp" "$lib"
  echo "$want" >"$marker"
  local jars=("$lib"/*.jar)
  log "kafka: ${#jars[@]} jars in $lib ($(du -sh "$lib" | cut -f1), $(($(now) - t0))s)"
}

# The node whose dir, ports and pid file the functions below act on (1-based). Node 1 keeps
# the single-broker layout ($KAFKA_DIR); node n > 1 lives in $KAFKA_DIR/node-n. Node n's
# ports are each base port + 2(n-1): 9092/9093, 9094/9095, 9096/9097 by default.
use_kafka_node() { # n
  KNODE=$1
  if ((KNODE == 1)); then KNODE_DIR=$KAFKA_DIR; else KNODE_DIR=$KAFKA_DIR/node-$KNODE; fi
  KNODE_PORT=$((KAFKA_PORT + 2 * (KNODE - 1)))
  KNODE_CONTROLLER_PORT=$((KAFKA_CONTROLLER_PORT + 2 * (KNODE - 1)))
  KNODE_SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:+$((KAFKA_SASL_SSL_PORT + 2 * (KNODE - 1)))}
  KNODE_NAME=kafka; ((KNODE == 1)) || KNODE_NAME=kafka-$KNODE
  KAFKA_PID_FILE=$KNODE_DIR/kafka.pid
}

# Nodes of this state dir: as many as it was formatted for, else KAFKA_BROKERS.
kafka_node_count() {
  if [[ -s $KAFKA_DIR/brokers ]]; then cat "$KAFKA_DIR/brokers"
  elif [[ -f $KAFKA_DIR/data/meta.properties ]]; then echo 1   # formatted before KAFKA_BROKERS existed
  else echo "$KAFKA_BROKERS"; fi
}

# Replication of the internal topics and the brokers' defaults: 3 (or all brokers when fewer),
# and a write acknowledged by all in-sync replicas needs 2 of them once there are 3.
kafka_replication() { echo $((KAFKA_BROKERS < 3 ? KAFKA_BROKERS : 3)); }
kafka_min_isr() { echo $((KAFKA_BROKERS < 3 ? 1 : 2)); }

write_kafka_config() {
  local quorum rf min_isr n voters=""
  rf=$(kafka_replication); min_isr=$(kafka_min_isr)
  if ((KAFKA_BROKERS == 1)); then
    quorum="controller.quorum.bootstrap.servers=127.0.0.1:$KNODE_CONTROLLER_PORT"
  else
    for ((n = 1; n <= KAFKA_BROKERS; n++)); do
      voters+="${voters:+,}$n@127.0.0.1:$((KAFKA_CONTROLLER_PORT + 2 * (n - 1)))"
    done
    quorum="controller.quorum.voters=$voters"
  fi
  # umask: the file may hold the SASL_SSL listener's store password
  (umask 077; : >"$KNODE_DIR/server.properties.tmp")
  cat >"$KNODE_DIR/server.properties.tmp" <<EOF
# Generated by deploy/local/stack.sh -- edits are overwritten on every 'up'.
process.roles=broker,controller
node.id=$KNODE
$quorum
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$KNODE_PORT,CONTROLLER://127.0.0.1:$KNODE_CONTROLLER_PORT${KNODE_SASL_SSL_PORT:+,SASL_SSL://127.0.0.1:$KNODE_SASL_SSL_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:$KNODE_PORT${KNODE_SASL_SSL_PORT:+,SASL_SSL://127.0.0.1:$KNODE_SASL_SSL_PORT}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT${KNODE_SASL_SSL_PORT:+,SASL_SSL:SASL_SSL}

log.dirs=$KNODE_DIR/data
num.partitions=3
auto.create.topics.enable=false

# $KAFKA_BROKERS broker(s): topics and internal topics replicated $rf times, min ISR $min_isr
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0

# 10 MiB records (raw article HTML can be big)
message.max.bytes=10485760
replica.fetch.max.bytes=10485760

log.retention.hours=168
log.segment.bytes=268435456
EOF
  if [[ -n $KAFKA_SASL_SSL_PORT ]]; then write_sasl_ssl_config >>"$KNODE_DIR/server.properties.tmp"; fi
  mv "$KNODE_DIR/server.properties.tmp" "$KNODE_DIR/server.properties"
}

check_sasl_ssl_env() {
  [[ -n $KAFKA_SASL_SSL_PORT ]] || return 0
  validate_port KAFKA_SASL_SSL_PORT "$KAFKA_SASL_SSL_PORT"
  local v
  for v in KAFKA_SSL_KEYSTORE KAFKA_SSL_TRUSTSTORE KAFKA_SSL_PASSWORD; do
    [[ -n ${!v:-} ]] || die "KAFKA_SASL_SSL_PORT is set: $v is needed too"
  done
  [[ -r $KAFKA_SSL_KEYSTORE ]] || die "KAFKA_SSL_KEYSTORE=$KAFKA_SSL_KEYSTORE is not a readable file"
  [[ -r $KAFKA_SSL_TRUSTSTORE ]] || die "KAFKA_SSL_TRUSTSTORE=$KAFKA_SSL_TRUSTSTORE is not a readable file"
  case $KAFKA_SSL_CLIENT_AUTH in required|requested|none) ;;
    *) die "KAFKA_SSL_CLIENT_AUTH must be required, requested or none, got '$KAFKA_SSL_CLIENT_AUTH'" ;; esac
}

# The SASL_SSL listener: SCRAM-SHA-512 over TLS with the given stores. Brokers and the
# controller keep talking PLAINTEXT among themselves on loopback.
write_sasl_ssl_config() {
  cat <<EOF

# SASL_SSL listener (KAFKA_SASL_SSL_PORT); SCRAM users are created at format time (KAFKA_SCRAM_USERS).
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$KAFKA_SSL_KEYSTORE
listener.name.sasl_ssl.ssl.keystore.password=$KAFKA_SSL_PASSWORD
listener.name.sasl_ssl.ssl.key.password=$KAFKA_SSL_PASSWORD
listener.name.sasl_ssl.ssl.truststore.type=PKCS12
listener.name.sasl_ssl.ssl.truststore.location=$KAFKA_SSL_TRUSTSTORE
listener.name.sasl_ssl.ssl.truststore.password=$KAFKA_SSL_PASSWORD
listener.name.sasl_ssl.ssl.client.auth=$KAFKA_SSL_CLIENT_AUTH
EOF
}

# Fills the array named $1 with StorageTool --add-scram arguments for KAFKA_SCRAM_USERS.
scram_args() {
  local -n out=$1
  local pair user pw
  local -a pairs
  out=()
  IFS=, read -r -a pairs <<<"$KAFKA_SCRAM_USERS"
  for pair in "${pairs[@]}"; do
    user=${pair%%=*}; pw=${pair#*=}
    [[ $pair == *=* && -n $user && -n $pw ]] || die "KAFKA_SCRAM_USERS: '$user' is not user=password"
    out+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$pw]")
  done
}

format_kafka_storage() {
  local java=$1
  if [[ -f $KNODE_DIR/data/meta.properties ]]; then
    [[ -z $KAFKA_SCRAM_USERS ]] ||
      warn "$KNODE_NAME: KAFKA_SCRAM_USERS is read only when the storage is formatted; $KNODE_DIR/data was formatted earlier"
    return 0
  fi
  local cid
  if [[ -s $KAFKA_DIR/cluster.id ]]; then
    cid="$(cat "$KAFKA_DIR/cluster.id")"
  else
    cid="$("$java" -cp "$KAFKA_DIR/lib/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    [[ $cid =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka: could not generate a cluster id (got '$cid')"
    echo "$cid" >"$KAFKA_DIR/cluster.id"
  fi
  log "$KNODE_NAME: formatting KRaft storage in $KNODE_DIR/data (cluster id $cid)"
  local out
  local -a scram=() quorum=()
  scram_args scram
  # one node: a dynamic quorum of itself; several: the static voters of server.properties
  ((KAFKA_BROKERS > 1)) || quorum=(--standalone)
  if ! out="$("$java" -Dlog4j2.configurationFile="file:$KAFKA_LOG4J2_CONFIG" -Dkafka.logs.dir="$KNODE_DIR/logs" \
        -cp "$KAFKA_DIR/lib/*" kafka.tools.StorageTool format -t "$cid" \
        -c "$KNODE_DIR/server.properties" "${quorum[@]}" "${scram[@]}" 2>&1)"; then
    printf '%s\n' "$out" | tail -n 20 >&2
    die "$KNODE_NAME: storage format failed"
  fi
  echo "$KAFKA_BROKERS" >"$KAFKA_DIR/brokers"
}

# Start every node of the cluster that is not running, then wait until each is ready: with
# several nodes none is ready before a majority of the controllers runs.
kafka_up() {
  local formatted n pid foreign java
  [[ $KAFKA_BROKERS =~ ^[1-9]$ ]] || die "KAFKA_BROKERS must be 1 to 9, got '$KAFKA_BROKERS'"
  formatted=$(kafka_node_count)
  ((formatted == KAFKA_BROKERS)) ||
    die "kafka: $KAFKA_DIR holds a cluster of $formatted broker(s), KAFKA_BROKERS=$KAFKA_BROKERS: use another NEWSFLOW_STATE_DIR, or remove $KAFKA_DIR (its data with it)"
  local -a launched=() offsets=() pids=()
  for ((n = 1; n <= KAFKA_BROKERS; n++)); do
    use_kafka_node "$n"
    pid="$(service_pid kafka)"
    if [[ -n $pid ]]; then log "$KNODE_NAME: already running (pid $pid, port $KNODE_PORT)"; continue; fi
    if ((n == 1)); then
      foreign="$(foreign_service kafka)"
      if [[ -n $foreign ]]; then
        log "kafka: already running from state dir ${foreign#* } (pid ${foreign%% *}, port $KAFKA_PORT); reusing it"
        continue
      fi
    fi
    require_port_free "$KNODE_PORT"
    require_port_free "$KNODE_CONTROLLER_PORT"
    check_sasl_ssl_env
    [[ -z $KNODE_SASL_SSL_PORT ]] || require_port_free "$KNODE_SASL_SSL_PORT"
    [[ -n ${java:-} ]] || java="$(kafka_java)"
    mkdir -p "$KNODE_DIR/logs" "$KNODE_DIR/data" "$KAFKA_DIR/logs"
    ensure_kafka_jars
    write_kafka_config
    format_kafka_storage "$java"
    launch_kafka_node "$java"
    launched+=("$n"); pids+=("$KNODE_PID"); offsets+=("$KNODE_LOG_OFFSET")
  done
  local i
  for i in "${!launched[@]}"; do
    use_kafka_node "${launched[$i]}"
    wait_kafka_node "${pids[$i]}" "${offsets[$i]}"
  done
}

launch_kafka_node() { # java -> KNODE_PID, KNODE_LOG_OFFSET
  local java=$1 server_log="$KNODE_DIR/logs/server.log"
  KNODE_LOG_OFFSET=0
  [[ -f $server_log ]] && KNODE_LOG_OFFSET=$(stat -c %s "$server_log")
  log "$KNODE_NAME: starting Kafka $KAFKA_VERSION on 127.0.0.1:$KNODE_PORT (controller :$KNODE_CONTROLLER_PORT${KNODE_SASL_SSL_PORT:+, SASL_SSL :$KNODE_SASL_SSL_PORT}, heap $KAFKA_HEAP, $("$java" -version 2>&1 | head -1))"
  rm -f "$KAFKA_PID_FILE"
  {
    printf '\n===== %s starting kafka =====\n' "$(date -Is)"
  } >>"$KNODE_DIR/logs/kafka.out"
  (
    cd "$KNODE_DIR"
    # bash -c writes its own pid, then execs java: the pid file holds the JVM's pid
    # even if setsid had to fork. New session => own process group for 'down'.
    # shellcheck disable=SC2016
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_PID_FILE" \
      "$java" -server "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true \
      -Dlog4j2.shutdownHookEnabled=false \
      "-Xlog:gc*:file=$KNODE_DIR/logs/kafka-gc.log:time,tags:filecount=5,filesize=20M" \
      "-XX:ErrorFile=$KNODE_DIR/logs/hs_err_pid%p.log" \
      "-Dkafka.logs.dir=$KNODE_DIR/logs" \
      "-Dlog4j2.configurationFile=file:$KAFKA_LOG4J2_CONFIG" \
      -cp "$KAFKA_DIR/lib/*" kafka.Kafka "$KNODE_DIR/server.properties" \
      >>"$KNODE_DIR/logs/kafka.out" 2>&1 </dev/null 9>&- &
  )
  local _
  for _ in $(seq 1 50); do [[ -s $KAFKA_PID_FILE ]] && break; sleep 0.1; done
  KNODE_PID="$(tr -dc '0-9' <"$KAFKA_PID_FILE" 2>/dev/null || true)"
  [[ -n $KNODE_PID ]] || die "$KNODE_NAME: failed to launch (no pid file); see $KNODE_DIR/logs/kafka.out"
}

wait_kafka_node() { # pid log-offset
  local pid=$1 offset=$2 server_log="$KNODE_DIR/logs/server.log" t0
  t0=$(now)
  while :; do
    if ! pid_alive "$pid"; then
      rm -f "$KAFKA_PID_FILE"
      kafka_fail_dump "$KNODE_NAME: process $pid exited during startup"
    fi
    if port_open "$KNODE_PORT" &&
       tail -c +"$((offset + 1))" "$server_log" 2>/dev/null | grep -q 'Kafka Server started'; then
      break
    fi
    if (($(now) - t0 >= KAFKA_START_TIMEOUT)); then
      kafka_fail_dump "$KNODE_NAME: not ready after ${KAFKA_START_TIMEOUT}s (pid $pid left running; 'stack.sh down kafka' stops it)"
    fi
    sleep 0.5
  done
  log "$KNODE_NAME: ready on 127.0.0.1:$KNODE_PORT (pid $pid, $(($(now) - t0))s)"
}

kafka_fail_dump() {
  printf '[stack] ERROR: %s\n' "$1" >&2
  printf '[stack] --- last lines of %s ---\n' "$KNODE_DIR/logs/server.log" >&2
  tail -n 30 "$KNODE_DIR/logs/server.log" 2>/dev/null | sed 's/^/    /' >&2 || true
  printf '[stack] --- last lines of %s ---\n' "$KNODE_DIR/logs/kafka.out" >&2
  tail -n 15 "$KNODE_DIR/logs/kafka.out" 2>/dev/null | sed 's/^/    /' >&2 || true
  exit 1
}

# `down` while the port is served by the stack of another state dir (see
# foreign_service): stop that one, so fault-injection tests see the outage.
stop_foreign() { # kafka|es ; returns 1 if there was none
  local svc=$1 foreign fpid fdir
  foreign="$(foreign_service "$svc")"
  [[ -n $foreign ]] || return 1
  fpid=${foreign%% *}; fdir=${foreign#* }
  log "$svc: port is served by the newsflow stack of state dir $fdir (pid $fpid); stopping it"
  stop_pid "$svc" "$fpid" "$fdir"
  if [[ $svc == kafka ]]; then rm -f "$fdir/kafka/kafka.pid" 2>/dev/null || true
  else rm -f "$fdir/es/es.pid" "$fdir/es/run/elasticsearch.pid" 2>/dev/null || true; fi
}

# Stops every node of the state dir at once (one at a time, the last ones would wait for a
# controller quorum that is already gone).
kafka_down() {
  local n count rc=0
  local -a jobs=()
  count=$(kafka_node_count)
  for ((n = 1; n <= count; n++)); do
    use_kafka_node "$n"
    local pid
    pid="$(service_pid kafka)"
    if [[ -z $pid ]]; then
      rm -f "$KAFKA_PID_FILE"
      if ((n == 1)); then stop_foreign kafka || log "kafka: not running"; else log "$KNODE_NAME: not running"; fi
      continue
    fi
    (stop_pid "$KNODE_NAME" "$pid"; rm -f "$KAFKA_PID_FILE") &
    jobs+=($!)
  done
  for n in "${jobs[@]}"; do wait "$n" || rc=$?; done
  use_kafka_node 1
  return "$rc"
}

# =========================================================== Elasticsearch ===
as_root() { [[ $(id -u) -eq 0 ]]; }

ensure_es_user() {
  if id -u "$ES_USER" >/dev/null 2>&1; then return 0; fi
  require_cmd useradd
  log "es: creating system user $ES_USER (Elasticsearch refuses to run as root)"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$ES_USER" ||
    id -u "$ES_USER" >/dev/null 2>&1 || die "could not create user $ES_USER"
}

# Run a command as the ES user (or as ourselves when not root).
as_es() {
  if as_root; then
    if command -v runuser >/dev/null 2>&1; then runuser -u "$ES_USER" -- "$@"
    else setpriv --reuid="$ES_USER" --regid="$ES_USER" --init-groups -- "$@"; fi
  else
    "$@"
  fi
}

ensure_es_dist() {
  local marker="$ES_HOME/.newsflow-es-version"
  if [[ -f $marker && "$(cat "$marker")" == "$ES_VERSION" && -x $ES_HOME/bin/elasticsearch ]]; then return 0; fi
  local dist="$ES_DIR/dist" mlog="$ES_DIR/maven.log" t0 zip
  t0=$(now)
  log "es: downloading Elasticsearch $ES_VERSION integ-test-zip (~130 MB) with Maven (first run only) ..."
  rm -rf "$dist"; mkdir -p "$dist"
  run_maven "$mlog" -f "$POM" "$MVN_DEP_PLUGIN:copy" \
    -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
    -DoutputDirectory="$dist" || maven_failed "org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" "$mlog"
  zip="$dist/elasticsearch-$ES_VERSION.zip"
  [[ -s $zip ]] || maven_failed "elasticsearch-$ES_VERSION.zip" "$mlog"
  log "es: unpacking into $ES_HOME"
  mkdir -p "$dist/unpack"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q "$zip" -d "$dist/unpack" || die "es: $zip is corrupt; delete it from ~/.m2/repository/org/elasticsearch/distribution/integ-test-zip and retry"
  else
    python3 -m zipfile -e "$zip" "$dist/unpack" || die "es: could not unpack $zip (install unzip)"
  fi
  [[ -d $dist/unpack/elasticsearch-$ES_VERSION ]] || die "es: unexpected zip layout in $zip"
  rm -rf "$ES_HOME"
  mv "$dist/unpack/elasticsearch-$ES_VERSION" "$ES_HOME"
  chmod +x "$ES_HOME"/bin/* 2>/dev/null || true
  rm -rf "$dist"
  echo "$ES_VERSION" >"$marker"
  log "es: Elasticsearch $ES_VERSION ready in $ES_HOME ($(($(now) - t0))s)"
}

# The integ-test-zip lacks the rest-root module, i.e. `GET /` and `HEAD /` (client
# info()/ping()). Compile a stand-in (es-rest-root/NewsflowRootPlugin.java) against
# the distribution's own jars and install it as a module. Non-fatal on failure.
ensure_es_root_module() { # java_home
  local jhome=$1 src="$SCRIPT_DIR/es-rest-root/NewsflowRootPlugin.java"
  local mod="$ES_HOME/modules/newsflow-rest-root" build="$ES_DIR/build-rest-root" want out
  [[ -f $src ]] || return 0
  want="es=$ES_VERSION src=$(sha256sum "$src" | cut -c1-16)"
  if [[ -f $mod/.built && "$(cat "$mod/.built")" == "$want" ]]; then return 0; fi
  rm -rf "$mod" "$build"
  if [[ ! -x $jhome/bin/javac || ! -x $jhome/bin/jar ]]; then
    warn "es: $jhome has no javac/jar; starting without the GET / endpoint (newsflow-rest-root)"
    return 0
  fi
  mkdir -p "$build/classes"
  if ! out="$("$jhome/bin/javac" --release 21 -nowarn -cp "$ES_HOME/lib/*" -d "$build/classes" "$src" 2>&1)"; then
    warn "es: could not compile $src against Elasticsearch $ES_VERSION; GET / will answer 405:"
    printf '%s\n' "$out" | tail -n 15 | sed 's/^/    /' >&2
    rm -rf "$build"
    return 0
  fi
  mkdir -p "$mod"
  "$jhome/bin/jar" cf "$mod/newsflow-rest-root.jar" -C "$build/classes" .
  cat >"$mod/plugin-descriptor.properties" <<EOF
description=Newsflow local stack: GET and HEAD / (stand-in for rest-root, absent from the integ-test-zip)
version=$ES_VERSION
name=newsflow-rest-root
classname=dev.newsflow.esroot.NewsflowRootPlugin
java.version=21
elasticsearch.version=$ES_VERSION
EOF
  echo "$want" >"$mod/.built"
  rm -rf "$build"
  log "es: built module newsflow-rest-root (GET / and HEAD /)"
}

write_es_config() {
  cat >"$ES_HOME/config/elasticsearch.yml" <<EOF
# Generated by deploy/local/stack.sh -- edits are overwritten on every 'up'.
cluster.name: $ES_CLUSTER_NAME
node.name: newsflow-local-1
path.data: $ES_DIR/data
path.logs: $ES_DIR/logs
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
discovery.type: single-node
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
EOF
}

es_fail_dump() {
  printf '[stack] ERROR: %s\n' "$1" >&2
  printf '[stack] --- last lines of %s ---\n' "$ES_DIR/logs/$ES_CLUSTER_NAME.log" >&2
  tail -n 30 "$ES_DIR/logs/$ES_CLUSTER_NAME.log" 2>/dev/null | sed 's/^/    /' >&2 || true
  printf '[stack] --- last lines of %s ---\n' "$ES_DIR/logs/es.out" >&2
  tail -n 20 "$ES_DIR/logs/es.out" 2>/dev/null | sed 's/^/    /' >&2 || true
  exit 1
}

es_http() { # path -> body (empty on failure)
  curl -s --noproxy '*' -m "${2:-5}" "http://127.0.0.1:$ES_PORT$1" 2>/dev/null || true
}

json_field() { # json key -> first string/number value
  sed -n "s/.*\"$2\"[[:space:]]*:[[:space:]]*\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$1" | head -1
}

es_up() {
  local pid
  pid="$(service_pid es)"
  if [[ -n $pid ]]; then log "es: already running (pid $pid, port $ES_PORT)"; return 0; fi
  local foreign
  foreign="$(foreign_service es)"
  if [[ -n $foreign ]]; then
    log "es: already running from state dir ${foreign#* } (pid ${foreign%% *}, port $ES_PORT); reusing it"
    return 0
  fi
  require_port_free "$ES_PORT"
  require_port_free "$ES_TRANSPORT_PORT"
  require_cmd curl
  local jhome
  jhome="$(es_java_home)"
  if as_root; then
    case "$ES_DIR/" in
      /root/*) die "es: NEWSFLOW_STATE_DIR resolves under /root ($NEWSFLOW_STATE_DIR); Elasticsearch runs as user $ES_USER, which cannot reach /root. Put the state dir elsewhere (e.g. NEWSFLOW_STATE_DIR=/var/tmp/newsflow)." ;;
    esac
    ensure_es_user
  fi
  mkdir -p "$ES_DIR/data" "$ES_DIR/logs" "$ES_DIR/tmp" "$ES_DIR/run"
  ensure_es_dist
  ensure_es_root_module "$jhome"
  write_es_config
  if as_root; then
    # ES writes its keystore into config/, gc.log into logs/, pid into run/.
    chown -R "$ES_USER:" "$ES_HOME" "$ES_DIR/run"
    local d
    for d in "$ES_DIR/data" "$ES_DIR/logs" "$ES_DIR/tmp"; do
      [[ $(stat -c %U "$d") == "$ES_USER" ]] || chown -R "$ES_USER:" "$d"
    done
    as_es test -x "$ES_HOME/bin/elasticsearch" -a -w "$ES_DIR/data" ||
      die "es: user $ES_USER cannot reach $ES_DIR (a parent directory of NEWSFLOW_STATE_DIR is not world-searchable: chmod o+x it or move the state dir)"
  fi

  local t0 rc=0
  t0=$(now)
  rm -f "$ES_PID_FILE" "$ES_DIR/run/elasticsearch.pid"
  printf '\n===== %s starting elasticsearch =====\n' "$(date -Is)" >>"$ES_DIR/logs/es.out"
  log "es: starting Elasticsearch $ES_VERSION on 127.0.0.1:$ES_PORT (transport :$ES_TRANSPORT_PORT, heap $ES_HEAP, java $jhome$(as_root && echo ", user $ES_USER"))"
  # -d: the CLI returns once the node is started (or failed); the server JVM
  # (whose pid lands in run/elasticsearch.pid) stays in the new session.
  local -a runas=()
  if as_root; then
    if command -v runuser >/dev/null 2>&1; then runas=(runuser -u "$ES_USER" --)
    else runas=(setpriv "--reuid=$ES_USER" "--regid=$ES_USER" --init-groups --); fi
  fi
  (
    cd "$ES_DIR"
    # ES 9 wants 65535 open files (only a warning on loopback); raise if allowed.
    ulimit -n 65535 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    timeout "$ES_START_TIMEOUT" setsid "${runas[@]}" env -u JAVA_HOME \
      ES_JAVA_HOME="$jhome" \
      ES_JAVA_OPTS="-Xms$ES_HEAP -Xmx$ES_HEAP ${ES_EXTRA_JAVA_OPTS:-}" \
      ES_PATH_CONF="$ES_HOME/config" ES_TMPDIR="$ES_DIR/tmp" \
      "$ES_HOME/bin/elasticsearch" -d -p "$ES_DIR/run/elasticsearch.pid" \
      >>"$ES_DIR/logs/es.out" 2>&1 </dev/null 9>&-
  ) || rc=$?
  pid="$(tr -dc '0-9' <"$ES_DIR/run/elasticsearch.pid" 2>/dev/null || true)"
  if ((rc != 0)); then
    [[ -n $pid ]] || pid="$(service_pid es)"
    if pid_alive "$pid"; then stop_pid es "$pid" >/dev/null 2>&1 || true; fi
    rm -f "$ES_PID_FILE"
    if ((rc == 124)); then es_fail_dump "es: not started after ${ES_START_TIMEOUT}s"; fi
    es_fail_dump "es: bin/elasticsearch exited with status $rc"
  fi
  if ! pid_alive "$pid"; then es_fail_dump "es: started but no live pid in $ES_DIR/run/elasticsearch.pid"; fi
  echo "$pid" >"$ES_PID_FILE"

  local body status
  while :; do
    pid_alive "$pid" || { rm -f "$ES_PID_FILE"; es_fail_dump "es: process $pid exited during startup"; }
    body="$(es_http "/_cluster/health?wait_for_status=yellow&timeout=5s" 10)"
    status="$(json_field "$body" status)"
    [[ $status == green || $status == yellow ]] && break
    if (($(now) - t0 >= ES_START_TIMEOUT)); then
      es_fail_dump "es: cluster health not yellow after ${ES_START_TIMEOUT}s (last: ${status:-no answer}; pid $pid left running; 'stack.sh down es' stops it)"
    fi
    sleep 1
  done
  log "es: ready on http://127.0.0.1:$ES_PORT (pid $pid, health $status, $(($(now) - t0))s)"
}

es_down() {
  local pid
  pid="$(service_pid es)"
  if [[ -z $pid ]]; then
    rm -f "$ES_PID_FILE"
    stop_foreign es || log "es: not running"
    return 0
  fi
  stop_pid es "$pid"
  rm -f "$ES_PID_FILE" "$ES_DIR/run/elasticsearch.pid" 2>/dev/null || true
}

# ================================================================ commands ===
kafka_status_lines() { # one line per node: "kafka: ...", "kafka-2: ...", ...
  local pid foreign n count
  count=$(kafka_node_count)
  for ((n = 1; n <= count; n++)); do
    use_kafka_node "$n"
    pid="$(service_pid kafka)"
    if [[ -n $pid ]]; then
      if port_open "$KNODE_PORT"; then
        echo "$KNODE_NAME: running pid=$pid port=$KNODE_PORT controller_port=$KNODE_CONTROLLER_PORT version=$KAFKA_VERSION"
      else
        echo "$KNODE_NAME: starting/unhealthy pid=$pid port=$KNODE_PORT (not accepting connections)"
      fi
    elif ((n == 1)) && foreign="$(foreign_service kafka)" && [[ -n $foreign ]]; then
      echo "kafka: running pid=${foreign%% *} port=$KAFKA_PORT controller_port=$KAFKA_CONTROLLER_PORT version=$KAFKA_VERSION (stack of state dir ${foreign#* })"
    elif port_open "$KNODE_PORT"; then
      echo "$KNODE_NAME: stopped (port $KNODE_PORT is in use by another process)"
    else
      echo "$KNODE_NAME: stopped port=$KNODE_PORT"
    fi
  done
  use_kafka_node 1
}

es_status_line() {
  local pid version health foreign="" where=""
  pid="$(service_pid es)"
  if [[ -z $pid ]] && foreign="$(foreign_service es)" && [[ -n $foreign ]]; then
    pid=${foreign%% *}; where=" (stack of state dir ${foreign#* })"
  fi
  if [[ -n $pid ]]; then
    version="$(json_field "$(es_http / 3)" number)"
    health="$(json_field "$(es_http /_cluster/health 3)" status)"
    if [[ $health == green || $health == yellow ]]; then
      echo "es: running pid=$pid port=$ES_PORT version=${version:-?} health=$health$where"
    else
      echo "es: starting/unhealthy pid=$pid port=$ES_PORT version=${version:-?} health=${health:-unreachable}$where"
    fi
  elif port_open "$ES_PORT"; then
    echo "es: stopped (port $ES_PORT is in use by another process)"
  else
    echo "es: stopped port=$ES_PORT"
  fi
}

cmd_status() {
  local quiet=0 k e
  if [[ ${1:-} == --quiet || ${1:-} == -q ]]; then quiet=1; fi
  k="$(kafka_status_lines)"
  e="$(es_status_line)"
  if ((quiet == 0)); then printf '%s\n%s\n' "$k" "$e"; fi
  ! grep -qv '^kafka[-0-9]*: running' <<<"$k" && [[ $e == "es: running"* ]]
}

cmd_logs() {
  local svc=${1:-all} f
  if [[ $svc == all || $svc == kafka ]]; then
    for f in "$KAFKA_DIR"/logs/server.log "$KAFKA_DIR"/logs/kafka.out "$KAFKA_DIR"/node-*/logs/server.log; do
      [[ -s $f ]] || continue
      echo "==> $f <=="; tail -n 100 "$f"; echo
    done
  fi
  if [[ $svc == all || $svc == es ]]; then
    for f in "$ES_DIR/logs/$ES_CLUSTER_NAME.log" "$ES_DIR/logs/es.out"; do
      [[ -s $f ]] || continue
      echo "==> $f <=="; tail -n 100 "$f"; echo
    done
  fi
}

main() {
  local cmd=${1:-} svc=${2:-all}
  validate_port KAFKA_PORT "$KAFKA_PORT"; validate_port KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
  validate_port ES_PORT "$ES_PORT";       validate_port ES_TRANSPORT_PORT "$ES_TRANSPORT_PORT"
  case $svc in all|kafka|es) ;; elasticsearch) svc=es ;; *) [[ $cmd == status ]] || usage ;; esac
  init_state_dir
  case $cmd in
    up)
      take_lock
      [[ $svc == es ]]    || kafka_up
      [[ $svc == kafka ]] || es_up
      ;;
    down)
      take_lock
      [[ $svc == kafka ]] || es_down
      [[ $svc == es ]]    || kafka_down
      ;;
    restart)
      [[ $svc != all ]] || usage
      take_lock
      if [[ $svc == kafka ]]; then kafka_down; kafka_up; else es_down; es_up; fi
      ;;
    status) cmd_status "${2:-}" ;;
    logs)   cmd_logs "$svc" ;;
    -h|--help|help|"") usage ;;
    *) usage ;;
  esac
}

main "$@"
