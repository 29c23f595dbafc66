// `nodai.customers`: the admin API for the seller's customers
// (`/api/v1/customers`). A key that names a customer (`customer_id`) counts
// its queries against its own limits and the customer's, which all the
// customer's keys share; the customer's usage is the sum of its keys'.
import { PageIterator, toPage } from "../pagination.js";
import { segment, type RequestOptions, type Transport } from "../transport.js";
import type {
  CreateCustomerParams,
  Customer,
  CustomerListParams,
  CustomerUsage,
  Page,
  UpdateCustomerParams,
  UsageParams,
} from "../types.js";
import { rfc3339 } from "./keys.js";

const BASE = "/api/v1/customers";

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
}
