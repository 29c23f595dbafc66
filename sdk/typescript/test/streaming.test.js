// Streaming queries against a real `nodai serve` (see support/server.js):
// builtin:echo word by word, an upstream's own event stream passed through,
// errors before the first chunk, `event: error` after it, and the usage of
// streams recorded once, also when the client breaks off early.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AuthenticationError, Nodai, NodaiError, NotFoundError, PermissionDeniedError, UpstreamError } from "@nodai/sdk";
import { listen } from "./support/http.js";
import { startServer, waitFor } from "./support/server.js";

for (const name of ["NODAI_API_KEY", "NODAI_ADMIN_TOKEN", "NODAI_BASE_URL"]) delete process.env[name];

let server;
let nodai;
let sseUpstream;
const echoPrice = 0.002;

let counter = 0;
const unique = (prefix) => `${prefix}-${process.pid}-${++counter}`;

/** builtin:echo's pieces: each word with its trailing whitespace (Rust's split_inclusive). */
const words = (text) => text.match(/\S*\s|\S+$/g);

/** Waits until the key's usage shows `requests` requests; returns that usage. */
const usageReaches = (keyId, requests) =>
  waitFor(
    async () => {
      const usage = await nodai.keys.usage(keyId);
      return usage.total_requests >= requests && usage;
    },
    { timeoutMs: 10_000, what: `${requests} recorded request(s) of ${keyId}` },
  );

before(async () => {
  // 1 s upstream timeout: the `event: error` test's wait.
  server = await startServer({ env: { NODAI_UPSTREAM_TIMEOUT_SECS: "1" } });
  nodai = new Nodai({ baseUrl: server.baseUrl, adminToken: server.adminToken, apiKey: undefined });
  // An upstream answering with its own event stream: CRLF line ends, a
  // comment, multi-line data; `?hang` stops after the first event.
  sseUpstream = await listen((req, _body, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(": upstream comment\r\n\r\ndata: first line\r\ndata: second line\r\n\r\n");
    if (req.url.includes("hang")) return; // never ends: the server's upstream timeout fires
    res.end("data: last\r\n\r\n");
  });
  await nodai.workflows.create({ id: "echo", name: "Echo", upstream_url: "builtin:echo", price_per_request: echoPrice });
  await nodai.workflows.create({ id: "sse", name: "SSE", upstream_url: `${sseUpstream.url}/`, price_per_request: 0.01 });
  await nodai.workflows.create({ id: "sse-hang", name: "Hangs", upstream_url: `${sseUpstream.url}/?hang` });
});

after(async () => {
  await sseUpstream?.close();
  const exit = await server?.stop();
  if (exit) assert.equal(exit.code, 0, `nodai exited with ${JSON.stringify(exit)}\n${server.logs()}`);
});

