// The dashboard at `/`, driven in chromium against a real `nodai serve`:
// sign-in, keys (create with the secret shown once, search, pages, the
// Live/Revoked/All filter, edit, usage charts, revoke, rotate), workflows,
// webhooks and their deliveries, keyboard use and a 360 px wide screen;
// customers (create, search, edit, delete), a key's customer and named
// limits, tokens in the usage charts, prepaid credits (balance, top
// up, void, and a top-up sent twice granted once), and the usage
// explorer (usage events grouped by workflow, its CSV download, and the
// server's detail for a range it refuses). One server and one browser for
// the file; each test opens its own page (fresh sessionStorage).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { admin, launchBrowser, newPage, screenshot, startServer, waitFor } from "./harness.mjs";
import { listen } from "../../../sdk/typescript/test/support/http.js";
import * as esbuild from "esbuild";

const WORKFLOW = "echo";
const PRICE = 0.0025;
const KEY_RE = /nk_[0-9a-f]{64}/;

let server;
let browser;

before(async () => {
  // Failed webhook deliveries wait an hour, so only the Retry button resends them.
  server = await startServer({
    env: { NODAI_WEBHOOK_ALLOW_PRIVATE: "1", NODAI_WEBHOOK_RETRY_SCHEDULE: "1h" },
  });
  browser = await launchBrowser();
  const wf = await admin(server, "POST", "/api/v1/workflows", {
    id: WORKFLOW,
    name: "Echo",
    upstream_url: "builtin:echo",
    price_per_request: PRICE,
  });
  assert.equal(wf.status, 201, JSON.stringify(wf.body));
  // Two keys with some history, for the keys page's picture.
  const web = await createKey({ name: "Web app (production)", owner: "acme", rate_limit_per_hour: 1000, cost_limit_per_month: 50 });
  for (let i = 0; i < 4; i++) assert.equal((await query(web.key)).status, 200);
  await createKey({ name: "Staging", owner: "acme", active: false });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A query with `key` (from the test itself, no Origin). */
async function query(key, workflow = WORKFLOW) {
  const res = await fetch(`${server.baseUrl}/api/v1/workflows/${workflow}/query`, {
    method: "POST",
    headers: { "x-api-key": key, "content-type": "application/json" },
    body: JSON.stringify({ input: "hi" }),
  });
  const body = await res.json();
  return { status: res.status, body };
}

async function createKey(body) {
  const res = await admin(server, "POST", "/api/v1/api-keys", body);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

/** A page signed in through the form, on the keys page. */
async function signedIn(options = {}) {
  const page = await newPage(browser, options);
  await page.goto(`${server.baseUrl}/`);
  await page.getByLabel("Admin token").fill(server.adminToken);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { level: 1, name: "API keys" }).waitFor();
  return page;
}

/** The accessible summary (aria-label) of chart `id`. */
const chartSummary = (page, id) => page.locator(`svg[data-chart="${id}"]`).getAttribute("aria-label");

/** Every file under `dir`, as bytes. */
async function* filesUnder(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* filesUnder(path);
    else if (entry.isFile()) yield [path, await readFile(path)];
  }
}

const html = (page) => page.evaluate(() => document.documentElement.outerHTML);

test("sign-in: a wrong token is refused, the right one opens the keys page and stays in sessionStorage only", async () => {
  // The refused token is a 401 that chromium logs on its own.
  const page = await newPage(browser, { allow: [/status of 401/] });
  await page.goto(`${server.baseUrl}/`);
  await page.getByRole("heading", { name: "Sign in to the dashboard" }).waitFor();
  await screenshot(page, "dashboard-signin");
  // The token is for this tab only: nothing invites a password manager to keep it.
  assert.equal(await page.getByLabel("Admin token").getAttribute("type"), "password");
  assert.equal(await page.getByLabel("Admin token").getAttribute("autocomplete"), "off");
  assert.equal(await page.locator('input[autocomplete="username"], input[name="username"]').count(), 0);

  await page.getByLabel("Admin token").fill("not-the-admin-token-at-all");
  await page.getByRole("button", { name: "Sign in" }).click();
  const alert = page.getByRole("alert").filter({ hasText: "not accepted" });
  await alert.waitFor();
  assert.match(await alert.innerText(), /unauthorized/);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "a refused token is not kept");

  await page.getByLabel("Admin token").fill(server.adminToken);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { level: 1, name: "API keys" }).waitFor();
  const storage = await page.evaluate(() => ({
    session: Object.values(sessionStorage),
    local: Object.values(localStorage),
    cookie: document.cookie,
  }));
  assert.deepEqual(storage.session, [server.adminToken]);
  assert.ok(!storage.local.some((v) => v.includes(server.adminToken)), "the token is not in localStorage");
  assert.ok(!storage.cookie.includes(server.adminToken));

  // A reload keeps the session (same tab) and the place.
  await page.goto(`${server.baseUrl}/#/workflows`);
  await page.reload();
  await page.getByRole("heading", { level: 1, name: "Workflows" }).waitFor();

  // A 401 anywhere signs out, saying why.
  await page.evaluate(() => sessionStorage.setItem(sessionStorage.key(0), "a-token-the-server-no-longer-takes"));
  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByText("You were signed out").waitFor();
  await page.getByLabel("Admin token").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  // Sign out.
  await page.getByLabel("Admin token").fill(server.adminToken);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("Admin token").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.done();
});

test("create key: the plaintext is shown once, then is in neither the page nor the data directory", async () => {
  const page = await signedIn();
  await page.getByRole("link", { name: "Create key" }).click();
  await page.getByRole("heading", { level: 1, name: "Create an API key" }).waitFor();
  await page.getByLabel("Name", { exact: true }).fill("Billing backend");
  await page.getByLabel("Owner (optional)").fill("acme-billing");
  await page.getByLabel("Rate limit per hour").fill("100");
  await page.getByLabel("Cost limit per month (USD)").fill("25");
  await page.getByLabel("Alert thresholds (%)").fill("50, 90");
  await page.getByRole("checkbox", { name: /echo/ }).check();
  await page.getByLabel("Allowed browser origins").fill("https://app.example.com");
  await page.getByRole("button", { name: "Create key" }).click();

  const secret = page.locator(".secret");
  await secret.waitFor();
  const key = (await secret.innerText()).trim();
  assert.match(key, new RegExp(`^${KEY_RE.source}$`));
  await page.getByText("you will not see it again").waitFor();
  const copy = page.getByRole("button", { name: "Copy" });
  await copy.click();
  await page.getByText(/Copied to the clipboard|press Ctrl\+C/).waitFor();
  await screenshot(page, "dashboard-key-created");

  // The key is real, with what the form said.
  assert.equal((await query(key)).status, 200);
  const listed = (await admin(server, "GET", "/api/v1/api-keys?q=Billing%20backend")).body.data;
  assert.equal(listed.length, 1);
  const created = listed[0];
  assert.equal(created.owner, "acme-billing");
  assert.equal(created.rate_limit_per_hour, 100);
  assert.equal(created.cost_limit_per_month, 25);
  assert.deepEqual(created.alert_thresholds, [50, 90]);
  assert.deepEqual(created.workflow_ids, [WORKFLOW]);
  assert.deepEqual(created.allowed_origins, ["https://app.example.com"]);

  await page.getByRole("button", { name: "Done, I have stored it" }).click();
  await page.getByRole("heading", { level: 1, name: "Billing backend" }).waitFor();
  assert.ok(!(await html(page)).includes(key), "dismissed: the plaintext is gone from the DOM");

  await page.goBack();
  await page.getByRole("heading", { level: 1, name: "API keys" }).waitFor();
  await page.getByRole("link", { name: "Billing backend" }).waitFor();
  assert.ok(!(await html(page)).includes(key));
  // Usage loads for all rows at once.
  await page.locator("table.keys-table tbody tr").filter({ hasText: "Billing backend" }).getByText("$0.0025").waitFor();
  await screenshot(page, "dashboard-keys");
  await page.getByRole("link", { name: "Billing backend" }).click();
  await page.getByRole("heading", { level: 1, name: "Billing backend" }).waitFor();
  await page.locator('svg[data-chart="requests-hourly"]').waitFor();
  assert.ok(!(await html(page)).includes(key));
  await page.goForward().catch(() => {});
  await page.goto(`${server.baseUrl}/#/keys/new`);
  await page.getByRole("heading", { level: 1, name: "Create an API key" }).waitFor();
  assert.ok(!(await html(page)).includes(key), "the create page starts empty again");

  const inFiles = [];
  for await (const [path, bytes] of filesUnder(server.dataDir)) {
    if (bytes.includes(Buffer.from(key))) inFiles.push(path);
  }
  assert.deepEqual(inFiles, [], "no file in the data directory holds the plaintext key");
  await page.done();
});

test("keys list: search and cursor pages", async () => {
  for (let i = 1; i <= 22; i++) {
    await createKey({ name: `pager-${String(i).padStart(2, "0")}`, owner: i === 7 ? "Needle Corp" : undefined });
  }
  const page = await signedIn();
  const search = page.getByRole("searchbox", { name: "Search keys" });
  const rows = page.locator("table.keys-table tbody tr");

  await search.fill("needle");
  await waitFor(async () => (await rows.count()) === 1 && (await rows.first().innerText()).includes("pager-07"), {
    what: "the search to find the owner",
  });

  await search.fill("PAGER-");
  await waitFor(async () => (await rows.count()) === 20, { what: "a first page of 20" });
  assert.match(await rows.first().innerText(), /pager-01/);
  await page.getByRole("button", { name: "Next →" }).click();
  await waitFor(async () => (await rows.count()) === 2, { what: "the second page" });
  assert.match(await rows.first().innerText(), /pager-21/);
  assert.ok(await page.getByRole("button", { name: "Next →" }).isDisabled());
  await page.getByRole("button", { name: "← Previous" }).click();
  await waitFor(async () => (await rows.count()) === 20, { what: "back to the first page" });
  assert.ok(await page.getByRole("button", { name: "← Previous" }).isDisabled());

  await search.fill("no-key-is-called-this");
  await page.getByText("No keys match").waitFor();
  await page.done();
});

