// Named limits, `limits: [{metric, window, max}]`, as keys and customers
// take them: their wording, their canonical order (the server's), and a
// small editor of rows (metric, window, maximum) that offers only the
// windows a metric allows — and, on keys, not the two that have fields of
// their own (requests per hour, cost per month). The rows hold text, read
// with `readLimits` like the form's other numbers.

import { useEffect, useState } from "preact/hooks";
import type { Limit, LimitWindow, Metric } from "./api";
import { amount, money, num } from "./format";

export const METRICS: [Metric, string][] = [
  ["requests", "Requests"],
  ["tokens", "Tokens"],
  ["cost", "Cost (USD)"],
];

const WINDOWS: LimitWindow[] = ["minute", "hour", "day", "month"];

/** The windows `metric` allows: cost counts per UTC day or month only. */
export const windowsFor = (metric: Metric): LimitWindow[] =>
  metric === "cost" ? ["day", "month"] : WINDOWS;

/** Pairs (metric, window) that a form edits elsewhere: not offered in the editor. */
export type Reserved = [Metric, LimitWindow][];

/** A key's requests per hour and cost per month: its Rate limit and Cost limit fields. */
export const KEY_RESERVED: Reserved = [
  ["requests", "hour"],
  ["cost", "month"],
];

const isReserved = (reserved: Reserved, metric: Metric, window: LimitWindow) =>
  reserved.some(([m, w]) => m === metric && w === window);

const rank = (l: { metric: Metric; window: LimitWindow }) =>
  METRICS.findIndex(([m]) => m === l.metric) * 10 + WINDOWS.indexOf(l.window);

/** In the server's order: requests, tokens, cost; minute to month. */
export const sortLimits = (limits: Limit[]): Limit[] => [...limits].sort((a, b) => rank(a) - rank(b));

/** `60 requests / minute`, `1,000,000 tokens / day`, `$5.00 / day`. */
export function limitText(limit: Limit): string {
  const amount = limit.metric === "cost" ? money(limit.max) : `${num(limit.max)} ${limit.metric}`;
  return `${amount} / ${limit.window}`;
}

/** The limits as one line: `60 requests / minute · $5.00 / day`, or null when there are none. */
export const limitsText = (limits: Limit[]): string | null =>
  limits.length ? sortLimits(limits).map(limitText).join(" · ") : null;

/** The maximum of the limit on `metric` per `window`, or null: none. */
export const limitOf = (limits: Limit[], metric: Metric, window: LimitWindow): number | null =>
  limits.find((l) => l.metric === metric && l.window === window)?.max ?? null;

/** One row of the editor, as typed. */
export interface LimitRow {
  metric: Metric;
  window: LimitWindow;
  max: string;
}

/** The editor's rows for `limits`, leaving out the reserved pairs. */
export const rowsOf = (limits: Limit[], reserved: Reserved = []): LimitRow[] =>
  sortLimits(limits)
    .filter((l) => !isReserved(reserved, l.metric, l.window))
    .map((l) => ({ metric: l.metric, window: l.window, max: String(l.max) }));

/** The limits the rows say, or the first row that is wrong and how. */
export function readLimits(rows: LimitRow[]): Limit[] | { row: number; message: string } {
  const limits: Limit[] = [];
  for (const [i, row] of rows.entries()) {
    const max = amount(row.max);
    const at = `Limit ${i + 1} (${row.metric} per ${row.window})`;
    if (row.metric === "cost") {
      if (max === null || Number.isNaN(max)) return { row: i, message: `${at}: an amount in USD, like 5 or 12.50.` };
    } else if (max === null || !Number.isInteger(max)) {
      return { row: i, message: `${at}: a whole number of ${row.metric}, like 1000.` };
    }
    if (limits.some((l) => l.metric === row.metric && l.window === row.window)) {
      return { row: i, message: `${at}: only one limit per metric and window.` };
    }
    limits.push({ metric: row.metric, window: row.window, max });
  }
  return limits;
}

/** Queries in flight at once: 1 to 100,000, or empty for no cap (null); NaN when it is not one. */
export function readMaxConcurrent(text: string): number | null {
  const n = amount(text);
  return n === null ? null : Number.isInteger(n) && n >= 1 && n <= 100_000 ? n : NaN;
}

const WINDOW_LABELS: Record<LimitWindow, string> = {
  minute: "per minute",
  hour: "per hour",
  day: "per day",
  month: "per month",
};

/**
 * The rows of a `limits` list: each a metric, a window (only those the
 * metric allows) and a maximum, with Remove; then Add limit, while a pair
 * is left. Ids are `<idPrefix>-<row>-metric|window|max`.
 */
