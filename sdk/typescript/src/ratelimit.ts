// The `X-RateLimit-*` headers of a query answer, parsed.

/**
 * The rate-limit state after a query, from the `X-RateLimit-*` headers: of the
 * requests limits (the key's and its customer's), the one with the fewest remaining.
 */
export interface RateLimitState {
  /** Requests that limit allows in its window. */
  limit: number;
  /** Requests left in the window. */
  remaining: number;
  /** When the window frees a slot, in epoch seconds. */
  reset: number;
}

/** Parses the `X-RateLimit-*` headers; `null` unless all three are present and numeric. */
export function rateLimitFromHeaders(headers: Headers): RateLimitState | null {
  const limit = Number(headers.get("x-ratelimit-limit") ?? NaN);
  const remaining = Number(headers.get("x-ratelimit-remaining") ?? NaN);
  const reset = Number(headers.get("x-ratelimit-reset") ?? NaN);
  if ([limit, remaining, reset].some((n) => !Number.isFinite(n))) return null;
  return { limit, remaining, reset };
}
