#!/usr/bin/env bash
# Soak (docs/reliability.md): steady load through the gateway for MINUTES minutes (default 10),
# with admin writes mixed in, and once a minute keygate's RSS, open file descriptors, and the
# minute's throughput and p99. Flat RSS and descriptors mean nothing leaks per request or per
# write. Not a CI test: it takes minutes and wants a quiet machine.
#
#   bench/soak.sh                          # 10 minutes, 32 connections, 5 admin writes a second
#   MINUTES=60 CONNECTIONS=64 WRITES_PER_SECOND=10 bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${MINUTES:-10}
CONNECTIONS=${CONNECTIONS:-32}
WRITES_PER_SECOND=${WRITES_PER_SECOND:-5}

source bench/lib.sh
need wrk curl

cargo build --release --quiet --bin keygate --example bare_server
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

bare_port=$(free_port)
port=$(free_port)
admin_port=$(free_port)
token=soak-admin-token-0123456789
target/release/examples/bare_server "127.0.0.1:$bare_port" &
pids+=($!)
cat > "$work/keygate.toml" << CONF
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin_port"
admin_token = "$token"
[store]
url = "sqlite://$work/keygate.db"
[rate_limit]
limit = 1000000000
$(orders_route "$bare_port")
CONF
target/release/keygate --config "$work/keygate.toml" serve 2> "$work/requests.log" &
keygate=$!
pids+=($keygate)
until curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; do sleep 0.05; done

admin() {
  curl -sf -X "$1" -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
    "http://127.0.0.1:$admin_port$2" ${3:+-d "$3"}
}
admin POST /admin/v1/tenants '{"id": "soak", "name": "Soak", "modules": ["orders"]}' > /dev/null
secret=$(admin POST /admin/v1/tenants/soak/keys '{"name": "soak", "scopes": ["orders:write"]}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["secret"])')

# Admin writes all along: a new key, a changed key, a revoked key, and a changed tenant, in turn.
(
  n=0
  while true; do
    case $((n % 4)) in
      0) id=$(admin POST /admin/v1/tenants/soak/keys '{"name": "churn", "scopes": ["orders:write"]}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["id"])') ;;
      1) admin PATCH "/admin/v1/keys/$id" '{"name": "churned"}' > /dev/null ;;
      2) admin POST "/admin/v1/keys/$id/revoke" > /dev/null ;;
      3) admin PATCH /admin/v1/tenants/soak "{\"name\": \"Soak $n\"}" > /dev/null ;;
    esac
    n=$((n + 1))
    sleep "$(python3 -c "print(1 / $WRITES_PER_SECOND)")"
  done
) > "$work/writes.log" 2>&1 &
writer=$!
pids+=($writer)

cat > "$work/post.lua" << 'LUA'
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SECRET")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"item":"tea"}'
LUA
rss() { awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$keygate/status"; }
fds() { find "/proc/$keygate/fd" -mindepth 1 -maxdepth 1 | wc -l; }

echo "soak: $MINUTES min, $CONNECTIONS connections, $WRITES_PER_SECOND admin writes/s"
echo "minute  req/s     p99 ms  non-2xx  RSS MiB  open fds"
printf '%-7s %-9s %-7s %-8s %-8s %s\n' 0 - - - "$(rss)" "$(fds)"
for minute in $(seq "$MINUTES"); do
  out=$(SECRET=$secret wrk -t2 -c"$CONNECTIONS" -d60s --latency -s "$work/post.lua" \
    "http://127.0.0.1:$port/api/v1/orders")
  rps=$(awk '/^Requests\/sec:/ { print int($2) }' <<< "$out")
  p99=$(awk '$1 == "99%" { print $2 }' <<< "$out" | to_ms)
  non2xx=$(awk '/Non-2xx/ { print $5 }' <<< "$out")
  printf '%-7s %-9s %-7s %-8s %-8s %s\n' "$minute" "$rps" "$p99" "${non2xx:-0}" "$(rss)" "$(fds)"
done
kill "$writer" 2> /dev/null || true
writes=$(admin GET '/admin/v1/tenants/soak/keys?limit=1000' | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["data"]))')
echo "admin writes made: about $((writes * 3)) (keys created: $((writes - 1)))"
