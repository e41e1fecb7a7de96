#!/usr/bin/env bash
# Heap allocations a request (issue "Hot path, second round"): glibc's malloc, realloc and
# calloc counted by perf's uprobes on the keygate process over the whole of a wrk run of one
# scenario (a guarded POST, a session mint, a 401, and POST /v1/verify on the decision
# listener), divided by the requests wrk made (connection set-up and the background work of
# those seconds included). The probes slow keygate down several times over: the counts are the
# figure, not the rates. Release build of this tree, or
# CANDIDATE_BIN; BASELINE_BIN adds an older build, measured the same way right after.
# MEASURE=cpu counts the process's CPU time instead (perf's task-clock, no probes: at full
# speed), ROUNDS times over, the builds in turn.
#
#   bench/allocs.sh
#   BASELINE_BIN=/tmp/keygate-old bench/allocs.sh
#   MEASURE=cpu ROUNDS=2 BASELINE_BIN=/tmp/keygate-old bench/allocs.sh
#
# Needs root (uprobes), perf (Debian's linux-perf), wrk and curl; installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need wrk curl
command -v perf > /dev/null || install_missing linux-perf
cargo build --release --quiet --bin keygate --example bare_server
start_work

libc=$(ldd target/release/keygate | awk '/libc\.so\.6/ { print $3 }')
if [ "${MEASURE:-allocations}" != cpu ]; then
  for probe in malloc realloc calloc; do
    perf probe -q -x "$libc" -a "$probe" 2> /dev/null || true
  done
fi
trap 'perf probe -q -d "probe_libc:*" 2> /dev/null || true; for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done; rm -rf "$work"' EXIT

bare_port=$(free_port)
target/release/examples/bare_server "127.0.0.1:$bare_port" &
pids+=($!)

cat > "$work/post.lua" << 'LUA'
wrk.method = "POST"
wrk.body = '{"item":"tea","qty":12345}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SECRET")
if os.getenv("ORIGIN") ~= "" then wrk.headers["Origin"] = os.getenv("ORIGIN") end
if os.getenv("SECRET") == "" then wrk.headers["Authorization"] = nil end
if os.getenv("BODY") ~= "" then wrk.body = os.getenv("BODY") end
LUA

# measure BINARY NAME: starts keygate from BINARY and prints its allocations a request for each
# scenario.
measure() {
  local bin=$1 name=$2 port admin decision secret pid
  port=$(free_port)
  admin=$(free_port)
  decision=$(free_port)
  rm -rf "${work:?}/$name"
  mkdir -p "$work/$name"
  cat > "$work/$name/keygate.toml" << CONF
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
decision_listen = "127.0.0.1:$decision"
admin_token = "bench-admin-token-0123456789"
[store]
url = "sqlite://$work/$name/keygate.db"
[rate_limit]
url = "memory://"
limit = 1000000000
$(orders_route "$bare_port")
CONF
  KEYGATE_CONFIG=$work/$name/keygate.toml "$bin" serve 2> "$work/$name/requests.log" &
  pid=$!
  pids+=("$pid")
  until curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; do sleep 0.05; done
  admin_post() {
    curl -sf -X POST -H "Authorization: Bearer bench-admin-token-0123456789" -H "Content-Type: application/json" \
      "http://127.0.0.1:$admin$1" -d "$2"
  }
  admin_post /admin/v1/tenants '{"id": "bench", "name": "Bench", "modules": ["orders"]}' > /dev/null
  secret=$(admin_post /admin/v1/tenants/bench/keys \
    '{"name": "bench", "scopes": ["orders:write", "sessions:create"], "allowedOrigins": ["https://bench.example"]}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["secret"])')
  local scenario label url key origin body perf_pid requests keygate=http://127.0.0.1:$port
  local verify="{\"key\": \"$secret\", \"method\": \"POST\", \"path\": \"/api/v1/orders\"}"
  for scenario in "guarded POST|$keygate/api/v1/orders|$secret|" \
    "mint|$keygate/api/v1/sessions|$secret|https://bench.example" "401|$keygate/api/v1/orders|not-a-key|" \
    "verify|http://127.0.0.1:$decision/v1/verify|||$verify"; do
    IFS='|' read -r label url key origin body <<< "$scenario"
    # Counted over wrk's whole run, so that wrk's own count is the number of requests.
    perf stat -x, -e "$events" -p "$pid" 2> "$work/stat" &
    perf_pid=$!
    sleep 0.5
    SECRET=$key ORIGIN=$origin BODY=$body wrk -t2 -c64 -d4s -s "$work/post.lua" "$url" > "$work/wrk.out"
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    requests=$(awk '/requests in/ { print $1 }' "$work/wrk.out")
    if [ "$label" != 401 ] && grep -q "Non-2xx" "$work/wrk.out"; then
      echo "$name $label: answers that are not 2xx" >&2
      exit 1
    fi
    python3 - "$name" "$label" "$requests" "$work/stat" << 'PY'
import sys
name, label, requests, stat = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
clock = [float(line.split(",")[0]) for line in open(stat) if ",task-clock" in line]
if clock:
    print(f"  {name:<9} {label:<13} {clock[0] * 1000 / requests:6.1f} µs of CPU a request ({requests} requests)")
    sys.exit()
counts = {line.split(",")[2].split(":")[1]: int(line.split(",")[0]) for line in open(stat) if "probe_libc" in line}
total = sum(counts.values()) / requests
parts = ", ".join(f"{probe} {count / requests:.1f}" for probe, count in counts.items())
print(f"  {name:<9} {label:<13} {total:6.1f} allocations a request ({parts}; {requests} requests)")
PY
  done
  kill "$pid"
}

if [ "${MEASURE:-allocations}" = cpu ]; then
  events=task-clock
else
  events=probe_libc:malloc,probe_libc:realloc,probe_libc:calloc
fi
for _ in $(seq "${ROUNDS:-1}"); do
  measure "${CANDIDATE_BIN:-target/release/keygate}" keygate
  if [ -n "${BASELINE_BIN:-}" ]; then measure "$BASELINE_BIN" baseline; fi
done
exit 0
