#!/usr/bin/env bash
# "Scale with the work": keygate with 1,000,000 keys of 10,000 tenants, on SQLite and on
# PostgreSQL, release build, on this machine. Among the keys, ROLLED have an earlier secret
# still live and IMPORTED a secret in no format of keygate's; the audit log holds the entries
# of every tenant's and key's making (about a million). Prints each target of the issues with
# its figure, met or missed. Usage counts (SPEC §13): USED of the keys counted in one interval
# and written by keygate's own flush (examples/usage_flush.rs), then a tenant's 31 days of
# hourly counts read back over HTTP. See docs/performance.md.
#
#   bench/scale.sh                      # both engines, 1M keys
#   KEYS=100000 ENGINES=sqlite bench/scale.sh
#
# Needs wrk, curl, python3 and (for PostgreSQL) Debian's postgresql; installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-1000000}
TENANTS=${TENANTS:-10000}
ENGINES=${ENGINES:-sqlite postgres}
UNKNOWN=${UNKNOWN:-100000}
ROLLED=${ROLLED:-$((KEYS / 10))}
IMPORTED=${IMPORTED:-$((KEYS / 10))}
USED=${USED:-$((KEYS / 20))}

source bench/lib.sh
now() { date +%s.%N; }
missing=()
command -v wrk > /dev/null || missing+=(wrk)
command -v curl > /dev/null || missing+=(curl)
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || missing+=(postgresql)
install_missing "${missing[@]}"

cargo build --release --quiet --bin keygate --example usage_flush
bin=$PWD/target/release/keygate
start_work

# wrk scripts: a preflight, a session mint (a guarded request: key, limit, origin, scope), and
# a flood of distinct well-formed unknown keys read from a file.
cat > "$work/preflight.lua" << 'LUA'
wrk.method = "OPTIONS"
wrk.headers["Origin"] = os.getenv("ORIGIN")
wrk.headers["Access-Control-Request-Method"] = "POST"
LUA
cat > "$work/mint.lua" << 'LUA'
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SECRET")
wrk.headers["Origin"] = "https://bench.example"
LUA
cat > "$work/unknown.lua" << 'LUA'
local keys, i = {}, 0
for line in io.lines(os.getenv("KEYS_FILE")) do keys[#keys + 1] = line end
wrk.method = "POST"
wrk.headers["Origin"] = "https://bench.example"
request = function()
  i = i % #keys + 1
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. keys[i] })
end
LUA
unknown_keys "$work/unknown.keys" "$UNKNOWN"

# p99 of wrk --latency output, in milliseconds.
wrk_p99() { awk '$1 == "99%" { v = $2; if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0; else if (v ~ /s$/) v = v * 1000; print v }'; }
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }'; }
median() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
# admin_writes COUNT PER_SECOND URL [SECONDS]: PATCHes a key's name COUNT times over one
# kept-alive connection, PER_SECOND a second (0: as fast as it goes), stopping after SECONDS.
admin_writes() {
  python3 - "$@" "$KEYGATE_SERVER_ADMIN_TOKEN" << 'PY'
import http.client, json, sys, time, urllib.parse
count, rate, url = int(sys.argv[1]), float(sys.argv[2]), urllib.parse.urlsplit(sys.argv[3])
limit, token = (float(sys.argv[4]), sys.argv[5]) if len(sys.argv) > 5 else (float("inf"), sys.argv[4])
connection = http.client.HTTPConnection(url.hostname, url.port)
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
started = time.monotonic()
for i in range(count):
    if time.monotonic() - started > limit:
        break
    if rate:
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
    connection.request("PATCH", url.path, json.dumps({"name": "write %d" % i}), headers)
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
PY
}
# measure_preflights LABEL: preflight p99 on $public for an origin some key allows and for one
# none does, on one connection, one request at a time: the latency of a preflight, not of a queue.
measure_preflights() {
  local origin p99
  for origin in https://app.t7.example https://nobody.example; do
    p99=$(ORIGIN=$origin wrk -t1 -c1 -d5s --latency -s "$work/preflight.lua" "$public/api/v1/sessions" | wrk_p99)
    report "${1}preflight p99, $origin (ms)" "$p99" "<" 1
  done
}

