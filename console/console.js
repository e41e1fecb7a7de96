// keygate's admin console (SPEC §15). One script, no framework and no build step: it renders
// each page from the admin API's JSON, and every change it makes is an admin API call, so it
// can never do what the API cannot. Errors are the API's own message, shown next to the field
// its `details` name. The admin token lives in sessionStorage: this tab only, never a URL,
// a cookie or localStorage.
"use strict";

const TOKEN_KEY = "keygate.adminToken";
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const STATUSES = ["active", "suspended"];
const SUBSCRIPTIONS = ["active", "trialing", "past_due", "cancelled"];
const PERIODS = ["day", "month"];
const ACTIONS = [
  "tenant.create", "tenant.update", "tenant.delete",
  "key.create", "key.import", "key.update", "key.roll", "key.revoke", "key.delete",
  "signing_key.rotate", "signing_key.retire",
];
// Outcomes in the order a chart stacks them; others follow by name.
const OUTCOME_ORDER = ["OK", "UPSTREAM_4XX", "UPSTREAM_5XX", "RATE_LIMITED"];
const OUTCOME_COLOURS = ["#2f7d4f", "#b7791f", "#c53030", "#6b46c1", "#2b6cb0", "#4a5568", "#97266d", "#2c7a7b"];

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  // What the next render of a page shows once: a new secret. Never kept beyond this page.
  flash: null,
  renders: 0,
};

// ---- DOM ----------------------------------------------------------------------------------

/** An element: `attrs` are attributes, except `text`, `on<event>` handlers and properties. */
function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attrs);
  element.append(...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  setAttributes(element, attrs);
  element.append(...children.flat(Infinity).filter(Boolean));
  return element;
}

function setAttributes(element, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") element.textContent = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "value" || name === "checked") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
}

let ids = 0;
const nextId = (stem) => `${stem}-${++ids}`;

/** A time as the API writes it, shortened for reading: `2026-12-06 03:27:30Z`. */
function when(value) {
  return value ? value.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—";
}

function listText(values) {
  return values && values.length ? values.join(", ") : "—";
}

function rateText(limit) {
  return limit ? `${limit.limit} per ${limit.windowSeconds} s` : "none (the default)";
}

function quotaText(quota) {
  if (!quota) return "none";
  const used = quota.used === undefined ? "" : `${quota.used} of `;
  const resets = quota.resetsAt ? `, resets ${when(quota.resetsAt)}` : "";
  return `${used}${quota.limit} a ${quota.period}${resets}`;
}

function keyState(key) {
  if (key.revokedAt) return "revoked";
  if (key.expiresAt && Date.parse(key.expiresAt) <= Date.now()) return "expired";
  return "usable";
}

// Says what just happened, in the page's status line (render keeps it across a navigation).
// After a change, it is said once the page is drawn again: whoever waits for the message then
// sees the page as changed.
function announce(message) {
  const status = document.getElementById("status");
  if (status) status.textContent = message;
}

// ---- the admin API ------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, error) {
    super(error.message);
    this.status = status;
    this.code = error.code;
    this.details = error.details || [];
  }
}

/** A call of the admin API with the tab's token (or, signing in, the one being tried). */
async function api(method, path, body, token = state.token) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, { code: "NETWORK", message: "keygate's admin listener could not be reached" });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON: the error below says what came back.
  }
  if (!response.ok) {
    const error = json && json.error ? json.error : { code: `HTTP_${response.status}`, message: text || response.statusText };
    if (error.code === "ADMIN_TOKEN_INVALID" && state.token && token === state.token) {
      signOut("The admin token is no longer accepted: sign in again.");
    }
    throw new ApiError(response.status, error);
  }
  return json;
}

const enc = encodeURIComponent;

// ---- forms --------------------------------------------------------------------------------

/** A labelled control; `path` is the body field whose errors it shows. */
function field(label, path, control, hint) {
  const id = nextId("field");
  control.id = id;
  control.name = path;
  const error = h("p", { class: "field-error", id: `${id}-error` });
  const described = [`${id}-error`];
  let hintElement = null;
  if (hint) {
    hintElement = h("p", { class: "hint", id: `${id}-hint`, text: hint });
    described.push(`${id}-hint`);
  }
  control.setAttribute("aria-describedby", described.join(" "));
  return h("div", { class: "field", "data-path": path }, h("label", { for: id, text: label }), control, hintElement, error);
}

const input = (value = "", attrs = {}) => h("input", { type: "text", value: value ?? "", autocomplete: "off", ...attrs });
const textarea = (value = "", attrs = {}) => h("textarea", { rows: 3, value: value ?? "", ...attrs });