describe("streamWorkflow", () => {
  test("builtin:echo streams word by word; the chunks join to the input; done has the price and a request id", async () => {
    const key = await nodai.keys.create({ name: unique("echo") });
    const input = "hello streaming world,\nfrom  the SDK";
    const events = [];
    for await (const event of nodai.streamWorkflow("echo", input, { apiKey: key.key })) events.push(event);

    const chunks = events.filter((e) => e.type === "chunk");
    assert.deepEqual(
      chunks.map((e) => e.text),
      words(input),
    );
    assert.ok(chunks.length > 1, "more than one chunk");
    assert.equal(chunks.map((e) => e.text).join(""), input);
    const done = events.at(-1);
    assert.equal(done.type, "done");
    assert.equal(events.filter((e) => e.type === "done").length, 1);
    assert.equal(done.cost, echoPrice);
    assert.equal(typeof done.durationMs, "number");
    assert.match(done.requestId, /^req_/);
  });

  test("text() and finalResult(), with the rate-limit state of the key", async () => {
    const key = await nodai.keys.create({ name: unique("final"), rate_limit_per_hour: 10 });
    assert.equal(await nodai.streamWorkflow("echo", "one two three", { apiKey: key.key }).text(), "one two three");
    const stream = nodai.streamWorkflow("echo", "four five", { apiKey: key.key });
    const result = await stream.finalResult();
    assert.equal(result.text, "four five");
    assert.equal(result.cost, echoPrice);
    assert.match(result.requestId, /^req_/);
    assert.deepEqual([result.rateLimit.limit, result.rateLimit.remaining], [10, 8]);
    assert.deepEqual(stream.rateLimit, result.rateLimit);
  });

  test("an upstream's event stream is passed through: CRLF, comments and multi-line data", async () => {
    const key = await nodai.keys.create({ name: unique("sse") });
    const events = [];
    for await (const event of nodai.streamWorkflow("sse", "x", { apiKey: key.key })) events.push(event);
    assert.deepEqual(
      events.map((e) => e.text ?? e.type),
      ["first line\nsecond line", "last", "done"],
    );
    assert.equal(events.at(-1).cost, 0.01);
  });

  test("errors before the first chunk: invalid key → PermissionDeniedError, unknown workflow → NotFoundError", async () => {
    const invalid = nodai.streamWorkflow("echo", "x", { apiKey: `nk_${"0".repeat(64)}` });
    await assert.rejects(
      (async () => {
        for await (const event of invalid) assert.fail(`no event expected, got ${JSON.stringify(event)}`);
      })(),
      (error) => {
        assert.ok(error instanceof PermissionDeniedError, `${error}`);
        assert.equal(error.status, 403);
        assert.equal(error.code, "invalid_api_key");
        return true;
      },
    );

    const key = await nodai.keys.create({ name: unique("nf") });
    await assert.rejects(nodai.streamWorkflow("no-such-workflow", "x", { apiKey: key.key }).text(), (error) => {
      assert.ok(error instanceof NotFoundError, `${error}`);
      assert.equal(error.status, 404);
      assert.equal(error.code, "workflow_not_found");
      return true;
    });

    await assert.rejects(nodai.streamWorkflow("echo", "x").text(), AuthenticationError, "no key at all");
    assert.equal((await nodai.keys.usage(key.id)).total_requests, 0, "rejected streams are not counted");
  });

  test("a failure after the first chunk (event: error) throws UpstreamError by its code", async () => {
    const key = await nodai.keys.create({ name: unique("hang") });
    const seen = [];
    await assert.rejects(
      (async () => {
        for await (const event of nodai.streamWorkflow("sse-hang", "x", { apiKey: key.key })) seen.push(event);
      })(),
      (error) => {
        assert.ok(error instanceof UpstreamError, `${error}`);
        assert.ok(error instanceof NodaiError);
        assert.equal(error.code, "upstream_timeout");
        assert.equal(typeof error.detail, "string");
        assert.match(error.requestId, /^req_/);
        return true;
      },
    );
    assert.deepEqual(seen, [{ type: "chunk", text: "first line\nsecond line" }]);
  });

  test("usage is counted once after a stream", async () => {
    const key = await nodai.keys.create({ name: unique("usage") });
    const done = (await nodai.streamWorkflow("echo", "count me once", { apiKey: key.key }).finalResult());
    // The server records the usage before it sends `done`.
    let usage = await nodai.keys.usage(key.id);
    assert.equal(usage.total_requests, 1);
    assert.ok(Math.abs(usage.total_cost - done.cost) < 1e-9, String(usage.total_cost));

    await nodai.streamWorkflow("echo", "and me", { apiKey: key.key }).text();
    usage = await nodai.keys.usage(key.id);
    assert.equal(usage.total_requests, 2);
    assert.ok(Math.abs(usage.total_cost - 2 * echoPrice) < 1e-9, String(usage.total_cost));
  });

  test("breaking out early cancels the stream; its usage is still recorded, once", async () => {
    const key = await nodai.keys.create({ name: unique("early") });
    // ~9 MB of events, far more than socket buffers hold: unless the SDK
    // cancels the body, the server waits on a full connection and the
    // usage never appears. (Input under the 1 MiB body limit.)
    const input = `word0 ${"a ".repeat(400_000)}end`;
    let received = 0;
    for await (const event of nodai.streamWorkflow("echo", input, { apiKey: key.key })) {
      assert.deepEqual(event, { type: "chunk", text: "word0 " });
      received++;
      break;
    }
    assert.equal(received, 1);

    const usage = await usageReaches(key.id, 1);
    assert.equal(usage.total_requests, 1);
    assert.ok(Math.abs(usage.total_cost - echoPrice) < 1e-9, String(usage.total_cost));

    // Not recorded a second time later: a following stream brings the count to exactly 2.
    await nodai.streamWorkflow("echo", "after", { apiKey: key.key }).text();
    assert.equal((await usageReaches(key.id, 2)).total_requests, 2);
  });

  test("an AbortSignal stops a stream mid-way with an AbortError; usage recorded once", async () => {
    const key = await nodai.keys.create({ name: unique("abort") });
    const input = Array.from({ length: 5000 }, (_, i) => `w${i}`).join(" ");
    const controller = new AbortController();
    await assert.rejects(
      (async () => {
        for await (const event of nodai.streamWorkflow("echo", input, { apiKey: key.key, signal: controller.signal })) {
          if (event.type === "chunk") controller.abort();
        }
      })(),
      (error) => error.name === "AbortError",
    );
    assert.equal((await usageReaches(key.id, 1)).total_requests, 1);
    await nodai.streamWorkflow("echo", "after", { apiKey: key.key }).text();
    assert.equal((await usageReaches(key.id, 2)).total_requests, 2);
  });
});
