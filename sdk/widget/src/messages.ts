// What the widget tells a visitor when a query does not go through: one
// friendly sentence per problem `code` nodai answers (or per status when the
// body has no code), the rate-limit line, and the message for a request the
// browser itself refused. Text only: the widget decides where it goes.

const KEY_INVALID =
  "This widget's key is not valid (it may have been revoked, switched off or have expired). If this is your site, check the key in nodai.";

/**
 * Shown when `fetch` rejects without a response. From a browser that is
 * either a failed CORS preflight or an answer without CORS headers (the
 * page's origin is not among the key's `allowed_origins`, or the key is not
 * valid), or nodai being unreachable; the page cannot tell which.
 */
export const UNREACHABLE =
  "This site is not allowed to use this widget's key (its allowed origins), or nodai could not be reached.";

export const STOPPED = "Stopped.";
export const CUT_OFF = "The answer was cut off before it ended. Please try again.";
export const MISCONFIGURED = "This widget is missing its workflow id or its key.";

const BY_CODE: Record<string, string> = {
  missing_api_key: KEY_INVALID,
  invalid_api_key: KEY_INVALID,
  key_inactive: KEY_INVALID,
  key_expired: KEY_INVALID,
  origin_not_allowed:
    "This site is not allowed to use this widget's key (it is not among the key's allowed origins).",
  workflow_not_allowed: "This widget's key may not be used for this workflow.",
  workflow_not_found: "This widget's workflow does not exist.",
  cost_limit_exceeded: "This widget has reached its usage limit for this month.",
  payload_too_large: "Your question is too long.",
  upstream_error: "The answering service failed. Please try again in a moment.",
  upstream_timeout: "The answering service took too long to answer. Please try again.",
  metering_unavailable: "The service is busy right now. Please try again in a moment.",
  not_ready: "The service is starting up. Please try again in a moment.",
};

/** The message for an error answer (`status`) or an `event: error` (`status` 0). */
export function problemMessage(status: number, code: string | undefined): string {
  const known = code === undefined ? undefined : BY_CODE[code];
  if (known !== undefined) return known;
  if (status === 401 || status === 403) return KEY_INVALID;
  if (status === 402) return BY_CODE.cost_limit_exceeded!;
  if (status === 404) return BY_CODE.workflow_not_found!;
  if (status === 502) return BY_CODE.upstream_error!;
  if (status === 504) return BY_CODE.upstream_timeout!;
  if (status === 503) return BY_CODE.metering_unavailable!;
  return `Something went wrong${status ? ` (HTTP ${status})` : ""}. Please try again.`;
}

/** "Too many requests — try again in 42 s" (minutes past 90 s). */
export function retryMessage(seconds: number): string {
  const wait = seconds > 90 ? `${Math.ceil(seconds / 60)} min` : `${seconds} s`;
  return `Too many requests — try again in ${wait}.`;
}

/** "12 of 40 requests left this hour". */
export function rateLimitMessage(limit: number, remaining: number): string {
  return `${remaining} of ${limit} request${limit === 1 ? "" : "s"} left this hour`;
}
