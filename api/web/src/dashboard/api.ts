// The admin API as the dashboard uses it: the session's token (kept in
// sessionStorage, so it lives as long as the tab and no longer), one fetch
// wrapper that turns problem+json answers into ApiError, and the shapes of
// the objects the API returns. A 401 on any call made with the session's
// token signs the tab out (see onUnauthorized).

/** What a limit counts: admitted queries, input + output tokens, or USD. */
export type Metric = "requests" | "tokens" | "cost";
/** Requests and tokens: a rolling minute, hour or day, or the month; cost: the UTC day or the (billing) month. */
export type LimitWindow = "minute" | "hour" | "day" | "month";

/** One of a key's or a customer's `limits`: at most one per metric and window. */
export interface Limit {
  metric: Metric;
  window: LimitWindow;
  /** A count (requests, tokens) or USD (cost). */
  max: number;
}

export interface Key {
  id: string;
  prefix: string;
  name: string;
  owner: string | null;
  active: boolean;
  workflow_ids: string[];
  rate_limit_per_hour: number | null;
  cost_limit_per_month: number | null;
  alert_thresholds: number[];
  expires_at: string | null;
  allowed_origins: string[];
  created_at: string;
  updated_at: string;
  last_used_at: string | null;
  metadata?: unknown;
  /** When it was revoked (then `active` is false), or null: a live key. */
  revoked_at: string | null;
  /** The customer whose shared limits the key's queries also count against. */
  customer_id: string | null;
  /** Every limit of the key, `rate_limit_per_hour` and `cost_limit_per_month` included. */
  limits: Limit[];
  /** Queries in flight at once, or null: no cap. */
  max_concurrent: number | null;
}

export interface Customer {
  /** The seller's own id for the customer, `[A-Za-z0-9_.:@-]{1,128}`. */
  id: string;
  name: string;
  email: string | null;
  metadata?: unknown;
  /** Shared by all the customer's keys. */
  limits: Limit[];
  max_concurrent: number | null;
  billing: "postpaid" | "prepaid";
  /** USD, or null. */
  low_balance_threshold: number | null;
  /** 1 to 28: the day (UTC midnight) the customer's monthly periods start. */
  billing_anchor_day: number;
  created_at: string;
  updated_at: string;
}

/** A grant of prepaid credits to a customer. */
export interface Grant {
  /** `gr_…` */
  id: string;
  /** USD granted. */
  amount: number;
  /** USD not drawn yet (frozen when it expired or was voided). */
  remaining: number;
  /** When it stops counting, or null: never. */
  expires_at: string | null;
  created_at: string;
  voided_at: string | null;
  description: string | null;
}

/** A customer's credits: its balance and every grant, in the order granted. */
export interface Credits {
  /** USD: what is left of the live grants, less what queries drew beyond them (so it may be slightly negative). */
  balance: number;
  grants: Grant[];
}

/** Which keys the list shows: `live` (not revoked, active or not; the API's default), `revoked` or `all`. */
export type KeyStatus = "live" | "revoked" | "all";

/** Only create and rotate answer with the plaintext `key`. */
export interface KeyWithSecret extends Key {
  key: string;
}

export interface Bucket {
  requests: number;
  cost: number;
  errors: number;
  input_tokens: number;
  output_tokens: number;
}

/** A key's usage (`key_id`) or a customer's, summed over its keys (`customer_id`). */
export interface Usage {
  key_id?: string;
  customer_id?: string;
  total_requests: number;
  total_cost: number;
  total_input_tokens: number;
  total_output_tokens: number;
  requests_today: number;
  cost_today: number;
  requests_this_hour: number;
  cost_this_month: number;
  last_used_at: string | null;
  hourly: (Bucket & { hour: string })[];
  daily: (Bucket & { date: string })[];
}

/** The periods of GET /api/v1/usage: UTC hours, days or months. */
export type Granularity = "hour" | "day" | "month";

/** What GET /api/v1/usage may group its rows by (`group_by`, a comma list). */
export type UsageGroup = "key_id" | "customer_id" | "workflow_id" | "status_code";

/**
 * A row of GET /api/v1/usage: one period, and one group when grouped (only
 * the fields grouped by are present; `customer_id` is null for keys
 * without a customer). Rows come only for periods and groups with usage.
 */
export interface UsageRow extends Bucket {
  /** RFC 3339, the period's first instant. */
  start: string;
  /** RFC 3339, the next period's first instant. */
  end: string;
  key_id?: string;
  customer_id?: string | null;
  workflow_id?: string;
  status_code?: number;
}

