// The widget itself, free of any framework: `mountNodaiQuery(host, options)`
// renders a question box into `host`'s shadow root, sends the question to
// `POST {baseUrl}/api/v1/workflows/{workflowId}/query` as a streaming query
// (`Accept: text/event-stream`), and shows the answer as its chunks arrive.
// The React component (react.ts) and the script tag (script-tag.ts) are thin
// wrappers around it.
//
// It keeps no state outside the host, stores nothing (no cookies, no
// storage) and renders the answer as plain text, never as HTML. It does not
// retry: a query may cost money, so only the visitor sends it again.

import { CUT_OFF, MISCONFIGURED, STOPPED, UNREACHABLE, problemMessage, rateLimitMessage, retryMessage } from "./messages.js";
import { SseParser } from "./sse.js";
import { CSS, applyTheme, type NodaiTheme } from "./styles.js";

export type { NodaiTheme } from "./styles.js";

export interface NodaiQueryOptions {
  /** The workflow to query. */
  workflowId: string;
  /** A browser key (`nk_…`): see "Use a browser key" in the README. */
  apiKey: string;
  /** nodai's origin, e.g. `https://nodai.example`; default: the page's own origin. */
  baseUrl?: string;
  /** Sets the `--nodai-*` custom properties (over those inherited from the page). */
  theme?: NodaiTheme;
  /** The text field's placeholder. */
  placeholder?: string;
  /** The text field's visible label; default "Ask a question". */
  label?: string;
  /** The submit button's text; default "Ask". */
  buttonText?: string;
  /** Called when a query completes (not when it fails or is stopped). */
  onResult?: (result: NodaiResult) => void;
}

export interface NodaiResult {
  /** The answer: every chunk's text, joined. */
  output: string;
  /** What the query cost (USD) and how long nodai took. */
  usage: { cost: number; durationMs: number };
  /** `req_…`, the query's id in nodai's usage log. */
  requestId: string;
  /** The key's rate-limit state after this query; `null` when it has no rate limit. */
  rateLimit: RateLimit | null;
}

export interface RateLimit {
  /** Requests allowed per rolling hour. */
  limit: number;
  /** Requests left in the window. */
  remaining: number;
  /** When the window frees a request, in epoch seconds. */
  reset: number;
}

export interface NodaiQueryWidget {
  /** Changes some options; the ones not given stay as they were. */
  update(options: Partial<NodaiQueryOptions>): void;
  /** Stops a running query and empties the host's shadow root. */
  destroy(): void;
}

/** The event a completed query dispatches on the host element (it bubbles). */
export const RESULT_EVENT = "nodai:result";

/**
 * Renders the widget into `host` (in an open shadow root, so the page's CSS
 * cannot reach it). Mounting again on the same host after `destroy()` reuses
 * the shadow root (React's strict mode does exactly that).
 */