function select(options, value, attrs = {}) {
  return h("select", attrs, options.map(([optionValue, label]) => h("option", { value: optionValue, text: label, selected: optionValue === value })));
}

/** A form whose submit runs `action(values)`; the API's errors land beside their fields. */
function form(label, fields, submit, action, attrs = {}) {
  const alert = h("div", { class: "form-error", role: "alert" });
  const button = h("button", { type: "submit", class: "primary", text: submit });
  const element = h("form", { "aria-label": label, novalidate: true, ...attrs }, fields, alert, h("div", { class: "actions" }, button));
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(element);
    button.disabled = true;
    try {
      await action(values(element));
    } catch (error) {
      showError(element, error);
    } finally {
      button.disabled = false;
    }
  });
  return element;
}

function values(formElement) {
  const out = {};
  for (const control of formElement.elements) {
    if (control.name) out[control.name] = control.value;
  }
  return out;
}

function clearErrors(formElement) {
  formElement.querySelector(".form-error").textContent = "";
  for (const error of formElement.querySelectorAll(".field-error")) error.textContent = "";
  for (const control of formElement.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}

/** The API's message at the top; each detail beside the field whose path it names. */
function showError(formElement, error) {
  const alert = formElement.querySelector(".form-error");
  if (!(error instanceof ApiError)) {
    alert.textContent = String(error);
    return;
  }
  alert.textContent = error.message;
  let first = null;
  for (const detail of error.details) {
    const holder = fieldFor(formElement, detail.path);
    if (!holder) continue;
    const message = holder.querySelector(".field-error");
    message.textContent = message.textContent ? `${message.textContent} ${detail.message}` : detail.message;
    const control = holder.querySelector("input, select, textarea");
    control.setAttribute("aria-invalid", "true");
    first = first || control;
  }
  if (first) first.focus();
}

/** The field that shows a detail's path: `scopes[2]` is the Scopes field, `quota.limit` Quota's. */
function fieldFor(formElement, path) {
  const candidates = [path, path.replace(/\[.*$/, ""), path.split(".")[0].replace(/\[.*$/, "")];
  for (const candidate of candidates) {
    const holder = formElement.querySelector(`.field[data-path="${CSS.escape(candidate)}"]`);
    if (holder) return holder;
  }
  return null;
}

// What a field's text means in a body. Numbers typed are sent as numbers; anything else is
// sent as typed, so the API says what is wrong with it in its own words.
function entries(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

function number(text) {
  const trimmed = text.trim();
  return /^-?\d+(\.\d+)?$/.test(trimmed) ? Number(trimmed) : trimmed;
}

function rateLimitOf(v) {
  if (!v["rateLimit.limit"].trim() && !v["rateLimit.windowSeconds"].trim()) return null;
  return { limit: number(v["rateLimit.limit"]), windowSeconds: number(v["rateLimit.windowSeconds"]) };
}

function quotaOf(v) {
  if (!v["quota.limit"].trim()) return null;
  return { limit: number(v["quota.limit"]), period: v["quota.period"] };
}

function metaOf(text) {
  if (!text.trim()) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text; // the API refuses it: "must be a JSON object …"
  }
}

/** Only what differs from `before`: an unchanged field is not written (nor audited). A quota
 * is compared by its plan: what it has used is not part of the form. */
function changes(after, before) {
  const plan = before.quota ? { limit: before.quota.limit, period: before.quota.period } : null;
  const shown = { ...before, quota: plan };
  const out = {};
  for (const [name, value] of Object.entries(after)) {
    if (JSON.stringify(value) !== JSON.stringify(shown[name] ?? null)) out[name] = value;
  }
  return out;
}

function limitFields(rateLimit, quota) {
  return [
    field("Rate limit", "rateLimit.limit", input(rateLimit?.limit, { inputmode: "numeric" }), "Requests per window; empty for the default."),
    field("Window seconds", "rateLimit.windowSeconds", input(rateLimit?.windowSeconds, { inputmode: "numeric" })),
    field("Quota", "quota.limit", input(quota?.limit, { inputmode: "numeric" }), "Requests per period; empty for none."),
    field("Quota period", "quota.period", select(PERIODS.map((p) => [p, p]), quota?.period || "month")),
  ];
}

function metaField(meta) {
  return field("Metadata", "meta", textarea(meta ? JSON.stringify(meta, null, 2) : ""), "A JSON object, e.g. {\"crmId\": \"C-1042\"}; empty for none.");
}

function tenantFields(tenant = {}) {
  return [
    field("Name", "name", input(tenant.name)),
    field("Status", "status", select(STATUSES.map((s) => [s, s]), tenant.status || "active")),
    field("Subscription", "subscription", select(SUBSCRIPTIONS.map((s) => [s, s]), tenant.subscription || "active")),
    field("Modules", "modules", textarea((tenant.modules ?? []).join(" ")), "Separated by commas, spaces or new lines."),
    ...limitFields(tenant.rateLimit, tenant.quota),
    metaField(tenant.meta),
  ];
}

function tenantBody(v) {
  return {
    name: v.name,
    status: v.status,
    subscription: v.subscription,
    modules: entries(v.modules),
    rateLimit: rateLimitOf(v),
    quota: quotaOf(v),
    meta: metaOf(v.meta),
  };
}

function keyFields(key = {}) {
  return [
    field("Name", "name", input(key.name)),
    field("Scopes", "scopes", textarea((key.scopes ?? []).join(" ")), "e.g. orders:read orders:write; separated by commas, spaces or new lines."),
    field("Allowed origins", "allowedOrigins", textarea((key.allowedOrigins ?? []).join("\n")), "Browser origins, e.g. https://app.example.com; empty for server-to-server only."),
    field("Expires at", "expiresAt", input(key.expiresAt ?? ""), "An RFC 3339 time such as 2027-01-01T00:00:00Z; empty for never."),
    ...limitFields(key.rateLimit, key.quota),
    metaField(key.meta),
  ];
}

function keyBody(v) {
  return {
    name: v.name,
    scopes: entries(v.scopes),
    allowedOrigins: entries(v.allowedOrigins),
    expiresAt: v.expiresAt.trim() || null,
    rateLimit: rateLimitOf(v),
    quota: quotaOf(v),
    meta: metaOf(v.meta),
  };
}

/** A create body: what was left empty is left out, so the API's defaults apply. */
function present(body) {
  return Object.fromEntries(Object.entries(body).filter(([, value]) => value !== null && !(Array.isArray(value) && value.length === 0)));
}

// ---- confirmation -------------------------------------------------------------------------

/** The confirmation dialog: resolves true only when `action` is pressed. */
function confirmAction(title, text, action) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  const cancel = document.getElementById("confirm-cancel");
  ok.textContent = action;
  return new Promise((resolve) => {
    const done = (answer) => {
      ok.onclick = cancel.onclick = dialog.oncancel = null;
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    ok.onclick = () => done(true);
    cancel.onclick = () => done(false);
    dialog.oncancel = () => done(false);
    dialog.showModal();
    cancel.focus();
  });
}

/** A button whose click runs `action`; a refusal is shown beside it, in the API's words. */
function actionButton(label, action, attrs = {}) {
  const error = h("span", { class: "form-error", role: "alert" });
  const button = h("button", { type: "button", class: "secondary", ...attrs, text: label });
  button.addEventListener("click", async () => {
    error.textContent = "";
    button.disabled = true;
    try {
      await action();
    } catch (caught) {
      error.textContent = caught.message;
    } finally {
      button.disabled = false;
    }
  });
  return h("span", { class: "action" }, button, error);
}

// ---- pages --------------------------------------------------------------------------------

function heading(text) {
  return h("h1", { tabindex: -1, text });
}

function table(caption, columns, rows, empty) {
  if (!rows.length) return h("p", { class: "empty", text: empty });
  return h(
    "div",
    { class: "table-wrap", role: "region", "aria-label": caption, tabindex: 0 },
    h(
      "table",
      {},
      h("caption", { text: caption }),
      h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col", text: column })))),
      h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell) => h("td", {}, cell))))),
    ),
  );
}

