// A key's or a customer's usage: the figures the limits see (rolling
// hour, month to date), tokens, and seven charts from GET
// /api-keys/{id}/usage or /customers/{id}/usage — requests, tokens (input
// and output stacked) and cost per hour (48 h) and per day (31 d), and this
// month's cumulative cost against the monthly cost limit. A customer's
// month starts on its billing anchor day. Costs are summed as integer
// micro-dollars.

import type { Bucket, Limit, Usage } from "./api";
import { BarChart, type Point } from "./chart";
import { fromMicros, hourOf, micros, money, num, periodStart, plural, shortDate, thisMonth } from "./format";
import { limitOf } from "./limits";

/** The limits the usage figures and charts are drawn against. */
export interface UsageLimits {
  /** Requests per hour. */
  rate: number | null;
  /** USD per month. */
  cost: number | null;
  tokensPerHour: number | null;
  tokensPerDay: number | null;
}

export const usageLimits = (limits: Limit[]): UsageLimits => ({
  rate: limitOf(limits, "requests", "hour"),
  cost: limitOf(limits, "cost", "month"),
  tokensPerHour: limitOf(limits, "tokens", "hour"),
  tokensPerDay: limitOf(limits, "tokens", "day"),
});

const hourLabel = (iso: string) => `${iso.slice(0, 10)} ${hourOf(iso)} UTC`;
const hourTick = (iso: string) => (hourOf(iso) === "00:00" ? shortDate(iso.slice(0, 10)) : hourOf(iso));
const hourNumber = (iso: string) => Math.floor(new Date(iso).getTime() / 3_600_000);
const HOUR_STEPS = [1, 2, 3, 4, 6, 12, 24];
// A limit of 0 blocks the key: all of it is used.
const percent = (part: number, whole: number) => `${whole > 0 ? Math.round((part / whole) * 1000) / 10 : 100}%`;

/** Requests of this UTC month, summed from the daily series (which spans 31 days, so the whole month). */
export function requestsThisMonth(usage: Usage, now = new Date()): number {
  const month = thisMonth(now);
  return usage.daily.filter((d) => d.date.startsWith(month)).reduce((sum, d) => sum + d.requests, 0);
}

/** Tokens (input + output) of a period. */
const tokensOf = (b: Bucket): number => b.input_tokens + b.output_tokens;

/** Requests and tokens of the monthly period that started on `anchorDay`, from the daily series. */
export function thisPeriod(usage: Usage, anchorDay = 1, now = new Date()): { requests: number; tokens: number } {
  const start = periodStart(anchorDay, now);
  return usage.daily
    .filter((d) => d.date >= start)
    .reduce((sum, d) => ({ requests: sum.requests + d.requests, tokens: sum.tokens + tokensOf(d) }), {
      requests: 0,
      tokens: 0,
    });
}

function busiest(points: Point[], format: (v: number) => string, period: string): string {
  const top = points.reduce<Point | null>((best, p) => (p.value > (best?.value ?? 0) ? p : best), null);
  return top ? `; busiest ${period}: ${top.label} (${format(top.value)})` : "";
}