export function mountNodaiQuery(host: HTMLElement, options: NodaiQueryOptions): NodaiQueryWidget {
  let opts: NodaiQueryOptions = { ...options };
  const shadow = host.shadowRoot ?? host.attachShadow({ mode: "open" });
  shadow.replaceChildren();

  const make = <K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}) => {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
    return el;
  };
  const root = make("div", { class: "nodai", part: "root" });
  const form = make("form", { novalidate: "" });
  const label = make("label", { for: "q" });
  const input = make("textarea", { id: "q", name: "q", rows: "2", autocomplete: "off" });
  const row = make("div", { class: "row" });
  const limit = make("span", { class: "limit" });
  const stop = make("button", { type: "button", class: "stop", hidden: "" });
  stop.textContent = "Stop";
  const ask = make("button", { type: "submit", class: "ask" });
  // The answer is announced once complete (aria-busy holds it back while streaming).
  const answer = make("div", { class: "answer", "aria-live": "polite", "aria-busy": "false" });
  const notice = make("p", { class: "notice", role: "alert" });
  // The 429 countdown: the alert above announces the wait once (and is
  // visually hidden meanwhile); this ticks, outside any live region.
  const wait = make("p", { class: "wait", "aria-hidden": "true", hidden: "" });
  row.append(limit, stop, ask);
  form.append(label, input, row);
  root.append(form, answer, notice, wait);
  adoptStyles(shadow);
  shadow.append(root);

  let running: AbortController | null = null;
  let cooldown: ReturnType<typeof setInterval> | undefined;
  let destroyed = false;

  const configured = () => Boolean(opts.workflowId && opts.apiKey);
  const refresh = () => {
    // A focused control that is about to disappear or be disabled would
    // drop focus to <body>: it moves to the text field instead.
    const focused = shadow.activeElement;
    label.textContent = opts.label ?? "Ask a question";
    input.placeholder = opts.placeholder ?? "Type your question…";
    ask.textContent = opts.buttonText ?? "Ask";
    applyTheme(root, opts.theme);
    ask.disabled = running !== null || cooldown !== undefined || !configured();
    stop.hidden = running === null;
    answer.setAttribute("aria-busy", String(running !== null));
    if ((focused === stop && stop.hidden) || (focused === ask && ask.disabled)) input.focus();
    if (!configured()) say(MISCONFIGURED, true);
    else if (notice.textContent === MISCONFIGURED) say("");
  };
  const say = (text: string, error = false) => {
    notice.textContent = text;
    notice.classList.toggle("error", error);
  };
  const endCooldown = () => {
    clearInterval(cooldown);
    cooldown = undefined;
    notice.classList.remove("sr");
    wait.hidden = true;
  };
  const startCooldown = (seconds: number) => {
    endCooldown();
    let left = Math.max(1, Math.ceil(seconds));
    say(retryMessage(left), true);
    notice.classList.add("sr");
    wait.textContent = notice.textContent;
    wait.hidden = false;
    cooldown = setInterval(() => {
      left -= 1;
      if (left > 0) return void (wait.textContent = retryMessage(left));
      endCooldown();
      say("");
      refresh();
    }, 1000);
  };

  const submit = () => {
    const question = input.value.trim();
    if (running !== null || cooldown !== undefined || !configured()) return;
    if (question === "") {
      input.focus();
      return;
    }
    void query(question);
  };

  async function query(question: string) {
    const controller = new AbortController();
    running = controller;
    const text = document.createTextNode("");
    answer.replaceChildren(text);
    say("");
    refresh();
    const { workflowId, apiKey } = opts;
    const base = (opts.baseUrl ?? "").replace(/\/+$/, "");
    let outcome: NodaiResult | { message: string; error: boolean };
    try {
      outcome = await run(controller.signal, question, base, workflowId, apiKey, text);
    } catch {
      // The body read broke off: stopped by the visitor, or the connection dropped.
      outcome = controller.signal.aborted ? { message: STOPPED, error: false } : { message: CUT_OFF, error: true };
    }
    if (destroyed) return;
    running = null;
    if ("output" in outcome) {
      refresh();
      host.dispatchEvent(new CustomEvent(RESULT_EVENT, { detail: outcome, bubbles: true }));
      opts.onResult?.(outcome);
    } else {
      if (!cooldown) say(outcome.message, outcome.error);
      refresh();
    }
  }

  /** One query; returns its result, or what to tell the visitor. Throws when the body read fails or is aborted. */
  async function run(
    signal: AbortSignal,
    question: string,
    base: string,
    workflowId: string,
    apiKey: string,
    text: Text,
  ): Promise<NodaiResult | { message: string; error: boolean }> {
    let response: Response;
    try {
      response = await fetch(`${base}/api/v1/workflows/${encodeURIComponent(workflowId)}/query`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "text/event-stream", "x-api-key": apiKey },
        body: JSON.stringify({ input: question }),
        signal,
        credentials: "omit",
      });
    } catch (error) {
      if (signal.aborted) throw error;
      // No response to read: a refused CORS check or no connection at all.
      return { message: UNREACHABLE, error: true };
    }
    const rateLimit = rateLimitFrom(response.headers);
    limit.textContent = rateLimit ? rateLimitMessage(rateLimit.limit, rateLimit.remaining) : "";
    if (!response.ok) {
      const problem = (await response.json().catch(() => null)) as { code?: unknown } | null;
      const code = typeof problem?.code === "string" ? problem.code : undefined;
      if (response.status === 429) {
        const header = Number(response.headers.get("retry-after"));
        const fromReset = rateLimit ? rateLimit.reset - Date.now() / 1000 : 60;
        startCooldown(Number.isFinite(header) && header > 0 ? header : fromReset);
        return { message: "", error: true };
      }
      return { message: problemMessage(response.status, code), error: true };
    }
    if (!(response.headers.get("content-type") ?? "").startsWith("text/event-stream") || !response.body) {
      // A plain JSON answer (a proxy dropped the Accept header): all at once.
      const body = (await response.json()) as { output?: unknown; usage?: Usage; request_id?: unknown };
      const output = typeof body.output === "string" ? body.output : JSON.stringify(body.output ?? null);
      text.appendData(output);
      return resultOf(output, body, rateLimit) ?? { message: CUT_OFF, error: true };
    }
    const reader = response.body.getReader();
    const parser = new SseParser();
    let output = "";
    for (;;) {
      const { value, done } = await reader.read();
      const events = parser.feed(done ? undefined : value);
      for (const event of events) {
        if (event.event === "chunk") {
          output += event.data;
          text.appendData(event.data);
        } else if (event.event === "done" || event.event === "error") {
          await reader.cancel().catch(() => undefined);
          const body = parseJson(event.data) as { code?: unknown; usage?: Usage; request_id?: unknown } | null;
          if (event.event === "done") return resultOf(output, body, rateLimit) ?? { message: CUT_OFF, error: true };
          return { message: problemMessage(0, typeof body?.code === "string" ? body.code : undefined), error: true };
        }
      }
      if (done) return { message: CUT_OFF, error: true };
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter is a new line; not while an IME composes.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  stop.addEventListener("click", () => {
    running?.abort();
    input.focus();
  });
  refresh();

  return {
    update(changes) {
      if (destroyed) return;
      opts = { ...opts, ...changes };
      refresh();
    },
    destroy() {
      if (destroyed) return;
      destroyed = true;
      running?.abort();
      endCooldown();
      shadow.replaceChildren();
      if ("adoptedStyleSheets" in shadow) shadow.adoptedStyleSheets = [];
    },
  };
}

