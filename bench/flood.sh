#!/usr/bin/env bash
# "A flood of random keys must not slow real keys" (issue "Hardening"). One keygate (release
# build, SQLite, rate_limit.failed_auth_limit = 100 a minute, 127.0.0.1 a trusted proxy so
# that X-Forwarded-For names the client). A real client mints sessions with its key (wrk, 16
# connections), measured in interleaved rounds beside four kinds of other traffic on 48
# connections:
#   - none;
#   - ordinary: a second client minting with a key of its own (the yardstick: what the same
#     number of connections of real traffic costs the first client);
#   - flood, one address: distinct well-formed unknown keys from one client address, which
#     the failed-authentication limit soon refuses (429) before their keys are parsed;
#   - flood, many addresses: the same keys, each from a new address, so that no per-address
#     limit holds; each key meets the filter and the negative cache;
#   - garbage, many addresses: the same, with credentials in no format of keygate's (UUIDs,
#     `sk_live_…`), which are looked up by their SHA-256 like imported keys (SPEC §11): they
#     must cost what well-formed unknown keys cost, and no store read either.
# Prints the real client's median req/s and p99 beside each, the other traffic's req/s, and
# the store reads (key-cache misses) the other traffic caused.
#
#   bench/flood.sh                       # 3 rounds of 8 s
#   ROUNDS=5 SECONDS_EACH=10 bench/flood.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS_EACH:-8}

source bench/lib.sh
need wrk curl

cargo build --release --quiet --bin keygate
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(free_port)
admin=$(free_port)
cat > "$work/keygate.toml" << CONF
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
admin_token = "bench-admin-token-0123456789"
[store]
url = "sqlite://$work/keygate.db"
[rate_limit]
limit = 1000000000
failed_auth_limit = 100
failed_auth_window_seconds = 60
[proxy]
trusted_proxies = ["127.0.0.1/32"]
CONF
KEYGATE_CONFIG=$work/keygate.toml KEYGATE_LOG=warn target/release/keygate serve 2> "$work/keygate.log" &
pid=$!
until curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; do sleep 0.05; done
admin_post() {
  curl -sf -X POST -H "Authorization: Bearer bench-admin-token-0123456789" -H "Content-Type: application/json" \
    "http://127.0.0.1:$admin$1" -d "$2"
}
admin_post /admin/v1/tenants '{"id": "bench", "name": "Bench"}' > /dev/null
new_key() {
  admin_post /admin/v1/tenants/bench/keys \
    '{"name": "bench", "scopes": ["sessions:create"], "allowedOrigins": ["https://bench.example"]}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["secret"])'
}
real=$(new_key)
other=$(new_key)
unknown_keys "$work/unknown.keys" 200000
garbage_keys "$work/garbage.keys" 200000

