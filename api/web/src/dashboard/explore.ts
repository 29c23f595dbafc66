// The usage explorer's arithmetic, pure (for the unit test): the query
// string of GET /api/v1/usage, the UTC periods a range covers (the API
// sends rows only for periods with usage; the chart shows the empty ones
// too), each row's group, the series the chart stacks (the largest groups,
// the rest as "Other"), and the CSV's file name. Costs are summed as
// integer micro-dollars.

import { withQuery, type Bucket, type Granularity, type UsageGroup, type UsageRow } from "./api";
import { fromMicros, micros, shortDate } from "./format";

/** What the explorer asks GET /api/v1/usage for. */
export interface UsageQuery {
  /** RFC 3339, or null: the server's default (30 days before `to`). */
  from: string | null;
  /** RFC 3339, or null: now. */
  to: string | null;
  granularity: Granularity;
  /** In the order the columns come (the CSV's too). */
  groupBy: UsageGroup[];
  keyId: string;
  customerId: string;
  workflowId: string;
}

/** The fields rows may be grouped by, in the order the explorer offers (and sends) them. */
export const GROUPS: [UsageGroup, string][] = [
  ["key_id", "Key"],
  ["customer_id", "Customer"],
  ["workflow_id", "Workflow"],
  ["status_code", "Status code"],
];

/** What the chart draws. */
export type ChartMetric = "requests" | "errors" | "cost" | "tokens";

/** The server's default range when `from` is left out. */
export const DEFAULT_SPAN_MS = 30 * 86_400_000;

const HOUR = 3_600_000;
const DAY = 86_400_000;

/** `/api/v1/usage?from=…&granularity=…&group_by=a,b&…` (empty fields left out). */
export function usagePath(q: UsageQuery): string {
  return withQuery("/api/v1/usage", {
    from: q.from,
    to: q.to,
    granularity: q.granularity,
    group_by: q.groupBy.join(","),
    key_id: q.keyId.trim(),
    customer_id: q.customerId.trim(),
    workflow_id: q.workflowId.trim(),
  });
}

