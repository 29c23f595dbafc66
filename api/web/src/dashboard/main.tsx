// The nodai management dashboard, served at `/`: sign-in with the admin
// token (kept in sessionStorage for this tab only), then API keys,
// customers, workflows and webhooks on hash routes (`#/keys`,
// `#/keys/<id>`, `#/customers`, `#/customers/+new`, `#/customers/<id>`,
// `#/customers/<id>/new-key`, `#/usage` (the usage explorer),
// `#/workflows`, `#/webhooks`, `#/webhooks/<id>`).

import "./style.css";
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { api, ApiError, onUnauthorized, session } from "./api";
import { CreateCustomerPage, CustomerDetailPage, CustomersPage } from "./customers";
import { UsageExplorerPage } from "./explorer";
import { navigate, useRoute } from "./hooks";
import { KeyDetailPage } from "./keydetail";
import { CreateKeyPage, KeysPage } from "./keys";
import { Empty, ErrorBox, NoticeContext, PageHeader, type Notice } from "./ui";
import { WebhookDetailPage, WebhooksPage } from "./webhooks";
import { WorkflowsPage } from "./workflows";

function SignIn({ reason, onSignedIn }: { reason: string | null; onSignedIn: () => void }) {
  const [token, setToken] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    document.title = "Sign in · nodai";
    input.current?.focus();
  }, []);
  const submit = async (event: Event) => {
    event.preventDefault();
    if (busy) return;
    const value = token.trim();
    if (!value) {
      setError(new Error("Enter the admin token."));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      // Any admin call proves the token; this one is cheap.
      await api("GET", "/api/v1/api-keys?limit=1", undefined, { token: value });
      session.set(value);
      onSignedIn();
    } catch (e) {
      setError(
        e instanceof ApiError && e.status === 401
          ? new ApiError(401, e.code, "That admin token was not accepted. Check it and try again.")
          : e,
      );
      setBusy(false);
    }
  };
  return (
    <main class="signin" id="main">
      <form class="card signin-card" onSubmit={submit} noValidate>
        <p class="brand brand-large" aria-hidden="true">
          nodai
        </p>
        <h1>Sign in to the dashboard</h1>
        {reason && (
          <p class="notice notice-warn" role="alert">
            {reason}
          </p>
        )}
        <div class="field">
          {/* autocomplete="off" and no username field: the token is kept for this tab only, so the
              form does not invite a password manager to keep it. */}
          <label for="admin-token">Admin token</label>
          <input
            id="admin-token"
            ref={input}
            type="password"
            autoComplete="off"
            spellcheck={false}
            value={token}
            onInput={(e) => setToken((e.currentTarget as HTMLInputElement).value)}
            aria-describedby="admin-token-hint"
          />
          <p class="hint" id="admin-token-hint">
            <code>NODAI_ADMIN_TOKEN</code>, or the file <code>&lt;data-dir&gt;/admin-token</code>. It is kept for this
            tab only.
          </p>
        </div>
        <ErrorBox error={error} />
        <button type="submit" class="btn btn-primary btn-block" aria-disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

const SECTIONS: [string, string][] = [
  ["keys", "API keys"],
  ["customers", "Customers"],
  ["usage", "Usage"],
  ["workflows", "Workflows"],
  ["webhooks", "Webhooks"],
];

function Page({ route }: { route: string[] }) {
  const [section, id] = route;
  if (section === "keys" && id === "new" && route.length === 2) return <CreateKeyPage />;
  if (section === "keys" && id && route.length === 2) return <KeyDetailPage id={id} />;
  if (section === "keys" && route.length === 1) return <KeysPage />;
  if (section === "customers" && id === "+new" && route.length === 2) return <CreateCustomerPage />;
  if (section === "customers" && id && route.length === 2) return <CustomerDetailPage id={id} />;
  if (section === "customers" && id && route.length === 3 && route[2] === "new-key") return <CreateKeyPage customerId={id} />;
  if (section === "customers" && route.length === 1) return <CustomersPage />;
  if (section === "usage" && route.length === 1) return <UsageExplorerPage />;
  if (section === "workflows" && route.length === 1) return <WorkflowsPage />;
  if (section === "webhooks" && id && route.length === 2) return <WebhookDetailPage id={id} />;
  if (section === "webhooks" && route.length === 1) return <WebhooksPage />;
  return (
    <>
      <PageHeader title="Page not found" />
      <Empty>
        Nothing lives at <code>{location.hash}</code>. <a href="#/keys">Go to the API keys</a>.
      </Empty>
    </>
  );
}

function App() {
  const [signedIn, setSignedIn] = useState(() => session.token() !== null);
  const [reason, setReason] = useState<string | null>(null);
  const [notice, setNotice] = useState<Notice | null>(null);
  const route = useRoute();
  const hash = `#/${route.map(encodeURIComponent).join("/")}`;
  // A notice goes when the user leaves its page (not when it is set on the way to it).
  const previous = useRef(hash);
  useEffect(() => {
    if (notice && previous.current === notice.at && hash !== notice.at) setNotice(null);
    previous.current = hash;
  }, [hash]);

  useEffect(() => {
    onUnauthorized((error) => {
      setReason(`You were signed out: the server refused the admin token (${error.code}, HTTP 401). Sign in again.`);
      setSignedIn(false);
    });
    if (route.length === 0) navigate("#/keys", true);
  }, []);

  const signOut = () => {
    session.clear();
    setReason("You signed out. The token was removed from this tab.");
    setNotice(null);
    setSignedIn(false);
  };

  if (!signedIn) {
    return (
      <SignIn
        reason={reason}
        onSignedIn={() => {
          setReason(null);
          setSignedIn(true);
        }}
      />
    );
  }
  const shown = notice && notice.at === hash ? notice : null;
  return (
    <NoticeContext.Provider value={(text, at = hash) => setNotice({ text, at })}>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.querySelector("h1")?.focus())}>
        Skip to content
      </a>
      <header class="topbar">
        <div class="topbar-inner">
          <a class="brand" href="#/keys">
            nodai
          </a>
          <nav aria-label="Sections">
            {SECTIONS.map(([path, label]) => (
              <a key={path} href={`#/${path}`} aria-current={route[0] === path ? "page" : undefined}>
                {label}
              </a>
            ))}
          </nav>
          <button type="button" class="btn btn-quiet" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" class="container">
        <div class="notice-slot" role="status" aria-live="polite">
          {shown && (
            <p class="notice">
              <span>{shown.text}</span>
              <button type="button" class="btn-link" onClick={() => setNotice(null)} aria-label="Dismiss notice">
                ✕
              </button>
            </p>
          )}
        </div>
        {/* Keyed by the route, so every page starts fresh. */}
        <Page key={hash} route={route} />
      </main>
    </NoticeContext.Provider>
  );
}

render(<App />, document.getElementById("app")!);
