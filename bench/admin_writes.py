"""Admin writes at a steady rate, and how far behind another instance is (bench/writes.sh).

usage: admin_writes.py ADMIN_URL OTHER_PUBLIC_URL TOKEN RATE SECONDS CONNECTIONS

Sends RATE writes a second for SECONDS through the admin API at ADMIN_URL, over CONNECTIONS
kept-alive connections: half key creations (spread over ten tenants), half renames of a key the
same connection created. The schedule is fixed in advance (open loop): a write that starts late
because an earlier one was slow counts its wait, so a stall shows in the p99 instead of lowering
the rate. Meanwhile a prober takes the newest created key every 50 ms and asks the other
instance, on its public listener, to mint a session with it until it is no longer unknown
there: the time from the creation's answer to that is how far behind the other instance is.
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
newest = {"at": 0.0, "secret": None}
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
                    newest["at"], newest["secret"] = time.monotonic(), data["secret"]
        else:
            status, body = call(connection, "PATCH", "/admin/v1/keys/" + mine, {"name": "renamed %d" % i})
        done = time.monotonic()
        with lock:
            late.append(done - due)
            service.append(done - sent)
            if status not in (200, 201):
                errors.append((status, body[:200].decode("utf-8", "replace")))


behind = []


def prober():
    connection = connect(other)
    seen = None
    while time.monotonic() < started + seconds:
        with lock:
            at, secret = newest["at"], newest["secret"]
        if secret is None or secret == seen:
            time.sleep(0.005)
            continue
        while True:
            connection.request("POST", "/api/v1/sessions", headers={"Authorization": "Bearer " + secret, "Origin": ORIGIN})
            response = connection.getresponse()
            response.read()
            if response.status != 401:
                behind.append(time.monotonic() - at)
                break
            if time.monotonic() - at > 10:
                behind.append(float("inf"))
                break
            time.sleep(0.002)
        seen = secret
        time.sleep(0.05)


threads = [threading.Thread(target=writer, args=(lane,)) for lane in range(connections)]
threads.append(threading.Thread(target=prober))
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
took = time.monotonic() - started


def pct(values, p):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * p))] * 1000, 2) if values else None


print(json.dumps({
    "writes": len(late), "seconds": round(took, 2), "perSecond": round(len(late) / took, 1),
    "errors": len(errors), "firstError": errors[0] if errors else None,
    "p50Ms": pct(late, 0.5), "p99Ms": pct(late, 0.99), "maxMs": pct(late, 1.0),
    "serviceP99Ms": pct(service, 0.99),
    "behindSamples": len(behind), "behindP50Ms": pct(behind, 0.5), "behindP99Ms": pct(behind, 0.99),
    "behindMaxMs": pct(behind, 1.0),
}))
