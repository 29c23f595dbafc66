// Metering of work served outside nodai, against a real `nodai serve` (see
// support/server.js): `verify` (every verdict resolves, only bad requests
// throw), `events.send` (batches of 1000 events and 1 MiB, applied once per
// source and id, rejected events mapped back to the caller's list) and
// `events.sendOne`, and the usage report (`usage.query`, `usage.queryCsv`).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AuthenticationError, Nodai, NodaiError, ValidationError, usageEvent } from "@nodai/sdk";
import { startServer, waitFor } from "./support/server.js";

for (const name of ["NODAI_API_KEY", "NODAI_ADMIN_TOKEN", "NODAI_BASE_URL"]) delete process.env[name];

let server;
let nodai;
/** Every request `nodai` sent: { url, method, contentType, body }. */
const sent = [];
const price = 0.002;
const MiB = 1024 * 1024;

let counter = 0;
const unique = (prefix) => `${prefix}-${process.pid}-${++counter}`;

before(async () => {
  server = await startServer();
  const recording = (url, init) => {
    sent.push({ url, method: init.method, contentType: init.headers["content-type"], body: init.body });
    return fetch(url, init);
  };
  nodai = new Nodai({ baseUrl: server.baseUrl, adminToken: server.adminToken, apiKey: undefined, fetch: recording });
  await nodai.workflows.create({ id: "echo", name: "Echo", upstream_url: "builtin:echo", price_per_request: price });
});

after(async () => {
  const exit = await server?.stop();
  if (exit) assert.equal(exit.code, 0, `nodai exited with ${JSON.stringify(exit)}\n${server.logs()}`);
});

/** The event posts sent while `fn` ran. */
async function postsDuring(fn) {
  const from = sent.length;
  const value = await fn();
  const posts = sent.slice(from).filter((r) => r.method === "POST" && new URL(r.url).pathname === "/api/v1/events");
  return { value, posts };
}

const events = (keyId, workflowId, n, source, extra = {}) =>
  Array.from({ length: n }, (_, i) => usageEvent({ keyId, workflowId, id: `ev-${i}`, source, ...extra }));

/** The usage report once it counts `requests` in all (it may trail the answer to the events by a moment). */
function reportOf(requests, params) {
  return waitFor(
    async () => {
      const rows = await nodai.usage.query(params);
      return rows.reduce((n, r) => n + r.requests, 0) === requests ? rows : undefined;
    },
    { timeoutMs: 90_000, what: `a usage report of ${requests} requests` },
  );
}

const costOf = (limits) => limits.find((l) => l.metric === "cost").remaining;

