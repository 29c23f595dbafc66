// Tests against a real `nodai serve` (see support/server.js): queries, every
// error class the server can be made to produce, keys (pagination, partial
// update, rotation, revocation, usage), customers and named limits (the limit
// a refusal names), prepaid credits, tokens, and workflows.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  APIConnectionError,
  AuthenticationError,
  ConflictError,
  CostLimitExceededError,
  IdempotencyConflictError,
  InsufficientCreditsError,
  NodaiError,
  Nodai,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  UpstreamError,
  ValidationError,
} from "@nodai/sdk";
import { listen } from "./support/http.js";
import { freePort, startServer, waitFor } from "./support/server.js";

// The developer's own settings must not reach the clients under test.
for (const name of ["NODAI_API_KEY", "NODAI_ADMIN_TOKEN", "NODAI_BASE_URL"]) delete process.env[name];

let server;
let nodai;
let slowUpstream;
let costUpstream;
let tokenUpstream;
const echoPrice = 0.002;

/** Asserts that `promise` rejects with `ErrorClass`, `status` and `code`; returns the error. */
async function expectError(promise, ErrorClass, status, code) {
  let caught;
  await assert.rejects(promise, (error) => {
    caught = error;
    assert.ok(error instanceof ErrorClass, `expected ${ErrorClass.name}, got ${error?.name}: ${error?.message}`);
    assert.ok(error instanceof NodaiError);
    assert.equal(error.status, status);
    assert.equal(error.code, code);
    assert.equal(typeof error.detail, "string");
    return true;
  });
  return caught;
}

let counter = 0;
const unique = (prefix) => `${prefix}-${process.pid}-${++counter}`;

before(async () => {
  // Queries go to a local upstream that never answers: 1 s is the 504 test's wait.
  server = await startServer({ env: { NODAI_UPSTREAM_TIMEOUT_SECS: "1" } });
  nodai = new Nodai({ baseUrl: server.baseUrl, adminToken: server.adminToken, apiKey: undefined });
  slowUpstream = await listen(() => {
    /* never answers */
  });
  costUpstream = await listen((req, body, res) => {
    const { input, workflow_id, request_id } = JSON.parse(body.toString());
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ output: { got: input, workflow_id, request_id }, usage: { cost: 0.5 } }));
  });
  // An upstream that reports tokens, as a model would, and no cost.
  tokenUpstream = await listen((req, body, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ output: "ok", usage: { input_tokens: 1200, output_tokens: 300 } }));
  });
  await nodai.workflows.create({ id: "echo", name: "Echo", upstream_url: "builtin:echo", price_per_request: echoPrice });
});

after(async () => {
  await slowUpstream?.close();
  await costUpstream?.close();
  await tokenUpstream?.close();
  const exit = await server?.stop();
  if (exit) assert.equal(exit.code, 0, `nodai exited with ${JSON.stringify(exit)}\n${server.logs()}`);
});

describe("queryWorkflow", () => {
  test("a query on builtin:echo returns output, cost from price_per_request, duration and request id", async () => {
    const key = await nodai.keys.create({ name: unique("query"), workflow_ids: ["echo"] });
    assert.match(key.key, /^nk_[0-9a-f]{64}$/);
    const input = { text: "hello", list: [1, 2, 3] };
    const result = await nodai.queryWorkflow("echo", input, { apiKey: key.key });
    assert.deepEqual(result.output, input);
    assert.equal(result.cost, echoPrice);
    assert.equal(typeof result.durationMs, "number");
    assert.match(result.requestId, /^req_/);
    assert.equal(result.rateLimit, null, "no rate limit, no X-RateLimit-* headers");
  });

  test("the client's apiKey is used when the call gives none", async () => {
    const key = await nodai.keys.create({ name: unique("client-key") });
    const client = new Nodai({ baseUrl: server.baseUrl, apiKey: key.key });
    assert.equal((await client.queryWorkflow("echo", "hi")).output, "hi");
  });

  test("rate-limit state comes from the X-RateLimit-* headers", async () => {
    const key = await nodai.keys.create({ name: unique("rl-state"), rate_limit_per_hour: 5 });
    const result = await nodai.queryWorkflow("echo", "x", { apiKey: key.key });
    assert.equal(result.rateLimit.limit, 5);
    assert.equal(result.rateLimit.remaining, 4);
    const now = Math.floor(Date.now() / 1000);
    // The rolling hour counts a query for at least 60 full minutes, at most 61 (minute buckets).
    assert.ok(result.rateLimit.reset > now - 5 && result.rateLimit.reset <= now + 3660 + 5, String(result.rateLimit.reset));
  });

  test("an upstream's reported usage.cost is the cost", async () => {
    await nodai.workflows.create({ id: "costly", name: "Costly", upstream_url: costUpstream.url, price_per_request: 1 });
    const key = await nodai.keys.create({ name: unique("costly") });
    const result = await nodai.queryWorkflow("costly", "in", { apiKey: key.key });
    assert.equal(result.cost, 0.5);
    assert.equal(result.output.got, "in");
    assert.equal(result.output.workflow_id, "costly");
    assert.equal(result.output.request_id, result.requestId);
  });
});

