// Formatting of money, counts and times. Every time is shown in UTC, as the
// API's hours, days and months are UTC calendar periods.

const usd = new Intl.NumberFormat("en-US", {
  style: "currency",
  currency: "USD",
  minimumFractionDigits: 2,
  maximumFractionDigits: 6,
});
const count = new Intl.NumberFormat("en-US");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** `$0.0015`, `$5.00`. */
export const money = (value: number): string => usd.format(value);

export const num = (value: number): string => count.format(value);

/** `3 requests`, `1 request`. */
export const plural = (n: number, one: string, many = `${one}s`): string => `${num(n)} ${n === 1 ? one : many}`;

/**
 * A non-negative amount as typed (`12`, `0.5`, `.5`); null when empty, NaN
 * when it is not one (`1e`, `1,5`, `-1`, `$5`). The number inputs are text
 * inputs read with this: a `type="number"` input reports a half-typed `1e`
 * as empty, which would save as "no limit".
 */
export function amount(text: string): number | null {
  const t = text.trim();
  return !t ? null : /^(\d+\.?\d*|\.\d+)$/.test(t) ? Number(t) : NaN;
}

/** USD as integer micro-dollars, so that sums are exact. */
export const micros = (value: number): number => Math.round(value * 1_000_000);
export const fromMicros = (value: number): number => value / 1_000_000;

/** `2026-11-25 14:03 UTC`. */
export function dateTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** `Nov 25` for `2026-11-25` (a UTC date). */
export function shortDate(date: string): string {
  const month = Number(date.slice(5, 7));
  return `${MONTHS[month - 1] ?? date.slice(5, 7)} ${Number(date.slice(8, 10))}`;
}

/** `14:00` for the start of a UTC hour. */
export const hourOf = (iso: string): string => new Date(iso).toISOString().slice(11, 16);

/** `5 min ago`, `in 3 days`, `just now`. */
export function relative(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "Never";
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return "just now";
  const [value, unit] =
    abs < 3600
      ? [Math.round(abs / 60), "min"]
      : abs < 86_400
        ? [Math.round(abs / 3600), "h"]
        : abs < 60 * 86_400
          ? [Math.round(abs / 86_400), abs < 1.5 * 86_400 ? "day" : "days"]
          : [Math.round(abs / (30 * 86_400)), "mo"];
  return seconds < 0 ? `${value} ${unit} ago` : `in ${value} ${unit}`;
}

/** `2026-11` of now (UTC), the month the cost limit counts. */
export const thisMonth = (now = new Date()): string => now.toISOString().slice(0, 7);

/**
 * `2026-11-15`: the first day (UTC) of the monthly period `now` is in, for
 * periods that start on day `anchorDay` (1 to 28; 1 is the calendar month).
 */
export function periodStart(anchorDay = 1, now = new Date()): string {
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  const start = new Date(Date.UTC(y, now.getUTCDate() >= anchorDay ? m : m - 1, anchorDay));
  return start.toISOString().slice(0, 10);
}

/** `2026-11-25T14:03` (UTC) for a datetime-local input, from an RFC 3339 time. */
export const toInputUtc = (iso: string | null): string => (iso ? new Date(iso).toISOString().slice(0, 16) : "");

/** RFC 3339 from a datetime-local value read as UTC; null when empty. */
export function fromInputUtc(value: string): string | null {
  if (!value) return null;
  const d = new Date(`${value.length === 16 ? `${value}:00` : value}Z`);
  return Number.isNaN(d.getTime()) ? null : d.toISOString().replace(".000Z", "Z");
}
