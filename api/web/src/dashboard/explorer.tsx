// `#/usage`: the usage explorer, over GET /api/v1/usage. A range (a
// preset, or from and to in UTC), a granularity (hour, day, month), a
// grouping (key, customer, workflow, status code: any of them) and
// filters; then a stacked chart of requests, errors, cost or tokens (one
// series per group), the rows as a table, and "Download CSV": the same
// query with `Accept: text/csv`, saved as a file. Presets, the granularity
// and the grouping run the query at once; typed fields run it on Enter or
// "Show usage". A refused query (422) shows the server's detail.

import { useEffect, useState } from "preact/hooks";
import { api, apiFile, type Granularity, type UsageGroup, type UsageRow } from "./api";
import { BarChart, type Point } from "./chart";
import {
  chartData,
  csvFileName,
  DEFAULT_SPAN_MS,
  GROUPS,
  groupValue,
  periodLabel,
  periodStarts,
  periodTick,
  totalsOf,
  usagePath,
  type ChartMetric,
  type UsageQuery,
} from "./explore";
import { dateTime, fromInputUtc, money, num, plural, toInputUtc } from "./format";
import { href, useMounted, useSequence } from "./hooks";
import { describe, Empty, ErrorBox, Field, Loading, PageHeader } from "./ui";

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** A range ending now: its length, and the granularity it starts with. */
const PRESETS: { id: string; label: string; ms: number; granularity: Granularity }[] = [
  { id: "24h", label: "Last 24 hours", ms: DAY_MS, granularity: "hour" },
  { id: "7d", label: "Last 7 days", ms: 7 * DAY_MS, granularity: "day" },
  { id: "30d", label: "Last 30 days", ms: 30 * DAY_MS, granularity: "day" },
  { id: "12mo", label: "Last 12 months", ms: 365 * DAY_MS, granularity: "month" },
];

const GRANULARITIES: [Granularity, string][] = [
  ["hour", "Hour"],
  ["day", "Day"],
  ["month", "Month"],
];

const METRICS: [ChartMetric, string][] = [
  ["requests", "Requests"],
  ["errors", "Errors"],
  ["cost", "Cost"],
  ["tokens", "Tokens (input + output)"],
];

/** Label spacings of the hourly chart, in hours: on the clock's hours, then whole days and weeks. */
const HOUR_STEPS = [1, 2, 3, 4, 6, 12, 24, 48, 96, 168, 336, 720];

/** The table shows this many rows at most; the CSV has them all. */
const MAX_ROWS = 500;

/** The form as typed: from and to as datetime-local values, read as UTC. */
interface Form {
  from: string;
  to: string;
  granularity: Granularity;
  groupBy: UsageGroup[];
  keyId: string;
  customerId: string;
  workflowId: string;
  /** The preset the range follows (it is taken again up to now on each run), or null once from or to is typed. */
  preset: string | null;
}

/** `form` with the range of `preset`, ending now. */
function withPreset(form: Form, preset: string): Form {
  const found = PRESETS.find((p) => p.id === preset);
  if (!found) return { ...form, preset: null };
  const now = Date.now();
  return {
    ...form,
    from: toInputUtc(new Date(now - found.ms).toISOString()),
    to: toInputUtc(new Date(now).toISOString()),
    preset,
  };
}

const queryOf = (f: Form): UsageQuery => ({
  from: fromInputUtc(f.from),
  to: fromInputUtc(f.to),
  granularity: f.granularity,
  groupBy: f.groupBy,
  keyId: f.keyId,
  customerId: f.customerId,
  workflowId: f.workflowId,
});

const groupLabel = (field: UsageGroup): string => GROUPS.find(([g]) => g === field)?.[1] ?? field;
const metricLabel = (m: ChartMetric): string => METRICS.find(([id]) => id === m)?.[1] ?? m;

/** `From … to … UTC, per day, grouped by workflow; key key_1 only.` */
function describeQuery(q: UsageQuery): string {
  const range = `From ${q.from ? dateTime(q.from) : "30 days before To"} to ${q.to ? dateTime(q.to) : "now"}`;
  const grouped = q.groupBy.length ? `, grouped by ${q.groupBy.map((g) => groupLabel(g).toLowerCase()).join(", ")}` : "";
  const filters = [
    q.keyId.trim() && `key ${q.keyId.trim()}`,
    q.customerId.trim() && `customer ${q.customerId.trim()}`,
    q.workflowId.trim() && `workflow ${q.workflowId.trim()}`,
  ].filter(Boolean);
  return `${range}, per ${q.granularity}${grouped}${filters.length ? `; ${filters.join(", ")} only` : ""}.`;
}