describe("errors from the real server", () => {
  test("401 AuthenticationError: no API key", async () => {
    await expectError(nodai.queryWorkflow("echo", "x"), AuthenticationError, 401, "missing_api_key");
  });

  test("401 AuthenticationError: wrong admin token", async () => {
    const wrong = new Nodai({ baseUrl: server.baseUrl, adminToken: "not-the-admin-token" });
    await expectError(wrong.keys.listPage(), AuthenticationError, 401, "unauthorized");
  });

  test("403 PermissionDeniedError: invalid key", async () => {
    const err = await expectError(
      nodai.queryWorkflow("echo", "x", { apiKey: `nk_${"0".repeat(64)}` }),
      PermissionDeniedError,
      403,
      "invalid_api_key",
    );
    assert.match(err.message, /^403 invalid_api_key/);
  });

  test("403 PermissionDeniedError: workflow not allowed", async () => {
    const key = await nodai.keys.create({ name: unique("scoped"), workflow_ids: ["some-other-workflow"] });
    await expectError(nodai.queryWorkflow("echo", "x", { apiKey: key.key }), PermissionDeniedError, 403, "workflow_not_allowed");
  });

  test("403 PermissionDeniedError: inactive key", async () => {
    const key = await nodai.keys.create({ name: unique("inactive"), active: false });
    await expectError(nodai.queryWorkflow("echo", "x", { apiKey: key.key }), PermissionDeniedError, 403, "key_inactive");
  });

  test("403 PermissionDeniedError: expired key", async () => {
    const expiresAt = new Date(Date.now() + 1500);
    const key = await nodai.keys.create({ name: unique("expiring"), expires_at: expiresAt.toISOString() });
    // Wait for the condition, not a fixed time: the first rejection must be key_expired.
    const error = await waitFor(
      () => nodai.queryWorkflow("echo", "x", { apiKey: key.key }).then(() => null, (e) => e),
      { timeoutMs: 10_000, intervalMs: 200, what: "the key to expire" },
    );
    assert.ok(error instanceof PermissionDeniedError);
    assert.equal(error.code, "key_expired");
    assert.ok(Date.now() >= expiresAt.getTime());
  });

  test("404 NotFoundError: unknown workflow", async () => {
    const key = await nodai.keys.create({ name: unique("nf") });
    await expectError(nodai.queryWorkflow("no-such-workflow", "x", { apiKey: key.key }), NotFoundError, 404, "workflow_not_found");
  });

  test("404 NotFoundError: unknown key id", async () => {
    await expectError(nodai.keys.get("key_00000000000000000000000000000000"), NotFoundError, 404, "key_not_found");
    await expectError(nodai.keys.usage("key_00000000000000000000000000000000"), NotFoundError, 404, "key_not_found");
  });

  test("429 RateLimitError with retryAfter on a key with rate_limit_per_hour 1", async () => {
    const key = await nodai.keys.create({ name: unique("rl"), rate_limit_per_hour: 1 });
    const first = await nodai.queryWorkflow("echo", "x", { apiKey: key.key });
    assert.deepEqual([first.rateLimit.limit, first.rateLimit.remaining], [1, 0]);
    const err = await expectError(nodai.queryWorkflow("echo", "x", { apiKey: key.key }), RateLimitError, 429, "rate_limited");
    assert.equal(typeof err.retryAfter, "number");
    // Until the query leaves the rolling hour: 60 full minutes, at most 61.
    assert.ok(err.retryAfter > 3000 && err.retryAfter <= 3660, `retryAfter ${err.retryAfter}`);
    assert.equal(err.headers.get("x-ratelimit-remaining"), "0");

    // Opting in does not make the SDK wait an hour: a Retry-After past the cap is thrown at once.
    const started = Date.now();
    await expectError(
      nodai.queryWorkflow("echo", "x", { apiKey: key.key, retryOnRateLimit: true }),
      RateLimitError,
      429,
      "rate_limited",
    );
    assert.ok(Date.now() - started < 2000);
  });

  test("402 CostLimitExceededError once the month's cost reaches the limit", async () => {
    const key = await nodai.keys.create({ name: unique("budget"), cost_limit_per_month: 0.001 });
    // The query that crosses the limit is allowed; the next one is not.
    await nodai.queryWorkflow("echo", "x", { apiKey: key.key });
    await expectError(nodai.queryWorkflow("echo", "x", { apiKey: key.key }), CostLimitExceededError, 402, "cost_limit_exceeded");
  });

  test("422 ValidationError on invalid fields", async () => {
    await expectError(nodai.keys.create({ name: unique("neg"), rate_limit_per_hour: -1 }), ValidationError, 422, "validation_error");
    await expectError(
      nodai.keys.create({ name: unique("past"), expires_at: "2000-01-01T00:00:00Z" }),
      ValidationError,
      422,
      "validation_error",
    );
    await expectError(nodai.keys.listPage({ limit: 5000 }), ValidationError, 422, "validation_error");
  });

  test("413 ValidationError on a body over 1 MiB", async () => {
    const key = await nodai.keys.create({ name: unique("big") });
    const input = "x".repeat(1_100_000);
    await expectError(nodai.queryWorkflow("echo", input, { apiKey: key.key }), ValidationError, 413, "payload_too_large");
  });

  test("409 ConflictError on a duplicate workflow id", async () => {
    await expectError(
      nodai.workflows.create({ id: "echo", name: "Again", upstream_url: "builtin:echo" }),
      ConflictError,
      409,
      "workflow_exists",
    );
  });

  test("502 UpstreamError when the upstream is a closed port", async () => {
    const port = await freePort();
    await nodai.workflows.create({ id: "dead", name: "Dead", upstream_url: `http://127.0.0.1:${port}/` });
    const key = await nodai.keys.create({ name: unique("dead") });
    const error = await expectError(nodai.queryWorkflow("dead", "x", { apiKey: key.key }), UpstreamError, 502, "upstream_error");
    // Admitted, so it has a request id (the server's X-Request-Id).
    assert.match(error.requestId ?? "", /^req_/);
  });

  test("504 UpstreamError when the upstream does not answer in time", async () => {
    await nodai.workflows.create({ id: "slow", name: "Slow", upstream_url: slowUpstream.url });
    const key = await nodai.keys.create({ name: unique("slow") });
    await expectError(nodai.queryWorkflow("slow", "x", { apiKey: key.key }), UpstreamError, 504, "upstream_timeout");
  });

  test("APIConnectionError against a closed port (after its retries)", async () => {
    const port = await freePort();
    const nowhere = new Nodai({ baseUrl: `http://127.0.0.1:${port}`, adminToken: "x".repeat(20), maxRetries: 1 });
    await assert.rejects(nowhere.keys.listPage(), (error) => {
      assert.ok(error instanceof APIConnectionError, `${error}`);
      assert.ok(error instanceof NodaiError);
      assert.equal(error.status, undefined);
      assert.equal(error.timedOut, false);
      assert.match(error.message, /ECONNREFUSED|fetch failed/);
      return true;
    });
  });
});

