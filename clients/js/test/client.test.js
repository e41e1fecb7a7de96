// The client against a scripted fetch: what it sends, in which order, and what it makes of
// each answer. The end-to-end tests in headless Chromium are in tests/it/browser_client.rs.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createClient, KeygateError, KeygateNetworkError } from "../keygate.js";

const BASE = "https://api.example.test";

const tokens = new Map();
/** Token `n`: JWT-shaped, its claims saying it lives `seconds` from when it was first asked for. */
function token(n, seconds = 3600) {
  const name = `${n}/${seconds}`;
  if (!tokens.has(name)) {
    const iat = Math.floor(Date.now() / 1000);
    const claims = Buffer.from(JSON.stringify({ iat, exp: iat + seconds })).toString("base64url");
    tokens.set(name, `h.${claims}.s${n}`);
  }
  return tokens.get(name);
}

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
}

/** A fetch that answers each call with the next of `answers` (a function of the request) and records the calls. */
function scripted(...answers) {
  const calls = [];
  const fetch = async (url, init) => {
    const headers = new Headers(init.headers);
    calls.push({ url, method: init.method, auth: headers.get("Authorization"), session: headers.get("X-Session-Token") });
    const next = answers.shift();
    assert.ok(next, `an unexpected call: ${init.method} ${url}`);
    return typeof next === "function" ? next(url, init) : next;
  };
  return { fetch, calls };
}

const minted = (n, seconds) => json(201, { data: { sessionToken: token(n, seconds), expiresAt: "2030-01-01T00:00:00Z" } });
const envelope = (status, code, headers) => json(status, { error: { code, message: code.toLowerCase(), details: [] } }, headers);

test("a read carries the key and no session; a write mints first and carries the session", async () => {
  const { fetch, calls } = scripted(json(200, { ok: 1 }), minted(1), json(201, { ok: 2 }));
  const api = createClient({ baseUrl: `${BASE}/`, apiKey: "kg_k", fetch });
  assert.equal((await api.fetch("/api/v1/orders")).status, 200);
  assert.equal((await api.fetch("api/v1/orders", { method: "post", body: "{}" })).status, 201);
  assert.deepEqual(
    calls.map((c) => [c.method, c.url, c.auth, c.session]),
    [
      ["GET", `${BASE}/api/v1/orders`, "Bearer kg_k", null],
      ["POST", `${BASE}/api/v1/sessions`, "Bearer kg_k", null],
      ["POST", `${BASE}/api/v1/orders`, "Bearer kg_k", token(1)],
    ],
  );
});

test("concurrent writes share one mint", async () => {
  const writes = Array.from({ length: 10 }, () => json(200, {}));
  const { fetch, calls } = scripted(minted(1), ...writes);
  const api = createClient({ baseUrl: BASE, apiKey: "kg_k", fetch });
  await Promise.all(Array.from({ length: 10 }, () => api.fetch("/w", { method: "PUT" })));
  assert.equal(calls.filter((c) => c.url.endsWith("/api/v1/sessions")).length, 1);
  assert.ok(calls.slice(1).every((c) => c.session === token(1)));
});

test("a session about to expire is renewed before it is used", async () => {
  // A 2-second session: usable for 1 s (iat is rounded down), renewed in its last quarter.
  const first = token(1, 2), second = token(2, 2);
  const session = (sessionToken) => json(201, { data: { sessionToken, expiresAt: "2030-01-01T00:00:00Z" } });
  const { fetch, calls } = scripted(session(first), json(200, {}), session(second), json(200, {}));
  const api = createClient({ baseUrl: BASE, apiKey: "kg_k", fetch });
  await api.fetch("/w", { method: "POST" });
  await new Promise((resolve) => setTimeout(resolve, 800));
  await api.fetch("/w", { method: "POST" });
  assert.deepEqual(calls.map((c) => c.session), [null, first, null, second]);
});

