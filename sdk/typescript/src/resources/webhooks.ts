// `nodai.webhooks`: the admin API for webhook subscriptions
// (`/api/v1/webhooks`), their delivery log, manual retry and test messages.
// Verifying what a receiver gets is `verifyWebhook` (webhook-verify.ts).
import { PageIterator, toPage } from "../pagination.js";
import { segment, type RequestOptions, type Transport } from "../transport.js";
import type {
  CreateWebhookParams,
  ListParams,
  Page,
  UpdateWebhookParams,
  Webhook,
  WebhookDelivery,
  WebhookDeliveryList,
  WebhookTestSent,
} from "../types.js";

const BASE = "/api/v1/webhooks";

export class Webhooks {
  constructor(private readonly transport: Transport) {}

  /** Subscribes a URL. The result's `secret` (`whsec_…`) is shown this once: store it now. */
  async create(params: CreateWebhookParams, options?: RequestOptions): Promise<Webhook> {
    const res = await this.transport.request<Webhook>(
      { method: "POST", path: BASE, auth: { kind: "admin" }, body: params },
      options,
    );
    return res.data;
  }

  /** Every webhook, fetched page by page as you iterate. */
  list(params: ListParams = {}, options?: RequestOptions): PageIterator<Webhook> {
    return new PageIterator(
      (cursor) => this.listPage({ limit: params.limit, cursor }, options),
      params.cursor ?? undefined,
    );
  }

  /** One page: `{ data, next_cursor }`. */
  async listPage(params: ListParams = {}, options?: RequestOptions): Promise<Page<Webhook>> {
    const res = await this.transport.request<{ data: Webhook[]; next_cursor?: string | null }>(
      { method: "GET", path: BASE, auth: { kind: "admin" }, query: { limit: params.limit, cursor: params.cursor } },
      options,
    );
    return toPage(res.data);
  }

  async get(webhookId: string, options?: RequestOptions): Promise<Webhook> {
    const res = await this.transport.request<Webhook>(
      { method: "GET", path: `${BASE}/${segment(webhookId)}`, auth: { kind: "admin" } },
      options,
    );
    return res.data;
  }

  /**
   * Partial update: fields given change, fields left out do not;
   * `{ rotate_secret: true }` returns a new `secret` in this response only.
   */
  async update(webhookId: string, params: UpdateWebhookParams, options?: RequestOptions): Promise<Webhook> {
    const res = await this.transport.request<Webhook>(
      { method: "PUT", path: `${BASE}/${segment(webhookId)}`, auth: { kind: "admin" }, body: params },
      options,
    );
    return res.data;
  }

  async delete(webhookId: string, options?: RequestOptions): Promise<void> {
    await this.transport.request<void>(
      { method: "DELETE", path: `${BASE}/${segment(webhookId)}`, auth: { kind: "admin" } },
      options,
    );
  }

  /** The delivery log, newest first: every pending delivery and the last 1000 finished ones. */
  async deliveries(webhookId: string, options?: RequestOptions): Promise<WebhookDeliveryList> {
    const res = await this.transport.request<WebhookDeliveryList>(
      { method: "GET", path: `${BASE}/${segment(webhookId)}/deliveries`, auth: { kind: "admin" } },
      options,
    );
    return res.data;
  }

  /** Queues another attempt of a delivery now (same `webhook-id`); the server answers 202. */
  async retryDelivery(webhookId: string, deliveryId: string, options?: RequestOptions): Promise<WebhookDelivery> {
    const res = await this.transport.request<WebhookDelivery>(
      {
        method: "POST",
        path: `${BASE}/${segment(webhookId)}/deliveries/${segment(deliveryId)}/retry`,
        auth: { kind: "admin" },
      },
      options,
    );
    return res.data;
  }

  /** Sends a `webhook.test` event to the webhook; returns its `delivery_id`. */
  async test(webhookId: string, options?: RequestOptions): Promise<WebhookTestSent> {
    const res = await this.transport.request<WebhookTestSent>(
      { method: "POST", path: `${BASE}/${segment(webhookId)}/test`, auth: { kind: "admin" } },
      options,
    );
    return res.data;
  }
}
