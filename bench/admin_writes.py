"""Admin writes at a steady rate, and how far behind another instance is (bench/writes.sh).

usage: admin_writes.py ADMIN_URL OTHER_PUBLIC_URL TOKEN RATE SECONDS CONNECTIONS

Sends RATE writes a second for SECONDS through the admin API at ADMIN_URL, over CONNECTIONS
kept-alive connections: half key creations (spread over ten tenants), half renames of a key the
same connection created. The schedule is fixed in advance (open loop): a write that starts late
because an earlier one was slow counts its wait, so a stall shows in the p99 instead of lowering
the rate. Meanwhile a prober takes the newest created key every 50 ms, asks the other
instance (its public listener) to mint a session with it until it knows the key, then revokes
the key here and asks again until the other instance refuses it: that last wait is how far
behind the other instance is (its feed: a poll on SQLite, NOTIFY on PostgreSQL).
Prints one JSON object.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse

admin, other, token = urllib.parse.urlsplit(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2]), sys.argv[3]
rate, seconds, connections = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
total = int(rate * seconds)
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
ORIGIN = "https://created.example"


def connect(url):
    return http.client.HTTPConnection(url.hostname, url.port, timeout=30)


def call(connection, method, path, body):
    connection.request(method, path, json.dumps(body), headers)
    response = connection.getresponse()
    return response.status, response.read()


setup = connect(admin)
for t in range(10):
    status, _ = call(setup, "POST", "/admin/v1/tenants", {"id": "writes-%d" % t, "name": "Writes %d" % t})
    assert status in (201, 409), status

late, service, errors = [], [], []
last_done = [0.0]
newest = {"at": 0.0, "secret": None, "id": None}
lock = threading.Lock()
started = time.monotonic() + 0.2


def writer(lane):
    connection = connect(admin)
    mine = None
    for i in range(lane, total, connections):
        due = started + i / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        sent = time.monotonic()
        if i % 2 == 0 or mine is None:
            status, body = call(connection, "POST", "/admin/v1/tenants/writes-%d/keys" % (i % 10),
                                {"name": "w%d" % i, "scopes": ["sessions:create"], "allowedOrigins": [ORIGIN]})
            if status == 201:
                data = json.loads(body)["data"]
                mine = data["id"]
                with lock:
                    newest.update(at=time.monotonic(), secret=data["secret"], id=mine)
        else:
            status, body = call(connection, "PATCH", "/admin/v1/keys/" + mine, {"name": "renamed %d" % i})
        done = time.monotonic()
        with lock:
            late.append(done - due)
            last_done[0] = max(last_done[0], done)
            service.append(done - sent)
            if status not in (200, 201):
                errors.append((status, body[:200].decode("utf-8", "replace")))


known, behind = [], []


def mint(connection, secret):
    """The other instance's answer to a session mint with `secret`: status and error code."""
    connection.request("POST", "/api/v1/sessions", headers={"Authorization": "Bearer " + secret, "Origin": ORIGIN})
    response = connection.getresponse()
    body = response.read()
    code = json.loads(body).get("error", {}).get("code") if response.status >= 400 else None
    return response.status, code


def until(connection, secret, since, done):
    """Asks until `done(status, code)`; the seconds since `since` (inf after 10 s)."""
    while not done(*mint(connection, secret)):
        if time.monotonic() - since > 10:
            return float("inf")
        time.sleep(0.002)
    return time.monotonic() - since


def prober():
    """The newest created key, every 50 ms: once the other instance knows it (an unknown key
    makes it catch up at once), it is revoked here and the other instance asked until it
    refuses it: that is the feed's own delay (its poll on SQLite, NOTIFY on PostgreSQL)."""
    connection, revoker = connect(other), connect(admin)
    seen = None
    while time.monotonic() < started + seconds:
        with lock:
            at, secret, key_id = newest["at"], newest["secret"], newest["id"]
        if secret is None or secret == seen:
            time.sleep(0.005)
            continue
        seen = secret
        known.append(until(connection, secret, at, lambda status, code: status != 401))
        status, _ = call(revoker, "POST", "/admin/v1/keys/%s/revoke" % key_id, {})
        revoked = time.monotonic()
        assert status == 200, status
        behind.append(until(connection, secret, revoked, lambda status, code: code == "API_KEY_REVOKED"))
        time.sleep(0.05)


threads = [threading.Thread(target=writer, args=(lane,)) for lane in range(connections)]
threads.append(threading.Thread(target=prober))
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
took = last_done[0] - started  # the writes' span, not the prober's last wait


def pct(values, p):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * p))] * 1000, 2) if values else None


print(json.dumps({
    "writes": len(late), "seconds": round(took, 2), "perSecond": round(len(late) / took, 1),
    "errors": len(errors), "firstError": errors[0] if errors else None,
    "p50Ms": pct(late, 0.5), "p99Ms": pct(late, 0.99), "maxMs": pct(late, 1.0),
    "serviceP99Ms": pct(service, 0.99),
    "knownP99Ms": pct(known, 0.99), "knownMaxMs": pct(known, 1.0),
    "behindSamples": len(behind), "behindP50Ms": pct(behind, 0.5), "behindP99Ms": pct(behind, 0.99),
    "behindMaxMs": pct(behind, 1.0),
}))
