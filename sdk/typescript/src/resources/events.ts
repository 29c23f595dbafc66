// `nodai.events`: usage CloudEvents for work done outside nodai
// (`POST /api/v1/events`, admin token). A service that does the work itself
// (after `nodai.verify`) reports it as a usage event: a CloudEvent 1.0 of type
// `nodai.usage` whose `subject` is the key id. The server applies each
// `(source, id)` once within 24 hours, so a post of events is safe to repeat:
// `send` retries a batch after a 503 or a failed connection, even one that may
// have reached the server, and what was stored already comes back among the
// `duplicates`.
import type { RequestOptions, Transport } from "../transport.js";
import type { IngestResult, RejectedEvent, UsageEvent, UsageEventData, UsageEventParams } from "../types.js";
import { rfc3339 } from "./keys.js";

const PATH = "/api/v1/events";
/** The most events the server takes in one request. */
export const MAX_BATCH_EVENTS = 1000;
/** The largest request body the server takes (1 MiB), the batch's brackets and commas included. */
export const MAX_BATCH_BYTES = 1024 * 1024;
/** The `source` of events that `usageEvent` builds without one. */
export const DEFAULT_EVENT_SOURCE = "nodai-js";
const SINGLE = "application/cloudevents+json";
const BATCH = "application/cloudevents-batch+json";

/** A random UUID (v4): WebCrypto's where there is one, else from `getRandomValues`, else `Math.random`. */
function randomUUID(): string {
  type Random = { randomUUID?: () => string; getRandomValues?: <T extends Uint8Array>(array: T) => T };
  const random = (globalThis as { crypto?: Random }).crypto;
  try {
    if (typeof random?.randomUUID === "function") return random.randomUUID();
  } catch {
    // A browser page not served over HTTPS has no randomUUID.
  }
  const bytes = new Uint8Array(16);
  if (typeof random?.getRandomValues === "function") random.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A usage CloudEvent for `events.send`: `keyId`'s use of `workflowId`. `id`
 * defaults to a fresh UUID and `source` to `"nodai-js"`; `cost` is USD
 * (default: priced like a query of the workflow); `authorizationId` (from
 * `nodai.verify`) settles that verification's hold.
 */
export function usageEvent(params: UsageEventParams): UsageEvent {
  const data: UsageEventData = { workflow_id: params.workflowId };
  if (params.authorizationId !== undefined) data.authorization_id = params.authorizationId;
  if (params.cost !== undefined) data.cost = params.cost;
  if (params.inputTokens !== undefined) data.input_tokens = params.inputTokens;
  if (params.outputTokens !== undefined) data.output_tokens = params.outputTokens;
  if (params.statusCode !== undefined) data.status_code = params.statusCode;
  if (params.durationMs !== undefined) data.duration_ms = params.durationMs;
  const event: UsageEvent = {
    specversion: "1.0",
    id: params.id ?? randomUUID(),
    source: params.source ?? DEFAULT_EVENT_SOURCE,
    type: "nodai.usage",
    subject: params.keyId,
    data,
  };
  if (params.time !== undefined) event.time = rfc3339(params.time);
  return event;
}

/** One request's worth of events: the index of its first in the caller's list, and the body. */
export interface Batch {
  offset: number;
  count: number;
  body: string;
}

const encoder = new TextEncoder();

function encode(index: number, event: unknown): string {
  if (event === null || typeof event !== "object" || Array.isArray(event)) {
    throw new TypeError(`event ${index} is not an object: events are objects such as usageEvent(...) builds`);
  }
  const json = JSON.stringify(event);
  const bytes = encoder.encode(json).length;
  if (bytes + 2 > MAX_BATCH_BYTES) {
    throw new RangeError(`event ${index} is ${bytes} bytes as JSON: more than a request may carry (1 MiB)`);
  }
  return json;
}

/**
 * Splits `events` into request bodies of at most `MAX_BATCH_EVENTS` events
 * and `MAX_BATCH_BYTES` bytes (UTF-8), in order. Every event is serialised
 * (and checked) before anything is sent.
 */
export function planBatches(events: Iterable<UsageEvent>): Batch[] {
  const encoded = Array.from(events, (event, index) => encode(index, event));
  const batches: Batch[] = [];
  const flush = (start: number, end: number): void => {
    batches.push({ offset: start, count: end - start, body: `[${encoded.slice(start, end).join(",")}]` });
  };
  let start = 0;
  let size = 2; // "[" and "]"
  encoded.forEach((json, i) => {
    const bytes = encoder.encode(json).length;
    const count = i - start;
    let added = bytes + (count > 0 ? 1 : 0); // a comma before all but the first
    if (count > 0 && (count >= MAX_BATCH_EVENTS || size + added > MAX_BATCH_BYTES)) {
      flush(start, i);
      start = i;
      size = 2;
      added = bytes;
    }
    size += added;
  });
  if (start < encoded.length) flush(start, encoded.length);
  return batches;
}

export class Events {
  constructor(private readonly transport: Transport) {}

  /**
   * Sends usage events, any number, as batches of at most 1000 events and
   * 1 MiB (`application/cloudevents-batch+json`), one after another. Resolves
   * to the sums over the batches: `accepted`, `duplicates` (sent before, or
   * twice here) and `rejected`, whose `index` is the event's place in
   * `events`. A batch is retried after a 503 or a failed connection (events
   * are applied once, so this is safe). An error that is not retried is
   * thrown, and the batches before it stay accepted: sending the whole list
   * again is safe (what arrived counts as duplicates).
   *
   * Throws `RangeError` (before sending anything) for an event over 1 MiB as
   * JSON, `TypeError` for one that is not an object. An empty list sends nothing.
   */
  async send(events: Iterable<UsageEvent>, options?: RequestOptions): Promise<IngestResult> {
    const result: IngestResult = { accepted: 0, duplicates: 0, rejected: [] };
    for (const batch of planBatches(events)) {
      const res = await this.transport.request<IngestResult>(
        {
          method: "POST",
          path: PATH,
          auth: { kind: "admin" },
          rawBody: batch.body,
          contentType: BATCH,
          replayable: true,
        },
        options,
      );
      result.accepted += res.data.accepted;
      result.duplicates += res.data.duplicates;
      for (const rejected of res.data.rejected ?? []) {
        const mapped: RejectedEvent = { ...rejected, index: rejected.index + batch.offset };
        result.rejected.push(mapped);
      }
    }
    return result;
  }

  /**
   * Sends one usage event (`application/cloudevents+json`). An invalid event
   * throws `ValidationError` (422) with its `code` (`invalid_event`,
   * `key_not_found`, `workflow_not_found`, `time_out_of_range`, …); a repeat
   * resolves to `duplicates: 1`.
   */
  async sendOne(event: UsageEvent, options?: RequestOptions): Promise<IngestResult> {
    const res = await this.transport.request<IngestResult>(
      {
        method: "POST",
        path: PATH,
        auth: { kind: "admin" },
        rawBody: encode(0, event),
        contentType: SINGLE,
        replayable: true,
      },
      options,
    );
    return res.data;
  }
}
