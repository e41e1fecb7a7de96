#!/usr/bin/env bash
# Start-up side by side: this tree's release build and BASELINE_BIN, started in turn ROUNDS
# times on one store of KEYS keys (seeded as bench/scale.sh seeds them), SQLite and PostgreSQL.
# For each start: the time until /readyz answers 200, until the preflight index is filled
# (/readyz stops saying "preflightIndex": "filling"; a build without the field counts as filled
# at ready), what a preflight for an allowed origin sent at ready took, and RSS then.
#
#   BASELINE_BIN=/path/to/old/keygate bench/start.sh
#   KEYS=100000 ENGINES=sqlite ROUNDS=3 BASELINE_BIN=… bench/start.sh
#   SQLITE_URL=sqlite:///… POSTGRES_URL=postgres://… BASELINE_BIN=… bench/start.sh   # stores seeded already
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-1000000}
TENANTS=${TENANTS:-10000}
ENGINES=${ENGINES:-sqlite postgres}
ROUNDS=${ROUNDS:-5}
: "${BASELINE_BIN:?set BASELINE_BIN to the keygate binary to compare with}"

source bench/lib.sh
need curl python3
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || install_missing postgresql
cargo build --release --quiet --bin keygate
bin=$PWD/target/release/keygate
work=$(mktemp -d)
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2> /dev/null || true
  stop_postgres "$work"
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }

export KEYGATE_LOG=warn KEYGATE_RATE_LIMIT_LIMIT=1000000000
for engine in $ENGINES; do
  given=$([ "$engine" = postgres ] && echo "${POSTGRES_URL:-}" || echo "${SQLITE_URL:-}")
  if [ -n "$given" ]; then
    export KEYGATE_STORE_URL=$given
  elif [ "$engine" = postgres ]; then
    start_postgres "$work"
    export KEYGATE_STORE_URL=$pg_url
  else
    export KEYGATE_STORE_URL="sqlite://$work/keygate.db"
  fi
  port=$(free_port)
  export KEYGATE_SERVER_LISTEN=127.0.0.1:$port KEYGATE_SERVER_ADMIN_LISTEN=127.0.0.1:$(free_port)
  public=http://127.0.0.1:$port
  if [ -z "$given" ]; then
    "$bin" migrate 2> /dev/null
    "$bin" --store seed --keys "$KEYS" --tenants "$TENANTS" --rolled $((KEYS / 10)) --imported $((KEYS / 10)) --audit > /dev/null 2>&1
    echo "== $engine: $KEYS keys of $TENANTS tenants"
  else
    echo "== $engine: the store given"
  fi
  for round in $(seq "$ROUNDS"); do
    for build in candidate baseline; do
      [ "$build" = candidate ] && server=$bin || server=$BASELINE_BIN
      started=$(now)
      "$server" serve > "$work/serve.log" 2>&1 &
      pid=$!
      until curl -sf "$public/readyz" > /dev/null; do sleep 0.005; done
      ready=$(now)
      preflight=$(curl -s -o /dev/null -w '%{http_code} in %{time_total} s' -X OPTIONS -H 'Origin: https://app.t7.example' \
        -H 'Access-Control-Request-Method: POST' "$public/api/v1/sessions")
      until ! curl -s "$public/readyz" | grep -q '"preflightIndex":"filling"'; do sleep 0.005; done
      filled=$(now)
      rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status")
      printf '  %-9s round %d: ready %6.3f s, index filled %6.3f s, preflight at ready %s, RSS %d MiB\n' \
        "$build" "$round" "$(python3 -c "print($ready - $started)")" "$(python3 -c "print($filled - $started)")" "$preflight" "$rss"
      kill "$pid"
      wait "$pid" || true
      pid=
    done
  done
  if [ "$engine" = postgres ] && [ -z "$given" ]; then stop_postgres "$work"; rm -rf "$work/pg"; pg_bin=; fi
done
