// `#/keys/<id>`: one key — its usage (refreshed every few seconds while
// the page is visible), its settings (PUT, changed fields only), rotate
// (the new key shown once) and revoke, each behind a confirmation. A
// revoked key stays: its page says when it was revoked and keeps its usage,
// and its settings are shown read-only, with no rotate or revoke. Loads
// are numbered: a refresh that was under way when a save, rotate or revoke
// began carries the key from before it, and is dropped.

import { useEffect, useState } from "preact/hooks";
import { api, ApiError, seg, type Customer, type Key, type KeyWithSecret, type Usage } from "./api";
import { dateTime, money, num, relative } from "./format";
import { href, useMounted, usePoll, useSequence } from "./hooks";
import { changedFields, KeyForm } from "./keyform";
import { KeyState } from "./keys";
import { KEY_RESERVED, limitsText } from "./limits";
import { UsageCharts, usageLimits, UsageStats } from "./usage";
import { ConfirmDialog, Empty, ErrorBox, Loading, PageHeader, SecretReveal, useNotify } from "./ui";

const REFRESH_MS = 5000;

const GRACE_CHOICES: [number, string][] = [
  [0, "Immediately"],
  [3600, "In 1 hour"],
  [86_400, "In 24 hours"],
  [3 * 86_400, "In 3 days"],
  [7 * 86_400, "In 7 days"],
];

