// `nodai.keys`: the admin API for API keys (`/api/v1/api-keys`). Needs the
// admin token. The plaintext key is only in the results of `create` and `rotate`.
import { PageIterator, toPage } from "../pagination.js";
import { segment, type RequestOptions, type Transport } from "../transport.js";
import type {
  ApiKey,
  ApiKeyWithSecret,
  CreateKeyParams,
  KeyUsage,
  KeyListParams,
  Page,
  RotateKeyParams,
  UpdateKeyParams,
  UsageParams,
} from "../types.js";

const BASE = "/api/v1/api-keys";

export class Keys {
  constructor(private readonly transport: Transport) {}

  /**
   * Creates a key. The result's `key` is the only time the plaintext is shown:
   * store it now. A `customer_id` (an existing customer's) makes its queries
   * count against the customer's shared limits too; `limits` and
   * `max_concurrent` are the key's own.
   */
  async create(params: CreateKeyParams, options?: RequestOptions): Promise<ApiKeyWithSecret> {
    const res = await this.transport.request<ApiKeyWithSecret>(
      { method: "POST", path: BASE, auth: { kind: "admin" }, body: params },
      options,
    );
    return res.data;
  }

  /**
   * Every live key (or those matching `q`; `status: "revoked"` or `"all"` for
   * revoked ones too), fetched page by page as you iterate:
   * `for await (const key of nodai.keys.list())`.
   */
  list(params: KeyListParams = {}, options?: RequestOptions): PageIterator<ApiKey> {
    return new PageIterator(
      (cursor) => this.listPage({ limit: params.limit, q: params.q, status: params.status, cursor }, options),
      params.cursor ?? undefined,
    );
  }

  /** One page: `{ data, next_cursor }`; pass `next_cursor` back as `cursor` for the next. */
  async listPage(params: KeyListParams = {}, options?: RequestOptions): Promise<Page<ApiKey>> {
    const query = { limit: params.limit, cursor: params.cursor, q: params.q, status: params.status };
    const res = await this.transport.request<{ data: ApiKey[]; next_cursor?: string | null }>(
      { method: "GET", path: BASE, auth: { kind: "admin" }, query },
      options,
    );
    return toPage(res.data);
  }

  /** One key, revoked ones too (`active: false`, `revoked_at` set); `NotFoundError` if unknown. */
  async get(keyId: string, options?: RequestOptions): Promise<ApiKey> {
    const res = await this.transport.request<ApiKey>(
      { method: "GET", path: `${BASE}/${segment(keyId)}`, auth: { kind: "admin" } },
      options,
    );
    return res.data;
  }

  /**
   * Partial update: fields given change, fields left out (or `undefined`) do
   * not, and `null` clears a limit, e.g. `{ cost_limit_per_month: null }`, or
   * the customer (`{ customer_id: null }`). `limits` is the complete new list
   * (the two legacy limit fields included): `null` or `[]` removes every limit.
   * A revoked key no longer changes: `ConflictError` with code `key_revoked`.
   */
  async update(keyId: string, params: UpdateKeyParams, options?: RequestOptions): Promise<ApiKey> {
    const res = await this.transport.request<ApiKey>(
      { method: "PUT", path: `${BASE}/${segment(keyId)}`, auth: { kind: "admin" }, body: params },
      options,
    );
    return res.data;
  }

  /**
   * Revokes the key: it stops validating at once. It is kept for billing
   * (`get` and `usage` still answer); revoking it again does nothing.
   */
  async revoke(keyId: string, options?: RequestOptions): Promise<void> {
    await this.transport.request<void>(
      { method: "DELETE", path: `${BASE}/${segment(keyId)}`, auth: { kind: "admin" } },
      options,
    );
  }

  /**
   * Issues a new secret for the key (same `id`, same usage). The old secret
   * keeps validating for `grace_period_seconds` (default 0: stops at once).
   * `ConflictError` with code `key_revoked` for a revoked key.
   */
  async rotate(keyId: string, params: RotateKeyParams = {}, options?: RequestOptions): Promise<ApiKeyWithSecret> {
    const res = await this.transport.request<ApiKeyWithSecret>(
      { method: "POST", path: `${BASE}/${segment(keyId)}/rotate`, auth: { kind: "admin" }, body: params },
      options,
    );
    return res.data;
  }

  /** Usage statistics; `from`/`to` choose the range of the hourly and daily series. */
  async usage(keyId: string, params: UsageParams = {}, options?: RequestOptions): Promise<KeyUsage> {
    const res = await this.transport.request<KeyUsage>(
      {
        method: "GET",
        path: `${BASE}/${segment(keyId)}/usage`,
        auth: { kind: "admin" },
        query: { from: rfc3339(params.from), to: rfc3339(params.to) },
      },
      options,
    );
    return res.data;
  }
}

/** A Date as RFC 3339; strings pass through for the server to judge. */
export function rfc3339(value: string | Date | undefined): string | undefined {
  return value instanceof Date ? value.toISOString() : value;
}