export interface Workflow {
  id: string;
  name: string;
  upstream_url: string;
  price_per_request: number;
  /** The most one query may cost (USD), or null: none. */
  max_cost_per_request: number | null;
  /** USD per million input (prompt) tokens the upstream reports. */
  price_per_million_input_tokens: number;
  /** USD per million output (completion) tokens. */
  price_per_million_output_tokens: number;
  created_at: string;
  updated_at: string;
}

export interface Webhook {
  id: string;
  url: string;
  events: string[];
  description: string | null;
  active: boolean;
  disabled_reason: string | null;
  disabled_at: string | null;
  created_at: string;
  updated_at: string;
  /** Only in the create response (and an update that rotated it). */
  secret?: string;
}

export interface Delivery {
  id: string;
  event_type: string;
  status: "pending" | "succeeded" | "failed";
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  next_attempt_at: string | null;
  created_at: string;
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

/** The event types a webhook may subscribe to (the SPEC's list). */
export const EVENT_TYPES = [
  "usage.threshold",
  "usage.rate_limited",
  "credits.granted",
  "credits.low",
  "credits.exhausted",
  "credits.expired",
  "key.created",
  "key.updated",
  "key.revoked",
  "key.rotated",
] as const;

/** An error answer (RFC 9457 problem details), or a failure to reach the server. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
  ) {
    super(detail);
  }
}

const TOKEN_KEY = "nodai.admin-token";

export const session = {
  token(): string | null {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  },
  set(token: string): void {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear(): void {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Storage unavailable: there is nothing to clear.
    }
  },
};

let unauthorized: (error: ApiError) => void = () => {};

/** Who to tell when the server refuses the session's token. */
export function onUnauthorized(handler: (error: ApiError) => void): void {
  unauthorized = handler;
}

interface CallOptions {
  /** Use this token instead of the session's, and do not sign out on 401 (the sign-in probe). */
  token?: string;
  /** More request headers (an `Idempotency-Key`, say). */
  headers?: Record<string, string>;
}

/**
 * Sends one admin call asking for `accept`; resolves with the response when
 * it is a success, else throws its problem+json as an ApiError (and signs
 * the tab out on a 401 made with the session's token).
 */
async function request(
  method: string,
  path: string,
  body: unknown,
  options: CallOptions,
  accept: string,
): Promise<Response> {
  const token = options.token ?? session.token() ?? "";
  const headers: Record<string, string> = {
    ...options.headers,
    authorization: `Bearer ${token}`,
    accept,
  };
  if (body !== undefined) headers["content-type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "network_error", "Could not reach the nodai server. Check that it is running and retry.");
  }
  if (res.ok) return res;
  const text = await res.text();
  const problem = (parseJson(text) ?? {}) as { detail?: unknown; title?: unknown; code?: unknown };
  const detail =
    typeof problem.detail === "string" && problem.detail
      ? problem.detail
      : typeof problem.title === "string"
        ? problem.title
        : text.slice(0, 200) || res.statusText || "Request failed";
  const error = new ApiError(res.status, typeof problem.code === "string" ? problem.code : "http_error", detail);
  if (res.status === 401 && options.token === undefined) {
    session.clear();
    unauthorized(error);
  }
  throw error;
}

/** `text` parsed as JSON; undefined when empty or not JSON. */
function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Calls the admin API; resolves with the parsed JSON body (undefined for 204). */
export async function api<T>(method: string, path: string, body?: unknown, options: CallOptions = {}): Promise<T> {
  const res = await request(method, path, body, options, "application/json");
  return parseJson(await res.text()) as T;
}

/**
 * GETs `path` as a file in another format (`accept`: `text/csv`, say) and
 * resolves with its body; an error answer (problem+json) throws an ApiError
 * as `api` does.
 */
export async function apiFile(path: string, accept: string): Promise<Blob> {
  const res = await request("GET", path, undefined, {}, accept);
  return res.blob();
}

/** `/api/v1/...` with `params` (empty values left out) as the query string. */
export function withQuery(path: string, params: Record<string, string | number | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, String(value));
  }
  const query = search.toString();
  return query ? `${path}?${query}` : path;
}

/**
 * Every item of a list, page after page along `next_cursor`: for the short
 * lists (workflows, webhooks) that the dashboard shows whole. `params` go
 * on every page's query string.
 */
export async function all<T>(path: string, params: Record<string, string> = {}): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  do {
    const page: Page<T> = await api<Page<T>>("GET", withQuery(path, { ...params, limit: 1000, cursor }));
    items.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

/** Path segment, escaped. */
export const seg = encodeURIComponent;