# mint.lua: SECRET from CLIENT (X-Forwarded-For). flood.lua: the unknown keys in turn, from
# CLIENT, or with MANY set from a new address each request.
cat > "$work/mint.lua" << 'LUA'
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SECRET")
wrk.headers["Origin"] = "https://bench.example"
wrk.headers["X-Forwarded-For"] = os.getenv("CLIENT")
LUA
cat > "$work/flood.lua" << 'LUA'
local keys, i = {}, 0
for line in io.lines(os.getenv("KEYS_FILE")) do keys[#keys + 1] = line end
local many = os.getenv("MANY") ~= nil
wrk.method = "POST"
wrk.headers["Origin"] = "https://bench.example"
request = function()
  i = i + 1
  local client = os.getenv("CLIENT")
  if many then client = string.format("10.%d.%d.%d", math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256) end
  return wrk.format(nil, nil, {
    ["Authorization"] = "Bearer " .. keys[(i - 1) % #keys + 1],
    ["X-Forwarded-For"] = client,
  })
end
LUA

url="http://127.0.0.1:$port/api/v1/sessions"
# measure NAME: the real client for SECONDS_EACH, beside what `beside` started.
measure() {
  SECRET=$real CLIENT=198.51.100.1 wrk -t1 -c16 -d"${SECONDS_EACH}s" --latency -s "$work/mint.lua" "$url" > "$work/$1.out"
  echo "$(awk '/^Requests\/sec:/ { print $2 }' "$work/$1.out") $(awk '$1 == "99%" { print $2 }' "$work/$1.out" | to_ms)" >> "$work/$1.runs"
}
# beside NAME: starts the other traffic NAME on 48 connections, a second longer than a measure.
beside() {
  local seconds=$((SECONDS_EACH + 2))
  case $1 in
    ordinary) SECRET=$other CLIENT=198.51.100.2 wrk -t1 -c48 -d"${seconds}s" -s "$work/mint.lua" "$url" ;;
    flood-one) KEYS_FILE=$work/unknown.keys CLIENT=203.0.113.9 wrk -t1 -c48 -d"${seconds}s" -s "$work/flood.lua" "$url" ;;
    flood-many) KEYS_FILE=$work/unknown.keys MANY=1 wrk -t1 -c48 -d"${seconds}s" -s "$work/flood.lua" "$url" ;;
    garbage-many) KEYS_FILE=$work/garbage.keys MANY=1 wrk -t1 -c48 -d"${seconds}s" -s "$work/flood.lua" "$url" ;;
  esac > "$work/$1.beside.out" &
  beside_pid=$!
  sleep 1
}
misses() {
  curl -s -H "Authorization: Bearer bench-admin-token-0123456789" "http://127.0.0.1:$admin/metrics" |
    awk '$1 == "keygate_key_cache_misses_total" { print int($2) }'
}
scenarios=(alone ordinary flood-one flood-many garbage-many)
for round in $(seq "$ROUNDS"); do
  for scenario in "${scenarios[@]}"; do
    beside_pid=
    misses_before=$(misses)
    [ "$scenario" = alone ] || beside "$scenario"
    measure "$scenario"
    [ -z "$beside_pid" ] || wait "$beside_pid"
    reads=$(($(misses) - misses_before))
    other_rps=$( [ "$scenario" = alone ] || awk '/^Requests\/sec:/ { print $2 }' "$work/$scenario.beside.out")
    echo "  round $round  $scenario: real key $(tail -n 1 "$work/$scenario.runs" | awk '{ printf "%s req/s, p99 %s ms", $1, $2 }')${other_rps:+, the other traffic $other_rps req/s}, store reads $reads"
    echo "${other_rps:-0}" >> "$work/$scenario.other"
    echo "$reads" >> "$work/$scenario.reads"
  done
done

median_of() { python3 -c 'import statistics, sys; print(round(statistics.median(float(x) for x in sys.argv[1:]), 2))' "$@"; }
echo
echo "medians of $ROUNDS rounds; the real key on 16 connections, the other traffic on 48:"
alone=$(median_of $(awk '{ print $1 }' "$work/alone.runs"))
ordinary=$(median_of $(awk '{ print $1 }' "$work/ordinary.runs"))
for scenario in "${scenarios[@]}"; do
  rps=$(median_of $(awk '{ print $1 }' "$work/$scenario.runs"))
  p99=$(median_of $(awk '{ print $2 }' "$work/$scenario.runs"))
  printf "  %-12s real key %9.0f req/s  p99 %6.2f ms  other traffic %9.0f req/s  real key / beside ordinary %.2f  store reads %d\n" \
    "$scenario" "$rps" "$p99" "$(median_of $(cat "$work/$scenario.other"))" "$(python3 -c "print($rps / $ordinary)")" \
    "$(awk '{ s += $1 } END { print s }' "$work/$scenario.reads")"
done
echo "  refused by the failed-authentication limit: $(curl -s -H "Authorization: Bearer bench-admin-token-0123456789" \
  "http://127.0.0.1:$admin/metrics" | awk '/^keygate_rate_limited_total/ { print $NF }') (429s)"