function summary(pairs) {
  return h("dl", { class: "summary" }, pairs.map(([term, value]) => [h("dt", { text: term }), h("dd", {}, value)]));
}

function link(href, text) {
  return h("a", { href, text });
}

/** A "Next page" link for a list that has more, keeping the other query parameters. */
function pager(base, params, nextCursor) {
  const out = [];
  if (params.get("cursor")) {
    const first = new URLSearchParams(params);
    first.delete("cursor");
    out.push(link(`${base}${first.size ? `?${first}` : ""}`, "First page"));
  }
  if (nextCursor) {
    const next = new URLSearchParams(params);
    next.set("cursor", nextCursor);
    out.push(link(`${base}?${next}`, "Next page"));
  }
  return out.length ? h("p", { class: "pager" }, out) : null;
}

function toggled(buttonLabel, build) {
  const holder = h("div", { class: "panel", hidden: true });
  const button = h("button", { type: "button", class: "primary", "aria-expanded": "false", text: buttonLabel });
  button.addEventListener("click", () => {
    const opening = holder.hidden;
    holder.hidden = !opening;
    button.setAttribute("aria-expanded", String(opening));
    if (opening) {
      holder.replaceChildren(build());
      holder.querySelector("input, select, textarea")?.focus();
    }
  });
  return [button, holder];
}

