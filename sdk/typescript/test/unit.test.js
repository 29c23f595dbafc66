// Unit tests with a fake `fetch` injected through the `fetch` option: retry
// and backoff rules, Retry-After, timeouts, error mapping, environment
// variables and request shapes. No server here; tests against the real
// server are in server.test.js and webhooks.test.js.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, test } from "node:test";
import {
  APIConnectionError,
  AuthenticationError,
  ConcurrencyLimitError,
  ConflictError,
  CostLimitExceededError,
  IdempotencyConflictError,
  InsufficientCreditsError,
  NodaiError,
  Nodai,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  ServiceUnavailableError,
  UpstreamError,
  ValidationError,
} from "@nodai/sdk";

const BASE = "http://nodai.test";

function problem(status, code, headers = {}) {
  return new Response(JSON.stringify({ type: "about:blank", title: "t", status, detail: `detail of ${code}`, code }), {
    status,
    headers: { "content-type": "application/problem+json", ...headers },
  });
}

function json(body, status = 200, headers = {}) {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

const QUERY_OK = { output: "hi", usage: { cost: 0.25, duration_ms: 3 }, request_id: "req_1" };

/** A fetch that plays `script` (Responses, Errors, or functions of (url, init)) in order, recording calls. */
function fakeFetch(script) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, init, at: performance.now() });
    const step = script[Math.min(calls.length - 1, script.length - 1)];
    const value = typeof step === "function" ? await step(url, init) : step;
    if (value instanceof Error) throw value;
    return typeof step === "function" ? value : value.clone();
  };
  fn.calls = calls;
  return fn;
}

function client(fetch, options = {}) {
  return new Nodai({ baseUrl: BASE, apiKey: "nk_test", adminToken: "admin-token-0123456789", fetch, ...options });
}

