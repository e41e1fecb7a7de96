// An application's use of the packed package, imported by name (tests/it/js_client.rs installs the
// `npm pack` tarball next to it). A read from Node is keygate's server channel: the key alone.
import { createClient, KeygateError, KeygateNetworkError } from "keygate-browser";

const api = createClient({ baseUrl: process.env.KEYGATE_URL, apiKey: process.env.KEYGATE_KEY });
const response = await api.fetch("/api/v1/orders");
const refused = await createClient({ baseUrl: process.env.KEYGATE_URL, apiKey: "kg_not-a-real-key" })
  .fetch("/api/v1/orders")
  .then(() => null, (error) => (error instanceof KeygateError ? error.code : String(error)));
console.log(JSON.stringify({
  status: response.status,
  body: await response.json(),
  rateLimit: api.rateLimit,
  refused,
  networkErrorIsDistinct: new KeygateNetworkError("x") instanceof Error && !(new KeygateNetworkError("x") instanceof KeygateError),
}));
