#!/usr/bin/env bash
# Start-up time with many usage events on the embedded log: full replay
# (no snapshot) against loading the snapshot (written at the previous
# shutdown) plus a tail of 10% more events.
#
#   bash api/benches/restart.sh          (BENCH_EVENTS="1000000 10000000")
#
# Prints markdown rows for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
EVENTS=${BENCH_EVENTS:-"1000000 10000000"}
export NODAI_ADMIN_TOKEN=bench-admin-token-0123456789 NODAI_LOG=info

cargo build --release -q -p api --bin nodai --example prefill_usage
BIN=target/release/nodai
WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Starts nodai on the data dir and waits for /readyz; sets PID and SECS.
start_ready() { # dir
  local port; port=$(free_port)
  local t0; t0=$(date +%s.%N)
  "$BIN" serve --listen "127.0.0.1:$port" --data-dir "$1" >/dev/null 2>>"$1.log" &
  PID=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.02; done
  SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b-a}')
}
stop() { kill -TERM "$PID"; wait "$PID" || true; PID=; }

echo "| usage events on the stream | start-up | seconds to /readyz |"
echo "|---:|---|---:|"
for n in $EVENTS; do
  dir="$WORK/d$n"; mkdir -p "$dir"
  target/release/examples/prefill_usage "$dir" "$n" >/dev/null
  written=$(date +%s)
  start_ready "$dir"
  echo "| $n | full replay (no snapshot) | $SECS |"
  stop  # writes the snapshot
  snap=$(du -m "$dir/snapshots" | cut -f1)
  start_ready "$dir"
  echo "| $n | snapshot ($snap MiB), no tail, within 2 min of writing them all | $SECS |"
  stop
  # Ids appended in the last 2 minutes are the log's duplicate window, which
  # an open loads by scanning; older segments open from their summaries.
  sleep $((written + 125 - $(date +%s) > 0 ? written + 125 - $(date +%s) : 0))
  start_ready "$dir"
  echo "| $n | snapshot, no tail | $SECS |"
  stop
  sleep 125
  target/release/examples/prefill_usage "$dir" $((n / 10)) >/dev/null
  start_ready "$dir"
  echo "| $n + $((n / 10)) | snapshot + $((n / 10)) tail (just written) | $SECS |"
  stop
  rm -rf "$dir"
done
