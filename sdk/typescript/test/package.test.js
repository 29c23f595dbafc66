// The built package as a user gets it: ESM import and CommonJS require both
// resolve through the `exports` map (this package imports itself by name),
// and strict TypeScript consumers of both kinds type-check against the .d.ts.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import * as esm from "@nodai/sdk";

const require = createRequire(import.meta.url);
const root = fileURLToPath(new URL("..", import.meta.url));

const expected = [
  "APIConnectionError",
  "AuthenticationError",
  "ConcurrencyLimitError",
  "ConflictError",
  "CostLimitExceededError",
  "DEFAULT_BASE_URL",
  "DEFAULT_MAX_RETRIES",
  "DEFAULT_MAX_RETRY_AFTER_MS",
  "DEFAULT_TIMEOUT_MS",
  "IdempotencyConflictError",
  "InsufficientCreditsError",
  "Nodai",
  "NodaiError",
  "NotFoundError",
  "PageIterator",
  "PermissionDeniedError",
  "RateLimitError",
  "ServiceUnavailableError",
  "UpstreamError",
  "ValidationError",
  "WebhookVerificationError",
  "rateLimitFromHeaders",
  "usageEvent",
  "verifyWebhook",
];

test("ESM: import resolves to dist/esm with every export", () => {
  assert.deepEqual(Object.keys(esm).sort(), expected.sort());
  assert.equal(import.meta.resolve("@nodai/sdk"), new URL("../dist/esm/index.js", import.meta.url).href);
});

test("CommonJS: require resolves to dist/cjs with every export, and instanceof works there", () => {
  assert.equal(require.resolve("@nodai/sdk"), `${root}dist/cjs/index.js`);
  const cjs = require("@nodai/sdk");
  assert.deepEqual(Object.keys(cjs).filter((k) => k !== "__esModule").sort(), expected.sort());
  const error = new cjs.RateLimitError("x", { status: 429, retryAfter: 3 });
  assert.ok(error instanceof cjs.NodaiError);
  assert.equal(error.name, "RateLimitError");
  assert.equal(new cjs.Nodai({ baseUrl: "http://x.test/" }).baseUrl, "http://x.test");
});

// tsconfig.json: browser-style (DOM lib); tsconfig.node.json: Node-style (no DOM, @types/node only).
for (const project of ["tsconfig.json", "tsconfig.node.json"]) {
  test(`TypeScript: strict ESM and CommonJS consumers type-check against the .d.ts (${project})`, () => {
    const tsc = require.resolve("typescript/bin/tsc");
    try {
      execFileSync(process.execPath, [tsc, "-p", `${root}test/consumer/${project}`], { encoding: "utf8" });
    } catch (error) {
      assert.fail(`tsc failed:\n${error.stdout}${error.stderr}`);
    }
  });
}
