// Unit tests of verifyWebhook on messages signed here with node:crypto, as the
// Standard Webhooks v1 scheme says. A message signed by the real server is
// verified in webhooks.test.js.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { WebhookVerificationError, NodaiError, verifyWebhook } from "@nodai/sdk";

const key = randomBytes(24);
const secret = `whsec_${key.toString("base64")}`;

function sign(id, timestamp, body, signingKey = key) {
  const mac = createHmac("sha256", signingKey).update(`${id}.${timestamp}.${body}`).digest("base64");
  return `v1,${mac}`;
}

function message({ body = '{"type":"key.created","timestamp":"2026-11-25T13:00:00Z","data":{"id":"key_1"}}', ts } = {}) {
  const id = "msg_0123";
  const timestamp = String(ts ?? Math.floor(Date.now() / 1000));
  return { body, headers: { "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": sign(id, timestamp, body) } };
}

async function rejectsVerification(promise, pattern) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof WebhookVerificationError, `got ${error}`);
    assert.ok(error instanceof NodaiError);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

describe("verifyWebhook", () => {
  test("accepts a valid message and returns the parsed body", async () => {
    const { body, headers } = message();
    const event = await verifyWebhook(body, headers, secret);
    assert.deepEqual(event, { type: "key.created", timestamp: "2026-11-25T13:00:00Z", data: { id: "key_1" } });
  });

  test("accepts bytes (Buffer, Uint8Array, ArrayBuffer) and a Headers object", async () => {
    const { body, headers } = message();
    const bytes = Buffer.from(body);
    const arrayBuffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
    for (const payload of [bytes, new Uint8Array(bytes), arrayBuffer]) {
      assert.equal((await verifyWebhook(payload, new Headers(headers), secret)).type, "key.created");
    }
  });

  test("header names are case-insensitive in a plain object", async () => {
    const { body, headers } = message();
    const upper = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
    assert.equal((await verifyWebhook(body, upper, secret)).type, "key.created");
  });

  test("one matching entry among several signatures is enough (secret rotation)", async () => {
    const { body, headers } = message();
    const other = sign(headers["webhook-id"], headers["webhook-timestamp"], body, randomBytes(24));
    headers["webhook-signature"] = `v2,abc ${other} ${headers["webhook-signature"]}`;
    assert.equal((await verifyWebhook(body, headers, secret)).type, "key.created");
  });

  test("a secret without the whsec_ prefix is accepted", async () => {
    const { body, headers } = message();
    assert.equal((await verifyWebhook(body, headers, key.toString("base64"))).type, "key.created");
  });

  test("a tampered body fails", async () => {
    const { body, headers } = message();
    await rejectsVerification(verifyWebhook(body.replace("key_1", "key_2"), headers, secret), /no matching signature/);
  });

  test("a wrong secret fails", async () => {
    const { body, headers } = message();
    await rejectsVerification(verifyWebhook(body, headers, `whsec_${randomBytes(24).toString("base64")}`));
  });

  test("a changed id or timestamp fails", async () => {
    const { body, headers } = message();
    await rejectsVerification(verifyWebhook(body, { ...headers, "webhook-id": "msg_other" }, secret));
    const ts = String(Number(headers["webhook-timestamp"]) - 1);
    await rejectsVerification(verifyWebhook(body, { ...headers, "webhook-timestamp": ts }, secret));
  });

  test("timestamps more than 5 minutes away fail, within 5 minutes pass", async () => {
    const now = Math.floor(Date.now() / 1000);
    await rejectsVerification(verifyWebhook(message({ ts: now - 301 }).body, message({ ts: now - 301 }).headers, secret), /too old/);
    await rejectsVerification(verifyWebhook(message({ ts: now + 301 }).body, message({ ts: now + 301 }).headers, secret), /future/);
    const edge = message({ ts: now - 299 });
    assert.equal((await verifyWebhook(edge.body, edge.headers, secret)).type, "key.created");
    const old = message({ ts: now - 3600 });
    const opts = { now: (now - 3600) * 1000 };
    assert.equal((await verifyWebhook(old.body, old.headers, secret, opts)).type, "key.created");
  });

  test("missing headers, malformed signatures and malformed secrets fail", async () => {
    const { body, headers } = message();
    for (const name of ["webhook-id", "webhook-timestamp", "webhook-signature"]) {
      const partial = { ...headers };
      delete partial[name];
      await rejectsVerification(verifyWebhook(body, partial, secret), /missing/);
    }
    await rejectsVerification(verifyWebhook(body, { ...headers, "webhook-signature": "v1,!!!" }, secret));
    await rejectsVerification(verifyWebhook(body, { ...headers, "webhook-signature": "garbage" }, secret));
    await rejectsVerification(verifyWebhook(body, { ...headers, "webhook-timestamp": "12a" }, secret), /timestamp/);
    await rejectsVerification(verifyWebhook(body, headers, "whsec_###"), /secret/);
  });

  test("a validly signed body that is not JSON fails", async () => {
    const { body, headers } = message({ body: "not json" });
    await rejectsVerification(verifyWebhook(body, headers, secret), /not JSON/);
  });

  test("works without a global crypto (Node 18) through node:crypto's webcrypto", () => {
    const { body, headers } = message();
    const script = `
      Object.defineProperty(globalThis, "crypto", { value: undefined, configurable: true, writable: true });
      const { verifyWebhook } = await import("@nodai/sdk");
      const event = await verifyWebhook(${JSON.stringify(body)}, ${JSON.stringify(headers)}, ${JSON.stringify(secret)});
      process.stdout.write(String(globalThis.crypto) + " " + event.type);
    `;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      cwd: new URL("..", import.meta.url),
    });
    assert.equal(out.toString(), "undefined key.created");
  });
});
