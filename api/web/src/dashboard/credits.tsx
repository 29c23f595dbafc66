// A customer's prepaid credits, on its detail page: the balance (marked
// when a prepaid customer's is used up or below its low-balance
// threshold), every grant with what is left of it, a "Top up" form, and
// Void behind a confirmation. A top-up carries an Idempotency-Key made
// for that submission: a double submit, or a retry of the same top-up
// after an error (the request may have landed), sends the same key, so
// the server grants once; a success, or a change to the form, starts a
// new one.

import { useEffect, useRef, useState } from "preact/hooks";
import { api, ApiError, seg, type Credits, type Customer, type Grant } from "./api";
import { amount, dateTime, fromInputUtc, money, relative } from "./format";
import { useMounted, usePoll, useSequence } from "./hooks";
import { ConfirmDialog, describe, Empty, ErrorBox, Field, Loading } from "./ui";

/** `live`, `expired` or `voided` at `now`, as the server counts them. */
export function grantStatus(g: Grant, now = Date.now()): "live" | "expired" | "voided" {
  if (g.voided_at !== null) return "voided";
  if (g.expires_at !== null && new Date(g.expires_at).getTime() <= now) return "expired";
  return "live";
}

function GrantState({ grant }: { grant: Grant }) {
  const status = grantStatus(grant);
  if (status === "voided") {
    return (
      <span class="badge badge-revoked" title={`Voided on ${dateTime(grant.voided_at)}`}>
        Voided
      </span>
    );
  }
  if (status === "expired") {
    return (
      <span class="badge badge-off" title={`Expired on ${dateTime(grant.expires_at)}`}>
        Expired
      </span>
    );
  }
  return <span class="badge badge-ok">Live</span>;
}

/** How the balance stands: "out" (used up), "low" (below the threshold) or "ok"; only prepaid customers are refused. */
export function balanceState(customer: Customer, balance: number): "out" | "low" | "ok" {
  if (customer.billing !== "prepaid") return "ok";
  if (balance <= 0) return "out";
  if (customer.low_balance_threshold !== null && balance < customer.low_balance_threshold) return "low";
  return "ok";
}

