// The customer settings form, shared by "Create customer" (with the id)
// and the customer's detail page (PUT of the changed fields only). Like
// the key form, it takes in a refreshed customer only while it has no
// unsaved edits; with edits, it keeps them and says so.

import { useEffect, useState } from "preact/hooks";
import type { Customer, Limit } from "./api";
import { amount } from "./format";
import { CUSTOMER_ID } from "./keyform";
import { LimitsEditor, readLimits, readMaxConcurrent, rowsOf, sortLimits, type LimitRow } from "./limits";
import { describe, ErrorBox, Field } from "./ui";

/** The settings the form edits, as the API names them (`id` on create only). */
export interface CustomerFields {
  id: string;
  name: string;
  email: string | null;
  limits: Limit[];
  max_concurrent: number | null;
  billing: Customer["billing"];
  low_balance_threshold: number | null;
  billing_anchor_day: number;
}

interface Values {
  id: string;
  name: string;
  email: string;
  anchor: string;
  limits: LimitRow[];
  maxConcurrent: string;
  billing: Customer["billing"];
  threshold: string;
}

const valuesOf = (c: Customer | null): Values => ({
  id: c?.id ?? "",
  name: c?.name ?? "",
  email: c?.email ?? "",
  anchor: String(c?.billing_anchor_day ?? 1),
  limits: rowsOf(c?.limits ?? []),
  maxConcurrent: c?.max_concurrent == null ? "" : String(c.max_concurrent),
  billing: c?.billing ?? "postpaid",
  threshold: c?.low_balance_threshold == null ? "" : String(c.low_balance_threshold),
});

interface Invalid {
  field: keyof Values;
  message: string;
  row?: number;
}

function readForm(v: Values): CustomerFields | Invalid {
  const bad = (field: keyof Values, message: string) => ({ field, message });
  const id = v.id.trim();
  if (!CUSTOMER_ID.test(id))
    return bad("id", "ID: your own id for the customer, up to 128 letters, digits and _ . : @ -.");
  const name = v.name.trim();
  if (!name) return bad("name", "Name: required.");
  const anchor = Number(v.anchor.trim());
  if (!/^\d+$/.test(v.anchor.trim()) || anchor < 1 || anchor > 28)
    return bad("anchor", "Billing anchor day: a day of the month from 1 to 28.");
  const limits = readLimits(v.limits);
  if ("row" in limits) return { field: "limits", message: limits.message, row: limits.row };
  const maxConcurrent = readMaxConcurrent(v.maxConcurrent);
  if (Number.isNaN(maxConcurrent))
    return bad("maxConcurrent", "Max concurrent queries: a whole number from 1 to 100000, or empty for no cap.");
  const threshold = amount(v.threshold);
  if (Number.isNaN(threshold))
    return bad("threshold", "Low-balance threshold: an amount in USD, like 5 or 12.50, or empty for none.");
  return {
    id,
    name,
    email: v.email.trim() || null,
    limits: sortLimits(limits),
    max_concurrent: maxConcurrent,
    billing: v.billing,
    low_balance_threshold: threshold,
    billing_anchor_day: anchor,
  };
}

/** The body of a create: absent rather than null or empty. */
export function createCustomerBody(f: CustomerFields): Record<string, unknown> {
  const body: Record<string, unknown> = {
    id: f.id,
    name: f.name,
    billing: f.billing,
    billing_anchor_day: f.billing_anchor_day,
  };
  if (f.email !== null) body.email = f.email;
  if (f.limits.length > 0) body.limits = f.limits;
  if (f.max_concurrent !== null) body.max_concurrent = f.max_concurrent;
  if (f.low_balance_threshold !== null) body.low_balance_threshold = f.low_balance_threshold;
  return body;
}

/** The fields of `f` that differ from `customer` (null clears), never the id. */
export function changedCustomerFields(f: CustomerFields, customer: Customer): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const now: Record<string, unknown> = { ...customer, limits: sortLimits(customer.limits) };
  for (const [name, value] of Object.entries(f)) {
    if (name !== "id" && JSON.stringify(value) !== JSON.stringify(now[name])) body[name] = value;
  }
  return body;
}

const same = (a: Values, b: Values) => JSON.stringify(a) === JSON.stringify(b);

