// The key settings form, shared by "Create key" and the key's detail page.
// Inputs hold text; `readForm` turns it into the API's fields (null for an
// emptied field), and `changedFields` keeps only what differs from the key
// the form started from, for PUT's partial update. The limits go to the API
// as one `limits` list: the Rate limit and Cost limit fields (requests per
// hour, cost per month) and the editor's other rows.
//
// On the detail page the key is refreshed every few seconds. The form takes
// a refreshed key in only while it has no unsaved edits; with edits, it
// keeps them and says the key changed elsewhere.

import { useEffect, useState } from "preact/hooks";
import { all, api, type Customer, type Key, type Limit, type Page, type Workflow } from "./api";
import { amount, fromInputUtc, toInputUtc } from "./format";
import {
  KEY_RESERVED,
  LimitsEditor,
  readLimits,
  readMaxConcurrent,
  rowsOf,
  sortLimits,
  type LimitRow,
} from "./limits";
import { describe, ErrorBox, Field } from "./ui";

/** The settings the form edits, as the API names them. */
export type KeyFields = Pick<
  Key,
  | "name"
  | "owner"
  | "active"
  | "customer_id"
  | "workflow_ids"
  | "limits"
  | "max_concurrent"
  | "alert_thresholds"
  | "allowed_origins"
  | "expires_at"
>;

interface Values {
  name: string;
  owner: string;
  active: boolean;
  customer: string;
  workflowIds: string[];
  rate: string;
  cost: string;
  limits: LimitRow[];
  maxConcurrent: string;
  thresholds: string;
  origins: string;
  expires: string;
}

function valuesOf(key: Key | null, customer = ""): Values {
  return {
    name: key?.name ?? "",
    owner: key?.owner ?? "",
    active: key?.active ?? true,
    customer: key ? (key.customer_id ?? "") : customer,
    workflowIds: key?.workflow_ids ?? [],
    rate: key?.rate_limit_per_hour == null ? "" : String(key.rate_limit_per_hour),
    cost: key?.cost_limit_per_month == null ? "" : String(key.cost_limit_per_month),
    limits: rowsOf(key?.limits ?? [], KEY_RESERVED),
    maxConcurrent: key?.max_concurrent == null ? "" : String(key.max_concurrent),
    thresholds: (key?.alert_thresholds ?? [80, 100]).join(", "),
    origins: (key?.allowed_origins ?? []).join("\n"),
    expires: toInputUtc(key?.expires_at ?? null),
  };
}

/** A customer id as the API takes it. */
export const CUSTOMER_ID = /^[A-Za-z0-9_.:@-]{1,128}$/;

const list = (text: string) =>
  text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);

/** Which input is wrong, and how (for the limits, which row). */
interface Invalid {
  field: keyof Values;
  message: string;
  row?: number;
}