/** A secret shown once, with a `Copy` button, on the page it was made from: gone at that
 * page's next render. */
function secretPanel(flash) {
  const id = nextId("secret");
  const secret = h("input", { id, type: "text", readonly: true, value: flash.secret, class: "secret", spellcheck: "false" });
  const copied = h("span", { role: "status", class: "copied" });
  const copy = h("button", { type: "button", class: "primary", text: "Copy" });
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(flash.secret);
    } catch {
      // No clipboard API (a page over plain HTTP on another host): copy the selection.
      secret.select();
      document.execCommand("copy");
    }
    copied.textContent = "Copied.";
  });
  return h(
    "section",
    { class: "secret-panel", "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title`, text: flash.title }),
    h("p", { text: "Copy the secret now: it is shown this once, and keygate keeps only its hash." }),
    h("div", { class: "secret-row" }, h("label", { for: id, text: "Secret" }), secret, copy, copied),
  );
}

/** The flash for `target`, taken: one made for another page (an operator who moved on while
 * a key was being made) waits for that page, so its secret is still shown once. */
function takeFlash(target) {
  if (!state.flash || state.flash.target !== target) return null;
  const flash = state.flash;
  state.flash = null;
  return flash;
}

/** After a change made on the page `hash`, draws it again and announces `message`, unless the
 * operator has moved on meanwhile: redrawing the page they moved to would wipe what they are
 * typing there. */
async function redraw(hash, message) {
  if (location.hash !== hash) return;
  await render();
  if (message) announce(message);
}

async function tenantsPage(query) {
  const params = new URLSearchParams(query);
  const listed = new URLSearchParams({ limit: "50" });
  if (params.get("cursor")) listed.set("cursor", params.get("cursor"));
  const page = await api("GET", `/admin/v1/tenants?${listed}`);
  const [newButton, newPanel] = toggled("New tenant", () =>
    form("New tenant", [field("Id", "id", input("", { spellcheck: "false" }), "1 to 64 of A-Z a-z 0-9 _ -; it cannot change."), ...tenantFields()], "Create tenant", async (v) => {
      const created = await api("POST", "/admin/v1/tenants", present({ id: v.id, ...tenantBody(v) }));
      announce(`Tenant ${created.data.id} created.`);
      location.hash = `#/tenants/${enc(created.data.id)}`;
    }),
  );
  const rows = page.data.map((tenant) => [
    link(`#/tenants/${enc(tenant.id)}`, tenant.id),
    tenant.name,
    tenant.status,
    tenant.subscription,
    listText(tenant.modules),
    quotaText(tenant.quota),
  ]);
  return [
    heading("Tenants"),
    h("div", { class: "toolbar" }, newButton, findKeyForm()),
    newPanel,
    table("Tenants", ["Id", "Name", "Status", "Subscription", "Modules", "Quota"], rows, "No tenants yet: create the first with New tenant."),
    pager("#/tenants", params, page.nextCursor),
  ];
}

/** "Which customer is kg_4fT9…?": the keys whose display prefix starts so. */
function findKeyForm() {
  const results = h("div", { class: "found" });
  const element = form("Find a key", [field("Key prefix", "prefix", input("", { spellcheck: "false" }), "The start of a key as a customer pastes it, e.g. kg_4fT9a.")], "Find", async (v) => {
    const found = await api("GET", `/admin/v1/keys?${new URLSearchParams({ prefix: v.prefix.trim(), limit: "20" })}`);
    results.replaceChildren(
      table("Keys found", ["Key", "Tenant", "Prefix", "State"], found.data.map((key) => [link(`#/keys/${enc(key.id)}`, key.name), link(`#/tenants/${enc(key.tenantId)}`, key.tenantId), key.prefix, keyState(key)]), "No key has that prefix."),
    );
  }, { class: "find" });
  return h("div", { class: "find-holder" }, element, results);
}

// An edit form that PATCHes only the fields the operator changed.
function editForm(title, fields, current, toBody, path, saved) {
  const here = location.hash;
  return form(title, fields, "Save", async (v) => {
    const body = changes(toBody(v), current);
    if (!Object.keys(body).length) throw new Error("Nothing to save: no field was changed.");
    await api("PATCH", path, body);
    await redraw(here, saved);
  });
}