describe("verify", () => {
  test("a valid key: an authorization, a hold and its limits after it", async () => {
    const key = await nodai.keys.create({ name: unique("v"), workflow_ids: ["echo"], rate_limit_per_hour: 10, cost_limit_per_month: 1 });
    const before = Date.now();
    const v = await nodai.verify({ key: key.key, workflowId: "echo" });
    assert.equal(v.valid, true);
    assert.equal(v.code, "valid");
    assert.equal(v.key_id, key.id);
    assert.equal(v.customer_id, undefined, "omitted without a customer");
    assert.match(v.authorization_id, /^auth_[0-9a-f]{32}$/);
    assert.equal(v.hold, price, "the workflow's price by default");
    const expires = Date.parse(v.expires_at);
    assert.ok(expires > before + 290_000 && expires < before + 310_000, v.expires_at);
    const requests = v.limits.find((l) => l.metric === "requests");
    assert.deepEqual([requests.scope, requests.window, requests.max, requests.remaining], ["key", "hour", 10, 9]);
    assert.ok(Date.parse(requests.reset) > before);
    assert.equal(costOf(v.limits), 1 - price);

    const again = await nodai.verify({ key: key.key, workflowId: "echo", hold: 0.25, holdSeconds: 60 });
    assert.notEqual(again.authorization_id, v.authorization_id);
    assert.equal(again.hold, 0.25);
    assert.ok(Date.parse(again.expires_at) < before + 70_000);
    assert.ok(Math.abs(costOf(again.limits) - (1 - price - 0.25)) < 1e-9);
  });

  test("an unknown key is a verdict, not an exception", async () => {
    const v = await nodai.verify({ key: `nk_${"0".repeat(64)}` });
    assert.equal(v.valid, false);
    assert.equal(v.code, "invalid_api_key");
    assert.equal(typeof v.detail, "string");
    assert.equal(v.authorization_id, undefined);
  });

  test("rate limited on the third verification of a key with rate_limit_per_hour 2", async () => {
    const key = await nodai.keys.create({ name: unique("rl"), rate_limit_per_hour: 2 });
    const verdicts = [];
    for (let i = 0; i < 3; i++) verdicts.push(await nodai.verify({ key: key.key, workflowId: "echo" }));
    assert.deepEqual(verdicts.map((v) => v.valid), [true, true, false]);
    assert.deepEqual(verdicts.slice(0, 2).map((v) => v.limits[0].remaining), [1, 0]);
    const refused = verdicts[2];
    assert.equal(refused.code, "rate_limited");
    assert.equal(refused.key_id, key.id);
    assert.deepEqual(refused.limit, { scope: "key", metric: "requests", window: "hour", max: 2 });
    assert.ok(refused.retry_after >= 3500 && refused.retry_after <= 3700, String(refused.retry_after));
  });

  test("inactive keys, workflows, a customer's cost limit and prepaid credits are verdicts", async () => {
    const inactive = await nodai.keys.create({ name: unique("off"), active: false });
    assert.equal((await nodai.verify({ key: inactive.key })).code, "key_inactive");

    await nodai.workflows.create({ id: unique("other"), name: "Other", upstream_url: "builtin:echo" }).then(async (other) => {
      const limited = await nodai.keys.create({ name: unique("wf"), workflow_ids: ["echo"] });
      assert.equal((await nodai.verify({ key: limited.key, workflowId: other.id })).code, "workflow_not_allowed");
      assert.equal((await nodai.verify({ key: limited.key, workflowId: unique("nowhere") })).code, "workflow_not_found");
    });

    const customer = await nodai.customers.create({ id: unique("cust"), name: "C", limits: [{ metric: "cost", window: "month", max: 0.5 }] });
    const key = await nodai.keys.create({ name: unique("ck"), customer_id: customer.id });
    const v = await nodai.verify({ key: key.key });
    assert.deepEqual([v.valid, v.customer_id, v.hold], [true, customer.id, 0]);
    assert.ok((await nodai.verify({ key: key.key, hold: 0.6 })).valid, "the one that crosses the limit is admitted");
    const refused = await nodai.verify({ key: key.key, hold: 0.01 });
    assert.deepEqual([refused.valid, refused.code], [false, "cost_limit_exceeded"]);
    assert.deepEqual(refused.limit, { scope: "customer", metric: "cost", window: "month", max: 0.5 });

    const prepaid = await nodai.customers.create({ id: unique("pre"), name: "P", billing: "prepaid" });
    const prepaidKey = await nodai.keys.create({ name: unique("pk"), customer_id: prepaid.id });
    assert.equal((await nodai.verify({ key: prepaidKey.key })).code, "insufficient_credits");
  });

  test("a verification holds a place in flight until its event settles it", async () => {
    const key = await nodai.keys.create({ name: unique("conc"), max_concurrent: 1 });
    const first = await nodai.verify({ key: key.key, workflowId: "echo" });
    assert.equal(first.valid, true);
    const busy = await nodai.verify({ key: key.key, workflowId: "echo" });
    assert.deepEqual([busy.valid, busy.code], [false, "concurrency_limited"]);
    assert.deepEqual(busy.limit, { scope: "key", metric: "concurrent", max: 1 });
    assert.equal(typeof busy.retry_after, "number");
    await nodai.events.send([usageEvent({ keyId: key.id, workflowId: "echo", authorizationId: first.authorization_id })]);
    assert.equal((await nodai.verify({ key: key.key, workflowId: "echo" })).valid, true);
  });

  test("bad requests throw typed errors and count nothing", async () => {
    const key = await nodai.keys.create({ name: unique("bad"), rate_limit_per_hour: 1 });
    for (const params of [{ holdSeconds: 0 }, { holdSeconds: 86_401 }, { hold: -1 }, { hold: 0.0000001 }]) {
      await assert.rejects(nodai.verify({ key: key.key, ...params }), (error) => {
        assert.ok(error instanceof ValidationError, `${JSON.stringify(params)}: ${error}`);
        assert.deepEqual([error.status, error.code], [422, "validation_error"]);
        return true;
      });
    }
    const wrong = new Nodai({ baseUrl: server.baseUrl, adminToken: "not-the-admin-token" });
    await assert.rejects(wrong.verify({ key: key.key }), AuthenticationError);
    assert.equal((await nodai.verify({ key: key.key })).valid, true);
    assert.equal((await nodai.verify({ key: key.key })).code, "rate_limited");
  });
});

