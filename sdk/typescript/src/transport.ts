// The one place that talks HTTP: builds requests, applies the timeout, decides
// what is retried, and turns error responses into typed errors. It uses only
// the global `fetch` (or an injected one), `AbortController` and `setTimeout`,
// so it runs unchanged in browsers, Node >= 18, Deno, Bun and edge runtimes.
// It knows nothing about keys, workflows or webhooks. For event streams it
// hands back the live body (`LiveBody`) instead of reading it; what the events
// mean is streaming.ts's business.
import { APIConnectionError, NodaiError, errorFromResponse, parseRetryAfter } from "./errors.js";

/** The subset of `fetch` the SDK needs; inject your own with the `fetch` option. */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

/** Per-call settings; each overrides the client's. */
export interface RequestOptions {
  /** Milliseconds for one attempt, response body included. */
  timeoutMs?: number;
  /** Retries after the first attempt (connection failures, 503, and 429 when opted in). */
  maxRetries?: number;
  /** Retry a 429 after its `Retry-After` (off by default: a 429 usually means wait an hour). */
  retryOnRateLimit?: boolean;
  /** Never wait longer than this for a `Retry-After`; a longer one is thrown at once. */
  maxRetryAfterMs?: number;
  /** Cancels the call, including a wait between retries. */
  signal?: AbortSignal;
}

export interface TransportConfig {
  baseUrl: string;
  adminToken: string | undefined;
  apiKey: string | undefined;
  timeoutMs: number;
  maxRetries: number;
  retryOnRateLimit: boolean;
  maxRetryAfterMs: number;
  fetch: FetchLike | undefined;
}

/** Which credential a request carries. */
export type Auth = { kind: "admin" } | { kind: "apiKey"; apiKey: string | undefined } | { kind: "none" };

export interface HttpRequest {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  auth: Auth;
  query?: Record<string, string | number | null | undefined>;
  body?: unknown;
  /** The `Accept` header; default `application/json`. */
  accept?: string;
  /**
   * Sent as the `Idempotency-Key` header. The server answers a repeat of the
   * request with its first answer, so it is retried even after a failure
   * that may have followed sending (a timeout, a body cut off).
   */
  idempotencyKey?: string;
  /** The body already serialised, sent as is instead of `body` (with `contentType`). */
  rawBody?: string;
  /** The `Content-Type` of `rawBody`; default `application/json`. */
  contentType?: string;
  /**
   * A repeat does no harm (usage events: the server applies each `source`
   * and `id` once), so it is retried even after a failure that may have
   * followed sending, as with an `idempotencyKey`.
   */
  replayable?: boolean;
}

export interface HttpResponse<T> {
  data: T;
  status: number;
  headers: Headers;
}

/** The answer to `Transport.stream`: a live event stream, or an ordinary (already read) 2xx body. */
export interface StreamResponse {
  status: number;
  headers: Headers;
  /** Set when the server answered `text/event-stream`; its body is then unread. */
  live: LiveBody | undefined;
  /** The parsed body when the answer was not an event stream. */
  data: unknown;
}

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 8_000;

/** Exponential backoff with +-25% jitter: about 0.5 s, 1 s, 2 s, … capped at 8 s. */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.round(base * (0.75 + random() * 0.5));
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A fresh `Idempotency-Key`: a random UUID from WebCrypto (Node 18: from
 * `node:crypto`), else 128 random bits in hex. It must be unique, not secret.
 */
