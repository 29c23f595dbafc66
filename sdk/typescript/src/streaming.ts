// `QueryStream`, what `nodai.streamWorkflow` returns: the server-sent events
// of a streaming query (`Accept: text/event-stream`) as typed events, plus
// `text()` and `finalResult()` for callers who only want the end result.
// The request is sent when iteration starts; breaking out of `for await`
// cancels the body, which closes the connection (the server then records
// the usage of what it served, once). Only fetch, ReadableStream and
// TextDecoder are used, so it runs wherever the rest of the SDK runs.
import { rateLimitFromHeaders, type RateLimitState } from "./ratelimit.js";
import {
  APIConnectionError,
  NodaiError,
  ServiceUnavailableError,
  UpstreamError,
  type NodaiErrorInit,
} from "./errors.js";
import { SSEDecoder, type ServerSentEvent } from "./sse.js";
import type { StreamResponse } from "./transport.js";

/** A piece of the workflow's output, as it came. */
export interface StreamChunkEvent {
  type: "chunk";
  /** The partial output text; the chunks joined are the whole output. */
  text: string;
}

/** The last event of a stream that succeeded: what the query cost. */
export interface StreamDoneEvent {
  type: "done";
  /** USD charged for this query. */
  cost: number;
  /** Server-measured duration of the query. */
  durationMs: number;
  /** `req_…`, the id of this query in the usage log. */
  requestId: string;
  /** Input (prompt) tokens the upstream reported; 0 when it reported none. */
  inputTokens: number;
  /** Output (completion) tokens the upstream reported; 0 when it reported none. */
  outputTokens: number;
}

/** What iterating a `QueryStream` yields: chunks, then one `done`. */
export type StreamEvent = StreamChunkEvent | StreamDoneEvent;

/** The result of `QueryStream.finalResult()`. */
export interface StreamResult {
  /** Every chunk's text, joined. */
  text: string;
  cost: number;
  durationMs: number;
  requestId: string;
  inputTokens: number;
  outputTokens: number;
  /** `null` when the key has no rate limit. */
  rateLimit: RateLimitState | null;
}

type State = "idle" | "running" | "done" | "failed" | "cancelled";

/**
 * The events of one streaming query. Iterate it once:
 *
 * ```ts
 * for await (const event of nodai.streamWorkflow("echo", "hello world", { apiKey })) {
 *   if (event.type === "chunk") process.stdout.write(event.text);
 *   else console.log(`\n${event.cost} USD, ${event.requestId}`);
 * }
 * ```
 *
 * or let `await stream.text()` / `await stream.finalResult()` read it to the
 * end. Errors before the first chunk are thrown as by `queryWorkflow`
 * (`PermissionDeniedError`, `NotFoundError`, `RateLimitError`, …); a failure
 * the server reports after chunks were sent (`event: error`) is thrown by the
 * iteration as `UpstreamError` (`upstream_*`), `ServiceUnavailableError`
 * (`metering_unavailable`) or `NodaiError`; a connection that breaks off, or
 * sends nothing for `timeoutMs`, as `APIConnectionError`. Nothing is retried
 * once the stream has begun.
 */
export class QueryStream implements AsyncIterable<StreamEvent> {
  private state: State = "idle";
  private readonly parts: string[] = [];
  private done: StreamDoneEvent | undefined;
  private failure: unknown;
  private rateLimitState: RateLimitState | null | undefined;

  /** @internal Use `nodai.streamWorkflow`. */
  constructor(private readonly open: () => Promise<StreamResponse>) {}

