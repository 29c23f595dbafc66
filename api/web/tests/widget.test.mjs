// The embeddable widget in a real browser against a real nodai: /widget.js
// on host pages of other origins (streaming, origins the key does not allow,
// hostile page CSS, theming, 429 and 402, two widgets, a 360 px screen) and
// the React component bundled into a page at test time.
//
// Run `node build.mjs --only widget` first: the server reads api/assets.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
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
function widgetTag(key, workflow, attrs = {}) {
  const extra = Object.entries(attrs)
    .map(([name, value]) => ` data-${name}='${value}'`)
    .join("");
  return `<script src="${server.baseUrl}/widget.js" data-workflow="${workflow}" data-key="${key.key}"${extra} async></script>`;
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
