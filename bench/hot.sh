#!/usr/bin/env bash
# "Hot path": keygate's cost per request beside the references, in one run on this machine
# (docs/performance.md). Starts, side by side:
#   - bare:   a bare hyper server answering a small JSON (examples/bare_server.rs);
#   - nginx:  Debian's nginx as a plain proxy_pass to it, its default access log on, with
#             upstream keep-alive (as keygate pools its upstream connections; without it nginx
#             opens a connection per request and runs out of ports within a few rounds);
#   - keygate: `keygate serve` with its default request log on, a route to the bare server;
#   - keygate on Redis: the same, its rate limiter on a redis-server of its own; also with a
#     key quota and a tenant quota beside the window (SPEC §13), decided in the same script.
#   - HTTP/2 through TLS: h2load (Debian's nghttp2-client) as HTTP/2 clients, several streams
#     each, against keygate's TLS listener (HTTP/2 by ALPN) and against the first nginx's
#     `listen ... ssl http2` on the same certificate, both in front of the bare server;
#   - nginx auth_request: a second nginx, docs/proxies/nginx.conf as documented (with
#     keep-alive upstreams), asking keygate's decision listener about each request before its
#     proxy_pass to the bare server (SPEC §14); and POST /v1/verify on that listener, beside
#     keygate's 401 path.
# Drives each scenario with wrk in interleaved rounds and prints the medians (req/s, p50, p99)
# and the ratios the issue sets targets for. The limiters are checked to be exact: a key
# allowed 1,000 requests a day gets exactly 1,000 through, in process and on Redis, and so do
# four keys of a tenant whose quota is 1,000 a day, on Redis.
#
#   bench/hot.sh                         # 3 rounds of 8 s, 64 connections
#   ROUNDS=5 SECONDS_EACH=10 CONNECTIONS=256 bench/hot.sh
#   H2_CLIENTS=16 H2_STREAMS=4 bench/hot.sh      # HTTP/2: connections, and streams on each
#   BASELINE_BIN=/tmp/keygate-old bench/hot.sh   # an older build, side by side
#   CANDIDATE_BIN=/tmp/keygate-new bench/hot.sh   # a build other than this tree's
#   ONLY='verify|401' bench/hot.sh               # only the scenarios whose names match
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS_EACH:-8}
CONNECTIONS=${CONNECTIONS:-64}
# HTTP/2: 16 connections of 4 streams each, as many requests in flight as wrk's 64.
H2_CLIENTS=${H2_CLIENTS:-16}
H2_STREAMS=${H2_STREAMS:-4}

source bench/lib.sh
need wrk curl redis-server openssl
command -v nginx > /dev/null || [ -x /usr/sbin/nginx ] || install_missing nginx-light
command -v h2load > /dev/null || install_missing nghttp2-client

cargo build --release --quiet --bin keygate --example bare_server
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}" $(cat "$work/pids" 2> /dev/null); do kill "$pid" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

bare_port=$(free_port)
nginx_port=$(free_port)
nginx_tls_port=$(free_port)
# One certificate for both TLS listeners.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/tls-key.pem" -out "$work/tls-cert.pem" 2> /dev/null
target/release/examples/bare_server "127.0.0.1:$bare_port" &
pids+=($!)
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no > "$work/redis.log" &
pids+=($!)