for engine in $ENGINES; do
  echo "== $engine: $KEYS keys of $TENANTS tenants"
  if [ "$engine" = postgres ]; then
    start_postgres "$work"
    store=$pg_url
  else
    store="sqlite://$work/keygate.db"
  fi
  port=$(free_port)
  admin_port=$(free_port)
  export KEYGATE_STORE_URL=$store KEYGATE_SERVER_LISTEN=127.0.0.1:$port KEYGATE_SERVER_ADMIN_LISTEN=127.0.0.1:$admin_port
  export KEYGATE_SERVER_ADMIN_TOKEN=bench-admin-token-0123456789 KEYGATE_RATE_LIMIT_LIMIT=1000000000 KEYGATE_LOG=warn
  public=http://127.0.0.1:$port
  admin=http://127.0.0.1:$admin_port
  auth=(-H "Authorization: Bearer $KEYGATE_SERVER_ADMIN_TOKEN" -H "Content-Type: application/json")

  "$bin" migrate 2> /dev/null
  seeded=$("$bin" --store seed --keys "$KEYS" --tenants "$TENANTS" --rolled "$ROLLED" --imported "$IMPORTED" --audit)
  python3 -c 'import json, sys; d = json.loads(sys.argv[1])["data"]
print("  seeded %(keys)d keys (%(rolled)d rolled, %(imported)d imported) and %(auditEntries)d audit entries in %(seconds).1f s" % d)' "$seeded"
  "$bin" --store tenant create --id bench --name Bench > /dev/null
  secret=$("$bin" --store key create bench --name bench --scope sessions:create --origin https://bench.example |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["secret"])')
  # A key rolled with a day's overlap (its earlier secret, $earlier, still works) and an
  # imported one, whose secret is not in keygate's format.
  earlier=$("$bin" --store key create bench --name rolled --scope sessions:create --origin https://bench.example |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["secret"])')
  "$bin" --store key roll "$("$bin" --store key list bench | python3 -c 'import json, sys; print([k["id"] for k in json.load(sys.stdin)["data"] if k["name"] == "rolled"][0])')" \
    --overlap-seconds 86400 > /dev/null
  imported=imported-bench-secret-0123456789
  python3 -c 'import hashlib, json, sys; print(json.dumps({"importHash": hashlib.sha256(sys.argv[1].encode()).hexdigest(), "prefix": "imported", "name": "imported", "scopes": ["sessions:create"], "allowedOrigins": ["https://bench.example"]}))' "$imported" |
    "$bin" --store key import --tenant bench > /dev/null

  started=$(now)
  "$bin" serve > "$work/serve-$engine.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  until curl -sf "$public/readyz" > /dev/null; do sleep 0.01; done
  ready=$(python3 -c "print(round($(now) - $started, 2))")
  # The preflight index fills behind (docs/design.md): a preflight sent now waits for it.
  preflight_at_ready=$(curl -s -o /dev/null -w '%{time_total}' -X OPTIONS -H 'Origin: https://app.t7.example' \
    -H 'Access-Control-Request-Method: POST' "$public/api/v1/sessions")
  until ! curl -s "$public/readyz" | grep -q '"preflightIndex":"filling"'; do sleep 0.01; done
  filled=$(python3 -c "print(round($(now) - $started, 2))")
  rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status")
  report "start until /readyz answers 200 (s)" "$ready" "<" 2
  echo "  then the preflight index filled at ${filled} s; a preflight sent at ready took ${preflight_at_ready} s"
  report "RSS after start (MiB)" "$rss" "<" 256

  # Admin key creation, one at a time.
  for i in $(seq 200); do
    curl -s -o /dev/null -w '%{time_total}\n' "${auth[@]}" -X POST "$admin/admin/v1/tenants/bench/keys" \
      -d '{"name":"created","scopes":["orders:read"],"allowedOrigins":["https://created.example"]}'
  done > "$work/create.times"
  create_p99=$(python3 -c 'import sys; t = sorted(float(x) * 1000 for x in open(sys.argv[1])); print(round(t[int(len(t) * 0.99) - 1], 2))' "$work/create.times")
  report "admin key creation p99 (ms)" "$create_p99" "<" 20

  measure_preflights ""

  # Guarded throughput, alone and beside 10 admin writes a second; interleaved rounds.
  key_id=$(curl -s "${auth[@]}" "$admin/admin/v1/tenants/bench/keys?limit=1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])')
  alone=() beside=()
  for round in 1 2 3; do
    alone+=("$(SECRET=$secret wrk -t2 -c32 -d8s -s "$work/mint.lua" "$public/api/v1/sessions" | wrk_rps)")
    admin_writes 80 10 "$admin/admin/v1/keys/$key_id" &
    writer=$!
    beside+=("$(SECRET=$secret wrk -t2 -c32 -d8s -s "$work/mint.lua" "$public/api/v1/sessions" | wrk_rps)")
    wait "$writer"
  done
  ratio=$(python3 -c "print(round($(median "${beside[@]}") / $(median "${alone[@]}"), 3))")
  echo "  guarded req/s alone: ${alone[*]}; beside 10 admin writes/s: ${beside[*]}"
  report "guarded throughput beside 10 admin writes/s (ratio)" "$ratio" ">=" 0.9
  # The same guarded request with a rolled key's earlier secret and with an imported secret,
  # in rounds interleaved with the current secret's, so that the machine's drift falls on all.
  current=() with_earlier=() with_imported=()
  for round in 1 2 3; do
    current+=("$(SECRET=$secret wrk -t2 -c32 -d5s -s "$work/mint.lua" "$public/api/v1/sessions" | wrk_rps)")
    with_earlier+=("$(SECRET=$earlier wrk -t2 -c32 -d5s -s "$work/mint.lua" "$public/api/v1/sessions" | wrk_rps)")
    with_imported+=("$(SECRET=$imported wrk -t2 -c32 -d5s -s "$work/mint.lua" "$public/api/v1/sessions" | wrk_rps)")
  done
  echo "  guarded req/s, current: ${current[*]}; earlier: ${with_earlier[*]}; imported: ${with_imported[*]}"
  for other in earlier imported; do
    declare -n figures=with_$other
    report "guarded throughput, $other secret / current (ratio)" "$(python3 -c "print(round($(median "${figures[@]}") / $(median "${current[@]}"), 3))")" ">=" 0.9
    unset -n figures
  done

  # The audit log's list at about a million entries: the newest page, each filter, a page deep
  # in the log by its cursor. One request at a time.
  seeded_key=$(curl -s "${auth[@]}" "$admin/admin/v1/tenants/seed-7/keys?limit=1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])')
  half_year_ago=$(python3 -c 'import datetime; print((datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=182)).strftime("%Y-%m-%dT%H:%M:%SZ"))')
  deep=$(python3 - "$admin" "$KEYGATE_SERVER_ADMIN_TOKEN" << 'PY'
import http.client, json, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
connection = http.client.HTTPConnection(url.hostname, url.port)
cursor = ""
for _ in range(50):
    connection.request("GET", "/admin/v1/audit?limit=1000" + cursor, headers={"Authorization": "Bearer " + sys.argv[2]})
    next_cursor = json.loads(connection.getresponse().read())["nextCursor"]
    if next_cursor is None:  # a smaller log than 50,000 entries: as deep as it goes
        break
    cursor = "&cursor=" + next_cursor
print(cursor)
PY
)
  queries=(
    "the newest page|limit=100"
    "one tenant's|tenantId=seed-7&limit=100"
    "one key's|targetId=$seeded_key"
    "key.roll in the last half year|action=key.roll&since=$half_year_ago&limit=100"
    "a page 50,000 entries deep|limit=100$deep"
  )
  for item in "${queries[@]}"; do
    p99=$(wrk -t1 -c1 -d5s --latency -H "Authorization: Bearer $KEYGATE_SERVER_ADMIN_TOKEN" "$admin/admin/v1/audit?${item#*|}" | wrk_p99)
    report "audit list p99, ${item%%|*} (ms)" "$p99" "<" 20
  done

  # Usage: a flush of $USED keys used in one interval (one or two outcomes each), on this store
  # while keygate serves from it, after a day of their counts; then a tenant's usage over 31
  # days, by day and by hour.
  usage=$(target/release/examples/usage_flush "$USED")
  echo "  usage: $usage"
  report "usage flush of $USED keys, slowest of 5 (ms)" "$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["flushMs"]["max"])' "$usage")" "<" 200
  read -r month_from month_to < <(python3 -c 'import datetime as d; t = d.datetime.now(d.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0); f = lambda x: x.strftime("%Y-%m-%dT%H:%M:%SZ"); print(f(t - d.timedelta(days=30)), f(t + d.timedelta(days=1)))')
  for granularity in day hour; do
    p99=$(wrk -t1 -c1 -d5s --latency -H "Authorization: Bearer $KEYGATE_SERVER_ADMIN_TOKEN" \
      "$admin/admin/v1/tenants/seed-7/usage?from=$month_from&to=$month_to&granularity=$granularity" | wrk_p99)
    report "usage of one tenant over 31 days by $granularity, p99 (ms)" "$p99" "<" 20
  done
  if [ "$engine" = postgres ]; then
    table=$("$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d keygate -Atc \
      "SELECT pg_total_relation_size('usage_counts') || ' ' || (SELECT count(*) FROM usage_counts)")
  else
    table=$(python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute("SELECT sum(pgsize) FROM dbstat WHERE name = ?", ("usage_counts",)).fetchone()[0], c.execute("SELECT count(*) FROM usage_counts").fetchone()[0])' "$work/keygate.db")
  fi
  read -r table_bytes table_rows <<< "$table"
  echo "  usage_counts: $table_rows rows in $((table_bytes / 1048576)) MiB with its indexes, $((table_bytes / table_rows)) bytes a row"

  admin_writes 1000 0 "$admin/admin/v1/keys/$key_id"
  rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status")
  report "RSS after 1,000 more admin writes (MiB)" "$rss" "<" 256

  # A flood of distinct unknown keys, then the real key: still a cache hit.
  metric() { curl -s "${auth[@]}" "$admin/metrics" | awk -v name="$1" '$1 == name { print $2 }'; }
  misses_before=$(metric keygate_key_cache_misses_total)
  KEYS_FILE=$work/unknown.keys wrk -t2 -c64 -d"$((UNKNOWN / 8000 + 2))"s -s "$work/unknown.lua" "$public/api/v1/sessions" > "$work/unknown.out"
  misses_after=$(metric keygate_key_cache_misses_total)
  filtered=$(metric keygate_unknown_keys_filtered_total)
  curl -s -o /dev/null -X POST -H "Authorization: Bearer $secret" -H "Origin: https://bench.example" "$public/api/v1/sessions"
  misses_real=$(python3 -c "print(int(float('$(metric keygate_key_cache_misses_total)') - float('$misses_after')))")
  echo "  unknown-key flood: $(wrk_rps < "$work/unknown.out") req/s, ${filtered%.*} ruled out by the filter, $(python3 -c "print(int(float('$misses_after') - float('$misses_before')))") store reads"
  report "store reads for the real key after the flood" "$misses_real" "<" 1

  kill "$pid"
  wait "$pid" 2> /dev/null || true

  # BASELINE_BIN (SQLite): an older build on a copy of the same store, measured in this run.
  # The copy loses the change feed's migration, which older builds do not know. Each of its
  # admin writes reloads every allowlist, so it gets 10 key creations, not 200, and no
  # 1,000-write or unknown-key runs.
  if [ -n "${BASELINE_BIN:-}" ] && [ "$engine" = sqlite ]; then
    echo "  -- baseline: $BASELINE_BIN, on a copy of the same store"
    python3 - "$work/keygate.db" "$work/baseline.db" << 'PY'
import sqlite3, sys
source, copy = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
source.backup(copy)
copy.executescript("DROP TABLE changes; DELETE FROM _sqlx_migrations WHERE version > 1;")
copy.close()
PY
    export KEYGATE_STORE_URL=sqlite://$work/baseline.db
    started=$(now)
    "$BASELINE_BIN" serve > "$work/serve-baseline.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    until curl -sf "$public/readyz" > /dev/null; do sleep 0.01; done
    report "baseline: start until /readyz answers 200 (s)" "$(python3 -c "print(round($(now) - $started, 2))")" "<" 2
    report "baseline: RSS after start (MiB)" "$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status")" "<" 256
    for i in $(seq 10); do
      curl -s -o /dev/null -w '%{time_total}\n' "${auth[@]}" -X POST "$admin/admin/v1/tenants/bench/keys" \
        -d '{"name":"created","scopes":["orders:read"],"allowedOrigins":["https://created.example"]}'
    done > "$work/create-baseline.times"
    create_max=$(python3 -c 'import sys; print(round(max(float(x) * 1000 for x in open(sys.argv[1])), 1))' "$work/create-baseline.times")
    report "baseline: admin key creation, slowest of 10 (ms)" "$create_max" "<" 20
    measure_preflights "baseline: "
    alone=$(SECRET=$secret wrk -t2 -c32 -d8s -s "$work/mint.lua" "$public/api/v1/sessions" | wrk_rps)
    admin_writes 80 10 "$admin/admin/v1/keys/$key_id" 8 &
    writer=$!
    beside=$(SECRET=$secret wrk -t2 -c32 -d8s -s "$work/mint.lua" "$public/api/v1/sessions" | wrk_rps)
    wait "$writer"
    echo "  baseline guarded req/s alone: $alone; beside admin writes (as many as it took in 8 s): $beside"
    report "baseline: guarded throughput beside admin writes (ratio)" "$(python3 -c "print(round($beside / $alone, 3))")" ">=" 0.9
    kill "$pid"
    wait "$pid" 2> /dev/null || true
  fi
  if [ "$engine" = postgres ]; then
    stop_postgres "$work"
    pg_bin=
  fi
done
