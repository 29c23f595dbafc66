#!/usr/bin/env bash
# A nodai deployment on one machine: three nats-server nodes with JetStream
# and cluster routes on loopback, a stream with 3 replicas, two API replicas
# and a worker. Used by the cluster tests (api/tests/it/cluster.rs) and by
# operators trying the hosted setup (deploy/README.md).
#
#   deploy/local-cluster.sh up            start everything, wait until ready
#   deploy/local-cluster.sh status        what runs, where
#   deploy/local-cluster.sh start NAME    (re)start one process
#   deploy/local-cluster.sh stop NAME     SIGTERM one process (a clean stop)
#   deploy/local-cluster.sh kill NAME     SIGKILL one process (a crash)
#   deploy/local-cluster.sh down          stop everything (state is kept)
#
# NAME: nats-1..3, api-N, worker-N (api-3, worker-2 … start on demand).
# Environment:
#   CLUSTER_DIR  state, logs (<name>.log) and pid files   (./nodai-cluster)
#   NODAI_BIN    the nodai binary              (target/release/nodai)
#   BASE_PORT    NATS clients BASE+1..3, routes BASE+11..13, NATS
#                monitoring BASE+41..43, api-N on BASE+20+N,
#                worker-N on BASE+30+N                           (7400)
#   NODAI_ADMIN_TOKEN  default: generated into $CLUSTER_DIR/admin-token
# Other NODAI_* variables (NODAI_LOG, NODAI_ARCHIVE_FLUSH_SECS, …) pass
# through to every nodai process.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CLUSTER_DIR="${CLUSTER_DIR:-./nodai-cluster}"
mkdir -p "$CLUSTER_DIR"
CLUSTER_DIR="$(cd "$CLUSTER_DIR" && pwd)"
NODAI_BIN="${NODAI_BIN:-$ROOT/target/release/nodai}"
BASE_PORT="${BASE_PORT:-7400}"
STREAM="${NODAI_STREAM:-NODAI}"

die() { echo "local-cluster: $*" >&2; exit 1; }

nats_server() {
  local candidate
  for candidate in "${NATS_SERVER_BIN:-}" "$(command -v nats-server || true)" /usr/sbin/nats-server /usr/local/bin/nats-server; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return; fi
  done
  die "nats-server not found (apt-get install nats-server, or set NATS_SERVER_BIN)"
}