test("SESSION_EXPIRED or SESSION_INVALID renews once; a second refusal is a KeygateError", async () => {
  const { fetch, calls } = scripted(minted(1), envelope(401, "SESSION_EXPIRED"), minted(2), json(200, {}));
  const api = createClient({ baseUrl: BASE, apiKey: "kg_k", fetch });
  assert.equal((await api.fetch("/w", { method: "POST" })).status, 200);
  assert.equal(calls.length, 4);

  const again = scripted(minted(3), envelope(401, "SESSION_INVALID"), minted(4), envelope(401, "SESSION_INVALID"));
  const other = createClient({ baseUrl: BASE, apiKey: "kg_k", fetch: again.fetch });
  await assert.rejects(other.fetch("/w", { method: "POST" }), (error) => {
    assert.ok(error instanceof KeygateError);
    assert.equal(error.code, "SESSION_INVALID");
    assert.equal(error.status, 401);
    return true;
  });
  assert.equal(again.calls.length, 4, "one retry, never a loop");
});

test("a 429 is waited out for Retry-After, then tried once more", async () => {
  const limited = { "Retry-After": "1", "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "99" };
  const ok = { "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "160" };
  const { fetch } = scripted(envelope(429, "RATE_LIMITED", limited), json(200, {}, ok));
  const api = createClient({ baseUrl: BASE, apiKey: "kg_k", fetch });
  const started = Date.now();
  assert.equal((await api.fetch("/r")).status, 200);
  assert.ok(Date.now() - started >= 950, "waited about a second");
  assert.deepEqual(api.rateLimit, { limit: 5, remaining: 4, reset: 160 });
});

test("a Retry-After over the bound is thrown at once, with the figures", async () => {
  const limited = { "Retry-After": "3600", "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9" };
  const { fetch } = scripted(envelope(429, "RATE_LIMITED", { ...limited, "X-Request-Id": "req-1" }));
  const api = createClient({ baseUrl: BASE, apiKey: "kg_k", fetch, maxRetryAfterSeconds: 10 });
  await assert.rejects(api.fetch("/r"), (error) => {
    assert.equal(error.code, "RATE_LIMITED");
    assert.equal(error.requestId, "req-1");
    assert.deepEqual(error.rateLimit, { limit: 5, remaining: 0, reset: 9 });
    return true;
  });
});

test("an abort during the wait rejects at once", async () => {
  const { fetch } = scripted(envelope(429, "RATE_LIMITED", { "Retry-After": "20" }));
  const api = createClient({ baseUrl: BASE, apiKey: "kg_k", fetch });
  const controller = new AbortController();
  const started = Date.now();
  setTimeout(() => controller.abort(new Error("stop")), 50);
  await assert.rejects(api.fetch("/r", { signal: controller.signal }), /stop/);
  assert.ok(Date.now() - started < 1000);
});

test("no readable answer is a KeygateNetworkError; an application's own error passes through", async () => {
  const failing = createClient({
    baseUrl: BASE,
    apiKey: "kg_k",
    fetch: async () => {
      throw new TypeError("Failed to fetch");
    },
  });
  await assert.rejects(failing.fetch("/r"), (error) => error instanceof KeygateNetworkError && error.cause instanceof TypeError);
  const { fetch } = scripted(new Response("not found here", { status: 404 }));
  const api = createClient({ baseUrl: BASE, apiKey: "kg_k", fetch });
  const response = await api.fetch("/r");
  assert.equal(response.status, 404);
  assert.equal(await response.text(), "not found here", "the body is still there to read");
});

test("a refused mint is the mint's KeygateError, and the write is not sent", async () => {
  const { fetch, calls } = scripted(envelope(403, "ORIGIN_NOT_ALLOWED"));
  const api = createClient({ baseUrl: BASE, apiKey: "kg_k", fetch });
  await assert.rejects(api.fetch("/w", { method: "DELETE" }), { code: "ORIGIN_NOT_ALLOWED", status: 403 });
  assert.equal(calls.length, 1);
});

test("options are checked", () => {
  assert.throws(() => createClient({ apiKey: "k" }), /baseUrl/);
  assert.throws(() => createClient({ baseUrl: BASE }), /apiKey/);
});