/** A chart total in words: `3 requests`, `$0.03`. */
function amount(metric: ChartMetric, value: number): string {
  if (metric === "cost") return money(value);
  return plural(value, metric === "requests" ? "request" : metric === "errors" ? "error" : "token");
}

export function UsageExplorerPage() {
  const [form, setForm] = useState<Form>(() =>
    withPreset(
      { from: "", to: "", granularity: "day", groupBy: [], keyId: "", customerId: "", workflowId: "", preset: null },
      "30d",
    ),
  );
  // The query the chart and table show, and when it was answered.
  const [shown, setShown] = useState<{ query: UsageQuery; at: number; rows: UsageRow[] } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(false);
  const [metric, setMetric] = useState<ChartMetric>("requests");
  const [downloading, setDownloading] = useState(false);
  const [downloadError, setDownloadError] = useState<unknown>(null);
  const mounted = useMounted();
  const sequence = useSequence();

  const run = async (next: Form) => {
    const f = next.preset ? withPreset(next, next.preset) : next;
    setForm(f);
    const query = queryOf(f);
    const n = sequence.start();
    setLoading(true);
    setError(null);
    setDownloadError(null);
    try {
      const result = await api<{ data: UsageRow[] }>("GET", usagePath(query));
      if (!mounted.current || !sequence.latest(n)) return;
      setShown({ query, at: Date.now(), rows: result.data });
    } catch (e) {
      if (!mounted.current || !sequence.latest(n)) return;
      // Not the old rows under an error about the new query.
      setShown(null);
      setError(e);
    } finally {
      if (mounted.current && sequence.latest(n)) setLoading(false);
    }
  };
  useEffect(() => {
    void run(form);
  }, []);

  const downloadCsv = async () => {
    if (!shown || downloading) return;
    setDownloading(true);
    setDownloadError(null);
    try {
      const blob = await apiFile(usagePath(shown.query), "text/csv");
      const url = URL.createObjectURL(blob);
      const link = document.createElement("a");
      link.href = url;
      link.download = csvFileName(shown.query);
      link.hidden = true;
      document.body.append(link);
      link.click();
      link.remove();
      // Later, not at once: the download reads the blob after the click.
      window.setTimeout(() => URL.revokeObjectURL(url), 40_000);
    } catch (e) {
      if (mounted.current) setDownloadError(e);
    } finally {
      if (mounted.current) setDownloading(false);
    }
  };

  const text = (field: "from" | "to" | "keyId" | "customerId" | "workflowId") => ({
    value: form[field],
    onInput: (e: Event) => {
      const value = (e.currentTarget as HTMLInputElement).value;
      setForm((f) => ({ ...f, [field]: value, preset: field === "from" || field === "to" ? null : f.preset }));
    },
  });

  return (
    <>
      <PageHeader title="Usage" />
      <p class="lead">
        Requests, errors, cost and tokens per UTC hour, day or month: every key's queries and the usage events reported
        to <code>/api/v1/events</code>. The range is rounded out to whole periods.
      </p>
      <form
        class="card form explorer-form"
        aria-label="Usage query"
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          void run(form);
        }}
      >
        <div class="presets" role="group" aria-label="Range presets">
          {PRESETS.map((p) => (
            <button
              key={p.id}
              type="button"
              class="btn btn-small"
              aria-pressed={form.preset === p.id}
              onClick={() => void run({ ...form, granularity: p.granularity, preset: p.id })}
            >
              {p.label}
            </button>
          ))}
        </div>
        <div class="grid-3">
          <Field id="usage-from" label="From (UTC)" hint="Empty: 30 days before To.">
            <input id="usage-from" type="datetime-local" {...text("from")} {...describe("usage-from", null)} />
          </Field>
          <Field id="usage-to" label="To (UTC)" hint="Empty: now.">
            <input id="usage-to" type="datetime-local" {...text("to")} {...describe("usage-to", null)} />
          </Field>
          <Field id="usage-granularity" label="Granularity" hint="Hourly: at most 90 days.">
            <select
              id="usage-granularity"
              value={form.granularity}
              {...describe("usage-granularity", null)}
              onChange={(e) => void run({ ...form, granularity: (e.currentTarget as HTMLSelectElement).value as Granularity })}
            >
              {GRANULARITIES.map(([id, label]) => (
                <option key={id} value={id}>
                  {label}
                </option>
              ))}
            </select>
          </Field>
        </div>
        <fieldset class="choices">
          <legend>Group by</legend>
          <div class="checks explorer-groups">
            {GROUPS.map(([field, label]) => (
              <div class="check" key={field}>
                <input
                  id={`usage-group-${field}`}
                  type="checkbox"
                  checked={form.groupBy.includes(field)}
                  onChange={(e) => {
                    const on = (e.currentTarget as HTMLInputElement).checked;
                    const groupBy = GROUPS.map(([g]) => g).filter((g) => (g === field ? on : form.groupBy.includes(g)));
                    void run({ ...form, groupBy });
                  }}
                />
                <label for={`usage-group-${field}`}>{label}</label>
              </div>
            ))}
          </div>
        </fieldset>
        <div class="grid-3">
          <Field id="usage-key" label="Key ID">
            <input id="usage-key" placeholder="key_…" spellcheck={false} autoComplete="off" {...text("keyId")} />
          </Field>
          <Field id="usage-customer" label="Customer ID">
            <input id="usage-customer" spellcheck={false} autoComplete="off" {...text("customerId")} />
          </Field>
          <Field id="usage-workflow" label="Workflow ID">
            <input id="usage-workflow" spellcheck={false} autoComplete="off" {...text("workflowId")} />
          </Field>
        </div>
        <div class="form-actions">
          <button type="submit" class="btn btn-primary">
            Show usage
          </button>
          <span class="hint">Presets, the granularity and the grouping apply at once; typed fields on Enter.</span>
          <span class="muted small" role="status" aria-live="polite">
            {loading && shown ? "Loading…" : ""}
          </span>
        </div>
      </form>

      <ErrorBox error={error} title="Could not load the usage:" />
      {shown === null ? (
        loading && <Loading what="Loading usage" />
      ) : (
        <>
          {shown.rows.length > 0 && (
            <section class="card" aria-labelledby="usage-chart-title" aria-busy={loading}>
              <div class="section-header">
                <h2 id="usage-chart-title">Over time</h2>
                <div class="toolbar-filter">
                  <label for="usage-metric">Chart</label>
                  <select
                    id="usage-metric"
                    value={metric}
                    onChange={(e) => setMetric((e.currentTarget as HTMLSelectElement).value as ChartMetric)}
                  >
                    {METRICS.map(([id, label]) => (
                      <option key={id} value={id}>
                        {label}
                      </option>
                    ))}
                  </select>
                </div>
              </div>
              <UsageChart query={shown.query} at={shown.at} rows={shown.rows} metric={metric} />
            </section>
          )}
          <section class="card" aria-labelledby="usage-rows-title" aria-busy={loading}>
            <div class="section-header">
              <h2 id="usage-rows-title">Rows</h2>
              <div class="actions">
                <button type="button" class="btn" aria-disabled={downloading} onClick={() => void downloadCsv()}>
                  {downloading ? "Downloading…" : "Download CSV"}
                </button>
              </div>
            </div>
            <p class="hint usage-query">{describeQuery(shown.query)}</p>
            <ErrorBox error={downloadError} title="Could not download the CSV:" />
            <UsageTable query={shown.query} rows={shown.rows} />
          </section>
        </>
      )}
    </>
  );
}

