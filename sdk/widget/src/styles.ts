// The widget's stylesheet, inside its shadow root, and the theme object's
// mapping onto the `--nodai-*` custom properties.
//
// The host page's rules cannot select anything in the shadow tree; what can
// still reach it is the host element itself (`div { display: none }`) and
// what inherits through it (colour, font size, letter spacing…). So `:host`
// holds its display with `!important` (in a shadow tree, `!important` beats
// the page's, even the page's `!important`), and `.nodai` starts from
// `all: initial`, which drops everything inherited except custom properties,
// the one thing we do want from outside: a `--nodai-accent` set on the host
// or any ancestor inherits in. Only `display` is forced: the page may still
// size and place the host (`max-width`, margins).

/** The theme object: each field sets the custom property of the same name. */
export interface NodaiTheme {
  /** `--nodai-accent`: the Ask button and focus rings. */
  accent?: string;
  /** `--nodai-accent-fg`: text on the accent colour. */
  accentFg?: string;
  /** `--nodai-bg`: the widget's background. */
  bg?: string;
  /** `--nodai-fg`: its text. */
  fg?: string;
  /** `--nodai-muted`: secondary text (the rate-limit line). */
  muted?: string;
  /** `--nodai-border`: borders of the box and the text field. */
  border?: string;
  /** `--nodai-error`: error messages. */
  error?: string;
  /** `--nodai-radius`: corner radius, e.g. `"12px"`. */
  radius?: string;
  /** `--nodai-font`: a `font-family` list. */
  font?: string;
  /** `--nodai-font-size`: the base size, e.g. `"16px"`. */
  fontSize?: string;
}

const THEME_KEYS: (keyof NodaiTheme)[] = [
  "accent",
  "accentFg",
  "bg",
  "fg",
  "muted",
  "border",
  "error",
  "radius",
  "font",
  "fontSize",
];

/** Sets (or, for fields now absent, removes) the theme's custom properties on `el`. */
export function applyTheme(el: HTMLElement, theme: NodaiTheme | undefined): void {
  for (const key of THEME_KEYS) {
    const name = `--nodai-${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    const value = theme?.[key];
    if (typeof value === "string" && value !== "") el.style.setProperty(name, value);
    else el.style.removeProperty(name);
  }
}

const accent = "var(--nodai-accent,#2563eb)";
const border = "var(--nodai-border,#d1d5db)";
const radius = "var(--nodai-radius,8px)";

export const CSS = `
:host{display:block!important;box-sizing:border-box;max-width:100%;min-width:0}
:host([hidden]){display:none!important}
.nodai{all:initial;display:block;box-sizing:border-box;padding:12px;
font-family:var(--nodai-font,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif);
font-size:var(--nodai-font-size,15px);line-height:1.5;text-align:start;overflow-wrap:anywhere;
color:var(--nodai-fg,#1f2937);background:var(--nodai-bg,#fff);border:1px solid ${border};border-radius:${radius}}
.nodai *,.nodai ::before,.nodai ::after{box-sizing:border-box}
[hidden]{display:none!important}
form{display:block;margin:0}
label{display:block;font-weight:600;margin:0 0 6px}
textarea{display:block;width:100%;min-height:3.4em;max-height:40vh;resize:vertical;margin:0;padding:8px 10px;
font:inherit;color:inherit;background:transparent;border:1px solid ${border};border-radius:calc(${radius} * .75)}
textarea::placeholder{color:var(--nodai-muted,#6b7280);opacity:1}
textarea:focus-visible,button:focus-visible{outline:2px solid ${accent};outline-offset:2px}
.row{display:flex;flex-wrap:wrap;align-items:center;justify-content:flex-end;gap:8px;margin-top:8px}
.limit{flex:1 1 10em;min-width:0;color:var(--nodai-muted,#6b7280);font-size:.85em}
button{display:inline-block;margin:0;padding:6px 16px;font:inherit;font-weight:600;line-height:1.4;cursor:pointer;
border:1px solid transparent;border-radius:${radius}}
.ask{background:${accent};color:var(--nodai-accent-fg,#fff)}
.stop{background:transparent;color:inherit;border-color:${border}}
button:disabled{opacity:.55;cursor:not-allowed}
.answer{margin:10px 0 0;white-space:pre-wrap}
.answer:not(:empty){padding-top:10px;border-top:1px solid ${border}}
.answer:empty{margin:0}
.answer[aria-busy=true]::after{content:"\\258D";animation:nodai-blink 1s steps(2) infinite}
@keyframes nodai-blink{to{visibility:hidden}}
@media (prefers-reduced-motion:reduce){.answer[aria-busy=true]::after{animation:none}}
.notice,.wait{margin:8px 0 0;font-size:.9em;color:var(--nodai-muted,#6b7280)}
.notice:empty{margin:0}
.notice.error,.wait{color:var(--nodai-error,#b91c1c)}
.notice.sr{position:absolute;width:1px;height:1px;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
`;
