// `#/webhooks`: subscriptions (list, create with the signing secret shown
// once) and `#/webhooks/<id>`: one subscription's deliveries log, with
// retry, a test event, turning it on or off, and delete.

import { useEffect, useState } from "preact/hooks";
import { all, api, ApiError, EVENT_TYPES, seg, type Delivery, type Webhook } from "./api";
import { dateTime, relative } from "./format";
import { href, navigate, useLoad, useMounted, usePoll, useSequence } from "./hooks";
import { ConfirmDialog, Empty, ErrorBox, Field, Loading, PageHeader, SecretReveal, useNotify } from "./ui";

const DELIVERIES_REFRESH_MS = 3000;

const eventsText = (events: string[]) => (events.length === 0 ? "All events" : events.join(", "));

function WebhookState({ webhook }: { webhook: Webhook }) {
  if (webhook.active) return <span class="badge badge-ok">Enabled</span>;
  return (
    <span class="badge badge-off" title={webhook.disabled_reason ?? undefined}>
      {webhook.disabled_reason ? "Disabled by nodai" : "Disabled"}
    </span>
  );
}

export function WebhooksPage() {
  // The new subscription's signing secret, from the 201 until "Done".
  const [created, setCreated] = useState<{ id: string; url: string; secret: string } | null>(null);
  const list = useLoad(() => all<Webhook>("/api/v1/webhooks"));
  const webhooks = list.value;
  const error = list.error;
  const load = list.reload;

  return (
    <>
      <PageHeader title="Webhooks">
        <button type="button" class="btn btn-primary" onClick={() => document.getElementById("wh-url")?.focus()}>
          Add endpoint
        </button>
      </PageHeader>
      <p class="lead">
        nodai POSTs events to your endpoints, signed the Standard Webhooks way (<code>webhook-id</code>,{" "}
        <code>webhook-timestamp</code>, <code>webhook-signature</code>), and retries until a 2xx.
      </p>
      {created && (
        <SecretReveal
          title="Your endpoint's signing secret"
          label={`Signing secret for ${created.url}`}
          secret={created.secret}
          onDone={() => setCreated(null)}
        >
          <p>
            Verify every delivery to <code>{created.url}</code> with it.{" "}
            <a href={href("webhooks", created.id)}>See its deliveries</a>.
          </p>
        </SecretReveal>
      )}
      <ErrorBox error={error} title="Could not load the webhooks:" />
      {webhooks === null ? (
        !error && <Loading what="Loading webhooks" />
      ) : webhooks.length === 0 ? (
        <Empty>No webhook endpoints yet — add one below.</Empty>
      ) : (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Webhook endpoints</caption>
            <thead>
              <tr>
                <th scope="col">Endpoint</th>
                <th scope="col">Events</th>
                <th scope="col">Description</th>
                <th scope="col">Status</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {webhooks.map((w) => (
                <tr key={w.id}>
                  <th scope="row" class="wrap">
                    <a href={href("webhooks", w.id)}>{w.url}</a>
                  </th>
                  <td class="wrap">{eventsText(w.events)}</td>
                  <td class="wrap">{w.description ?? <span class="muted">—</span>}</td>
                  <td>
                    <WebhookState webhook={w} />
                  </td>
                  <td>{dateTime(w.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <NewWebhook
        onCreated={(w) => {
          setCreated({ id: w.id, url: w.url, secret: w.secret ?? "" });
          void load();
        }}
      />
    </>
  );
}

function NewWebhook({ onCreated }: { onCreated: (w: Webhook) => void }) {
  const [url, setUrl] = useState("");
  const [events, setEvents] = useState<string[]>([]);
  const [description, setDescription] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const submit = async (event: Event) => {
    event.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      const body: Record<string, unknown> = { url: url.trim(), events };
      if (description.trim()) body.description = description.trim();
      const created = await api<Webhook>("POST", "/api/v1/webhooks", body);
      setUrl("");
      setEvents([]);
      setDescription("");
      onCreated(created);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card" aria-labelledby="new-webhook-title">
      <h2 id="new-webhook-title">Add an endpoint</h2>
      <form class="form" onSubmit={submit} noValidate>
        <Field id="wh-url" label="Endpoint URL" hint="Public http(s) URL that answers 2xx within 10 seconds.">
          <input
            id="wh-url"
            type="url"
            value={url}
            onInput={(e) => setUrl((e.currentTarget as HTMLInputElement).value)}
            required
            placeholder="https://example.com/webhooks/nodai"
            autoComplete="off"
            aria-describedby="wh-url-hint"
          />
        </Field>
        <fieldset class="choices">
          <legend>Events to send</legend>
          <p class="hint">None checked: all events.</p>
          <div class="checks">
            {EVENT_TYPES.map((type) => (
              <div class="check" key={type}>
                <input
                  id={`wh-event-${type}`}
                  type="checkbox"
                  checked={events.includes(type)}
                  onChange={(e) => {
                    const on = (e.currentTarget as HTMLInputElement).checked;
                    setEvents((old) => (on ? [...old.filter((t) => t !== type), type] : old.filter((t) => t !== type)));
                  }}
                />
                <label for={`wh-event-${type}`}>
                  <code>{type}</code>
                </label>
              </div>
            ))}
          </div>
        </fieldset>
        <Field id="wh-description" label="Description (optional)">
          <input
            id="wh-description"
            value={description}
            onInput={(e) => setDescription((e.currentTarget as HTMLInputElement).value)}
            maxLength={1000}
            autoComplete="off"
          />
        </Field>
        <ErrorBox error={error} title="Not added:" />
        <div class="form-actions">
          <button type="submit" class="btn btn-primary" aria-disabled={busy}>
            {busy ? "Adding…" : "Add endpoint"}
          </button>
        </div>
      </form>
    </section>
  );
}

function DeliveryStatus({ delivery }: { delivery: Delivery }) {
  const cls =
    delivery.status === "succeeded" ? "badge badge-ok" : delivery.status === "failed" ? "badge badge-bad" : "badge badge-wait";
  const label = delivery.status === "succeeded" ? "Succeeded" : delivery.status === "failed" ? "Failed" : "Pending";
  return <span class={cls}>{label}</span>;
}

export function WebhookDetailPage({ id }: { id: string }) {
  const [webhook, setWebhook] = useState<Webhook | null>(null);
  const [deliveries, setDeliveries] = useState<Delivery[] | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [deleting, setDeleting] = useState(false);
  const [gone, setGone] = useState(false);
  const mounted = useMounted();
  const sequence = useSequence();
  const notify = useNotify();
  const base = `/api/v1/webhooks/${seg(id)}`;

  // The deliveries log comes whole every few seconds (the API does not page
  // it). That is bounded: per endpoint the server keeps every pending
  // delivery and, once it holds more than 2000, only the newest 1000
  // finished ones (FINISHED_KEPT in ledger/src/webhooks.rs). So a poll is at
  // most about 2000 rows plus the pending ones — one per event sent to a
  // failing endpoint within its retry schedule.
  // Loads are numbered (see useSequence): a poll that was under way when an
  // action began carries the state from before it, and is dropped.
  const load = async () => {
    const n = sequence.start();
    try {
      const [w, d] = await Promise.all([
        api<Webhook>("GET", base),
        api<{ data: Delivery[] }>("GET", `${base}/deliveries`),
      ]);
      if (!mounted.current || !sequence.latest(n)) return;
      setWebhook(w);
      setDeliveries(d.data);
      setLoadError(null);
    } catch (e) {
      if (mounted.current && sequence.latest(n)) setLoadError(e);
    }
  };
  useEffect(() => {
    void load();
  }, [id]);
  const missing = loadError instanceof ApiError && loadError.status === 404;
  usePoll(load, DELIVERIES_REFRESH_MS, !gone && !missing && webhook !== null);

  // Buttons are aria-disabled while an action runs (a disabled button
  // would drop the focus to <body>); a click then does nothing.
  const act = async (what: string, run: () => Promise<void>) => {
    if (busy !== null) return;
    setBusy(what);
    setActionError(null);
    sequence.start();
    try {
      await run();
      await load();
    } catch (e) {
      if (mounted.current) setActionError(e);
    } finally {
      if (mounted.current) setBusy(null);
    }
  };

  const crumbs = (
    <p class="crumbs">
      <a href="#/webhooks">← Webhooks</a>
    </p>
  );
  if (!webhook) {
    return (
      <>
        {crumbs}
        <PageHeader title={missing ? "Webhook not found" : "Webhook"} />
        {missing ? (
          <Empty>
            There is no webhook <code>{id}</code>. <a href="#/webhooks">Back to the webhooks</a>.
          </Empty>
        ) : loadError ? (
          <ErrorBox error={loadError} title="Could not load the webhook:" />
        ) : (
          <Loading what="Loading the webhook" />
        )}
      </>
    );
  }

  return (
    <>
      {crumbs}
      <PageHeader title="Webhook endpoint">
        <button
          type="button"
          class="btn"
          aria-disabled={busy !== null}
          onClick={() =>
            act("test", async () => {
              const sent = await api<{ delivery_id: string }>("POST", `${base}/test`);
              notify(`Test event queued as ${sent.delivery_id}.`);
            })
          }
        >
          {busy === "test" ? "Sending…" : "Send test event"}
        </button>
        <button
          type="button"
          class="btn"
          aria-disabled={busy !== null}
          onClick={() =>
            act("toggle", async () => {
              await api<Webhook>("PUT", base, { active: !webhook.active });
              notify(webhook.active ? "Endpoint disabled: nothing is sent to it." : "Endpoint enabled.");
            })
          }
        >
          {webhook.active ? "Disable" : "Enable"}
        </button>
        <button type="button" class="btn btn-danger-outline" onClick={() => setDeleting(true)}>
          Delete…
        </button>
      </PageHeader>
      <dl class="meta">
        <div class="meta-wide">
          <dt>URL</dt>
          <dd>
            <code class="id">{webhook.url}</code>
          </dd>
        </div>
        <div>
          <dt>Status</dt>
          <dd>
            <WebhookState webhook={webhook} />
          </dd>
        </div>
        <div>
          <dt>Events</dt>
          <dd>{eventsText(webhook.events)}</dd>
        </div>
        <div>
          <dt>Description</dt>
          <dd>{webhook.description ?? <span class="muted">—</span>}</dd>
        </div>
        <div>
          <dt>ID</dt>
          <dd>
            <code class="id">{webhook.id}</code>
          </dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd>{dateTime(webhook.created_at)}</dd>
        </div>
      </dl>
      {webhook.disabled_reason && (
        <p class="error" role="note">
          nodai disabled this endpoint {webhook.disabled_at ? `on ${dateTime(webhook.disabled_at)}` : ""}:{" "}
          {webhook.disabled_reason}
        </p>
      )}
      <ErrorBox error={actionError} />
      {loadError && <ErrorBox error={loadError} title="Could not refresh:" />}

      <section class="card" aria-labelledby="deliveries-title">
        <div class="section-header">
          <h2 id="deliveries-title">Deliveries</h2>
          <span class="muted small">Newest first · refreshes every {DELIVERIES_REFRESH_MS / 1000} s</span>
        </div>
        {deliveries === null || deliveries.length === 0 ? (
          <Empty>No deliveries yet — send a test event.</Empty>
        ) : (
          <div class="table-wrap">
            <table class="deliveries">
              <caption class="visually-hidden">Deliveries to this endpoint</caption>
              <thead>
                <tr>
                  <th scope="col">Delivery</th>
                  <th scope="col">Event</th>
                  <th scope="col">Status</th>
                  <th scope="col" class="num">
                    Attempts
                  </th>
                  <th scope="col" class="num">
                    Last HTTP status
                  </th>
                  <th scope="col">Next attempt</th>
                  <th scope="col">Created</th>
                  <th scope="col">
                    <span class="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {deliveries.map((d) => (
                  <tr key={d.id} data-delivery={d.id}>
                    <th scope="row" class="wrap">
                      <code>{d.id}</code>
                    </th>
                    <td>
                      <code>{d.event_type}</code>
                    </td>
                    <td>
                      <DeliveryStatus delivery={d} />
                      {d.last_error && <div class="small muted wrap">{d.last_error}</div>}
                    </td>
                    <td class="num">{d.attempts}</td>
                    <td class="num">{d.last_status_code ?? <span class="muted">—</span>}</td>
                    <td>
                      {d.next_attempt_at ? (
                        <time dateTime={d.next_attempt_at} title={dateTime(d.next_attempt_at)}>
                          {relative(d.next_attempt_at)}
                        </time>
                      ) : (
                        <span class="muted">—</span>
                      )}
                    </td>
                    <td>{dateTime(d.created_at)}</td>
                    <td>
                      {/* A delivery that succeeded is done: only pending and failed ones are retried. */}
                      {d.status !== "succeeded" && (
                        <button
                          type="button"
                          class="btn btn-small"
                          aria-label={`Retry delivery ${d.id}`}
                          aria-disabled={busy !== null}
                          onClick={() =>
                            act(`retry-${d.id}`, async () => {
                              await api<Delivery>("POST", `${base}/deliveries/${seg(d.id)}/retry`);
                              notify(`Delivery ${d.id} will be sent again now.`);
                            })
                          }
                        >
                          {busy === `retry-${d.id}` ? "Retrying…" : "Retry"}
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      {deleting && (
        <ConfirmDialog
          title="Delete this endpoint?"
          confirmLabel="Delete endpoint"
          danger
          onClose={() => setDeleting(false)}
          onConfirm={async () => {
            setGone(true);
            try {
              await api<void>("DELETE", base);
            } catch (e) {
              setGone(false);
              throw e;
            }
            notify(`Webhook endpoint ${webhook.url} deleted.`, "#/webhooks");
            navigate("#/webhooks");
          }}
        >
          <p>
            Nothing more is sent to <code>{webhook.url}</code>, including pending retries. This cannot be undone.
          </p>
        </ConfirmDialog>
      )}
    </>
  );
}
