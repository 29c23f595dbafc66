// Public names for the wire types. Every object shape here comes from the
// server's OpenAPI document (openapi.json, generated into generated/openapi.ts);
// this module only gives them readable names. Field names stay as on the wire
// (snake_case), so what you read here is what the HTTP API documents.
import type { ReachedLimit } from "./errors.js";
import type { components } from "./generated/openapi.js";

type Schemas = components["schemas"];

/**
 * An API key as the API shows it (never with its secret). A revoked key has
 * `active: false` and `revoked_at` set (`null` for a live key).
 */
export type ApiKey = Schemas["KeyObject"];
/** A key plus its plaintext `key`: only returned by `keys.create` and `keys.rotate`. */
export type ApiKeyWithSecret = Schemas["KeyWithSecret"];
/** Body of `keys.create`. */
export type CreateKeyParams = Schemas["CreateKey"];
/**
 * Body of `keys.update`: a field left out (or `undefined`) is not changed;
 * `null` clears it (e.g. `rate_limit_per_hour: null` removes the limit).
 */
export type UpdateKeyParams = Schemas["UpdateKey"];
/** Body of `keys.rotate`. */
export type RotateKeyParams = Schemas["RotateKey"];
/**
 * Usage statistics of a key (`key_id` set) or of a customer (`customer_id`
 * set: the sum over its keys, revoked ones included), with token totals
 * (`total_input_tokens`, `total_output_tokens`) and per-period `input_tokens`
 * and `output_tokens`.
 */
export type Usage = Schemas["UsageObject"];
/** Usage statistics of one key. */
export type KeyUsage = Usage;
/** Usage statistics of one customer: `customer_id` set, `key_id` absent. */
export type CustomerUsage = Usage;
export type HourlyUsage = Schemas["Hourly"];
export type DailyUsage = Schemas["Daily"];

/**
 * A named limit of a key or a customer, `{ metric, window, max }`: `requests`
 * or `tokens` per `minute`, `hour`, `day` (rolling) or `month`, or `cost`
 * (USD) per `day` (UTC) or `month`. At most one per metric and window; a query
 * is admitted while the count is below `max`. On keys, `rate_limit_per_hour`
 * is `{ metric: "requests", window: "hour" }` and `cost_limit_per_month`
 * `{ metric: "cost", window: "month" }`: both spellings are accepted and
 * `limits` lists them too.
 */
export type Limit = Schemas["LimitObject"];
/** What a limit counts. */
export type LimitMetric = "requests" | "tokens" | "cost";
/** A limit's window (`cost` takes `day` and `month` only). */
export type LimitWindow = "minute" | "hour" | "day" | "month";

/**
 * One of the seller's customers, under the seller's own `id`. Its keys
 * (`customer_id`) share its `limits` and `max_concurrent`, on top of their own.
 */
export type Customer = Schemas["CustomerObject"];
/** Body of `customers.create`: `id` and `name` required; `billing` defaults to `postpaid`, `billing_anchor_day` to 1. */
export type CreateCustomerParams = Schemas["CreateCustomer"];
/**
 * Body of `customers.update`: a field left out (or `undefined`) is not
 * changed; `null` clears it. `limits` is the complete new list (`null` or `[]`
 * removes every limit).
 */
export type UpdateCustomerParams = Schemas["UpdateCustomer"];
/** A customer's billing: `postpaid` (the default) or `prepaid` (paid from credits). */
export type Billing = "postpaid" | "prepaid";

/**
 * A grant of prepaid credits to a customer (`customers.grantCredits`):
 * `amount` and `remaining` in USD, `expires_at` (`null`: never), `voided_at`
 * (`null` unless voided). A prepaid customer's queries draw from its live
 * grants, the one that expires soonest first.
 */
export type Grant = Schemas["GrantObject"];
/**
 * A customer's prepaid credits (`customers.credits`): `balance` in USD (the
 * query that crosses zero is allowed, so it may be slightly negative) and
 * every grant, voided and expired ones included, in the order granted.
 */
export type Credits = Schemas["CreditsObject"];
/**
 * Body of `customers.grantCredits`: `amount` (USD, more than 0), `expires_at`
 * (in the future, an RFC 3339 string or a Date; default never), `description`
 * (at most 1000 characters).
 */
export type GrantCreditsParams = Omit<Schemas["CreateGrant"], "expires_at"> & {
  expires_at?: string | Date | null;
};

/**
 * A workflow. `max_cost_per_request` is the most one query may cost (USD), or
 * `null`: in-flight queries count against a key's cost limit at it (else at
 * `price_per_request`), and a reported cost above it is recorded as it.
 * Without a reported `usage.cost`, a query costs `price_per_request` plus the
 * tokens it reported at `price_per_million_input_tokens` and
 * `price_per_million_output_tokens` (USD, default 0).
 */
export type Workflow = Schemas["WorkflowObject"];
/** Body of `workflows.create`; `max_cost_per_request`, if given, must be at least `price_per_request`. */
export type CreateWorkflowParams = Schemas["CreateWorkflow"];
/** Body of `workflows.update`: fields left out are not changed; `max_cost_per_request: null` clears the maximum. */
export type UpdateWorkflowParams = Schemas["UpdateWorkflow"];

/** A webhook subscription; `secret` is only present right after create or a secret rotation. */
export type Webhook = Schemas["WebhookObject"];
export type CreateWebhookParams = Schemas["CreateWebhook"];
/** Body of `webhooks.update`: fields left out are not changed; `description: null` clears it. */
export type UpdateWebhookParams = Schemas["UpdateWebhook"];
/** One message to one webhook, with its attempts so far. */
export type WebhookDelivery = Schemas["DeliveryObject"];
/** `{ data: WebhookDelivery[] }`, newest first. */
export type WebhookDeliveryList = Schemas["DeliveryList"];
/** The answer to `webhooks.test`: the id of the queued `webhook.test` delivery. */
export type WebhookTestSent = Schemas["TestSent"];

