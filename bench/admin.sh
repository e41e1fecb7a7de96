#!/usr/bin/env bash
# Admin writes, side by side: the latency of key creations, key updates and rolls on SQLite
# (each over one kept-alive connection, one at a time), for this tree's release build and, with
# BASELINE_BIN, an older one, in interleaved rounds, each build on a fresh store of its own.
# Prints each build's median p50 and p99 per operation and the ratios (docs/performance.md).
#
#   bench/admin.sh                                   # this tree alone, 3 rounds of 300 writes
#   BASELINE_BIN=/tmp/keygate-old ROUNDS=5 bench/admin.sh
#   CANDIDATE_BIN=/tmp/keygate-new bench/admin.sh    # a build other than this tree's
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
WRITES=${WRITES:-300}

source bench/lib.sh
need curl

if [ -z "${CANDIDATE_BIN:-}" ]; then
  cargo build --release --quiet --bin keygate
  CANDIDATE_BIN=$PWD/target/release/keygate
fi
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
token=bench-admin-token-0123456789

# run BUILD LABEL ROUND: one round of each operation against BUILD on a fresh store; appends
# "LABEL OPERATION P50 P99" lines to $work/results.
run() {
  local bin=$1 label=$2 round=$3 dir port admin_port
  dir=$work/$label-$round
  mkdir -p "$dir"
  port=$(free_port)
  admin_port=$(free_port)
  KEYGATE_STORE_URL=sqlite://$dir/keygate.db KEYGATE_SERVER_LISTEN=127.0.0.1:$port \
    KEYGATE_SERVER_ADMIN_LISTEN=127.0.0.1:$admin_port KEYGATE_SERVER_ADMIN_TOKEN=$token KEYGATE_LOG=warn \
    "$bin" serve > "$dir/serve.log" 2>&1 &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/readyz" > /dev/null; do sleep 0.01; done
  python3 - "http://127.0.0.1:$admin_port" "$token" "$WRITES" "$label" << 'PY' >> "$work/results"
import http.client, json, sys, time, urllib.parse
base, token, writes, label = urllib.parse.urlsplit(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
connection = http.client.HTTPConnection(base.hostname, base.port)
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
def call(method, path, body):
    started = time.perf_counter()
    connection.request(method, path, json.dumps(body), headers)
    response = connection.getresponse()
    data = response.read()
    assert response.status in (200, 201), (response.status, data)
    return time.perf_counter() - started, json.loads(data)
call("POST", "/admin/v1/tenants", {"id": "bench", "name": "Bench"})
times = {"create": [], "update": [], "roll": []}
ids = []
for i in range(writes):
    took, body = call("POST", "/admin/v1/tenants/bench/keys",
                      {"name": "k%d" % i, "scopes": ["orders:read"], "allowedOrigins": ["https://a.example"]})
    times["create"].append(took)
    ids.append(body["data"]["id"])
for i, key in enumerate(ids):
    times["update"].append(call("PATCH", "/admin/v1/keys/" + key, {"name": "renamed %d" % i})[0])
for key in ids:
    times["roll"].append(call("POST", "/admin/v1/keys/%s/roll" % key, {"overlapSeconds": 60})[0])
for operation, values in times.items():
    values.sort()
    p50, p99 = values[len(values) // 2] * 1000, values[int(len(values) * 0.99) - 1] * 1000
    print(label, operation, round(p50, 3), round(p99, 3))
PY
  kill "$pid"
  wait "$pid" 2> /dev/null || true
  pid=
}

for round in $(seq "$ROUNDS"); do
  # The order alternates, so neither build always runs first.
  if [ -n "${BASELINE_BIN:-}" ] && [ $((round % 2)) = 1 ]; then run "$BASELINE_BIN" baseline "$round"; fi
  run "$CANDIDATE_BIN" candidate "$round"
  if [ -n "${BASELINE_BIN:-}" ] && [ $((round % 2)) = 0 ]; then run "$BASELINE_BIN" baseline "$round"; fi
done

python3 - "$work/results" << 'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    label, operation, p50, p99 = line.split()
    rows[(label, operation)].append((float(p50), float(p99)))
print("%-10s %-8s %10s %10s   (medians of %d rounds, ms)" % ("build", "write", "p50", "p99", len(next(iter(rows.values())))))
for (label, operation), values in sorted(rows.items()):
    print("%-10s %-8s %10.3f %10.3f" % (label, operation, statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)))
for operation in ("create", "update", "roll"):
    if ("baseline", operation) in rows:
        c = [statistics.median(v[i] for v in rows[("candidate", operation)]) for i in (0, 1)]
        b = [statistics.median(v[i] for v in rows[("baseline", operation)]) for i in (0, 1)]
        print("%-8s candidate / baseline: p50 %.2f, p99 %.2f" % (operation, c[0] / b[0], c[1] / b[1]))
PY
