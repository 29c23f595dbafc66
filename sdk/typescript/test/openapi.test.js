// Keeps the SDK's types honest: the checked-in openapi.json snapshot must be
// what a real `nodai serve` serves at GET /openapi.json, and
// src/generated/openapi.ts must be what openapi-typescript makes of it.
// When the server's API changes, `npm run update-openapi` refreshes both.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, test } from "node:test";
import { generate } from "../scripts/generate-types.mjs";
import { startServer } from "./support/server.js";

const root = new URL("..", import.meta.url);
let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

test("openapi.json is what the server serves at GET /openapi.json", async () => {
  const res = await fetch(`${server.baseUrl}/openapi.json`);
  assert.equal(res.status, 200);
  const live = await res.json();
  const snapshot = JSON.parse(await readFile(new URL("openapi.json", root), "utf8"));
  assert.deepEqual(
    snapshot,
    live,
    "the server's OpenAPI document differs from sdk/typescript/openapi.json: run `npm run update-openapi`, review the type changes, and adapt the SDK",
  );
});

test("src/generated/openapi.ts is generated from openapi.json", async () => {
  const current = await readFile(new URL("src/generated/openapi.ts", root), "utf8");
  assert.equal(current, await generate(), "run `npm run generate`");
});
