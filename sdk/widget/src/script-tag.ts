// The entry of /widget.js (bundled by api/web/build.mjs as a minified IIFE;
// no React): each
//
//   <script src="https://nodai.example/widget.js" data-workflow="support"
//           data-key="nk_…" async></script>
//
// renders a widget right after itself (at the end of <body> if the tag is
// in <head>), or into the element `data-target` names (a CSS selector). nodai
// is where the script is served from (its `src` up to the last `/`, so a path
// prefix of a proxy is kept) unless `data-base-url` says otherwise;
// `data-placeholder`, `data-label`, `data-button` and `data-theme` (the theme
// object as JSON) are optional.
// Several tags on one page each get their widget, whether the browser loads
// the file once or once per tag. Also defines `window.NodaiWidget.mount`,
// the framework-free `mountNodaiQuery`, for pages that mount by hand.

import { scriptBaseUrl } from "./base-url.js";
import { mountNodaiQuery, type NodaiTheme } from "./core.js";

/** Set on a script element once its widget is mounted (or being mounted). */
const MOUNTED = "data-nodai-mounted";

function mountFor(script: HTMLScriptElement): void {
  script.setAttribute(MOUNTED, "");
  const data = script.dataset;
  const selector = data.target;
  const place = (): boolean => {
    let parent: Element | null = null;
    if (selector) {
      try {
        parent = document.querySelector(selector);
      } catch {
        console.warn(`nodai widget: data-target ${JSON.stringify(selector)} is not a valid CSS selector`);
        return true;
      }
      if (parent === null) return false;
    }
    // A tag in <head> (a page that is nothing but the pasted snippet puts
    // it there) renders at the end of <body>, once there is one.
    if (!parent && !script.closest("body")) {
      if (!document.body) return false;
      parent = document.body;
    }
    const host = document.createElement("div");
    host.className = "nodai-query";
    if (parent) parent.append(host);
    else script.after(host);
    mountNodaiQuery(host, {
      workflowId: data.workflow ?? "",
      apiKey: data.key ?? "",
      baseUrl: data.baseUrl ?? scriptBaseUrl(script.src, location.href),
      placeholder: data.placeholder,
      label: data.label,
      buttonText: data.button,
      theme: themeFrom(data.theme),
    });
    return true;
  };
  // An async script can run before the page's target element (or its
  // <body>) is parsed.
  if (!place()) {
    const later = () => {
      if (!place()) console.warn(`nodai widget: no element matches data-target ${JSON.stringify(selector)}`);
    };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", later, { once: true });
    else later();
  }
}

function themeFrom(json: string | undefined): NodaiTheme | undefined {
  if (!json) return undefined;
  try {
    const theme: unknown = JSON.parse(json);
    if (theme !== null && typeof theme === "object" && !Array.isArray(theme)) return theme as NodaiTheme;
  } catch {
    // Reported below.
  }
  console.warn("nodai widget: data-theme is not a JSON object; using the default theme");
  return undefined;
}

const current = document.currentScript;
if (current instanceof HTMLScriptElement && current.hasAttribute("data-workflow")) {
  if (!current.hasAttribute(MOUNTED)) mountFor(current);
} else {
  // No current script (the file was loaded some other way): mount every tag
  // that has not been mounted yet.
  document.querySelectorAll<HTMLScriptElement>(`script[data-workflow]:not([${MOUNTED}])`).forEach(mountFor);
}

declare global {
  interface Window {
    NodaiWidget?: { mount: typeof mountNodaiQuery };
  }
}
window.NodaiWidget ??= { mount: mountNodaiQuery };
