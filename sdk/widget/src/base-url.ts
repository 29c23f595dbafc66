// The script tag's default `baseUrl`: the directory /widget.js is served
// from, so that a nodai behind a proxy under a path prefix
// (`https://acme.example/nodai/widget.js`) is queried under that prefix too
// (`https://acme.example/nodai/api/v1/…`).

/**
 * The directory of the script's `src` (resolved against the page's URL),
 * without its trailing slash, as core.ts joins `/api/v1/…` onto it; for
 * `https://x/nodai/widget.js?v=2`, `https://x/nodai`. Undefined for a script
 * without `src` (the widget then queries the page's own origin).
 */
export function scriptBaseUrl(src: string, pageUrl: string): string | undefined {
  if (!src) return undefined;
  return new URL(".", new URL(src, pageUrl)).href.replace(/\/+$/, "");
}
