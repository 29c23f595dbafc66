// The key settings form, shared by "Create key" and the key's detail page.
// Inputs hold text; `readForm` turns it into the API's fields (null for an
// emptied limit), and `changedFields` keeps only what differs from the key,
// for PUT's partial update.

import { useEffect, useState } from "preact/hooks";
import { api, type Key, type Page, type Workflow } from "./api";
import { fromInputUtc, toInputUtc } from "./format";
import { ErrorBox, Field } from "./ui";

export interface KeyFields {
  name: string;
  owner: string | null;
  active: boolean;
  workflow_ids: string[];
  rate_limit_per_hour: number | null;
  cost_limit_per_month: number | null;
  alert_thresholds: number[];
  allowed_origins: string[];
  expires_at: string | null;
}

interface Values {
  name: string;
  owner: string;
  active: boolean;
  workflowIds: string[];
  rate: string;
  cost: string;
  thresholds: string;
  origins: string;
  expires: string;
}

function valuesOf(key: Key | null): Values {
  return {
    name: key?.name ?? "",
    owner: key?.owner ?? "",
    active: key?.active ?? true,
    workflowIds: key?.workflow_ids ?? [],
    rate: key?.rate_limit_per_hour == null ? "" : String(key.rate_limit_per_hour),
    cost: key?.cost_limit_per_month == null ? "" : String(key.cost_limit_per_month),
    thresholds: (key?.alert_thresholds ?? [80, 100]).join(", "),
    origins: (key?.allowed_origins ?? []).join("\n"),
    expires: toInputUtc(key?.expires_at ?? null),
  };
}

const list = (text: string) =>
  text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);

/** The API's fields from the inputs, or what is wrong with them. */
function readForm(v: Values): KeyFields | string {
  const name = v.name.trim();
  if (!name) return "Name: required.";
  let rate: number | null = null;
  if (v.rate.trim()) {
    rate = Number(v.rate);
    if (!Number.isInteger(rate) || rate < 0) return "Rate limit: a whole number of requests per hour, or empty for none.";
  }
  let cost: number | null = null;
  if (v.cost.trim()) {
    cost = Number(v.cost);
    if (!Number.isFinite(cost) || cost < 0) return "Cost limit: an amount in USD, or empty for none.";
  }
  const thresholds = list(v.thresholds).map(Number);
  if (thresholds.some((t) => !Number.isInteger(t))) return "Alert thresholds: whole percents, like 80, 100.";
  const expires = v.expires ? fromInputUtc(v.expires) : null;
  if (v.expires && !expires) return "Expires: not a valid date and time.";
  return {
    name,
    owner: v.owner.trim() || null,
    active: v.active,
    workflow_ids: v.workflowIds,
    rate_limit_per_hour: rate,
    cost_limit_per_month: cost,
    alert_thresholds: thresholds,
    allowed_origins: list(v.origins),
    expires_at: expires,
  };
}

/** The body of a create: absent rather than null or empty. */
export function createBody(f: KeyFields): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(f)) {
    if (value === null || (Array.isArray(value) && value.length === 0 && name !== "alert_thresholds")) continue;
    body[name] = value;
  }
  return body;
}

/** The fields of `f` that differ from `key` (null clears). */
export function changedFields(f: KeyFields, key: Key): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  for (const [name, value] of Object.entries(f) as [keyof KeyFields, unknown][]) {
    let current: unknown = key[name];
    if (name === "expires_at" && key.expires_at) current = fromInputUtc(toInputUtc(key.expires_at));
    if (!same(value, current)) body[name] = value;
  }
  return body;
}

