#!/usr/bin/env bash
# The query gateway under load, against GET /healthz on the same server in
# the same run, on both backends; and resident memory with 1M keys.
#
#   bash api/benches/gateway.sh          (BENCH_SECS=10 BENCH_CONNS=32 BENCH_KEYS=1000000)
#
# Needs wrk (apt-get install wrk) and, for the half-rate latency, oha
# (cargo install oha); nats-server for the NATS rows. Prints markdown rows
# for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${BENCH_SECS:-10}
CONNS=${BENCH_CONNS:-32}
KEYS=${BENCH_KEYS:-1000000}
TOKEN=bench-admin-token-0123456789
export NODAI_ADMIN_TOKEN=$TOKEN NODAI_LOG=warn

cargo build --release -q -p api --bin nodai --example prefill_keys
BIN=target/release/nodai
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_ready() { # url
  for _ in $(seq 1 600); do curl -sf "$1/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "server at $1 never became ready" >&2; exit 1
}

start_nodai() { # data-dir [args…] → sets URL, PID
  local dir=$1; shift
  local port; port=$(free_port)
  "$BIN" serve --listen "127.0.0.1:$port" --data-dir "$dir" "$@" 2>"$dir.log" &
  PID=$!; PIDS+=("$PID"); URL="http://127.0.0.1:$port"
  wait_ready "$URL"
}

to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}'; }

# wrk at full speed: prints "rps p50_ms p99_ms"
load() { # url [lua]
  local out; out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency ${2:+-s "$2"} "$1")
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
  p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
  echo "$rps $p50 $p99"
}

bench_backend() { # name [serve args…]
  local name=$1; shift
  local dir="$WORK/$name"; mkdir -p "$dir"
  start_nodai "$dir" "$@"
  curl -sf "$URL/api/v1/workflows" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"id":"echo","name":"echo","upstream_url":"builtin:echo"}' >/dev/null
  local key
  key=$(curl -sf "$URL/api/v1/api-keys" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"name":"bench","workflow_ids":["echo"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  cat >"$WORK/query.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"input":"the quick brown fox"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "$key"
LUA
  read -r h_rps h_p50 h_p99 < <(load "$URL/healthz")
  read -r q_rps q_p50 q_p99 < <(load "$URL/api/v1/workflows/echo/query" "$WORK/query.lua")
  echo "| $name | GET /healthz | $h_rps | $h_p50 | $h_p99 |"
  echo "| $name | query builtin:echo | $q_rps | $q_p50 | $q_p99 |"
  echo "| $name | ratio query / healthz | $(awk -v a="$q_rps" -v b="$h_rps" 'BEGIN {printf "%.2f", a/b}') | | |"
  if command -v oha >/dev/null; then
    local half=$((q_rps / 2))
    local p99
    p99=$(oha -z "${SECS}s" -c "$CONNS" -q "$half" --no-tui --output-format json -m POST \
      -H "X-API-Key: $key" -H 'content-type: application/json' -d '{"input":"the quick brown fox"}' \
      "$URL/api/v1/workflows/echo/query" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f" % (d["latencyPercentiles"]["p99"]*1000))')
    echo "| $name | query at half the peak ($half/s, oha) p99 ms | | | $p99 |"
  fi
  kill "$PID"; wait "$PID" 2>/dev/null || true
}

echo "| backend | measurement | requests/s | p50 ms | p99 ms |"
echo "|---|---|---:|---:|---:|"
bench_backend embedded
NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
if [ -x "$NATS_BIN" ]; then
  nport=$(free_port)
  "$NATS_BIN" -a 127.0.0.1 -p "$nport" -js -sd "$WORK/nats" >/dev/null 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  bench_backend nats --nats "nats://127.0.0.1:$nport" --stream BENCH
else
  echo "no nats-server: NATS rows skipped" >&2
fi

# Memory: resident set after replaying KEYS keys, against an empty server.
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
mkdir -p "$WORK/empty" "$WORK/full"
start_nodai "$WORK/empty"; empty=$(rss_kib "$PID"); kill "$PID"; wait "$PID" 2>/dev/null || true
target/release/examples/prefill_keys "$WORK/full" "$KEYS" >/dev/null
start_nodai "$WORK/full"; full=$(rss_kib "$PID"); kill "$PID"; wait "$PID" 2>/dev/null || true
echo
echo "| memory | value |"
echo "|---|---:|"
echo "| RSS, no keys | $((empty / 1024)) MiB |"
echo "| RSS, $KEYS keys | $((full / 1024)) MiB |"
echo "| per key | $(awk -v f="$full" -v e="$empty" -v n="$KEYS" 'BEGIN {printf "%.0f", (f-e)*1024/n}') bytes |"