/** The first instant (ms) of the UTC period that `t` is in. */
export function periodFloor(t: number, g: Granularity): number {
  if (g === "hour") return Math.floor(t / HOUR) * HOUR;
  if (g === "day") return Math.floor(t / DAY) * DAY;
  const d = new Date(t);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/** The first instant of the period after the one that starts at `start`. */
export function nextPeriod(start: number, g: Granularity): number {
  if (g === "hour") return start + HOUR;
  if (g === "day") return start + DAY;
  const d = new Date(start);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

/**
 * The starts (ms) of the periods from `from` to `to` rounded out to whole
 * periods, as the API rounds them: from the one `from` is in to the last
 * that starts before `to`. At most `cap` of them.
 */
export function periodStarts(from: number, to: number, g: Granularity, cap = 5000): number[] {
  const starts: number[] = [];
  for (let s = periodFloor(from, g); s < to && starts.length < cap; s = nextPeriod(s, g)) starts.push(s);
  return starts;
}

/** A period in full, by its start: `2026-12-06 09:00 UTC`, `2026-12-06`, `2026-12`. */
export function periodLabel(start: number, g: Granularity): string {
  const iso = new Date(start).toISOString();
  if (g === "hour") return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
  return g === "day" ? iso.slice(0, 10) : iso.slice(0, 7);
}

/** The x axis's short label: `14:00` (a day's first hour: `Dec 6`), `Dec 6`, `2026-12`. */
export function periodTick(start: number, g: Granularity): string {
  const iso = new Date(start).toISOString();
  if (g === "hour") return iso.slice(11, 16) === "00:00" ? shortDate(iso.slice(0, 10)) : iso.slice(11, 16);
  return g === "day" ? shortDate(iso.slice(0, 10)) : iso.slice(0, 7);
}

/** A row's value for `field`, as text: a key without a customer reads "(no customer)". */
export function groupValue(row: UsageRow, field: UsageGroup): string {
  const value = row[field];
  if (value === null || value === undefined) return field === "customer_id" ? "(no customer)" : "—";
  return String(value);
}

/** The row's group as one name: its values for `groupBy`, joined with " · "; "All" when not grouped. */
export function groupName(row: UsageRow, groupBy: UsageGroup[]): string {
  return groupBy.length === 0 ? "All" : groupBy.map((field) => groupValue(row, field)).join(" · ");
}

/** A row's `metric` in whole units: counts, or micro-dollars for cost (so that sums are exact). */
function units(b: Bucket, metric: ChartMetric): number {
  if (metric === "cost") return micros(b.cost);
  if (metric === "tokens") return b.input_tokens + b.output_tokens;
  return metric === "errors" ? b.errors : b.requests;
}

const fromUnits = (value: number, metric: ChartMetric): number => (metric === "cost" ? fromMicros(value) : value);

export interface ChartSeries {
  /** A group's name (see `groupName`), or "Other" for the groups past the largest. */
  name: string;
  total: number;
}

export interface ChartData {
  /** The largest groups first (ties by name); "Other" last. */
  series: ChartSeries[];
  /** Every period, oldest first: its value per series (in `series` order) and their sum. */
  periods: { start: number; parts: number[]; value: number }[];
  total: number;
}

/**
 * The stacked chart of `metric` over `starts` (from `periodStarts`; a row
 * whose period is not among them adds its own): one series per group, at
 * most `maxSeries` (the largest `maxSeries - 1` and "Other" when there are
 * more). Groups whose total is 0 still get their series while they fit.
 */
export function chartData(
  rows: UsageRow[],
  groupBy: UsageGroup[],
  metric: ChartMetric,
  starts: number[],
  maxSeries = 8,
): ChartData {
  const totals = new Map<string, number>();
  for (const row of rows) {
    const name = groupName(row, groupBy);
    totals.set(name, (totals.get(name) ?? 0) + units(row, metric));
  }
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const kept = ranked.length > maxSeries ? ranked.slice(0, maxSeries - 1) : ranked;
  const index = new Map(kept.map(([name], i) => [name, i]));
  const other = ranked.length > kept.length ? kept.length : -1;
  const width = kept.length + (other >= 0 ? 1 : 0);

  const byStart = new Map<number, number[]>();
  for (const start of starts) byStart.set(start, new Array<number>(width).fill(0));
  for (const row of rows) {
    const start = Date.parse(row.start);
    let parts = byStart.get(start);
    if (!parts) byStart.set(start, (parts = new Array<number>(width).fill(0)));
    parts[index.get(groupName(row, groupBy)) ?? other] += units(row, metric);
  }
  const periods = [...byStart.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([start, parts]) => ({
      start,
      parts: parts.map((p) => fromUnits(p, metric)),
      value: fromUnits(parts.reduce((s, p) => s + p, 0), metric),
    }));
  const series = kept.map(([name, total]) => ({ name, total: fromUnits(total, metric) }));
  if (other >= 0) {
    const rest = ranked.slice(kept.length).reduce((s, [, t]) => s + t, 0);
    series.push({ name: "Other", total: fromUnits(rest, metric) });
  }
  return { series, periods, total: fromUnits([...totals.values()].reduce((s, t) => s + t, 0), metric) };
}

/** The sum of the rows' figures (cost exact, in micro-dollars, then USD). */
export function totalsOf(rows: Bucket[]): Bucket {
  const sum = (pick: (b: Bucket) => number) => rows.reduce((s, b) => s + pick(b), 0);
  return {
    requests: sum((b) => b.requests),
    errors: sum((b) => b.errors),
    cost: fromMicros(sum((b) => micros(b.cost))),
    input_tokens: sum((b) => b.input_tokens),
    output_tokens: sum((b) => b.output_tokens),
  };
}

/** `20261206T0948Z` from an RFC 3339 UTC time. */
const compact = (iso: string): string => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "range" : d.toISOString().slice(0, 16).replace(/[-:]/g, "") + "Z";
};

/** `nodai-usage_20261106T0948Z_20261206T0948Z_day_by-workflow_id.csv`. */
export function csvFileName(q: UsageQuery): string {
  const by = q.groupBy.length ? `_by-${q.groupBy.join("-")}` : "";
  return `nodai-usage_${q.from ? compact(q.from) : "30-days"}_${q.to ? compact(q.to) : "now"}_${q.granularity}${by}.csv`;
}
