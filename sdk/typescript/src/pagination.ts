// Cursor pagination over `{"data":[…],"next_cursor":…}` list endpoints.
// A `PageIterator` fetches lazily: nothing is requested until it is iterated,
// and each page is requested only when the previous one is used up.
import { NodaiError } from "./errors.js";
import type { Page } from "./types.js";

export type FetchPage<T> = (cursor: string | undefined) => Promise<Page<T>>;

/**
 * Every item of a list, across pages:
 *
 * ```ts
 * for await (const key of nodai.keys.list({ limit: 100 })) console.log(key.id);
 * ```
 */
export class PageIterator<T> implements AsyncIterable<T> {
  constructor(
    private readonly fetchPage: FetchPage<T>,
    private readonly startCursor: string | undefined = undefined,
  ) {}

  /** The pages themselves, first to last. */
  async *pages(): AsyncGenerator<Page<T>, void, undefined> {
    let cursor = this.startCursor;
    const seen = new Set<string>();
    for (;;) {
      const page = await this.fetchPage(cursor);
      yield page;
      const next = page.next_cursor;
      if (next === null || next === undefined || next === "") return;
      // A cursor that repeats would loop forever; fail loudly instead.
      if (seen.has(next)) throw new NodaiError(`the server returned cursor ${next} twice`);
      seen.add(next);
      cursor = next;
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for await (const page of this.pages()) yield* page.data;
  }

  /** Collects every item into an array (mind large lists). */
  async toArray(): Promise<T[]> {
    const items: T[] = [];
    for await (const item of this) items.push(item);
    return items;
  }
}

/** Normalises a page from the wire (`next_cursor` may be absent) to `Page<T>`. */
export function toPage<T>(raw: { data: T[]; next_cursor?: string | null }): Page<T> {
  return { data: raw.data, next_cursor: raw.next_cursor ?? null };
}