function UsageChart({ query, at, rows, metric }: { query: UsageQuery; at: number; rows: UsageRow[]; metric: ChartMetric }) {
  const g = query.granularity;
  const to = query.to ? Date.parse(query.to) : at;
  const from = query.from ? Date.parse(query.from) : to - DEFAULT_SPAN_MS;
  const data = chartData(rows, query.groupBy, metric, periodStarts(from, to, g));
  const format = metric === "cost" ? money : num;
  const grouped = query.groupBy.length > 0;
  const points: Point[] = data.periods.map((p) => ({
    label: periodLabel(p.start, g),
    tick: periodTick(p.start, g),
    order: g === "hour" ? Math.floor(p.start / HOUR_MS) : undefined,
    value: p.value,
    parts: grouped ? p.parts : undefined,
    extra: grouped ? p.parts.map(format) : undefined,
  }));
  const by = grouped ? ` by ${query.groupBy.map((f) => groupLabel(f).toLowerCase()).join(" and ")}` : "";
  const period = GRANULARITIES.find(([id]) => id === g)?.[1] ?? g;
  const range = `from ${query.from ? dateTime(query.from) : "30 days before"} to ${query.to ? dateTime(query.to) : "now"}`;
  const series = grouped ? data.series.map((s) => `${s.name} ${format(s.total)}`).join(", ") : "";
  return (
    <BarChart
      id="usage-explorer"
      title={`${metricLabel(metric)} per ${g}${by}`}
      points={points}
      format={format}
      integer={metric !== "cost"}
      steps={g === "hour" ? HOUR_STEPS : undefined}
      series={grouped ? data.series.map((s) => s.name) : undefined}
      categorical={grouped}
      columns={[period, grouped ? "Total" : metricLabel(metric), ...(grouped ? data.series.map((s) => s.name) : [])]}
      summary={
        `${metricLabel(metric)} per ${g}${by} ${range}: ${amount(metric, data.total)} in total` +
        (series ? `; ${series}.` : ".")
      }
    />
  );
}

