// @nodai/sdk: the TypeScript client of nodai (API keys, customers and their
// limits, metered workflow queries, streaming queries, usage and webhooks, and
// metering of work served elsewhere: verify, usage events, usage reports). No
// runtime dependencies: global `fetch` and WebCrypto only, so the same code
// runs in browsers, Node >= 18, Deno, Bun and edge runtimes.
export {
  Nodai,
  rateLimitFromHeaders,
  DEFAULT_BASE_URL,
  DEFAULT_MAX_RETRIES,
  DEFAULT_MAX_RETRY_AFTER_MS,
  DEFAULT_TIMEOUT_MS,
} from "./client.js";
export type { NodaiOptions, QueryOptions, QueryResult, RateLimitState } from "./client.js";
export type { QueryStream, StreamChunkEvent, StreamDoneEvent, StreamEvent, StreamResult } from "./streaming.js";
export type { FetchLike, RequestOptions } from "./transport.js";
export {
  NodaiError,
  AuthenticationError,
  PermissionDeniedError,
  NotFoundError,
  CostLimitExceededError,
  InsufficientCreditsError,
  ValidationError,
  ConflictError,
  IdempotencyConflictError,
  RateLimitError,
  ConcurrencyLimitError,
  UpstreamError,
  ServiceUnavailableError,
  APIConnectionError,
  WebhookVerificationError,
} from "./errors.js";
export type { ProblemDetails, ReachedLimit } from "./errors.js";
export { PageIterator } from "./pagination.js";
export { verifyWebhook } from "./webhook-verify.js";
export type { VerifyWebhookOptions, WebhookEvent, WebhookHeaders, WebhookPayload } from "./webhook-verify.js";
export type { Keys } from "./resources/keys.js";
export type { Customers, GrantCreditsOptions } from "./resources/customers.js";
export type { Workflows } from "./resources/workflows.js";
export type { Webhooks } from "./resources/webhooks.js";
export type { Events } from "./resources/events.js";
export type { UsageReports } from "./resources/usage.js";
export { usageEvent } from "./resources/events.js";
export type * from "./types.js";
/** The raw generated OpenAPI types (`paths`, `components`), for anything not named above. */
export type { components, paths } from "./generated/openapi.js";