describe("keys", () => {
  test("list auto-paginates over next_cursor; listPage returns one page", async () => {
    for (let i = 0; i < 7; i++) await nodai.keys.create({ name: unique("page") });
    const everything = await nodai.keys.listPage({ limit: 1000 });
    assert.equal(everything.next_cursor, null);
    assert.ok(everything.data.length >= 7);

    const firstPage = await nodai.keys.listPage({ limit: 2 });
    assert.equal(firstPage.data.length, 2);
    assert.equal(typeof firstPage.next_cursor, "string");

    let pages = 0;
    for await (const page of nodai.keys.list({ limit: 2 }).pages()) {
      pages++;
      assert.ok(page.data.length <= 2);
    }
    assert.equal(pages, Math.ceil(everything.data.length / 2));

    const ids = [];
    for await (const key of nodai.keys.list({ limit: 2 })) ids.push(key.id);
    assert.equal(new Set(ids).size, ids.length, "no key twice");
    assert.deepEqual(ids, everything.data.map((k) => k.id));
    assert.ok(ids.every((id) => id.startsWith("key_")));

    const rest = await nodai.keys.list({ limit: 2, cursor: firstPage.next_cursor }).toArray();
    assert.deepEqual([...firstPage.data.map((k) => k.id), ...rest.map((k) => k.id)], ids);
  });

  test("list with q finds keys by name or owner, ignoring case", async () => {
    const tag = unique("needle");
    const a = await nodai.keys.create({ name: `${tag} one` });
    const b = await nodai.keys.create({ name: unique("other"), owner: tag.toUpperCase() });
    const found = await nodai.keys.list({ q: tag, limit: 1 }).toArray();
    assert.deepEqual(found.map((k) => k.id), [a.id, b.id]);
    assert.deepEqual((await nodai.keys.listPage({ q: `${tag}-nobody` })).data, []);
  });

  test("get returns the key without its secret", async () => {
    const created = await nodai.keys.create({ name: unique("get"), owner: "acme", metadata: { plan: "pro" } });
    const key = await nodai.keys.get(created.id);
    assert.equal(key.id, created.id);
    assert.equal(key.prefix, created.key.slice(0, 11));
    assert.equal(key.owner, "acme");
    assert.deepEqual(key.metadata, { plan: "pro" });
    assert.deepEqual(key.alert_thresholds, [80, 100]);
    assert.equal("key" in key, false);
  });

  test("update is partial: given fields change, left-out fields stay, null clears a limit", async () => {
    const created = await nodai.keys.create({ name: unique("upd"), rate_limit_per_hour: 10, cost_limit_per_month: 5 });
    const renamed = await nodai.keys.update(created.id, { name: "renamed", owner: undefined });
    assert.equal(renamed.name, "renamed");
    assert.equal(renamed.rate_limit_per_hour, 10);
    assert.equal(renamed.cost_limit_per_month, 5);

    const cleared = await nodai.keys.update(created.id, { rate_limit_per_hour: null });
    assert.equal(cleared.rate_limit_per_hour, null);
    assert.equal(cleared.cost_limit_per_month, 5);
    assert.equal(cleared.name, "renamed");

    const fetched = await nodai.keys.get(created.id);
    assert.equal(fetched.rate_limit_per_hour, null);
    assert.equal(fetched.cost_limit_per_month, 5);
    // Without a rate limit, queries carry no rate-limit state.
    assert.equal((await nodai.queryWorkflow("echo", 1, { apiKey: created.key })).rateLimit, null);
  });

  test("rotate with a grace period: the old key keeps working, the new one works; same id", async () => {
    const created = await nodai.keys.create({ name: unique("rot") });
    const rotated = await nodai.keys.rotate(created.id, { grace_period_seconds: 3600 });
    assert.equal(rotated.id, created.id);
    assert.notEqual(rotated.key, created.key);
    assert.match(rotated.key, /^nk_[0-9a-f]{64}$/);
    assert.equal((await nodai.queryWorkflow("echo", "old", { apiKey: created.key })).output, "old");
    assert.equal((await nodai.queryWorkflow("echo", "new", { apiKey: rotated.key })).output, "new");
    // Usage stays with the key id: both queries count.
    assert.equal((await nodai.keys.usage(created.id)).total_requests, 2);

    // Without a grace period the previous secret stops at once.
    const again = await nodai.keys.rotate(created.id);
    await expectError(nodai.queryWorkflow("echo", "x", { apiKey: rotated.key }), PermissionDeniedError, 403, "invalid_api_key");
    assert.equal((await nodai.queryWorkflow("echo", "newest", { apiKey: again.key })).output, "newest");
  });

  test("revoke: the key stops validating at once", async () => {
    const created = await nodai.keys.create({ name: unique("rev") });
    await nodai.queryWorkflow("echo", "x", { apiKey: created.key });
    assert.equal(await nodai.keys.revoke(created.id), undefined);
    await expectError(nodai.queryWorkflow("echo", "x", { apiKey: created.key }), PermissionDeniedError, 403, "invalid_api_key");
  });

  test("a revoked key is kept: get and usage answer, lists filter by status, it no longer changes", async () => {
    const tag = unique("kept");
    const live = await nodai.keys.create({ name: `${tag} live` });
    const created = await nodai.keys.create({ name: `${tag} revoked` });
    assert.equal((await nodai.keys.get(created.id)).revoked_at, null);
    await nodai.queryWorkflow("echo", "x", { apiKey: created.key });
    const before = Date.now();
    await nodai.keys.revoke(created.id);

    const key = await nodai.keys.get(created.id);
    assert.equal(key.id, created.id);
    assert.equal(key.active, false);
    assert.equal(typeof key.revoked_at, "string");
    const revokedAt = Date.parse(key.revoked_at);
    assert.ok(Math.abs(revokedAt - before) < 60_000, key.revoked_at);
    assert.equal((await nodai.keys.usage(created.id)).total_requests, 1, "its usage stays");

    const ids = async (status) => (await nodai.keys.list({ q: tag, status }).toArray()).map((k) => k.id);
    assert.deepEqual(await ids(undefined), [live.id], "the default is live");
    assert.deepEqual(await ids("live"), [live.id]);
    assert.deepEqual(await ids("revoked"), [created.id]);
    assert.deepEqual(await ids("all"), [live.id, created.id]);
    assert.deepEqual((await nodai.keys.listPage({ q: tag, status: "revoked" })).data.map((k) => k.revoked_at), [key.revoked_at]);
    await expectError(nodai.keys.listPage({ status: "gone" }), ValidationError, 422, "validation_error");

    const updateError = await expectError(nodai.keys.update(created.id, { name: "back" }), ConflictError, 409, "key_revoked");
    assert.equal(updateError.name, "ConflictError");
    await expectError(nodai.keys.rotate(created.id), ConflictError, 409, "key_revoked");
    assert.equal(await nodai.keys.revoke(created.id), undefined, "revoking again is fine");
    assert.equal((await nodai.keys.get(created.id)).revoked_at, key.revoked_at, "the first revocation's time stays");
    await expectError(nodai.queryWorkflow("echo", "x", { apiKey: created.key }), PermissionDeniedError, 403, "invalid_api_key");
  });

  test("usage counts admitted queries with their cost", async () => {
    const created = await nodai.keys.create({ name: unique("usage"), rate_limit_per_hour: 3 });
    for (let i = 0; i < 3; i++) await nodai.queryWorkflow("echo", i, { apiKey: created.key });
    await assert.rejects(nodai.queryWorkflow("echo", "rejected", { apiKey: created.key }), RateLimitError);

    const usage = await nodai.keys.usage(created.id);
    assert.equal(usage.key_id, created.id);
    assert.equal(usage.total_requests, 3, "the rejected query is not counted");
    assert.ok(Math.abs(usage.total_cost - 3 * echoPrice) < 1e-9, String(usage.total_cost));
    assert.equal(usage.requests_today, 3);
    assert.equal(usage.requests_this_hour, 3);
    assert.ok(Math.abs(usage.cost_this_month - 3 * echoPrice) < 1e-9);
    assert.equal(typeof usage.last_used_at, "string");
    assert.equal(usage.hourly.reduce((n, h) => n + h.requests, 0), 3);
    assert.equal(usage.daily.reduce((n, d) => n + d.requests, 0), 3);

    const now = new Date();
    const hourStart = new Date(Math.floor(now.getTime() / 3_600_000) * 3_600_000);
    const ranged = await nodai.keys.usage(created.id, { from: hourStart, to: new Date(hourStart.getTime() + 3_600_000) });
    assert.equal(ranged.hourly.length, 1);
    assert.equal(ranged.hourly[0].requests, 3);
  });
});

