// Typed errors. Every error the SDK throws is a `NodaiError`; the subclass says
// what went wrong so callers can branch with `instanceof` instead of comparing
// status codes. The server's RFC 9457 problem `code` (`invalid_api_key`,
// `key_inactive`, `rate_limited`, …) is kept on `code` for finer decisions.
// This module builds errors; it does not decide what is retried (see client.ts).

/** The RFC 9457 problem details body nodai sends with every error. */
export interface ProblemDetails {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  [extra: string]: unknown;
}

export interface NodaiErrorInit {
  status?: number | undefined;
  code?: string | undefined;
  detail?: string | undefined;
  requestId?: string | undefined;
  headers?: Headers | undefined;
  body?: unknown;
  cause?: unknown;
}

/** Base class of every error thrown by the SDK. */
export class NodaiError extends Error {
  /** The HTTP status, or `undefined` when no response was received. */
  readonly status: number | undefined;
  /** The problem's stable machine-readable `code`, e.g. `invalid_api_key`. */
  readonly code: string | undefined;
  /** The problem's human-readable `detail`. */
  readonly detail: string | undefined;
  /** The request id, when the server sent one (`X-Request-Id` header or `request_id` field). */
  readonly requestId: string | undefined;
  /** The response headers, when there was a response. */
  readonly headers: Headers | undefined;
  /** The parsed response body (problem details), when there was one. */
  readonly body: unknown;

  constructor(message: string, init: NodaiErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.status = init.status;
    this.code = init.code;
    this.detail = init.detail;
    this.requestId = init.requestId;
    this.headers = init.headers;
    this.body = init.body;
  }
}

/** 401: missing or wrong admin token, or no `X-API-Key` (`missing_api_key`). */
export class AuthenticationError extends NodaiError {}

/** 403: `invalid_api_key`, `key_inactive`, `key_expired`, `workflow_not_allowed`, `origin_not_allowed`. */
export class PermissionDeniedError extends NodaiError {}

/** 404: `workflow_not_found`, `key_not_found`, `customer_not_found`, `grant_not_found`, `webhook_not_found`, … */
export class NotFoundError extends NodaiError {}

/**
 * The limit that refused a query: the `limit` of a rate-limit, concurrency or
 * cost-limit problem (`error.limit`).
 */
export interface ReachedLimit {
  /** `key` (the key's own limit) or `customer` (shared by its customer's keys). */
  scope: "key" | "customer" | (string & {});
  /** `requests`, `tokens`, `cost`, or `concurrent` for `max_concurrent`. */
  metric: "requests" | "tokens" | "cost" | "concurrent" | (string & {});
  /** `minute`, `hour`, `day` or `month`; absent for `concurrent`. */
  window?: "minute" | "hour" | "day" | "month" | (string & {});
  /** A count, or USD for `cost`. */
  max: number;
}

/** The problem's `limit`, when it is one; `undefined` otherwise. */
export function reachedLimit(body: unknown): ReachedLimit | undefined {
  if (body === null || typeof body !== "object") return undefined;
  const limit = (body as { limit?: unknown }).limit;
  if (limit === null || typeof limit !== "object" || Array.isArray(limit)) return undefined;
  const { scope, metric, window, max } = limit as Record<string, unknown>;
  if (typeof scope !== "string" || typeof metric !== "string" || typeof max !== "number") return undefined;
  return typeof window === "string" ? { scope, metric, window, max } : { scope, metric, max };
}

/**
 * 402 `cost_limit_exceeded`: a cost limit (per day or month) of the key or of
 * its customer is reached; `limit` says which (`limit.scope` is `key` or
 * `customer`).
 */
export class CostLimitExceededError extends NodaiError {
  /** The limit that refused the query, from the problem; `undefined` if it names none. */
  readonly limit: ReachedLimit | undefined;

  constructor(message: string, init: NodaiErrorInit = {}) {
    super(message, init);
    this.limit = reachedLimit(init.body);
  }
}

/**
 * 402 `insufficient_credits`: the prepaid customer's credit balance is at or
 * below zero. A `CostLimitExceededError` too, so code that handles every 402
 * keeps doing so; `limit` is `undefined`.
 */
export class InsufficientCreditsError extends CostLimitExceededError {}

/** 400 (malformed JSON or query string, bad path), 413 (body over 1 MiB) or 422 (invalid fields). */
export class ValidationError extends NodaiError {}

