// `nodai.usage`: usage reports over every key (`GET /api/v1/usage`, admin
// token), per UTC period and, when asked, per key, customer, workflow and
// status code. `query` resolves to the rows, `queryCsv` to the same report as
// CSV text. One key's or customer's own statistics stay `keys.usage` and
// `customers.usage`.
import type { RequestOptions, Transport } from "../transport.js";
import type { UsageQueryParams, UsageRow } from "../types.js";
import { rfc3339 } from "./keys.js";

const PATH = "/api/v1/usage";

function query(params: UsageQueryParams): Record<string, string | undefined> {
  const groupBy = params.groupBy;
  return {
    from: rfc3339(params.from),
    to: rfc3339(params.to),
    granularity: params.granularity,
    group_by: typeof groupBy === "string" || groupBy === undefined ? groupBy : groupBy.join(","),
    key_id: params.keyId,
    customer_id: params.customerId,
    workflow_id: params.workflowId,
  };
}

export class UsageReports {
  constructor(private readonly transport: Transport) {}

  /**
   * Usage per period (`granularity`: `hour`, `day`, the default, or `month`,
   * UTC) and per group (`groupBy`: any of `key_id`, `customer_id`,
   * `workflow_id`, `status_code`), only for periods and groups with usage,
   * sorted by start, then group. Group fields are present only when grouped
   * by (`customer_id: null` for keys without one). `from`/`to` (default: the
   * last 30 days) are rounded out to whole periods. `ValidationError` (422)
   * for a bad range or an unknown group; `ServiceUnavailableError` with code
   * `archive_unavailable` from a replica that serves the API only.
   */
  async query(params: UsageQueryParams = {}, options?: RequestOptions): Promise<UsageRow[]> {
    const res = await this.transport.request<{ data: UsageRow[] }>(
      { method: "GET", path: PATH, auth: { kind: "admin" }, query: query(params) },
      options,
    );
    return res.data.data;
  }

  /**
   * The report of `query` as CSV text (`Accept: text/csv`): a header
   * `start,end,<group fields in the order given>,requests,errors,cost,input_tokens,output_tokens`,
   * then a line per row, `cost` an exact decimal (`0.012000`).
   */
  async queryCsv(params: UsageQueryParams = {}, options?: RequestOptions): Promise<string> {
    const res = await this.transport.request<string | undefined>(
      { method: "GET", path: PATH, auth: { kind: "admin" }, query: query(params), accept: "text/csv" },
      options,
    );
    return res.data ?? "";
  }
}
