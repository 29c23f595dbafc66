// Streaming without a server: the SSE parser on its own, and `streamWorkflow`
// over a fake `fetch` whose bodies are ReadableStreams split at awkward
// places (CRLF halves, inside UTF-8 characters), plus error events, broken
// and stalled streams, cancellation and retries. The real server's streams
// are tested in streaming.test.js.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  APIConnectionError,
  NodaiError,
  Nodai,
  PermissionDeniedError,
  ServiceUnavailableError,
  UpstreamError,
} from "@nodai/sdk";
// Internal module, tested directly (it is not part of the public API).
import { SSEDecoder } from "../dist/esm/sse.js";

const BASE = "http://nodai.test";
const encoder = new TextEncoder();

function problem(status, code) {
  return new Response(JSON.stringify({ type: "about:blank", title: "t", status, detail: `detail of ${code}`, code }), {
    status,
    headers: { "content-type": "application/problem+json" },
  });
}

/**
 * An event-stream Response whose body yields `parts` (strings or bytes) one
 * read at a time; then it closes, or stays open with `{ hang: true }` until
 * the request's signal aborts it. `state.cancelled` records a cancel.
 */
function sse(parts, { hang = false, headers = {}, signal } = {}) {
  const state = { cancelled: false, pulls: 0 };
  const queue = parts.map((p) => (typeof p === "string" ? encoder.encode(p) : p));
  const body = new ReadableStream({
    start(controller) {
      signal?.addEventListener("abort", () => controller.error(signal.reason), { once: true });
    },
    pull(controller) {
      state.pulls++;
      if (queue.length > 0) controller.enqueue(queue.shift());
      else if (!hang) controller.close();
      else return new Promise(() => {}); // nothing more, ever
    },
    cancel() {
      state.cancelled = true;
    },
  });
  const response = new Response(body, { status: 200, headers: { "content-type": "text/event-stream", ...headers } });
  response.state = state;
  return response;
}

/** A fetch that plays `script` (Responses, Errors or functions of (url, init)) in order, recording calls. */
function fakeFetch(script) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, init });
    const step = script[Math.min(calls.length - 1, script.length - 1)];
    const value = typeof step === "function" ? await step(url, init) : step;
    if (value instanceof Error) throw value;
    return value;
  };
  fn.calls = calls;
  return fn;
}

function client(fetch, options = {}) {
  return new Nodai({ baseUrl: BASE, apiKey: "nk_test", fetch, ...options });
}

async function collect(stream) {
  const events = [];
  for await (const event of stream) events.push(event);
  return events;
}

const DONE =
  'event: done\ndata: {"usage":{"cost":0.002,"duration_ms":7,"input_tokens":12,"output_tokens":3},"request_id":"req_1"}\n\n';
const done = { type: "done", cost: 0.002, durationMs: 7, requestId: "req_1", inputTokens: 12, outputTokens: 3 };

describe("SSE parser", () => {
  test("CRLF, LF and CR line ends; multi-line data; comments; field rules", () => {
    const decoder = new SSEDecoder();
    const events = decoder.push(
      [
        ": a comment, then a keep-alive comment\r\n",
        ":\r\n",
        "event: chunk\r\ndata: first line\r\ndata: second line\r\n\r\n",
        "event: chunk\ndata:no space\ndata:  two spaces keep one\n\n",
        "event: chunk\rdata\rdata: \r\r", // `data` without a colon is an empty line of data
        "event: nothing\n\n", // no data: not dispatched
        "id: 7\nretry: 1500\nunknown: ignored\ndata: plain\n\n", // no event: "message"
      ].join(""),
    );
    assert.deepEqual(
      events.map(({ event, data }) => ({ event, data })),
      [
        { event: "chunk", data: "first line\nsecond line" },
        { event: "chunk", data: "no space\n two spaces keep one" },
        { event: "chunk", data: "\n" },
        { event: "message", data: "plain" },
      ],
    );
    assert.equal(events[3].id, "7");
    assert.equal(events[3].retry, 1500);
  });

  test("a CRLF split between two pushes is one line end", () => {
    const decoder = new SSEDecoder();
    assert.deepEqual(decoder.push("data: a\r"), []);
    assert.deepEqual(decoder.push("\ndata: b\r"), []);
    assert.deepEqual(decoder.push("\n\r"), [{ event: "message", data: "a\nb", id: "", retry: undefined }]);
    // The "\n" here follows the previous "\r": not a second (empty) line.
    assert.deepEqual(decoder.push("\ndata: c\n\n").map((e) => e.data), ["c"]);
  });

  test("an event left unterminated at the end is discarded", () => {
    const decoder = new SSEDecoder();
    assert.deepEqual(decoder.push("data: complete\n\ndata: incomplete\n"), [
      { event: "message", data: "complete", id: "", retry: undefined },
    ]);
    assert.deepEqual(decoder.end(), []);
  });
});