cat > "$work/nginx.conf" << CONF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log $work/nginx-access.log;
  upstream bare { server 127.0.0.1:$bare_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://bare;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen 127.0.0.1:$nginx_tls_port ssl http2;
    # Not the default 1,000 requests a connection: h2load does not reconnect after a GOAWAY.
    keepalive_requests 100000000;
    ssl_certificate $work/tls-cert.pem;
    ssl_certificate_key $work/tls-key.pem;
    location / {
      proxy_pass http://bare;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
/usr/sbin/nginx -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)

# start_keygate BINARY NAME [LIMITER_URL [quotas]]: a keygate from BINARY with its own store, a
# route to the bare server and its request log on (with TLS=1, its public listener on TLS); prints "port key limited-key session", and
# with `quotas` (SPEC §13, builds that have them) also "quota-key metered-keys": a key with a
# key quota and a tenant quota beside its window (all far from full), and four keys of a tenant
# allowed 1,000 requests a day between them (comma-separated).
start_keygate() {
  local bin=$1 name=$2 limiter=${3:-memory://} quotas=${4:-} port admin decision secret limited session quota= metered=
  local public=http
  [ "${TLS:-}" = 1 ] && public=https
  port=$(free_port)
  admin=$(free_port)
  decision=$(free_port)
  mkdir -p "$work/$name"
  # The decision listener's port, for builds that have one (SPEC §14).
  echo "$decision" > "$work/$name/decision_port"
  cat > "$work/$name/keygate.toml" << CONF
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
$([ "${DECISIONS:-}" = 1 ] && echo "decision_listen = \"127.0.0.1:$decision\"")
admin_token = "bench-admin-token-0123456789"
$([ "${TLS:-}" = 1 ] && printf 'tls_cert_file = "%s"\ntls_key_file = "%s"' "$work/tls-cert.pem" "$work/tls-key.pem")
[store]
url = "sqlite://$work/$name/keygate.db"
[rate_limit]
url = "$limiter"
limit = 1000000000
$(orders_route "$bare_port")
CONF
  export KEYGATE_CONFIG=$work/$name/keygate.toml
  "$bin" serve 2> "$work/$name/requests.log" &
  echo $! >> "$work/pids"
  until curl -sk -o /dev/null "$public://127.0.0.1:$port/healthz"; do sleep 0.05; done
  # Through the admin API, which every measured build serves alike.
  admin_post() {
    curl -sf -X POST -H "Authorization: Bearer bench-admin-token-0123456789" -H "Content-Type: application/json" \
      "http://127.0.0.1:$admin$1" -d "$2"
  }
  admin_post /admin/v1/tenants '{"id": "bench", "name": "Bench", "modules": ["orders"]}' > /dev/null
  secret=$(admin_post /admin/v1/tenants/bench/keys \
    '{"name": "bench", "scopes": ["orders:write", "sessions:create"], "allowedOrigins": ["https://bench.example"]}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["secret"])')
  # A key allowed 1,000 requests a day: every request after those is a 429.
  limited=$(admin_post /admin/v1/tenants/bench/keys \
    '{"name": "limited", "scopes": ["orders:write"], "rateLimit": {"limit": 1000, "windowSeconds": 86400}}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["secret"])')
  session=$(curl -sk -X POST -H "Authorization: Bearer $secret" -H "Origin: https://bench.example" \
    "$public://127.0.0.1:$port/api/v1/sessions" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["sessionToken"])')
  if [ "$quotas" = quotas ]; then
    local month='{"limit": 1000000000000, "period": "month"}' key_body
    admin_post /admin/v1/tenants "{\"id\": \"quota\", \"name\": \"Quota\", \"modules\": [\"orders\"], \"quota\": $month}" > /dev/null
    quota=$(admin_post /admin/v1/tenants/quota/keys "{\"name\": \"quota\", \"scopes\": [\"orders:write\"], \"quota\": $month}" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["secret"])')
    admin_post /admin/v1/tenants \
      '{"id": "metered", "name": "Metered", "modules": ["orders"], "quota": {"limit": 1000, "period": "day"}}' > /dev/null
    key_body='{"name": "metered", "scopes": ["orders:write"], "quota": {"limit": 1000000, "period": "day"}}'
    metered=$(for _ in 1 2 3 4; do admin_post /admin/v1/tenants/metered/keys "$key_body" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["secret"])'; done | paste -sd,)
  fi
  echo "$port $secret $limited $session $quota $metered"
}
for url in "http://127.0.0.1:$bare_port/" "http://127.0.0.1:$nginx_port/"; do
  until curl -s -o /dev/null "$url"; do sleep 0.05; done
done
until redis-cli -p "$redis_port" ping > /dev/null 2>&1; do sleep 0.05; done
keygate_bin=${CANDIDATE_BIN:-target/release/keygate}
read -r keygate_port secret limited session _ < <(DECISIONS=1 start_keygate "$keygate_bin" keygate)
decision_port=$(cat "$work/keygate/decision_port")

# nginx deciding by keygate: the documented configuration, its placeholders filled, with
# keep-alive upstreams in place of the host:port ones.
nginx_auth_port=$(free_port)
mkdir -p "$work/nginx-auth"
{
  echo "worker_processes auto; pid $work/nginx-auth/nginx.pid; error_log $work/nginx-auth/error.log;"
  echo "events { worker_connections 4096; }"
  echo "http {"
  echo "  access_log $work/nginx-auth/access.log;"
  echo "  upstream keygate_decision { server 127.0.0.1:$decision_port; keepalive 64; }"
  echo "  upstream bare { server 127.0.0.1:$bare_port; keepalive 64; }"
  sed -e "s|{{LISTEN}}|127.0.0.1:$nginx_auth_port|" -e "s|{{KEYGATE_DECISION}}|keygate_decision|" \
    -e "s|{{KEYGATE_PUBLIC}}|127.0.0.1:$keygate_port|" -e "s|{{UPSTREAM}}|bare|" docs/proxies/nginx.conf
  echo "}"
} > "$work/nginx-auth/nginx.conf"
/usr/sbin/nginx -c "$work/nginx-auth/nginx.conf" -g 'daemon off;' &
pids+=($!)
until curl -s -o /dev/null "http://127.0.0.1:$nginx_auth_port/"; do sleep 0.05; done
# Both decide as they should before they are measured: allowed through nginx, valid by verify.
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $secret" \
  "http://127.0.0.1:$nginx_auth_port/api/v1/orders")
[ "$status" = 200 ] || { echo "nginx auth_request answered $status, not 200" >&2; exit 1; }
curl -s -X POST "http://127.0.0.1:$decision_port/v1/verify" -d "{\"key\": \"$secret\", \"path\": \"/api/v1/orders\", \"method\": \"POST\"}" |
  grep -q '"valid":true' || { echo "POST /v1/verify did not find the key valid" >&2; exit 1; }
read -r tls_port tls_secret _ < <(TLS=1 start_keygate "$keygate_bin" tls)
read -r redis_kg_port redis_secret redis_limited _ redis_quota redis_metered < <(start_keygate "$keygate_bin" redis \
  "redis://127.0.0.1:$redis_port" quotas)

cat > "$work/post.lua" << 'LUA'
wrk.method = "POST"
wrk.body = '{"item":"tea","qty":12345}'
wrk.headers["Content-Type"] = "application/json"
if os.getenv("SECRET") ~= "" then wrk.headers["Authorization"] = "Bearer " .. os.getenv("SECRET") end
-- Several keys, comma-separated: each request takes the next.
local keys = {}
for key in string.gmatch(os.getenv("SECRET") or "", "[^,]+") do keys[#keys + 1] = key end
if #keys > 1 then
  local i = 0
  request = function()
    i = i % #keys + 1
    wrk.headers["Authorization"] = "Bearer " .. keys[i]
    return wrk.format()
  end
end
if os.getenv("ORIGIN") ~= "" then wrk.headers["Origin"] = os.getenv("ORIGIN") end
if os.getenv("SESSION") ~= "" then wrk.headers["X-Session-Token"] = os.getenv("SESSION") end
if os.getenv("METHOD") == "GET" then wrk.method = "GET"; wrk.body = nil; wrk.headers["Content-Type"] = nil end
if os.getenv("BODY") ~= "" then wrk.body = os.getenv("BODY") end
LUA

# NAME|METHOD|URL|KEY|ORIGIN|SESSION|EXPECTED[|BODY]: EXPECTED is 2xx (every answer), or
# LIMIT:N (over all rounds exactly N answers are 2xx, the rest 429); BODY replaces the POST's.
# METHOD H2GET: a GET by h2load over HTTP/2 through TLS, every answer 2xx.
keygate=http://127.0.0.1:$keygate_port
on_redis=http://127.0.0.1:$redis_kg_port
verify_body="{\"key\": \"$secret\", \"method\": \"POST\", \"path\": \"/api/v1/orders\"}"
scenarios=(
  "bare|POST|http://127.0.0.1:$bare_port/api/v1/orders||||2xx"
  "nginx|POST|http://127.0.0.1:$nginx_port/api/v1/orders||||2xx"
  "nginx auth_request|POST|http://127.0.0.1:$nginx_auth_port/api/v1/orders|$secret|||2xx"
  "keygate verify|POST|http://127.0.0.1:$decision_port/v1/verify||||2xx|$verify_body"
  "keygate guarded POST|POST|$keygate/api/v1/orders|$secret|||2xx"
  "keygate guarded GET|GET|$keygate/api/v1/orders|$secret|||2xx"
  "nginx h2 GET|H2GET|https://127.0.0.1:$nginx_tls_port/api/v1/orders||||2xx"
  "keygate h2 guarded GET|H2GET|https://127.0.0.1:$tls_port/api/v1/orders|$tls_secret|||2xx"
  "keygate mint|POST|$keygate/api/v1/sessions|$secret|https://bench.example||2xx"
  "keygate browser write|POST|$keygate/api/v1/orders|$secret|https://bench.example|$session|2xx"
  "keygate 401|POST|$keygate/api/v1/orders|kg_not_a_key|||401"
  "keygate 429|POST|$keygate/api/v1/orders|$limited|||LIMIT:1000"
  "redis guarded POST|POST|$on_redis/api/v1/orders|$redis_secret|||2xx"
  "redis 429|POST|$on_redis/api/v1/orders|$redis_limited|||LIMIT:1000"
  "redis with quotas|POST|$on_redis/api/v1/orders|$redis_quota|||2xx"
  "redis tenant quota 429|POST|$on_redis/api/v1/orders|$redis_metered|||LIMIT:1000"
)
# BASELINE_BIN: another build of keygate (say, the last release), measured in the same rounds.
if [ -n "${BASELINE_BIN:-}" ]; then
  read -r base_port base_secret _ base_session _ < <(DECISIONS=1 start_keygate "$BASELINE_BIN" baseline)
  base=http://127.0.0.1:$base_port
  base_decision=http://127.0.0.1:$(cat "$work/baseline/decision_port")
  base_verify_body="{\"key\": \"$base_secret\", \"method\": \"POST\", \"path\": \"/api/v1/orders\"}"
  scenarios+=(
    "baseline guarded POST|POST|$base/api/v1/orders|$base_secret|||2xx"
    "baseline mint|POST|$base/api/v1/sessions|$base_secret|https://bench.example||2xx"
    "baseline browser write|POST|$base/api/v1/orders|$base_secret|https://bench.example|$base_session|2xx"
    "baseline verify|POST|$base_decision/v1/verify||||2xx|$base_verify_body"
    "baseline 401|POST|$base/api/v1/orders|kg_not_a_key|||401"
  )
fi
if [ -n "${ONLY:-}" ]; then
  chosen=()
  for entry in "${scenarios[@]}"; do
    if grep -Eq -- "$ONLY" <<< "${entry%%|*}"; then chosen+=("$entry"); fi
  done
  scenarios=("${chosen[@]}")
fi
declare -A results passed
for round in $(seq "$ROUNDS"); do
  for entry in "${scenarios[@]}"; do
    IFS='|' read -r name method url key origin session expected body <<< "$entry"
    if [ "$method" = H2GET ]; then
      # h2load has no percentiles: its mean and its slowest request stand in for p50 and p99.
      out=$(h2load -t2 -c"$H2_CLIENTS" -m"$H2_STREAMS" -D"$SECONDS_EACH" ${key:+-H "authorization: Bearer $key"} "$url")
      rps=$(awk '/^finished in/ { print $4 }' <<< "$out")
      read -r mean max < <(awk '/^time for request:/ { print $6, $5 }' <<< "$out")
      # Every answer 2xx; no request errored but some of those in flight when the time was up
      # (h2load ends its sessions then, and counts a few of their streams as errored).
      read -r ok others < <(awk '/^status codes:/ { print $3, $5 + $7 + $9 }' <<< "$out")
      errored=$(awk '/^requests:/ { print $12 }' <<< "$out")
      if [ "${ok:-0}" = 0 ] || [ "$others" != 0 ] || [ "$errored" -gt $((H2_CLIENTS * H2_STREAMS)) ]; then
        echo "$name: not every answer was 2xx:" >&2
        grep -E '^(requests|status codes):' <<< "$out" >&2
        exit 1
      fi
      results[$name]+="$rps $(to_ms <<< "$mean") $(to_ms <<< "$max");"
      echo "  round $round  $name: $rps req/s, mean $(to_ms <<< "$mean") ms, max $(to_ms <<< "$max") ms"
      continue
    fi
    out=$(METHOD=$method SECRET=$key ORIGIN=$origin SESSION=$session BODY=$body wrk -t2 -c"$CONNECTIONS" \
      -d"${SECONDS_EACH}s" --latency -s "$work/post.lua" "$url")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<< "$out")
    p50=$(awk '$1 == "50%" { print $2 }' <<< "$out" | to_ms)
    p99=$(awk '$1 == "99%" { print $2 }' <<< "$out" | to_ms)
    non2xx=$(awk '/Non-2xx/ { print $5 }' <<< "$out")
    total=$(awk '/requests in/ { print $1 }' <<< "$out")
    if [ "$expected" = 2xx ] && [ -n "$non2xx" ]; then
      echo "$name: $non2xx answers were not 2xx" >&2
      exit 1
    fi
    passed[$name]=$((${passed[$name]:-0} + total - ${non2xx:-0}))
    if [ "$expected" != 2xx ]; then
      # wrk does not tell statuses apart: check one answer's status.
      status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer ${key%%,*}" "$url")
      want=${expected/LIMIT:*/429}
      [ "$status" = "$want" ] || { echo "$name: answered $status, not $want" >&2; exit 1; }
    fi
    results[$name]+="$rps $p50 $p99;"
    echo "  round $round  $name: $rps req/s, p50 $p50 ms, p99 $p99 ms"
  done
done
for entry in "${scenarios[@]}"; do
  IFS='|' read -r name method _ _ _ _ expected <<< "$entry"
  [ "$method" = H2GET ] && continue
  case $expected in
    LIMIT:*)
      [ "${passed[$name]}" = "${expected#LIMIT:}" ] || {
        echo "$name: ${passed[$name]} requests got through, not ${expected#LIMIT:}" >&2
        exit 1
      }
      echo "  $name: exactly ${passed[$name]} requests got through, the rest were refused" ;;
    401) [ "${passed[$name]}" = 0 ] || { echo "$name: ${passed[$name]} got through" >&2; exit 1; } ;;
  esac