async function tenantPage(path) {
  const here = location.hash;
  const id = decodeURIComponent(path);
  const tenant = (await api("GET", `/admin/v1/tenants/${enc(id)}`)).data;
  const keys = await api("GET", `/admin/v1/tenants/${enc(id)}/keys?limit=100`);
  const flash = takeFlash(`tenant:${id}`);
  const edit = editForm("Edit tenant", tenantFields(tenant), tenant, tenantBody, `/admin/v1/tenants/${enc(id)}`, "Tenant saved.");
  const [newKey, newKeyPanel] = toggled("New key", () =>
    form("New key", keyFields(), "Create key", async (v) => {
      const created = await api("POST", `/admin/v1/tenants/${enc(id)}/keys`, present(keyBody(v)));
      state.flash = { target: `tenant:${id}`, title: `Key ${created.data.name} created`, secret: created.data.secret };
      await redraw(here);
    }),
  );
  const keyRows = keys.data.map((key) => [
    link(`#/keys/${enc(key.id)}`, key.name),
    h("code", { text: key.prefix }),
    keyState(key),
    listText(key.scopes),
    when(key.lastUsedAt),
    when(key.createdAt),
  ]);
  const remove = actionButton("Delete", async () => {
    if (!(await confirmAction(`Delete tenant ${tenant.id}?`, "The tenant is deleted for good. keygate refuses while it still has keys.", "Delete"))) return;
    await api("DELETE", `/admin/v1/tenants/${enc(id)}`);
    if (location.hash !== here) return;
    announce(`Tenant ${id} deleted.`);
    location.hash = "#/tenants";
  }, { class: "danger" });
  return [
    h("p", { class: "crumbs" }, link("#/tenants", "Tenants"), " / ", tenant.id),
    heading(tenant.name),
    summary([
      ["Id", h("code", { text: tenant.id })],
      ["Status", tenant.status],
      ["Subscription", tenant.subscription],
      ["Modules", listText(tenant.modules)],
      ["Rate limit", rateText(tenant.rateLimit)],
      ["Quota", quotaText(tenant.quota)],
      ["Created", when(tenant.createdAt)],
      ["Metadata", tenant.meta ? h("code", { text: JSON.stringify(tenant.meta) }) : "—"],
    ]),
    flash ? secretPanel(flash) : null,
    h("section", { "aria-labelledby": "keys-title" },
      h("h2", { id: "keys-title", text: "Keys" }),
      h("div", { class: "toolbar" }, newKey),
      newKeyPanel,
      table(`Keys of ${tenant.id}`, ["Name", "Prefix", "State", "Scopes", "Last used", "Created"], keyRows, "No keys yet: create one with New key."),
      keys.nextCursor ? h("p", { class: "hint", text: "The first 100 keys are shown: find any other by its prefix on the Tenants page." }) : null,
    ),
    await usageSection("tenants", id),
    h("section", { "aria-labelledby": "edit-title" }, h("h2", { id: "edit-title", text: "Edit tenant" }), edit),
    h("section", { "aria-labelledby": "delete-title" }, h("h2", { id: "delete-title", text: "Delete tenant" }), remove),
  ];
}