export function UsageStats({ usage, limits, anchorDay = 1 }: { usage: Usage; limits: UsageLimits; anchorDay?: number }) {
  const { rate, cost } = limits;
  const today = new Date().toISOString().slice(0, 10);
  const day = usage.daily.find((d) => d.date === today);
  const totalTokens = usage.total_input_tokens + usage.total_output_tokens;
  return (
    <dl class="stats">
      <div class="stat">
        <dt>Requests, last 60 min</dt>
        <dd>
          {num(usage.requests_this_hour)}
          <span class="of">{rate === null ? " · no rate limit" : ` of ${num(rate)} / hour`}</span>
        </dd>
        {rate !== null && <Meter value={usage.requests_this_hour} max={rate} label="Rate limit used" />}
      </div>
      <div class="stat">
        <dt>{anchorDay === 1 ? "Cost this month" : `Cost since ${shortDate(periodStart(anchorDay))}`}</dt>
        <dd>
          {money(usage.cost_this_month)}
          <span class="of">{cost === null ? " · no cost limit" : ` of ${money(cost)}`}</span>
        </dd>
        {cost !== null && <Meter value={usage.cost_this_month} max={cost} label="Monthly cost limit used" />}
      </div>
      <div class="stat">
        <dt>Today (UTC)</dt>
        <dd>
          {num(usage.requests_today)} <span class="of">requests · {money(usage.cost_today)}</span>
        </dd>
      </div>
      <div class="stat">
        <dt>All time</dt>
        <dd>
          {num(usage.total_requests)} <span class="of">requests · {money(usage.total_cost)}</span>
        </dd>
      </div>
      <div class="stat">
        <dt>Tokens today (UTC)</dt>
        <dd>
          {num(day ? tokensOf(day) : 0)}{" "}
          <span class="of">
            {num(day?.input_tokens ?? 0)} input · {num(day?.output_tokens ?? 0)} output
          </span>
        </dd>
      </div>
      <div class="stat">
        <dt>Tokens, all time</dt>
        <dd>
          {num(totalTokens)}{" "}
          <span class="of">
            {num(usage.total_input_tokens)} input · {num(usage.total_output_tokens)} output
          </span>
        </dd>
      </div>
    </dl>
  );
}

function Meter({ value, max, label }: { value: number; max: number; label: string }) {
  const share = max > 0 ? Math.min(1, value / max) : 1;
  return (
    <div
      class={share >= 1 ? "meter meter-full" : share >= 0.8 ? "meter meter-high" : "meter"}
      role="meter"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={max || 1}
      aria-valuenow={max ? Math.min(value, max) : 1}
      aria-valuetext={`${percent(value, max)} used`}
    >
      <span style={{ width: `${share * 100}%` }} />
    </div>
  );
}

