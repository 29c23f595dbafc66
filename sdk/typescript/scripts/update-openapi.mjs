// Refreshes the openapi.json snapshot from a real server, then regenerates
// src/generated/openapi.ts from it. Starts its own `nodai serve` (binary from
// NODAI_BIN, default <repo>/target/debug/nodai), or uses NODAI_OPENAPI_URL.
//
//   npm run update-openapi
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { startServer } from "../test/support/server.js";
import { generate } from "./generate-types.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));

let server;
let url = process.env.NODAI_OPENAPI_URL;
if (!url) {
  server = await startServer();
  url = `${server.baseUrl}/openapi.json`;
}
try {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  const document = await res.json();
  await writeFile(`${root}openapi.json`, `${JSON.stringify(document, null, 2)}\n`);
  console.log(`wrote openapi.json from ${url}`);
} finally {
  await server?.stop();
}
await writeFile(`${root}src/generated/openapi.ts`, await generate());
console.log("wrote src/generated/openapi.ts");
