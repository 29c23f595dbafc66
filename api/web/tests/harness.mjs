// What every browser test needs: a real `nodai serve` (the TypeScript SDK's
// test server: its own port, temp data dir, fixed admin token), Debian's
// chromium driven by playwright-core, pages that fail the test on any
// console error, and a static server on another origin for embedding pages.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { listen } from "../../../sdk/typescript/test/support/http.js";

export { startServer, waitFor, ADMIN_TOKEN } from "../../../sdk/typescript/test/support/server.js";

const repo = fileURLToPath(new URL("../../..", import.meta.url));

// The flags the machine notes ask for: without the background-networking
// ones chromium keeps dialling Google's hosts, which this network refuses.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Debian's chromium, headless, with a fresh profile (playwright makes one per launch). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/**
 * A new page whose console errors, uncaught exceptions and failed requests
 * are collected; `done()` fails the test if there were any. `allow` lists
 * regexps of console errors the test provokes on purpose (a 403 the browser
 * logs for a blocked origin, say).
 */
export async function newPage(browser, { width = 1280, height = 900, allow = [] } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (msg) => {
    if (msg.type() === "error" && !allow.some((re) => re.test(msg.text()))) {
      problems.push(`console error: ${msg.text()}`);
    }
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.done = async () => {
    await context.close();
    if (problems.length > 0) throw new Error(problems.join("\n"));
  };
  page.problems = problems;
  return page;
}

/**
 * Saves a screenshot: into docs/screenshots when NODAI_SCREENSHOTS=1 (to
 * refresh the README's pictures), else into a temporary directory.
 */
export async function screenshot(page, name) {
  const dir =
    process.env.NODAI_SCREENSHOTS === "1" ? join(repo, "docs", "screenshots") : join(tmpdir(), "nodai-screenshots");
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`) });
}

/**
 * Serves `pages` ({"/path": html}) from 127.0.0.1 on a port of its own, so
 * they are another origin than nodai's. Returns { url, close }.
 */
export async function serveOrigin(pages) {
  return listen((req, _body, res) => {
    const html = pages[new URL(req.url, "http://x").pathname];
    res.writeHead(html === undefined ? 404 : 200, { "content-type": "text/html; charset=utf-8" });
    res.end(html ?? "not found");
  });
}

/** Admin API call from the test itself. */
export async function admin(server, method, path, body) {
  const res = await fetch(`${server.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