describe("customers", () => {
  const customerId = (prefix) => unique(prefix).replace(/[^A-Za-z0-9_.:@-]/g, "-");

  test("create with every field, get, defaults", async () => {
    const id = customerId("Acme.Corp:eu@1");
    const created = await nodai.customers.create({
      id,
      name: "Acme Corp",
      email: "billing@acme.example",
      metadata: { plan: "enterprise" },
      limits: [
        { metric: "requests", window: "minute", max: 600 },
        { metric: "cost", window: "month", max: 250.5 },
      ],
      max_concurrent: 8,
      billing: "prepaid",
      low_balance_threshold: 10.25,
      billing_anchor_day: 15,
    });
    assert.equal(created.id, id);
    assert.equal(created.name, "Acme Corp");
    assert.equal(created.email, "billing@acme.example");
    assert.deepEqual(created.metadata, { plan: "enterprise" });
    assert.deepEqual(
      [...created.limits].sort((a, b) => a.metric.localeCompare(b.metric)),
      [
        { metric: "cost", window: "month", max: 250.5 },
        { metric: "requests", window: "minute", max: 600 },
      ],
    );
    assert.equal(created.max_concurrent, 8);
    assert.equal(created.billing, "prepaid");
    assert.equal(created.low_balance_threshold, 10.25);
    assert.equal(created.billing_anchor_day, 15);
    assert.equal(typeof created.created_at, "string");
    assert.deepEqual(await nodai.customers.get(id), created);

    const plain = await nodai.customers.create({ id: customerId("plain"), name: "Plain" });
    assert.deepEqual(plain.limits, []);
    assert.equal(plain.billing, "postpaid");
    assert.equal(plain.billing_anchor_day, 1);
    assert.equal(plain.email ?? null, null);
    assert.equal(plain.max_concurrent ?? null, null);
  });

  test("update is partial: left out stays, null clears, limits is the whole list", async () => {
    const id = customerId("upd");
    await nodai.customers.create({
      id,
      name: "Before",
      email: "a@b.example",
      limits: [{ metric: "requests", window: "day", max: 100 }],
      max_concurrent: 3,
      low_balance_threshold: 5,
    });
    const renamed = await nodai.customers.update(id, { name: "After", email: undefined });
    assert.equal(renamed.name, "After");
    assert.equal(renamed.email, "a@b.example");
    assert.deepEqual(renamed.limits, [{ metric: "requests", window: "day", max: 100 }]);
    assert.equal(renamed.max_concurrent, 3);

    const cleared = await nodai.customers.update(id, { email: null, max_concurrent: null, low_balance_threshold: null });
    assert.equal(cleared.email ?? null, null);
    assert.equal(cleared.max_concurrent ?? null, null);
    assert.equal(cleared.low_balance_threshold ?? null, null);
    assert.deepEqual(cleared.limits, [{ metric: "requests", window: "day", max: 100 }]);

    const replaced = await nodai.customers.update(id, { limits: [{ metric: "tokens", window: "hour", max: 50000 }] });
    assert.deepEqual(replaced.limits, [{ metric: "tokens", window: "hour", max: 50000 }]);
    const unlimited = await nodai.customers.update(id, { limits: null });
    assert.deepEqual(unlimited.limits, []);
    assert.deepEqual(await nodai.customers.get(id), unlimited);
  });

  test("list pages over next_cursor and searches with q", async () => {
    const tag = customerId("needle");
    const mine = [
      (await nodai.customers.create({ id: customerId("c"), name: `${tag} one` })).id,
      (await nodai.customers.create({ id: customerId("c"), name: "other", email: `x@${tag}.example` })).id,
      (await nodai.customers.create({ id: `${tag}-three`, name: "third" })).id,
    ];
    const first = await nodai.customers.listPage({ q: tag.toUpperCase(), limit: 2 });
    assert.equal(first.data.length, 2);
    assert.equal(typeof first.next_cursor, "string");
    const found = (await nodai.customers.list({ q: tag, limit: 1 }).toArray()).map((c) => c.id);
    assert.deepEqual([...found].sort(), [...mine].sort());
    const rest = await nodai.customers.list({ q: tag, limit: 2, cursor: first.next_cursor }).toArray();
    assert.deepEqual([...first.data, ...rest].map((c) => c.id), found);
    assert.deepEqual((await nodai.customers.listPage({ q: `${tag}-nobody` })).data, []);
    const every = await nodai.customers.list({ limit: 2 }).toArray();
    assert.ok(mine.every((id) => every.some((c) => c.id === id)));
  });

  test("typed errors: customer_exists, customer_has_keys, customer_not_found, 422", async () => {
    const id = customerId("errs");
    await nodai.customers.create({ id, name: "Errors" });
    await expectError(nodai.customers.create({ id, name: "Again" }), ConflictError, 409, "customer_exists");
    const key = await nodai.keys.create({ name: unique("errs-key"), customer_id: id });
    await expectError(nodai.customers.delete(id), ConflictError, 409, "customer_has_keys");
    await nodai.keys.revoke(key.id);
    assert.equal(await nodai.customers.delete(id), undefined);
    await expectError(nodai.customers.get(id), NotFoundError, 404, "customer_not_found");
    await expectError(nodai.customers.update(id, { name: "x" }), NotFoundError, 404, "customer_not_found");
    await expectError(nodai.customers.delete(id), NotFoundError, 404, "customer_not_found");
    await expectError(nodai.customers.usage(customerId("nobody")), NotFoundError, 404, "customer_not_found");
    await expectError(nodai.customers.create({ id: "not valid!", name: "x" }), ValidationError, 422, "validation_error");
    await expectError(
      nodai.customers.create({ id: customerId("bad"), name: "x", limits: [{ metric: "cost", window: "minute", max: 1 }] }),
      ValidationError,
      422,
      "validation_error",
    );
    await expectError(
      nodai.keys.create({ name: unique("no-customer"), customer_id: customerId("nobody") }),
      ValidationError,
      422,
      "validation_error",
    );
  });

  test("keys name a customer and carry limits and max_concurrent; both spellings are one limit", async () => {
    const id = customerId("keys");
    await nodai.customers.create({ id, name: "Keys" });
    const key = await nodai.keys.create({
      name: unique("limited"),
      customer_id: id,
      limits: [
        { metric: "tokens", window: "day", max: 1000000 },
        { metric: "requests", window: "hour", max: 100 },
      ],
      max_concurrent: 4,
    });
    assert.equal(key.customer_id, id);
    assert.equal(key.max_concurrent, 4);
    assert.equal(key.rate_limit_per_hour, 100, "requests per hour is rate_limit_per_hour");
    assert.deepEqual(
      [...key.limits].sort((a, b) => a.metric.localeCompare(b.metric)),
      [
        { metric: "requests", window: "hour", max: 100 },
        { metric: "tokens", window: "day", max: 1000000 },
      ],
    );
    const legacy = await nodai.keys.create({ name: unique("legacy"), cost_limit_per_month: 7 });
    assert.deepEqual(legacy.limits, [{ metric: "cost", window: "month", max: 7 }]);

    const updated = await nodai.keys.update(key.id, { limits: [{ metric: "cost", window: "month", max: 3 }] });
    assert.equal(updated.cost_limit_per_month, 3);
    assert.equal(updated.rate_limit_per_hour ?? null, null);
    assert.equal(updated.customer_id, id, "left out: unchanged");
    const detached = await nodai.keys.update(key.id, { customer_id: null, limits: null, max_concurrent: null });
    assert.equal(detached.customer_id ?? null, null);
    assert.deepEqual(detached.limits, []);
    assert.equal(detached.max_concurrent ?? null, null);
  });

  test("a customer's requests limit is shared: its second key gets a RateLimitError naming scope customer", async () => {
    const id = customerId("shared");
    await nodai.customers.create({ id, name: "Shared", limits: [{ metric: "requests", window: "hour", max: 1 }] });
    const first = await nodai.keys.create({ name: unique("shared-1"), customer_id: id });
    const second = await nodai.keys.create({ name: unique("shared-2"), customer_id: id });
    await nodai.queryWorkflow("echo", "x", { apiKey: first.key });
    const error = await expectError(nodai.queryWorkflow("echo", "x", { apiKey: second.key }), RateLimitError, 429, "rate_limited");
    assert.deepEqual(error.limit, { scope: "customer", metric: "requests", window: "hour", max: 1 });
    assert.ok(error.retryAfter > 0);

    const usage = await nodai.customers.usage(id);
    assert.equal(usage.customer_id, id);
    assert.equal(usage.key_id, undefined);
    assert.equal(usage.total_requests, 1, "summed over its keys; the refused query is not counted");
    assert.equal(usage.total_cost, echoPrice);
    assert.equal(usage.total_input_tokens, 0);
    assert.equal(usage.total_output_tokens, 0);
    assert.equal(usage.hourly.length, 48);
    assert.equal(usage.hourly.reduce((n, h) => n + h.requests, 0), 1);
    assert.equal(usage.daily.length, 31);
  });

  test("a key's own limit is named with scope key; a cost limit's on CostLimitExceededError", async () => {
    const key = await nodai.keys.create({ name: unique("own"), limits: [{ metric: "requests", window: "minute", max: 1 }] });
    await nodai.queryWorkflow("echo", "x", { apiKey: key.key });
    const limited = await expectError(nodai.queryWorkflow("echo", "x", { apiKey: key.key }), RateLimitError, 429, "rate_limited");
    assert.deepEqual(limited.limit, { scope: "key", metric: "requests", window: "minute", max: 1 });

    // 0.002 a query, 0.001 a day: the query that crosses the limit is allowed, the next is not.
    const id = customerId("cost");
    await nodai.customers.create({ id, name: "Cost", limits: [{ metric: "cost", window: "day", max: 0.001 }] });
    const spender = await nodai.keys.create({ name: unique("spender"), customer_id: id });
    await nodai.queryWorkflow("echo", "x", { apiKey: spender.key });
    const over = await expectError(
      nodai.queryWorkflow("echo", "x", { apiKey: spender.key }),
      CostLimitExceededError,
      402,
      "cost_limit_exceeded",
    );
    assert.deepEqual(over.limit, { scope: "customer", metric: "cost", window: "day", max: 0.001 });
  });
});