export function KeyDetailPage({ id }: { id: string }) {
  const [apiKey, setKey] = useState<Key | null>(null);
  const [usage, setUsage] = useState<Usage | null>(null);
  // The key's customer (its name, and the day its months start), once read.
  const [customer, setCustomer] = useState<Customer | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [refreshError, setRefreshError] = useState<unknown>(null);
  const [refreshedAt, setRefreshedAt] = useState<Date | null>(null);
  // Only a refresh the user asked for (the Refresh button's own state).
  const [refreshing, setRefreshing] = useState(false);
  const [saved, setSaved] = useState("");
  const [dialog, setDialog] = useState<null | "rotate" | "revoke">(null);
  const [grace, setGrace] = useState(0);
  // The rotated key's plaintext, from the 200 until "Done".
  const [secret, setSecret] = useState<{ value: string; until: string | null } | null>(null);
  const mounted = useMounted();
  const sequence = useSequence();
  const notify = useNotify();
  const base = `/api/v1/api-keys/${seg(id)}`;

  const load = async (asked = false) => {
    const n = sequence.start();
    if (asked) setRefreshing(true);
    try {
      const [k, u] = await Promise.all([api<Key>("GET", base), api<Usage>("GET", `${base}/usage`)]);
      if (!mounted.current || !sequence.latest(n)) return;
      setKey(k);
      setUsage(u);
      setRefreshedAt(new Date());
      setRefreshError(null);
    } catch (e) {
      if (!mounted.current || !sequence.latest(n)) return;
      if (apiKey === null || (e instanceof ApiError && e.status === 404)) setLoadError(e);
      else setRefreshError(e);
    } finally {
      if (asked && mounted.current) setRefreshing(false);
    }
  };
  useEffect(() => {
    void load();
  }, [id]);
  const customerId = apiKey?.customer_id ?? null;
  useEffect(() => {
    let live = true;
    setCustomer(null);
    if (customerId) {
      api<Customer>("GET", `/api/v1/customers/${seg(customerId)}`).then(
        (c) => live && setCustomer(c),
        // Deleted since, or unreadable: the page shows its id only.
        () => {},
      );
    }
    return () => {
      live = false;
    };
  }, [customerId]);
  usePoll(load, REFRESH_MS, !loadError && apiKey !== null);

  if (loadError) {
    const missing = loadError instanceof ApiError && loadError.status === 404;
    return (
      <>
        <p class="crumbs">
          <a href="#/keys">← API keys</a>
        </p>
        <PageHeader title={missing ? "Key not found" : "Key"} />
        {missing ? (
          <Empty>
            There is no key <code>{id}</code>. <a href="#/keys">Back to the keys</a>.
          </Empty>
        ) : (
          <ErrorBox error={loadError} title="Could not load the key:" />
        )}
      </>
    );
  }
  if (!apiKey || !usage) {
    return (
      <>
        <p class="crumbs">
          <a href="#/keys">← API keys</a>
        </p>
        <PageHeader title="Key" />
        <Loading what="Loading the key" />
      </>
    );
  }

  const rotate = async () => {
    sequence.start();
    const { key, ...rest } = await api<KeyWithSecret>("POST", `${base}/rotate`, { grace_period_seconds: grace });
    sequence.start();
    const until = grace > 0 ? new Date(Date.now() + grace * 1000).toISOString() : null;
    setKey(rest);
    setSecret({ value: key, until });
    setDialog(null);
  };
  const revoke = async () => {
    sequence.start();
    await api<void>("DELETE", base);
    // The page stays: the key is kept, revoked, with its usage.
    sequence.start();
    // The key first: the dialog then finds its opener (Revoke key…) gone and
    // hands the focus to the page's heading.
    await load();
    setDialog(null);
    notify(`Key “${apiKey.name}” (${apiKey.prefix}…) was revoked; it no longer validates.`);
  };
  const revokedAt = apiKey.revoked_at;

  return (
    <>
      <p class="crumbs">
        <a href="#/keys">← API keys</a>
      </p>
      <PageHeader title={apiKey.name}>
        {revokedAt === null && (
          <>
            <button type="button" class="btn" onClick={() => setDialog("rotate")}>
              Rotate key…
            </button>
            <button type="button" class="btn btn-danger-outline" onClick={() => setDialog("revoke")}>
              Revoke key…
            </button>
          </>
        )}
      </PageHeader>
      {revokedAt !== null && (
        <p class="revoked-banner">
          <strong>
            Revoked on <time dateTime={revokedAt}>{dateTime(revokedAt)}</time>.
          </strong>{" "}
          Requests with it are refused; its usage is kept, and its settings no longer change.
        </p>
      )}
      <dl class="meta">
        <div>
          <dt>Key</dt>
          <dd>
            <code>{apiKey.prefix}…</code> <KeyState apiKey={apiKey} />
          </dd>
        </div>
        <div>
          <dt>Owner</dt>
          <dd>{apiKey.owner ?? <span class="muted">—</span>}</dd>
        </div>
        <div>
          <dt>Customer</dt>
          <dd>
            {apiKey.customer_id === null ? (
              <span class="muted">—</span>
            ) : (
              <a href={href("customers", apiKey.customer_id)}>{customer?.name ?? apiKey.customer_id}</a>
            )}
          </dd>
        </div>
        <div>
          <dt>ID</dt>
          <dd>
            <code class="id">{apiKey.id}</code>
          </dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd>{dateTime(apiKey.created_at)}</dd>
        </div>
        <div>
          <dt>Last used</dt>
          <dd title={dateTime(apiKey.last_used_at)}>{relative(apiKey.last_used_at)}</dd>
        </div>
        <div>
          <dt>Expires</dt>
          <dd>{apiKey.expires_at ? dateTime(apiKey.expires_at) : "Never"}</dd>
        </div>
      </dl>

      {secret && (
        <SecretReveal
          title="Your new API key"
          label={`New secret key for “${apiKey.name}”`}
          secret={secret.value}
          onDone={() => setSecret(null)}
        >
          <p>
            The key was rotated: same id, same usage and limits, new secret (prefix <code>{apiKey.prefix}</code>).{" "}
            {secret.until
              ? `The old secret keeps working until ${dateTime(secret.until)}.`
              : "The old secret stopped working."}
          </p>
        </SecretReveal>
      )}

      <section class="card" aria-labelledby="usage-title">
        <div class="section-header">
          <h2 id="usage-title">Usage</h2>
          <div class="actions">
            <span class="muted small" aria-live="off">
              {refreshedAt ? `Updated ${refreshedAt.toISOString().slice(11, 19)} UTC · every ${REFRESH_MS / 1000} s` : ""}
            </span>
            {/* aria-disabled, not disabled, so that the focus stays on it. */}
            <button type="button" class="btn" onClick={() => refreshing || void load(true)} aria-disabled={refreshing}>
              {refreshing ? "Refreshing…" : "Refresh"}
            </button>
          </div>
        </div>
        <ErrorBox error={refreshError} title="Could not refresh:" />
        <UsageStats usage={usage} limits={usageLimits(apiKey.limits)} anchorDay={customer?.billing_anchor_day} />
        <UsageCharts usage={usage} limits={usageLimits(apiKey.limits)} anchorDay={customer?.billing_anchor_day} />
      </section>

      {revokedAt !== null ? (
        <section class="card" aria-labelledby="settings-title">
          <h2 id="settings-title">Settings</h2>
          <RevokedSettings apiKey={apiKey} />
        </section>
      ) : (
        <>
          <section class="card" aria-labelledby="settings-title">
            <h2 id="settings-title">Settings</h2>
            {/* Not keyed on the key: a refresh must not rebuild the form under the user's edits. */}
            <KeyForm
              idPrefix="key"
              apiKey={apiKey}
              submitLabel="Save changes"
              status={saved}
              onSubmit={async (fields, from) => {
                setSaved("");
                // Against the key the form was filled from: changes made elsewhere since then stay.
                const body = changedFields(fields, from ?? apiKey);
                if (Object.keys(body).length === 0) {
                  setSaved("Nothing changed.");
                  return;
                }
                sequence.start();
                const updated = await api<Key>("PUT", base, body);
                sequence.start();
                return updated;
              }}
              onSaved={(updated) => {
                setKey(updated);
                setSaved(`Saved at ${new Date().toISOString().slice(11, 19)} UTC.`);
              }}
            />
          </section>

          <section class="card danger-zone" aria-labelledby="danger-title">
            <h2 id="danger-title">Rotate or revoke</h2>
            <div class="danger-row">
              <p>
                <strong>Rotate</strong> issues a new secret for this key (same id, usage and limits); the old one can keep
                working for a grace period while you deploy the new one.
              </p>
              <button type="button" class="btn" onClick={() => setDialog("rotate")}>
                Rotate key…
              </button>
            </div>
            <div class="danger-row">
              <p>
                <strong>Revoke</strong> stops the key at once: every request with it is refused with 403. Its usage
                stays here. This cannot be undone.
              </p>
              <button type="button" class="btn btn-danger-outline" onClick={() => setDialog("revoke")}>
                Revoke key…
              </button>
            </div>
          </section>
        </>
      )}

      {dialog === "rotate" && (
        <ConfirmDialog title="Rotate this key?" confirmLabel="Rotate key" onConfirm={rotate} onClose={() => setDialog(null)}>
          <p>
            A new secret replaces <code>{apiKey.prefix}…</code>. It is shown once, right after this.
          </p>
          <label for="rotate-grace">The old secret stops working</label>
          <select
            id="rotate-grace"
            value={String(grace)}
            onChange={(e) => setGrace(Number((e.currentTarget as HTMLSelectElement).value))}
          >
            {GRACE_CHOICES.map(([seconds, label]) => (
              <option key={seconds} value={String(seconds)}>
                {label}
              </option>
            ))}
          </select>
        </ConfirmDialog>
      )}
      {dialog === "revoke" && (
        <ConfirmDialog
          title="Revoke this key?"
          confirmLabel="Revoke key"
          danger
          onConfirm={revoke}
          onClose={() => setDialog(null)}
        >
          <p>
            <strong>{apiKey.name}</strong> (<code>{apiKey.prefix}…</code>) stops validating immediately; requests with it
            get <code>403 invalid_api_key</code>. This cannot be undone.
          </p>
        </ConfirmDialog>
      )}
    </>
  );
}