export function UsageCharts({ usage, limits, anchorDay = 1 }: { usage: Usage; limits: UsageLimits; anchorDay?: number }) {
  const hourly = usage.hourly;
  const daily = usage.daily;
  const errorsCell = (errors: number) => num(errors);

  const reqHour: Point[] = hourly.map((h) => ({
    label: hourLabel(h.hour),
    tick: hourTick(h.hour),
    order: hourNumber(h.hour),
    value: h.requests,
    extra: [errorsCell(h.errors)],
  }));
  const costHour: Point[] = hourly.map((h) => ({
    label: hourLabel(h.hour),
    tick: hourTick(h.hour),
    order: hourNumber(h.hour),
    value: h.cost,
  }));
  const reqDay: Point[] = daily.map((d) => ({
    label: d.date,
    tick: shortDate(d.date),
    value: d.requests,
    extra: [errorsCell(d.errors)],
  }));
  const costDay: Point[] = daily.map((d) => ({ label: d.date, tick: shortDate(d.date), value: d.cost }));
  const tokenCells = (b: Bucket) => ({
    value: tokensOf(b),
    parts: [b.input_tokens, b.output_tokens],
    extra: [num(b.input_tokens), num(b.output_tokens)],
  });
  const tokHour: Point[] = hourly.map((h) => ({
    label: hourLabel(h.hour),
    tick: hourTick(h.hour),
    order: hourNumber(h.hour),
    ...tokenCells(h),
  }));
  const tokDay: Point[] = daily.map((d) => ({ label: d.date, tick: shortDate(d.date), ...tokenCells(d) }));

  // The calendar month, or a customer's billing month from its anchor day.
  const start = periodStart(anchorDay);
  const monthName = anchorDay === 1 ? "this month" : `this billing month (since ${shortDate(start)})`;
  let running = 0;
  const monthToDate: Point[] = daily
    .filter((d) => d.date >= start)
    .map((d) => {
      running += micros(d.cost);
      return { label: d.date, tick: shortDate(d.date), value: fromMicros(running), extra: [money(d.cost)] };
    });

  const sum = (points: Point[]) => points.reduce((s, p) => s + micros(p.value), 0);
  const count = (points: Point[]) => points.reduce((s, p) => s + p.value, 0);
  const errors = (list: { errors: number }[]) => list.reduce((s, b) => s + b.errors, 0);
  const { rate, cost: costLimit, tokensPerHour, tokensPerDay } = limits;
  const reqHourTotal = count(reqHour);
  const reqDayTotal = count(reqDay);
  const tokens = (list: Bucket[], period: string, limit: number | null, per: string) => {
    const input = list.reduce((s, b) => s + b.input_tokens, 0);
    const output = list.reduce((s, b) => s + b.output_tokens, 0);
    return (
      `Tokens per ${period}: ${plural(input + output, "token")} in total ` +
      `(${num(input)} input, ${num(output)} output)${busiest(per === "hour" ? tokHour : tokDay, num, per)}. ` +
      (limit === null ? `No tokens limit per ${per}.` : `Tokens limit: ${num(limit)} per ${per}.`)
    );
  };

  return (
    <div class="charts">
      <BarChart
        id="requests-hourly"
        steps={HOUR_STEPS}
        title="Requests per hour · last 48 hours"
        points={reqHour}
        format={num}
        integer
        columns={["Hour", "Requests", "Errors"]}
        limit={rate === null ? null : { value: rate, label: `Rate limit ${num(rate)}/hour` }}
        summary={
          `Requests per hour over the last 48 hours: ${plural(reqHourTotal, "request")} in total, ` +
          `${plural(errors(hourly), "error")}${busiest(reqHour, num, "hour")}. ` +
          (rate === null ? "No rate limit." : `Rate limit: ${num(rate)} requests per hour.`)
        }
      />
      <BarChart
        id="cost-month"
        title={`Cost ${monthName} · cumulative, against the monthly limit`}
        points={monthToDate}
        format={money}
        columns={["Day", "Month to date", "That day"]}
        limit={costLimit === null ? null : { value: costLimit, label: `Monthly limit ${money(costLimit)}` }}
        summary={
          `Cost ${monthName}: ${money(usage.cost_this_month)} spent` +
          (costLimit === null
            ? "; no monthly cost limit."
            : ` of the ${money(costLimit)} monthly cost limit (${percent(usage.cost_this_month, costLimit)}).`)
        }
      />
      <BarChart
        id="requests-daily"
        title="Requests per day · last 31 days"
        points={reqDay}
        format={num}
        integer
        columns={["Day", "Requests", "Errors"]}
        summary={
          `Requests per day over the last 31 days: ${plural(reqDayTotal, "request")} in total, ` +
          `${plural(errors(daily), "error")}${busiest(reqDay, num, "day")}.`
        }
      />
      <BarChart
        id="cost-daily"
        title="Cost per day · last 31 days"
        points={costDay}
        format={money}
        columns={["Day", "Cost"]}
        summary={`Cost per day over the last 31 days: ${money(fromMicros(sum(costDay)))} in total${busiest(costDay, money, "day")}.`}
      />
      <BarChart
        id="tokens-hourly"
        steps={HOUR_STEPS}
        title="Tokens per hour · last 48 hours"
        points={tokHour}
        format={num}
        integer
        series={["Input", "Output"]}
        columns={["Hour", "Tokens", "Input", "Output"]}
        limit={tokensPerHour === null ? null : { value: tokensPerHour, label: `Limit ${num(tokensPerHour)}/hour` }}
        summary={tokens(hourly, "hour over the last 48 hours", tokensPerHour, "hour")}
      />
      <BarChart
        id="tokens-daily"
        title="Tokens per day · last 31 days"
        points={tokDay}
        format={num}
        integer
        series={["Input", "Output"]}
        columns={["Day", "Tokens", "Input", "Output"]}
        limit={tokensPerDay === null ? null : { value: tokensPerDay, label: `Limit ${num(tokensPerDay)}/day` }}
        summary={tokens(daily, "day over the last 31 days", tokensPerDay, "day")}
      />
      <BarChart
        id="cost-hourly"
        steps={HOUR_STEPS}
        title="Cost per hour · last 48 hours"
        points={costHour}
        format={money}
        columns={["Hour", "Cost"]}
        summary={`Cost per hour over the last 48 hours: ${money(fromMicros(sum(costHour)))} in total${busiest(costHour, money, "hour")}.`}
      />
    </div>
  );
}