  /**
   * The rate-limit state from the response headers: `undefined` until the
   * response arrived, `null` when the key has no rate limit.
   */
  get rateLimit(): RateLimitState | null | undefined {
    return this.rateLimitState;
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamEvent, void, undefined> {
    if (this.state !== "idle") {
      throw new NodaiError("a QueryStream can be iterated only once; call streamWorkflow again for another query");
    }
    this.state = "running";
    return this.events();
  }

  /**
   * Reads the stream to its end (unless a loop already did) and returns the
   * joined text with the usage. Throws what iterating would throw.
   */
  async finalResult(): Promise<StreamResult> {
    if (this.state === "idle") {
      for await (const event of this) void event;
    }
    if (this.state === "failed") throw this.failure;
    if (this.state !== "done" || this.done === undefined) {
      throw new NodaiError(
        this.state === "running"
          ? "finalResult() called while the stream is being iterated; await it after the loop"
          : "the stream was cancelled before it ended",
      );
    }
    const { cost, durationMs, requestId, inputTokens, outputTokens } = this.done;
    return {
      text: this.parts.join(""),
      cost,
      durationMs,
      requestId,
      inputTokens,
      outputTokens,
      rateLimit: this.rateLimitState ?? null,
    };
  }

  /** Reads the stream to its end and returns the whole output text. */
  async text(): Promise<string> {
    return (await this.finalResult()).text;
  }

  private async *events(): AsyncGenerator<StreamEvent, void, undefined> {
    let response: StreamResponse | undefined;
    try {
      response = await this.open();
      this.rateLimitState = rateLimitFromHeaders(response.headers);
      const { live, headers } = response;
      if (live === undefined) {
        // A plain JSON answer (a proxy that dropped the Accept header, an
        // older server): one chunk with the whole output, then done.
        const done = doneFromJson(response.data, headers, "JSON answer");
        const output = (response.data as { output?: unknown } | undefined)?.output;
        const text = typeof output === "string" ? output : JSON.stringify(output ?? null);
        this.parts.push(text);
        yield { type: "chunk", text };
        this.finish(done);
        yield done;
        return;
      }
      const decoder = new TextDecoder();
      const sse = new SSEDecoder();
      for (;;) {
        const bytes = await live.read();
        // At the end, flush the decoder; an unterminated last event is dropped.
        const events =
          bytes === undefined ? [...sse.push(decoder.decode()), ...sse.end()] : sse.push(decoder.decode(bytes, { stream: true }));
        for (const event of events) {
          if (event.event === "chunk") {
            this.parts.push(event.data);
            yield { type: "chunk", text: event.data };
          } else if (event.event === "done") {
            const done = doneFromJson(parseJson(event, headers), headers, "`done` event");
            this.finish(done);
            yield done;
            return;
          } else if (event.event === "error") {
            throw errorFromEvent(parseJson(event, headers), headers);
          }
          // Other events are ignored, so a newer server can add some.
        }
        if (bytes === undefined) {
          throw new APIConnectionError("the event stream ended before its `done` event", { headers });
        }
      }
    } catch (error) {
      this.state = "failed";
      this.failure = error;
      throw error;
    } finally {
      // Reached on the end, on an error, and when the consumer breaks out of
      // its loop: the body is cancelled unless it was read to the end.
      if (this.state === "running") this.state = "cancelled";
      await response?.live?.cancel();
    }
  }

  private finish(done: StreamDoneEvent): void {
    this.done = done;
    this.state = "done";
  }
}

function parseJson(event: ServerSentEvent, headers: Headers): unknown {
  try {
    return JSON.parse(event.data) as unknown;
  } catch (cause) {
    throw new NodaiError(`invalid JSON in an \`${event.event}\` event`, { headers, body: event.data, cause });
  }
}

/** `{"usage":{"cost","duration_ms","input_tokens","output_tokens"},"request_id"}` → a done event. */
function doneFromJson(body: unknown, headers: Headers, what: string): StreamDoneEvent {
  const value = (body ?? {}) as {
    usage?: { cost?: unknown; duration_ms?: unknown; input_tokens?: unknown; output_tokens?: unknown };
    request_id?: unknown;
  };
  const cost = value.usage?.cost;
  const durationMs = value.usage?.duration_ms;
  const requestId = value.request_id;
  if (typeof cost !== "number" || typeof durationMs !== "number" || typeof requestId !== "string") {
    throw new NodaiError(`unexpected ${what}: no usage.cost, usage.duration_ms or request_id`, { headers, body });
  }
  // Tokens are 0 when the upstream reported none (or the server is older).
  return {
    type: "done",
    cost,
    durationMs,
    requestId,
    inputTokens: tokens(value.usage?.input_tokens),
    outputTokens: tokens(value.usage?.output_tokens),
  };
}

export function tokens(value: unknown): number {
  return typeof value === "number" ? value : 0;
}

/** `event: error` data `{"code","detail","request_id"}` → the error class its code calls for. */
function errorFromEvent(body: unknown, headers: Headers): NodaiError {
  const value = (body ?? {}) as { code?: unknown; detail?: unknown; request_id?: unknown };
  const code = typeof value.code === "string" ? value.code : undefined;
  const detail = typeof value.detail === "string" ? value.detail : undefined;
  const requestId = typeof value.request_id === "string" ? value.request_id : undefined;
  const message = `stream failed: ${code ?? "error"}${detail ? `: ${detail}` : ""}`;
  // `status` stays undefined: the response itself was a 200.
  const init: NodaiErrorInit = { code, detail, requestId, headers, body };
  if (code === "metering_unavailable") return new ServiceUnavailableError(message, init);
  if (code?.startsWith("upstream_")) return new UpstreamError(message, init);
  return new NodaiError(message, init);
}