describe("retries (fake fetch)", () => {
  test("503 is retried, then succeeds", async () => {
    const fetch = fakeFetch([problem(503, "metering_unavailable"), json(QUERY_OK)]);
    const result = await client(fetch).queryWorkflow("wf", "hi");
    assert.equal(result.output, "hi");
    assert.equal(fetch.calls.length, 2);
  });

  test("503 gives up after maxRetries with ServiceUnavailableError", async () => {
    const fetch = fakeFetch([problem(503, "metering_unavailable")]);
    await assert.rejects(client(fetch, { maxRetries: 1 }).keys.get("key_1"), (error) => {
      assert.ok(error instanceof ServiceUnavailableError);
      assert.equal(error.code, "metering_unavailable");
      return true;
    });
    assert.equal(fetch.calls.length, 2);
  });

  test("maxRetries: 0 makes one attempt", async () => {
    const fetch = fakeFetch([problem(503, "metering_unavailable")]);
    await assert.rejects(client(fetch, { maxRetries: 0 }).keys.get("key_1"), ServiceUnavailableError);
    assert.equal(fetch.calls.length, 1);
  });

  test("connection failures are retried with backoff, then APIConnectionError", async () => {
    const fetch = fakeFetch([new TypeError("fetch failed")]);
    const started = performance.now();
    await assert.rejects(client(fetch, { maxRetries: 2 }).keys.get("key_1"), (error) => {
      assert.ok(error instanceof APIConnectionError);
      assert.ok(error instanceof NodaiError);
      assert.equal(error.status, undefined);
      assert.equal(error.timedOut, false);
      return true;
    });
    assert.equal(fetch.calls.length, 3);
    // Backoff is about 0.5 s then 1 s, with +-25% jitter.
    assert.ok(fetch.calls[1].at - fetch.calls[0].at >= 370, "first backoff");
    assert.ok(fetch.calls[2].at - fetch.calls[1].at >= 745, "second backoff");
    assert.ok(performance.now() - started < 5000);
  });

  test("a connection failure then a 200 succeeds", async () => {
    const fetch = fakeFetch([new TypeError("fetch failed"), json(QUERY_OK)]);
    const result = await client(fetch).queryWorkflow("wf", "hi");
    assert.equal(result.requestId, "req_1");
    assert.equal(fetch.calls.length, 2);
  });

  test("a body that breaks off after the headers is APIConnectionError, not retried", async () => {
    const broken = () =>
      new Response(new ReadableStream({ start: (c) => c.error(new TypeError("terminated")) }), {
        status: 200,
        headers: { "content-type": "application/json" },
      });
    const fetch = fakeFetch([broken, json(QUERY_OK)]);
    await assert.rejects(client(fetch).queryWorkflow("wf", "hi"), (error) => {
      assert.ok(error instanceof APIConnectionError);
      assert.match(error.message, /terminated/);
      return true;
    });
    assert.equal(fetch.calls.length, 1);
  });

  test("other errors are not retried (500, 502, 400)", async () => {
    for (const [status, code] of [
      [500, "internal"],
      [502, "upstream_error"],
      [400, "invalid_json"],
    ]) {
      const fetch = fakeFetch([problem(status, code), json(QUERY_OK)]);
      await assert.rejects(client(fetch).queryWorkflow("wf", 1), NodaiError);
      assert.equal(fetch.calls.length, 1, `status ${status}`);
    }
  });

  test("429 is not retried unless the caller opts in", async () => {
    const fetch = fakeFetch([problem(429, "rate_limited", { "retry-after": "1" }), json(QUERY_OK)]);
    await assert.rejects(client(fetch).queryWorkflow("wf", "hi"), (error) => {
      assert.ok(error instanceof RateLimitError);
      assert.equal(error.retryAfter, 1);
      assert.equal(error.code, "rate_limited");
      return true;
    });
    assert.equal(fetch.calls.length, 1);
  });

  test("opted in, 429 waits for Retry-After: 1, then succeeds", async () => {
    const fetch = fakeFetch([problem(429, "rate_limited", { "retry-after": "1" }), json(QUERY_OK)]);
    const started = performance.now();
    const result = await client(fetch).queryWorkflow("wf", "hi", { retryOnRateLimit: true });
    assert.equal(result.output, "hi");
    assert.equal(fetch.calls.length, 2);
    const waited = fetch.calls[1].at - fetch.calls[0].at;
    assert.ok(waited >= 990, `waited only ${waited} ms`);
    assert.ok(performance.now() - started < 3000);
  });

  test("opt-in on the client works too", async () => {
    const fetch = fakeFetch([problem(429, "rate_limited", { "retry-after": "1" }), json(QUERY_OK)]);
    const result = await client(fetch, { retryOnRateLimit: true }).queryWorkflow("wf", "hi");
    assert.equal(result.output, "hi");
    assert.equal(fetch.calls.length, 2);
  });

  test("a Retry-After beyond maxRetryAfterMs is thrown at once, not waited for", async () => {
    const fetch = fakeFetch([problem(429, "rate_limited", { "retry-after": "3599" }), json(QUERY_OK)]);
    const started = performance.now();
    await assert.rejects(
      client(fetch, { retryOnRateLimit: true }).queryWorkflow("wf", "hi"),
      (error) => error instanceof RateLimitError && error.retryAfter === 3599,
    );
    assert.equal(fetch.calls.length, 1);
    assert.ok(performance.now() - started < 500);
  });

  test("a 429 without Retry-After is not retried even when opted in", async () => {
    const fetch = fakeFetch([problem(429, "rate_limited"), json(QUERY_OK)]);
    await assert.rejects(client(fetch, { retryOnRateLimit: true }).queryWorkflow("wf", "hi"), (error) => {
      return error instanceof RateLimitError && error.retryAfter === undefined;
    });
    assert.equal(fetch.calls.length, 1);
  });

  test("Retry-After as an HTTP date", async () => {
    const when = new Date(Date.now() + 1500).toUTCString();
    const fetch = fakeFetch([problem(429, "rate_limited", { "retry-after": when })]);
    await assert.rejects(client(fetch).queryWorkflow("wf", "hi"), (error) => {
      assert.ok(error.retryAfter >= 0 && error.retryAfter <= 2, String(error.retryAfter));
      return true;
    });
  });

  test("a timeout is APIConnectionError with timedOut, and is not retried", async () => {
    const hang = (_url, init) =>
      new Promise((_resolve, reject) => init.signal.addEventListener("abort", () => reject(init.signal.reason)));
    const fetch = fakeFetch([hang]);
    await assert.rejects(client(fetch, { timeoutMs: 100 }).queryWorkflow("wf", "hi"), (error) => {
      assert.ok(error instanceof APIConnectionError);
      assert.equal(error.timedOut, true);
      assert.match(error.message, /timed out after 100 ms/);
      return true;
    });
    assert.equal(fetch.calls.length, 1);
  });

  test("the caller's AbortSignal cancels, also during a backoff wait", async () => {
    const fetch = fakeFetch([problem(503, "metering_unavailable")]);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const started = performance.now();
    await assert.rejects(
      client(fetch, { maxRetries: 5 }).keys.get("key_1", { signal: controller.signal }),
      (error) => error.name === "AbortError",
    );
    assert.equal(fetch.calls.length, 1);
    assert.ok(performance.now() - started < 400);
  });
});