/**
 * Gives the shadow root its stylesheet: a constructed one, which a host
 * page's Content-Security-Policy (`style-src` without 'unsafe-inline') does
 * not block, or a `<style>` element where constructed sheets are missing.
 */
function adoptStyles(shadow: ShadowRoot): void {
  if ("adoptedStyleSheets" in shadow) {
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      shadow.adoptedStyleSheets = [sheet];
      return;
    } catch {
      // Fall back to <style> below.
    }
  }
  const style = document.createElement("style");
  style.textContent = CSS;
  shadow.append(style);
}

type Usage = { cost?: unknown; duration_ms?: unknown };

function parseJson(data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
}

function resultOf(
  output: string,
  body: { usage?: Usage; request_id?: unknown } | null,
  rateLimit: RateLimit | null,
): NodaiResult | undefined {
  const cost = body?.usage?.cost;
  const durationMs = body?.usage?.duration_ms;
  const requestId = body?.request_id;
  if (typeof cost !== "number" || typeof durationMs !== "number" || typeof requestId !== "string") return undefined;
  return { output, usage: { cost, durationMs }, requestId, rateLimit };
}

/** The `X-RateLimit-*` headers (nodai exposes them to pages); `null` unless all three are numbers. */
function rateLimitFrom(headers: Headers): RateLimit | null {
  const [limit, remaining, reset] = ["limit", "remaining", "reset"].map((name) => {
    const value = headers.get(`x-ratelimit-${name}`);
    return value === null || value === "" ? NaN : Number(value);
  }) as [number, number, number];
  return [limit, remaining, reset].every(Number.isFinite) ? { limit, remaining, reset } : null;
}
