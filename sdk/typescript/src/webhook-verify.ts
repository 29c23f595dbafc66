// Verifies webhook messages from nodai (Standard Webhooks v1) with WebCrypto,
// so it runs in browsers, Node >= 18, Deno, Bun and edge runtimes. It checks
// the signature and the timestamp; it does not de-duplicate: delivery is at
// least once, so remember `webhook-id`s you have handled.
import { WebhookVerificationError } from "./errors.js";

/** A `Headers` object, or a plain object of headers (e.g. Node's `req.headers`); names are case-insensitive. */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

/** The raw request body, exactly as received: never a re-serialised object. */
export type WebhookPayload = string | Uint8Array | ArrayBuffer;

export interface VerifyWebhookOptions {
  /** Maximum distance between `webhook-timestamp` and now, in seconds. Default 300. */
  toleranceSeconds?: number;
  /** The current time (for tests). Default `Date.now()`. */
  now?: Date | number;
}

/** The JSON body nodai sends: `{"type","timestamp","data"}`. */
export interface WebhookEvent<TData = unknown> {
  type: string;
  timestamp: string;
  data: TData;
}

const DEFAULT_TOLERANCE_SECONDS = 5 * 60;
const SECRET_PREFIX = "whsec_";

/**
 * Verifies a webhook message and returns its parsed JSON body.
 *
 * The signed content is `${webhook-id}.${webhook-timestamp}.${body}`, the key
 * is the base64-decoded part of the secret after `whsec_`, and
 * `webhook-signature` holds one or more space-separated `v1,<base64>` entries
 * (several while a rotated secret is in its grace period); one matching entry
 * is enough. Throws `WebhookVerificationError` when a header is missing, the
 * timestamp is more than `toleranceSeconds` away from now, or no signature matches.
 */
export async function verifyWebhook<TData = unknown>(
  payload: WebhookPayload,
  headers: WebhookHeaders,
  secret: string,
  options: VerifyWebhookOptions = {},
): Promise<WebhookEvent<TData>> {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !timestamp || !signatures) {
    throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header");
  }

  if (!/^\d{1,15}$/.test(timestamp)) throw new WebhookVerificationError("invalid webhook-timestamp header");
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  const nowMs = options.now === undefined ? Date.now() : Number(options.now);
  const ageSeconds = Math.floor(nowMs / 1000) - Number(timestamp);
  if (ageSeconds > tolerance) throw new WebhookVerificationError("message timestamp too old");
  if (ageSeconds < -tolerance) throw new WebhookVerificationError("message timestamp too far in the future");

  const key = decodeSecret(secret);
  const body = toBytes(payload);
  const signed = concat(new TextEncoder().encode(`${id}.${timestamp}.`), body);
  const subtle = await getSubtle();
  const cryptoKey = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const expected = new Uint8Array(await subtle.sign("HMAC", cryptoKey, signed));

  let matched = false;
  for (const entry of signatures.split(" ")) {
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue;
    const candidate = base64Decode(entry.slice(comma + 1));
    // No early exit: every entry is compared, each in constant time.
    if (candidate !== undefined && constantTimeEqual(candidate, expected)) matched = true;
  }
  if (!matched) throw new WebhookVerificationError("no matching signature");

  try {
    return JSON.parse(new TextDecoder().decode(body)) as WebhookEvent<TData>;
  } catch (cause) {
    throw new WebhookVerificationError("the payload is not JSON", { cause });
  }
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function" && typeof (headers as Headers).has === "function") {
    return (headers as Headers).get(name) ?? undefined;
  }
  const record = headers as Record<string, string | string[] | undefined>;
  for (const [key, value] of Object.entries(record)) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? value.join(" ") : value;
  }
  return undefined;
}

function decodeSecret(secret: string): Uint8Array<ArrayBuffer> {
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  const key = base64Decode(encoded);
  if (key === undefined || key.length === 0) {
    throw new WebhookVerificationError("the webhook secret is not `whsec_` followed by base64");
  }
  return key;
}

function toBytes(payload: WebhookPayload): Uint8Array {
  if (typeof payload === "string") return new TextEncoder().encode(payload);
  if (payload instanceof Uint8Array) return payload;
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  throw new TypeError("payload must be the raw body: a string, Uint8Array or ArrayBuffer");
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Standard base64 (padding optional); `undefined` if malformed. */
function base64Decode(value: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value)) return undefined;
  try {
    const binary = atob(value);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  } catch {
    return undefined;
  }
}

/** Compares in time that depends only on the lengths (which are not secret). */
function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/**
 * The WebCrypto `SubtleCrypto`: `globalThis.crypto.subtle` everywhere except
 * Node 18, where the global needs a flag and `node:crypto`'s `webcrypto` is
 * used instead (a specifier bundlers are told to leave alone).
 */
async function getSubtle(): Promise<SubtleCrypto> {
  const global = (globalThis as { crypto?: Crypto }).crypto;
  if (global?.subtle) return global.subtle;
  try {
    const specifier = "node:crypto";
    const mod = (await import(/* webpackIgnore: true */ /* @vite-ignore */ specifier)) as {
      webcrypto?: Crypto;
    };
    if (mod.webcrypto?.subtle) return mod.webcrypto.subtle;
  } catch {
    // Not Node: fall through.
  }
  throw new WebhookVerificationError("WebCrypto (crypto.subtle) is not available in this runtime");
}