describe("errors from responses (fake fetch)", () => {
  const cases = [
    [400, "invalid_json", ValidationError],
    [400, "invalid_query", ValidationError],
    [401, "unauthorized", AuthenticationError],
    [402, "cost_limit_exceeded", CostLimitExceededError],
    [402, "insufficient_credits", InsufficientCreditsError],
    [403, "invalid_api_key", PermissionDeniedError],
    [404, "workflow_not_found", NotFoundError],
    [404, "customer_not_found", NotFoundError],
    [404, "grant_not_found", NotFoundError],
    [409, "workflow_exists", ConflictError],
    [409, "key_revoked", ConflictError],
    [409, "customer_exists", ConflictError],
    [409, "customer_has_keys", ConflictError],
    [409, "idempotency_conflict", IdempotencyConflictError],
    [413, "payload_too_large", ValidationError],
    [422, "validation_error", ValidationError],
    [429, "rate_limited", RateLimitError],
    [429, "concurrency_limited", ConcurrencyLimitError],
    [502, "upstream_error", UpstreamError],
    [503, "metering_unavailable", ServiceUnavailableError],
    [504, "upstream_timeout", UpstreamError],
  ];
  for (const [status, code, ErrorClass] of cases) {
    test(`${status} ${code} is ${ErrorClass.name}`, async () => {
      const fetch = fakeFetch([problem(status, code, { "x-request-id": "req_abc" })]);
      await assert.rejects(client(fetch, { maxRetries: 0 }).queryWorkflow("wf", null), (error) => {
        assert.equal(error.constructor, ErrorClass);
        assert.ok(error instanceof NodaiError);
        assert.ok(error instanceof Error);
        assert.equal(error.name, ErrorClass.name);
        assert.equal(error.status, status);
        assert.equal(error.code, code);
        assert.equal(error.detail, `detail of ${code}`);
        assert.equal(error.requestId, "req_abc");
        return true;
      });
    });
  }

  test("a code's own class is a subclass of its status's class", () => {
    assert.ok(new InsufficientCreditsError("x") instanceof CostLimitExceededError);
    assert.ok(new IdempotencyConflictError("x") instanceof ConflictError);
    assert.ok(new ConcurrencyLimitError("x") instanceof RateLimitError);
  });

  test("the refusing limit is read from the problem's `limit`", async () => {
    const withLimit = (status, code, limit, headers = {}) =>
      new Response(JSON.stringify({ type: "about:blank", title: "t", status, detail: "d", code, limit }), {
        status,
        headers: { "content-type": "application/problem+json", ...headers },
      });
    const concurrent = withLimit(429, "concurrency_limited", { scope: "customer", metric: "concurrent", max: 5 }, { "retry-after": "1" });
    await assert.rejects(client(fakeFetch([concurrent]), { maxRetries: 0 }).queryWorkflow("wf", null), (error) => {
      assert.ok(error instanceof ConcurrencyLimitError && error instanceof RateLimitError);
      assert.deepEqual(error.limit, { scope: "customer", metric: "concurrent", max: 5 });
      assert.equal(error.retryAfter, 1);
      return true;
    });
    // A RateLimitError too: retryOnRateLimit waits out its Retry-After.
    const retried = fakeFetch([concurrent, json(QUERY_OK)]);
    assert.equal((await client(retried, { retryOnRateLimit: true }).queryWorkflow("wf", null)).requestId, "req_1");
    assert.equal(retried.calls.length, 2);

    const tokens = withLimit(429, "rate_limited", { scope: "key", metric: "tokens", window: "day", max: 1000 });
    await assert.rejects(client(fakeFetch([tokens])).queryWorkflow("wf", null), (error) => {
      assert.deepEqual(error.limit, { scope: "key", metric: "tokens", window: "day", max: 1000 });
      assert.equal(error.limit.scope, "key");
      return true;
    });
    const cost = withLimit(402, "cost_limit_exceeded", { scope: "customer", metric: "cost", window: "month", max: 12.5 });
    await assert.rejects(client(fakeFetch([cost])).queryWorkflow("wf", null), (error) => {
      assert.ok(error instanceof CostLimitExceededError);
      assert.deepEqual(error.limit, { scope: "customer", metric: "cost", window: "month", max: 12.5 });
      return true;
    });
    // Absent or malformed: undefined, never an error of the SDK's own.
    for (const limit of [undefined, null, "x", { scope: "key" }]) {
      await assert.rejects(client(fakeFetch([withLimit(429, "rate_limited", limit)])).queryWorkflow("wf", null), (error) => {
        assert.ok(error instanceof RateLimitError);
        assert.equal(error.limit, undefined);
        return true;
      });
    }
    await assert.rejects(client(fakeFetch([problem(402, "insufficient_credits")])).queryWorkflow("wf", null), (error) => {
      assert.ok(error instanceof InsufficientCreditsError);
      assert.equal(error.limit, undefined);
      return true;
    });
  });

  test("an unknown status is a plain NodaiError; a non-JSON body becomes the detail", async () => {
    const fetch = fakeFetch([new Response("teapot", { status: 418, headers: { "content-type": "text/plain" } })]);
    await assert.rejects(client(fetch).keys.get("k"), (error) => {
      assert.equal(error.constructor, NodaiError);
      assert.equal(error.status, 418);
      assert.equal(error.code, undefined);
      assert.equal(error.detail, "teapot");
      return true;
    });
  });
});

