// `#/customers`: the customers table (search, cursor pages, this billing
// month's usage per row); `#/customers/+new`: the create form ("+" is not
// in a customer id, so no customer's page is shadowed); and
// `#/customers/<id>`: one customer — its usage summed over its keys
// (refreshed every few seconds while visible), its keys, its settings and
// limits (PUT, changed fields only), billing and prepaid credits (balance,
// grants, top up, void: see credits.tsx), and delete, which the server
// refuses (409 customer_has_keys) while the customer has live keys.

import { useEffect, useState } from "preact/hooks";
import { all, api, ApiError, seg, withQuery, type Customer, type Key, type Page, type Usage } from "./api";
import { CreditsSection } from "./credits";
import { changedCustomerFields, createCustomerBody, CustomerForm } from "./customerform";
import { dateTime, money, num, relative, shortDate, periodStart } from "./format";
import { href, navigate, useMounted, usePoll, useSequence } from "./hooks";
import { KeyState } from "./keys";
import { limitsText } from "./limits";
import { thisPeriod, UsageCharts, usageLimits, UsageStats } from "./usage";
import { ConfirmDialog, Empty, ErrorBox, Loading, PageHeader, useNotify } from "./ui";

const PAGE_SIZE = 20;
const REFRESH_MS = 5000;

/** The create page's route. */
export const NEW_CUSTOMER = "#/customers/+new";