/** The workflows, for the key's allow-list. */
function useWorkflows(): { workflows: Workflow[] | null; error: unknown } {
  const [workflows, setWorkflows] = useState<Workflow[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let live = true;
    api<Page<Workflow>>("GET", "/api/v1/workflows?limit=1000").then(
      (page) => live && setWorkflows(page.data),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, []);
  return { workflows, error };
}

export function KeyForm(props: {
  idPrefix: string;
  apiKey: Key | null;
  submitLabel: string;
  onSubmit: (fields: KeyFields) => Promise<void>;
  onCancel?: () => void;
  status?: string;
}) {
  const [v, setV] = useState<Values>(() => valuesOf(props.apiKey));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const { workflows, error: workflowsError } = useWorkflows();
  const id = (name: string) => `${props.idPrefix}-${name}`;
  const set =
    <K extends keyof Values>(name: K) =>
    (event: Event) => {
      const target = event.currentTarget as HTMLInputElement;
      const value = (target.type === "checkbox" ? target.checked : target.value) as Values[K];
      setV((old) => ({ ...old, [name]: value }));
    };
  const toggleWorkflow = (workflowId: string, on: boolean) =>
    setV((old) => ({
      ...old,
      workflowIds: on
        ? [...old.workflowIds.filter((w) => w !== workflowId), workflowId]
        : old.workflowIds.filter((w) => w !== workflowId),
    }));
  const submit = async (event: Event) => {
    event.preventDefault();
    const fields = readForm(v);
    if (typeof fields === "string") {
      setError(new Error(fields));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await props.onSubmit(fields);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  // Workflows the key lists that no longer exist still show, checked.
  const known = new Set((workflows ?? []).map((w) => w.id));
  const choices = [
    ...(workflows ?? []).map((w) => ({ id: w.id, name: w.name })),
    ...v.workflowIds.filter((w) => !known.has(w)).map((w) => ({ id: w, name: "(not registered)" })),
  ];
  return (
    <form class="form" onSubmit={submit} noValidate>
      <fieldset>
        <legend>Identity</legend>
        <div class="grid-2">
          <Field id={id("name")} label="Name">
            <input id={id("name")} value={v.name} onInput={set("name")} required maxLength={128} autoComplete="off" />
          </Field>
          <Field id={id("owner")} label="Owner (optional)" hint="Who the key is for: a customer, team or e-mail.">
            <input
              id={id("owner")}
              value={v.owner}
              onInput={set("owner")}
              maxLength={128}
              autoComplete="off"
              aria-describedby={id("owner-hint")}
            />
          </Field>
        </div>
        {props.apiKey && (
          <div class="check">
            <input id={id("active")} type="checkbox" checked={v.active} onChange={set("active")} />
            <label for={id("active")}>Active (an inactive key is refused with 403 key_inactive)</label>
          </div>
        )}
      </fieldset>

      <fieldset>
        <legend>Limits</legend>
        <div class="grid-3">
          <Field id={id("rate")} label="Rate limit per hour" hint="Requests in any 60 minutes. Empty: no limit.">
            <input
              id={id("rate")}
              type="number"
              inputMode="numeric"
              min={0}
              step={1}
              value={v.rate}
              onInput={set("rate")}
              aria-describedby={id("rate-hint")}
            />
          </Field>
          <Field id={id("cost")} label="Cost limit per month (USD)" hint="Per UTC calendar month. Empty: no limit.">
            <input
              id={id("cost")}
              type="number"
              inputMode="decimal"
              min={0}
              step="any"
              value={v.cost}
              onInput={set("cost")}
              aria-describedby={id("cost-hint")}
            />
          </Field>
          <Field
            id={id("thresholds")}
            label="Alert thresholds (%)"
            hint="Percents of the cost limit that send a usage.threshold webhook."
          >
            <input
              id={id("thresholds")}
              value={v.thresholds}
              onInput={set("thresholds")}
              autoComplete="off"
              aria-describedby={id("thresholds-hint")}
            />
          </Field>
        </div>
      </fieldset>

      <fieldset>
        <legend>Access</legend>
        <fieldset class="choices">
          <legend>Workflows this key may call</legend>
          <ErrorBox error={workflowsError} title="Could not load the workflows:" />
          {workflows === null && !workflowsError ? (
            <p class="hint">Loading workflows…</p>
          ) : choices.length === 0 ? (
            <p class="hint">
              No workflows yet — <a href="#/workflows">create one</a>. The key may call any workflow.
            </p>
          ) : (
            <>
              <p class="hint">None checked: any workflow.</p>
              <div class="checks">
                {choices.map((w) => (
                  <div class="check" key={w.id}>
                    <input
                      id={id(`wf-${w.id}`)}
                      type="checkbox"
                      checked={v.workflowIds.includes(w.id)}
                      onChange={(e) => toggleWorkflow(w.id, (e.currentTarget as HTMLInputElement).checked)}
                    />
                    <label for={id(`wf-${w.id}`)}>
                      <code>{w.id}</code> <span class="muted">{w.name}</span>
                    </label>
                  </div>
                ))}
              </div>
            </>
          )}
        </fieldset>
        <div class="grid-2">
          <Field
            id={id("origins")}
            label="Allowed browser origins"
            hint="One per line, like https://app.example.com. Empty: browsers may not use the key."
          >
            <textarea
              id={id("origins")}
              rows={3}
              value={v.origins}
              onInput={set("origins")}
              aria-describedby={id("origins-hint")}
            />
          </Field>
          <Field id={id("expires")} label="Expires at (UTC, optional)" hint="Empty: never expires.">
            <input
              id={id("expires")}
              type="datetime-local"
              value={v.expires}
              onInput={set("expires")}
              aria-describedby={id("expires-hint")}
            />
          </Field>
        </div>
      </fieldset>

      <ErrorBox error={error} title="Not saved:" />
      <div class="form-actions">
        <button type="submit" class="btn btn-primary" disabled={busy}>
          {busy ? "Saving…" : props.submitLabel}
        </button>
        {props.onCancel && (
          <button type="button" class="btn" onClick={props.onCancel}>
            Cancel
          </button>
        )}
        <span class="form-status" role="status" aria-live="polite">
          {props.status}
        </span>
      </div>
    </form>
  );
}