done

python3 - "${scenarios[@]%%|*}" << PY
import statistics, sys
raw = {$(for name in "${!results[@]}"; do printf '"%s": "%s", ' "$name" "${results[$name]}"; done)}
medians = {}
for name, rounds in raw.items():
    runs = [tuple(map(float, r.split())) for r in rounds.strip(";").split(";")]
    medians[name] = tuple(statistics.median(run[i] for run in runs) for i in range(3))
print("\nmedians of $ROUNDS rounds, $CONNECTIONS connections:")
for name in sys.argv[1:]:
    rps, p50, p99 = medians[name]
    typical, slow = ("mean", "max") if " h2 " in f" {name} " else ("p50", "p99")
    print(f"  {name:24} {rps:10.0f} req/s   {typical} {p50:6.2f} ms   {slow} {p99:6.2f} ms")
def ratio(line, a, b, target=""):
    # Only the ratios whose two scenarios ran (all of them, unless ONLY chose some).
    if a in medians and b in medians:
        print(f"  {line:<30}{medians[a][0] / medians[b][0]:.2f}" + (f"   (target {target})" if target else ""))
print()
ratio("keygate mint / bare", "keygate mint", "bare", ">= 0.8")
ratio("keygate guarded POST / nginx", "keygate guarded POST", "nginx", ">= 1.0")
ratio("browser write / guarded POST", "keygate browser write", "keygate guarded POST", ">= 0.9")
if "keygate guarded POST" in medians and "nginx" in medians:
    print(f"  p99 keygate guarded - nginx   {medians['keygate guarded POST'][2] - medians['nginx'][2]:+.2f} ms (target within 1 ms)")
ratio("HTTP/2 TLS guarded GET / nginx", "keygate h2 guarded GET", "nginx h2 GET", ">= 0.8")
ratio("Redis / in-process limiter", "redis guarded POST", "keygate guarded POST", ">= 0.7")
ratio("Redis, quotas / window alone", "redis with quotas", "redis guarded POST", ">= 0.9")
ratio("nginx auth_request / nginx", "nginx auth_request", "nginx", ">= 0.8")
ratio("guarded POST / auth_request", "keygate guarded POST", "nginx auth_request")
ratio("verify / keygate 401", "keygate verify", "keygate 401", ">= 0.9")
ratio("baseline verify / its 401", "baseline verify", "baseline 401")
for scenario in ("guarded POST", "mint", "browser write", "verify", "401"):
    ratio(f"{scenario} / baseline's", "keygate " + scenario, "baseline " + scenario)
PY