/** 16 random bytes as hex: `crypto.getRandomValues` works on plain http too, unlike `randomUUID`. */
function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `topup-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export function CreditsSection({ customer, refreshMs }: { customer: Customer; refreshMs: number }) {
  const [credits, setCredits] = useState<Credits | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [voiding, setVoiding] = useState<Grant | null>(null);
  const mounted = useMounted();
  const sequence = useSequence();
  const base = `/api/v1/customers/${seg(customer.id)}/credits`;

  const load = async () => {
    const n = sequence.start();
    try {
      const c = await api<Credits>("GET", base);
      if (!mounted.current || !sequence.latest(n)) return;
      setCredits(c);
      setLoadError(null);
    } catch (e) {
      if (mounted.current && sequence.latest(n)) setLoadError(e);
    }
  };
  useEffect(() => {
    setCredits(null);
    void load();
  }, [customer.id]);
  usePoll(load, refreshMs, !(loadError instanceof ApiError && loadError.status === 404));

  const state = credits ? balanceState(customer, credits.balance) : "ok";
  const threshold = customer.low_balance_threshold;
  const prepaid = customer.billing === "prepaid";
  // Newest first.
  const grants = credits ? [...credits.grants].reverse() : [];
  const voidGrant = async () => {
    if (!voiding) return;
    sequence.start();
    await api<Grant>("POST", `${base}/${seg(voiding.id)}/void`);
    // Loaded before the dialog closes, so that focus, with the Void button gone, goes to the heading.
    await load();
    if (mounted.current) setVoiding(null);
  };

  return (
    <div class="credits" id="credits">
      <h3>Prepaid credits</h3>
      {!prepaid && (
        <p class="hint">
          This customer is postpaid: its queries do not draw on credits and are not refused when they run out. Set its
          Billing to Prepaid under Settings to have its queries paid from them.
        </p>
      )}
      <ErrorBox error={loadError} title={credits ? "Could not refresh the credits:" : "Could not load the credits:"} />
      {credits === null ? (
        !loadError && <Loading what="Loading the credits" />
      ) : (
        <>
          <div class={`balance balance-${state}`} role="group" aria-labelledby="balance-label">
            <span class="balance-label" id="balance-label">
              Balance
            </span>
            <span class="balance-value" data-balance={credits.balance}>
              {money(credits.balance)}
            </span>
            {state === "out" ? (
              <span class="balance-note">
                <span class="badge badge-bad">Used up</span> Its keys' queries are refused (402
                insufficient_credits) until it is topped up.
              </span>
            ) : state === "low" ? (
              <span class="balance-note">
                <span class="badge badge-wait">Low</span> Below its low-balance threshold of {money(threshold ?? 0)}.
              </span>
            ) : prepaid && threshold !== null ? (
              <span class="balance-note muted">Low-balance threshold: {money(threshold)}.</span>
            ) : null}
          </div>
          {grants.length === 0 ? (
            <Empty>No credits granted yet. Top up below.</Empty>
          ) : (
            <div class="table-wrap">
              <table class="grants-table">
                <caption class="visually-hidden">Credit grants of {customer.name}, newest first</caption>
                <thead>
                  <tr>
                    <th scope="col" class="num">
                      Amount
                    </th>
                    <th scope="col" class="num">
                      Remaining
                    </th>
                    <th scope="col">Expires</th>
                    <th scope="col">Created</th>
                    <th scope="col">Description</th>
                    <th scope="col">Status</th>
                    <th scope="col">
                      <span class="visually-hidden">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {grants.map((g) => (
                    <tr key={g.id} data-grant={g.id}>
                      <td class="num">{money(g.amount)}</td>
                      <td class="num">{money(g.remaining)}</td>
                      <td>
                        {g.expires_at ? (
                          <time dateTime={g.expires_at} title={relative(g.expires_at)}>
                            {dateTime(g.expires_at)}
                          </time>
                        ) : (
                          <span class="muted">Never</span>
                        )}
                      </td>
                      <td>
                        <time dateTime={g.created_at} title={g.id}>
                          {dateTime(g.created_at)}
                        </time>
                      </td>
                      <td class="grant-description">{g.description ?? <span class="muted">—</span>}</td>
                      <td>
                        <GrantState grant={g} />
                      </td>
                      <td>
                        {grantStatus(g) === "live" && (
                          <button type="button" class="btn btn-small btn-danger-outline" onClick={() => setVoiding(g)}>
                            Void<span class="visually-hidden"> the {money(g.amount)} grant {g.id}</span>…
                          </button>
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}

      <TopUpForm
        base={base}
        onGranted={async () => {
          sequence.start();
          await load();
        }}
      />

      {voiding && (
        <ConfirmDialog
          title="Void this grant?"
          confirmLabel="Void grant"
          danger
          onConfirm={voidGrant}
          onClose={() => setVoiding(null)}
        >
          <p>
            The {money(voiding.amount)} grant{voiding.description ? ` “${voiding.description}”` : ""} stops counting at
            once: the balance drops by what is left of it, <strong>{money(voiding.remaining)}</strong>. This cannot be
            undone.
          </p>
          {prepaid && credits !== null && credits.balance - voiding.remaining <= 0 && (
            <p class="notice notice-warn">
              The balance would be {money(credits.balance - voiding.remaining)}: its keys' queries are refused until it
              is topped up.
            </p>
          )}
        </ConfirmDialog>
      )}
    </div>
  );
}

interface TopUp {
  amount: string;
  expires: string;
  description: string;
}

const EMPTY: TopUp = { amount: "", expires: "", description: "" };

interface Invalid {
  field: keyof TopUp;
  message: string;
}

/** The grant's body, or what is wrong with the form. */
function readTopUp(v: TopUp, now = Date.now()): { body: Record<string, unknown> } | Invalid {
  const bad = (field: keyof TopUp, message: string): Invalid => ({ field, message });
  const usd = amount(v.amount);
  if (usd === null) return bad("amount", "Amount: required, in USD, like 20 or 12.50.");
  if (Number.isNaN(usd)) return bad("amount", "Amount: an amount in USD, like 20 or 12.50.");
  if (usd <= 0) return bad("amount", "Amount: more than 0.");
  const body: Record<string, unknown> = { amount: usd };
  if (v.expires) {
    const at = fromInputUtc(v.expires);
    if (!at) return bad("expires", "Expires: not a valid date and time.");
    if (new Date(at).getTime() <= now) return bad("expires", "Expires: a time in the future, or empty for never.");
    body.expires_at = at;
  }
  const description = v.description.trim();
  if (description.length > 1000) return bad("description", "Description: at most 1000 characters.");
  if (description) body.description = description;
  return { body };
}

function TopUpForm({ base, onGranted }: { base: string; onGranted: () => Promise<void> }) {
  const [v, setV] = useState<TopUp>(EMPTY);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [invalid, setInvalid] = useState<Invalid | null>(null);
  const [status, setStatus] = useState("");
  // Refs, not state: two submits in one task (a double click) both see them.
  const sending = useRef(false);
  // The key of the top-up not yet known to have been granted, and its body.
  const pending = useRef<{ key: string; body: string } | null>(null);
  const mounted = useMounted();
  const fieldError = (name: keyof TopUp) => (invalid?.field === name ? invalid.message : null);
  const a11y = (name: keyof TopUp, hint = true) => describe(`topup-${name}`, fieldError(name), hint);
  const set = (name: keyof TopUp) => (event: Event) => {
    const value = (event.currentTarget as HTMLInputElement).value;
    setV((old) => ({ ...old, [name]: value }));
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    if (sending.current) return;
    const read = readTopUp(v);
    if ("field" in read) {
      setInvalid(read);
      setError(new Error(read.message));
      setStatus("");
      document.getElementById(`topup-${read.field}`)?.focus();
      return;
    }
    const { body } = read;
    setInvalid(null);
    const text = JSON.stringify(body);
    // The same top-up as the one that failed keeps its key: if it landed after all, the server answers it again.
    if (pending.current?.body !== text) pending.current = { key: newIdempotencyKey(), body: text };
    const { key } = pending.current;
    sending.current = true;
    setBusy(true);
    setError(null);
    setStatus("");
    try {
      const grant = await api<Grant>("POST", base, body, { headers: { "idempotency-key": key } });
      if (pending.current?.key === key) pending.current = null;
      if (!mounted.current) return;
      setV(EMPTY);
      setStatus(`Granted ${money(grant.amount)} at ${new Date().toISOString().slice(11, 19)} UTC.`);
      await onGranted();
    } catch (e) {
      if (mounted.current) setError(e);
    } finally {
      sending.current = false;
      if (mounted.current) setBusy(false);
    }
  };

  return (
    <form class="form topup" onSubmit={submit} noValidate aria-labelledby="topup-title">
      <h4 id="topup-title">Top up</h4>
      <div class="grid-3">
        <Field id="topup-amount" label="Amount (USD)" error={fieldError("amount")}>
          <input
            id="topup-amount"
            inputMode="decimal"
            autoComplete="off"
            value={v.amount}
            onInput={set("amount")}
            required
            {...a11y("amount", false)}
          />
        </Field>
        <Field
          id="topup-expires"
          label="Expires at (UTC, optional)"
          hint="Empty: never expires."
          error={fieldError("expires")}
        >
          <input
            id="topup-expires"
            type="datetime-local"
            value={v.expires}
            onInput={set("expires")}
            {...a11y("expires")}
          />
        </Field>
        <Field id="topup-description" label="Description (optional)" error={fieldError("description")}>
          <input
            id="topup-description"
            value={v.description}
            onInput={set("description")}
            maxLength={1000}
            autoComplete="off"
            {...a11y("description", false)}
          />
        </Field>
      </div>
      <ErrorBox error={error} title="Not granted:" />
      <div class="form-actions">
        {/* aria-disabled, not disabled: a disabled button drops the focus to <body>. */}
        <button type="submit" class="btn btn-primary" aria-disabled={busy}>
          {busy ? "Granting…" : "Top up"}
        </button>
        <span class="form-status" role="status" aria-live="polite">
          {error ? "" : status}
        </span>
      </div>
      <p class="hint">
        Submitting the same top-up again after an error (or twice) grants it once: the retry carries the same
        Idempotency-Key.
      </p>
    </form>
  );
}
