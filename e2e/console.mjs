// Walks the admin console (SPEC §15) in headless Chromium as an operator would, by the
// accessible names the contract fixes, and prints what it saw as JSON on stdout.
// tests/it/console.rs starts keygate and makes every assertion; this file only drives the
// browser, calls the public listener with the secrets the console showed (as a customer's
// server would), and takes the screenshots docs/console.md shows.
//
// usage: node console.mjs '{"console": URL, "public": URL, "adminToken": …, "readToken": …, "shots": DIR}'
import { chromium } from "playwright-core";

const args = JSON.parse(process.argv[2] || "{}");
const out = { requests: [], pageErrors: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

/** A customer's server calling the public listener with a secret: status and error code. */
async function call(secret) {
  const response = await fetch(`${args.public}/api/v1/orders`, { headers: { Authorization: `Bearer ${secret}` } });
  const body = await response.json().catch(() => null);
  return { status: response.status, code: body?.error?.code ?? null };
}

try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(args.console).origin });
  context.on("request", (request) => out.requests.push(request.url()));
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("console", (message) => {
    // The API's refusals the walk provokes are answers, not errors of the page.
    const refusal = message.location().url.includes("/admin/v1/") && /status of 4\d\d/.test(message.text());
    if (message.type() === "error" && !refusal) out.pageErrors.push(`${message.text()} (${message.location().url})`);
  });
  page.on("pageerror", (error) => out.pageErrors.push(String(error)));

  // A page is read once it is drawn for the address shown (console.js marks it), not while
  // the page it replaces, which may have the same heading, is still there.
  const drawn = () =>
    page.waitForFunction(() => {
      const main = document.getElementById("main");
      return !main.hasAttribute("aria-busy") && main.dataset.drawn === location.hash;
    });
  const h1 = async (name) => {
    await page.getByRole("heading", { level: 1, name, exact: true }).waitFor();
    await drawn();
  };
  const form = (name) => page.getByRole("form", { name, exact: true });
  const button = (name, within = page) => within.getByRole("button", { name, exact: true });
  const label = (name, within = page) => within.getByLabel(name, { exact: true });
  const text = async (locator) => (await locator.filter({ hasText: /\S/ }).first().textContent()).trim();
  const fieldError = (within, path) => text(within.locator(`.field[data-path="${path}"] .field-error`));
  const confirm = async (name) => button(name, page.getByRole("dialog")).click();
  const nav = (name) => page.getByRole("navigation", { name: "Console" }).getByRole("link", { name, exact: true }).click();

  /** Each width, full page: the screenshots docs/console.md shows. */
  async function shoot(name) {
    if (!args.shots) return;
    for (const width of [1400, 400]) {
      await page.setViewportSize({ width, height: 900 });
      await page.screenshot({ path: `${args.shots}/${name}-${width}.png`, fullPage: true });
    }
    await page.setViewportSize({ width: 1400, height: 900 });
  }

  // Sign in, from the keyboard: a wrong token first.
  await page.goto(args.console);
  await h1("Sign in");
  await page.keyboard.press("Tab");
  out.focusedFirst = await page.evaluate(() => document.activeElement.labels?.[0]?.textContent ?? document.activeElement.tagName);
  await page.keyboard.type("kgadmin_not-the-token");
  await page.keyboard.press("Enter");
  out.wrongToken = await text(form("Sign in").getByRole("alert"));
  await label("Admin token").fill(args.adminToken);
  await page.keyboard.press("Enter");
  await h1("Tenants");
  out.tokenInLocalStorage = await page.evaluate(() => Object.keys(localStorage).length);
  out.cookies = (await context.cookies()).length;
  out.urlAfterSignIn = page.url();

  // A tenant: a bad id is named beside its field, then a good one.
  await button("New tenant").click();
  let created = form("New tenant");
  await label("Id", created).fill("acme corp!");
  await label("Name", created).fill("Acme Corp");
  await label("Modules", created).fill("orders, billing");
  await label("Quota", created).fill("1000");
  await button("Create tenant", created).click();
  out.badTenantId = await fieldError(created, "id");
  out.badTenantIdInvalid = await label("Id", created).getAttribute("aria-invalid");
  await label("Id", created).fill("acme");
  await button("Create tenant", created).click();
  await h1("Acme Corp");
  out.tenantSummary = await text(page.locator(".summary"));

  // A key: the secret shown once, copied, working against the public listener.
  await button("New key").click();
  created = form("New key");
  await label("Name", created).fill("web");
  await label("Scopes", created).fill("orders:read\norders:write");
  await button("Create key", created).click();
  const secret = await label("Secret").inputValue();
  out.secret = secret;
  await button("Copy").click();
  out.clipboard = await page.evaluate(() => navigator.clipboard.readText());
  out.firstCalls = [await call(secret), await call(secret), await call(secret)];
  await page.reload();
  await h1("Acme Corp");
  out.secretFieldsAfterReload = await label("Secret").count();
  out.secretInPageAfterReload = (await page.content()).includes(secret);

  // A second key, for the read token to try rolling and revoking.
  const newKey = async (name) => {
    await button("New key").click();
    created = form("New key");
    await label("Name", created).fill(name);
    await label("Scopes", created).fill("orders:read");
    await button("Create key", created).click();
  };
  await newKey("mobile");
  await page.getByText("Key mobile created", { exact: true }).waitFor();
  await drawn();

  // A third, to delete, made while the operator moves on: its answer, held back until they are
  // typing on the page they moved to, neither redraws that page nor loses the secret, which
  // waits for the tenant's page.
  const keysOfAcme = /\/admin\/v1\/tenants\/acme\/keys$/;
  let release;
  const held = new Promise((resolve) => (release = resolve));
  await page.route(keysOfAcme, async (route) => {
    if (route.request().method() === "POST") await held;
    await route.continue();
  });
  await newKey("old-integration");
  await page.getByRole("link", { name: "web", exact: true }).click();
  await h1("web");
  let edit = form("Edit key");
  await label("Allowed origins", edit).fill("https://app.example.com not-an-origin");
  await page.evaluate(() => {
    window.walkRedraws = 0;
    new MutationObserver(() => window.walkRedraws++).observe(document.getElementById("main"), { childList: true });
  });
  const answered = page.waitForResponse((response) => keysOfAcme.test(response.url()) && response.request().method() === "POST");
  release();
  await answered;
  await page.unroute(keysOfAcme);
  await page.waitForTimeout(500);
  out.whileElsewhere = {
    redraws: await page.evaluate(() => window.walkRedraws),
    typed: await label("Allowed origins", edit).inputValue(),
  };
  await page.getByRole("link", { name: "acme", exact: true }).first().click();
  await h1("Acme Corp");
  const panel = page.locator(".secret-panel");
  if (await panel.count()) {
    out.whileElsewhere.title = await text(panel.locator("h2"));
    out.whileElsewhere.secret = await label("Secret").inputValue();
  }

  // Edit a key: a bad origin is named beside its field; metadata saved.
  await page.getByRole("link", { name: "web", exact: true }).click();
  await h1("web");
  edit = form("Edit key");
  await label("Allowed origins", edit).fill("https://app.example.com not-an-origin");
  await button("Save", edit).click();
  out.badOrigin = await fieldError(edit, "allowedOrigins");
  await label("Allowed origins", edit).fill("https://app.example.com");
  await label("Metadata", edit).fill('{"crmId": "C-1042"}');
  await button("Save", edit).click();
  await page.getByText('{"crmId":"C-1042"}').waitFor();
  out.keySummaryAfterEdit = await text(page.locator(".summary"));

  // Roll with an overlap: both secrets work.
  await label("Overlap seconds").fill("3600");
  await button("Roll").click();
  const rolled = await label("Secret").inputValue();
  out.rolledSecretDiffers = rolled !== secret;
  out.afterRoll = { earlier: await call(secret), current: await call(rolled) };
  await page.reload();
  await h1("web");
  out.earlierSecrets = await page.getByRole("table", { name: "Earlier secrets still working" }).locator("tbody tr").count();

  // Usage: the requests just made, in the chart and the table, once the instance has flushed.
  const hourly = page.getByRole("table", { name: "Requests per hour, last 48 hours (UTC): requests by outcome" });
  const rows = (table) => table.locator("tbody tr").evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  const made = [...out.firstCalls, out.afterRoll.earlier, out.afterRoll.current].length;
  const shown = async () => ((await hourly.count()) ? (await rows(hourly)).reduce((sum, row) => sum + Number(row[1]), 0) : 0);
  for (let tries = 0; tries < 40 && (await shown()) < made; tries++) {
    await page.waitForTimeout(500);
    await page.reload();
    await h1("web");
  }
  const heads = (table) => table.locator("thead th").allTextContents();
  out.usage = {
    hourHead: await heads(hourly),
    hourRows: await rows(hourly),
    dayHead: await heads(page.getByRole("table", { name: "Requests per day, last 31 days (UTC): requests by outcome" })),
    dayRows: await rows(page.getByRole("table", { name: "Requests per day, last 31 days (UTC): requests by outcome" })),
    chartLabels: await page.locator(".usage svg[role=img]").evaluateAll((charts) => charts.map((chart) => chart.getAttribute("aria-label"))),
    bars: await page.locator(".usage svg rect").count(),
  };
  out.keyPageUrl = page.url();
  await shoot("key");

  // Revoke, confirmed in the dialog: the next request is refused.
  await button("Revoke").click();
  out.revokeDialog = await text(page.getByRole("dialog"));
  await confirm("Revoke");
  await page.getByText("Key revoked.").waitFor();
  out.keyStateAfterRevoke = await text(page.locator(".summary dd").nth(3));
  out.afterRevoke = { earlier: await call(secret), current: await call(rolled) };

  // Delete, the dialog answered from the keyboard.
  await page.getByRole("link", { name: "acme", exact: true }).first().click();
  await h1("Acme Corp");
  await page.getByRole("link", { name: "old-integration", exact: true }).click();
  await h1("old-integration");
  await button("Delete").click();
  out.focusInDialog = await page.evaluate(() => document.activeElement.textContent);
  await page.keyboard.press("Tab");
  out.focusAfterTab = await page.evaluate(() => document.activeElement.textContent);
  await page.keyboard.press("Enter");
  await h1("Acme Corp");
  out.keysAfterDelete = await page.getByRole("table", { name: "Keys of acme" }).locator("tbody tr td:first-child").allTextContents();

  // The tenant: a quota raised, its use shown.
  edit = form("Edit tenant");
  await label("Quota", edit).fill("2000");
  await label("Subscription", edit).selectOption("past_due");
  await button("Save", edit).click();
  await page.getByText("Tenant saved.").waitFor();
  out.tenantSummaryAfterEdit = await text(page.locator(".summary"));
  await shoot("tenant");

  // Signing keys: rotate, then retire the earlier one.
  await nav("Signing keys");
  await h1("Signing keys");
  const signing = page.getByRole("table", { name: "Signing keys" });
  out.signingBefore = await signing.locator("tbody tr").count();
  await button("Rotate").click();
  await page.getByText("A new signing key signs from now on").waitFor();
  out.signingAfterRotate = await signing.locator("tbody tr").count();
  await signing.locator("tbody tr", { hasText: "no" }).first().getByRole("button", { name: "Retire" }).click();
  await confirm("Retire");
  await page.getByText("retired.").waitFor();
  out.signingRows = await rows(signing);
  await shoot("signing-keys");

  // The audit log: every change listed; a filter; a bad filter named beside its field.
  await nav("Audit log");
  await h1("Audit log");
  const audit = page.getByRole("table", { name: "Audit log, newest first" });
  out.auditActions = await audit.locator("tbody tr td:nth-child(3)").allTextContents();
  out.auditActors = [...new Set(await audit.locator("tbody tr td:nth-child(2)").allTextContents())];
  await shoot("audit");
  let filter = form("Filter the audit log");
  await label("Since", filter).fill("yesterday");
  await button("Filter", filter).click();
  out.badSince = await fieldError(filter, "since");
  await label("Since", filter).fill("");
  await label("Action", filter).selectOption("key.revoke");
  await button("Filter", filter).click();
  await page.waitForURL(/action=key.revoke/);
  await h1("Audit log");
  out.filteredActions = await audit.locator("tbody tr td:nth-child(3)").allTextContents();

  await nav("Tenants");
  await h1("Tenants");
  await page.getByRole("table", { name: "Tenants" }).waitFor();
  await shoot("tenants");

  // A read token sees everything and changes nothing: each change answers the API's refusal.
  await button("Sign out").click();
  await h1("Sign in");
  out.tokenAfterSignOut = await page.evaluate(() => sessionStorage.length);
  await label("Admin token").fill(args.readToken);
  await button("Sign in").click();
  await h1("Tenants");
  const refusals = {};
  const refusal = async (name, within) => {
    refusals[name] = await text(within.getByRole("alert"));
  };
  await button("New tenant").click();
  created = form("New tenant");
  await label("Id", created).fill("readers");
  await label("Name", created).fill("Readers");
  await button("Create tenant", created).click();
  await refusal("createTenant", created);
  await page.getByRole("link", { name: "acme", exact: true }).click();
  await h1("Acme Corp");
  edit = form("Edit tenant");
  await label("Name", edit).fill("Acme Renamed");
  await button("Save", edit).click();
  await refusal("saveTenant", edit);
  await button("New key").click();
  created = form("New key");
  await label("Name", created).fill("sneaky");
  await button("Create key", created).click();
  await refusal("createKey", created);
  await button("Delete").click();
  await confirm("Delete");
  await refusal("deleteTenant", page.locator(".action", { has: button("Delete") }));
  await page.getByRole("link", { name: "mobile", exact: true }).click();
  await h1("mobile");
  edit = form("Edit key");
  await label("Scopes", edit).fill("orders:write");
  await button("Save", edit).click();
  await refusal("saveKey", edit);
  await button("Roll").click();
  await refusal("rollKey", form("Roll key"));
  await button("Revoke").click();
  await confirm("Revoke");
  await refusal("revokeKey", page.locator(".action", { has: button("Revoke") }));
  await button("Delete").click();
  await confirm("Delete");
  await refusal("deleteKey", page.locator(".action", { has: button("Delete") }));
  await nav("Signing keys");
  await h1("Signing keys");
  await button("Rotate").click();
  await refusal("rotate", page.locator(".action", { has: button("Rotate") }));
  await button("Retire").click();
  await confirm("Retire");
  await refusal("retire", page.locator(".action", { has: button("Retire") }));
  out.readRefusals = refusals;
} catch (error) {
  out.error = String(error.stack || error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