/** The API's fields from the inputs, or what is wrong with them. */
function readForm(v: Values): KeyFields | Invalid {
  const bad = (field: keyof Values, message: string) => ({ field, message });
  const name = v.name.trim();
  if (!name) return bad("name", "Name: required.");
  const rate = amount(v.rate);
  if (rate !== null && !Number.isInteger(rate))
    return bad("rate", "Rate limit: a whole number of requests per hour, like 1000, or empty for none.");
  const cost = amount(v.cost);
  if (Number.isNaN(cost)) return bad("cost", "Cost limit: an amount in USD, like 12.50, or empty for none.");
  const more = readLimits(v.limits);
  if ("row" in more) return { field: "limits", message: more.message, row: more.row };
  const maxConcurrent = readMaxConcurrent(v.maxConcurrent);
  if (Number.isNaN(maxConcurrent))
    return bad("maxConcurrent", "Max concurrent queries: a whole number from 1 to 100000, or empty for no cap.");
  const customer = v.customer.trim();
  if (customer && !CUSTOMER_ID.test(customer))
    return bad("customer", "Customer: a customer's id (letters, digits and _ . : @ -), or empty for none.");
  const limits: Limit[] = [
    ...(rate === null ? [] : [{ metric: "requests" as const, window: "hour" as const, max: rate }]),
    ...(cost === null ? [] : [{ metric: "cost" as const, window: "month" as const, max: cost }]),
    ...more,
  ];
  const thresholds = list(v.thresholds).map(Number);
  if (thresholds.some((t) => !Number.isInteger(t))) return bad("thresholds", "Alert thresholds: whole percents, like 80, 100.");
  const expires = v.expires ? fromInputUtc(v.expires) : null;
  if (v.expires && !expires) return bad("expires", "Expires: not a valid date and time.");
  return {
    name,
    owner: v.owner.trim() || null,
    active: v.active,
    customer_id: customer || null,
    workflow_ids: v.workflowIds,
    limits: sortLimits(limits),
    max_concurrent: maxConcurrent,
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
    if (name === "limits") current = sortLimits(key.limits ?? []);
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
    all<Workflow>("/api/v1/workflows").then(
      (list) => live && setWorkflows(list),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, []);
  return { workflows, error };
}

/** Up to 1000 customers, to suggest in the Customer field (none if they cannot be read). */
function useCustomers(): Customer[] {
  const [customers, setCustomers] = useState<Customer[]>([]);
  useEffect(() => {
    let live = true;
    api<Page<Customer>>("GET", "/api/v1/customers?limit=1000").then(
      (page) => live && setCustomers(page.data),
      () => {},
    );
    return () => {
      live = false;
    };
  }, []);
  return customers;
}

const same = (a: Values, b: Values) => JSON.stringify(a) === JSON.stringify(b);

export function KeyForm(props: {
  idPrefix: string;
  /** The key as last loaded (null: a new key). */
  apiKey: Key | null;
  submitLabel: string;
  /** Gets the form's fields and the key they were edited from; may answer with the saved key. */
  onSubmit: (fields: KeyFields, from: Key | null) => Promise<Key | void>;
  /** The saved key, once the form shows it (so that the page never shows it first, as a change from elsewhere). */
  onSaved?: (key: Key) => void;
  onCancel?: () => void;
  status?: string;
  /** A new key's customer, to start with. */
  customerId?: string;
}) {
  // The key the inputs were filled from, and the inputs.
  const [from, setFrom] = useState(props.apiKey);
  const [v, setV] = useState<Values>(() => valuesOf(props.apiKey, props.customerId));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [invalid, setInvalid] = useState<Invalid | null>(null);
  const { workflows, error: workflowsError } = useWorkflows();
  const customers = useCustomers();
  const id = (name: string) => `${props.idPrefix}-${name}`;
  const fieldError = (name: keyof Values) => (invalid?.field === name ? invalid.message : null);
  const a11y = (name: keyof Values, hint = true) => describe(id(name), fieldError(name), hint);
  // The settings changed since the form was filled (a refresh brought
  // them): taken in, unless that would undo unsaved edits.
  const latest = props.apiKey;
  const changed = latest !== null && !same(valuesOf(latest), valuesOf(from));
  const conflict = changed && !same(v, valuesOf(from)) && !same(v, valuesOf(latest));
  const fill = (key: Key | null) => {
    setFrom(key);
    setV(valuesOf(key));
    setInvalid(null);
  };
  useEffect(() => {
    if (changed && !conflict) fill(latest);
  }, [changed, conflict]);
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
    if (busy) return;
    const fields = readForm(v);
    setInvalid("field" in fields ? fields : null);
    if ("field" in fields) {
      setError(new Error(fields.message));
      document.getElementById(fields.row === undefined ? id(fields.field) : id(`limits-${fields.row}-max`))?.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const saved = await props.onSubmit(fields, from);
      if (saved) {
        fill(saved);
        props.onSaved?.(saved);
      }
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
      {conflict && (
        <p class="notice notice-warn" role="status">
          <span>
            This key's settings were changed elsewhere while you were editing. Saving changes only the fields you
            edited.
          </span>
          <button type="button" class="btn-link" onClick={() => fill(latest)}>
            Discard my edits
          </button>
        </p>
      )}
      <fieldset>
        <legend>Identity</legend>
        <div class="grid-2">
          <Field id={id("name")} label="Name" error={fieldError("name")}>
            <input
              id={id("name")}
              value={v.name}
              onInput={set("name")}
              required
              maxLength={128}
              autoComplete="off"
              {...a11y("name", false)}
            />
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
          <Field
            id={id("customer")}
            label="Customer ID (optional)"
            hint={
              <>
                Its queries also count against this <a href="#/customers">customer</a>'s limits, which all its keys
                share. Empty: none.
              </>
            }
            error={fieldError("customer")}
          >
            <input
              id={id("customer")}
              value={v.customer}
              onInput={set("customer")}
              maxLength={128}
              autoComplete="off"
              spellcheck={false}
              list={id("customers")}
              {...a11y("customer")}
            />
            <datalist id={id("customers")}>
              {customers.map((c) => (
                <option key={c.id} value={c.id}>
                  {c.name}
                </option>
              ))}
            </datalist>
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
          <Field
            id={id("rate")}
            label="Rate limit per hour"
            hint="Requests in any 60 minutes. Empty: no limit."
            error={fieldError("rate")}
          >
            <input
              id={id("rate")}
              inputMode="numeric"
              autoComplete="off"
              value={v.rate}
              onInput={set("rate")}
              {...a11y("rate")}
            />
          </Field>
          <Field
            id={id("cost")}
            label="Cost limit per month (USD)"
            hint="Per UTC calendar month (its customer's billing month, if it has a customer). Empty: no limit."
            error={fieldError("cost")}
          >
            <input
              id={id("cost")}
              inputMode="decimal"
              autoComplete="off"
              value={v.cost}
              onInput={set("cost")}
              {...a11y("cost")}
            />
          </Field>
          <Field
            id={id("thresholds")}
            label="Alert thresholds (%)"
            hint="Percents of the cost limit that send a usage.threshold webhook."
            error={fieldError("thresholds")}
          >
            <input
              id={id("thresholds")}
              value={v.thresholds}
              onInput={set("thresholds")}
              autoComplete="off"
              {...a11y("thresholds")}
            />
          </Field>
          <Field
            id={id("maxConcurrent")}
            label="Max concurrent queries"
            hint="Queries in flight at once (429 concurrency_limited above it). Empty: no cap."
            error={fieldError("maxConcurrent")}
          >
            <input
              id={id("maxConcurrent")}
              inputMode="numeric"
              autoComplete="off"
              value={v.maxConcurrent}
              onInput={set("maxConcurrent")}
              {...a11y("maxConcurrent")}
            />
          </Field>
        </div>
        <LimitsEditor
          idPrefix={id("limits")}
          legend="More limits"
          hint="Requests or tokens per rolling minute, hour or day, or per month; cost per UTC day. Requests per hour and cost per month are the fields above."
          rows={v.limits}
          onChange={(limits) => setV((old) => ({ ...old, limits }))}
          reserved={KEY_RESERVED}
          invalidRow={invalid?.field === "limits" ? (invalid.row ?? null) : null}
        />
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
          <Field
            id={id("expires")}
            label="Expires at (UTC, optional)"
            hint="Empty: never expires."
            error={fieldError("expires")}
          >
            <input
              id={id("expires")}
              type="datetime-local"
              value={v.expires}
              onInput={set("expires")}
              {...a11y("expires")}
            />
          </Field>
        </div>
      </fieldset>

      <ErrorBox error={error} title="Not saved:" />
      <div class="form-actions">
        {/* aria-disabled, not disabled: a disabled button drops the focus to <body>. */}
        <button type="submit" class="btn btn-primary" aria-disabled={busy}>
          {busy ? "Saving…" : props.submitLabel}
        </button>
        {props.onCancel && (
          <button type="button" class="btn" onClick={props.onCancel}>
            Cancel
          </button>
        )}
        <span class="form-status" role="status" aria-live="polite">
          {error ? "" : props.status}
        </span>
      </div>
    </form>
  );
}
