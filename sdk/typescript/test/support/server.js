// Starts a real `nodai serve` for the tests: its own free port, temporary data
// dir and fixed admin token, ready once GET /readyz answers 200, stopped with
// SIGTERM. The binary is $NODAI_BIN, default <repo>/target/debug/nodai.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const sdkRoot = fileURLToPath(new URL("../..", import.meta.url));
export const ADMIN_TOKEN = "sdk-ts-test-admin-token-0123456789";

export function nodaiBinary() {
  return process.env.NODAI_BIN || resolve(sdkRoot, "../../target/debug/nodai");
}

/** A TCP port that was free a moment ago (bound to port 0, then released). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes; returns that value. */
export async function waitFor(check, { timeoutMs = 10_000, intervalMs = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Starts `nodai serve`. `env` adds variables (every inherited NODAI_* is
 * dropped first, so the developer's own settings cannot leak in).
 * Returns { baseUrl, adminToken, dataDir, logs(), stop() }.
 */
export async function startServer({ env = {}, readyTimeoutMs = 60_000 } = {}) {
  const bin = nodaiBinary();
  if (!existsSync(bin)) {
    throw new Error(`nodai binary not found at ${bin}: run \`cargo build\` in the repo root or set NODAI_BIN`);
  }
  // The port may be taken between freePort() and the bind: try a few times.
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(bin, env, readyTimeoutMs);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

async function startOnce(bin, extraEnv, readyTimeoutMs) {
  const port = await freePort();
  const dataDir = await mkdtemp(join(tmpdir(), "nodai-sdk-ts-"));
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("NODAI_")));
  Object.assign(env, { NODAI_ADMIN_TOKEN: ADMIN_TOKEN, NODAI_LOG: "warn" }, extraEnv);

  const child = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  let exited = null;
  const exit = new Promise((r) =>
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      r(exited);
    }),
  );

  const baseUrl = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (exited === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exit;
      clearTimeout(timer);
    }
    await rm(dataDir, { recursive: true, force: true });
    return exited;
  };

  try {
    await waitFor(
      async () => {
        if (exited !== null) throw new Error(`nodai exited early (${JSON.stringify(exited)})`);
        const res = await fetch(`${baseUrl}/readyz`);
        await res.arrayBuffer();
        return res.status === 200;
      },
      { timeoutMs: readyTimeoutMs, intervalMs: 50, what: `${baseUrl}/readyz` },
    );
  } catch (error) {
    await stop();
    throw new Error(`nodai did not become ready: ${error.message}\n${output}`, { cause: error });
  }
  return { baseUrl, adminToken: ADMIN_TOKEN, dataDir, logs: () => output, stop };
}
