# Shared by the bench scripts (sourced, not run).

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Installs the Debian packages named, if any.
install_missing() {
  (($#)) || return 0
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# need COMMAND...: installs, for each command missing, the Debian package of the same name.
need() {
  local missing=() command
  for command in "$@"; do command -v "$command" > /dev/null || missing+=("$command"); done
  install_missing "${missing[@]}"
}

# A wrk latency (`812.00us`, `1.20ms`, `2.01s`) in milliseconds.
to_ms() { awk '{ v = $1; if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0; else if (v ~ /s$/) v = v * 1000; print v }'; }

# unknown_keys FILE COUNT: writes COUNT distinct well-formed keys (prefix `kg`, checksum right)
# that no store holds, one a line.
unknown_keys() {
  python3 - "$1" "$2" << 'PY'
import secrets, string, sys, zlib
alphabet = string.digits + string.ascii_uppercase + string.ascii_lowercase
def base62(n, width):
    out = []
    for _ in range(width):
        out.append(alphabet[n % 62]); n //= 62
    return "".join(reversed(out))
with open(sys.argv[1], "w") as f:
    for _ in range(int(sys.argv[2])):
        body = "kg_" + "".join(secrets.choice(alphabet) for _ in range(40))
        f.write(body + base62(zlib.crc32(body.encode()), 6) + "\n")
PY
}

# garbage_keys FILE COUNT: writes COUNT distinct credentials in no format of keygate's (UUIDs,
# as Kong key-auth makes them, and Stripe-like `sk_live_…` strings) that no store holds: each
# is looked up by its SHA-256, as an imported key would be.
garbage_keys() {
  python3 - "$1" "$2" << 'PY'
import secrets, sys, uuid
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write((str(uuid.uuid4()) if i % 2 else "sk_live_" + secrets.token_urlsafe(18)) + "\n")
PY
}

# Runs a command as the postgres user when we are root (PostgreSQL refuses to run as root).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# start_postgres DIR: a throwaway PostgreSQL cluster in DIR/pg (trust, loopback only) with a
# database `keygate`. Sets pg_bin, pg_port and pg_url; stop_postgres DIR stops it.
start_postgres() {
  pg_bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
  pg_port=$(free_port)
  [ "$(id -u)" = 0 ] && chown postgres "$1"
  as_pg "$pg_bin/initdb" -D "$1/pg" -U postgres --auth=trust -E UTF8 > /dev/null
  as_pg "$pg_bin/pg_ctl" -D "$1/pg" -l "$1/pg.log" -w -o "-p $pg_port -k $1 -c listen_addresses=127.0.0.1" start > /dev/null
  as_pg "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres keygate
  pg_url="postgres://postgres@127.0.0.1:$pg_port/keygate"
}

stop_postgres() {
  [ -n "${pg_bin:-}" ] && as_pg "$pg_bin/pg_ctl" -D "$1/pg" -m immediate stop > /dev/null 2>&1 || true
}

# A scratch directory, $work, and the servers started in it, $pids: both gone at exit
# (with a PostgreSQL cluster start_postgres made there).
start_work() {
  work=$(mktemp -d)
  pids=()
  trap 'for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done; stop_postgres "$work"; rm -rf "$work"' EXIT
}

# verdict VALUE OP TARGET: "met" or "MISSED" (OP is < or >=); report LABEL VALUE OP TARGET
# prints a figure beside its target.
verdict() { python3 -c 'import sys; v, op, t = float(sys.argv[1]), sys.argv[2], float(sys.argv[3]); print("met" if (v < t if op == "<" else v >= t) else "MISSED")' "$1" "$2" "$3"; }
report() { printf '  %-58s %12s   target %s %s: %s\n' "$1" "$2" "$3" "$4" "$(verdict "$2" "$3" "$4")"; }

# orders_route PORT: the route the request-path benches measure, in keygate.toml form: a
# guarded POST or GET under /api/v1/orders to the bare server on PORT.
orders_route() {
  cat << CONF
[[routes]]
prefix = "/api/v1/orders"
methods = ["GET", "POST"]
upstream = "http://127.0.0.1:$1"
module = "orders"
scope = "orders:write"
CONF
}