test("keys list: a key that reached its rate or its cost limit shows At limit", async () => {
  const rate = await createKey({ name: "At-limit rate", rate_limit_per_hour: 2 });
  const cost = await createKey({ name: "At-limit cost", cost_limit_per_month: PRICE });
  const under = await createKey({ name: "At-limit under", rate_limit_per_hour: 3, cost_limit_per_month: 1 });
  for (let i = 0; i < 2; i++) assert.equal((await query(rate.key)).status, 200);
  assert.equal((await query(rate.key)).status, 429);
  assert.equal((await query(cost.key)).status, 200);
  assert.equal((await query(cost.key)).status, 402);
  for (let i = 0; i < 2; i++) assert.equal((await query(under.key)).status, 200);

  const page = await signedIn();
  await page.getByRole("searchbox", { name: "Search keys" }).fill("At-limit");
  const row = (name) => page.locator("table.keys-table tbody tr").filter({ hasText: name });
  // Usage loads after the rows: wait for each row's cost.
  await row("At-limit rate").getByText("$0.005", { exact: true }).waitFor();
  await row("At-limit cost").getByText("$0.0025", { exact: true }).waitFor();
  await row("At-limit under").getByText("$0.005", { exact: true }).waitFor();
  const badge = (name) => row(name).locator(".badge", { hasText: "At limit" });
  assert.match(await badge("At-limit rate").innerText(), /At limit.*rate limit: 2 of 2 requests in the last hour/s);
  assert.match(await badge("At-limit cost").innerText(), /At limit.*cost limit: \$0\.0025 of \$0\.0025 this month/s);
  assert.equal(await badge("At-limit under").count(), 0, "under both limits: no badge");
  await row("At-limit rate").locator(".badge", { hasText: "Active" }).waitFor();
  await page.done();
});

test("detail: editing a limit saves it, and clearing it sends null", async () => {
  const created = await createKey({ name: "Editable", rate_limit_per_hour: 100 });
  // The refused update at the end is a 422 that chromium logs on its own.
  const page = await signedIn({ allow: [/status of 422/] });
  await page.goto(`${server.baseUrl}/#/keys/${created.id}`);
  await page.getByRole("heading", { level: 1, name: "Editable" }).waitFor();

  await page.getByLabel("Rate limit per hour").fill("250");
  await page.getByLabel("Cost limit per month (USD)").fill("12.5");
  await page.getByLabel("Owner (optional)").fill("team-edit");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText(/^Saved at/).waitFor();
  let key = (await admin(server, "GET", `/api/v1/api-keys/${created.id}`)).body;
  assert.equal(key.rate_limit_per_hour, 250);
  assert.equal(key.cost_limit_per_month, 12.5);
  assert.equal(key.owner, "team-edit");
  assert.equal(key.name, "Editable");

  // The form shows the saved values, and emptying a limit clears it.
  assert.equal(await page.getByLabel("Rate limit per hour").inputValue(), "250");
  await page.getByLabel("Rate limit per hour").fill("");
  await page.getByLabel(/^Active/).uncheck();
  await page.getByRole("button", { name: "Save changes" }).click();
  await waitFor(async () => (await admin(server, "GET", `/api/v1/api-keys/${created.id}`)).body.rate_limit_per_hour === null, {
    what: "the rate limit to be cleared",
  });
  key = (await admin(server, "GET", `/api/v1/api-keys/${created.id}`)).body;
  assert.equal(key.rate_limit_per_hour, null);
  assert.equal(key.cost_limit_per_month, 12.5, "untouched fields stay");
  assert.equal(key.active, false);
  await page.locator(".meta").getByText("Inactive", { exact: true }).waitFor();

  // The server's refusal shows its detail and code.
  await page.getByLabel("Allowed browser origins").fill("not an origin");
  await page.getByRole("button", { name: "Save changes" }).click();
  const problem = page.getByRole("alert").filter({ hasText: "validation_error" });
  await problem.waitFor();
  assert.match(await problem.innerText(), /HTTP 422/);
  await page.done();
});

test("detail: a mistyped number is refused, not saved as \"no limit\"", async () => {
  const created = await createKey({ name: "Mistyped", rate_limit_per_hour: 100, cost_limit_per_month: 5 });
  const page = await signedIn();
  await page.goto(`${server.baseUrl}/#/keys/${created.id}`);
  await page.getByRole("heading", { level: 1, name: "Mistyped" }).waitFor();

  const rate = page.getByLabel("Rate limit per hour");
  await rate.fill("");
  await rate.pressSequentially("1e");
  await page.getByRole("button", { name: "Save changes" }).click();
  const problem = page.getByRole("alert").filter({ hasText: "Rate limit" });
  await problem.waitFor();
  assert.equal(await rate.getAttribute("aria-invalid"), "true");
  assert.equal(await page.getByText(/^Saved at/).count(), 0);
  assert.equal((await admin(server, "GET", `/api/v1/api-keys/${created.id}`)).body.rate_limit_per_hour, 100);

  // The same for the cost limit, and for a workflow's price.
  await rate.fill("100");
  const cost = page.getByLabel("Cost limit per month (USD)");
  await cost.fill("");
  await cost.pressSequentially("2e");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByRole("alert").filter({ hasText: "Cost limit" }).waitFor();
  assert.equal((await admin(server, "GET", `/api/v1/api-keys/${created.id}`)).body.cost_limit_per_month, 5);

  await page.goto(`${server.baseUrl}/#/workflows`);
  await page.getByRole("heading", { level: 1, name: "Workflows" }).waitFor();
  await page.getByLabel("ID", { exact: true }).fill("mistyped-price");
  await page.getByLabel("Name", { exact: true }).fill("Mistyped price");
  await page.getByLabel("Upstream URL").fill("builtin:echo");
  await page.getByLabel("Price per request (USD)").pressSequentially("1e");
  await page.getByRole("button", { name: "Register workflow" }).last().click();
  await page.getByRole("alert").filter({ hasText: "Price per request" }).waitFor();
  assert.equal((await admin(server, "GET", "/api/v1/workflows/mistyped-price")).status, 404, "not registered as free");

  // And for its maximum: mistyped, or below the price, it is refused, not saved as "none".
  await page.getByLabel("Price per request (USD)").fill("0.01");
  const max = page.getByLabel("Max cost per request (USD, optional)");
  await max.pressSequentially("2e");
  await page.getByRole("button", { name: "Register workflow" }).last().click();
  await page.getByRole("alert").filter({ hasText: "Max cost per request: an amount" }).waitFor();
  assert.equal(await max.getAttribute("aria-invalid"), "true");
  await max.fill("0.005");
  await page.getByRole("button", { name: "Register workflow" }).last().click();
  await page.getByRole("alert").filter({ hasText: "at least the price" }).waitFor();
  assert.equal((await admin(server, "GET", "/api/v1/workflows/mistyped-price")).status, 404, "not registered without a maximum");
  await page.done();
});

test("detail: a refresh that started before Save does not undo it, nor wipe unsaved edits", async () => {
  const created = await createKey({ name: "Racing", rate_limit_per_hour: 100 });
  const page = await signedIn();
  const keyPath = `/api/v1/api-keys/${created.id}`;
  await page.goto(`${server.baseUrl}/#/keys/${created.id}`);
  await page.getByRole("heading", { level: 1, name: "Racing" }).waitFor();
  await page.locator('svg[data-chart="requests-hourly"]').waitFor();

  // Hold the next background GET of the key (answered as it was then) until after the save.
  let holding = false;
  let held;
  let heldRequest;
  let intercepted;
  const release = new Promise((resolve) => (intercepted = resolve));
  await page.route(
    (url) => url.pathname === keyPath,
    async (route) => {
      if (route.request().method() !== "GET" || holding) return route.continue();
      holding = true;
      heldRequest = route.request();
      const response = await route.fetch();
      held = new Promise((resolve) => intercepted(resolve)).then(() => route.fulfill({ response }));
    },
  );
  // Resolves with the function that lets the held answer through.
  const letThrough = await release;
  const rate = page.getByLabel("Rate limit per hour");
  await rate.fill("250");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText(/^Saved at/).waitFor();
  // The next poll's answer arrives after the page has handled the held one.
  const nextPoll = page.waitForResponse(
    (r) => new URL(r.url()).pathname === keyPath && r.request().method() === "GET" && r.request() !== heldRequest,
    { timeout: 12_000 },
  );
  letThrough();
  await held;
  await nextPoll;
  assert.equal(await rate.inputValue(), "250", "the late refresh did not bring back the old limit");
  assert.match(await page.locator(".stats").innerText(), /of 250 \/ hour/);
  await page.unrouteAll();

  // Changed elsewhere while the form has edits: the edits stay, and a notice says so.
  await page.getByLabel("Owner (optional)").fill("typed-not-saved");
  assert.equal((await admin(server, "PUT", keyPath, { rate_limit_per_hour: 300 })).status, 200);
  await page.getByText("changed elsewhere").waitFor({ timeout: 12_000 });
  assert.equal(await page.getByLabel("Owner (optional)").inputValue(), "typed-not-saved");
  assert.equal(await rate.inputValue(), "250");
  // Saving sends only the user's change, so the other one stays.
  await page.getByRole("button", { name: "Save changes" }).click();
  await waitFor(async () => (await admin(server, "GET", keyPath)).body.owner === "typed-not-saved", { what: "the save" });
  await page.getByText(/^Saved at/).waitFor();
  const key = (await admin(server, "GET", keyPath)).body;
  assert.equal(key.owner, "typed-not-saved");
  assert.equal(key.rate_limit_per_hour, 300);
  await waitFor(async () => (await rate.inputValue()) === "300", { what: "the form to show the saved key" });
  assert.equal(await page.getByText("changed elsewhere").count(), 0);
  await page.done();
});

