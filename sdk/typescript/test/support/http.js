// Tiny node:http servers for the tests: a webhook receiver that records every
// request (raw body included) and can be told to fail, and a scriptable
// upstream for workflows.
import { createServer } from "node:http";
import { waitFor } from "./server.js";

/** Starts an HTTP server on 127.0.0.1:<free port> with `handler(req, rawBody, res)`. */
export async function listen(handler) {
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => handler(req, Buffer.concat(chunks), res));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections?.();
        server.close(() => r());
      }),
  };
}

/**
 * A webhook receiver. `requests` holds `{ path, headers, body }` (body: the raw
 * Buffer); `status` is what it answers, changeable at any time.
 */
export async function startReceiver() {
  const receiver = { requests: [], status: 200 };
  const http = await listen((req, body, res) => {
    receiver.requests.push({ path: req.url, headers: req.headers, body });
    res.writeHead(receiver.status, { "content-type": "text/plain" });
    res.end("ok");
  });
  receiver.url = http.url;
  receiver.close = http.close;
  /** Waits for the `n`-th request (1-based) whose webhook-id is `id`. */
  receiver.waitForMessage = (id, n = 1, timeoutMs = 15_000) =>
    waitFor(() => receiver.requests.filter((r) => r.headers["webhook-id"] === id)[n - 1], {
      timeoutMs,
      what: `webhook message ${id} (attempt ${n})`,
    });
  return receiver;
}
