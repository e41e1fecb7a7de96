// The package's types, used as an application would, checked with `tsc --strict` against the
// installed `npm pack` tarball (tests/it/js_client.rs).
import { createClient, KeygateError, KeygateNetworkError } from "keygate-browser";
import type { ClientOptions, ErrorDetail, KeygateClient, RateLimit } from "keygate-browser";

const options: ClientOptions = {
  baseUrl: "https://api.example.com",
  apiKey: "kg_example",
  renewBeforeSeconds: 30,
  maxRetryAfterSeconds: 10,
  isWrite: (method: string, path: string) => method !== "GET" && !path.startsWith("/api/v1/search"),
};
const api: KeygateClient = createClient(options);

export async function placeOrder(item: string, signal?: AbortSignal): Promise<unknown> {
  try {
    const response: Response = await api.fetch("/api/v1/orders", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ item }),
      signal,
    });
    const left: number | undefined = api.rateLimit?.remaining;
    const expires: string | null = api.sessionExpiresAt;
    return { order: await response.json(), left, expires };
  } catch (error: unknown) {
    if (error instanceof KeygateError) {
      const code: string = error.code;
      const status: number = error.status;
      const details: ErrorDetail[] = error.details;
      const quota: RateLimit | undefined = error.rateLimit;
      const requestId: string | undefined = error.requestId;
      return { code, status, details, quota, requestId };
    }
    if (error instanceof KeygateNetworkError) {
      return { unreachable: error.url };
    }
    throw error;
  } finally {
    api.clearSession();
  }
}