test("usage: a limit of 0 reads as 100% used", async () => {
  const created = await createKey({ name: "Blocked", rate_limit_per_hour: 0, cost_limit_per_month: 0 });
  const page = await signedIn();
  await page.goto(`${server.baseUrl}/#/keys/${created.id}`);
  await page.getByRole("heading", { level: 1, name: "Blocked" }).waitFor();
  for (const name of ["Rate limit used", "Monthly cost limit used"]) {
    assert.equal(await page.getByRole("meter", { name }).getAttribute("aria-valuetext"), "100% used", name);
  }
  assert.match(await chartSummary(page, "cost-month"), /\(100%\)/);
  await page.done();
});

test("cost axis: micro-dollar maxima get distinct ticks in whole micro-dollars", async () => {
  const built = await esbuild.build({
    entryPoints: [new URL("../src/dashboard/ticks.ts", import.meta.url).pathname],
    bundle: true,
    write: false,
    format: "esm",
    logLevel: "silent",
  });
  const { axis } = await import(`data:text/javascript;base64,${Buffer.from(built.outputFiles[0].text).toString("base64")}`);
  const usd = (v) => `$${v.toFixed(6)}`;
  assert.deepEqual(axis(0.000001, false).map(usd), ["$0.000000", "$0.000001", "$0.000002"]);
  assert.deepEqual(axis(0, false), [0, 0.005, 0.01]);
  assert.deepEqual(axis(0.0000015, false).map(usd), ["$0.000000", "$0.000001", "$0.000002"]);
  assert.deepEqual(axis(0.05, false), [0, 0.025, 0.05]);
  assert.deepEqual(axis(0.04, false), [0, 0.025, 0.05]);
  assert.deepEqual(axis(12, false), [0, 10, 20]);
  // Counts: whole numbers only, a top of at least 2.
  assert.deepEqual(axis(0, true), [0, 1, 2]);
  assert.deepEqual(axis(1, true), [0, 1, 2]);
  assert.deepEqual(axis(8, true), [0, 5, 10]);
  assert.deepEqual(axis(3, true), [0, 5]);
  for (const max of [0.000001, 0.000003, 0.00001, 0.0000123, 0.0025, 0.3, 7, 1234.5]) {
    const ticks = axis(max, false);
    assert.ok(ticks.at(-1) >= max, `top ${ticks.at(-1)} covers ${max}`);
    assert.equal(new Set(ticks.map(usd)).size, ticks.length, `distinct labels for ${max}: ${ticks}`);
  }
});

test("usage: a query appears in the charts, on its own and with Refresh", async () => {
  const created = await createKey({ name: "Metered", rate_limit_per_hour: 12, cost_limit_per_month: 0.05 });
  const page = await signedIn();
  await page.goto(`${server.baseUrl}/#/keys/${created.id}`);
  await page.locator('svg[data-chart="requests-hourly"]').waitFor();
  assert.match(await chartSummary(page, "requests-hourly"), /: 0 requests in total/);
  assert.match(await chartSummary(page, "requests-hourly"), /Rate limit: 12 requests per hour/);
  assert.match(await chartSummary(page, "cost-month"), /\$0\.00 spent of the \$0\.05 monthly cost limit/);

  assert.equal((await query(created.key)).status, 200);
  // No reload, no click: the page refreshes itself every few seconds.
  await waitFor(async () => /: 1 request in total/.test(await chartSummary(page, "requests-hourly")), {
    timeoutMs: 12_000,
    what: "the hourly chart to count the query",
  });
  assert.match(await chartSummary(page, "requests-daily"), /: 1 request in total/);
  assert.match(await chartSummary(page, "cost-month"), /\$0\.0025 spent of the \$0\.05 monthly cost limit \(5%\)/);

  for (let i = 0; i < 7; i++) assert.equal((await query(created.key)).status, 200);
  await page.getByRole("button", { name: "Refresh" }).click();
  await waitFor(async () => /: 8 requests in total/.test(await chartSummary(page, "requests-hourly")), {
    timeoutMs: 5_000,
    what: "Refresh to show 8 requests",
  });
  assert.ok(
    await page.getByRole("button", { name: "Refresh" }).evaluate((el) => el === document.activeElement),
    "Refresh keeps the focus",
  );
  assert.match(await chartSummary(page, "cost-hourly"), /\$0\.02 in total/);

  // The text alternative also exists as a table.
  await page.getByText("Show data as a table").first().click();
  const table = page.getByRole("table", { name: "Requests per hour · last 48 hours" });
  await table.waitFor();
  assert.equal(await table.locator("tbody tr").count(), 48);
  assert.ok((await table.locator("tbody td").allInnerTexts()).includes("8"));
  await page.getByText("Show data as a table").first().click();
  await screenshot(page, "dashboard-key-usage");
  await page.done();
});

test("revoke asks first: Cancel keeps the key, confirming revokes it", async () => {
  const created = await createKey({ name: "Doomed" });
  assert.equal((await query(created.key)).status, 200);
  const page = await signedIn();
  await page.goto(`${server.baseUrl}/#/keys/${created.id}`);
  await page.getByRole("heading", { level: 1, name: "Doomed" }).waitFor();

  const opener = page.getByRole("button", { name: "Revoke key…" }).first();
  await opener.click();
  const dialog = page.getByRole("dialog", { name: "Revoke this key?" });
  await dialog.waitFor();
  assert.ok(await page.evaluate(() => document.activeElement?.closest("dialog") !== null), "focus moves into the dialog");
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await dialog.waitFor({ state: "hidden" });
  assert.ok(await opener.evaluate((el) => el === document.activeElement), "focus returns to the opener");
  // Escape cancels too.
  await opener.click();
  await dialog.waitFor();
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden" });
  assert.equal((await admin(server, "GET", `/api/v1/api-keys/${created.id}`)).status, 200);
  assert.equal((await query(created.key)).status, 200, "cancelled: the key still works");

  await opener.click();
  await dialog.getByRole("button", { name: "Revoke key" }).click();
  await dialog.waitFor({ state: "hidden" });
  await page.getByText("was revoked").waitFor();
  // The key is kept: its page stays, says when it was revoked, and keeps its usage.
  const kept = await admin(server, "GET", `/api/v1/api-keys/${created.id}`);
  assert.equal(kept.status, 200);
  assert.equal(kept.body.active, false);
  assert.equal(typeof kept.body.revoked_at, "string");
  const revokedOn = `Revoked on ${kept.body.revoked_at.slice(0, 16).replace("T", " ")} UTC.`;
  const showsRevoked = async () => {
    await page.getByRole("heading", { level: 1, name: "Doomed" }).waitFor();
    assert.match(await page.locator(".revoked-banner").innerText(), new RegExp(`^${revokedOn}`));
    await page.locator(".meta").getByText("Revoked", { exact: true }).waitFor();
    assert.equal(await page.locator(".meta").getByText("Inactive", { exact: true }).count(), 0);
    await waitFor(async () => /: 2 requests in total/.test(await chartSummary(page, "requests-hourly")), {
      what: "the revoked key's usage",
    });
    for (const name of ["Revoke key…", "Rotate key…", "Save changes"]) {
      assert.equal(await page.getByRole("button", { name }).count(), 0, `no ${name} on a revoked key`);
    }
    assert.equal(await page.getByLabel("Name", { exact: true }).count(), 0, "its settings are not editable");
  };
  await showsRevoked();
  assert.ok(await page.evaluate(() => document.activeElement?.tagName === "H1"), "focus goes to the heading");
  await page.reload();
  await showsRevoked();
  const refused = await query(created.key);
  assert.equal(refused.status, 403);
  assert.equal(refused.body.code, "invalid_api_key");
  await page.done();
});

test("keys list: Live (the default), Revoked or All, as ?status=", async () => {
  await createKey({ name: "Filter kept" });
  const gone = await createKey({ name: "Filter gone" });
  await createKey({ name: "Filter off", active: false });
  assert.equal((await query(gone.key)).status, 200);
  assert.equal((await admin(server, "DELETE", `/api/v1/api-keys/${gone.id}`)).status, 204);
  const revokedAt = (await admin(server, "GET", `/api/v1/api-keys/${gone.id}`)).body.revoked_at;

  const page = await signedIn();
  const listed = [];
  page.on("request", (req) => {
    const url = new URL(req.url());
    if (url.pathname === "/api/v1/api-keys") listed.push(url.searchParams.get("status"));
  });
  const filter = page.getByLabel("Show", { exact: true });
  assert.equal(await filter.inputValue(), "live");
  await page.getByRole("searchbox", { name: "Search keys" }).fill("Filter ");
  const rows = page.locator("table.keys-table tbody tr");
  const names = async () => (await rows.locator("th").allInnerTexts()).map((t) => t.trim());
  const showing = async (expected, what) =>
    waitFor(async () => JSON.stringify(await names()) === JSON.stringify(expected), { what });

  await showing(["Filter kept", "Filter off"], "live keys, the inactive one too");
  assert.equal(listed.at(-1), "live");
  await rows.filter({ hasText: "Filter off" }).getByText("Inactive", { exact: true }).waitFor();

  await filter.selectOption({ label: "Revoked" });
  await showing(["Filter gone"], "the revoked key");
  assert.equal(listed.at(-1), "revoked");
  const row = rows.filter({ hasText: "Filter gone" });
  await row.getByText("Revoked", { exact: true }).waitFor();
  assert.equal(await row.getByText("Inactive", { exact: true }).count(), 0, "revoked, not inactive");
  assert.equal(await row.locator(".revoked-on time").getAttribute("datetime"), revokedAt);
  assert.match(await row.locator(".revoked-on").innerText(), new RegExp(`on ${revokedAt.slice(0, 16).replace("T", " ")} UTC`));
  // Its usage still shows.
  await row.getByText(`$${PRICE}`, { exact: true }).waitFor();

  await filter.selectOption({ label: "All" });
  await showing(["Filter kept", "Filter gone", "Filter off"], "every key, oldest first");
  assert.equal(listed.at(-1), "all");

  await page.getByRole("searchbox", { name: "Search keys" }).fill("Filter kept");
  await showing(["Filter kept"], "the search within All");
  await filter.selectOption({ label: "Revoked" });
  await page.getByText("No revoked keys match").waitFor();

  // A revoked key's row opens its page.
  await page.getByRole("searchbox", { name: "Search keys" }).fill("Filter gone");
  await showing(["Filter gone"], "the revoked key again");
  await rows.getByRole("link", { name: "Filter gone" }).click();
  await page.getByRole("heading", { level: 1, name: "Filter gone" }).waitFor();
  await page.locator(".revoked-banner").waitFor();
  await page.done();
});