describe("events", () => {
  test("2500 events go in three batches; sent again they are all duplicates", async () => {
    const key = await nodai.keys.create({ name: unique("batch") });
    const evs = events(key.id, "echo", 2500, unique("batch"), { cost: 0.001, inputTokens: 2 });
    const { value: result, posts } = await postsDuring(() => nodai.events.send(evs));
    assert.deepEqual(result, { accepted: 2500, duplicates: 0, rejected: [] });
    assert.deepEqual(posts.map((p) => JSON.parse(p.body).length), [1000, 1000, 500]);
    assert.deepEqual([...new Set(posts.map((p) => p.contentType))], ["application/cloudevents-batch+json"]);

    assert.deepEqual(await nodai.events.send(evs), { accepted: 0, duplicates: 2500, rejected: [] });
    const usage = await waitFor(async () => {
      const u = await nodai.keys.usage(key.id);
      return u.total_requests === 2500 ? u : undefined;
    }, { timeoutMs: 30_000, what: "2500 requests in the key's usage" });
    assert.ok(Math.abs(usage.total_cost - 2.5) < 1e-9);
    assert.equal(usage.total_input_tokens, 5000);
  });

  test("a rejected event keeps its index in the caller's list", async () => {
    const key = await nodai.keys.create({ name: unique("mixed") });
    const source = unique("mixed");
    const evs = events(key.id, "echo", 1500, source);
    evs[3].subject = `key_${"0".repeat(32)}`;
    evs[1200].data = { workflow_id: "echo", colour: "blue" };
    evs[1499] = { type: "nodai.usage" };
    evs[1300].id = "ev-1"; // the id of an event of the first batch
    const result = await nodai.events.send(evs);
    assert.equal(result.accepted, 1496);
    assert.equal(result.duplicates, 1);
    assert.deepEqual(
      result.rejected.map((r) => [r.index, r.id, r.status, r.code]),
      [
        [3, "ev-3", 422, "key_not_found"],
        [1200, "ev-1200", 422, "invalid_event"],
        [1499, null, 422, "invalid_event"],
      ],
    );
    assert.match(result.rejected[1].detail, /colour/);

    evs[3].subject = key.id;
    evs[1200].data = { workflow_id: "echo" };
    evs[1499] = usageEvent({ keyId: key.id, workflowId: "echo", id: "ev-1499", source });
    assert.deepEqual(await nodai.events.send(evs), { accepted: 3, duplicates: 1497, rejected: [] });
  });

  test("batches are split by size too: 1000 events of 1.2 kB make two requests of at most 1 MiB", async () => {
    const key = await nodai.keys.create({ name: unique("wide") });
    const evs = events(key.id, "echo", 1000, `${unique("wide")}/${"s".repeat(980)}`);
    assert.ok(JSON.stringify(evs).length > MiB);
    const { value: result, posts } = await postsDuring(() => nodai.events.send(evs));
    assert.deepEqual(result, { accepted: 1000, duplicates: 0, rejected: [] });
    const sizes = posts.map((p) => Buffer.byteLength(p.body));
    assert.equal(sizes.length, 2);
    assert.ok(sizes.every((s) => s <= MiB), String(sizes));
    assert.ok(sizes[0] > MiB - 1300, "the first request is filled, not split early");
  });

  test("sendOne posts a single event; an invalid one throws ValidationError with its code", async () => {
    const key = await nodai.keys.create({ name: unique("one") });
    const event = usageEvent({ keyId: key.id, workflowId: "echo", source: unique("one"), cost: 0.5 });
    const { value: result, posts } = await postsDuring(() => nodai.events.sendOne(event));
    assert.deepEqual(result, { accepted: 1, duplicates: 0, rejected: [] });
    assert.equal(posts[0].contentType, "application/cloudevents+json");
    assert.deepEqual(JSON.parse(posts[0].body), event);
    assert.deepEqual(await nodai.events.sendOne(event), { accepted: 0, duplicates: 1, rejected: [] });

    const now = Date.now();
    const base = { keyId: key.id, workflowId: "echo" };
    for (const [bad, code] of [
      [usageEvent({ ...base, keyId: `key_${"f".repeat(32)}` }), "key_not_found"],
      [usageEvent({ ...base, workflowId: unique("nowhere") }), "workflow_not_found"],
      [usageEvent({ ...base, time: new Date(now - 40 * 86_400_000) }), "time_out_of_range"],
      [usageEvent({ ...base, time: new Date(now + 10 * 60_000) }), "time_out_of_range"],
      [{ ...usageEvent(base), type: "com.example.other" }, "unsupported_event_type"],
      [{ ...usageEvent(base), data: { workflow_id: "echo", x: 1 } }, "invalid_event"],
      [usageEvent({ ...base, statusCode: 600 }), "validation_error"],
    ]) {
      await assert.rejects(nodai.events.sendOne(bad), (error) => {
        assert.ok(error instanceof ValidationError, `${code}: ${error}`);
        assert.ok(error instanceof NodaiError);
        assert.deepEqual([error.status, error.code], [422, code]);
        assert.equal(typeof error.detail, "string");
        return true;
      });
    }
  });

  test("a usage event settles the hold of its verification; another key of the customer cannot", async () => {
    const key = await nodai.keys.create({ name: unique("hold"), cost_limit_per_month: 1 });
    const remaining = async () => costOf((await nodai.verify({ key: key.key, hold: 0 })).limits);
    const v = await nodai.verify({ key: key.key, workflowId: "echo", hold: 0.5 });
    assert.equal(await remaining(), 0.5);
    const settle = usageEvent({ keyId: key.id, workflowId: "echo", authorizationId: v.authorization_id, cost: 0.1 });
    assert.equal((await nodai.events.send([settle])).accepted, 1);
    assert.ok(Math.abs((await remaining()) - 0.9) < 1e-9, "the hold gave way to the real cost");

    const customer = await nodai.customers.create({ id: unique("pair"), name: "Pair" });
    const first = await nodai.keys.create({ name: unique("first"), customer_id: customer.id });
    const second = await nodai.keys.create({ name: unique("second"), customer_id: customer.id });
    const auth = (await nodai.verify({ key: first.key })).authorization_id;
    const stolen = usageEvent({ keyId: second.id, workflowId: "echo", authorizationId: auth });
    await assert.rejects(nodai.events.sendOne(stolen), (error) => {
      assert.ok(error instanceof ValidationError);
      assert.equal(error.code, "authorization_mismatch");
      return true;
    });
    const inBatch = await nodai.events.send([stolen]);
    assert.deepEqual(inBatch.rejected.map((r) => [r.index, r.code]), [[0, "authorization_mismatch"]]);
  });
  test(
    "an authorization of a key without a customer cannot be settled by another key",
    async () => {
      const owner = await nodai.keys.create({ name: unique("owner") });
      const other = await nodai.keys.create({ name: unique("other") });
      const auth = (await nodai.verify({ key: owner.key })).authorization_id;
      await assert.rejects(
        nodai.events.sendOne(usageEvent({ keyId: other.id, workflowId: "echo", authorizationId: auth })),
        (error) => error instanceof ValidationError && error.code === "authorization_mismatch",
      );
    },
  );
});

