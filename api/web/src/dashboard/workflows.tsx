// `#/workflows`: the registry of upstreams (list, register, delete).

import { useState } from "preact/hooks";
import { all, api, seg, type Workflow } from "./api";
import { amount, dateTime, micros, money } from "./format";
import { useLoad } from "./hooks";
import { ConfirmDialog, describe, Empty, ErrorBox, Field, Loading, PageHeader, useNotify } from "./ui";

export function WorkflowsPage() {
  const [deleting, setDeleting] = useState<Workflow | null>(null);
  const notify = useNotify();
  const list = useLoad(() => all<Workflow>("/api/v1/workflows"));
  const workflows = list.value;
  const error = list.error;
  const load = list.reload;

  return (
    <>
      <PageHeader title="Workflows">
        <button type="button" class="btn btn-primary" onClick={() => document.getElementById("wf-id")?.focus()}>
          Register workflow
        </button>
      </PageHeader>
      <p class="lead">
        A workflow is an upstream that queries go to: <code>POST /api/v1/workflows/&lt;id&gt;/query</code> with an API
        key. Unless the upstream reports a cost, a query costs the price per request plus the input and output tokens
        the upstream reports at their prices per million; its maximum, if set, is the most one query may cost (a
        reported cost above it is recorded as the maximum).
      </p>
      <ErrorBox error={error} title="Could not load the workflows:" />
      {workflows === null ? (
        !error && <Loading what="Loading workflows" />
      ) : workflows.length === 0 ? (
        <Empty>No workflows yet — register one below (try the upstream builtin:echo).</Empty>
      ) : (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Workflows</caption>
            <thead>
              <tr>
                <th scope="col">ID</th>
                <th scope="col">Name</th>
                <th scope="col">Upstream</th>
                <th scope="col" class="num">
                  Price per request
                </th>
                <th scope="col" class="num">
                  Max cost per request
                </th>
                <th scope="col" class="num">
                  Per 1M input tokens
                </th>
                <th scope="col" class="num">
                  Per 1M output tokens
                </th>
                <th scope="col">Created</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {workflows.map((w) => (
                <tr key={w.id}>
                  <th scope="row">
                    <code>{w.id}</code>
                  </th>
                  <td>{w.name}</td>
                  <td class="wrap">
                    <code>{w.upstream_url}</code>
                  </td>
                  <td class="num">{money(w.price_per_request)}</td>
                  <td class="num">
                    {w.max_cost_per_request == null ? (
                      <span class="muted">None</span>
                    ) : (
                      money(w.max_cost_per_request)
                    )}
                  </td>
                  <td class="num">{money(w.price_per_million_input_tokens ?? 0)}</td>
                  <td class="num">{money(w.price_per_million_output_tokens ?? 0)}</td>
                  <td>{dateTime(w.created_at)}</td>
                  <td>
                    <button
                      type="button"
                      class="btn btn-small btn-danger-outline"
                      aria-label={`Delete workflow ${w.id}`}
                      onClick={() => setDeleting(w)}
                    >
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <NewWorkflow
        onCreated={(w) => {
          notify(`Workflow “${w.id}” registered.`);
          void load();
        }}
      />
      {deleting && (
        <ConfirmDialog
          title="Delete this workflow?"
          confirmLabel="Delete workflow"
          danger
          onClose={() => setDeleting(null)}
          onConfirm={async () => {
            await api<void>("DELETE", `/api/v1/workflows/${seg(deleting.id)}`);
            notify(`Workflow “${deleting.id}” deleted.`);
            // The list first: the dialog then finds its opener (the row's
            // Delete button) gone and hands the focus to the page's heading.
            await load();
            setDeleting(null);
          }}
        >
          <p>
            Queries to <code>{deleting.id}</code> will fail with <code>404 workflow_not_found</code>. Keys that list it
            keep it in their allow-list.
          </p>
        </ConfirmDialog>
      )}
    </>
  );
}

function NewWorkflow({ onCreated }: { onCreated: (w: Workflow) => void }) {
  const [id, setId] = useState("");
  const [name, setName] = useState("");
  const [upstream, setUpstream] = useState("");
  const [price, setPrice] = useState("");
  const [maxCost, setMaxCost] = useState("");
  const [inputPrice, setInputPrice] = useState("");
  const [outputPrice, setOutputPrice] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [priceError, setPriceError] = useState<string | null>(null);
  const [maxCostError, setMaxCostError] = useState<string | null>(null);
  const [inputPriceError, setInputPriceError] = useState<string | null>(null);
  const [outputPriceError, setOutputPriceError] = useState<string | null>(null);
  const submit = async (event: Event) => {
    event.preventDefault();
    if (busy) return;
    setError(null);
    setPriceError(null);
    setMaxCostError(null);
    setInputPriceError(null);
    setOutputPriceError(null);
    const body: Record<string, unknown> = { id: id.trim(), name: name.trim(), upstream_url: upstream.trim() };
    const p = amount(price);
    const max = amount(maxCost);
    const perInput = amount(inputPrice);
    const perOutput = amount(outputPrice);
    const refuse = (field: string, message: string, setFieldError: (m: string) => void) => {
      setFieldError(message);
      setError(new Error(message));
      document.getElementById(field)?.focus();
    };
    if (Number.isNaN(p)) {
      refuse("wf-price", "Price per request: an amount in USD, like 0.002, or empty for free.", setPriceError);
      return;
    }
    if (Number.isNaN(max)) {
      refuse("wf-max-cost", "Max cost per request: an amount in USD, like 0.05, or empty for none.", setMaxCostError);
      return;
    }
    if (max !== null && micros(max) < micros(p ?? 0)) {
      refuse("wf-max-cost", "Max cost per request: at least the price per request, or empty for none.", setMaxCostError);
      return;
    }
    if (Number.isNaN(perInput)) {
      refuse("wf-input-price", "Price per million input tokens: an amount in USD, like 3, or empty for free.", setInputPriceError);
      return;
    }
    if (Number.isNaN(perOutput)) {
      refuse("wf-output-price", "Price per million output tokens: an amount in USD, like 15, or empty for free.", setOutputPriceError);
      return;
    }
    if (p !== null) body.price_per_request = p;
    if (max !== null) body.max_cost_per_request = max;
    if (perInput !== null) body.price_per_million_input_tokens = perInput;
    if (perOutput !== null) body.price_per_million_output_tokens = perOutput;
    setBusy(true);
    try {
      const created = await api<Workflow>("POST", "/api/v1/workflows", body);
      setId("");
      setName("");
      setUpstream("");
      setPrice("");
      setMaxCost("");
      setInputPrice("");
      setOutputPrice("");
      onCreated(created);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const text = (set: (v: string) => void) => (e: Event) => set((e.currentTarget as HTMLInputElement).value);
  return (
    <section class="card" aria-labelledby="new-workflow-title">
      <h2 id="new-workflow-title">Register a workflow</h2>
      <form class="form" onSubmit={submit} noValidate>
        <div class="grid-2">
          <Field id="wf-id" label="ID" hint="Lowercase letters, digits, - and _ (up to 64); used in the query URL.">
            <input
              id="wf-id"
              value={id}
              onInput={text(setId)}
              required
              pattern="[a-z0-9_\-]{1,64}"
              autoComplete="off"
              aria-describedby="wf-id-hint"
            />
          </Field>
          <Field id="wf-name" label="Name">
            <input id="wf-name" value={name} onInput={text(setName)} required autoComplete="off" />
          </Field>
          <Field id="wf-upstream" label="Upstream URL" hint="http(s)://… or builtin:echo (answers with its input).">
            <input
              id="wf-upstream"
              value={upstream}
              onInput={text(setUpstream)}
              required
              placeholder="https://… or builtin:echo"
              autoComplete="off"
              aria-describedby="wf-upstream-hint"
            />
          </Field>
          <Field id="wf-price" label="Price per request (USD)" hint="Empty: free (0)." error={priceError}>
            <input
              id="wf-price"
              inputMode="decimal"
              autoComplete="off"
              value={price}
              onInput={text(setPrice)}
              {...describe("wf-price", priceError)}
            />
          </Field>
          <Field
            id="wf-max-cost"
            label="Max cost per request (USD, optional)"
            hint="The most one query may cost, at least the price. Set it if the upstream reports its own cost. Empty: none."
            error={maxCostError}
          >
            <input
              id="wf-max-cost"
              inputMode="decimal"
              autoComplete="off"
              value={maxCost}
              onInput={text(setMaxCost)}
              {...describe("wf-max-cost", maxCostError)}
            />
          </Field>
          <Field
            id="wf-input-price"
            label="Price per million input tokens (USD)"
            hint="For the input (prompt) tokens the upstream reports. Empty: free (0)."
            error={inputPriceError}
          >
            <input
              id="wf-input-price"
              inputMode="decimal"
              autoComplete="off"
              value={inputPrice}
              onInput={text(setInputPrice)}
              {...describe("wf-input-price", inputPriceError)}
            />
          </Field>
          <Field
            id="wf-output-price"
            label="Price per million output tokens (USD)"
            hint="For the output (completion) tokens the upstream reports. Empty: free (0)."
            error={outputPriceError}
          >
            <input
              id="wf-output-price"
              inputMode="decimal"
              autoComplete="off"
              value={outputPrice}
              onInput={text(setOutputPrice)}
              {...describe("wf-output-price", outputPriceError)}
            />
          </Field>
        </div>
        <ErrorBox error={error} title="Not registered:" />
        <div class="form-actions">
          <button type="submit" class="btn btn-primary" aria-disabled={busy}>
            {busy ? "Registering…" : "Register workflow"}
          </button>
        </div>
      </form>
    </section>
  );
}