test("rotate shows the new key once; the old one stops working", async () => {
  const created = await createKey({ name: "Rotating" });
  const page = await signedIn();
  await page.goto(`${server.baseUrl}/#/keys/${created.id}`);
  await page.getByRole("heading", { level: 1, name: "Rotating" }).waitFor();
  await page.getByRole("button", { name: "Rotate key…" }).first().click();
  const dialog = page.getByRole("dialog", { name: "Rotate this key?" });
  await dialog.getByLabel("The old secret stops working").selectOption({ label: "Immediately" });
  await dialog.getByRole("button", { name: "Rotate key" }).click();
  await dialog.waitFor({ state: "hidden" });

  const fresh = (await page.locator(".secret").innerText()).trim();
  assert.match(fresh, new RegExp(`^${KEY_RE.source}$`));
  assert.notEqual(fresh, created.key);
  assert.equal(await page.locator(".meta code").first().innerText(), `${fresh.slice(0, 11)}…`, "the new prefix shows");
  assert.equal((await query(fresh)).status, 200);
  assert.equal((await query(created.key)).status, 403);

  await page.getByRole("button", { name: "Done, I have stored it" }).click();
  await page.locator(".secret").waitFor({ state: "detached" });
  assert.ok(!(await html(page)).includes(fresh));
  await page.reload();
  await page.getByRole("heading", { level: 1, name: "Rotating" }).waitFor();
  assert.ok(!(await html(page)).includes(fresh));
  await page.done();
});

test("workflows: register one, then delete it behind a confirmation", async () => {
  // The duplicate is a 409 that chromium logs on its own.
  const page = await signedIn({ allow: [/status of 409/] });
  await page.getByRole("link", { name: "Workflows" }).click();
  await page.getByRole("heading", { level: 1, name: "Workflows" }).waitFor();
  await page.getByLabel("ID", { exact: true }).fill("summarise");
  await page.getByLabel("Name", { exact: true }).fill("Summariser");
  await page.getByLabel("Upstream URL").fill("builtin:echo");
  await page.getByLabel("Price per request (USD)").fill("0.01");
  await page.getByLabel("Max cost per request (USD, optional)").fill("0.05");
  await page.getByRole("button", { name: "Register workflow" }).last().click();
  await page.getByRole("row", { name: /summarise/ }).waitFor();
  const wf = (await admin(server, "GET", "/api/v1/workflows/summarise")).body;
  assert.equal(wf.price_per_request, 0.01);
  assert.equal(wf.max_cost_per_request, 0.05);
  assert.equal(wf.upstream_url, "builtin:echo");
  // The list shows the maximum, and "None" for a workflow without one.
  const cells = (id) =>
    page
      .getByRole("row")
      .filter({ has: page.getByRole("rowheader", { name: id, exact: true }) })
      .getByRole("cell");
  assert.deepEqual((await cells("summarise").allInnerTexts()).slice(2, 4), ["$0.01", "$0.05"]);
  assert.equal((await cells(WORKFLOW).allInnerTexts())[3], "None");
  assert.equal(await page.getByLabel("Max cost per request (USD, optional)").inputValue(), "", "the form starts empty again");

  // A duplicate is refused with the server's reason.
  await page.getByLabel("ID", { exact: true }).fill("summarise");
  await page.getByLabel("Name", { exact: true }).fill("Again");
  await page.getByLabel("Upstream URL").fill("builtin:echo");
  await page.getByRole("button", { name: "Register workflow" }).last().click();
  await page.getByRole("alert").filter({ hasText: "workflow_exists" }).waitFor();

  await page.getByRole("button", { name: "Delete workflow summarise" }).click();
  const dialog = page.getByRole("dialog", { name: "Delete this workflow?" });
  await dialog.getByRole("button", { name: "Cancel" }).click();
  assert.equal((await admin(server, "GET", "/api/v1/workflows/summarise")).status, 200);
  await page.getByRole("button", { name: "Delete workflow summarise" }).click();
  await dialog.getByRole("button", { name: "Delete workflow" }).click();
  await page.getByRole("row", { name: /summarise/ }).waitFor({ state: "detached" });
  assert.equal((await admin(server, "GET", "/api/v1/workflows/summarise")).status, 404);
  await waitFor(() => page.evaluate(() => document.activeElement?.tagName === "H1"), {
    what: "focus on the list's heading after the delete",
  });
  await page.done();
});

test("workflows and webhooks: lists longer than one page are followed to the end", async () => {
  const page = await signedIn();
  const item = (id) => ({
    id,
    name: `Listed ${id}`,
    upstream_url: "builtin:echo",
    price_per_request: 0,
    created_at: "2026-01-01T00:00:00Z",
    updated_at: "2026-01-01T00:00:00Z",
  });
  const hook = (id) => ({
    id,
    url: `https://example.com/${id}`,
    events: [],
    description: null,
    active: true,
    disabled_reason: null,
    disabled_at: null,
    created_at: "2026-01-01T00:00:00Z",
    updated_at: "2026-01-01T00:00:00Z",
  });
  // Two pages of each list: the second only comes with the first's cursor.
  for (const [path, make] of [
    ["/api/v1/workflows", item],
    ["/api/v1/webhooks", hook],
  ]) {
    await page.route(
      (url) => url.pathname === path,
      (route) => {
        const cursor = new URL(route.request().url()).searchParams.get("cursor");
        const body = cursor === "page-2" ? { data: [make("zz-second")], next_cursor: null } : { data: [make("aa-first")], next_cursor: "page-2" };
        return route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(body) });
      },
    );
  }
  await page.goto(`${server.baseUrl}/#/workflows`);
  await page.getByRole("row", { name: /aa-first/ }).waitFor();
  await page.getByRole("row", { name: /zz-second/ }).waitFor();
  await page.goto(`${server.baseUrl}/#/keys/new`);
  await page.getByRole("checkbox", { name: /zz-second/ }).waitFor();
  await page.goto(`${server.baseUrl}/#/webhooks`);
  await page.getByRole("link", { name: "https://example.com/aa-first" }).waitFor();
  await page.getByRole("link", { name: "https://example.com/zz-second" }).waitFor();
  await page.done();
});

test("webhooks: create (secret shown once), send a test event, see the failed delivery, retry it", async () => {
  // Answers 500 to the first request, then 200.
  const received = [];
  const receiver = await listen((req, body, res) => {
    received.push({ id: req.headers["webhook-id"], body: body.toString() });
    res.writeHead(received.length === 1 ? 500 : 200, { "content-type": "text/plain" });
    res.end("ok");
  });
  try {
    const page = await signedIn();
    await page.getByRole("link", { name: "Webhooks" }).click();
    await page.getByRole("heading", { level: 1, name: "Webhooks" }).waitFor();
    await page.getByText("No webhook endpoints yet").waitFor();

    const url = `${receiver.url}/hooks/nodai`;
    await page.getByLabel("Endpoint URL").fill(url);
    // Only threshold alerts, so the other tests' key events stay away.
    await page.getByRole("checkbox", { name: "usage.threshold" }).check();
    await page.getByLabel("Description (optional)").fill("Dashboard test receiver");
    await page.getByRole("button", { name: "Add endpoint" }).last().click();
    const secret = (await page.locator(".secret").innerText()).trim();
    assert.match(secret, /^whsec_[A-Za-z0-9+/=]+$/);
    await page.getByText("you will not see it again").waitFor();
    await page.getByRole("button", { name: "Done, I have stored it" }).click();
    await page.locator(".secret").waitFor({ state: "detached" });
    assert.ok(!(await html(page)).includes(secret));
    const hooks = (await admin(server, "GET", "/api/v1/webhooks")).body.data;
    assert.equal(hooks.length, 1);
    assert.deepEqual(hooks[0].events, ["usage.threshold"]);

    await page.getByRole("link", { name: url }).click();
    await page.getByRole("heading", { level: 1, name: "Webhook endpoint" }).waitFor();
    await page.getByText("No deliveries yet").waitFor();
    await page.getByRole("button", { name: "Send test event" }).click();
    const row = page.locator("tr[data-delivery]");
    await row.first().waitFor();
    const deliveryId = await row.first().getAttribute("data-delivery");
    assert.match(await row.first().innerText(), /webhook\.test/);

    // The receiver's 500 shows: pending, 1 attempt, status 500, a next attempt.
    await waitFor(() => received.length >= 1, { timeoutMs: 15_000, what: "the first delivery attempt" });
    assert.equal(received[0].id, deliveryId);
    await waitFor(
      async () => {
        const text = await row.first().innerText();
        return /Pending/.test(text) && /\b500\b/.test(text) && /in \d+ (min|h)/.test(text);
      },
      { timeoutMs: 10_000, what: "the failed attempt in the log" },
    );
    assert.equal(await row.first().locator("td").nth(2).innerText(), "1");

    await page.getByRole("button", { name: `Retry delivery ${deliveryId}` }).click();
    await waitFor(() => received.length >= 2, { timeoutMs: 15_000, what: "the retried delivery" });
    assert.equal(received[1].id, deliveryId, "a retry keeps the webhook-id");
    await waitFor(async () => /Succeeded/.test(await row.first().innerText()), {
      timeoutMs: 10_000,
      what: "the delivery to succeed",
    });
    const cells = await row.first().locator("td").allInnerTexts();
    assert.equal(cells[2], "2", "two attempts");
    assert.equal(cells[3], "200");
    assert.equal(await page.getByRole("button", { name: `Retry delivery ${deliveryId}` }).count(), 0, "no Retry once it succeeded");
    await screenshot(page, "dashboard-webhooks");

    await page.getByRole("button", { name: "Delete…" }).click();
    await page.getByRole("dialog", { name: "Delete this endpoint?" }).getByRole("button", { name: "Delete endpoint" }).click();
    await page.getByRole("heading", { level: 1, name: "Webhooks" }).waitFor();
    await page.getByText("No webhook endpoints yet").waitFor();
    assert.equal((await admin(server, "GET", "/api/v1/webhooks")).body.data.length, 0);
    await page.done();
  } finally {
    await receiver.close();
  }
});

