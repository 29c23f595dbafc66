// `#/keys`: the keys table (live, revoked or all keys; search, cursor pages,
// this month's usage per row) and `#/keys/new`: the create form, then the
// new key shown once.

import { useEffect, useState } from "preact/hooks";
import { api, seg, withQuery, type Key, type KeyStatus, type KeyWithSecret, type Page, type Usage } from "./api";
import { dateTime, micros, money, num, relative } from "./format";
import { href, navigate, useMounted } from "./hooks";
import { createBody, KeyForm } from "./keyform";
import { requestsThisMonth } from "./usage";
import { Empty, ErrorBox, Loading, PageHeader, SecretReveal } from "./ui";

const PAGE_SIZE = 20;

/** Revoked, inactive (turned off), expired or active. */
export function KeyState({ apiKey }: { apiKey: Key }) {
  if (apiKey.revoked_at !== null) {
    return (
      <span class="badge badge-revoked" title={`Revoked on ${dateTime(apiKey.revoked_at)}`}>
        Revoked
      </span>
    );
  }
  const expired = apiKey.expires_at !== null && new Date(apiKey.expires_at).getTime() <= Date.now();
  const [label, cls] = !apiKey.active
    ? ["Inactive", "badge badge-off"]
    : expired
      ? ["Expired", "badge badge-bad"]
      : ["Active", "badge badge-ok"];
  return <span class={cls}>{label}</span>;
}

const STATUSES: [KeyStatus, string][] = [
  ["live", "Live"],
  ["revoked", "Revoked"],
  ["all", "All"],
];

/**
 * The limits `usage` has reached, as sentences ("" when none): requests in
 * the rolling hour at `rate_limit_per_hour`, or this month's cost at
 * `cost_limit_per_month`. Queries with the key are refused (429, 402) then.
 */
export function limitsReached(apiKey: Key, usage: Usage): string {
  const reached: string[] = [];
  if (apiKey.rate_limit_per_hour !== null && usage.requests_this_hour >= apiKey.rate_limit_per_hour) {
    reached.push(`rate limit: ${num(usage.requests_this_hour)} of ${num(apiKey.rate_limit_per_hour)} requests in the last hour`);
  }
  if (apiKey.cost_limit_per_month !== null && micros(usage.cost_this_month) >= micros(apiKey.cost_limit_per_month)) {
    reached.push(`cost limit: ${money(usage.cost_this_month)} of ${money(apiKey.cost_limit_per_month)} this month`);
  }
  return reached.join("; ");
}

/** "At limit", with which limit and how far, when the key's usage has reached one. */
export function AtLimit({ apiKey, usage }: { apiKey: Key; usage: Usage | null | undefined }) {
  // A revoked key is refused whatever its usage.
  const reached = usage && apiKey.revoked_at === null ? limitsReached(apiKey, usage) : "";
  if (!reached) return null;
  return (
    <span class="badge badge-wait" title={`At its ${reached}`}>
      At limit<span class="visually-hidden"> ({reached})</span>
    </span>
  );
}