export function CustomerForm(props: {
  idPrefix: string;
  /** The customer as last loaded (null: a new one). */
  customer: Customer | null;
  submitLabel: string;
  onSubmit: (fields: CustomerFields, from: Customer | null) => Promise<Customer | void>;
  onSaved?: (customer: Customer) => void;
  onCancel?: () => void;
  status?: string;
}) {
  const [from, setFrom] = useState(props.customer);
  const [v, setV] = useState<Values>(() => valuesOf(props.customer));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [invalid, setInvalid] = useState<Invalid | null>(null);
  const id = (name: string) => `${props.idPrefix}-${name}`;
  const fieldError = (name: keyof Values) => (invalid?.field === name ? invalid.message : null);
  const a11y = (name: keyof Values, hint = true) => describe(id(name), fieldError(name), hint);
  const latest = props.customer;
  const changed = latest !== null && !same(valuesOf(latest), valuesOf(from));
  const conflict = changed && !same(v, valuesOf(from)) && !same(v, valuesOf(latest));
  const fill = (c: Customer | null) => {
    setFrom(c);
    setV(valuesOf(c));
    setInvalid(null);
  };
  useEffect(() => {
    if (changed && !conflict) fill(latest);
  }, [changed, conflict]);
  const set = (name: keyof Values) => (event: Event) => {
    const value = (event.currentTarget as HTMLInputElement | HTMLSelectElement).value;
    setV((old) => ({ ...old, [name]: value }));
  };
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
  const creating = props.customer === null;
  return (
    <form class="form" onSubmit={submit} noValidate>
      {conflict && (
        <p class="notice notice-warn" role="status">
          <span>
            This customer's settings were changed elsewhere while you were editing. Saving changes only the fields you
            edited.
          </span>
          <button type="button" class="btn-link" onClick={() => fill(latest)}>
            Discard my edits
          </button>
        </p>
      )}
      <fieldset>
        <legend>Identity</legend>
        <div class="grid-3">
          {creating && (
            <Field
              id={id("id")}
              label="ID"
              hint="Your own id for the customer (letters, digits and _ . : @ -, up to 128). It cannot change."
              error={fieldError("id")}
            >
              <input
                id={id("id")}
                value={v.id}
                onInput={set("id")}
                required
                maxLength={128}
                autoComplete="off"
                spellcheck={false}
                {...a11y("id")}
              />
            </Field>
          )}
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
          <Field id={id("email")} label="Email (optional)">
            <input id={id("email")} type="email" value={v.email} onInput={set("email")} autoComplete="off" />
          </Field>
        </div>
      </fieldset>

      <fieldset>
        <legend>Billing and credits</legend>
        <div class="grid-3">
          <Field
            id={id("billing")}
            label="Billing"
            hint="Prepaid: its queries are paid from its credits, and refused (402) once they are used up. Postpaid: billed afterwards, never refused for want of credits."
          >
            <select id={id("billing")} value={v.billing} onChange={set("billing")} {...a11y("billing")}>
              <option value="postpaid">Postpaid</option>
              <option value="prepaid">Prepaid</option>
            </select>
          </Field>
          <Field
            id={id("threshold")}
            label="Low-balance threshold (USD, optional)"
            hint="The balance is marked low below it, and the credits.low webhook fires. Empty: none."
            error={fieldError("threshold")}
          >
            <input
              id={id("threshold")}
              inputMode="decimal"
              autoComplete="off"
              value={v.threshold}
              onInput={set("threshold")}
              {...a11y("threshold")}
            />
          </Field>
        </div>
      </fieldset>

      <fieldset>
        <legend>Limits, shared by all the customer's keys</legend>
        <div class="grid-3">
          <Field
            id={id("maxConcurrent")}
            label="Max concurrent queries"
            hint="Queries in flight at once over all its keys (429 concurrency_limited above it). Empty: no cap."
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
          <Field
            id={id("anchor")}
            label="Billing anchor day"
            hint="1 to 28: monthly limits and usage start on this day (UTC midnight)."
            error={fieldError("anchor")}
          >
            <input
              id={id("anchor")}
              inputMode="numeric"
              autoComplete="off"
              value={v.anchor}
              onInput={set("anchor")}
              {...a11y("anchor")}
            />
          </Field>
        </div>
        <LimitsEditor
          idPrefix={id("limits")}
          legend="Limits"
          hint="Requests or tokens per rolling minute, hour or day, or per month; cost (USD) per UTC day or per month. A query over any of them is refused (429, or 402 for cost)."
          rows={v.limits}
          onChange={(limits) => setV((old) => ({ ...old, limits }))}
          invalidRow={invalid?.field === "limits" ? (invalid.row ?? null) : null}
        />
      </fieldset>

      <ErrorBox error={error} title="Not saved:" />
      <div class="form-actions">
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