test("keyboard: sign in and open the create-key form with Tab and Enter only", async () => {
  const page = await newPage(browser);
  await page.goto(`${server.baseUrl}/`);
  await page.getByLabel("Admin token").waitFor();
  const focused = () =>
    page.evaluate(() => {
      const el = document.activeElement;
      return { id: el?.id ?? "", text: (el?.textContent ?? "").trim(), tag: el?.tagName ?? "" };
    });
  /** Presses Tab until `match(focused)`, at most 40 times. */
  const tabTo = async (match, what) => {
    for (let i = 0; i < 40; i++) {
      if (match(await focused())) return;
      await page.keyboard.press("Tab");
    }
    assert.fail(`Tab never reached ${what}`);
  };
  await tabTo((f) => f.id === "admin-token", "the token field");
  await page.keyboard.type(server.adminToken);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { level: 1, name: "API keys" }).waitFor();

  await tabTo((f) => f.tag === "A" && f.text === "Create key", "the Create key link");
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, "none", "the focused link shows a focus ring");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { level: 1, name: "Create an API key" }).waitFor();
  await tabTo((f) => f.id === "new-key-name", "the Name field");
  await page.keyboard.type("Typed by keyboard");
  await tabTo((f) => f.tag === "BUTTON" && f.text === "Create key", "the submit button");
  await page.keyboard.press("Enter");
  await page.locator(".secret").waitFor();
  await tabTo((f) => f.text === "Done, I have stored it", "Done");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { level: 1, name: "Typed by keyboard" }).waitFor();
  await waitFor(async () => (await focused()).tag === "H1", { what: "focus on the key page's heading after Done" });
  assert.equal((await focused()).text, "Typed by keyboard");

  // Save keeps the focus in the form (the page is not rebuilt under it).
  await page.locator('svg[data-chart="requests-hourly"]').waitFor();
  await tabTo((f) => f.id === "key-owner", "the Owner field");
  await page.keyboard.type("keyboard-owner");
  await tabTo((f) => f.tag === "BUTTON" && f.text === "Save changes", "Save");
  await page.keyboard.press("Enter");
  await page.getByText(/^Saved at/).waitFor();
  let now = await focused();
  assert.notEqual(now.tag, "BODY", "focus stays in the form after Save");
  assert.equal(now.text, "Save changes");

  // Next keeps the focus on the pager.
  const listed = (await admin(server, "GET", "/api/v1/api-keys?limit=1000")).body.data.length;
  for (let i = listed; i <= 20; i++) await createKey({ name: `keyboard-filler-${i}` });
  await page.goto(`${server.baseUrl}/#/keys`);
  await page.locator("table.keys-table tbody tr").first().waitFor();
  await tabTo((f) => f.tag === "BUTTON" && f.text === "Next →", "Next");
  await page.keyboard.press("Enter");
  await page.getByText("Page 2", { exact: true }).waitFor();
  now = await focused();
  assert.notEqual(now.tag, "BODY", "focus stays on the pager after Next");
  assert.equal(now.text, "Next →");
  await page.done();
});

test("360 px wide: no sideways page scroll on the keys list, a key's detail and the other pages", async () => {
  const created = await createKey({ name: "Small screen", rate_limit_per_hour: 5, cost_limit_per_month: 1 });
  for (let i = 0; i < 3; i++) await query(created.key);
  const page = await signedIn({ width: 360, height: 740 });
  const overflow = () => page.evaluate(() => document.documentElement.scrollWidth);
  await page.locator("table.keys-table").waitFor();
  assert.ok((await overflow()) <= 360, `keys list is ${await overflow()} px wide`);
  // Squeezed into 360 px, wrapping headers once stood 336 px tall.
  const header = await page.locator("table.keys-table thead").evaluate((el) => el.getBoundingClientRect().height);
  assert.ok(header < 60, `the keys table's header row is ${header} px tall`);
  await screenshot(page, "dashboard-mobile");

  await page.goto(`${server.baseUrl}/#/keys/${created.id}`);
  await page.locator('svg[data-chart="cost-month"]').waitFor();
  await waitFor(async () => /: 3 requests in total/.test(await chartSummary(page, "requests-hourly")), {
    what: "the detail's usage",
  });
  assert.ok((await overflow()) <= 360, `key detail is ${await overflow()} px wide`);
  const svgWidth = await page.locator('svg[data-chart="requests-hourly"]').evaluate((el) => el.getBoundingClientRect().width);
  assert.ok(svgWidth <= 340, `the chart fits (${svgWidth} px)`);

  for (const [hash, heading] of [
    ["#/keys/new", "Create an API key"],
    ["#/customers", "Customers"],
    ["#/customers/+new", "Create a customer"],
    ["#/usage", "Usage"],
    ["#/workflows", "Workflows"],
    ["#/webhooks", "Webhooks"],
  ]) {
    await page.goto(`${server.baseUrl}/${hash}`);
    await page.getByRole("heading", { level: 1, name: heading }).waitFor();
    assert.ok((await overflow()) <= 360, `${hash} is ${await overflow()} px wide`);
  }
  await page.done();
});

test("customers: create one with limits, search for it, edit it, and delete it only once it has no live keys", async () => {
  // The refused delete is a 409 that chromium logs on its own.
  const page = await signedIn({ allow: [/status of 409/] });
  await page.getByRole("link", { name: "Customers" }).click();
  await page.getByRole("heading", { level: 1, name: "Customers" }).waitFor();
  await page.getByRole("link", { name: "Create customer" }).click();
  await page.getByRole("heading", { level: 1, name: "Create a customer" }).waitFor();
  await page.getByLabel("ID", { exact: true }).fill("cust-globex");
  await page.getByLabel("Name", { exact: true }).fill("Globex");
  await page.getByLabel("Email (optional)").fill("billing@globex.test");
  await page.getByLabel("Max concurrent queries").fill("3");
  await page.getByRole("button", { name: "Add limit" }).click();
  // The new row takes the focus.
  assert.ok(await page.getByLabel("Limit 1 Metric").evaluate((el) => el === document.activeElement));
  await page.getByLabel("Limit 1 Window").selectOption("minute");
  await page.getByLabel("Limit 1 Maximum").fill("60");
  await page.getByRole("button", { name: "Add limit" }).click();
  await page.getByLabel("Limit 2 Metric").selectOption("cost");
  // Cost counts per UTC day or month only.
  assert.deepEqual(await page.getByLabel("Limit 2 Window").locator("option").allInnerTexts(), ["per day", "per month"]);
  await page.getByLabel("Limit 2 Window").selectOption("month");
  await page.getByLabel("Limit 2 Maximum (USD)").fill("5");
  await page.getByRole("button", { name: "Create customer" }).click();
  await page.getByRole("heading", { level: 1, name: "Globex" }).waitFor();
  let customer = (await admin(server, "GET", "/api/v1/customers/cust-globex")).body;
  assert.equal(customer.email, "billing@globex.test");
  assert.equal(customer.max_concurrent, 3);
  assert.deepEqual(customer.limits, [
    { metric: "requests", window: "minute", max: 60 },
    { metric: "cost", window: "month", max: 5 },
  ]);
  assert.equal(await page.locator(".customer-limits").innerText(), "60 requests / minute · $5.00 / month");
  await page.locator('svg[data-chart="tokens-hourly"]').waitFor();

  // The list finds it by name, id or email.
  await page.getByRole("link", { name: "← Customers" }).click();
  const search = page.getByRole("searchbox", { name: "Search customers" });
  const rows = page.locator("table.customers-table tbody tr");
  await search.fill("GLOBEX.TEST");
  await waitFor(async () => (await rows.count()) === 1 && (await rows.first().innerText()).includes("cust-globex"), {
    what: "the search to find the customer by email",
  });
  await search.fill("no-customer-is-called-this");
  await page.getByText("No customers match").waitFor();

  // Edit: a limit removed, the concurrency cap cleared.
  await search.fill("globex");
  await page.getByRole("link", { name: "Globex" }).click();
  await page.getByRole("heading", { level: 1, name: "Globex" }).waitFor();
  await page.getByRole("button", { name: /^Remove limit 1 / }).click();
  await page.getByLabel("Max concurrent queries").fill("");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText(/^Saved at/).waitFor();
  customer = (await admin(server, "GET", "/api/v1/customers/cust-globex")).body;
  assert.deepEqual(customer.limits, [{ metric: "cost", window: "month", max: 5 }]);
  assert.equal(customer.max_concurrent, null);
  assert.equal(customer.name, "Globex", "untouched fields stay");

  // With a live key it cannot be deleted: the server's reason shows in the dialog.
  const key = await createKey({ name: "Globex key", customer_id: "cust-globex" });
  await page.getByRole("button", { name: "Delete customer…" }).first().click();
  const dialog = page.getByRole("dialog", { name: "Delete this customer?" });
  await dialog.getByRole("button", { name: "Delete customer" }).click();
  const problem = dialog.getByRole("alert");
  await problem.waitFor();
  assert.match(await problem.innerText(), /still has live API keys.*\(customer_has_keys, HTTP 409\)/s);
  assert.equal((await admin(server, "GET", "/api/v1/customers/cust-globex")).status, 200);
  await dialog.getByRole("button", { name: "Cancel" }).click();

  assert.equal((await admin(server, "DELETE", `/api/v1/api-keys/${key.id}`)).status, 204);
  await page.getByRole("button", { name: "Delete customer…" }).first().click();
  await dialog.getByRole("button", { name: "Delete customer" }).click();
  await page.getByRole("heading", { level: 1, name: "Customers" }).waitFor();
  await page.getByText("“Globex” (cust-globex) was deleted").waitFor();
  assert.equal((await admin(server, "GET", "/api/v1/customers/cust-globex")).status, 404);
  await page.done();
});