describe("request shapes (fake fetch)", () => {
  test("queryWorkflow sends X-API-Key and {input}, returns typed result with rate limit", async () => {
    const fetch = fakeFetch([
      json(QUERY_OK, 200, { "x-ratelimit-limit": "10", "x-ratelimit-remaining": "9", "x-ratelimit-reset": "1795615980" }),
    ]);
    const result = await client(fetch).queryWorkflow("my wf", { a: 1 }, { apiKey: "nk_other" });
    const [call] = fetch.calls;
    assert.equal(call.url, `${BASE}/api/v1/workflows/my%20wf/query`);
    assert.equal(call.init.method, "POST");
    assert.equal(call.init.headers["x-api-key"], "nk_other");
    assert.equal(call.init.headers["authorization"], undefined);
    assert.deepEqual(JSON.parse(call.init.body), { input: { a: 1 } });
    assert.deepEqual(result, {
      output: "hi",
      cost: 0.25,
      durationMs: 3,
      requestId: "req_1",
      inputTokens: 0,
      outputTokens: 0,
      rateLimit: { limit: 10, remaining: 9, reset: 1795615980 },
    });
  });

  test("queryWorkflow returns the tokens the upstream reported", async () => {
    const usage = { cost: 0.007, duration_ms: 4, input_tokens: 1200, output_tokens: 300 };
    const fetch = fakeFetch([json({ ...QUERY_OK, usage })]);
    const result = await client(fetch).queryWorkflow("wf", "x");
    assert.deepEqual([result.inputTokens, result.outputTokens, result.cost], [1200, 300, 0.007]);
  });

  test("rateLimit is null without X-RateLimit-* headers; undefined input is sent as null", async () => {
    const fetch = fakeFetch([json(QUERY_OK)]);
    const result = await client(fetch).queryWorkflow("wf", undefined);
    assert.equal(result.rateLimit, null);
    assert.deepEqual(JSON.parse(fetch.calls[0].init.body), { input: null });
  });

  test("admin calls send the bearer token and no API key", async () => {
    const fetch = fakeFetch([json({ data: [], next_cursor: null })]);
    await client(fetch).keys.listPage({ limit: 5, cursor: "c1" });
    const [call] = fetch.calls;
    assert.equal(call.url, `${BASE}/api/v1/api-keys?limit=5&cursor=c1`);
    assert.equal(call.init.headers["authorization"], "Bearer admin-token-0123456789");
    assert.equal(call.init.headers["x-api-key"], undefined);
  });

  test("partial update: undefined is left out, null is sent to clear", async () => {
    const fetch = fakeFetch([json({ id: "key_1" })]);
    await client(fetch).keys.update("key_1", { name: undefined, rate_limit_per_hour: null, cost_limit_per_month: 5 });
    const [call] = fetch.calls;
    assert.equal(call.init.method, "PUT");
    assert.equal(call.init.body, '{"rate_limit_per_hour":null,"cost_limit_per_month":5}');
  });

  test("list pages through next_cursor lazily", async () => {
    const pages = {
      "": { data: [1, 2], next_cursor: "b" },
      b: { data: [3, 4], next_cursor: "c" },
      c: { data: [5], next_cursor: null },
    };
    const fetch = fakeFetch([(url) => json(pages[new URL(url).searchParams.get("cursor") ?? ""])]);
    const iterator = client(fetch).keys.list({ limit: 2 });
    assert.equal(fetch.calls.length, 0, "nothing fetched before iterating");
    const seen = [];
    for await (const item of iterator) {
      seen.push(item);
      if (item === 2) assert.equal(fetch.calls.length, 1, "second page fetched only when needed");
    }
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
    assert.equal(fetch.calls.length, 3);
    assert.ok(fetch.calls.every((c) => new URL(c.url).searchParams.get("limit") === "2"));
  });

  test("a repeated cursor stops with an error instead of looping", async () => {
    const fetch = fakeFetch([json({ data: [1], next_cursor: "same" })]);
    await assert.rejects(client(fetch).workflows.list().toArray(), /cursor same twice/);
  });

  test("customers: paths, q, usage range, partial update", async () => {
    const fetch = fakeFetch([json({ id: "acme" })]);
    const nodai = client(fetch);
    await nodai.customers.create({ id: "acme", name: "Acme", limits: [{ metric: "requests", window: "minute", max: 10 }] });
    await nodai.customers.listPage({ q: "ac", limit: 5 });
    await nodai.customers.get("a/b");
    await nodai.customers.update("acme", { email: null, name: undefined, limits: null });
    await nodai.customers.delete("acme");
    await nodai.customers.usage("acme", { from: new Date("2026-11-25T00:00:00Z") });
    assert.deepEqual(
      fetch.calls.map((c) => [c.init.method, c.url.slice(BASE.length)]),
      [
        ["POST", "/api/v1/customers"],
        ["GET", "/api/v1/customers?limit=5&q=ac"],
        ["GET", "/api/v1/customers/a%2Fb"],
        ["PUT", "/api/v1/customers/acme"],
        ["DELETE", "/api/v1/customers/acme"],
        ["GET", "/api/v1/customers/acme/usage?from=2026-11-25T00%3A00%3A00.000Z"],
      ],
    );
    assert.deepEqual(JSON.parse(fetch.calls[0].init.body), {
      id: "acme",
      name: "Acme",
      limits: [{ metric: "requests", window: "minute", max: 10 }],
    });
    assert.equal(fetch.calls[3].init.body, '{"email":null,"limits":null}');
  });

  const GRANT = {
    id: "gr_1", amount: 2.5, remaining: 2.5, expires_at: null, created_at: "2026-01-01T00:00:00Z", voided_at: null, description: null,
  };

  test("grantCredits always sends an Idempotency-Key, the same on every retry, and is retried even after sending", async () => {
    const broken = () =>
      new Response(new ReadableStream({ start: (c) => c.error(new TypeError("terminated")) }), {
        status: 201,
        headers: { "content-type": "application/json" },
      });
    const hang = (_url, init) =>
      new Promise((_resolve, reject) => init.signal.addEventListener("abort", () => reject(init.signal.reason)));
    // A timeout and a body cut off would not be retried for another POST:
    // with the key, the server answers the repeat with the first grant.
    const fetch = fakeFetch([hang, broken, problem(503, "not_ready"), json(GRANT, 201)]);
    const grant = await client(fetch, { timeoutMs: 200, maxRetries: 3 }).customers.grantCredits("acme", { amount: 2.5 });
    assert.deepEqual(grant, GRANT);
    assert.equal(fetch.calls.length, 4);
    const keys = new Set(fetch.calls.map((c) => c.init.headers["idempotency-key"]));
    assert.equal(keys.size, 1);
    const [key] = keys;
    assert.match(key, /^[\x21-\x7e]{1,255}$/);
    for (const call of fetch.calls) {
      assert.equal(call.init.method, "POST");
      assert.equal(call.url, `${BASE}/api/v1/customers/acme/credits`);
      assert.equal(call.init.body, '{"amount":2.5}');
    }

    // Each call makes its own key; one given is sent as is, with the whole body.
    const next = fakeFetch([json(GRANT, 201)]);
    const nodai = client(next);
    await nodai.customers.grantCredits("acme", { amount: 1 });
    await nodai.customers.grantCredits(
      "a/b",
      { amount: 0.3, expires_at: new Date("2030-01-02T00:00:00Z"), description: "top-up" },
      { idempotencyKey: "order-1042" },
    );
    const [first, second] = next.calls;
    assert.notEqual(first.init.headers["idempotency-key"], key);
    assert.equal(second.init.headers["idempotency-key"], "order-1042");
    assert.equal(second.url, `${BASE}/api/v1/customers/a%2Fb/credits`);
    assert.deepEqual(JSON.parse(second.init.body), {
      amount: 0.3,
      expires_at: "2030-01-02T00:00:00.000Z",
      description: "top-up",
    });

    // maxRetries still bounds it.
    const failing = fakeFetch([new TypeError("fetch failed")]);
    await assert.rejects(client(failing, { maxRetries: 0 }).customers.grantCredits("acme", { amount: 1 }), APIConnectionError);
    assert.equal(failing.calls.length, 1);
  });

  test("credits and voidCredits: paths, no key, and a void is not replayed after sending", async () => {
    const credits = { balance: -0.05, grants: [{ ...GRANT, remaining: 0, voided_at: "2026-01-02T00:00:00Z" }] };
    const fetch = fakeFetch([json(credits), json(credits.grants[0])]);
    const nodai = client(fetch);
    assert.deepEqual(await nodai.customers.credits("acme"), credits);
    assert.deepEqual(await nodai.customers.voidCredits("acme", "gr/1"), credits.grants[0]);
    assert.deepEqual(
      fetch.calls.map((c) => [c.init.method, c.url.slice(BASE.length), c.init.body, c.init.headers["idempotency-key"]]),
      [
        ["GET", "/api/v1/customers/acme/credits", undefined, undefined],
        ["POST", "/api/v1/customers/acme/credits/gr%2F1/void", undefined, undefined],
      ],
    );
    const hang = (_url, init) =>
      new Promise((_resolve, reject) => init.signal.addEventListener("abort", () => reject(init.signal.reason)));
    const slow = fakeFetch([hang, json(GRANT)]);
    await assert.rejects(client(slow, { timeoutMs: 100 }).customers.voidCredits("acme", "gr_1"), APIConnectionError);
    assert.equal(slow.calls.length, 1);
  });

  test("usage turns Dates into RFC 3339", async () => {
    const fetch = fakeFetch([json({ key_id: "key_1" })]);
    await client(fetch).keys.usage("key_1", { from: new Date("2026-11-25T00:00:00Z"), to: "2026-11-26T00:00:00Z" });
    const url = new URL(fetch.calls[0].url);
    assert.equal(url.searchParams.get("from"), "2026-11-25T00:00:00.000Z");
    assert.equal(url.searchParams.get("to"), "2026-11-26T00:00:00Z");
  });

  test("revoke resolves to undefined on 204", async () => {
    const fetch = fakeFetch([new Response(null, { status: 204 })]);
    assert.equal(await client(fetch).keys.revoke("key_1"), undefined);
    assert.equal(fetch.calls[0].init.method, "DELETE");
  });
});