describe("usage reports", () => {
  test("grouped by workflow_id, the report matches the events sent", async () => {
    const [alpha, beta] = await Promise.all(
      ["alpha", "beta"].map((name) => nodai.workflows.create({ id: unique(name), name, upstream_url: "builtin:echo", price_per_request: 0.01 })),
    );
    const customer = await nodai.customers.create({ id: unique("rep"), name: "Report" });
    const key = await nodai.keys.create({ name: unique("rep"), customer_id: customer.id });
    const source = unique("report");
    const evs = [
      ...Array.from({ length: 7 }, (_, i) =>
        usageEvent({ keyId: key.id, workflowId: alpha.id, id: `a${i}`, source, cost: 0.003, inputTokens: 10, outputTokens: 1 }),
      ),
      ...Array.from({ length: 5 }, (_, i) =>
        usageEvent({ keyId: key.id, workflowId: beta.id, id: `b${i}`, source, inputTokens: 2, statusCode: i < 3 ? 200 : 503 }),
      ),
    ];
    assert.equal((await nodai.events.send(evs)).accepted, 12);

    const rows = await reportOf(12, { groupBy: ["workflow_id"], keyId: key.id });
    assert.equal(rows.length, 2);
    const byWorkflow = Object.fromEntries(rows.map((r) => [r.workflow_id, r]));
    const pick = (r) => [r.requests, r.errors, Number(r.cost.toFixed(6)), r.input_tokens, r.output_tokens];
    assert.deepEqual(pick(byWorkflow[alpha.id]), [7, 0, 0.021, 70, 7]);
    assert.deepEqual(pick(byWorkflow[beta.id]), [5, 2, 0.03, 10, 0], "a status of 500 or more is an error and costs nothing");
    for (const r of rows) {
      assert.equal(Date.parse(r.end) - Date.parse(r.start), 86_400_000);
      assert.equal("key_id" in r || "customer_id" in r || "status_code" in r, false, "only the fields grouped by");
    }

    const beta_rows = await reportOf(5, { groupBy: ["status_code", "key_id", "customer_id"], workflowId: beta.id, customerId: customer.id });
    assert.deepEqual(
      beta_rows.map((r) => [r.status_code, r.requests, r.errors, r.key_id, r.customer_id]).sort(),
      [[200, 3, 0, key.id, customer.id], [503, 2, 2, key.id, customer.id]],
    );
    const hourly = await reportOf(12, { granularity: "hour", keyId: key.id });
    assert.ok(hourly.every((r) => Date.parse(r.end) - Date.parse(r.start) === 3_600_000));

    const weekAgo = new Date(Date.now() - 7 * 86_400_000);
    assert.deepEqual(await nodai.usage.query({ keyId: key.id, from: new Date(weekAgo - 86_400_000), to: weekAgo }), []);

    // The key's own statistics count the same usage.
    const usage = await nodai.keys.usage(key.id);
    assert.equal(usage.total_requests, 12);
    assert.ok(Math.abs(usage.total_cost - 0.051) < 1e-9);
  });

  test("queryCsv has the header line and exact costs, group fields in the order asked", async () => {
    const key = await nodai.keys.create({ name: unique("csv") });
    await nodai.queryWorkflow("echo", "hi", { apiKey: key.key });
    await nodai.events.send([usageEvent({ keyId: key.id, workflowId: "echo", cost: 0.012, outputTokens: 4 })]);
    await reportOf(2, { keyId: key.id });

    const csv = await nodai.usage.queryCsv({ groupBy: ["workflow_id", "key_id"], keyId: key.id });
    const lines = csv.trimEnd().split("\n");
    assert.equal(lines[0], "start,end,workflow_id,key_id,requests,errors,cost,input_tokens,output_tokens");
    assert.equal(lines.length, 2);
    assert.match(lines[1], new RegExp(`^[^,]+,[^,]+,echo,${key.id},2,0,0\\.014000,0,4$`));

    const header = (await nodai.usage.queryCsv({ groupBy: "key_id,workflow_id", keyId: key.id })).split("\n")[0];
    assert.equal(header, "start,end,key_id,workflow_id,requests,errors,cost,input_tokens,output_tokens");
    const nothing = await nodai.usage.queryCsv({ keyId: `key_${"0".repeat(32)}` });
    assert.equal(nothing, "start,end,requests,errors,cost,input_tokens,output_tokens\n");
  });

  test("bad parameters throw ValidationError", async () => {
    const now = Date.now();
    for (const params of [
      { groupBy: ["colour"] },
      { granularity: "hour", from: new Date(now - 91 * 86_400_000), to: new Date(now) },
      { from: new Date(now - 1101 * 86_400_000), to: new Date(now) },
      { from: new Date(now), to: new Date(now - 86_400_000) },
      { from: "yesterday" },
      { granularity: "week" },
    ]) {
      for (const call of [() => nodai.usage.query(params), () => nodai.usage.queryCsv(params)]) {
        await assert.rejects(call(), (error) => {
          assert.ok(error instanceof ValidationError, `${JSON.stringify(params)}: ${error}`);
          assert.deepEqual([error.status, error.code], [422, "validation_error"]);
          return true;
        });
      }
    }
  });
});