test("keys: a key's page gives it a customer and more limits, and its customer's page lists it", async () => {
  assert.equal((await admin(server, "POST", "/api/v1/customers", { id: "cust-initech", name: "Initech" })).status, 201);
  const created = await createKey({ name: "Initech worker", rate_limit_per_hour: 100 });
  // The unknown customer is a 422 that chromium logs on its own.
  const page = await signedIn({ allow: [/status of 422/] });
  await page.goto(`${server.baseUrl}/#/keys/${created.id}`);
  await page.getByRole("heading", { level: 1, name: "Initech worker" }).waitFor();

  const customer = page.getByLabel("Customer ID (optional)");
  await customer.fill("cust-nobody");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByRole("alert").filter({ hasText: "no customer" }).waitFor();

  await customer.fill("cust-initech");
  await page.getByRole("button", { name: "Add limit" }).click();
  // Requests per hour has a field of its own: the editor does not offer it again.
  assert.deepEqual(await page.getByLabel("Limit 1 Window").locator("option").allInnerTexts(), [
    "per minute",
    "per day",
    "per month",
  ]);
  await page.getByLabel("Limit 1 Metric").selectOption("tokens");
  await page.getByLabel("Limit 1 Window").selectOption("minute");
  // A part of a token is refused here, not sent.
  await page.getByLabel("Limit 1 Maximum").fill("1.5");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByRole("alert").filter({ hasText: "a whole number of tokens" }).waitFor();
  assert.equal(await page.getByLabel("Limit 1 Maximum").getAttribute("aria-invalid"), "true");
  await page.getByLabel("Limit 1 Maximum").fill("5000");
  await page.getByLabel("Max concurrent queries").fill("2");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText(/^Saved at/).waitFor();
  const key = (await admin(server, "GET", `/api/v1/api-keys/${created.id}`)).body;
  assert.equal(key.customer_id, "cust-initech");
  assert.equal(key.rate_limit_per_hour, 100, "the rate limit stays");
  assert.deepEqual(key.limits, [
    { metric: "requests", window: "hour", max: 100 },
    { metric: "tokens", window: "minute", max: 5000 },
  ]);
  assert.equal(key.max_concurrent, 2);

  await page.locator(".meta").getByRole("link", { name: "Initech" }).click();
  await page.getByRole("heading", { level: 1, name: "Initech" }).waitFor();
  const row = page.locator("table.customer-keys tbody tr").filter({ hasText: "Initech worker" });
  assert.match(await row.innerText(), /100 requests \/ hour · 5,000 tokens \/ minute/);
  // A key created from here starts with the customer.
  await page.getByRole("link", { name: "Create key", exact: true }).click();
  await page.getByRole("heading", { level: 1, name: "Create an API key" }).waitFor();
  assert.equal(await page.getByLabel("Customer ID (optional)").inputValue(), "cust-initech");
  await page.done();
});

test("tokens: a workflow's token prices, and the tokens its upstream reports in the usage of a key and its customer", async () => {
  // An upstream that reports 1,200 input and 300 output tokens per query.
  const upstream = await listen((_req, _body, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ output: "ok", usage: { input_tokens: 1200, output_tokens: 300 } }));
  });
  try {
    const page = await signedIn();
    await page.goto(`${server.baseUrl}/#/workflows`);
    await page.getByRole("heading", { level: 1, name: "Workflows" }).waitFor();
    await page.getByLabel("ID", { exact: true }).fill("llm");
    await page.getByLabel("Name", { exact: true }).fill("Language model");
    await page.getByLabel("Upstream URL").fill(upstream.url);
    await page.getByLabel("Price per million input tokens (USD)").fill("2");
    await page.getByLabel("Price per million output tokens (USD)").fill("8");
    await page.getByRole("button", { name: "Register workflow" }).last().click();
    const cells = page
      .getByRole("row")
      .filter({ has: page.getByRole("rowheader", { name: "llm", exact: true }) })
      .getByRole("cell");
    await cells.first().waitFor();
    assert.deepEqual((await cells.allInnerTexts()).slice(4, 6), ["$2.00", "$8.00"]);
    const wf = (await admin(server, "GET", "/api/v1/workflows/llm")).body;
    assert.equal(wf.price_per_million_input_tokens, 2);
    assert.equal(wf.price_per_million_output_tokens, 8);

    assert.equal((await admin(server, "POST", "/api/v1/customers", { id: "cust-tokens", name: "Token buyer" })).status, 201);
    const key = await createKey({ name: "Token user", customer_id: "cust-tokens" });
    for (let i = 0; i < 2; i++) {
      const answer = await query(key.key, "llm");
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      // 1,200 × $2 + 300 × $8 per million.
      assert.equal(answer.body.usage.cost, 0.0048);
    }

    const tokensShown = async (what) => {
      await waitFor(async () => /: 3,000 tokens in total \(2,400 input, 600 output\)/.test(await chartSummary(page, "tokens-hourly")), {
        what: `${what}'s hourly tokens`,
      });
      assert.match(await chartSummary(page, "tokens-daily"), /: 3,000 tokens in total \(2,400 input, 600 output\)/);
      assert.match(await page.locator(".stats").innerText(), /Tokens, all time\s*3,000\s*2,400 input · 600 output/);
      const figure = page.locator("figure", { has: page.locator('svg[data-chart="tokens-hourly"]') });
      await figure.getByText("Show data as a table").click();
      const table = figure.getByRole("table", { name: "Tokens per hour · last 48 hours" });
      assert.deepEqual(await table.locator("thead th").allTextContents(), ["Hour", "Tokens", "Input", "Output"]);
      const busy = table.locator("tbody tr").filter({ hasText: "3,000" });
      assert.deepEqual(await busy.locator("td").allInnerTexts(), ["3,000", "2,400", "600"]);
      // Stacked: an input part and an output part.
      assert.equal(await page.locator('svg[data-chart="tokens-hourly"] rect.bar-part-1').count(), 1);
    };
    await page.goto(`${server.baseUrl}/#/keys/${key.id}`);
    await page.getByRole("heading", { level: 1, name: "Token user" }).waitFor();
    await tokensShown("the key");
    await page.goto(`${server.baseUrl}/#/customers/cust-tokens`);
    await page.getByRole("heading", { level: 1, name: "Token buyer" }).waitFor();
    await tokensShown("the customer");
    assert.match(await chartSummary(page, "cost-month"), /\$0\.0096 spent/);
    await page.locator("table.customer-keys").getByRole("link", { name: "Token user" }).waitFor();
    await page.goto(`${server.baseUrl}/#/customers`);
    const row = page.locator("table.customers-table tbody tr").filter({ hasText: "cust-tokens" });
    await row.getByText("$0.0096", { exact: true }).waitFor();
    assert.match(await row.innerText(), /\b3,000\b/);
    await page.done();
  } finally {
    await upstream.close();
  }
});

/** A customer's credits as the API has them. */
const creditsOf = async (id) => (await admin(server, "GET", `/api/v1/customers/${id}/credits`)).body;

