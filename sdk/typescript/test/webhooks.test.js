// Webhooks against a real `nodai serve`: CRUD, deliveries, manual retry, and
// verifyWebhook on messages the server really signed and sent to a local
// node:http receiver. The server's automatic retry is set to an hour so that
// only the manual retry can cause a second attempt within a test.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { NotFoundError, Nodai, ValidationError, WebhookVerificationError, verifyWebhook } from "@nodai/sdk";
import { startReceiver } from "./support/http.js";
import { startServer, waitFor } from "./support/server.js";

let server;
let nodai;
let receiver;

before(async () => {
  server = await startServer({ env: { NODAI_WEBHOOK_ALLOW_PRIVATE: "1", NODAI_WEBHOOK_RETRY_SCHEDULE: "1h" } });
  nodai = new Nodai({ baseUrl: server.baseUrl, adminToken: server.adminToken });
  receiver = await startReceiver();
});

after(async () => {
  await receiver?.close();
  const exit = await server?.stop();
  if (exit) assert.equal(exit.code, 0, `nodai exited with ${JSON.stringify(exit)}\n${server.logs()}`);
});

/** Waits until the delivery's state satisfies `predicate`; returns it. */
function waitForDelivery(webhookId, deliveryId, predicate, what) {
  return waitFor(
    async () => {
      const { data } = await nodai.webhooks.deliveries(webhookId);
      const delivery = data.find((d) => d.id === deliveryId);
      return delivery && predicate(delivery) ? delivery : null;
    },
    { timeoutMs: 15_000, intervalMs: 100, what },
  );
}

describe("webhooks", () => {
  test("create, get, list, update, delete", async () => {
    const created = await nodai.webhooks.create({
      url: `${receiver.url}/crud`,
      events: ["usage.threshold"],
      description: "budget alerts",
    });
    assert.match(created.id, /^wh_/);
    assert.match(created.secret, /^whsec_[A-Za-z0-9+/]+=*$/);
    assert.deepEqual(created.events, ["usage.threshold"]);
    assert.equal(created.active, true);

    const fetched = await nodai.webhooks.get(created.id);
    assert.equal(fetched.description, "budget alerts");
    assert.ok(fetched.secret === undefined || fetched.secret === null, "the secret is shown once");

    const listed = await nodai.webhooks.list({ limit: 1 }).toArray();
    assert.ok(listed.some((w) => w.id === created.id));
    assert.ok((await nodai.webhooks.listPage()).data.some((w) => w.id === created.id));

    const updated = await nodai.webhooks.update(created.id, { description: null, events: ["usage.rate_limited"] });
    assert.equal(updated.description ?? null, null);
    assert.deepEqual(updated.events, ["usage.rate_limited"]);
    assert.equal(updated.url, `${receiver.url}/crud`, "left-out fields stay");

    const rotated = await nodai.webhooks.update(created.id, { rotate_secret: true });
    assert.match(rotated.secret, /^whsec_/);
    assert.notEqual(rotated.secret, created.secret);

    assert.equal(await nodai.webhooks.delete(created.id), undefined);
    await assert.rejects(nodai.webhooks.get(created.id), NotFoundError);
  });

  test("a URL that is not http(s) is refused with ValidationError", async () => {
    await assert.rejects(nodai.webhooks.create({ url: "ftp://example.com/hook" }), (e) => {
      return e instanceof ValidationError && e.status === 422;
    });
  });

  test("test(): the server signs a webhook.test message that verifyWebhook accepts; a tampered body fails", async () => {
    const webhook = await nodai.webhooks.create({ url: `${receiver.url}/verify` });
    const { delivery_id } = await nodai.webhooks.test(webhook.id);
    assert.match(delivery_id, /^msg_/);

    const request = await receiver.waitForMessage(delivery_id);
    assert.match(request.headers["webhook-signature"], /^v1,/);

    // Node's req.headers as they are, and the raw body bytes.
    const event = await verifyWebhook(request.body, request.headers, webhook.secret);
    assert.equal(event.type, "webhook.test");
    assert.equal(typeof event.timestamp, "string");
    // The same with a Headers object and the body as a string.
    const headers = new Headers(Object.entries(request.headers).map(([k, v]) => [k, String(v)]));
    assert.equal((await verifyWebhook(request.body.toString("utf8"), headers, webhook.secret)).type, "webhook.test");

    const tampered = Buffer.from(request.body.toString("utf8").replace("webhook.test", "webhook.tost"));
    await assert.rejects(verifyWebhook(tampered, request.headers, webhook.secret), WebhookVerificationError);
    const otherSecret = (await nodai.webhooks.create({ url: `${receiver.url}/other` })).secret;
    await assert.rejects(verifyWebhook(request.body, request.headers, otherSecret), WebhookVerificationError);

    const delivery = await waitForDelivery(webhook.id, delivery_id, (d) => d.status === "succeeded", "a succeeded delivery");
    assert.equal(delivery.event_type, "webhook.test");
    assert.equal(delivery.attempts, 1);
    assert.equal(delivery.last_status_code, 200);
  });

  test("deliveries and retryDelivery: a failed attempt is retried on request with the same webhook-id", async () => {
    const failing = await startReceiver();
    try {
      failing.status = 500;
      const webhook = await nodai.webhooks.create({ url: `${failing.url}/retry` });
      const { delivery_id } = await nodai.webhooks.test(webhook.id);

      await failing.waitForMessage(delivery_id, 1);
      const pending = await waitForDelivery(
        webhook.id,
        delivery_id,
        (d) => d.attempts === 1 && d.last_status_code === 500,
        "the failed first attempt to be recorded",
      );
      assert.equal(pending.status, "pending", "retried later on the schedule (1h here)");
      assert.equal(typeof pending.next_attempt_at, "string");

      failing.status = 200;
      const accepted = await nodai.webhooks.retryDelivery(webhook.id, delivery_id);
      assert.equal(accepted.id, delivery_id);

      const second = await failing.waitForMessage(delivery_id, 2);
      assert.equal((await verifyWebhook(second.body, second.headers, webhook.secret)).type, "webhook.test");
      const done = await waitForDelivery(webhook.id, delivery_id, (d) => d.status === "succeeded", "the retried delivery");
      assert.equal(done.attempts, 2);
      assert.equal(done.last_status_code, 200);
    } finally {
      await failing.close();
    }
  });

  test("NotFoundError for unknown webhooks and deliveries", async () => {
    await assert.rejects(nodai.webhooks.deliveries("wh_nope"), NotFoundError);
    await assert.rejects(nodai.webhooks.test("wh_nope"), NotFoundError);
    const webhook = await nodai.webhooks.create({ url: `${receiver.url}/nf` });
    await assert.rejects(nodai.webhooks.retryDelivery(webhook.id, "msg_nope"), NotFoundError);
  });

  test("key events reach a subscribed webhook and verify", async () => {
    const webhook = await nodai.webhooks.create({ url: `${receiver.url}/keys`, events: ["key.created"] });
    const key = await nodai.keys.create({ name: "webhook-watched" });
    const request = await waitFor(
      () =>
        receiver.requests.find(
          (r) => r.path === "/keys" && r.body.includes(key.id),
        ),
      { timeoutMs: 15_000, what: "a key.created message" },
    );
    const event = await verifyWebhook(request.body, request.headers, webhook.secret);
    assert.equal(event.type, "key.created");
  });
});