/**
 * 409: a workflow or customer with this id exists already (`workflow_exists`,
 * `customer_exists`), a customer with live keys cannot be deleted
 * (`customer_has_keys`), the key is revoked and can no longer change
 * (`key_revoked`, from `keys.update` and `keys.rotate`), or another change
 * landed first (`conflict`).
 */
export class ConflictError extends NodaiError {}

/** 409 `idempotency_conflict`: an `Idempotency-Key` already used with another body. */
export class IdempotencyConflictError extends ConflictError {}

/**
 * 429 `rate_limited`: a requests or tokens limit of the key or of its customer
 * is reached; `limit` says which (`limit.scope` is `key` or `customer`).
 */
export class RateLimitError extends NodaiError {
  /** Seconds to wait before trying again, from `Retry-After`; `undefined` if absent. */
  readonly retryAfter: number | undefined;
  /** The limit that refused the query, from the problem; `undefined` if it names none. */
  readonly limit: ReachedLimit | undefined;

  constructor(message: string, init: NodaiErrorInit & { retryAfter?: number | undefined } = {}) {
    super(message, init);
    this.retryAfter = init.retryAfter;
    this.limit = reachedLimit(init.body);
  }
}

/**
 * 429 `concurrency_limited`: the key's or its customer's `max_concurrent`
 * queries are in flight (`limit.metric` is `concurrent`, with no window).
 * `retryAfter` is short: a place frees when a query ends. A `RateLimitError`
 * too, so `retryOnRateLimit` and `instanceof RateLimitError` cover it.
 */
export class ConcurrencyLimitError extends RateLimitError {}

/** 502 `upstream_error` or 504 `upstream_timeout`: the workflow's upstream failed. */
export class UpstreamError extends NodaiError {}

/** 503: `metering_unavailable` (the stream cannot take the usage event; no work was done) or `not_ready`. */
export class ServiceUnavailableError extends NodaiError {}

/** No response: the connection failed, was refused, or timed out (see `timedOut`). */
export class APIConnectionError extends NodaiError {
  /** True when the SDK's own `timeoutMs` ran out. */
  readonly timedOut: boolean;

  constructor(message: string, init: NodaiErrorInit & { timedOut?: boolean } = {}) {
    super(message, init);
    this.timedOut = init.timedOut ?? false;
  }
}

/** `verifyWebhook` rejected a message: bad or missing signature, stale timestamp, bad secret. */
export class WebhookVerificationError extends NodaiError {}

/**
 * Parses a `Retry-After` value (delay-seconds or an HTTP date) into seconds;
 * `undefined` when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - now) / 1000));
}

/** Builds the error for a non-2xx response from its status, headers and parsed body. */
export function errorFromResponse(status: number, headers: Headers, body: unknown): NodaiError {
  const problem: ProblemDetails =
    body !== null && typeof body === "object" && !Array.isArray(body) ? (body as ProblemDetails) : {};
  const code = typeof problem.code === "string" ? problem.code : undefined;
  const detail =
    typeof problem.detail === "string" ? problem.detail : typeof body === "string" && body ? body : undefined;
  const bodyRequestId = (problem as { request_id?: unknown }).request_id;
  const requestId =
    headers.get("x-request-id") ?? (typeof bodyRequestId === "string" ? bodyRequestId : undefined);
  const title = typeof problem.title === "string" ? problem.title : `HTTP ${status}`;
  const message = `${status} ${code ?? title}${detail ? `: ${detail}` : ""}`;
  const init: NodaiErrorInit = { status, code, detail, requestId, headers, body };

  switch (status) {
    case 400:
    case 413:
    case 422:
      return new ValidationError(message, init);
    case 401:
      return new AuthenticationError(message, init);
    case 402:
      return code === "insufficient_credits"
        ? new InsufficientCreditsError(message, init)
        : new CostLimitExceededError(message, init);
    case 403:
      return new PermissionDeniedError(message, init);
    case 404:
      return new NotFoundError(message, init);
    case 409:
      return code === "idempotency_conflict" ? new IdempotencyConflictError(message, init) : new ConflictError(message, init);
    case 429: {
      const retryAfter = parseRetryAfter(headers.get("retry-after"));
      return code === "concurrency_limited"
        ? new ConcurrencyLimitError(message, { ...init, retryAfter })
        : new RateLimitError(message, { ...init, retryAfter });
    }
    case 502:
    case 504:
      return new UpstreamError(message, init);
    case 503:
      return new ServiceUnavailableError(message, init);
    default:
      return new NodaiError(message, init);
  }
}