describe("configuration", () => {
  test("reads NODAI_* from process.env; explicit options win", async () => {
    const saved = { ...process.env };
    try {
      process.env.NODAI_BASE_URL = "http://from-env.test:1234/";
      process.env.NODAI_API_KEY = "nk_env";
      process.env.NODAI_ADMIN_TOKEN = "env-admin-token-0123";
      const fetch = fakeFetch([json(QUERY_OK)]);
      const fromEnv = new Nodai({ fetch });
      assert.equal(fromEnv.baseUrl, "http://from-env.test:1234");
      await fromEnv.queryWorkflow("wf", 1);
      assert.equal(fetch.calls[0].init.headers["x-api-key"], "nk_env");
      await fromEnv.keys.get("k").catch(() => {});
      assert.equal(fetch.calls[1].init.headers["authorization"], "Bearer env-admin-token-0123");

      const explicit = new Nodai({ baseUrl: "http://explicit.test", apiKey: "nk_x", fetch });
      assert.equal(explicit.baseUrl, "http://explicit.test");
    } finally {
      for (const name of ["NODAI_BASE_URL", "NODAI_API_KEY", "NODAI_ADMIN_TOKEN"]) {
        if (saved[name] === undefined) delete process.env[name];
        else process.env[name] = saved[name];
      }
    }
  });

  test("works where there is no `process` (browsers, edge runtimes)", () => {
    // In a child process, so removing the global cannot disturb the runner.
    const script = `
      import { Nodai } from "@nodai/sdk";
      const proc = globalThis.process;
      Object.defineProperty(globalThis, "process", { value: undefined, configurable: true, writable: true });
      let baseUrl;
      try { baseUrl = new Nodai().baseUrl; } finally {
        Object.defineProperty(globalThis, "process", { value: proc, configurable: true, writable: true });
      }
      proc.stdout.write(baseUrl);
    `;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      cwd: new URL("..", import.meta.url),
      env: { ...process.env, NODAI_BASE_URL: "http://should-not-be-read.test" },
    });
    assert.equal(out.toString(), "http://127.0.0.1:8080");
  });
});
