#!/usr/bin/env bash
# Admin writes at 500 a second (issue "Scale, second round"): two instances of this tree's
# release build on one store of KEYS keys, SQLite and PostgreSQL. RATE writes a second for
# SECONDS through instance A's admin API over kept-alive connections (bench/admin_writes.py:
# half key creations, half renames), while a prober revokes a key on A every 50 ms or so and
# times until B refuses it (how far behind B's feed is), and
# wrk measures guarded throughput (a session mint) on A beside them; the same wrk run without
# writes before and after gives "quiet". Prints each target with its figure, met or missed.
#
#   bench/writes.sh                                       # 1M keys, both engines, 500/s for 30 s
#   KEYS=100000 ENGINES=sqlite RATE=200 bench/writes.sh
#   SQLITE_URL=sqlite:///… POSTGRES_URL=postgres://… bench/writes.sh   # stores seeded already
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-1000000}
TENANTS=${TENANTS:-10000}
ENGINES=${ENGINES:-sqlite postgres}
RATE=${RATE:-500}
SECONDS_EACH=${SECONDS_EACH:-30}
CONNECTIONS=${CONNECTIONS:-8}

source bench/lib.sh
need curl wrk python3
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || install_missing postgresql
cargo build --release --quiet --bin keygate
bin=$PWD/target/release/keygate
start_work
export KEYGATE_LOG=warn KEYGATE_RATE_LIMIT_LIMIT=1000000000 KEYGATE_SERVER_ADMIN_TOKEN=bench-admin-token-0123456789
cat > "$work/mint.lua" << 'LUA'
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SECRET")
wrk.headers["Origin"] = "https://bench.example"
LUA
rps() { awk '/^Requests\/sec:/ { print $2 }'; }

# start_instance NAME: keygate serve on the store, ports of its own; sets NAME_public, NAME_admin.
start_instance() {
  local port admin_port
  port=$(free_port)
  admin_port=$(free_port)
  KEYGATE_SERVER_LISTEN=127.0.0.1:$port KEYGATE_SERVER_ADMIN_LISTEN=127.0.0.1:$admin_port \
    "$bin" serve > "$work/serve-$1.log" 2>&1 &
  pids+=($!)
  printf -v "${1}_public" 'http://127.0.0.1:%s' "$port"
  printf -v "${1}_admin" 'http://127.0.0.1:%s' "$admin_port"
  until curl -s "http://127.0.0.1:$port/readyz" | grep -q '"preflightIndex":"ready"'; do sleep 0.05; done
}

for engine in $ENGINES; do
  given=$([ "$engine" = postgres ] && echo "${POSTGRES_URL:-}" || echo "${SQLITE_URL:-}")
  if [ -n "$given" ]; then
    store=$given
  elif [ "$engine" = postgres ]; then
    start_postgres "$work"
    store=$pg_url
  else
    store="sqlite://$work/keygate.db"
  fi
  export KEYGATE_STORE_URL=$store
  echo "== $engine, $KEYS keys: $RATE admin writes a second for $SECONDS_EACH s over $CONNECTIONS connections"
  "$bin" migrate 2> /dev/null
  [ -n "$given" ] || "$bin" --store seed --keys "$KEYS" --tenants "$TENANTS" > /dev/null
  "$bin" --store tenant create --id "bench-writes" --name Bench > /dev/null 2>&1 || true
  secret=$("$bin" --store key create bench-writes --name bench --scope sessions:create --origin https://bench.example |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["secret"])')
  start_instance a
  start_instance b

  quiet=$(SECRET=$secret wrk -t2 -c32 -d10s -s "$work/mint.lua" "$a_public/api/v1/sessions" | rps)
  python3 bench/admin_writes.py "$a_admin" "$b_public" "$KEYGATE_SERVER_ADMIN_TOKEN" "$RATE" "$SECONDS_EACH" "$CONNECTIONS" \
    > "$work/writes.json" &
  writer=$!
  sleep 5
  beside=$(SECRET=$secret wrk -t2 -c32 -d"$((SECONDS_EACH - 10))s" -s "$work/mint.lua" "$a_public/api/v1/sessions" | rps)
  wait "$writer"
  quiet_after=$(SECRET=$secret wrk -t2 -c32 -d10s -s "$work/mint.lua" "$a_public/api/v1/sessions" | rps)

  echo "  writes: $(cat "$work/writes.json")"
  echo "  guarded req/s quiet before and after: $quiet, $quiet_after; beside the writes: $beside"
  field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/writes.json" "$1"; }
  report "admin writes a second sustained" "$(field perSecond)" ">=" "$(python3 -c "print($RATE * 0.98)")"
  report "admin write p99, counted from its due time (ms)" "$(field p99Ms)" "<" 20
  report "B refuses a key revoked on A, max of $(field behindSamples) (ms)" "$(field behindMaxMs)" "<" 1000
  echo "  B knows a key created on A after at most $(field knownMaxMs) ms (p99 $(field knownP99Ms)): an unknown key makes it catch up"
  report "guarded throughput beside the writes (ratio to quiet)" \
    "$(python3 -c "print(round($beside / (($quiet + $quiet_after) / 2), 3))")" ">=" 0.9
  [ "$(field errors)" = 0 ] || echo "  errors: $(field errors), the first: $(field firstError)"
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2> /dev/null || true; done
  pids=()
  if [ "$engine" = postgres ] && [ -z "$given" ]; then stop_postgres "$work"; rm -rf "$work/pg"; pg_bin=; fi
done