describe("prepaid credits", () => {
  const customerId = (prefix) => unique(prefix).replace(/[^A-Za-z0-9_.:@-]/g, "-");
  const dime = unique("dime").toLowerCase();
  let dimeCreated = false;

  /** A prepaid customer and a key of it; the workflow `dime` (builtin:echo at 0.10 a query). */
  async function prepaid(prefix) {
    if (!dimeCreated) {
      await nodai.workflows.create({ id: dime, name: "Dime", upstream_url: "builtin:echo", price_per_request: 0.1 });
      dimeCreated = true;
    }
    const id = customerId(prefix);
    await nodai.customers.create({ id, name: prefix, billing: "prepaid" });
    const key = await nodai.keys.create({ name: unique(`${prefix}-key`), customer_id: id });
    return { id, key: key.key };
  }

  test("a prepaid customer without credits is refused with InsufficientCreditsError", async () => {
    const { id, key } = await prepaid("broke");
    assert.deepEqual(await nodai.customers.credits(id), { balance: 0, grants: [] });
    const error = await expectError(nodai.queryWorkflow(dime, "x", { apiKey: key }), InsufficientCreditsError, 402, "insufficient_credits");
    assert.ok(error instanceof CostLimitExceededError);
    assert.equal(error.limit, undefined);
    assert.equal((await nodai.customers.usage(id)).total_requests, 0);
  });

  test("a $0.30 grant pays for three $0.10 queries, then InsufficientCreditsError", async () => {
    const { id, key } = await prepaid("spender");
    const expires = new Date(Math.floor(Date.now() / 1000) * 1000 + 30 * 86_400_000);
    const grant = await nodai.customers.grantCredits(id, { amount: 0.3, expires_at: expires, description: "starter pack" });
    assert.match(grant.id, /^gr_/);
    assert.deepEqual(
      [grant.amount, grant.remaining, Date.parse(grant.expires_at), grant.voided_at ?? null, grant.description],
      [0.3, 0.3, expires.getTime(), null, "starter pack"],
    );
    assert.ok(!Number.isNaN(Date.parse(grant.created_at)));
    assert.deepEqual(await nodai.customers.credits(id), { balance: 0.3, grants: [grant] });

    for (let n = 0; n < 3; n++) {
      // The third may cross zero: it is allowed.
      assert.equal((await nodai.queryWorkflow(dime, n, { apiKey: key })).cost, 0.1);
    }
    await expectError(nodai.queryWorkflow(dime, "over", { apiKey: key }), InsufficientCreditsError, 402, "insufficient_credits");
    const credits = await nodai.customers.credits(id);
    assert.equal(credits.balance, 0);
    assert.deepEqual(credits.grants.map((g) => [g.id, g.remaining]), [[grant.id, 0]]);

    await nodai.customers.grantCredits(id, { amount: 1 });
    assert.equal((await nodai.queryWorkflow(dime, "again", { apiKey: key })).output, "again");
    const after = await nodai.customers.credits(id);
    assert.equal(after.balance, 0.9);
    assert.equal(after.grants.length, 2);
  });

  test("an idempotency key makes a grant once; another body with it is IdempotencyConflictError", async () => {
    const { id } = await prepaid("idem");
    const idempotencyKey = unique("order");
    const first = await nodai.customers.grantCredits(id, { amount: 5, description: "order" }, { idempotencyKey });
    const again = await nodai.customers.grantCredits(id, { amount: 5, description: "order" }, { idempotencyKey });
    assert.deepEqual(again, first, "the first answer, replayed");
    assert.deepEqual((await nodai.customers.credits(id)).grants.map((g) => g.id), [first.id]);
    await expectError(
      nodai.customers.grantCredits(id, { amount: 6, description: "order" }, { idempotencyKey }),
      IdempotencyConflictError,
      409,
      "idempotency_conflict",
    );
    await expectError(nodai.customers.grantCredits(id, { amount: 5 }, { idempotencyKey }), ConflictError, 409, "idempotency_conflict");
    assert.equal((await nodai.customers.credits(id)).balance, 5);

    // Without a key each call is its own grant (the SDK makes one per call).
    const one = await nodai.customers.grantCredits(id, { amount: 1 });
    const two = await nodai.customers.grantCredits(id, { amount: 1 });
    assert.notEqual(one.id, two.id);
    assert.equal((await nodai.customers.credits(id)).balance, 7);
  });

  test("voiding a grant drops the balance; typed errors", async () => {
    const { id, key } = await prepaid("void");
    const kept = await nodai.customers.grantCredits(id, { amount: 0.5 });
    const voided = await nodai.customers.grantCredits(id, { amount: 2 });
    assert.equal((await nodai.customers.credits(id)).balance, 2.5);
    const result = await nodai.customers.voidCredits(id, voided.id);
    assert.equal(result.id, voided.id);
    assert.equal(typeof result.voided_at, "string");
    const credits = await nodai.customers.credits(id);
    assert.equal(credits.balance, 0.5);
    assert.deepEqual(credits.grants.map((g) => [g.id, g.voided_at != null]), [[kept.id, false], [voided.id, true]]);
    assert.equal((await nodai.customers.voidCredits(id, voided.id)).voided_at, result.voided_at, "again: a no-op");
    await nodai.customers.voidCredits(id, kept.id);
    assert.equal((await nodai.customers.credits(id)).balance, 0);
    await expectError(nodai.queryWorkflow(dime, "x", { apiKey: key }), InsufficientCreditsError, 402, "insufficient_credits");

    await expectError(nodai.customers.voidCredits(id, "gr_nosuchgrant"), NotFoundError, 404, "grant_not_found");
    const nobody = customerId("nobody");
    await expectError(nodai.customers.credits(nobody), NotFoundError, 404, "customer_not_found");
    await expectError(nodai.customers.grantCredits(nobody, { amount: 1 }), NotFoundError, 404, "customer_not_found");
    await expectError(nodai.customers.voidCredits(nobody, "gr_x"), NotFoundError, 404, "customer_not_found");
    const past = new Date(Date.now() - 60_000);
    for (const [params, options] of [
      [{ amount: 0 }, {}],
      [{ amount: -1 }, {}],
      [{ amount: 1, expires_at: past }, {}],
      [{ amount: 1, description: "x".repeat(1001) }, {}],
      [{ amount: 1 }, { idempotencyKey: "has space" }],
      [{ amount: 1 }, { idempotencyKey: "k".repeat(256) }],
    ]) {
      await expectError(nodai.customers.grantCredits(id, params, options), ValidationError, 422, "validation_error");
    }
  });
});