describe("streamWorkflow (fake fetch)", () => {
  // CRLF endings, comments, multi-line data, multi-byte UTF-8 and an unknown event.
  const wire =
    ": keep-alive\r\n\r\n" +
    "event: chunk\r\ndata: héllo \r\n\r\n" +
    "event: chunk\r\ndata: wörld 👋\r\ndata: second line\r\n\r\n" +
    "event: progress\r\ndata: ignored\r\n\r\n" +
    DONE.replaceAll("\n", "\r\n");
  const expected = [
    { type: "chunk", text: "héllo " },
    { type: "chunk", text: "wörld 👋\nsecond line" },
    done,
  ];

  test("events come out the same however the bytes are split (every split point, and byte by byte)", async () => {
    const bytes = encoder.encode(wire);
    const splits = [];
    for (let i = 1; i < bytes.length; i++) splits.push([bytes.slice(0, i), bytes.slice(i)]);
    splits.push(Array.from(bytes, (b) => Uint8Array.of(b)));
    for (const parts of splits) {
      const events = await collect(client(fakeFetch([sse(parts)])).streamWorkflow("wf", "x"));
      assert.deepEqual(events, expected, `split into ${parts.map((p) => p.length).join("+")} bytes`);
    }
  });

  test("the request: lazy, POST {input} with Accept: text/event-stream and X-API-Key", async () => {
    const fetch = fakeFetch([sse([DONE])]);
    const stream = client(fetch).streamWorkflow("my wf", undefined, { apiKey: "nk_other" });
    assert.equal(fetch.calls.length, 0, "nothing is sent before iterating");
    await collect(stream);
    const [call] = fetch.calls;
    assert.equal(call.url, `${BASE}/api/v1/workflows/my%20wf/query`);
    assert.equal(call.init.method, "POST");
    assert.equal(call.init.headers["accept"], "text/event-stream");
    assert.equal(call.init.headers["x-api-key"], "nk_other");
    assert.deepEqual(JSON.parse(call.init.body), { input: null });
    assert.throws(() => stream[Symbol.asyncIterator](), NodaiError, "iterable once");
  });

  test("finalResult() and text() read to the end; after a loop finalResult() returns its result", async () => {
    const headers = { "x-ratelimit-limit": "10", "x-ratelimit-remaining": "9", "x-ratelimit-reset": "1795615980" };
    const parts = ["event: chunk\ndata: a \n\n", "event: chunk\ndata: b\n\n", DONE];
    const stream = client(fakeFetch([sse(parts, { headers })])).streamWorkflow("wf", "a b");
    assert.equal(stream.rateLimit, undefined, "no response yet");
    assert.deepEqual(await stream.finalResult(), {
      text: "a b",
      cost: 0.002,
      durationMs: 7,
      requestId: "req_1",
      inputTokens: 12,
      outputTokens: 3,
      rateLimit: { limit: 10, remaining: 9, reset: 1795615980 },
    });
    assert.equal(await stream.text(), "a b");

    const looped = client(fakeFetch([sse(parts)])).streamWorkflow("wf", "a b");
    for await (const event of looped) void event;
    assert.equal((await looped.finalResult()).text, "a b");
    assert.equal(looped.rateLimit, null, "no X-RateLimit-* headers");
  });

  test("breaking out of the loop cancels the body; finalResult() then says so", async () => {
    const response = sse(["event: chunk\ndata: one \n\n", "event: chunk\ndata: two \n\n"], { hang: true });
    const stream = client(fakeFetch([response])).streamWorkflow("wf", "x");
    for await (const event of stream) {
      assert.deepEqual(event, { type: "chunk", text: "one " });
      break;
    }
    assert.equal(response.state.cancelled, true);
    await assert.rejects(stream.finalResult(), /cancelled before it ended/);
  });

  test("event: error is thrown by code, after the chunks before it; not retried", async () => {
    const cases = [
      ["upstream_timeout", UpstreamError],
      ["upstream_error", UpstreamError],
      ["metering_unavailable", ServiceUnavailableError],
      ["internal", NodaiError],
    ];
    for (const [code, ErrorClass] of cases) {
      const fetch = fakeFetch([
        sse([
          "event: chunk\ndata: partial\n\n",
          `event: error\ndata: {"code":"${code}","detail":"it broke","request_id":"req_9"}\n\n`,
        ]),
        sse([DONE]),
      ]);
      const seen = [];
      await assert.rejects(
        (async () => {
          for await (const event of client(fetch).streamWorkflow("wf", "x")) seen.push(event);
        })(),
        (error) => {
          assert.equal(error.constructor, ErrorClass, `${code}: got ${error.name}`);
          assert.ok(error instanceof NodaiError);
          assert.equal(error.code, code);
          assert.equal(error.detail, "it broke");
          assert.equal(error.requestId, "req_9");
          assert.equal(error.status, undefined, "the response itself was a 200");
          return true;
        },
      );
      assert.deepEqual(seen, [{ type: "chunk", text: "partial" }]);
      assert.equal(fetch.calls.length, 1);
    }
  });

  test("errors before the first chunk are the usual typed errors, from the loop and from text()", async () => {
    const forbidden = fakeFetch([problem(403, "invalid_api_key")]);
    await assert.rejects(collect(client(forbidden).streamWorkflow("wf", "x")), (error) => {
      return error instanceof PermissionDeniedError && error.status === 403 && error.code === "invalid_api_key";
    });
    await assert.rejects(client(fakeFetch([problem(403, "key_inactive")])).streamWorkflow("wf", "x").text(), PermissionDeniedError);
  });

  test("a 503 before the stream is retried like any query", async () => {
    const fetch = fakeFetch([problem(503, "metering_unavailable"), sse(["event: chunk\ndata: ok\n\n", DONE])]);
    assert.equal(await client(fetch).streamWorkflow("wf", "x").text(), "ok");
    assert.equal(fetch.calls.length, 2);
  });

  test("a stream that breaks off, or ends without done, is APIConnectionError and is not retried", async () => {
    const breaking = () =>
      new Response(
        new ReadableStream({
          pull(controller) {
            if (this.sent) controller.error(new TypeError("terminated"));
            else controller.enqueue(encoder.encode("event: chunk\ndata: partial\n\n"));
            this.sent = true;
          },
        }),
        { status: 200, headers: { "content-type": "text/event-stream" } },
      );
    const fetch = fakeFetch([breaking, sse([DONE])]);
    const seen = [];
    await assert.rejects(
      (async () => {
        for await (const event of client(fetch).streamWorkflow("wf", "x")) seen.push(event);
      })(),
      (error) => error instanceof APIConnectionError && /terminated/.test(error.message) && !error.timedOut,
    );
    assert.deepEqual(seen, [{ type: "chunk", text: "partial" }]);
    assert.equal(fetch.calls.length, 1);

    const truncated = fakeFetch([sse(["event: chunk\ndata: partial\n\nevent: done\ndata: {}"]), sse([DONE])]);
    await assert.rejects(client(truncated).streamWorkflow("wf", "x").text(), (error) => {
      return error instanceof APIConnectionError && /ended before its `done` event/.test(error.message);
    });
    assert.equal(truncated.calls.length, 1);
  });

  test("a stream that sends nothing for timeoutMs is APIConnectionError with timedOut", async () => {
    const fetch = fakeFetch([(_url, init) => sse(["event: chunk\ndata: one\n\n"], { hang: true, signal: init.signal })]);
    const seen = [];
    const started = performance.now();
    await assert.rejects(
      (async () => {
        for await (const event of client(fetch, { timeoutMs: 150 }).streamWorkflow("wf", "x")) seen.push(event);
      })(),
      (error) => error instanceof APIConnectionError && error.timedOut && /sent nothing for 150 ms/.test(error.message),
    );
    assert.deepEqual(seen, [{ type: "chunk", text: "one" }]);
    assert.ok(performance.now() - started < 2000);
    assert.equal(fetch.calls.length, 1);
  });

  test("the caller's AbortSignal stops a stream mid-way with its reason", async () => {
    const fetch = fakeFetch([(_url, init) => sse(["event: chunk\ndata: one\n\n"], { hang: true, signal: init.signal })]);
    const controller = new AbortController();
    await assert.rejects(
      (async () => {
        for await (const event of client(fetch).streamWorkflow("wf", "x", { signal: controller.signal })) {
          assert.equal(event.type, "chunk");
          controller.abort();
        }
      })(),
      (error) => error.name === "AbortError",
    );
  });

  test("a JSON answer (no event stream) becomes one chunk and done; no token fields read as 0", async () => {
    const json = new Response(
      JSON.stringify({ output: { a: 1 }, usage: { cost: 0.5, duration_ms: 2 }, request_id: "req_j" }),
      { status: 200, headers: { "content-type": "application/json" } },
    );
    assert.deepEqual(await collect(client(fakeFetch([json])).streamWorkflow("wf", { a: 1 })), [
      { type: "chunk", text: '{"a":1}' },
      { type: "done", cost: 0.5, durationMs: 2, requestId: "req_j", inputTokens: 0, outputTokens: 0 },
    ]);
  });
});
