// `nodai.customers`: the admin API for the seller's customers
// (`/api/v1/customers`). A key that names a customer (`customer_id`) counts
// its queries against its own limits and the customer's, which all the
// customer's keys share; the customer's usage is the sum of its keys'. A
// `prepaid` customer's queries are paid from credit grants (`grantCredits`,
// `credits`, `voidCredits`).
import { PageIterator, toPage } from "../pagination.js";
import { newIdempotencyKey, segment, type RequestOptions, type Transport } from "../transport.js";
import type {
  CreateCustomerParams,
  Credits,
  Customer,
  CustomerListParams,
  CustomerUsage,
  Grant,
  GrantCreditsParams,
  Page,
  UpdateCustomerParams,
  UsageParams,
} from "../types.js";
import { rfc3339 } from "./keys.js";

const BASE = "/api/v1/customers";

/** Per-call options of `customers.grantCredits`. */
export interface GrantCreditsOptions extends RequestOptions {
  /**
   * Sent as `Idempotency-Key` (1 to 255 visible ASCII characters, e.g. your
   * order or payment id): a grant with a key already used answers the first
   * grant again, and with another body throws `IdempotencyConflictError`.
   * Default: a fresh key for this call, so its retries never grant twice.
   */
  idempotencyKey?: string;
}

export class Customers {
  constructor(private readonly transport: Transport) {}

  /**
   * Creates a customer under your own `id` (`[A-Za-z0-9_.:@-]{1,128}`);
   * `ConflictError` with code `customer_exists` if it is taken.
   */
  async create(params: CreateCustomerParams, options?: RequestOptions): Promise<Customer> {
    const res = await this.transport.request<Customer>(
      { method: "POST", path: BASE, auth: { kind: "admin" }, body: params },
      options,
    );
    return res.data;
  }

  /**
   * Every customer (or those whose id, name or email contains `q`, ignoring
   * case), fetched page by page as you iterate:
   * `for await (const customer of nodai.customers.list())`.
   */
  list(params: CustomerListParams = {}, options?: RequestOptions): PageIterator<Customer> {
    return new PageIterator(
      (cursor) => this.listPage({ limit: params.limit, q: params.q, cursor }, options),
      params.cursor ?? undefined,
    );
  }

  /** One page: `{ data, next_cursor }`; pass `next_cursor` back as `cursor` for the next. */
  async listPage(params: CustomerListParams = {}, options?: RequestOptions): Promise<Page<Customer>> {
    const query = { limit: params.limit, cursor: params.cursor, q: params.q };
    const res = await this.transport.request<{ data: Customer[]; next_cursor?: string | null }>(
      { method: "GET", path: BASE, auth: { kind: "admin" }, query },
      options,
    );
    return toPage(res.data);
  }

  /** One customer; `NotFoundError` with code `customer_not_found` if unknown. */
  async get(customerId: string, options?: RequestOptions): Promise<Customer> {
    const res = await this.transport.request<Customer>(
      { method: "GET", path: `${BASE}/${segment(customerId)}`, auth: { kind: "admin" } },
      options,
    );
    return res.data;
  }

  /**
   * Partial update: fields given change, fields left out (or `undefined`) do
   * not, and `null` clears an optional one (`email`, `metadata`,
   * `max_concurrent`, `low_balance_threshold`). `limits` is the complete new
   * list: `null` or `[]` removes every limit.
   */
  async update(customerId: string, params: UpdateCustomerParams, options?: RequestOptions): Promise<Customer> {
    const res = await this.transport.request<Customer>(
      { method: "PUT", path: `${BASE}/${segment(customerId)}`, auth: { kind: "admin" }, body: params },
      options,
    );
    return res.data;
  }

  /**
   * Deletes the customer. While it has live keys: `ConflictError` with code
   * `customer_has_keys` (revoke them, or move them to another customer,
   * first). Its usage stays readable.
   */
  async delete(customerId: string, options?: RequestOptions): Promise<void> {
    await this.transport.request<void>(
      { method: "DELETE", path: `${BASE}/${segment(customerId)}`, auth: { kind: "admin" } },
      options,
    );
  }

  /**
   * The customer's usage: the shape of a key's (`customer_id` instead of
   * `key_id`), summed over its keys, revoked ones included. `from`/`to`
   * choose the range of the hourly and daily series.
   */
  async usage(customerId: string, params: UsageParams = {}, options?: RequestOptions): Promise<CustomerUsage> {
    const res = await this.transport.request<CustomerUsage>(
      {
        method: "GET",
        path: `${BASE}/${segment(customerId)}/usage`,
        auth: { kind: "admin" },
        query: { from: rfc3339(params.from), to: rfc3339(params.to) },
      },
      options,
    );
    return res.data;
  }

  /**
   * Grants the customer `amount` USD (more than 0) of prepaid credits;
   * `expires_at` (in the future; default never) is when what is left of it
   * lapses, `description` at most 1000 characters.
   *
   * `options.idempotencyKey` makes the grant safe to repeat: a request with a
   * key already used answers the first grant (the same `id`), and with
   * another body throws `IdempotencyConflictError`. Without one, the SDK
   * makes a fresh key for this call, so its own retries (connection
   * failures, timeouts and 503s) never grant twice; pass your own (your order
   * id) to make a retry of your own, in another call or process, safe too.
   */
  async grantCredits(customerId: string, params: GrantCreditsParams, options: GrantCreditsOptions = {}): Promise<Grant> {
    const { idempotencyKey, ...requestOptions } = options;
    const body = params.expires_at instanceof Date ? { ...params, expires_at: rfc3339(params.expires_at) } : params;
    const res = await this.transport.request<Grant>(
      {
        method: "POST",
        path: `${BASE}/${segment(customerId)}/credits`,
        auth: { kind: "admin" },
        body,
        idempotencyKey: idempotencyKey ?? (await newIdempotencyKey()),
      },
      requestOptions,
    );
    return res.data;
  }

  /**
   * The customer's credit `balance` (USD; slightly negative after the query
   * that crossed zero) and every grant, voided and expired ones included.
   */
  async credits(customerId: string, options?: RequestOptions): Promise<Credits> {
    const res = await this.transport.request<Credits>(
      { method: "GET", path: `${BASE}/${segment(customerId)}/credits`, auth: { kind: "admin" } },
      options,
    );
    return res.data;
  }

  /**
   * Voids a grant: what is left of it no longer counts (`voided_at` is set).
   * Voiding it again does nothing; `NotFoundError` with code
   * `grant_not_found` if the customer has no such grant.
   */
  async voidCredits(customerId: string, grantId: string, options?: RequestOptions): Promise<Grant> {
    const res = await this.transport.request<Grant>(
      {
        method: "POST",
        path: `${BASE}/${segment(customerId)}/credits/${segment(grantId)}/void`,
        auth: { kind: "admin" },
      },
      options,
    );
    return res.data;
  }
}