export async function newIdempotencyKey(): Promise<string> {
  type Random = { randomUUID?: () => string; getRandomValues?: <T extends Uint8Array>(array: T) => T };
  let random = (globalThis as { crypto?: Random }).crypto;
  if (typeof random?.randomUUID !== "function") {
    try {
      const specifier = "node:crypto";
      const mod = (await import(/* webpackIgnore: true */ /* @vite-ignore */ specifier)) as { webcrypto?: Random };
      if (mod.webcrypto) random = mod.webcrypto;
    } catch {
      // Not Node: what the global offers, or Math.random.
    }
  }
  try {
    if (typeof random?.randomUUID === "function") return random.randomUUID();
  } catch {
    // A browser page not served over HTTPS has no randomUUID.
  }
  const bytes = new Uint8Array(16);
  if (typeof random?.getRandomValues === "function") random.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Encodes one path segment (ids are caller input). */
export function segment(value: string): string {
  return encodeURIComponent(value);
}

export class Transport {
  constructor(readonly config: TransportConfig) {}

  async request<T>(req: HttpRequest, options: RequestOptions = {}): Promise<HttpResponse<T>> {
    const { status, headers, body } = await this.send(req, options, false);
    return { data: body as T, status, headers };
  }

  /**
   * As `request`, but a 2xx `text/event-stream` answer is handed back unread
   * (`live`). Retries follow the same rules and can only happen before that
   * answer: once it arrived, nothing is ever retried.
   */
  async stream(req: HttpRequest, options: RequestOptions = {}): Promise<StreamResponse> {
    const { status, headers, body, live } = await this.send(req, options, true);
    return { status, headers, live, data: body };
  }

  private async send(req: HttpRequest, options: RequestOptions, streaming: boolean): Promise<Attempt> {
    const maxRetries = options.maxRetries ?? this.config.maxRetries;
    const retryOnRateLimit = options.retryOnRateLimit ?? this.config.retryOnRateLimit;
    const maxRetryAfterMs = options.maxRetryAfterMs ?? this.config.maxRetryAfterMs;
    const signal = options.signal;
    const url = this.url(req);
    const init = this.init(req);

    for (let attempt = 0; ; attempt++) {
      const canRetry = attempt < maxRetries;
      let outcome: Attempt;
      try {
        outcome = await this.attempt(url, init, options.timeoutMs ?? this.config.timeoutMs, signal, streaming);
      } catch (error) {
        if (
          error instanceof APIConnectionError &&
          canRetry &&
          ((!error.timedOut && !answered.has(error)) || req.idempotencyKey !== undefined || req.replayable === true)
        ) {
          // The connection failed before any response: safe to try again. With
          // an idempotency key any failure is: a repeat gets the first answer
          // (and a replayable request's repeat is harmless).
          await sleep(backoffMs(attempt), signal);
          continue;
        }
        throw error;
      }

      const { status, headers, body } = outcome;
      if (status >= 200 && status < 300) return outcome;

      if (canRetry && status === 503) {
        // 503 means the server did no work (e.g. `metering_unavailable`).
        const wait = retryWaitMs(headers, attempt, maxRetryAfterMs, false);
        if (wait !== undefined) {
          await sleep(wait, signal);
          continue;
        }
      }
      if (canRetry && status === 429 && retryOnRateLimit) {
        const wait = retryWaitMs(headers, attempt, maxRetryAfterMs, true);
        if (wait !== undefined) {
          await sleep(wait, signal);
          continue;
        }
      }
      throw errorFromResponse(status, headers, body);
    }
  }

  private url(req: HttpRequest): string {
    let url = this.config.baseUrl + req.path;
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(req.query ?? {})) {
      if (value !== undefined && value !== null) params.set(name, String(value));
    }
    const query = params.toString();
    if (query) url += `?${query}`;
    return url;
  }

  private init(req: HttpRequest): RequestInit {
    const headers: Record<string, string> = { accept: req.accept ?? "application/json" };
    if (req.auth.kind === "admin" && this.config.adminToken) {
      headers["authorization"] = `Bearer ${this.config.adminToken}`;
    } else if (req.auth.kind === "apiKey") {
      const apiKey = req.auth.apiKey ?? this.config.apiKey;
      if (apiKey) headers["x-api-key"] = apiKey;
    }
    if (req.idempotencyKey !== undefined) headers["idempotency-key"] = req.idempotencyKey;
    const init: RequestInit = { method: req.method, headers };
    if (req.rawBody !== undefined) {
      headers["content-type"] = req.contentType ?? "application/json";
      init.body = req.rawBody;
    } else if (req.body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(req.body);
    }
    return init;
  }

  /**
   * One attempt: fetch and read the body, both under the timeout. With
   * `streaming`, a 2xx `text/event-stream` answer is not read: its body, the
   * abort controller and the caller's signal go to a `LiveBody`.
   */
  private async attempt(
    url: string,
    init: RequestInit,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    streaming: boolean,
  ): Promise<Attempt> {
    const fetchImpl = this.config.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") {
      throw new NodaiError("no global fetch in this runtime: pass the `fetch` option");
    }
    if (signal?.aborted) throw signal.reason;

    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    const release = (): void => signal?.removeEventListener("abort", onAbort);
    let handedOver = false;

    try {
      let response: Response;
      try {
        response = await fetchImpl(url, { ...init, signal: controller.signal });
      } catch (cause) {
        throw connectionError(cause, url, timedOut, timeoutMs, signal);
      }
      if (streaming && response.ok && response.body && isEventStream(response.headers)) {
        clearTimeout(timer);
        handedOver = true;
        const live = new LiveBody(response.body, controller, release, url, timeoutMs, signal);
        return { status: response.status, headers: response.headers, body: undefined, live };
      }
      let text: string;
      try {
        text = response.status === 204 ? "" : await response.text();
      } catch (cause) {
        // The server answered and then the body broke off: it may have done
        // the work (a metered query), so this one is not retried.
        const error = connectionError(cause, url, timedOut, timeoutMs, signal);
        if (error instanceof APIConnectionError) answered.add(error);
        throw error;
      }
      return { status: response.status, headers: response.headers, body: parseBody(response, text), live: undefined };
    } finally {
      if (!handedOver) {
        clearTimeout(timer);
        release();
      }
    }
  }
}

