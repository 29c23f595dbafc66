// The embeddable widget in a real browser against a real nodai: /widget.js
// on host pages of other origins (streaming, origins the key does not allow,
// hostile page CSS, a strict Content-Security-Policy, theming, 429 and 402,
// focus, two widgets, a 360 px screen, a nodai behind a proxy's path prefix)
// and the React component bundled into a page at test time; and, in Node,
// the SSE parser and the script tag's default baseUrl, bundled from source.
//
// Run `node build.mjs --only widget` first: the server reads api/assets.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { startServer, launchBrowser, newPage, serveOrigin, screenshot, admin, waitFor } from "./harness.mjs";
import { listen } from "../../../sdk/typescript/test/support/http.js";

const UNREACHABLE =
  "This site is not allowed to use this widget's key (its allowed origins), or nodai could not be reached.";
/** Console errors chromium itself logs for a request refused by CORS. */
const CORS_REFUSED = [/blocked by CORS policy/, /Failed to load resource: net::ERR_FAILED/];

let server;
let browser;
let upstream;
/** Host pages, by path, of three other origins: A (keys allow it), B (only a decoy key does), C (none does). */
const pagesA = {};
const pagesB = {};
const pagesC = {};
let siteA;
let siteB;
let siteC;

before(async () => {
  [server, browser] = await Promise.all([startServer(), launchBrowser()]);
  [siteA, siteB, siteC] = await Promise.all([serveOrigin(pagesA), serveOrigin(pagesB), serveOrigin(pagesC)]);
  // An upstream that answers server-sent events, one word of its input every
  // 60 ms, so that a widget showing the answer all at once cannot pass.
  upstream = await listen((_req, body, res) => {
    const words = String(JSON.parse(body.toString()).input).split(/(?<=\s)/);
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const next = () => {
      if (words.length === 0 || res.destroyed) return res.end();
      res.write(`data: ${words.shift()}\n\n`);
      setTimeout(next, 60);
    };
    next();
  });
  for (const workflow of [
    { id: "echo", name: "Echo", upstream_url: "builtin:echo" },
    { id: "slow", name: "Slow words", upstream_url: upstream.url },
    { id: "priced", name: "Priced echo", upstream_url: "builtin:echo", price_per_request: 1 },
  ]) {
    const created = await admin(server, "POST", "/api/v1/workflows", workflow);
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
  // Lets origin B pass the CORS preflight (which carries no key).
  await createKey({ name: "decoy", allowed_origins: [siteB.url] });
});

after(async () => {
  await browser?.close();
  await Promise.all([siteA?.close(), siteB?.close(), siteC?.close(), upstream?.close()]);
  await server?.stop();
});

async function createKey(settings) {
  const created = await admin(server, "POST", "/api/v1/api-keys", settings);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return created.body;
}

async function totalRequests(keyId) {
  const usage = await admin(server, "GET", `/api/v1/api-keys/${keyId}/usage`);
  assert.equal(usage.status, 200);
  return usage.body.total_requests;
}

/** A `<script>` tag that embeds a widget. */
function widgetTag(key, workflow, attrs = {}, src = `${server.baseUrl}/widget.js`) {
  const extra = Object.entries(attrs)
    .map(([name, value]) => ` data-${name}='${value}'`)
    .join("");
  return `<script src="${src}" data-workflow="${workflow}" data-key="${key.key}"${extra} async></script>`;
}

/** Bundles one of the widget's source modules and imports it here, in Node. */
async function importSource(path) {
  const built = await esbuild.build({
    entryPoints: [fileURLToPath(new URL(path, import.meta.url))],
    bundle: true,
    write: false,
    format: "esm",
    target: ["es2020"],
    logLevel: "warning",
  });
  return import(`data:text/javascript;base64,${Buffer.from(built.outputFiles[0].text).toString("base64")}`);
}

function hostPage(body, { css = "", title = "Host page" } = {}) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,"><title>${title}</title>
<style>body{font-family:Georgia,serif;max-width:44rem;margin:2rem auto;padding:0 1rem}${css}</style></head>
<body>${body}</body></html>`;
}

/** The parts of the n-th widget on a page (locators pierce its open shadow root). */
function widget(page, n = 0) {
  const host = page.locator(".nodai-query").nth(n);
  return {
    host,
    input: host.getByRole("textbox", { name: "Ask a question" }),
    ask: host.getByRole("button", { name: "Ask", exact: true }),
    stop: host.getByRole("button", { name: "Stop", exact: true }),
    answer: host.locator(".answer"),
    notice: host.locator(".notice"),
    /** The 429 countdown (the notice, the alert, announces the wait once). */
    wait: host.locator(".wait"),
    limit: host.locator(".limit"),
  };
}

/** Waits until the widget's answer is complete (not streaming) and returns its text. */
async function finalAnswer(w, expected) {
  await waitFor(async () => (await w.answer.getAttribute("aria-busy")) === "false" && (await w.answer.textContent()) === expected, {
    what: `the answer ${JSON.stringify(expected)}`,
  });
  return w.answer.textContent();
}

test("script tag on an allowed origin: the answer streams in word by word, with the rate-limit state", async () => {
  const key = await createKey({ name: "site", allowed_origins: [siteA.url], workflow_ids: ["slow"], rate_limit_per_hour: 40 });
  pagesA["/stream"] = hostPage(
    `<h1>Acme support</h1><p>Questions about your order? Ask below.</p>${widgetTag(key, "slow")}<p>Answers come from our help desk.</p>`,
    { title: "Acme support" },
  );
  const page = await newPage(browser, { width: 900, height: 640 });
  await page.goto(`${siteA.url}/stream`);
  const w = widget(page);
  await w.input.waitFor();
  // Record the answer's length at every change, and the result event.
  await page.evaluate(() => {
    window.lengths = [];
    window.results = [];
    const answer = document.querySelector(".nodai-query").shadowRoot.querySelector(".answer");
    const record = () => window.lengths.push(answer.textContent.length);
    new MutationObserver(record).observe(answer, { childList: true, characterData: true, subtree: true });
    document.addEventListener("nodai:result", (event) => window.results.push(event.detail));
  });
  const question = "where is my order number 4521 and when will it ship";
  await w.input.fill(question);
  await w.input.press("Enter");
  // While it streams, Stop is offered and Ask is disabled.
  await w.stop.waitFor();
  assert.equal(await w.ask.isDisabled(), true);
  assert.equal(await finalAnswer(w, question), question);
  assert.equal(await w.stop.isHidden(), true);

  const lengths = await page.evaluate(() => window.lengths);
  const partial = new Set(lengths.filter((n) => n > 0 && n < question.length));
  assert.ok(partial.size >= 3, `the answer grew in steps, saw lengths ${JSON.stringify(lengths)}`);
  assert.equal(await w.limit.textContent(), "39 of 40 requests left this hour");
  const results = await page.evaluate(() => window.results);
  assert.equal(results.length, 1);
  assert.equal(results[0].output, question);
  assert.match(results[0].requestId, /^req_/);
  assert.deepEqual(results[0].rateLimit && results[0].rateLimit.remaining, 39);
  assert.equal(await totalRequests(key.id), 1);
  await screenshot(page, "widget-script-tag");
  await page.done();
});

test("stop ends a streaming answer and keeps what arrived", async () => {
  const key = await createKey({ name: "stop", allowed_origins: [siteA.url] });
  pagesA["/stop"] = hostPage(widgetTag(key, "slow"));
  const page = await newPage(browser);
  await page.goto(`${siteA.url}/stop`);
  const w = widget(page);
  const question = Array.from({ length: 30 }, (_, i) => `word${i}`).join(" ");
  await w.input.fill(question);
  await w.ask.click();
  await waitFor(async () => ((await w.answer.textContent()) ?? "").length > 0, { what: "the first chunk" });
  await w.stop.click();
  await waitFor(async () => (await w.notice.textContent()) === "Stopped.", { what: "the stopped notice" });
  const kept = await w.answer.textContent();
  assert.ok(kept.length > 0 && kept.length < question.length, `kept ${JSON.stringify(kept)}`);
  assert.equal(await w.ask.isEnabled(), true);
  await page.done();
});

test("an origin the key does not list is blocked with a clear message, and nothing is metered", async () => {
  const key = await createKey({ name: "only A", allowed_origins: [siteA.url] });
  // B: the preflight passes (the decoy key lists B), the query gets a 403
  // without CORS headers. C: no key lists it, the preflight fails.
  for (const [site, pages] of [
    [siteB, pagesB],
    [siteC, pagesC],
  ]) {
    pages["/blocked"] = hostPage(widgetTag(key, "echo"));
    const page = await newPage(browser, { allow: CORS_REFUSED });
    await page.goto(`${site.url}/blocked`);
    const w = widget(page);
    await w.input.fill("hello there");
    await w.ask.click();
    await waitFor(async () => (await w.notice.textContent()) === UNREACHABLE, { what: `the blocked message on ${site.url}` });
    assert.equal(await w.answer.textContent(), "");
    assert.equal(await w.ask.isEnabled(), true);
    await page.done();
  }
  assert.equal(await totalRequests(key.id), 0);
  // The same key from the origin it lists works, and its usage shows it.
  pagesA["/allowed"] = hostPage(widgetTag(key, "echo"));
  const page = await newPage(browser);
  await page.goto(`${siteA.url}/allowed`);
  const w = widget(page);
  await w.input.fill("hello there");
  await w.ask.click();
  await finalAnswer(w, "hello there");
  assert.equal(await totalRequests(key.id), 1);
  await page.done();
});

test("a revoked key says so, on an origin some live key lists", async () => {
  const key = await createKey({ name: "to revoke", allowed_origins: [siteA.url] });
  await createKey({ name: "keeps A listed", allowed_origins: [siteA.url] });
  assert.equal((await admin(server, "DELETE", `/api/v1/api-keys/${key.id}`)).status, 204);
  pagesA["/revoked"] = hostPage(widgetTag(key, "echo"));
  // chromium logs the 403 itself; the widget must not add errors of its own.
  const page = await newPage(browser, { allow: [/status of 403/] });
  await page.goto(`${siteA.url}/revoked`);
  const w = widget(page);
  await w.input.fill("hello");
  await w.ask.click();
  await waitFor(async () => /key is not valid/.test((await w.notice.textContent()) ?? ""), {
    what: "the invalid-key message",
  });
  assert.equal(await w.answer.textContent(), "");
  await page.done();
});

test("the host page's hostile CSS does not break the widget", async () => {
  const key = await createKey({ name: "hostile", allowed_origins: [siteA.url] });
  const css = `* { color: red !important; display: inline !important; font-size: 40px !important; letter-spacing: 8px !important }
button, textarea, form, label { display: none !important }
div { display: none !important; visibility: visible }`;
  pagesA["/hostile"] = hostPage(`<p>A page with hostile styles.</p>${widgetTag(key, "echo")}`, { css });
  const page = await newPage(browser);
  await page.goto(`${siteA.url}/hostile`);
  const w = widget(page);
  await w.ask.waitFor({ state: "visible" });
  const box = await w.ask.boundingBox();
  assert.ok(box && box.width > 20 && box.height > 15, `the button has a size: ${JSON.stringify(box)}`);
  const styles = await w.input.evaluate((el) => {
    const s = getComputedStyle(el);
    return { fontSize: s.fontSize, color: s.color, display: s.display };
  });
  assert.notEqual(styles.fontSize, "40px");
  assert.notEqual(styles.color, "rgb(255, 0, 0)");
  assert.equal(styles.display, "block");
  await w.input.fill("still works fine");
  await w.ask.click();
  assert.equal(await finalAnswer(w, "still works fine"), "still works fine");
  await page.done();
});

test("theming: --nodai-accent on the host and the theme object set the button's colour", async () => {
  const key = await createKey({ name: "themes", allowed_origins: [siteA.url] });
  pagesA["/themes"] = hostPage(
    `<div id="plain"></div>${widgetTag(key, "echo", { target: "#plain" })}
<section class="brand"><div id="branded"></div></section>${widgetTag(key, "echo", { target: "#branded" })}
<section class="brand"><div id="themed"></div></section>${widgetTag(key, "echo", { target: "#themed", theme: '{"accent":"rgb(200, 0, 100)","radius":"2px"}' })}`,
    { css: ".brand { --nodai-accent: rgb(0, 128, 0); }" },
  );
  const page = await newPage(browser);
  await page.goto(`${siteA.url}/themes`);
  const background = async (target) => {
    const ask = page.locator(`${target} .nodai-query`).getByRole("button", { name: "Ask", exact: true });
    await ask.waitFor();
    return ask.evaluate((el) => getComputedStyle(el).backgroundColor);
  };
  const plain = await background("#plain");
  assert.equal(await background("#branded"), "rgb(0, 128, 0)");
  assert.notEqual(plain, "rgb(0, 128, 0)");
  // The theme object wins over what the page sets around it.
  assert.equal(await background("#themed"), "rgb(200, 0, 100)");
  await page.done();
});

test("429 after the rate limit and 402 after the cost limit show friendly messages", async () => {
  const limited = await createKey({ name: "rate 1", allowed_origins: [siteA.url], rate_limit_per_hour: 1 });
  const costly = await createKey({ name: "cost 1", allowed_origins: [siteA.url], cost_limit_per_month: 1 });
  pagesA["/limits"] = hostPage(
    `<h2>Rate limited</h2><div id="rate"></div>${widgetTag(limited, "echo", { target: "#rate" })}
<h2>Cost limited</h2><div id="cost"></div>${widgetTag(costly, "priced", { target: "#cost" })}`,
  );
  const page = await newPage(browser, {
    width: 720,
    height: 760,
    allow: [/Failed to load resource: the server responded with a status of (429|402)/],
  });
  await page.goto(`${siteA.url}/limits`);
  const rate = widget(page, 0);
  const cost = widget(page, 1);
  for (const w of [rate, cost]) {
    await w.input.fill("first question");
    await w.ask.click();
    await finalAnswer(w, "first question");
  }
  assert.equal(await rate.limit.textContent(), "0 of 1 request left this hour");

  await rate.input.fill("second question");
  await rate.ask.click();
  await waitFor(async () => /^Too many requests — try again in \d+ (s|min)\.$/.test(await rate.notice.textContent()), {
    what: "the rate-limit message",
  });
  assert.equal(await rate.ask.isDisabled(), true, "Ask is disabled until Retry-After passes");
  assert.equal(await rate.notice.getAttribute("role"), "alert");
  assert.match(await rate.wait.textContent(), /^Too many requests — try again in \d+ (s|min)\.$/);
  assert.equal(await rate.wait.isVisible(), true);

  await cost.input.fill("second question");
  await cost.ask.click();
  await waitFor(async () => /usage limit for this month/.test(await cost.notice.textContent()), { what: "the cost-limit message" });
  assert.equal(await totalRequests(costly.id), 1);
  await screenshot(page, "widget-rate-limited");
  await page.done();
});

test("the React component streams an answer and calls onResult", async () => {
  const key = await createKey({ name: "react", allowed_origins: [siteA.url], workflow_ids: ["slow"] });
  // react and react-dom from api/web, even for the widget's own imports, so
  // the page has one React.
  const fromWeb = createRequire(new URL("../package.json", import.meta.url));
  const bundled = await esbuild.build({
    stdin: {
      resolveDir: fileURLToPath(new URL(".", import.meta.url)),
      loader: "js",
      contents: `
import { createElement as h, StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { NodaiQuery } from "../../../sdk/widget/src/index";
const config = window.NODAI_TEST;
function App() {
  const [results, setResults] = useState([]);
  return h("main", null,
    h("h1", null, "Acme (React)"),
    h(NodaiQuery, { ...config, placeholder: "Ask the React widget…", theme: { accent: "#7c3aed", radius: "14px" },
      onResult: (result) => setResults((all) => [...all, result]) }),
    h("ul", { id: "results" }, results.map((r) => h("li", { key: r.requestId, "data-output": r.output }, r.requestId))));
}
createRoot(document.getElementById("app")).render(h(StrictMode, null, h(App)));`,
    },
    bundle: true,
    write: false,
    minify: true,
    format: "iife",
    target: ["es2020"],
    logLevel: "warning",
    define: { "process.env.NODE_ENV": '"production"' },
    plugins: [
      {
        name: "one-react",
        setup(build) {
          build.onResolve({ filter: /^react(-dom)?(\/.*)?$/ }, (args) => ({ path: fromWeb.resolve(args.path) }));
        },
      },
    ],
  });
  const script = bundled.outputFiles[0].text.replaceAll("</script", "<\\/script");
  const config = { workflowId: "slow", apiKey: key.key, baseUrl: server.baseUrl };
  pagesA["/react"] = hostPage(
    `<div id="app"></div><script>window.NODAI_TEST=${JSON.stringify(config)}</script><script>${script}</script>`,
    { title: "React host" },
  );
  const page = await newPage(browser, { width: 720, height: 560 });
  await page.goto(`${siteA.url}/react`);
  // Strict mode mounts, destroys and mounts again: one widget remains.
  const w = widget(page);
  await w.input.waitFor();
  assert.equal(await page.locator(".nodai-query").count(), 1);
  const question = "does the react widget stream too";
  await w.input.fill(question);
  await w.ask.click();
  await finalAnswer(w, question);
  const item = page.locator("#results li");
  await item.waitFor();
  assert.equal(await item.count(), 1, "onResult fired once");
  assert.equal(await item.getAttribute("data-output"), question);
  assert.match(await item.textContent(), /^req_/);
  await screenshot(page, "widget-react");
  await page.done();
});

test("two script tags make two working widgets, and a 360 px screen does not overflow", async () => {
  const key = await createKey({ name: "two", allowed_origins: [siteA.url] });
  pagesA["/two"] = hostPage(
    `<h1>Two widgets</h1>${widgetTag(key, "echo", { placeholder: "First…" })}
<p>Some text in between the two widgets on this page.</p>${widgetTag(key, "echo", { placeholder: "Second…" })}`,
  );
  const page = await newPage(browser, { width: 360, height: 740 });
  await page.goto(`${siteA.url}/two`);
  const first = widget(page, 0);
  const second = widget(page, 1);
  await second.input.waitFor();
  assert.equal(await page.locator(".nodai-query").count(), 2);
  assert.equal(await first.input.getAttribute("placeholder"), "First…");
  assert.equal(await second.input.getAttribute("placeholder"), "Second…");
  await first.input.fill("one fish");
  await first.ask.click();
  await second.input.fill("two fish, and a much longer answer with averyveryverylongwordthatmustwrapinsteadofoverflowing");
  await second.input.press("Enter");
  await finalAnswer(first, "one fish");
  await finalAnswer(second, "two fish, and a much longer answer with averyveryverylongwordthatmustwrapinsteadofoverflowing");
  const widths = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  assert.ok(widths.scroll <= widths.client, `no horizontal overflow: ${JSON.stringify(widths)}`);
  const right = await second.ask.boundingBox();
  assert.ok(right && right.x + right.width <= 360, `the button fits: ${JSON.stringify(right)}`);
  await page.done();
});

test("the README's snippet alone, which lands in <head>, renders a working widget in <body>", async () => {
  const key = await createKey({ name: "bare", allowed_origins: [siteA.url], workflow_ids: ["echo"] });
  // Exactly a pasted tag and nothing else: the parser puts it in <head>.
  pagesA["/bare"] = `${widgetTag(key, "echo")}<link rel="icon" href="data:,">`;
  const page = await newPage(browser);
  await page.goto(`${siteA.url}/bare`);
  const w = widget(page);
  await w.input.waitFor();
  assert.equal(await page.locator("body > .nodai-query").count(), 1);
  await w.input.fill("hello from a bare page");
  await w.ask.click();
  await finalAnswer(w, "hello from a bare page");
  await page.done();
});

test("a host page whose Content-Security-Policy forbids inline styles still gets a styled widget", async () => {
  // style-src 'self' blocks <style> elements (in shadow roots too), not
  // constructed stylesheets nor CSSOM changes (the theme's custom properties).
  const policy = `script-src ${server.baseUrl}; connect-src ${server.baseUrl}; style-src 'self'`;
  const pages = {};
  const strict = await listen((req, _body, res) => {
    const html = pages[new URL(req.url, "http://x").pathname];
    res.writeHead(html === undefined ? 404 : 200, {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": policy,
    });
    res.end(html ?? "not found");
  });
  try {
    const key = await createKey({ name: "strict csp", allowed_origins: [strict.url] });
    // No inline <style> of its own: the page would break its own policy.
    pages["/csp"] = `<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>Strict CSP</title></head><body><h1>Strict CSP</h1>
<div id="plain"></div>${widgetTag(key, "echo", { target: "#plain" })}
<div id="themed"></div>${widgetTag(key, "echo", { target: "#themed", theme: '{"accent":"rgb(200, 0, 100)"}' })}</body></html>`;
    const page = await newPage(browser);
    await page.goto(`${strict.url}/csp`);
    const plain = widget(page, 0);
    const themed = widget(page, 1);
    await themed.ask.waitFor();
    const background = (w) => w.ask.evaluate((el) => getComputedStyle(el).backgroundColor);
    assert.equal(await background(plain), "rgb(37, 99, 235)", "the default accent, #2563eb");
    assert.equal(await background(themed), "rgb(200, 0, 100)");
    assert.equal(await plain.input.evaluate((el) => getComputedStyle(el).display), "block");
    await plain.input.fill("styled under a strict policy");
    await plain.ask.click();
    await finalAnswer(plain, "styled under a strict policy");
    await page.done();
  } finally {
    await strict.close();
  }
});

test("429 cooldown: the alert is announced once, the countdown ticks outside any live region, Ask comes back", async () => {
  const key = await createKey({ name: "cooldown", allowed_origins: [siteA.url] });
  pagesA["/cooldown"] = hostPage(widgetTag(key, "echo"));
  const page = await newPage(browser, { allow: [/status of 429/] });
  // nodai's own 429 waits out the hour; this one (the first query only) asks for 4 s.
  let limited = true;
  await page.route(`${server.baseUrl}/api/v1/workflows/echo/query`, (route) => {
    if (route.request().method() !== "POST" || !limited) return route.fallback();
    limited = false;
    return route.fulfill({
      status: 429,
      headers: {
        "content-type": "application/problem+json",
        "retry-after": "4",
        "access-control-allow-origin": siteA.url,
        "access-control-expose-headers": "Retry-After",
      },
      body: JSON.stringify({ code: "rate_limited", title: "Too many requests", status: 429 }),
    });
  });
  await page.goto(`${siteA.url}/cooldown`);
  const w = widget(page);
  await w.input.fill("too soon");
  await w.ask.click();
  await waitFor(async () => (await w.wait.isVisible()) && /try again in \d s/.test(await w.wait.textContent()), {
    what: "the countdown",
  });
  assert.equal(await w.ask.isDisabled(), true);
  const alert = w.host.locator("[role=alert]");
  const before = { alert: await alert.textContent(), wait: await w.wait.textContent() };
  assert.equal(before.alert, "Too many requests — try again in 4 s.");
  await waitFor(async () => (await w.wait.textContent()) !== before.wait, { what: "the countdown to tick" });
  const later = { alert: await alert.textContent(), wait: await w.wait.textContent() };
  assert.equal(later.alert, before.alert, "the alert is not rewritten every second");
  assert.notEqual(later.wait, before.wait, "the visible countdown ticks");
  assert.equal(
    await w.wait.evaluate((el) => el.getAttribute("aria-hidden") === "true" && !el.closest("[aria-live],[role=alert],[role=status]")),
    true,
    "the countdown is in no live region",
  );
  // The alert itself is visually hidden meanwhile: one visible message.
  const box = await alert.boundingBox();
  assert.ok(box && box.width <= 1 && box.height <= 1, `the alert is visually hidden: ${JSON.stringify(box)}`);
  await waitFor(() => w.ask.isEnabled(), { timeoutMs: 5_000, what: "Ask enabled again after Retry-After" });
  assert.equal(await alert.textContent(), "");
  assert.equal(await w.wait.isHidden(), true);
  // And the next question goes through.
  await w.ask.click();
  await finalAnswer(w, "too soon");
  await page.done();
});

test("focus stays on the text field after Stop and after an answer (not on <body>)", async () => {
  const key = await createKey({ name: "focus", allowed_origins: [siteA.url] });
  pagesA["/focus"] = hostPage(widgetTag(key, "slow"));
  const page = await newPage(browser);
  await page.goto(`${siteA.url}/focus`);
  const w = widget(page);
  const focused = () =>
    page.evaluate(() => {
      const inside = document.querySelector(".nodai-query").shadowRoot.activeElement;
      return inside ? `${inside.tagName.toLowerCase()}${inside.className ? `.${inside.className}` : ""}` : document.activeElement.tagName.toLowerCase();
    });
  const long = Array.from({ length: 30 }, (_, i) => `word${i}`).join(" ");
  // Stop, clicked (which focuses it in chromium), then hidden.
  await w.input.fill(long);
  await w.ask.click();
  await waitFor(async () => ((await w.answer.textContent()) ?? "").length > 0, { what: "the first chunk" });
  await w.stop.click();
  await waitFor(async () => (await w.notice.textContent()) === "Stopped.", { what: "the stopped notice" });
  assert.equal(await focused(), "textarea");
  // Ask, clicked, is disabled while the answer streams, then the answer completes.
  await w.input.fill("short question here");
  await w.ask.click();
  await finalAnswer(w, "short question here");
  assert.equal(await focused(), "textarea");
  // Stop focused by keyboard while streaming, and the answer completes (Stop hides).
  await w.input.fill("four words come back");
  await w.input.press("Enter");
  await w.stop.waitFor();
  await w.stop.focus();
  assert.equal(await focused(), "button.stop");
  await finalAnswer(w, "four words come back");
  assert.equal(await focused(), "textarea");
  await page.done();
});

test("the script tag behind a proxy's path prefix queries nodai under that prefix", async () => {
  // A reverse proxy serving nodai under /nodai/ on an origin of its own.
  const proxy = await listen((req, body, res) => {
    if (!req.url.startsWith("/nodai/")) {
      res.writeHead(404, { "content-type": "text/plain" });
      return res.end("not found");
    }
    const target = new URL(req.url.slice("/nodai".length), server.baseUrl);
    const forward = request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    forward.on("error", () => res.destroy());
    forward.end(body);
  });
  try {
    const key = await createKey({ name: "proxied", allowed_origins: [siteA.url] });
    pagesA["/proxied"] = hostPage(widgetTag(key, "echo", {}, `${proxy.url}/nodai/widget.js?v=1`));
    const page = await newPage(browser);
    const queried = [];
    page.on("request", (r) => r.method() === "POST" && queried.push(r.url()));
    await page.goto(`${siteA.url}/proxied`);
    const w = widget(page);
    await w.input.fill("through the proxy");
    await w.ask.click();
    await finalAnswer(w, "through the proxy");
    assert.deepEqual(queried, [`${proxy.url}/nodai/api/v1/workflows/echo/query`]);
    await page.done();
  } finally {
    await proxy.close();
  }
});

test("the script tag's default baseUrl is the directory of its src, without the trailing slash", async () => {
  const { scriptBaseUrl } = await importSource("../../../sdk/widget/src/base-url.ts");
  const page = "https://acme.example/help/faq.html";
  assert.equal(scriptBaseUrl("https://nodai.example/widget.js", page), "https://nodai.example");
  assert.equal(scriptBaseUrl("https://x.example/nodai/widget.js", page), "https://x.example/nodai");
  assert.equal(scriptBaseUrl("https://x.example/a/b/widget.js?v=2#top", page), "https://x.example/a/b");
  assert.equal(scriptBaseUrl("/nodai/widget.js", page), "https://acme.example/nodai");
  assert.equal(scriptBaseUrl("widget.js", page), "https://acme.example/help");
  assert.equal(scriptBaseUrl("", page), undefined);
});

test("SSE parser: line ends, multi-line data, comments, fields and the BOM", async () => {
  const { SseParser } = await importSource("../../../sdk/widget/src/sse.ts");
  const parse = (...chunks) => {
    const parser = new SseParser();
    return chunks.flatMap((chunk) => parser.push(chunk));
  };
  const message = (data, event = "message") => ({ event, data });
  assert.deepEqual(parse("data: a\r\n\r\ndata: b\r\n\r\n"), [message("a"), message("b")], "CRLF");
  assert.deepEqual(parse("event: chunk\rdata: a\r\rdata: b\r\r"), [message("a", "chunk"), message("b")], "lone CR");
  assert.deepEqual(parse("data: a\r", "\n\r", "\n"), [message("a")], "a CRLF split between chunks is one line end");
  assert.deepEqual(parse("data: a\r", "\r"), [message("a")], "CR, CR is two line ends");
  assert.deepEqual(parse("data: one\ndata:two\ndata\ndata:  three\n\n"), [message("one\ntwo\n\n three")], "multi-line data");
  assert.deepEqual(parse(": ping\n\n:\ndata: x\n: between\n\n"), [message("x")], "comments");
  assert.deepEqual(parse("event: done\n\nid: 7\nretry: 5\ndata: y\n\n"), [message("y")], "no data, no event; unknown fields");
  assert.deepEqual(parse("data: cut off"), [], "an event without its blank line is not dispatched");
  assert.deepEqual(parse("\uFEFFdata: a\n\n"), [message("a")], "a leading BOM is dropped");
  assert.deepEqual(parse("\uFEFF", "data: a\n\n"), [message("a")], "a BOM alone in the first chunk");
  assert.deepEqual(parse("\uFEFF\uFEFFdata: a\n\n"), [], "only one BOM is dropped");
  assert.deepEqual(parse("data: a\n\n", "\uFEFFdata: b\n\n"), [message("a")], "not one after the start");
});

test("SSE parser: the same events whatever the byte boundaries (CRLF and UTF-8 characters split)", async () => {
  const { SseParser } = await importSource("../../../sdk/widget/src/sse.ts");
  const stream =
    '\uFEFF: hi\r\nevent: chunk\r\ndata: héllo €\r\ndata: 🙂 wörld\r\n\r\nevent: chunk\rdata: 二\r\revent: done\ndata: {"ok":true}\n\n';
  const bytes = new TextEncoder().encode(stream);
  const expected = [
    { event: "chunk", data: "héllo €\n🙂 wörld" },
    { event: "chunk", data: "二" },
    { event: "done", data: '{"ok":true}' },
  ];
  const feed = (parts) => {
    const parser = new SseParser();
    return [...parts.flatMap((part) => parser.feed(part)), ...parser.feed()];
  };
  assert.deepEqual(feed([bytes]), expected);
  assert.deepEqual(feed(Array.from(bytes, (b) => Uint8Array.of(b))), expected, "one byte at a time");
  for (let i = 0; i <= bytes.length; i++) {
    for (let j = i; j <= bytes.length; j++) {
      const parts = [bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)];
      assert.deepEqual(feed(parts), expected, `split at bytes ${i} and ${j}`);
    }
  }
});
