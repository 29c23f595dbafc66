// Unit tests of verify, events and usage reports over a fake `fetch`: how
// `events.send` splits (1000 events, 1 MiB), sums and maps rejected indexes
// back, what it retries (503, failures after sending: events are applied
// once), and the requests `verify` and `usage.query`/`queryCsv` make. What
// the real server does with them is in metering.test.js.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  APIConnectionError,
  AuthenticationError,
  Nodai,
  ServiceUnavailableError,
  ValidationError,
  usageEvent,
} from "@nodai/sdk";

const BASE = "http://nodai.test";
const MiB = 1024 * 1024;

function problem(status, code) {
  return new Response(JSON.stringify({ type: "about:blank", title: "t", status, detail: `detail of ${code}`, code }), {
    status,
    headers: { "content-type": "application/problem+json" },
  });
}

function json(body, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

/** Answers every batch with all accepted, after playing `failures` (Responses, Errors, functions) one per call. */
function fakeServer(failures = [], respond = acceptAll) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init });
    const failure = failures.shift();
    const value = typeof failure === "function" ? await failure(url, init) : failure;
    if (value instanceof Error) throw value;
    if (value instanceof Response) return value;
    return respond(url, init);
  };
  fetch.calls = calls;
  fetch.batches = () => calls.map((c) => JSON.parse(c.init.body));
  return fetch;
}

function acceptAll(_url, init) {
  const body = JSON.parse(init.body);
  return json({ accepted: Array.isArray(body) ? body.length : 1, duplicates: 0, rejected: [] }, 202);
}

function client(fetch, options = {}) {
  return new Nodai({ baseUrl: BASE, adminToken: "admin-token-0123456789", apiKey: undefined, fetch, ...options });
}

const events = (n, extra = {}) =>
  Array.from({ length: n }, (_, i) => usageEvent({ keyId: "key_1", workflowId: "wf", id: `e${i}`, source: "unit", ...extra }));

/** `n` events whose batch is exactly `total` bytes as JSON. */
function sized(n, total) {
  const evs = events(n);
  const base = JSON.stringify(evs).length;
  const pad = Math.floor((total - base) / n);
  let rest = (total - base) % n;
  for (const e of evs) e.source += "x".repeat(pad + (rest-- > 0 ? 1 : 0));
  assert.equal(JSON.stringify(evs).length, total);
  return evs;
}

const broken = () =>
  new Response(new ReadableStream({ start: (c) => c.error(new TypeError("terminated")) }), {
    status: 202,
    headers: { "content-type": "application/json" },
  });
const hang = (_url, init) =>
  new Promise((_resolve, reject) => init.signal.addEventListener("abort", () => reject(init.signal.reason)));

