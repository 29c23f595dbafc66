// `Nodai`, the client: configuration, `queryWorkflow`, `streamWorkflow`,
// `verify`, and the admin resources (`keys`, `customers`, `workflows`,
// `webhooks`, `events`, `usage`). HTTP details live in transport.ts, the
// events of a streaming query in streaming.ts.
import { rateLimitFromHeaders, type RateLimitState } from "./ratelimit.js";
import { Customers } from "./resources/customers.js";
import { Events } from "./resources/events.js";
import { Keys } from "./resources/keys.js";
import { UsageReports } from "./resources/usage.js";
import { Webhooks } from "./resources/webhooks.js";
import { Workflows } from "./resources/workflows.js";
import { QueryStream, tokens } from "./streaming.js";
import { segment, Transport, type FetchLike, type RequestOptions } from "./transport.js";
import type { QueryResponse, Verification, VerifyParams } from "./types.js";

export { rateLimitFromHeaders, type RateLimitState };

export const DEFAULT_BASE_URL = "http://127.0.0.1:8080";
export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_RETRIES = 2;
export const DEFAULT_MAX_RETRY_AFTER_MS = 60_000;

export interface NodaiOptions {
  /** `nk_…`, sent as `X-API-Key` by `queryWorkflow` and `streamWorkflow`. Default: `NODAI_API_KEY` where `process.env` exists. */
  apiKey?: string | undefined;
  /** Bearer token of the admin endpoints. Default: `NODAI_ADMIN_TOKEN` where `process.env` exists. */
  adminToken?: string | undefined;
  /** Default: `NODAI_BASE_URL` where `process.env` exists, else `http://127.0.0.1:8080`. */
  baseUrl?: string | undefined;
  /**
   * Milliseconds for one attempt, response body included. Default 60 000.
   * A stream may run longer: there it bounds each wait for more of it.
   */
  timeoutMs?: number | undefined;
  /** Retries after the first attempt, for connection failures and 503 (and 429 if opted in). Default 2. */
  maxRetries?: number | undefined;
  /** Also retry 429 after its `Retry-After`. Default false. */
  retryOnRateLimit?: boolean | undefined;
  /** Never wait longer than this for a `Retry-After`; a longer one is thrown at once. Default 60 000. */
  maxRetryAfterMs?: number | undefined;
  /** A `fetch` to use instead of the global one (tests, proxies, old runtimes). */
  fetch?: FetchLike | undefined;
}

/**
 * Per-call options of `queryWorkflow` and `streamWorkflow`. For a stream,
 * `timeoutMs` bounds the wait for the response and then each wait for more
 * of the stream; retries happen only before the stream begins.
 */
export interface QueryOptions extends RequestOptions {
  /** Overrides the client's `apiKey` for this call. */
  apiKey?: string;
}

/** The result of `queryWorkflow`. */
export interface QueryResult<TOutput = unknown> {
  /** What the workflow answered. */
  output: TOutput;
  /** USD charged for this query. */
  cost: number;
  /** Server-measured upstream time. */
  durationMs: number;
  /** `req_…`, the id of this query in the usage log. */
  requestId: string;
  /** Input (prompt) tokens the upstream reported; 0 when it reported none. */
  inputTokens: number;
  /** Output (completion) tokens the upstream reported; 0 when it reported none. */
  outputTokens: number;
  /** `null` when the key has no rate limit (the server sends no `X-RateLimit-*` headers). */
  rateLimit: RateLimitState | null;
}

/** Reads an environment variable where there is a `process.env` (Node, Bun, Deno with --allow-env). */
function fromEnv(name: string): string | undefined {
  try {
    const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
    const value = proc?.env?.[name];
    return value === "" ? undefined : value;
  } catch {
    // Deno without --allow-env throws on access; browsers have no `process`.
    return undefined;
  }
}

export class Nodai {
  /** API keys (admin token). */
  readonly keys: Keys;
  /** Customers, whose keys share their limits, and their prepaid credits (admin token). */
  readonly customers: Customers;
  /** Workflows (admin token). */
  readonly workflows: Workflows;
  /** Webhook subscriptions and deliveries (admin token). */
  readonly webhooks: Webhooks;
  /** Usage events of work done outside nodai, e.g. after `verify` (admin token). */
  readonly events: Events;
  /** Usage reports over every key, as rows or CSV (admin token). */
  readonly usage: UsageReports;
  private readonly transport: Transport;