async function keyPage(path) {
  const here = location.hash;
  const id = decodeURIComponent(path);
  const key = (await api("GET", `/admin/v1/keys/${enc(id)}`)).data;
  const flash = takeFlash(`key:${id}`);
  const edit = editForm("Edit key", keyFields(key), key, keyBody, `/admin/v1/keys/${enc(id)}`, "Key saved.");
  const roll = form("Roll key", [field("Overlap seconds", "overlapSeconds", input("3600", { inputmode: "numeric" }), "How long the current secret keeps working beside the new one: 0 to 2592000 (30 days).")], "Roll", async (v) => {
    const rolled = await api("POST", `/admin/v1/keys/${enc(id)}/roll`, { overlapSeconds: number(v.overlapSeconds) });
    state.flash = { target: `key:${id}`, title: `Key ${rolled.data.name} rolled`, secret: rolled.data.secret };
    await redraw(here);
  });
  const revoke = actionButton("Revoke", async () => {
    if (!(await confirmAction(`Revoke ${key.name}?`, "Its every secret is refused from now on, on every instance. This cannot be undone.", "Revoke"))) return;
    await api("POST", `/admin/v1/keys/${enc(id)}/revoke`);
    await redraw(here, "Key revoked.");
  }, { class: "danger" });
  const remove = actionButton("Delete", async () => {
    if (!(await confirmAction(`Delete ${key.name}?`, "The key is deleted for good: each of its secrets is refused from now on, and it leaves every list. Its audit entries stay.", "Delete"))) return;
    await api("DELETE", `/admin/v1/keys/${enc(id)}`);
    if (location.hash !== here) return;
    announce(`Key ${key.name} deleted.`);
    location.hash = `#/tenants/${enc(key.tenantId)}`;
  }, { class: "danger" });
  const rolledRows = key.rolledSecrets.map((earlier) => [h("code", { text: earlier.prefix }), when(earlier.expiresAt), when(earlier.lastUsedAt)]);
  return [
    h("p", { class: "crumbs" }, link("#/tenants", "Tenants"), " / ", link(`#/tenants/${enc(key.tenantId)}`, key.tenantId), " / ", key.name),
    heading(key.name),
    summary([
      ["Id", h("code", { text: key.id })],
      ["Tenant", link(`#/tenants/${enc(key.tenantId)}`, key.tenantId)],
      ["Prefix", h("code", { text: key.prefix })],
      ["State", keyState(key)],
      ["Scopes", listText(key.scopes)],
      ["Allowed origins", listText(key.allowedOrigins)],
      ["Expires", when(key.expiresAt)],
      ["Rate limit", rateText(key.rateLimit)],
      ["Quota", quotaText(key.quota)],
      ["Last used", when(key.lastUsedAt)],
      ["Created", when(key.createdAt)],
      ["Revoked", when(key.revokedAt)],
      ["Metadata", key.meta ? h("code", { text: JSON.stringify(key.meta) }) : "—"],
    ]),
    flash ? secretPanel(flash) : null,
    rolledRows.length ? table("Earlier secrets still working", ["Prefix", "Works until", "Last used"], rolledRows, "") : null,
    await usageSection("keys", id),
    h("section", { "aria-labelledby": "edit-title" }, h("h2", { id: "edit-title", text: "Edit key" }), edit),
    key.revokedAt ? null : h("section", { "aria-labelledby": "roll-title" }, h("h2", { id: "roll-title", text: "Roll key" }), h("p", { text: "A new secret for the same key: its limits, quota and history stay." }), roll),
    h("section", { "aria-labelledby": "end-title" }, h("h2", { id: "end-title", text: "Revoke or delete" }), h("div", { class: "toolbar" }, key.revokedAt ? null : revoke, remove)),
  ];
}

async function signingKeysPage() {
  const here = location.hash;
  const keys = await api("GET", "/admin/v1/signing-keys");
  const rotate = actionButton("Rotate", async () => {
    await api("POST", "/admin/v1/signing-keys");
    await redraw(here, "A new signing key signs from now on; the earlier ones still verify.");
  }, { class: "primary" });
  const rows = keys.data.map((key) => [
    h("code", { text: key.kid }),
    key.algorithm,
    key.signing ? "yes: signs new sessions" : "no",
    when(key.createdAt),
    when(key.retiredAt),
    key.retiredAt
      ? "—"
      : actionButton("Retire", async () => {
          if (!(await confirmAction(`Retire ${key.kid}?`, "Sessions it signed are refused from now on.", "Retire"))) return;
          await api("POST", `/admin/v1/signing-keys/${enc(key.kid)}/retire`);
          await redraw(here, `${key.kid} retired.`);
        }),
  ]);
  return [
    heading("Signing keys"),
    h("p", { text: "The keys that sign browser session tokens. Rotate to sign with a new one; retire an old one once its sessions have run out (an hour)." }),
    h("div", { class: "toolbar" }, rotate),
    table("Signing keys", ["Kid", "Algorithm", "Signing", "Created", "Retired", ""], rows, "No signing keys."),
  ];
}

async function auditPage(query) {
  const params = new URLSearchParams(query);
  const filters = ["tenantId", "targetId", "action", "since", "until"];
  const listed = new URLSearchParams({ limit: "50" });
  for (const name of [...filters, "cursor"]) if (params.get(name)) listed.set(name, params.get(name));
  const filter = form("Filter the audit log", [
    field("Tenant id", "tenantId", input(params.get("tenantId") || "")),
    field("Target id", "targetId", input(params.get("targetId") || ""), "A tenant, key or signing key id."),
    field("Action", "action", select([["", "any"], ...ACTIONS.map((a) => [a, a])], params.get("action") || "")),
    field("Since", "since", input(params.get("since") || ""), "RFC 3339, e.g. 2026-12-01T00:00:00Z"),
    field("Until", "until", input(params.get("until") || "")),
  ], "Filter", async (v) => {
    const chosen = new URLSearchParams();
    for (const name of filters) if (v[name].trim()) chosen.set(name, v[name].trim());
    // Checked before the page changes, so a bad filter is shown beside its field.
    await api("GET", `/admin/v1/audit?${chosen}&limit=1`);
    const target = `#/audit${chosen.size ? `?${chosen}` : ""}`;
    if (location.hash === target) await render();
    else location.hash = target;
  }, { class: "filters" });
  let page;
  try {
    page = await api("GET", `/admin/v1/audit?${listed}`);
  } catch (error) {
    showError(filter, error);
    page = { data: [], nextCursor: null };
  }
  const rows = page.data.map((entry) => [
    when(entry.at),
    entry.actor,
    entry.action,
    entry.tenantId ? link(`#/tenants/${enc(entry.tenantId)}`, entry.tenantId) : "—",
    entry.targetId ? h("code", { text: entry.targetId }) : "—",
    h("details", {}, h("summary", { text: "Before and after" }), h("pre", { text: `before: ${JSON.stringify(entry.before, null, 2)}\nafter: ${JSON.stringify(entry.after, null, 2)}` })),
  ]);
  return [
    heading("Audit log"),
    filter,
    table("Audit log, newest first", ["At", "Actor", "Action", "Tenant", "Target", "Change"], rows, "No entry matches."),
    pager("#/audit", params, page.nextCursor),
  ];
}