describe("tokens", () => {
  test("workflows' token prices round-trip and default to 0", async () => {
    const id = unique("wf-tok").toLowerCase();
    const created = await nodai.workflows.create({
      id,
      name: "Tokens",
      upstream_url: "builtin:echo",
      price_per_million_input_tokens: 2.5,
      price_per_million_output_tokens: 10,
    });
    assert.equal(created.price_per_million_input_tokens, 2.5);
    assert.equal(created.price_per_million_output_tokens, 10);
    const updated = await nodai.workflows.update(id, { price_per_million_output_tokens: 12.000001 });
    assert.equal(updated.price_per_million_output_tokens, 12.000001);
    assert.equal(updated.price_per_million_input_tokens, 2.5, "left out: unchanged");
    assert.deepEqual(await nodai.workflows.get(id), updated);
    const echo = await nodai.workflows.get("echo");
    assert.equal(echo.price_per_million_input_tokens, 0);
    assert.equal(echo.price_per_million_output_tokens, 0);
    await nodai.workflows.delete(id);
  });

  test("builtin:echo reports no tokens: 0 on the result, the done event and in usage", async () => {
    const key = await nodai.keys.create({ name: unique("no-tokens") });
    const result = await nodai.queryWorkflow("echo", "hi", { apiKey: key.key });
    assert.deepEqual([result.inputTokens, result.outputTokens], [0, 0]);
    const streamed = await nodai.streamWorkflow("echo", "hi there", { apiKey: key.key }).finalResult();
    assert.deepEqual([streamed.inputTokens, streamed.outputTokens], [0, 0]);
    const usage = await nodai.keys.usage(key.id);
    assert.equal(usage.total_requests, 2);
    assert.deepEqual([usage.total_input_tokens, usage.total_output_tokens], [0, 0]);
    assert.ok(usage.hourly.every((h) => h.input_tokens === 0 && h.output_tokens === 0));
    assert.ok(usage.daily.every((d) => d.input_tokens === 0 && d.output_tokens === 0));
  });

  test("reported tokens are priced, returned, counted in usage and held to a tokens limit", async () => {
    const id = unique("wf-llm").toLowerCase();
    await nodai.workflows.create({
      id,
      name: "LLM",
      upstream_url: tokenUpstream.url,
      price_per_request: 0.001,
      price_per_million_input_tokens: 2.5,
      price_per_million_output_tokens: 10,
    });
    const key = await nodai.keys.create({ name: unique("llm"), limits: [{ metric: "tokens", window: "minute", max: 3000 }] });
    // 0.001 + 1200 × 2.5 / 1e6 + 300 × 10 / 1e6
    const result = await nodai.queryWorkflow(id, "prompt", { apiKey: key.key });
    assert.deepEqual([result.inputTokens, result.outputTokens, result.cost], [1200, 300, 0.007]);
    const done = await nodai.streamWorkflow(id, "prompt", { apiKey: key.key }).finalResult();
    assert.deepEqual([done.inputTokens, done.outputTokens, done.cost], [1200, 300, 0.007]);

    // 3000 tokens counted: the minute's tokens limit refuses the next query.
    const error = await expectError(nodai.queryWorkflow(id, "prompt", { apiKey: key.key }), RateLimitError, 429, "rate_limited");
    assert.deepEqual(error.limit, { scope: "key", metric: "tokens", window: "minute", max: 3000 });

    const usage = await nodai.keys.usage(key.id);
    assert.equal(usage.total_requests, 2);
    assert.equal(usage.total_cost, 0.014);
    assert.deepEqual([usage.total_input_tokens, usage.total_output_tokens], [2400, 600]);
    assert.equal(usage.hourly.reduce((n, h) => n + h.input_tokens, 0), 2400);
    assert.equal(usage.daily.reduce((n, d) => n + d.output_tokens, 0), 600);
    await nodai.workflows.delete(id);
  });
});

