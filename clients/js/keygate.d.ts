/** The `X-RateLimit-*` figures of keygate's last answer. */
export interface RateLimit {
  /** Requests allowed in the window. */
  limit: number;
  /** Requests left in the window. */
  remaining: number;
  /** Unix time, in seconds, when the window resets. */
  reset: number;
}

/** One entry of an error's `details`: which field, and what is wrong with it. */
export interface ErrorDetail {
  path?: string;
  message?: string;
}

export interface ClientOptions {
  /** Where keygate's public listener is, e.g. `https://api.example.com`. */
  baseUrl: string;
  /** The API key. A key used from a page must list the page's origin in its allowed origins. */
  apiKey: string;
  /** The `fetch` to use. Default: the global one. */
  fetch?: typeof fetch;
  /** Renew a session this many seconds before it expires, or at a quarter of its lifetime if that is sooner. Default 60. */
  renewBeforeSeconds?: number;
  /** The longest `Retry-After` a 429 is waited out for; a longer one is thrown at once. Default 30. */
  maxRetryAfterSeconds?: number;
  /** Which requests carry a session token. Default: every method but GET, HEAD and OPTIONS, as keygate decides. */
  isWrite?: (method: string, path: string) => boolean;
}

export interface KeygateClient {
  /**
   * `fetch` through keygate: `path` is relative to `baseUrl` (or an absolute URL). Resolves with
   * the response when it is 2xx, or when it is an error that is not in keygate's envelope.
   * Rejects with a {@link KeygateError} for an error in the envelope, with a
   * {@link KeygateNetworkError} when no answer could be read, and with the signal's reason
   * when `init.signal` aborts.
   */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** The rate-limit figures of the last answer that had them; null before any. */
  readonly rateLimit: RateLimit | null;
  /** When the current session expires (RFC 3339), or null without one. */
  readonly sessionExpiresAt: string | null;
  /** Forgets the session: the next write mints a new one. */
  clearSession(): void;
}

/** An answer in the error envelope `{"error": {code, message, details}}`. */
export class KeygateError extends Error {
  readonly name: "KeygateError";
  /** The envelope's code, e.g. `ORIGIN_NOT_ALLOWED`, `RATE_LIMITED`, `SESSION_INVALID`. */
  readonly code: string;
  readonly details: ErrorDetail[];
  /** The HTTP status. */
  readonly status: number;
  /** `X-Request-Id` of the answer, for support requests. */
  readonly requestId: string | undefined;
  /** The `X-RateLimit-*` figures of the answer, when it had them. */
  readonly rateLimit: RateLimit | undefined;
  constructor(fields: {
    code: string;
    message?: string;
    details?: ErrorDetail[];
    status: number;
    requestId?: string;
    rateLimit?: RateLimit;
  });
}

/** No readable answer: a network failure, or CORS withheld it (the page's origin is not allowed). */
export class KeygateNetworkError extends Error {
  readonly name: "KeygateNetworkError";
  /** The URL that was called. */
  readonly url: string;
  readonly cause: unknown;
  constructor(url: string, cause?: unknown);
}

export function createClient(options: ClientOptions): KeygateClient;