  constructor(options: NodaiOptions = {}) {
    const baseUrl = (options.baseUrl ?? fromEnv("NODAI_BASE_URL") ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
    this.transport = new Transport({
      baseUrl,
      apiKey: options.apiKey ?? fromEnv("NODAI_API_KEY"),
      adminToken: options.adminToken ?? fromEnv("NODAI_ADMIN_TOKEN"),
      timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      maxRetries: options.maxRetries ?? DEFAULT_MAX_RETRIES,
      retryOnRateLimit: options.retryOnRateLimit ?? false,
      maxRetryAfterMs: options.maxRetryAfterMs ?? DEFAULT_MAX_RETRY_AFTER_MS,
      fetch: options.fetch,
    });
    this.keys = new Keys(this.transport);
    this.customers = new Customers(this.transport);
    this.workflows = new Workflows(this.transport);
    this.webhooks = new Webhooks(this.transport);
    this.events = new Events(this.transport);
    this.usage = new UsageReports(this.transport);
  }

  /** The base URL requests go to, without a trailing slash. */
  get baseUrl(): string {
    return this.transport.config.baseUrl;
  }

  /**
   * Runs a metered query: `POST /api/v1/workflows/{workflowId}/query` with
   * `X-API-Key`. Rejections are typed errors: `PermissionDeniedError`
   * (invalid, inactive or expired key; workflow not allowed), `NotFoundError`,
   * `RateLimitError` (`ConcurrencyLimitError`), `CostLimitExceededError`
   * (`InsufficientCreditsError`), `UpstreamError`, … A refusal by a limit
   * names it in the error's `limit`.
   */
  async queryWorkflow<TOutput = unknown>(
    workflowId: string,
    input: unknown,
    options: QueryOptions = {},
  ): Promise<QueryResult<TOutput>> {
    const { apiKey, ...requestOptions } = options;
    const res = await this.transport.request<QueryResponse>(
      {
        method: "POST",
        path: `/api/v1/workflows/${segment(workflowId)}/query`,
        auth: { kind: "apiKey", apiKey },
        // `input: undefined` would vanish from the JSON; send null instead.
        body: { input: input === undefined ? null : input },
      },
      requestOptions,
    );
    return {
      output: res.data.output as TOutput,
      cost: res.data.usage.cost,
      durationMs: res.data.usage.duration_ms,
      requestId: res.data.request_id,
      inputTokens: tokens(res.data.usage.input_tokens),
      outputTokens: tokens(res.data.usage.output_tokens),
      rateLimit: rateLimitFromHeaders(res.headers),
    };
  }

  /**
   * Checks an API key your own service was given, before doing the work
   * yourself (`POST /api/v1/verify`, admin token); then report the work with
   * `events.send([usageEvent({ ..., authorizationId })])`.
   *
   * Every verdict about the key resolves, valid or not: check `valid` (and
   * `code`: `invalid_api_key`, `key_inactive`, `key_expired`,
   * `workflow_not_found`, `workflow_not_allowed`, `rate_limited`,
   * `concurrency_limited`, `cost_limit_exceeded`, `insufficient_credits`).
   * Only a bad request throws: `ValidationError`, `AuthenticationError`,
   * `ServiceUnavailableError`.
   *
   * A valid verification counts as a request against the key's and its
   * customer's requests limits, and holds `hold` USD against cost limits and
   * prepaid credits until a usage event names its `authorization_id`, or
   * `holdSeconds` pass.
   */
  async verify(params: VerifyParams, options?: RequestOptions): Promise<Verification> {
    const res = await this.transport.request<Verification>(
      {
        method: "POST",
        path: "/api/v1/verify",
        auth: { kind: "admin" },
        body: {
          key: params.key,
          workflow_id: params.workflowId,
          hold: params.hold,
          hold_seconds: params.holdSeconds,
        },
      },
      options,
    );
    return res.data;
  }

  /**
   * A streaming query (`Accept: text/event-stream`): returns at once a
   * `QueryStream`, whose iteration sends the request and yields
   * `{ type: "chunk", text }` events as the workflow produces output, then
   * one `{ type: "done", cost, durationMs, requestId, inputTokens, outputTokens }`. `await
   * stream.text()` or `stream.finalResult()` read it to the end instead.
   * Errors before the first chunk are those of `queryWorkflow`; see
   * `QueryStream` for the rest. Breaking out of the loop cancels the query's
   * body; the server records the usage of what it served, once.
   */
  streamWorkflow(workflowId: string, input: unknown, options: QueryOptions = {}): QueryStream {
    const { apiKey, ...requestOptions } = options;
    return new QueryStream(() =>
      this.transport.stream(
        {
          method: "POST",
          path: `/api/v1/workflows/${segment(workflowId)}/query`,
          auth: { kind: "apiKey", apiKey },
          body: { input: input === undefined ? null : input },
          accept: "text/event-stream",
        },
        requestOptions,
      ),
    );
  }
}