test("credits: a prepaid customer with a low-balance threshold, topped up, drawn on, and its grant voided", async () => {
  const page = await signedIn();
  await page.goto(`${server.baseUrl}/#/customers/+new`);
  await page.getByRole("heading", { level: 1, name: "Create a customer" }).waitFor();
  await page.getByLabel("ID", { exact: true }).fill("cust-prepaid");
  await page.getByLabel("Name", { exact: true }).fill("Prepaid Co");
  await page.getByRole("combobox", { name: "Billing", exact: true }).selectOption("prepaid");
  await page.getByLabel("Low-balance threshold (USD, optional)").fill("1.5");
  await page.getByRole("button", { name: "Create customer" }).click();
  await page.getByRole("heading", { level: 1, name: "Prepaid Co" }).waitFor();
  let customer = (await admin(server, "GET", "/api/v1/customers/cust-prepaid")).body;
  assert.equal(customer.billing, "prepaid");
  assert.equal(customer.low_balance_threshold, 1.5);

  // No credits yet: used up, and its keys' queries are refused.
  const balance = page.locator(".balance");
  const value = page.locator(".balance-value");
  await page.getByText("No credits granted yet").waitFor();
  assert.equal(await value.innerText(), "$0.00");
  assert.match(await balance.getAttribute("class"), /\bbalance-out\b/);
  assert.match(await balance.innerText(), /Used up/);
  const key = await createKey({ name: "Prepaid key", customer_id: "cust-prepaid" });
  let answer = await query(key.key);
  assert.equal(answer.status, 402, JSON.stringify(answer.body));
  assert.equal(answer.body.code, "insufficient_credits");

  // Top up $5: the balance and the grant show, and queries go through.
  await page.getByLabel("Amount (USD)").fill("5");
  await page.getByLabel("Description (optional)").fill("Starter pack");
  await page.getByRole("button", { name: "Top up" }).click();
  await page.getByText(/^Granted \$5\.00 at/).waitFor();
  await waitFor(async () => (await value.innerText()) === "$5.00", { what: "the balance after the top-up" });
  assert.match(await balance.getAttribute("class"), /\bbalance-ok\b/);
  assert.equal(await page.getByLabel("Amount (USD)").inputValue(), "", "the form is cleared");
  const rows = page.locator("table.grants-table tbody tr");
  assert.equal(await rows.count(), 1);
  const cells = await rows.first().locator("td").allInnerTexts();
  assert.deepEqual([cells[0], cells[1], cells[2], cells[4], cells[5]], ["$5.00", "$5.00", "Never", "Starter pack", "Live"]);
  let credits = await creditsOf("cust-prepaid");
  assert.equal(credits.balance, 5);
  assert.equal(credits.grants.length, 1);
  answer = await query(key.key);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  // The query's cost is drawn; the page's refresh shows it.
  await waitFor(async () => (await value.innerText()) === `$${(5 - PRICE).toFixed(4)}`, {
    timeoutMs: 15_000,
    what: "the balance to show the query's cost",
  });
  assert.equal(await rows.first().locator("td").nth(1).innerText(), `$${(5 - PRICE).toFixed(4)}`);

  // A threshold above the balance marks it low.
  await page.getByLabel("Low-balance threshold (USD, optional)").fill("10");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText(/^Saved at/).waitFor();
  assert.equal((await admin(server, "GET", "/api/v1/customers/cust-prepaid")).body.low_balance_threshold, 10);
  await waitFor(async () => /\bbalance-low\b/.test(await balance.getAttribute("class")), { what: "a low balance" });
  assert.match(await balance.innerText(), /Low\s+Below its low-balance threshold of \$10\.00/);

  // Void asks first: Cancel keeps the grant.
  const voidButton = rows.first().getByRole("button", { name: /^Void/ });
  await voidButton.click();
  const dialog = page.getByRole("dialog", { name: "Void this grant?" });
  assert.match(await dialog.innerText(), /balance drops by what is left of it, \$4\.9975/);
  assert.match(await dialog.innerText(), /queries are refused until it is topped up/);
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await dialog.waitFor({ state: "detached" });
  assert.equal((await creditsOf("cust-prepaid")).grants[0].voided_at, null);
  await voidButton.click();
  await dialog.getByRole("button", { name: "Void grant" }).click();
  await dialog.waitFor({ state: "detached" });
  await waitFor(async () => (await value.innerText()) === "$0.00", { what: "the balance to drop" });
  assert.match(await balance.getAttribute("class"), /\bbalance-out\b/);
  assert.equal(await rows.first().locator("td").nth(5).innerText(), "Voided");
  assert.equal(await rows.first().getByRole("button").count(), 0, "a voided grant has no Void button");
  credits = await creditsOf("cust-prepaid");
  assert.equal(credits.balance, 0);
  assert.equal(credits.grants.length, 1);
  assert.notEqual(credits.grants[0].voided_at, null);
  answer = await query(key.key);
  assert.equal(answer.status, 402, JSON.stringify(answer.body));

  // Back to postpaid, the threshold cleared: the balance is no longer marked.
  await page.getByRole("combobox", { name: "Billing", exact: true }).selectOption("postpaid");
  await page.getByLabel("Low-balance threshold (USD, optional)").fill("");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText(/^Saved at/).waitFor();
  customer = (await admin(server, "GET", "/api/v1/customers/cust-prepaid")).body;
  assert.equal(customer.billing, "postpaid");
  assert.equal(customer.low_balance_threshold, null);
  await page.getByText("This customer is postpaid").waitFor();
  assert.match(await balance.getAttribute("class"), /\bbalance-ok\b/);

  // 360 px wide: the credits fit without a sideways page scroll.
  await page.setViewportSize({ width: 360, height: 740 });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 360, `the customer's page is ${width} px wide`);
  await page.done();
});

test("credits: a top-up submitted twice, or retried after its answer was lost, grants once", async () => {
  assert.equal(
    (await admin(server, "POST", "/api/v1/customers", { id: "cust-retry", name: "Retry Ltd", billing: "prepaid" })).status,
    201,
  );
  // The answer the test drops is a failed request that chromium logs on its own.
  const page = await signedIn({ allow: [/ERR_FAILED/] });
  const posts = [];
  page.on("request", (request) => {
    if (request.method() === "POST" && request.url().endsWith("/credits")) {
      posts.push({ key: request.headers()["idempotency-key"], body: request.postDataJSON() });
    }
  });
  await page.goto(`${server.baseUrl}/#/customers/cust-retry`);
  await page.getByRole("heading", { level: 1, name: "Retry Ltd" }).waitFor();
  await page.getByText("No credits granted yet").waitFor();
  const rows = page.locator("table.grants-table tbody tr");
  const value = page.locator(".balance-value");

  // Two submits in one go (a double click): one grant.
  await page.getByLabel("Amount (USD)").fill("3");
  await page.locator("form.topup").evaluate((form) => {
    form.requestSubmit();
    form.requestSubmit();
  });
  await page.getByText(/^Granted \$3\.00 at/).waitFor();
  await waitFor(async () => (await value.innerText()) === "$3.00", { what: "the balance after the top-up" });
  assert.equal(await rows.count(), 1);
  assert.equal((await creditsOf("cust-retry")).grants.length, 1);
  assert.ok(posts.length >= 1);
  assert.match(posts[0].key, /^topup-[0-9a-f]{32}$/);
  assert.equal(new Set(posts.map((p) => p.key)).size, 1, "every request of the one top-up carries the same key");
  const firstKey = posts[0].key;

  // The server grants $7 but the answer is lost: the page says it failed,
  // and Top up again sends the same key, which the server answers as before.
  posts.length = 0;
  const grants = (url) => url.pathname.endsWith("/credits");
  await page.route(grants, async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    await route.fetch();
    await route.abort("failed");
  });
  await page.getByLabel("Amount (USD)").fill("7");
  await page.getByLabel("Description (optional)").fill("Retried");
  await page.getByRole("button", { name: "Top up" }).click();
  await page.getByRole("alert").filter({ hasText: "Could not reach the nodai server" }).waitFor();
  assert.equal((await creditsOf("cust-retry")).grants.length, 2, "the lost request was granted");
  await page.unroute(grants);
  await page.getByRole("button", { name: "Top up" }).click();
  await page.getByText(/^Granted \$7\.00 at/).waitFor();
  await waitFor(async () => (await value.innerText()) === "$10.00", { what: "the balance after the retry" });
  assert.equal(await rows.count(), 2);
  let credits = await creditsOf("cust-retry");
  assert.deepEqual(
    credits.grants.map((g) => [g.amount, g.description]),
    [
      [3, null],
      [7, "Retried"],
    ],
  );
  assert.equal(posts.length, 2);
  assert.equal(posts[0].key, posts[1].key, "the retry carries the lost request's key");
  assert.notEqual(posts[0].key, firstKey, "another top-up, another key");
  const retryKey = posts[0].key;

  // The same top-up once more, after a success, is a new one: a fresh key, a second $7 grant.
  posts.length = 0;
  await page.getByLabel("Amount (USD)").fill("7");
  await page.getByLabel("Description (optional)").fill("Retried");
  await page.getByRole("button", { name: "Top up" }).click();
  await waitFor(async () => (await value.innerText()) === "$17.00", { what: "the balance after another top-up" });
  credits = await creditsOf("cust-retry");
  assert.equal(credits.grants.length, 3);
  assert.equal(posts.length, 1);
  assert.ok(![firstKey, retryKey].includes(posts[0].key), "a fresh key");
  await page.done();
});

/** Builds a dashboard module on its own (an ES module, for its pure functions). */
async function dashboardModule(name) {
  const built = await esbuild.build({
    entryPoints: [new URL(`../src/dashboard/${name}`, import.meta.url).pathname],
    bundle: true,
    write: false,
    format: "esm",
    logLevel: "silent",
  });
  return import(`data:text/javascript;base64,${Buffer.from(built.outputFiles[0].text).toString("base64")}`);
}

test("usage explorer: periods rounded out as the API rounds them, series with Other, exact cost sums, the query and file name", async () => {
  const { periodStarts, chartData, csvFileName, usagePath } = await dashboardModule("explore.ts");
  const iso = (starts) => starts.map((t) => new Date(t).toISOString());
  const at = Date.parse;
  assert.deepEqual(iso(periodStarts(at("2026-03-01T09:30:00Z"), at("2026-03-01T12:00:00Z"), "hour")), [
    "2026-03-01T09:00:00.000Z",
    "2026-03-01T10:00:00.000Z",
    "2026-03-01T11:00:00.000Z",
  ]);
  assert.deepEqual(iso(periodStarts(at("2026-02-27T12:00:00Z"), at("2026-03-02T00:00:01Z"), "day")), [
    "2026-02-27T00:00:00.000Z",
    "2026-02-28T00:00:00.000Z",
    "2026-03-01T00:00:00.000Z",
    "2026-03-02T00:00:00.000Z",
  ]);
  assert.deepEqual(iso(periodStarts(at("2026-01-31T10:30:00Z"), at("2026-04-01T00:00:00Z"), "month")), [
    "2026-01-01T00:00:00.000Z",
    "2026-02-01T00:00:00.000Z",
    "2026-03-01T00:00:00.000Z",
  ]);

  const row = (start, workflow_id, requests, cost) => ({
    start,
    end: "unused",
    workflow_id,
    requests,
    errors: 0,
    cost,
    input_tokens: 0,
    output_tokens: 0,
  });
  const rows = [
    row("2026-03-01T00:00:00Z", "a", 5, 0.1),
    row("2026-03-01T00:00:00Z", "b", 3, 0.2),
    row("2026-03-03T00:00:00Z", "c", 1, 0.000001),
    row("2026-03-03T00:00:00Z", "d", 1, 0),
  ];
  const days = periodStarts(at("2026-03-01T00:00:00Z"), at("2026-03-04T00:00:00Z"), "day");
  // Three series at most: the two largest, then Other (c and d, tied at 1 request, fall into it).
  const requests = chartData(rows, ["workflow_id"], "requests", days, 3);
  assert.deepEqual(requests.series, [
    { name: "a", total: 5 },
    { name: "b", total: 3 },
    { name: "Other", total: 2 },
  ]);
  assert.deepEqual(
    requests.periods.map((p) => [new Date(p.start).toISOString().slice(0, 10), p.parts, p.value]),
    [
      ["2026-03-01", [5, 3, 0], 8],
      ["2026-03-02", [0, 0, 0], 0],
      ["2026-03-03", [0, 0, 2], 2],
    ],
  );
  assert.equal(requests.total, 10);
  // Costs add up in micro-dollars: 0.1 + 0.2 is 0.3, not 0.30000000000000004.
  const cost = chartData(rows, ["workflow_id"], "cost", days);
  assert.equal(cost.total, 0.300001);
  assert.deepEqual(
    cost.series.map((s) => s.name),
    ["b", "a", "c", "d"],
  );
  assert.equal(cost.periods[0].value, 0.3);
  // Not grouped: one series, "All".
  assert.deepEqual(chartData(rows, [], "requests", days).series, [{ name: "All", total: 10 }]);

  const query = {
    from: "2026-03-01T00:00:00Z",
    to: "2026-03-08T09:30:00Z",
    granularity: "day",
    groupBy: ["workflow_id", "status_code"],
    keyId: " key_1 ",
    customerId: "",
    workflowId: "",
  };
  const path = new URL(usagePath(query), "http://x");
  assert.equal(path.pathname, "/api/v1/usage");
  assert.deepEqual(Object.fromEntries(path.searchParams), {
    from: "2026-03-01T00:00:00Z",
    to: "2026-03-08T09:30:00Z",
    granularity: "day",
    group_by: "workflow_id,status_code",
    key_id: "key_1",
  });
  assert.equal(csvFileName(query), "nodai-usage_20260301T0000Z_20260308T0930Z_day_by-workflow_id-status_code.csv");
});

