#!/usr/bin/env bash
# nodai on the local three-node NATS cluster (deploy/local-cluster.sh):
# validated queries per second through one and through two API replicas,
# against GET /healthz on the same replicas in the same run; replica
# propagation latency; recovery after the node leading the stream is killed.
#
#   bash api/benches/cluster.sh          (BENCH_SECS=10 BENCH_CONNS=32 BASE_PORT=27400)
#
# Needs wrk (apt-get install wrk), nats-server and python3. Prints markdown
# rows for BENCHMARKS.md. Everything (3 NATS nodes, 2 replicas, a worker,
# the load generator) shares this machine's cores: the ratios say how the
# pieces compare here, not how a real cluster scales.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${BENCH_SECS:-10}
CONNS=${BENCH_CONNS:-32}
export BASE_PORT=${BASE_PORT:-27400}
export NODAI_ADMIN_TOKEN=bench-admin-token-0123456789 NODAI_LOG=warn
CLUSTER_DIR=$(mktemp -d)
export CLUSTER_DIR
TOKEN=$NODAI_ADMIN_TOKEN

cargo build --release -q -p api --bin nodai
trap 'deploy/local-cluster.sh down >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"' EXIT
deploy/local-cluster.sh up >/dev/null
A1="http://127.0.0.1:$((BASE_PORT + 21))"
A2="http://127.0.0.1:$((BASE_PORT + 22))"

admin() { # url path json → body
  curl -sf "$1$2" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$3"
}
admin "$A1" /api/v1/workflows '{"id":"echo","name":"echo","upstream_url":"builtin:echo"}' >/dev/null
key_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'; }
FREE=$(admin "$A1" /api/v1/api-keys '{"name":"free"}' | key_of)
LIMITED=$(admin "$A1" /api/v1/api-keys '{"name":"limited","rate_limit_per_hour":1000000000}' | key_of)
# A tenant mix: 64 keys with limits, each request the next one.
MANY="$CLUSTER_DIR/many.lua"
{
  echo 'wrk.method = "POST"'
  echo "wrk.body = '{\"input\":\"the quick brown fox\"}'"
  echo 'wrk.headers["Content-Type"] = "application/json"'
  echo 'local keys = {'
  for i in $(seq 1 64); do
    echo "\"$(admin "$A1" /api/v1/api-keys "{\"name\":\"m$i\",\"rate_limit_per_hour\":1000000000}" | key_of)\","
  done
  echo '}'
  echo 'local n = math.random(#keys)'
  echo 'request = function() n = n % #keys + 1; wrk.headers["X-API-Key"] = keys[n]; return wrk.format() end'
} >"$MANY"
sleep 0.5

lua() { # key → path
  local path="$CLUSTER_DIR/$1.lua"
  cat >"$path" <<LUA
wrk.method = "POST"
wrk.body = '{"input":"the quick brown fox"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "$1"
LUA
  echo "$path"
}

# rps of wrk on each url at once (connections split between them), summed.
rps() { # lua-or-"" url…
  local script=$1; shift
  local conns=$((CONNS / $#)) outs=() url
  for url in "$@"; do
    local out; out=$(mktemp)
    outs+=("$out")
    wrk -t1 -c"$conns" -d"${SECS}s" ${script:+-s "$script"} "$url" >"$out" &
  done
  wait
  cat "${outs[@]}" | awk '/^Requests\/sec/ {s += $2} END {printf "%.0f", s}'
  rm -f "${outs[@]}"
}

q=/api/v1/workflows/echo/query
echo "| measurement | one replica | two replicas | two / one |"
echo "|---|---:|---:|---:|"
row() { # name lua path
  local one two
  one=$(rps "$2" "$A1$3")
  two=$(rps "$2" "$A1$3" "$A2$3")
  echo "| $1 | $one | $two | $(awk -v a="$two" -v b="$one" 'BEGIN {printf "%.2f", a/b}') |"
  echo "$one" >"$CLUSTER_DIR/$4"
}
row "GET /healthz (baseline), req/s" "" /healthz healthz
row "query, key without limits, req/s" "$(lua "$FREE")" "$q" free
row "query, one hot key with a rate limit (admissions serialised), req/s" "$(lua "$LIMITED")" "$q" limited
row "query, 64 keys with rate limits, req/s" "$MANY" "$q" many
echo "| query without limits / healthz, one replica | $(awk -v a="$(cat "$CLUSTER_DIR/free")" -v b="$(cat "$CLUSTER_DIR/healthz")" 'BEGIN {printf "%.2f", a/b}') | | |"
echo "| query, 64 limited keys / without limits, one replica | $(awk -v a="$(cat "$CLUSTER_DIR/many")" -v b="$(cat "$CLUSTER_DIR/free")" 'BEGIN {printf "%.2f", a/b}') | | |"

# Propagation and recovery, measured by a small client.
python3 - "$A1" "$A2" "$TOKEN" "$FREE" "$BASE_PORT" "$CLUSTER_DIR" <<'PY'
import json, subprocess, sys, threading, time, urllib.request

a1, a2, token, key, base, cluster_dir = sys.argv[1:7]
base = int(base)

def call(method, url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
    except Exception:
        return 0, None

# A write on api-1, polled on api-2 until it is there.
samples = []
for i in range(300):
    status, k = call("POST", f"{a1}/api/v1/api-keys", {"name": f"p{i}"})
    assert status == 201, status
    t0 = time.perf_counter()
    while call("GET", f"{a2}/api/v1/api-keys/{k['id']}")[0] != 200:
        pass
    samples.append((time.perf_counter() - t0) * 1000)
samples.sort()
p = lambda q: samples[int(round((len(samples) - 1) * q))]
print()
print("| propagation api-1 → api-2 (300 writes, polled) | ms |")
print("|---|---:|")
print(f"| p50 | {p(0.5):.2f} |")
print(f"| p99 | {p(0.99):.2f} |")

# Recovery: 8 clients query through both replicas; the stream's leader is
# killed; the longest time without a 200 after that, and the errors seen.
def leader():
    for n in (1, 2, 3):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{base + 40 + n}/jsz?accounts=true&streams=true", timeout=2) as r:
                jsz = json.load(r)
        except Exception:
            continue
        for acc in jsz.get("account_details", []):
            for s in acc.get("stream_detail", []):
                if s["name"] == "NODAI" and s.get("cluster", {}).get("leader"):
                    return s["cluster"]["leader"]
    raise SystemExit("no stream leader")

stop = False
oks, others = [], {}
lock = threading.Lock()
def client(n):
    url = (a1, a2)[n % 2] + "/api/v1/workflows/echo/query"
    while not stop:
        status, _ = call("POST", url, {"input": "x"}, {"X-API-Key": key})
        with lock:
            if status == 200:
                oks.append(time.monotonic())
            else:
                others[status] = others.get(status, 0) + 1
threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
time.sleep(3)
node = leader()
killed = time.monotonic()
subprocess.run(["deploy/local-cluster.sh", "kill", node], check=True, stdout=subprocess.DEVNULL)
time.sleep(15)
subprocess.run(["deploy/local-cluster.sh", "start", node], check=True, stdout=subprocess.DEVNULL)
time.sleep(3)
stop = True
for t in threads:
    t.join()
after = sorted(t for t in oks if t >= killed)
gap = (after[0] - killed) if after else float("inf")
for x, y in zip(after, after[1:]):
    gap = max(gap, y - x)
print()
print("| recovery after killing the stream leader | value |")
print("|---|---:|")
print(f"| longest time without a 200 | {gap:.2f} s |")
print(f"| answers other than 200 during the run | {others or 'none'} |")
PY
