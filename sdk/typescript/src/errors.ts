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

/** 404: `workflow_not_found`, `key_not_found`, `webhook_not_found`, … */
export class NotFoundError extends NodaiError {}

/** 402: the key's monthly cost limit is reached (`cost_limit_exceeded`). */
export class CostLimitExceededError extends NodaiError {}

/** 400 (malformed JSON or query string, bad path), 413 (body over 1 MiB) or 422 (invalid fields). */
export class ValidationError extends NodaiError {}

/**
 * 409: a workflow with this id exists already (`workflow_exists`), the key is
 * revoked and can no longer change (`key_revoked`, from `keys.update` and
 * `keys.rotate`), or another change landed first (`conflict`).
 */
export class ConflictError extends NodaiError {}

/** 429: the key's hourly rate limit is reached (`rate_limited`). */
export class RateLimitError extends NodaiError {
  /** Seconds to wait before trying again, from `Retry-After`; `undefined` if absent. */
  readonly retryAfter: number | undefined;

  constructor(message: string, init: NodaiErrorInit & { retryAfter?: number | undefined } = {}) {
    super(message, init);
    this.retryAfter = init.retryAfter;
  }
}

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
      return new CostLimitExceededError(message, init);
    case 403:
      return new PermissionDeniedError(message, init);
    case 404:
      return new NotFoundError(message, init);
    case 409:
      return new ConflictError(message, init);
    case 429:
      return new RateLimitError(message, { ...init, retryAfter: parseRetryAfter(headers.get("retry-after")) });
    case 502:
    case 504:
      return new UpstreamError(message, init);
    case 503:
      return new ServiceUnavailableError(message, init);
    default:
      return new NodaiError(message, init);
  }
}