describe("usageEvent", () => {
  test("fills specversion, type, a UUID id and the default source", () => {
    const event = usageEvent({ keyId: "key_1", workflowId: "wf" });
    assert.deepEqual(Object.keys(event).sort(), ["data", "id", "source", "specversion", "subject", "type"]);
    assert.equal(event.specversion, "1.0");
    assert.equal(event.type, "nodai.usage");
    assert.equal(event.source, "nodai-js");
    assert.equal(event.subject, "key_1");
    assert.deepEqual(event.data, { workflow_id: "wf" });
    assert.match(event.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(usageEvent({ keyId: "key_1", workflowId: "wf" }).id, event.id);
  });

  test("maps every field to the wire's", () => {
    const event = usageEvent({
      keyId: "key_1", workflowId: "wf", id: "e1", source: "svc", time: new Date("2026-01-02T03:04:05Z"), cost: 0.012,
      inputTokens: 3, outputTokens: 4, statusCode: 502, durationMs: 17, authorizationId: "auth_x",
    });
    assert.deepEqual(event, {
      specversion: "1.0", id: "e1", source: "svc", type: "nodai.usage", subject: "key_1", time: "2026-01-02T03:04:05.000Z",
      data: { workflow_id: "wf", authorization_id: "auth_x", cost: 0.012, input_tokens: 3, output_tokens: 4, status_code: 502, duration_ms: 17 },
    });
  });
});

describe("events.send (fake fetch)", () => {
  test("splits into batches of 1000 with the batch content type, sums the answers", async () => {
    const fetch = fakeServer();
    const result = await client(fetch).events.send(events(2001));
    assert.deepEqual(result, { accepted: 2001, duplicates: 0, rejected: [] });
    assert.deepEqual(fetch.batches().map((b) => b.length), [1000, 1000, 1]);
    for (const call of fetch.calls) {
      assert.equal(call.url, `${BASE}/api/v1/events`);
      assert.equal(call.init.method, "POST");
      assert.equal(call.init.headers["content-type"], "application/cloudevents-batch+json");
      assert.equal(call.init.headers["authorization"], "Bearer admin-token-0123456789");
    }
    assert.deepEqual(fetch.batches().map((b) => b[0].id), ["e0", "e1000", "e2000"]);
  });

  test("a batch of exactly 1 MiB is one request; a byte more makes two", async () => {
    const exact = fakeServer();
    await client(exact).events.send(sized(900, MiB));
    assert.deepEqual(exact.calls.map((c) => new TextEncoder().encode(c.init.body).length), [MiB]);
    const over = fakeServer();
    await client(over).events.send(sized(900, MiB + 1));
    assert.deepEqual(over.batches().map((b) => b.length), [899, 1]);
  });

  test("sizes are counted in UTF-8 bytes, not characters", async () => {
    const fetch = fakeServer();
    // 700 events of about 1.6 kB in UTF-8 (800 two-byte characters each): more than 1 MiB in all.
    await client(fetch).events.send(events(700, { source: "é".repeat(800) }));
    const sizes = fetch.calls.map((c) => new TextEncoder().encode(c.init.body).length);
    assert.equal(sizes.length, 2);
    assert.ok(sizes.every((s) => s <= MiB), String(sizes));
  });

  test("rejected indexes are mapped back to the caller's list", async () => {
    const respond = (_url, init) => {
      const batch = JSON.parse(init.body);
      const bad = batch.flatMap((e, i) => (e.data.status_code === 599 ? [i] : []));
      return json({
        accepted: batch.length - bad.length,
        duplicates: 0,
        rejected: bad.map((i) => ({ id: batch[i].id, index: i, status: 422, code: "invalid_event", detail: "d" })),
      }, 202);
    };
    const evs = events(2300);
    for (const i of [7, 1005, 2299]) evs[i].data.status_code = 599;
    const result = await client(fakeServer([], respond)).events.send(evs);
    assert.equal(result.accepted, 2297);
    assert.deepEqual(result.rejected.map((r) => [r.index, r.id]), [[7, "e7"], [1005, "e1005"], [2299, "e2299"]]);
  });

  test("a batch is retried after a 503, a timeout and a body cut off: events are applied once", async () => {
    // The last two may follow the server's storing the batch: a repeat is harmless.
    for (const failure of [problem(503, "metering_unavailable"), hang, broken]) {
      const fetch = fakeServer([undefined, failure]);
      const result = await client(fetch, { timeoutMs: 200 }).events.send(events(1500));
      assert.deepEqual(result, { accepted: 1500, duplicates: 0, rejected: [] });
      assert.deepEqual(fetch.batches().map((b) => b.length), [1000, 500, 500]);
      assert.equal(fetch.calls[1].init.body, fetch.calls[2].init.body, "the same batch again");
    }
  });

  test("an error that is not retried is thrown; the batches before it were sent", async () => {
    const fetch = fakeServer([undefined, problem(401, "unauthorized")]);
    await assert.rejects(client(fetch).events.send(events(1200)), AuthenticationError);
    assert.deepEqual(fetch.batches().map((b) => b.length), [1000, 200]);

    const first = json({ accepted: 1000, duplicates: 0, rejected: [] }, 202);
    const lasting = fakeServer([first], () => problem(503, "metering_unavailable"));
    await assert.rejects(client(lasting, { maxRetries: 1 }).events.send(events(1200)), ServiceUnavailableError);
    assert.equal(lasting.calls.length, 3);

    const down = fakeServer([new TypeError("fetch failed")]);
    await assert.rejects(client(down, { maxRetries: 0 }).events.send(events(1)), APIConnectionError);
  });

  test("events are checked before anything is sent; an empty list sends nothing", async () => {
    const fetch = fakeServer();
    const nodai = client(fetch);
    await assert.rejects(nodai.events.send([...events(2), { ...events(1)[0], source: "s".repeat(MiB) }]), (error) => {
      assert.ok(error instanceof RangeError);
      assert.match(error.message, /^event 2 is/);
      return true;
    });
    await assert.rejects(nodai.events.send([events(1)[0], "nope"]), TypeError);
    assert.deepEqual(await nodai.events.send([]), { accepted: 0, duplicates: 0, rejected: [] });
    assert.equal(fetch.calls.length, 0);
  });

  test("sendOne posts one cloudevents+json event, retried after a timeout; a 422 throws", async () => {
    const fetch = fakeServer([hang]);
    const event = events(1)[0];
    assert.deepEqual(await client(fetch, { timeoutMs: 100 }).events.sendOne(event), { accepted: 1, duplicates: 0, rejected: [] });
    assert.equal(fetch.calls.length, 2);
    assert.equal(fetch.calls[1].init.headers["content-type"], "application/cloudevents+json");
    assert.deepEqual(JSON.parse(fetch.calls[1].init.body), event);

    const invalid = fakeServer([problem(422, "key_not_found")]);
    await assert.rejects(client(invalid).events.sendOne(event), (error) => {
      assert.ok(error instanceof ValidationError);
      assert.equal(error.code, "key_not_found");
      return true;
    });
    assert.equal(invalid.calls.length, 1);
  });
});

describe("verify and usage reports (fake fetch)", () => {
  test("verify sends the API's fields, resolves an invalid verdict, and does not replay after sending", async () => {
    const fetch = fakeServer([json({ valid: false, code: "rate_limited", detail: "d", retry_after: 30 })]);
    const v = await client(fetch).verify({ key: "nk_1", workflowId: "wf", hold: 0.5, holdSeconds: 60 });
    assert.deepEqual(v, { valid: false, code: "rate_limited", detail: "d", retry_after: 30 });
    assert.equal(fetch.calls[0].url, `${BASE}/api/v1/verify`);
    assert.deepEqual(JSON.parse(fetch.calls[0].init.body), { key: "nk_1", workflow_id: "wf", hold: 0.5, hold_seconds: 60 });
    assert.equal(fetch.calls[0].init.headers["content-type"], "application/json");

    const minimal = fakeServer([json({ valid: true, code: "valid" })]);
    await client(minimal).verify({ key: "nk_1" });
    assert.equal(minimal.calls[0].init.body, '{"key":"nk_1"}');

    // A verification counts against limits: one whose answer was lost is not sent again.
    const lost = fakeServer([broken]);
    await assert.rejects(client(lost).verify({ key: "nk_1" }), APIConnectionError);
    assert.equal(lost.calls.length, 1);
  });

  test("usage.query sends its parameters and resolves the rows; queryCsv asks for text/csv", async () => {
    const rows = [{ start: "2026-01-01T00:00:00Z", end: "2026-01-02T00:00:00Z", workflow_id: "wf", requests: 1, errors: 0, cost: 0.01, input_tokens: 0, output_tokens: 0 }];
    const fetch = fakeServer([json({ data: rows })]);
    const result = await client(fetch).usage.query({
      from: new Date("2026-01-01T00:00:00Z"), to: "2026-01-31T00:00:00Z", granularity: "day",
      groupBy: ["workflow_id", "customer_id"], keyId: "key_1", customerId: "c", workflowId: "wf",
    });
    assert.deepEqual(result, rows);
    const url = new URL(fetch.calls[0].url);
    assert.equal(url.pathname, "/api/v1/usage");
    assert.deepEqual(Object.fromEntries(url.searchParams), {
      from: "2026-01-01T00:00:00.000Z", to: "2026-01-31T00:00:00Z", granularity: "day",
      group_by: "workflow_id,customer_id", key_id: "key_1", customer_id: "c", workflow_id: "wf",
    });
    assert.equal(fetch.calls[0].init.headers["accept"], "application/json");

    const csv = "start,end,key_id,requests,errors,cost,input_tokens,output_tokens\n";
    const text = fakeServer([new Response(csv, { headers: { "content-type": "text/csv; charset=utf-8" } })]);
    assert.equal(await client(text).usage.queryCsv({ groupBy: "key_id" }), csv);
    assert.equal(text.calls[0].init.headers["accept"], "text/csv");
    assert.equal(new URL(text.calls[0].url).search, "?group_by=key_id");

    const none = fakeServer([json({ data: [] })]);
    assert.deepEqual(await client(none).usage.query(), []);
    assert.equal(new URL(none.calls[0].url).search, "");
  });
});
