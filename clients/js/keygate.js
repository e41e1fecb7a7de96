// keygate's browser channel for web pages (SPEC §3, §4): the API key on every request, a session
// token on every write, renewed before it expires, and 429s waited out. No dependencies: it
// needs only `fetch`, `Headers`, `AbortSignal` and timers, as every current browser and Node 18+
// have them.

const SESSIONS_PATH = "/api/v1/sessions";
const SESSION_HEADER = "X-Session-Token";
/** Only these methods are reads (SPEC §2); every other method is a write and needs a session. */
const READS = new Set(["GET", "HEAD", "OPTIONS"]);
/** The codes after which a session is minted again, once. */
const RENEW_ON = new Set(["SESSION_EXPIRED", "SESSION_INVALID"]);

/** An answer of keygate's (or the upstream's) in the error envelope: `{"error": {code, message, details}}`. */
export class KeygateError extends Error {
  constructor({ code, message, details, status, requestId, rateLimit }) {
    super(message || code);
    this.name = "KeygateError";
    this.code = code;
    this.details = details || [];
    this.status = status;
    this.requestId = requestId;
    this.rateLimit = rateLimit;
  }
}

/**
 * No answer the page may read: the network failed, or the browser withheld the answer because
 * keygate sent no CORS headers (the page's origin is not allowed). The browser does not tell
 * the two apart, so neither can this.
 */
export class KeygateNetworkError extends Error {
  constructor(url, cause) {
    super(`no readable answer from ${url}: a network failure, or CORS withheld it (is this page's origin allowed?)`);
    this.name = "KeygateNetworkError";
    this.url = url;
    this.cause = cause;
  }
}

/**
 * @param {import("./keygate.js").ClientOptions} options
 * @returns {import("./keygate.js").KeygateClient}
 */
export function createClient(options) {
  const {
    baseUrl,
    apiKey,
    fetch: fetchImpl = globalThis.fetch?.bind(globalThis),
    renewBeforeSeconds = 60,
    maxRetryAfterSeconds = 30,
    isWrite = (method) => !READS.has(method),
  } = options || {};
  if (typeof baseUrl !== "string" || baseUrl === "") throw new TypeError("createClient: baseUrl is required");
  if (typeof apiKey !== "string" || apiKey === "") throw new TypeError("createClient: apiKey is required");
  if (typeof fetchImpl !== "function") throw new TypeError("createClient: no fetch available; pass options.fetch");
  const base = baseUrl.replace(/\/+$/, "");

  /** The session: in memory only, never in storage a script of another page could read. */
  let session = null; // { token, expiresAt, renewAt }
  /** The mint under way, which concurrent writes share. */
  let minting = null;
  let rateLimit = null;

  /** One request, its 429 waited out once when `Retry-After` allows. */
  async function send(url, init, signal) {
    for (let waited = false; ; waited = true) {
      let response;
      try {
        response = await fetchImpl(url, { ...init, signal });
      } catch (error) {
        if (signal?.aborted) throw signal.reason ?? error;
        throw new KeygateNetworkError(url, error);
      }
      // A no-cors answer is opaque: nothing in it may be read.
      if (response.type === "opaque" || response.type === "opaqueredirect") throw new KeygateNetworkError(url);
      rateLimit = readRateLimit(response.headers) ?? rateLimit;
      const retryAfter = Number(response.headers.get("Retry-After"));
      const replayable = typeof ReadableStream === "undefined" || !(init.body instanceof ReadableStream);
      if (response.status !== 429 || waited || !replayable || !(retryAfter >= 0) || retryAfter > maxRetryAfterSeconds) {
        return response;
      }
      await sleep(retryAfter * 1000, signal);
    }
  }

  /** Not abortable: the writes that share it may not all abort. */
  async function mint() {
    const url = base + SESSIONS_PATH;
    const minted = Date.now();
    const response = await send(url, { method: "POST", headers: { Authorization: `Bearer ${apiKey}` } }, undefined);
    if (response.status !== 201) {
      const message = `the sessions endpoint answered ${response.status}`;
      throw (await errorOf(response)) ?? new KeygateError({ code: "UNEXPECTED_ANSWER", message, status: response.status });
    }
    const { data } = await response.json();
    // The lifetime from the token's own claims, counted on this clock: a page's clock may be off.
    const lifetime = lifetimeSeconds(data.sessionToken) ?? (Date.parse(data.expiresAt) - minted) / 1000;
    // `iat` is rounded down to the second, so up to a second of it may be gone already.
    const usable = Math.max(0, lifetime - 1) * 1000;
    const margin = Math.min(renewBeforeSeconds * 1000, usable / 4);
    session = { token: data.sessionToken, expiresAt: data.expiresAt, renewAt: minted + usable - margin };
    return session.token;
  }

  /** A session that is not about to expire; one mint however many writes ask at once. */
  function ensureSession() {
    if (session && Date.now() < session.renewAt) return Promise.resolve(session.token);
    if (!minting) {
      minting = mint().finally(() => {
        minting = null;
      });
    }
    return minting;
  }

  async function keygateFetch(path, init = {}) {
    const url = /^https?:\/\//.test(path) ? path : base + (path.startsWith("/") ? path : `/${path}`);
    const method = (init.method || "GET").toUpperCase();
    const signal = init.signal ?? undefined;
    const write = isWrite(method, path);
    for (let renewed = false; ; renewed = true) {
      const headers = new Headers(init.headers);
      headers.set("Authorization", `Bearer ${apiKey}`);
      let token;
      if (write) {
        token = await ensureSession();
        headers.set(SESSION_HEADER, token);
      }
      const response = await send(url, { ...init, method, headers }, signal);
      if (response.ok) return response;
      const error = await errorOf(response.clone());
      if (!error) return response;
      if (write && !renewed && RENEW_ON.has(error.code)) {
        // Renewed once; a second refusal is the caller's to see.
        if (session?.token === token) session = null;
        continue;
      }
      throw error;
    }
  }

  return {
    fetch: keygateFetch,
    get rateLimit() {
      return rateLimit;
    },
    get sessionExpiresAt() {
      return session?.expiresAt ?? null;
    },
    clearSession() {
      session = null;
    },
  };
}

/** The `X-RateLimit-*` figures of an answer, or null when it has none. */
function readRateLimit(headers) {
  const limit = headers.get("X-RateLimit-Limit");
  if (limit === null) return null;
  return {
    limit: Number(limit),
    remaining: Number(headers.get("X-RateLimit-Remaining")),
    reset: Number(headers.get("X-RateLimit-Reset")),
  };
}

/** A KeygateError for an answer in the error envelope; null for any other answer. */
async function errorOf(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && typeof body === "object" ? body.error : null;
  if (!error || typeof error.code !== "string") return null;
  return new KeygateError({
    code: error.code,
    message: error.message,
    details: error.details,
    status: response.status,
    requestId: response.headers.get("X-Request-Id") ?? undefined,
    rateLimit: readRateLimit(response.headers) ?? undefined,
  });
}

/** exp − iat of a JWT, unverified: only to time the renewal. */
function lifetimeSeconds(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload + "=".repeat((4 - (payload.length % 4)) % 4)));
    const lifetime = claims.exp - claims.iat;
    return Number.isFinite(lifetime) && lifetime > 0 ? lifetime : null;
  } catch {
    return null;
  }
}

/** Waits `ms`; rejects at once, with the signal's reason, when `signal` aborts. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    function onAbort() {
      clearTimeout(timer);
      reject(signal.reason);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