// ---- usage --------------------------------------------------------------------------------

/** Requests per hour over 48 hours and per day over 31 days, as a chart and as a table. */
async function usageSection(kind, id) {
  const now = Date.now();
  const hourEnd = Math.floor(now / HOUR) * HOUR + HOUR;
  const dayEnd = Math.floor(now / DAY) * DAY + DAY;
  const spans = [
    { title: "Requests per hour, last 48 hours (UTC)", granularity: "hour", step: HOUR, slots: 48, end: hourEnd, unit: "Hour" },
    { title: "Requests per day, last 31 days (UTC)", granularity: "day", step: DAY, slots: 31, end: dayEnd, unit: "Day" },
  ];
  const parts = await Promise.all(
    spans.map(async (span) => {
      const from = new Date(span.end - span.slots * span.step).toISOString().replace(/\.\d+Z$/, "Z");
      const to = new Date(span.end).toISOString().replace(/\.\d+Z$/, "Z");
      const answer = await api("GET", `/admin/v1/${kind}/${enc(id)}/usage?${new URLSearchParams({ from, to, granularity: span.granularity })}`);
      return usageFigure(span, answer.data);
    }),
  );
  return h("section", { "aria-labelledby": "usage-title", class: "usage" }, h("h2", { id: "usage-title", text: "Usage" }), parts);
}

function outcomesOf(buckets) {
  const seen = new Set(buckets.flatMap((bucket) => Object.keys(bucket.outcomes)));
  const known = OUTCOME_ORDER.filter((outcome) => seen.has(outcome));
  return [...known, ...[...seen].filter((outcome) => !OUTCOME_ORDER.includes(outcome)).sort()];
}

function usageFigure(span, buckets) {
  const id = nextId("usage");
  const outcomes = outcomesOf(buckets);
  const colour = (outcome) => OUTCOME_COLOURS[outcomes.indexOf(outcome) % OUTCOME_COLOURS.length];
  const byStart = new Map(buckets.map((bucket) => [Date.parse(bucket.start), bucket]));
  const total = buckets.reduce((sum, bucket) => sum + bucket.requests, 0);
  const label = (start) => (span.granularity === "hour" ? when(new Date(start).toISOString()).slice(5, 16) : new Date(start).toISOString().slice(0, 10));
  const rows = buckets.map((bucket) => [label(Date.parse(bucket.start)), String(bucket.requests), ...outcomes.map((outcome) => String(bucket.outcomes[outcome] || 0))]);
  return h(
    "div",
    { class: "usage-span", role: "group", "aria-labelledby": id },
    h("h3", { id, text: span.title }),
    h("div", { class: "usage-body" },
      chart(span, byStart, outcomes, colour, total, label),
      table(`${span.title}: requests by outcome`, [span.unit, "Requests", ...outcomes], rows, `No requests in this span.`),
    ),
  );
}