nats_port() { echo $((BASE_PORT + $1)); }
route_port() { echo $((BASE_PORT + 10 + $1)); }
monitor_port() { echo $((BASE_PORT + 40 + $1)); }
nats_urls() { echo "nats://127.0.0.1:$(nats_port 1),nats://127.0.0.1:$(nats_port 2),nats://127.0.0.1:$(nats_port 3)"; }
http_port() {
  case "$1" in
    api-*) echo $((BASE_PORT + 20 + ${1#api-})) ;;
    worker-*) echo $((BASE_PORT + 30 + ${1#worker-})) ;;
    *) die "no HTTP port for $1" ;;
  esac
}

pid_of() { cat "$CLUSTER_DIR/$1.pid" 2>/dev/null || true; }
alive() { local pid; pid="$(pid_of "$1")"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

admin_token() {
  if [ -n "${NODAI_ADMIN_TOKEN:-}" ]; then echo "$NODAI_ADMIN_TOKEN"; return; fi
  if [ ! -s "$CLUSTER_DIR/admin-token" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$CLUSTER_DIR/admin-token")
  fi
  cat "$CLUSTER_DIR/admin-token"
}

# Waits until `check` succeeds, for up to $2 seconds.
wait_for() {
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what not ready after ${seconds}s"
    sleep 0.1
  done
}

http_ok() { exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET %s HTTP/1.0\r\n\r\n' "$2" >&3 && head -1 <&3 | grep -q ' 200 '; }
port_open() { exec 3<>"/dev/tcp/127.0.0.1/$1"; }

start_nats() {
  local n="${1#nats-}" name="$1"
  [ "$n" -ge 1 ] && [ "$n" -le 3 ] || die "NATS nodes are nats-1..3"
  local routes="" i
  for i in 1 2 3; do
    [ "$i" = "$n" ] || routes="$routes${routes:+,}nats-route://127.0.0.1:$(route_port "$i")"
  done
  mkdir -p "$CLUSTER_DIR/$name"
  cat > "$CLUSTER_DIR/$name.conf" <<EOF
server_name: $name
listen: 127.0.0.1:$(nats_port "$n")
http: 127.0.0.1:$(monitor_port "$n")
jetstream { store_dir: "$CLUSTER_DIR/$name" }
cluster {
  name: nodai-local
  listen: 127.0.0.1:$(route_port "$n")
  routes: [$routes]
}
EOF
  "$(nats_server)" -c "$CLUSTER_DIR/$name.conf" >>"$CLUSTER_DIR/$name.log" 2>&1 &
  echo $! > "$CLUSTER_DIR/$name.pid"
  wait_for "$name" 10 port_open "$(nats_port "$n")"
}

# JetStream in a cluster answers only once the nodes have elected a meta leader.
jetstream_ready() {
  local n
  for n in 1 2 3; do
    alive "nats-$n" && http_ok "$(monitor_port "$n")" /healthz && return 0
  done
  return 1
}

start_nodai() {
  local name="$1" role="${1%-*}"
  [ -x "$NODAI_BIN" ] || die "$NODAI_BIN is not built (cargo build --release, or set NODAI_BIN)"
  mkdir -p "$CLUSTER_DIR/$name"
  NODAI_ADMIN_TOKEN="$(admin_token)" \
  NODAI_NATS_URL="$(nats_urls)" \
  NODAI_STREAM="$STREAM" \
  NODAI_STREAM_REPLICAS=3 \
  NODAI_ROLE="$role" \
  NODAI_LISTEN="127.0.0.1:$(http_port "$name")" \
  NODAI_DATA_DIR="$CLUSTER_DIR/$name" \
    "$NODAI_BIN" serve >>"$CLUSTER_DIR/$name.log" 2>&1 &
  echo $! > "$CLUSTER_DIR/$name.pid"
  local deadline=$((SECONDS + 60))
  until http_ok "$(http_port "$name")" /readyz 2>/dev/null; do
    alive "$name" || die "$name exited; see $CLUSTER_DIR/$name.log"
    [ $SECONDS -lt $deadline ] || die "$name not ready after 60s; see $CLUSTER_DIR/$name.log"
    sleep 0.1
  done
}

start() {
  local name="$1"
  if alive "$name"; then echo "$name already runs (pid $(pid_of "$name"))"; return; fi
  case "$name" in
    nats-[0-9]*) start_nats "$name" ;;
    api-[0-9]* | worker-[0-9]*) start_nodai "$name" ;;
    *) die "unknown process $name (nats-1..3, api-N, worker-N)" ;;
  esac
  echo "$name started (pid $(pid_of "$name"))"
}

signal() {
  local sig="$1" name="$2" pid
  pid="$(pid_of "$name")"
  if ! alive "$name"; then echo "$name is not running"; return; fi
  kill "-$sig" "$pid"
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || die "$name (pid $pid) did not stop within 30s"
    sleep 0.05
  done
  rm -f "$CLUSTER_DIR/$name.pid"
  echo "$name stopped ($sig)"
}

names() { for f in "$CLUSTER_DIR"/*.pid; do [ -e "$f" ] && basename "$f" .pid; done; }

case "${1:-}" in
  up)
    for n in nats-1 nats-2 nats-3; do alive "$n" || start_nats "$n"; done
    wait_for "JetStream (a meta leader)" 30 jetstream_ready
    echo "NATS cluster up: $(nats_urls)"
    # The first nodai creates the stream with 3 replicas; right after the
    # election that can still fail, and nodai exits with a clear error: retry.
    for _ in 1 2 3 4; do
      alive api-1 || (start_nodai api-1) 2>/dev/null || sleep 1
    done
    alive api-1 || start_nodai api-1
    alive api-1 || die "api-1 did not start; see $CLUSTER_DIR/api-1.log"
    for n in api-2 worker-1; do start "$n"; done
    echo "admin token: $CLUSTER_DIR/admin-token"
    "$0" status
    ;;
  status)
    for name in $(names); do
      state=dead; alive "$name" && state="pid $(pid_of "$name")"
      case "$name" in
        nats-*) echo "$name  nats://127.0.0.1:$(nats_port "${name#nats-}")  $state" ;;
        *) echo "$name  http://127.0.0.1:$(http_port "$name")  $state" ;;
      esac
    done
    ;;
  start) start "${2:?start NAME}" ;;
  stop) signal TERM "${2:?stop NAME}" ;;
  kill) signal KILL "${2:?kill NAME}" ;;
  down)
    for name in $(names); do
      case "$name" in nats-*) ;; *) signal TERM "$name" ;; esac
    done
    for name in $(names); do signal TERM "$name"; done
    ;;
  *)
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