function isEventStream(headers: Headers): boolean {
  return (headers.get("content-type") ?? "").toLowerCase().startsWith("text/event-stream");
}

/**
 * The unread body of an event-stream answer. `read` waits at most `timeoutMs`
 * for the next bytes (an idle timeout: a stream may run longer as long as it
 * keeps sending). `cancel` stops it and closes the connection; after it, or
 * after the end or an error, the caller's signal is no longer listened to.
 */
export class LiveBody {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private closed = false;

  constructor(
    body: ReadableStream<Uint8Array>,
    private readonly controller: AbortController,
    private readonly release: () => void,
    private readonly url: string,
    private readonly timeoutMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.reader = body.getReader();
  }

  /** The next bytes, or `undefined` at the end of the stream. */
  async read(): Promise<Uint8Array | undefined> {
    if (this.closed) return undefined;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.controller.abort();
    }, this.timeoutMs);
    try {
      const { done, value } = await this.reader.read();
      if (done) {
        this.finish();
        return undefined;
      }
      return value;
    } catch (cause) {
      this.finish();
      throw connectionError(
        cause,
        this.url,
        timedOut,
        this.timeoutMs,
        this.signal,
        `the event stream from ${this.url} sent nothing for ${this.timeoutMs} ms`,
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops reading and closes the connection (nothing happens if the stream already ended). */
  async cancel(): Promise<void> {
    if (this.closed) return;
    this.finish();
    try {
      await this.reader.cancel();
    } catch {
      // Already errored or closed: nothing left to cancel.
    }
    // For fetch implementations whose cancel leaves the connection open.
    this.controller.abort();
  }

  private finish(): void {
    this.closed = true;
    this.release();
  }
}

/** Connection errors that happened after the response headers arrived. */
const answered = new WeakSet<APIConnectionError>();

interface Attempt {
  status: number;
  headers: Headers;
  body: unknown;
  live: LiveBody | undefined;
}

function connectionError(
  cause: unknown,
  url: string,
  timedOut: boolean,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  timeoutMessage = `request to ${url} timed out after ${timeoutMs} ms`,
): unknown {
  // The caller's own abort is passed through unchanged, as fetch does.
  if (signal?.aborted && !timedOut) return signal.reason;
  if (timedOut) {
    return new APIConnectionError(timeoutMessage, { cause, timedOut: true });
  }
  const reason = cause instanceof Error ? describe(cause) : String(cause);
  return new APIConnectionError(`connection to ${url} failed: ${reason}`, { cause });
}

/** Node's fetch says "fetch failed" and hides the reason in `cause`. */
function describe(error: Error): string {
  const inner = (error as { cause?: unknown }).cause;
  if (inner instanceof Error) {
    const code = (inner as { code?: unknown }).code;
    return `${error.message} (${typeof code === "string" ? `${code}: ` : ""}${inner.message})`;
  }
  return error.message;
}

function parseBody(response: Response, text: string): unknown {
  if (text === "") return undefined;
  const type = response.headers.get("content-type") ?? "";
  if (type.includes("json")) {
    try {
      return JSON.parse(text) as unknown;
    } catch (cause) {
      if (response.ok) {
        throw new NodaiError(`invalid JSON in a ${response.status} response`, {
          status: response.status,
          headers: response.headers,
          body: text,
          cause,
        });
      }
      return text;
    }
  }
  return text;
}

/**
 * How long to wait before retrying a 503 or 429, or `undefined` to give up.
 * A `Retry-After` longer than the cap is not waited for. A 429 without
 * `Retry-After` is not retried (nothing says when the window reopens).
 */
function retryWaitMs(
  headers: Headers,
  attempt: number,
  maxRetryAfterMs: number,
  needRetryAfter: boolean,
): number | undefined {
  const retryAfter = parseRetryAfter(headers.get("retry-after"));
  if (retryAfter === undefined) return needRetryAfter ? undefined : backoffMs(attempt);
  const ms = retryAfter * 1000;
  if (ms > maxRetryAfterMs) return undefined;
  return Math.max(ms, needRetryAfter ? 0 : backoffMs(attempt));
}
