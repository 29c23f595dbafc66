// Type-checked (never run) by package.test.js: a strict ESM consumer of the
// published types, resolved through the package's `exports` map.
import {
  Nodai,
  NodaiError,
  RateLimitError,
  verifyWebhook,
  type ApiKey,
  type ApiKeyWithSecret,
  type KeyStatus,
  type KeyUsage,
  type QueryResult,
  type QueryStream,
  type StreamEvent,
  type StreamResult,
  type UpdateKeyParams,
  type UpdateWorkflowParams,
  type WebhookEvent,
  type Workflow,
  ConcurrencyLimitError,
  CostLimitExceededError,
  InsufficientCreditsError,
  type CreateCustomerParams,
  type Customer,
  type CustomerUsage,
  type Limit,
  type ReachedLimit,
  type UpdateCustomerParams,
  type Credits,
  type Grant,
  type GrantCreditsOptions,
  type GrantCreditsParams,
  usageEvent,
  type IngestResult,
  type LimitStanding,
  type RejectedEvent,
  type UsageEvent,
  type UsageQueryParams,
  type UsageRow,
  type Verification,
  type VerifyParams,
} from "@nodai/sdk";

export async function example(): Promise<void> {
  const nodai = new Nodai({ baseUrl: "http://127.0.0.1:8080", adminToken: "t", timeoutMs: 5000, maxRetries: 1 });
  const created: ApiKeyWithSecret = await nodai.keys.create({ name: "acme", rate_limit_per_hour: 100 });
  const secret: string = created.key;
  const result: QueryResult<{ text: string }> = await nodai.queryWorkflow<{ text: string }>("echo", { text: "hi" }, {
    apiKey: secret,
  });
  const text: string = result.output.text;
  const remaining: number | undefined = result.rateLimit?.remaining;
  const clear: UpdateKeyParams = { rate_limit_per_hour: null, name: undefined };
  await nodai.keys.update(created.id, clear);
  for await (const key of nodai.keys.list({ limit: 10 })) {
    const k: ApiKey = key;
    void k.prefix;
  }
  const status: KeyStatus = "revoked";
  for await (const key of nodai.keys.list({ status })) {
    const revokedAt: string | null | undefined = key.revoked_at;
    void revokedAt;
  }
  const capped: Workflow = await nodai.workflows.create({
    id: "capped",
    name: "Capped",
    upstream_url: "builtin:echo",
    price_per_request: 0.01,
    max_cost_per_request: 0.05,
  });
  const maxCost: number | null | undefined = capped.max_cost_per_request;
  const uncap: UpdateWorkflowParams = { max_cost_per_request: null };
  await nodai.workflows.update(capped.id, uncap);
  void maxCost;
  const page = await nodai.keys.listPage({ limit: 10 });
  const cursor: string | null = page.next_cursor;
  const usage: KeyUsage = await nodai.keys.usage(created.id, { from: new Date() });
  const total: number = usage.total_cost;
  try {
    await nodai.webhooks.retryDelivery("wh_1", "msg_1");
  } catch (error) {
    if (error instanceof RateLimitError) {
      const wait: number | undefined = error.retryAfter;
      void wait;
    } else if (error instanceof NodaiError) {
      const code: string | undefined = error.code;
      void code;
    }
  }
  const stream: QueryStream = nodai.streamWorkflow("echo", "hello world", { apiKey: secret, signal: AbortSignal.timeout(5000) });
  for await (const ev of stream) {
    const e: StreamEvent = ev;
    if (e.type === "chunk") {
      const piece: string = e.text;
      void piece;
    } else {
      const spent: number = e.cost;
      const id: string = e.requestId;
      const ms: number = e.durationMs;
      void [spent, id, ms];
    }
  }
  const final: StreamResult = await nodai.streamWorkflow("echo", "x").finalResult();
  const whole: string = await nodai.streamWorkflow("echo", "x").text();
  const limitAfter: number | undefined = stream.rateLimit?.limit;
  void [final.text, final.rateLimit, whole, limitAfter];
  const event: WebhookEvent<{ key_id: string }> = await verifyWebhook<{ key_id: string }>("{}", new Headers(), "whsec_x");
  void [text, remaining, cursor, total, event.data.key_id];
}

