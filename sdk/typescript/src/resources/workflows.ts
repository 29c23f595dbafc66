// `nodai.workflows`: the admin API for workflows (`/api/v1/workflows`).
// Querying a workflow is `nodai.queryWorkflow`, which uses an API key instead.
import { PageIterator, toPage } from "../pagination.js";
import { segment, type RequestOptions, type Transport } from "../transport.js";
import type { CreateWorkflowParams, ListParams, Page, UpdateWorkflowParams, Workflow } from "../types.js";

const BASE = "/api/v1/workflows";

export class Workflows {
  constructor(private readonly transport: Transport) {}

  /**
   * Creates a workflow; `ConflictError` if the id is taken. Token prices
   * (`price_per_million_input_tokens`, `price_per_million_output_tokens`, USD,
   * default 0) price the tokens its upstream reports.
   */
  async create(params: CreateWorkflowParams, options?: RequestOptions): Promise<Workflow> {
    const res = await this.transport.request<Workflow>(
      { method: "POST", path: BASE, auth: { kind: "admin" }, body: params },
      options,
    );
    return res.data;
  }

  /** Every workflow, fetched page by page as you iterate. */
  list(params: ListParams = {}, options?: RequestOptions): PageIterator<Workflow> {
    return new PageIterator(
      (cursor) => this.listPage({ limit: params.limit, cursor }, options),
      params.cursor ?? undefined,
    );
  }

  /** One page: `{ data, next_cursor }`. */
  async listPage(params: ListParams = {}, options?: RequestOptions): Promise<Page<Workflow>> {
    const res = await this.transport.request<{ data: Workflow[]; next_cursor?: string | null }>(
      { method: "GET", path: BASE, auth: { kind: "admin" }, query: { limit: params.limit, cursor: params.cursor } },
      options,
    );
    return toPage(res.data);
  }

  async get(workflowId: string, options?: RequestOptions): Promise<Workflow> {
    const res = await this.transport.request<Workflow>(
      { method: "GET", path: `${BASE}/${segment(workflowId)}`, auth: { kind: "admin" } },
      options,
    );
    return res.data;
  }

  /** Partial update: fields given change, fields left out do not. */
  async update(workflowId: string, params: UpdateWorkflowParams, options?: RequestOptions): Promise<Workflow> {
    const res = await this.transport.request<Workflow>(
      { method: "PUT", path: `${BASE}/${segment(workflowId)}`, auth: { kind: "admin" }, body: params },
      options,
    );
    return res.data;
  }

  async delete(workflowId: string, options?: RequestOptions): Promise<void> {
    await this.transport.request<void>(
      { method: "DELETE", path: `${BASE}/${segment(workflowId)}`, auth: { kind: "admin" } },
      options,
    );
  }
}