function GroupCell({ row, field }: { row: UsageRow; field: UsageGroup }) {
  const value = row[field];
  if (value === null || value === undefined) return <span class="muted">{groupValue(row, field)}</span>;
  if (field === "key_id") {
    return (
      <a href={href("keys", String(value))}>
        <code>{value}</code>
      </a>
    );
  }
  if (field === "customer_id") {
    return (
      <a href={href("customers", String(value))}>
        <code>{value}</code>
      </a>
    );
  }
  return field === "workflow_id" ? <code>{value}</code> : <>{value}</>;
}

function UsageTable({ query, rows }: { query: UsageQuery; rows: UsageRow[] }) {
  if (rows.length === 0) {
    return <Empty>No usage in this range{query.keyId || query.customerId || query.workflowId ? " with these filters" : ""}.</Empty>;
  }
  const g = query.granularity;
  const list = rows.slice(0, MAX_ROWS);
  const total = totalsOf(rows);
  const period = GRANULARITIES.find(([id]) => id === g)?.[1] ?? g;
  return (
    <>
      <div class="table-wrap">
        <table class="usage-table">
          <caption class="visually-hidden">Usage per {g}</caption>
          <thead>
            <tr>
              <th scope="col">{period} (UTC)</th>
              {query.groupBy.map((field) => (
                <th scope="col" key={field}>
                  {groupLabel(field)}
                </th>
              ))}
              <th scope="col" class="num">
                Requests
              </th>
              <th scope="col" class="num">
                Errors
              </th>
              <th scope="col" class="num">
                Cost
              </th>
              <th scope="col" class="num">
                Input tokens
              </th>
              <th scope="col" class="num">
                Output tokens
              </th>
            </tr>
          </thead>
          <tbody>
            {list.map((row) => (
              <tr key={`${row.start} ${query.groupBy.map((f) => JSON.stringify(row[f] ?? null)).join(" ")}`}>
                <th scope="row">{periodLabel(Date.parse(row.start), g)}</th>
                {query.groupBy.map((field) => (
                  <td key={field}>
                    <GroupCell row={row} field={field} />
                  </td>
                ))}
                <td class="num">{num(row.requests)}</td>
                <td class="num">{num(row.errors)}</td>
                <td class="num">{money(row.cost)}</td>
                <td class="num">{num(row.input_tokens)}</td>
                <td class="num">{num(row.output_tokens)}</td>
              </tr>
            ))}
          </tbody>
          <tfoot>
            <tr>
              <th scope="row" colSpan={1 + query.groupBy.length}>
                Total
              </th>
              <td class="num">{num(total.requests)}</td>
              <td class="num">{num(total.errors)}</td>
              <td class="num">{money(total.cost)}</td>
              <td class="num">{num(total.input_tokens)}</td>
              <td class="num">{num(total.output_tokens)}</td>
            </tr>
          </tfoot>
        </table>
      </div>
      {rows.length > list.length && (
        <p class="hint">
          Showing the first {num(list.length)} of {num(rows.length)} rows; the CSV has them all.
        </p>
      )}
    </>
  );
}