export async function customers(nodai: Nodai): Promise<void> {
  const limits: Limit[] = [
    { metric: "requests", window: "minute", max: 600 },
    { metric: "cost", window: "month", max: 250.5 },
  ];
  const params: CreateCustomerParams = { id: "acme", name: "Acme", limits, max_concurrent: 8, billing: "prepaid" };
  const customer: Customer = await nodai.customers.create(params);
  const anchor: number = customer.billing_anchor_day;
  const clear: UpdateCustomerParams = { email: null, limits: null, name: undefined };
  await nodai.customers.update(customer.id, clear);
  for await (const c of nodai.customers.list({ q: "acme", limit: 10 })) void c.limits[0]?.max;
  const page = await nodai.customers.listPage({ cursor: null });
  const usage: CustomerUsage = await nodai.customers.usage(customer.id, { from: new Date() });
  const tokens: number = usage.total_input_tokens + usage.total_output_tokens + (usage.hourly[0]?.input_tokens ?? 0);
  const owner: string | null | undefined = usage.customer_id;
  const key = await nodai.keys.create({ name: "k", customer_id: customer.id, limits, max_concurrent: 2 });
  const keyLimits: Limit[] = key.limits;
  await nodai.keys.update(key.id, { customer_id: null, limits: null, max_concurrent: null });
  const workflow: Workflow = await nodai.workflows.create({
    id: "chat",
    name: "Chat",
    upstream_url: "builtin:echo",
    price_per_million_input_tokens: 2.5,
    price_per_million_output_tokens: 10,
  });
  const perMillion: number = workflow.price_per_million_input_tokens;
  const result = await nodai.queryWorkflow("chat", "hi");
  const used: number = result.inputTokens + result.outputTokens;
  for await (const event of nodai.streamWorkflow("chat", "hi")) {
    if (event.type === "done") void (event.inputTokens + event.outputTokens);
  }
  await nodai.customers.delete(customer.id);
  try {
    await nodai.queryWorkflow("chat", "hi");
  } catch (error) {
    if (error instanceof ConcurrencyLimitError || error instanceof RateLimitError) {
      const limit: ReachedLimit | undefined = error.limit;
      const scope: string | undefined = limit?.scope;
      const window: string | undefined = limit?.window;
      void [scope, window, limit?.max];
    } else if (error instanceof InsufficientCreditsError) {
      const cost: CostLimitExceededError = error;
      void cost.limit;
    }
  }
  void [anchor, page.next_cursor, tokens, owner, keyLimits, perMillion, used];
}

export async function credits(nodai: Nodai): Promise<void> {
  const params: GrantCreditsParams = { amount: 0.3, expires_at: new Date(), description: null };
  const options: GrantCreditsOptions = { idempotencyKey: "order-1042", maxRetries: 3 };
  const grant: Grant = await nodai.customers.grantCredits("acme", params, options);
  await nodai.customers.grantCredits("acme", { amount: 1, expires_at: "2030-01-01T00:00:00Z" });
  const left: number = grant.remaining;
  const voidedAt: string | null | undefined = (await nodai.customers.voidCredits("acme", grant.id)).voided_at;
  const balance: Credits = await nodai.customers.credits("acme", { timeoutMs: 1000 });
  const first: Grant | undefined = balance.grants[0];
  void [left, voidedAt, balance.balance, first?.amount];
}

export async function metering(nodai: Nodai): Promise<void> {
  const params: VerifyParams = { key: "nk_x", workflowId: "echo", hold: 0.25, holdSeconds: 60 };
  const v: Verification = await nodai.verify(params);
  if (v.valid) {
    const auth: string | null | undefined = v.authorization_id;
    const standing: LimitStanding | undefined = v.limits?.[0];
    const remaining: number | undefined = standing?.remaining;
    const event: UsageEvent = usageEvent({
      keyId: v.key_id ?? "",
      workflowId: "echo",
      authorizationId: auth ?? undefined,
      cost: 0.01,
      inputTokens: 3,
      time: new Date(),
    });
    const sent: IngestResult = await nodai.events.send([event], { maxRetries: 5 });
    const firstRejected: RejectedEvent | undefined = sent.rejected[0];
    const one: IngestResult = await nodai.events.sendOne(event);
    void [remaining, firstRejected?.index, one.duplicates];
  } else {
    const code: string = v.code;
    const retryAfter: number | null | undefined = v.retry_after;
    const scope: string | undefined = v.limit?.scope;
    void [code, retryAfter, scope];
  }
  const query: UsageQueryParams = { from: new Date(), granularity: "hour", groupBy: ["workflow_id", "key_id"], keyId: "key_1" };
  const rows: UsageRow[] = await nodai.usage.query(query);
  const requests: number = rows[0]?.requests ?? 0;
  const workflow: string | null | undefined = rows[0]?.workflow_id;
  const csv: string = await nodai.usage.queryCsv({ groupBy: "customer_id", customerId: "acme" });
  void [requests, workflow, csv];
}