/** Stacked bars, one per slot, in an SVG drawn here: no chart library to ship or learn. */
function chart(span, byStart, outcomes, colour, total, label) {
  const width = 480;
  const height = 160;
  const left = 36;
  const bottom = 20;
  const plot = height - bottom - 6;
  const slot = (width - left) / span.slots;
  const max = Math.max(1, ...[...byStart.values()].map((bucket) => bucket.requests));
  const bars = [];
  for (let i = 0; i < span.slots; i++) {
    const start = span.end - (span.slots - i) * span.step;
    const bucket = byStart.get(start);
    if (!bucket) continue;
    let y = height - bottom;
    for (const outcome of outcomes) {
      const count = bucket.outcomes[outcome] || 0;
      if (!count) continue;
      const barHeight = (count / max) * plot;
      y -= barHeight;
      bars.push(svg("rect", { x: (left + i * slot + 1).toFixed(1), y: y.toFixed(1), width: Math.max(1, slot - 2).toFixed(1), height: barHeight.toFixed(1), fill: colour(outcome) }, svg("title", {}, document.createTextNode(`${label(start)}: ${outcome} ${count}`))));
    }
  }
  const axis = [
    svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#4a5568" }),
    svg("text", { x: left - 4, y: 12, "text-anchor": "end", class: "tick" }, document.createTextNode(String(max))),
    svg("text", { x: left - 4, y: height - bottom, "text-anchor": "end", class: "tick" }, document.createTextNode("0")),
    svg("text", { x: left, y: height - 4, class: "tick" }, document.createTextNode(label(span.end - span.slots * span.step))),
    svg("text", { x: width, y: height - 4, "text-anchor": "end", class: "tick" }, document.createTextNode(label(span.end - span.step))),
  ];
  const sums = outcomes.map((outcome) => `${outcome} ${[...byStart.values()].reduce((sum, bucket) => sum + (bucket.outcomes[outcome] || 0), 0)}`);
  const description = `${total} requests${sums.length ? `: ${sums.join(", ")}` : ""}`;
  const legend = outcomes.length
    ? h("ul", { class: "legend" }, outcomes.map((outcome) => h("li", {}, h("span", { class: "swatch", "data-colour": colour(outcome) }), outcome)))
    : null;
  const figure = h("figure", { class: "chart" },
    svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${span.title}: ${description}` }, axis, bars),
    h("figcaption", { text: description }),
    legend,
  );
  // Swatch colours set through the CSSOM: the policy allows no inline style attribute.
  for (const swatch of figure.querySelectorAll(".swatch")) swatch.style.backgroundColor = swatch.dataset.colour;
  return figure;
}

// ---- sign-in and routing ------------------------------------------------------------------

function signInPage(message) {
  const token = h("input", { type: "password", autocomplete: "off", spellcheck: "false" });
  const element = form("Sign in", [field("Admin token", "token", token, "Kept in this tab only, until you sign out or close it.")], "Sign in", async (v) => {
    const tried = v.token.trim();
    await api("GET", "/admin/v1/tenants?limit=1", undefined, tried);
    state.token = tried;
    sessionStorage.setItem(TOKEN_KEY, tried);
    await render();
  });
  return [heading("Sign in"), message ? h("p", { class: "notice", role: "alert", text: message }) : null, element];
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.flash = null;
  state.signOutMessage = message;
  render();
}

const ROUTES = [
  [/^#\/tenants(?:\?(.*))?$/, tenantsPage],
  [/^#\/tenants\/([^/?]+)$/, tenantPage],
  [/^#\/keys\/([^/?]+)$/, keyPage],
  [/^#\/signing-keys$/, signingKeysPage],
  [/^#\/audit(?:\?(.*))?$/, auditPage],
];

async function render() {
  const main = document.getElementById("main");
  const nav = document.getElementById("nav");
  const seq = ++state.renders;
  // Busy until this page is drawn: a screen reader waits, and so can the e2e walk, which reads
  // a page only once `data-drawn` names the address it shows.
  main.setAttribute("aria-busy", "true");
  const mount = (nodes) => {
    if (seq !== state.renders) return; // a later navigation won
    main.removeAttribute("aria-busy");
    main.dataset.drawn = location.hash;
    main.replaceChildren(h("p", { id: "status", role: "status", class: "status" }), ...nodes.filter(Boolean));
    main.querySelector("h1")?.focus();
  };
  if (!state.token) {
    nav.hidden = true;
    const message = state.signOutMessage;
    state.signOutMessage = null;
    mount(signInPage(message));
    return;
  }
  nav.hidden = false;
  const hash = location.hash || "#/tenants";
  for (const item of nav.querySelectorAll("a")) {
    if (hash.startsWith(item.getAttribute("href"))) item.setAttribute("aria-current", "page");
    else item.removeAttribute("aria-current");
  }
  const route = ROUTES.map(([pattern, page]) => [hash.match(pattern), page]).find(([match]) => match);
  if (!route) {
    location.hash = "#/tenants";
    return;
  }
  const [match, page] = route;
  const announced = document.getElementById("status")?.textContent;
  try {
    const nodes = await page(...match.slice(1));
    mount(nodes);
  } catch (error) {
    if (!state.token) return; // signed out by the refusal itself
    mount([heading("Something went wrong"), h("p", { class: "notice", role: "alert", text: error.message }), link("#/tenants", "Back to the tenants")]);
  }
  if (announced) announce(announced);
}

window.addEventListener("hashchange", () => render());
document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));
render();