export function CustomersPage() {
  const [search, setSearch] = useState("");
  const [q, setQ] = useState("");
  // The cursors of the pages before this one; the last is this page's.
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [page, setPage] = useState<Page<Customer> | null>(null);
  const [usage, setUsage] = useState<Record<string, Usage | null>>({});
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const mounted = useMounted();
  const cursor = cursors[cursors.length - 1];

  useEffect(() => {
    const timer = window.setTimeout(() => {
      if (search.trim() !== q) {
        setQ(search.trim());
        setCursors([null]);
      }
    }, 250);
    return () => window.clearTimeout(timer);
  }, [search]);

  useEffect(() => {
    let live = true;
    setLoading(true);
    setError(null);
    api<Page<Customer>>("GET", withQuery("/api/v1/customers", { limit: PAGE_SIZE, cursor, q }))
      .then(async (result) => {
        if (!live || !mounted.current) return;
        setPage(result);
        setLoading(false);
        const entries = await Promise.all(
          result.data.map(async (c) => {
            try {
              return [c.id, await api<Usage>("GET", `/api/v1/customers/${seg(c.id)}/usage`)] as const;
            } catch {
              return [c.id, null] as const;
            }
          }),
        );
        if (live && mounted.current) setUsage(Object.fromEntries(entries));
      })
      .catch((e) => {
        if (!live || !mounted.current) return;
        setError(e);
        setLoading(false);
      });
    return () => {
      live = false;
    };
  }, [cursor, q]);

  const pageNumber = cursors.length;
  // aria-disabled, not disabled: see the keys list.
  const noPrevious = pageNumber === 1 || loading;
  const noNext = !page?.next_cursor || loading;
  const cell = (u: Usage | null | undefined, show: (u: Usage) => string) => (u ? show(u) : u === null ? "?" : "…");

  return (
    <>
      <PageHeader title="Customers">
        <a class="btn btn-primary" href={NEW_CUSTOMER}>
          Create customer
        </a>
      </PageHeader>
      <p class="lead">
        A customer's keys share its limits: a query counts against its key's limits and its customer's. Its usage is the
        sum of its keys'.
      </p>
      <div class="toolbar">
        <label for="customer-search" class="visually-hidden">
          Search customers
        </label>
        <input
          id="customer-search"
          type="search"
          placeholder="Search by id, name or email"
          value={search}
          onInput={(e) => setSearch((e.currentTarget as HTMLInputElement).value)}
        />
      </div>
      <ErrorBox error={error} title="Could not load the customers:" />
      {loading && !page ? (
        <Loading what="Loading customers" />
      ) : page && page.data.length === 0 && pageNumber === 1 ? (
        q ? (
          <Empty>
            No customers match “{q}”.{" "}
            <button class="btn-link" onClick={() => setSearch("")}>
              Clear the search
            </button>
          </Empty>
        ) : (
          <Empty>
            No customers yet — <a href={NEW_CUSTOMER}>create one</a>.
          </Empty>
        )
      ) : page ? (
        <>
          <div class="table-wrap" aria-busy={loading}>
            <table class="customers-table">
              <caption class="visually-hidden">
                Customers{q ? ` matching “${q}”` : ""}, page {pageNumber}
              </caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">ID</th>
                  <th scope="col">Email</th>
                  <th scope="col">Limits</th>
                  <th scope="col" class="num">
                    Requests this month
                  </th>
                  <th scope="col" class="num">
                    Tokens this month
                  </th>
                  <th scope="col" class="num">
                    Cost this month
                  </th>
                </tr>
              </thead>
              <tbody>
                {page.data.map((c) => {
                  const u = usage[c.id];
                  const limits = limitsText(c.limits);
                  return (
                    <tr key={c.id}>
                      <th scope="row">
                        <a href={href("customers", c.id)}>{c.name}</a>
                      </th>
                      <td>
                        <code>{c.id}</code>
                      </td>
                      <td>{c.email ?? <span class="muted">—</span>}</td>
                      <td class="limits-cell">
                        {limits ?? <span class="muted">None</span>}
                        {c.max_concurrent !== null && (
                          <span class="muted"> · {num(c.max_concurrent)} at once</span>
                        )}
                      </td>
                      <td class="num">{cell(u, (u) => num(thisPeriod(u, c.billing_anchor_day).requests))}</td>
                      <td class="num">{cell(u, (u) => num(thisPeriod(u, c.billing_anchor_day).tokens))}</td>
                      <td class="num">{cell(u, (u) => money(u.cost_this_month))}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
          <p class="hint">“This month” is each customer's billing month, from its anchor day.</p>
          <nav class="pager" aria-label="Pages of customers">
            <button
              type="button"
              class="btn"
              aria-disabled={noPrevious}
              onClick={() => noPrevious || setCursors((c) => c.slice(0, -1))}
            >
              ← Previous
            </button>
            <span class="muted">Page {pageNumber}</span>
            <button
              type="button"
              class="btn"
              aria-disabled={noNext}
              onClick={() => noNext || setCursors((c) => [...c, page.next_cursor])}
            >
              Next →
            </button>
          </nav>
        </>
      ) : null}
    </>
  );
}

export function CreateCustomerPage() {
  const notify = useNotify();
  return (
    <>
      <p class="crumbs">
        <a href="#/customers">← Customers</a>
      </p>
      <PageHeader title="Create a customer" />
      <section class="card">
        <CustomerForm
          idPrefix="new-customer"
          customer={null}
          submitLabel="Create customer"
          onCancel={() => navigate("#/customers")}
          onSubmit={async (fields) => {
            const created = await api<Customer>("POST", "/api/v1/customers", createCustomerBody(fields));
            const at = href("customers", created.id);
            notify(`Customer “${created.name}” created. Give it keys: create one below, or set a key's Customer ID.`, at);
            navigate(at, true);
          }}
        />
      </section>
    </>
  );
}

export function CustomerDetailPage({ id }: { id: string }) {
  const [customer, setCustomer] = useState<Customer | null>(null);
  const [usage, setUsage] = useState<Usage | null>(null);
  const [keys, setKeys] = useState<Key[] | null>(null);
  const [keysError, setKeysError] = useState<unknown>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [refreshError, setRefreshError] = useState<unknown>(null);
  const [refreshedAt, setRefreshedAt] = useState<Date | null>(null);
  const [refreshing, setRefreshing] = useState(false);
  const [saved, setSaved] = useState("");
  const [deleting, setDeleting] = useState(false);
  const mounted = useMounted();
  const sequence = useSequence();
  const notify = useNotify();
  const base = `/api/v1/customers/${seg(id)}`;

  const loadKeys = async () => {
    try {
      // The keys API has no customer filter: every key, this customer's kept.
      const list = await all<Key>("/api/v1/api-keys", { status: "all" });
      if (!mounted.current) return;
      setKeys(list.filter((k) => k.customer_id === id));
      setKeysError(null);
    } catch (e) {
      if (mounted.current) setKeysError(e);
    }
  };
  const load = async (asked = false) => {
    const n = sequence.start();
    if (asked) setRefreshing(true);
    try {
      const [c, u] = await Promise.all([
        api<Customer>("GET", base),
        api<Usage>("GET", `${base}/usage`),
        asked ? loadKeys() : undefined,
      ]);
      if (!mounted.current || !sequence.latest(n)) return;
      setCustomer(c);
      setUsage(u);
      setRefreshedAt(new Date());
      setRefreshError(null);
    } catch (e) {
      if (!mounted.current || !sequence.latest(n)) return;
      if (customer === null || (e instanceof ApiError && e.status === 404)) setLoadError(e);
      else setRefreshError(e);
    } finally {
      if (asked && mounted.current) setRefreshing(false);
    }
  };
  useEffect(() => {
    void load();
    void loadKeys();
  }, [id]);
  usePoll(load, REFRESH_MS, !loadError && customer !== null);

  const crumbs = (
    <p class="crumbs">
      <a href="#/customers">← Customers</a>
    </p>
  );
  if (loadError) {
    const missing = loadError instanceof ApiError && loadError.status === 404;
    return (
      <>
        {crumbs}
        <PageHeader title={missing ? "Customer not found" : "Customer"} />
        {missing ? (
          <Empty>
            There is no customer <code>{id}</code>. <a href="#/customers">Back to the customers</a>.
          </Empty>
        ) : (
          <ErrorBox error={loadError} title="Could not load the customer:" />
        )}
      </>
    );
  }
  if (!customer || !usage) {
    return (
      <>
        {crumbs}
        <PageHeader title="Customer" />
        <Loading what="Loading the customer" />
      </>
    );
  }

  const liveKeys = keys?.filter((k) => k.revoked_at === null) ?? null;
  const limits = limitsText(customer.limits);
  const anchor = customer.billing_anchor_day;
  const remove = async () => {
    sequence.start();
    await api<void>("DELETE", base);
    notify(`Customer “${customer.name}” (${customer.id}) was deleted. Its usage stays in the usage API.`, "#/customers");
    navigate("#/customers", true);
  };

  return (
    <>
      {crumbs}
      <PageHeader title={customer.name}>
        <button type="button" class="btn btn-danger-outline" onClick={() => setDeleting(true)}>
          Delete customer…
        </button>
      </PageHeader>
      <dl class="meta">
        <div>
          <dt>ID</dt>
          <dd>
            <code class="id">{customer.id}</code>
          </dd>
        </div>
        <div>
          <dt>Email</dt>
          <dd>{customer.email ?? <span class="muted">—</span>}</dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd>{dateTime(customer.created_at)}</dd>
        </div>
        <div>
          <dt>Last used</dt>
          <dd title={dateTime(usage.last_used_at)}>{relative(usage.last_used_at)}</dd>
        </div>
        <div>
          <dt>Max concurrent</dt>
          <dd>{customer.max_concurrent === null ? <span class="muted">No cap</span> : num(customer.max_concurrent)}</dd>
        </div>
        <div class="meta-wide">
          <dt>Limits</dt>
          <dd class="customer-limits">{limits ?? <span class="muted">None</span>}</dd>
        </div>
      </dl>

      <section class="card" aria-labelledby="usage-title">
        <div class="section-header">
          <h2 id="usage-title">Usage, all its keys</h2>
          <div class="actions">
            <span class="muted small" aria-live="off">
              {refreshedAt ? `Updated ${refreshedAt.toISOString().slice(11, 19)} UTC · every ${REFRESH_MS / 1000} s` : ""}
            </span>
            <button type="button" class="btn" onClick={() => refreshing || void load(true)} aria-disabled={refreshing}>
              {refreshing ? "Refreshing…" : "Refresh"}
            </button>
          </div>
        </div>
        <ErrorBox error={refreshError} title="Could not refresh:" />
        <UsageStats usage={usage} limits={usageLimits(customer.limits)} anchorDay={anchor} />
        <UsageCharts usage={usage} limits={usageLimits(customer.limits)} anchorDay={anchor} />
      </section>

      <section class="card" aria-labelledby="keys-title">
        <div class="section-header">
          <h2 id="keys-title">Keys</h2>
          <div class="actions">
            <a class="btn btn-small" href={href("customers", customer.id, "new-key")}>
              Create key
            </a>
          </div>
        </div>
        <ErrorBox error={keysError} title="Could not load the keys:" />
        {keys === null ? (
          !keysError && <Loading what="Loading the customer's keys" />
        ) : keys.length === 0 ? (
          <Empty>
            No keys yet. <a href={href("customers", customer.id, "new-key")}>Create one</a>, or set an existing key's
            Customer ID to <code>{customer.id}</code>.
          </Empty>
        ) : (
          <div class="table-wrap">
            <table class="customer-keys">
              <caption class="visually-hidden">Keys of {customer.name}</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Key</th>
                  <th scope="col">Status</th>
                  <th scope="col">Its own limits</th>
                  <th scope="col">Last used</th>
                </tr>
              </thead>
              <tbody>
                {keys.map((k) => (
                  <tr key={k.id}>
                    <th scope="row">
                      <a href={href("keys", k.id)}>{k.name}</a>
                    </th>
                    <td>
                      <code>{k.prefix}…</code>
                    </td>
                    <td>
                      <KeyState apiKey={k} />
                    </td>
                    <td class="limits-cell">{limitsText(k.limits) ?? <span class="muted">None</span>}</td>
                    <td>
                      {k.last_used_at ? (
                        <time dateTime={k.last_used_at} title={dateTime(k.last_used_at)}>
                          {relative(k.last_used_at)}
                        </time>
                      ) : (
                        <span class="muted">Never</span>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <section class="card" aria-labelledby="settings-title">
        <h2 id="settings-title">Settings and limits</h2>
        {/* Not keyed on the customer: a refresh must not rebuild the form under the user's edits. */}
        <CustomerForm
          idPrefix="customer"
          customer={customer}
          submitLabel="Save changes"
          status={saved}
          onSubmit={async (fields, from) => {
            setSaved("");
            const body = changedCustomerFields(fields, from ?? customer);
            if (Object.keys(body).length === 0) {
              setSaved("Nothing changed.");
              return;
            }
            sequence.start();
            const updated = await api<Customer>("PUT", base, body);
            sequence.start();
            return updated;
          }}
          onSaved={(updated) => {
            setCustomer(updated);
            setSaved(`Saved at ${new Date().toISOString().slice(11, 19)} UTC.`);
          }}
        />
      </section>

      <section class="card" aria-labelledby="billing-title">
        <h2 id="billing-title">Billing</h2>
        <dl class="meta">
          <div>
            <dt>Billing</dt>
            <dd>{customer.billing === "prepaid" ? "Prepaid" : "Postpaid"}</dd>
          </div>
          <div>
            <dt>Low-balance threshold</dt>
            <dd>
              {customer.low_balance_threshold === null ? (
                <span class="muted">None</span>
              ) : (
                money(customer.low_balance_threshold)
              )}
            </dd>
          </div>
          <div>
            <dt>Billing month</dt>
            <dd>
              {anchor === 1 ? "Calendar month" : `From day ${anchor}`}
              <span class="muted small"> (this one since {shortDate(periodStart(anchor))})</span>
            </dd>
          </div>
          <div>
            <dt>Cost this month</dt>
            <dd>{money(usage.cost_this_month)}</dd>
          </div>
        </dl>
        <CreditsSection customer={customer} refreshMs={REFRESH_MS} />
      </section>

      <section class="card danger-zone" aria-labelledby="danger-title">
        <h2 id="danger-title">Delete</h2>
        <div class="danger-row">
          <p>
            <strong>Delete</strong> removes the customer and its shared limits; its usage stays readable. A customer
            with live keys cannot be deleted: revoke them, or move them to another customer, first.
            {liveKeys && liveKeys.length > 0 && (
              <>
                {" "}
                It has <strong>{liveKeys.length === 1 ? "1 live key" : `${liveKeys.length} live keys`}</strong>.
              </>
            )}
          </p>
          <button type="button" class="btn btn-danger-outline" onClick={() => setDeleting(true)}>
            Delete customer…
          </button>
        </div>
      </section>

      {deleting && (
        <ConfirmDialog
          title="Delete this customer?"
          confirmLabel="Delete customer"
          danger
          onConfirm={remove}
          onClose={() => setDeleting(false)}
        >
          <p>
            <strong>{customer.name}</strong> (<code>{customer.id}</code>) and its limits are removed. Its usage stays
            readable. This cannot be undone.
          </p>
          {liveKeys && liveKeys.length > 0 && (
            <p class="notice notice-warn">
              It still has {liveKeys.length === 1 ? "1 live key" : `${liveKeys.length} live keys`}: the server refuses
              to delete it until they are revoked or moved to another customer.
            </p>
          )}
        </ConfirmDialog>
      )}
    </>
  );
}
