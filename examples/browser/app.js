// The example page's script: a mint, a write, a refusal and the remaining quota, each shown as
// it happens. `config.js` is written by `keygate quickstart` (keygate's address and demo keys);
// `keygate.js` is the browser client, clients/js/keygate.js.
import config from "./config.js";
import { createClient, KeygateError } from "./keygate.js";

const steps = document.getElementById("steps");
const outcome = {};

function show(title, ok, text) {
  const item = document.createElement("li");
  item.innerHTML = `<strong class="${ok ? "ok" : "refused"}"></strong><pre></pre>`;
  item.querySelector("strong").textContent = title;
  item.querySelector("pre").textContent = text;
  steps.append(item);
}

const api = createClient({ baseUrl: config.baseUrl, apiKey: config.browserKey });
try {
  const response = await api.fetch("/api/v1/orders", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ item: "tea" }),
  });
  const body = await response.json();
  outcome.writeStatus = response.status;
  outcome.sessionExpiresAt = api.sessionExpiresAt;
  show("A session was minted (POST /api/v1/sessions)", true, `expires at ${api.sessionExpiresAt}`);
  show(`A write went through the gateway: ${response.status}`, true, JSON.stringify(body, null, 2));
} catch (error) {
  outcome.writeError = error.code ?? error.name;
  show("The write failed", false, String(error));
}

// A key without the sessions:create scope cannot mint, so it cannot write from a browser.
const unscoped = createClient({ baseUrl: config.baseUrl, apiKey: config.unscopedKey });
try {
  await unscoped.fetch("/api/v1/orders", { method: "POST", body: "{}" });
  show("Unexpected: the unscoped key could write", false, "");
} catch (error) {
  if (!(error instanceof KeygateError)) throw error;
  outcome.refusal = error.code;
  show(`A refusal: ${error.status} ${error.code}`, false, `${error.message}\nrequest id: ${error.requestId}`);
}

const quota = api.rateLimit;
outcome.remaining = quota?.remaining;
show(
  "The remaining quota of the browser key",
  true,
  quota ? `${quota.remaining} of ${quota.limit} left; the window resets at ${new Date(quota.reset * 1000).toISOString()}` : "unknown",
);
document.getElementById("status").textContent = "Done: each step above is what keygate answered.";
// Read by tests/it/quickstart.rs, which opens this page in headless Chromium.
window.result = outcome;