/** POSTs CloudEvents to /api/v1/events as one batch; returns the answer's body. */
async function sendEvents(events) {
  const res = await fetch(`${server.baseUrl}/api/v1/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/cloudevents-batch+json" },
    body: JSON.stringify(events),
  });
  const body = await res.json();
  assert.equal(res.status, 202, JSON.stringify(body));
  return body;
}

test("usage explorer: usage events of two workflows, grouped by workflow, in the table, the chart and the CSV download", async () => {
  for (const id of ["usage-alpha", "usage-beta"]) {
    const wf = await admin(server, "POST", "/api/v1/workflows", {
      id,
      name: id,
      upstream_url: "builtin:echo",
      price_per_request: 0.001,
    });
    assert.equal(wf.status, 201, JSON.stringify(wf.body));
  }
  // A key of its own, so that the other tests' queries stay out of its rows.
  const key = await createKey({ name: "Usage explorer" });
  // One time for every event: one period, whatever the granularity.
  const time = new Date(Date.now() - 3_600_000).toISOString().replace(/\.\d+Z$/, "Z");
  const event = (n, data) => ({
    specversion: "1.0",
    id: `explorer-${n}`,
    source: "dashboard-test",
    type: "nodai.usage",
    subject: key.id,
    time,
    data,
  });
  const alpha = { workflow_id: "usage-alpha", input_tokens: 10, output_tokens: 4 };
  const sent = await sendEvents([
    event(1, { ...alpha, cost: 0.01 }),
    event(2, { ...alpha, cost: 0.02, status_code: 500 }),
    event(3, { ...alpha, cost: 0.003 }),
    event(4, { workflow_id: "usage-beta", cost: 0.25 }),
    event(5, { workflow_id: "usage-beta", cost: 0.25 }),
  ]);
  assert.deepEqual(sent, { accepted: 5, duplicates: 0, rejected: [] });

  const page = await signedIn();
  await page.getByRole("link", { name: "Usage", exact: true }).click();
  await page.getByRole("heading", { level: 1, name: "Usage" }).waitFor();
  await page.getByLabel("Key ID", { exact: true }).fill(key.id);
  await page.getByRole("button", { name: "Last 7 days" }).click();
  await page.getByRole("checkbox", { name: "Workflow", exact: true }).check();
  // The rows of this query, not of one before it.
  await page.locator(".usage-query", { hasText: `grouped by workflow; key ${key.id} only` }).waitFor();
  await page.locator("table.usage-table").waitFor();
  const day = time.slice(0, 10);
  const cells = (locator) => locator.evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent.trim())));
  assert.deepEqual(await cells(page.locator("table.usage-table thead tr")), [
    ["Day (UTC)", "Workflow", "Requests", "Errors", "Cost", "Input tokens", "Output tokens"],
  ]);
  assert.deepEqual(await cells(page.locator("table.usage-table tbody tr")), [
    [day, "usage-alpha", "3", "1", "$0.033", "30", "12"],
    [day, "usage-beta", "2", "0", "$0.50", "0", "0"],
  ]);
  assert.deepEqual(await cells(page.locator("table.usage-table tfoot tr")), [["Total", "5", "1", "$0.533", "30", "12"]]);

  // The chart: one series per workflow, the larger first.
  const explorerChart = () => chartSummary(page, "usage-explorer");
  assert.match(await explorerChart(), /^Requests per day by workflow from .*: 5 requests in total; usage-alpha 3, usage-beta 2\.$/);
  const legend = page.locator("figure.chart-categorical .chart-legend li");
  assert.deepEqual(await legend.allInnerTexts(), ["usage-alpha", "usage-beta"]);
  await page.getByLabel("Chart", { exact: true }).selectOption("cost");
  await waitFor(async () => /: \$0\.533 in total; usage-beta \$0\.50, usage-alpha \$0\.033\.$/.test(await explorerChart()), {
    what: "the cost chart",
  });
  await screenshot(page, "dashboard-usage-explorer");

  // Download CSV: the same query, as text/csv, saved as a file.
  const csvRequest = page.waitForRequest(
    (r) => new URL(r.url()).pathname === "/api/v1/usage" && r.headers().accept === "text/csv",
  );
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download CSV" }).click(),
  ]);
  const params = new URL((await csvRequest).url()).searchParams;
  assert.equal(params.get("group_by"), "workflow_id");
  assert.equal(params.get("key_id"), key.id);
  assert.equal(params.get("granularity"), "day");
  assert.ok(params.get("from") && params.get("to"), "the range the table shows");
  assert.match(download.suggestedFilename(), /^nodai-usage_\d{8}T\d{4}Z_\d{8}T\d{4}Z_day_by-workflow_id\.csv$/);
  const csv = await readFile(await download.path(), "utf8");
  const [header, ...lines] = csv.trimEnd().split(/\r?\n/);
  assert.equal(header, "start,end,workflow_id,requests,errors,cost,input_tokens,output_tokens");
  const dayStart = Date.parse(`${day}T00:00:00Z`);
  const csvRows = lines.map((line) => {
    const [start, end, ...rest] = line.split(",");
    return [Date.parse(start) - dayStart, Date.parse(end) - dayStart, ...rest];
  });
  assert.deepEqual(csvRows, [
    [0, 86_400_000, "usage-alpha", "3", "1", "0.033000", "30", "12"],
    [0, 86_400_000, "usage-beta", "2", "0", "0.500000", "0", "0"],
  ]);

  // Grouped by two fields: workflow, then status code.
  await page.getByRole("checkbox", { name: "Status code" }).check();
  await page.locator(".usage-query", { hasText: `grouped by workflow, status code; key ${key.id} only` }).waitFor();
  assert.deepEqual(await cells(page.locator("table.usage-table tbody tr")), [
    [day, "usage-alpha", "200", "2", "0", "$0.013", "20", "8"],
    [day, "usage-alpha", "500", "1", "1", "$0.02", "10", "4"],
    [day, "usage-beta", "200", "2", "0", "$0.50", "0", "0"],
  ]);
  await page.done();
});

test("usage explorer: a range the server refuses shows its detail, and no rows", async () => {
  // The refused queries are 422s that chromium logs on its own.
  const page = await signedIn({ allow: [/status of 422/] });
  await page.goto(`${server.baseUrl}/#/usage`);
  await page.getByRole("heading", { level: 1, name: "Usage" }).waitFor();
  await page.locator(".usage-query").waitFor();
  const refusal = async (query) => {
    const answer = await admin(server, "GET", `/api/v1/usage?${query}`);
    assert.equal(answer.status, 422, JSON.stringify(answer.body));
    assert.ok(answer.body.detail, "a problem+json with a detail");
    return answer.body.detail;
  };
  const alert = page.getByRole("alert").filter({ hasText: "Could not load the usage" });

  // From after To.
  await page.getByLabel("From (UTC)").fill("2026-03-02T00:00");
  await page.getByLabel("To (UTC)").fill("2026-03-01T00:00");
  await page.getByRole("button", { name: "Show usage" }).click();
  const backwards = await refusal("from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z");
  await alert.filter({ hasText: backwards }).waitFor();
  assert.match(await alert.innerText(), /\(validation_error, HTTP 422\)/);
  assert.equal(await page.locator("table.usage-table").count(), 0, "no rows of an earlier query under the error");
  assert.equal(await page.getByRole("button", { name: "Download CSV" }).count(), 0);

  // Hourly over more than 90 days: the granularity applies at once.
  await page.getByLabel("From (UTC)").fill("2026-01-01T00:00");
  await page.getByLabel("To (UTC)").fill("2026-06-01T00:00");
  await page.getByLabel("Granularity").selectOption("hour");
  const tooLong = await refusal("from=2026-01-01T00:00:00Z&to=2026-06-01T00:00:00Z&granularity=hour");
  await alert.filter({ hasText: tooLong }).waitFor();

  // A preset is a range the server takes: the error goes.
  await page.getByRole("button", { name: "Last 24 hours" }).click();
  await page.locator(".usage-query", { hasText: "per hour" }).waitFor();
  assert.equal(await alert.count(), 0);
  await page.done();
});