/** RFC 9457 problem details, the body of every error response. */
export type Problem = Schemas["Problem"];
/** The raw body of a successful query. */
export type QueryResponse = Schemas["QueryResponse"];

/** One page of a list endpoint. `next_cursor` is `null` on the last page. */
export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

/** `limit` (1 to 1000, server default 100) and `cursor` (from a previous page's `next_cursor`). */
export interface ListParams {
  limit?: number;
  cursor?: string | null;
}

/** Which keys `keys.list` shows: `live` (the default: not revoked, active or not), `revoked` or `all`. */
export type KeyStatus = "live" | "revoked" | "all";

/**
 * `keys.list`'s parameters: a page's, `q`, text the id, prefix, name or owner
 * must contain (ignoring case), and `status` (default `live`).
 */
export interface KeyListParams extends ListParams {
  q?: string;
  status?: KeyStatus;
}

/**
 * `customers.list`'s parameters: a page's, and `q`, text the id, name or email
 * must contain (ignoring case).
 */
export interface CustomerListParams extends ListParams {
  q?: string;
}

/** Range of the hourly and daily series of `keys.usage` and `customers.usage` (RFC 3339 strings or Dates). */
export interface UsageParams {
  from?: string | Date;
  to?: string | Date;
}

/** `nodai.verify`'s parameters. */
export interface VerifyParams {
  /** The plaintext API key (`nk_…`) your caller presented. */
  key: string;
  /** The workflow the work is for: checked against the key's `workflow_ids`; its price is the default `hold`. */
  workflowId?: string;
  /** USD held against cost limits and credits until settled (default: the workflow's `max_cost_per_request`, else its price; 0 without a workflow). */
  hold?: number;
  /** 1 to 86400 (default 300): past this an unsettled hold stops counting. */
  holdSeconds?: number;
}
/** One limit of a verified key or its customer after the verification: `max`, `remaining` and `reset`. */
export type LimitStanding = Schemas["LimitStanding"];
/**
 * The verdict of `nodai.verify`, valid or not. Valid: `valid: true`, `code:
 * "valid"`, `key_id`, `customer_id` (absent without one), `authorization_id`,
 * `hold`, `expires_at`, `limits`. Not valid: `valid: false`, `code`
 * (`invalid_api_key`, `key_inactive`, `key_expired`, `workflow_not_found`,
 * `workflow_not_allowed`, `rate_limited`, `concurrency_limited`,
 * `cost_limit_exceeded`, `insufficient_credits`), `detail`, and on a limit's
 * refusal `limit` and (`rate_limited`, `concurrency_limited`) `retry_after`.
 */
export type Verification = Omit<Schemas["VerifyResponse"], "limit"> & {
  /** On a refusal by a limit: which one. */
  limit?: ReachedLimit | null;
};

/**
 * A usage CloudEvent (1.0, structured JSON, `type: "nodai.usage"`) as
 * `events.send` takes it: `subject` is the key id, `(source, id)` is applied
 * once within 24 hours. `usageEvent(...)` builds one.
 */
export type UsageEvent = Schemas["UsageEvent"];
/** A usage event's `data`: `workflow_id`, and optionally the cost, tokens, status, duration and `authorization_id`. */
export type UsageEventData = Schemas["UsageData"];
/** What the server made of usage events: `accepted`, `duplicates`, and `rejected` with each one's index in your list. */
export type IngestResult = Schemas["Ingested"];
/** An event the server did not accept: `index` (its place in the list given to `events.send`), `id`, `status`, `code`, `detail`. */
export type RejectedEvent = Schemas["Rejected"];
/** `usageEvent`'s parameters: the key and workflow, and optionally the rest of the event. */
export interface UsageEventParams {
  /** The key (`key_…`) whose use this is: the event's `subject`. */
  keyId: string;
  workflowId: string;
  /** Default: a fresh UUID. Give your own (a request id) to make a resend from anywhere count once. */
  id?: string;
  /** Default: `"nodai-js"`. */
  source?: string;
  /** When the work was done (at most 5 minutes ahead, 35 days back); default: when the server receives it. */
  time?: string | Date;
  /** USD; default: priced like a query of the workflow (0 for a `statusCode` of 500 or more). */
  cost?: number;
  inputTokens?: number;
  outputTokens?: number;
  /** 100 to 599, default 200; 500 and above count as errors. */
  statusCode?: number;
  durationMs?: number;
  /** From `nodai.verify`: settles that verification's hold. */
  authorizationId?: string;
}

/** One period of one group of a usage report; group fields are present only when grouped by. */
export type UsageRow = Schemas["ReportRow"];
/** The periods of a usage report: UTC hours, days or months. */
export type Granularity = "hour" | "day" | "month";
/** What a usage report may be grouped by. */
export type UsageGroup = "key_id" | "customer_id" | "workflow_id" | "status_code";
/** `usage.query`'s and `usage.queryCsv`'s parameters. */
export interface UsageQueryParams {
  /** Start of the range (default: 30 days before `to`), rounded down to its period. */
  from?: string | Date;
  /** End of the range, exclusive (default: now), rounded up to its period. */
  to?: string | Date;
  /** Default `day`. Hourly ranges span at most 90 days, others 1100. */
  granularity?: Granularity;
  /** Group fields, in this order (also the CSV's column order); or a comma-separated string. */
  groupBy?: readonly UsageGroup[] | string;
  /** Only this key's usage. */
  keyId?: string;
  /** Only usage counted for this customer. */
  customerId?: string;
  /** Only this workflow's usage. */
  workflowId?: string;
}