describe("workflows", () => {
  test("create, get, list, update, delete", async () => {
    const id = unique("wf").toLowerCase();
    const created = await nodai.workflows.create({ id, name: "Mine", upstream_url: "builtin:echo" });
    assert.equal(created.price_per_request, 0);
    assert.equal((await nodai.workflows.get(id)).name, "Mine");

    const all = await nodai.workflows.list({ limit: 1 }).toArray();
    assert.ok(all.some((w) => w.id === id));
    assert.ok(all.some((w) => w.id === "echo"));

    const updated = await nodai.workflows.update(id, { price_per_request: 0.25 });
    assert.equal(updated.price_per_request, 0.25);
    assert.equal(updated.name, "Mine");
    const key = await nodai.keys.create({ name: unique("wf-key") });
    assert.equal((await nodai.queryWorkflow(id, "x", { apiKey: key.key })).cost, 0.25);

    assert.equal(await nodai.workflows.delete(id), undefined);
    await expectError(nodai.workflows.get(id), NotFoundError, 404, "workflow_not_found");
  });

  test("max_cost_per_request: set on create, read back, capped cost, cleared with null, 422 below the price", async () => {
    const id = unique("wf-max").toLowerCase();
    const created = await nodai.workflows.create({
      id,
      name: "Capped",
      upstream_url: costUpstream.url,
      price_per_request: 0.1,
      max_cost_per_request: 0.3,
    });
    assert.equal(created.price_per_request, 0.1);
    assert.equal(created.max_cost_per_request, 0.3);
    assert.equal((await nodai.workflows.get(id)).max_cost_per_request, 0.3);

    // The upstream reports $0.50: recorded and answered as the maximum.
    const key = await nodai.keys.create({ name: unique("wf-max-key") });
    assert.equal((await nodai.queryWorkflow(id, "x", { apiKey: key.key })).cost, 0.3);

    // Left out: unchanged. null: cleared (and read back as null, not missing).
    assert.equal((await nodai.workflows.update(id, { name: "Renamed" })).max_cost_per_request, 0.3);
    const cleared = await nodai.workflows.update(id, { max_cost_per_request: null });
    assert.equal(cleared.max_cost_per_request, null);
    assert.equal((await nodai.workflows.get(id)).max_cost_per_request, null);
    assert.equal((await nodai.queryWorkflow(id, "x", { apiKey: key.key })).cost, 0.5);

    // Below the price: a typed 422, on update and on create; nothing changes.
    await expectError(
      nodai.workflows.update(id, { max_cost_per_request: 0.05 }),
      ValidationError,
      422,
      "validation_error",
    );
    assert.equal((await nodai.workflows.get(id)).max_cost_per_request, null);
    await expectError(
      nodai.workflows.create({
        id: unique("wf-max").toLowerCase(),
        name: "Below",
        upstream_url: "builtin:echo",
        price_per_request: 0.1,
        max_cost_per_request: 0.05,
      }),
      ValidationError,
      422,
      "validation_error",
    );
    // Equal to the price is allowed; raising the price above an existing maximum is not.
    assert.equal((await nodai.workflows.update(id, { max_cost_per_request: 0.1 })).max_cost_per_request, 0.1);
    await expectError(nodai.workflows.update(id, { price_per_request: 0.2 }), ValidationError, 422, "validation_error");
    await nodai.workflows.delete(id);
  });

  test("422 on an invalid workflow id", async () => {
    await expectError(
      nodai.workflows.create({ id: "Not Valid!", name: "x", upstream_url: "builtin:echo" }),
      ValidationError,
      422,
      "validation_error",
    );
  });
});