export function KeysPage() {
  const [search, setSearch] = useState("");
  const [q, setQ] = useState("");
  const [status, setStatus] = useState<KeyStatus>("live");
  // The cursors of the pages before this one; the last is this page's.
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [page, setPage] = useState<Page<Key> | null>(null);
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
    api<Page<Key>>("GET", withQuery("/api/v1/api-keys", { limit: PAGE_SIZE, cursor, q, status }))
      .then(async (result) => {
        if (!live || !mounted.current) return;
        setPage(result);
        setLoading(false);
        const entries = await Promise.all(
          result.data.map(async (k) => {
            try {
              return [k.id, await api<Usage>("GET", `/api/v1/api-keys/${seg(k.id)}/usage`)] as const;
            } catch {
              return [k.id, null] as const;
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
  }, [cursor, q, status]);

  const pageNumber = cursors.length;
  // aria-disabled, not disabled: a button disabled under the focus (while
  // the next page loads, or on the last page) drops the focus to <body>.
  const noPrevious = pageNumber === 1 || loading;
  const noNext = !page?.next_cursor || loading;

  return (
    <>
      <PageHeader title="API keys">
        <a class="btn btn-primary" href="#/keys/new">
          Create key
        </a>
      </PageHeader>
      <div class="toolbar toolbar-keys">
        <div class="toolbar-search">
          <label for="key-search" class="visually-hidden">
            Search keys
          </label>
          <input
            id="key-search"
            type="search"
            placeholder="Search by name, owner, prefix or id"
            value={search}
            onInput={(e) => setSearch((e.currentTarget as HTMLInputElement).value)}
          />
        </div>
        <div class="toolbar-filter">
          <label for="key-status">Show</label>
          <select
            id="key-status"
            value={status}
            onChange={(e) => {
              setStatus((e.currentTarget as HTMLSelectElement).value as KeyStatus);
              setCursors([null]);
            }}
          >
            {STATUSES.map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </div>
      </div>
      <ErrorBox error={error} title="Could not load the keys:" />
      {loading && !page ? (
        <Loading what="Loading keys" />
      ) : page && page.data.length === 0 && pageNumber === 1 ? (
        q ? (
          <Empty>
            No {status === "revoked" ? "revoked " : ""}keys match “{q}”.{" "}
            <button class="btn-link" onClick={() => setSearch("")}>Clear the search</button>
          </Empty>
        ) : status === "revoked" ? (
          <Empty>No revoked keys.</Empty>
        ) : (
          <Empty>
            {status === "live" ? "No live keys" : "No keys yet"} — <a href="#/keys/new">create one</a>.
          </Empty>
        )
      ) : page ? (
        <>
          <div class="table-wrap" aria-busy={loading}>
            <table class="keys-table">
              <caption class="visually-hidden">
                {status === "all" ? "All API keys" : status === "revoked" ? "Revoked API keys" : "Live API keys"}
                {q ? ` matching “${q}”` : ""}, page {pageNumber}
              </caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Key</th>
                  <th scope="col">Owner</th>
                  <th scope="col">Customer</th>
                  <th scope="col">Status</th>
                  <th scope="col" class="num">
                    Rate limit
                  </th>
                  <th scope="col" class="num">
                    Cost limit
                  </th>
                  <th scope="col">Last used</th>
                  <th scope="col" class="num">
                    Requests this month
                  </th>
                  <th scope="col" class="num">
                    Cost this month
                  </th>
                </tr>
              </thead>
              <tbody>
                {page.data.map((k) => {
                  const u = usage[k.id];
                  return (
                    <tr key={k.id}>
                      <th scope="row">
                        <a href={href("keys", k.id)}>{k.name}</a>
                      </th>
                      <td>
                        <code>{k.prefix}…</code>
                      </td>
                      <td>{k.owner ?? <span class="muted">—</span>}</td>
                      <td>
                        {k.customer_id === null ? (
                          <span class="muted">—</span>
                        ) : (
                          <a href={href("customers", k.customer_id)}>
                            <code>{k.customer_id}</code>
                          </a>
                        )}
                      </td>
                      <td>
                        <span class="badges">
                          <KeyState apiKey={k} />
                          <AtLimit apiKey={k} usage={u} />
                        </span>
                        {k.revoked_at !== null && (
                          <span class="revoked-on small muted">
                            {" "}
                            on <time dateTime={k.revoked_at}>{dateTime(k.revoked_at)}</time>
                          </span>
                        )}
                      </td>
                      <td class="num">
                        {k.rate_limit_per_hour === null ? (
                          <span class="muted">None</span>
                        ) : (
                          `${num(k.rate_limit_per_hour)} / h`
                        )}
                      </td>
                      <td class="num">
                        {k.cost_limit_per_month === null ? (
                          <span class="muted">None</span>
                        ) : (
                          `${money(k.cost_limit_per_month)} / mo`
                        )}
                      </td>
                      <td>
                        {k.last_used_at ? (
                          <time dateTime={k.last_used_at} title={dateTime(k.last_used_at)}>
                            {relative(k.last_used_at)}
                          </time>
                        ) : (
                          <span class="muted">Never</span>
                        )}
                      </td>
                      <td class="num">{u ? num(requestsThisMonth(u)) : u === null ? "?" : "…"}</td>
                      <td class="num">{u ? money(u.cost_this_month) : u === null ? "?" : "…"}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
          <nav class="pager" aria-label="Pages of keys">
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

/** `customerId`: the key is created for this customer (from its page), which the form starts with. */
export function CreateKeyPage({ customerId }: { customerId?: string }) {
  // The plaintext lives here only, from the 201 until "Done".
  const [created, setCreated] = useState<{ id: string; name: string; prefix: string; secret: string } | null>(null);
  if (created) {
    return (
      <>
        <PageHeader title="Key created" />
        <SecretReveal
          title="Your new API key"
          label={`Secret key for “${created.name}”`}
          secret={created.secret}
          onDone={() => {
            const id = created.id;
            setCreated(null);
            navigate(href("keys", id), true);
          }}
        >
          <p>
            Send it as the <code>X-API-Key</code> header. Its prefix, <code>{created.prefix}</code>, is how the
            dashboard shows it from now on.
          </p>
        </SecretReveal>
      </>
    );
  }
  return (
    <>
      <p class="crumbs">
        {customerId ? (
          <a href={href("customers", customerId)}>← Customer {customerId}</a>
        ) : (
          <a href="#/keys">← API keys</a>
        )}
      </p>
      <PageHeader title="Create an API key" />
      <KeyForm
        idPrefix="new-key"
        apiKey={null}
        customerId={customerId}
        submitLabel="Create key"
        onCancel={() => navigate(customerId ? href("customers", customerId) : "#/keys")}
        onSubmit={async (fields) => {
          const { key, id, name, prefix } = await api<KeyWithSecret>("POST", "/api/v1/api-keys", createBody(fields));
          setCreated({ id, name, prefix, secret: key });
        }}
      />
    </>
  );
}