export function LimitsEditor(props: {
  idPrefix: string;
  legend: string;
  hint: string;
  rows: LimitRow[];
  onChange: (rows: LimitRow[]) => void;
  reserved?: Reserved;
  /** The row a failed check points at (its maximum shows as invalid). */
  invalidRow?: number | null;
}) {
  const { idPrefix: p, rows, reserved = [] } = props;
  // Where the focus goes after an add (the new row) or a remove (Add limit).
  const [focus, setFocus] = useState<string | null>(null);
  useEffect(() => {
    if (focus) document.getElementById(focus)?.focus();
    setFocus(null);
  }, [focus]);
  const allowed = (metric: Metric) => windowsFor(metric).filter((w) => !isReserved(reserved, metric, w));
  const used = (metric: Metric, window: LimitWindow) => rows.some((r) => r.metric === metric && r.window === window);
  const free = METRICS.flatMap(([metric]) => allowed(metric).map((window) => ({ metric, window }))).filter(
    (pair) => !used(pair.metric, pair.window),
  );
  const update = (i: number, change: Partial<LimitRow>) =>
    props.onChange(
      rows.map((row, j) => {
        if (j !== i) return row;
        const next = { ...row, ...change };
        // A metric that does not allow the window: its first free one (else its first).
        const windows = allowed(next.metric);
        if (!windows.includes(next.window)) {
          next.window = windows.find((w) => !rows.some((r, k) => k !== i && r.metric === next.metric && r.window === w)) ?? windows[0];
        }
        return next;
      }),
    );
  const add = () => {
    const pair = free[0];
    if (!pair) return;
    props.onChange([...rows, { ...pair, max: "" }]);
    setFocus(`${p}-${rows.length}-metric`);
  };
  const remove = (i: number) => {
    props.onChange(rows.filter((_, j) => j !== i));
    setFocus(`${p}-add`);
  };
  return (
    <fieldset class="choices limits-editor" aria-describedby={`${p}-hint`}>
      <legend>{props.legend}</legend>
      <p class="hint" id={`${p}-hint`}>
        {props.hint}
      </p>
      {rows.length === 0 ? (
        <p class="limits-none muted small">None.</p>
      ) : (
        <ol class="limit-rows">
          {rows.map((row, i) => {
            const n = i + 1;
            const id = (part: string) => `${p}-${i}-${part}`;
            const bad = props.invalidRow === i;
            return (
              <li class="limit-row" key={i}>
                <div class="limit-cell">
                  <label for={id("metric")}>
                    <span class="visually-hidden">Limit {n} </span>Metric
                  </label>
                  <select
                    id={id("metric")}
                    value={row.metric}
                    onChange={(e) => update(i, { metric: (e.currentTarget as HTMLSelectElement).value as Metric })}
                  >
                    {METRICS.map(([metric, label]) => (
                      <option key={metric} value={metric}>
                        {label}
                      </option>
                    ))}
                  </select>
                </div>
                <div class="limit-cell">
                  <label for={id("window")}>
                    <span class="visually-hidden">Limit {n} </span>Window
                  </label>
                  <select
                    id={id("window")}
                    value={row.window}
                    onChange={(e) => update(i, { window: (e.currentTarget as HTMLSelectElement).value as LimitWindow })}
                  >
                    {allowed(row.metric).map((w) => (
                      <option key={w} value={w}>
                        {WINDOW_LABELS[w]}
                      </option>
                    ))}
                  </select>
                </div>
                <div class="limit-cell">
                  <label for={id("max")}>
                    <span class="visually-hidden">Limit {n} </span>
                    {row.metric === "cost" ? "Maximum (USD)" : "Maximum"}
                  </label>
                  <input
                    id={id("max")}
                    inputMode={row.metric === "cost" ? "decimal" : "numeric"}
                    autoComplete="off"
                    value={row.max}
                    onInput={(e) => update(i, { max: (e.currentTarget as HTMLInputElement).value })}
                    aria-invalid={bad ? true : undefined}
                  />
                </div>
                <button
                  type="button"
                  class="btn btn-small limit-remove"
                  aria-label={`Remove limit ${n} (${row.metric} ${WINDOW_LABELS[row.window]})`}
                  onClick={() => remove(i)}
                >
                  Remove
                </button>
              </li>
            );
          })}
        </ol>
      )}
      {free.length > 0 && (
        <button type="button" id={`${p}-add`} class="btn btn-small" onClick={add}>
          Add limit
        </button>
      )}
    </fieldset>
  );
}