/** A revoked key's settings as they were when it was revoked: read-only, since it no longer changes. */
function RevokedSettings({ apiKey }: { apiKey: Key }) {
  const none = <span class="muted">None</span>;
  return (
    <dl class="meta">
      <div>
        <dt>Rate limit</dt>
        <dd>{apiKey.rate_limit_per_hour === null ? none : `${num(apiKey.rate_limit_per_hour)} / hour`}</dd>
      </div>
      <div>
        <dt>Cost limit</dt>
        <dd>{apiKey.cost_limit_per_month === null ? none : `${money(apiKey.cost_limit_per_month)} / month`}</dd>
      </div>
      <div class="meta-wide">
        <dt>More limits</dt>
        <dd>{limitsText(apiKey.limits.filter((l) => !KEY_RESERVED.some(([m, w]) => l.metric === m && l.window === w))) ?? none}</dd>
      </div>
      <div>
        <dt>Max concurrent</dt>
        <dd>{apiKey.max_concurrent === null ? none : num(apiKey.max_concurrent)}</dd>
      </div>
      <div>
        <dt>Alert thresholds</dt>
        <dd>{apiKey.alert_thresholds.length ? apiKey.alert_thresholds.map((t) => `${t}%`).join(", ") : none}</dd>
      </div>
      <div class="meta-wide">
        <dt>Workflows</dt>
        <dd>{apiKey.workflow_ids.length ? apiKey.workflow_ids.join(", ") : "Any"}</dd>
      </div>
      <div class="meta-wide">
        <dt>Allowed origins</dt>
        <dd>{apiKey.allowed_origins.length ? apiKey.allowed_origins.join(", ") : none}</dd>
      </div>
    </dl>
  );
}
