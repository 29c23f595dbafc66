// Small pieces every page uses: the page heading (which takes focus when a
// page opens), error and loading states, the confirmation dialog, the
// show-once secret panel, and the app-wide notice.

import type { ComponentChildren } from "preact";
import { createContext } from "preact";
import { useContext, useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";

/** The page's `<h1>`; focused when the page opens so screen readers announce it. */
export function PageHeader({ title, children }: { title: string; children?: ComponentChildren }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    heading.current?.focus({ preventScroll: true });
  }, []);
  useEffect(() => {
    document.title = `${title} · nodai`;
  }, [title]);
  return (
    <div class="page-header">
      <h1 tabIndex={-1} ref={heading}>
        {title}
      </h1>
      {children && <div class="actions">{children}</div>}
    </div>
  );
}

/** A problem+json answer as the user should see it: its detail, then code and status. */
export function ErrorBox({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const e =
    error instanceof ApiError
      ? error
      : new ApiError(0, "client_error", error instanceof Error ? error.message : String(error));
  return (
    <div class="error" role="alert">
      {title && <strong>{title} </strong>}
      <span class="error-detail">{e.detail}</span>
      {e.code !== "client_error" && (
        <span class="error-code">
          {" "}
          ({e.code}
          {e.status ? `, HTTP ${e.status}` : ""})
        </span>
      )}
    </div>
  );
}

export function Loading({ what = "Loading" }: { what?: string }) {
  return (
    <p class="loading" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" />
      {what}…
    </p>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <div class="empty">{children}</div>;
}

/**
 * A modal confirmation on a real `<dialog>`: focus moves into it (to Cancel,
 * the safe choice), Escape cancels, and focus returns to the button that
 * opened it, or to the page's heading if that button went (the row it
 * deleted). `onConfirm` may fail: its error shows inside the dialog. While
 * it runs the buttons are aria-disabled, not disabled, so focus stays.
 */
export function ConfirmDialog(props: {
  title: string;
  children?: ComponentChildren;
  confirmLabel: string;
  danger?: boolean;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const cancel = useRef<HTMLButtonElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const opener = document.activeElement as HTMLElement | null;
    const el = dialog.current;
    if (el && !el.open) el.showModal();
    cancel.current?.focus();
    return () => {
      if (el?.open) el.close();
      focusOr(opener);
    };
  }, []);
  const confirm = async (event: Event) => {
    event.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      await props.onConfirm();
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  const id = `dialog-${props.title.replace(/\W+/g, "-").toLowerCase()}`;
  return (
    <dialog
      ref={dialog}
      class="dialog"
      aria-labelledby={`${id}-title`}
      onCancel={(event) => {
        event.preventDefault();
        if (!busy) props.onClose();
      }}
    >
      <form onSubmit={confirm}>
        <h2 id={`${id}-title`}>{props.title}</h2>
        <div class="dialog-body">{props.children}</div>
        <ErrorBox error={error} />
        <div class="dialog-actions">
          <button type="button" class="btn" ref={cancel} onClick={() => busy || props.onClose()} aria-disabled={busy}>
            Cancel
          </button>
          <button type="submit" class={props.danger ? "btn btn-danger" : "btn btn-primary"} aria-disabled={busy}>
            {busy ? "Working…" : props.confirmLabel}
          </button>
        </div>
      </form>
    </dialog>
  );
}

/** Focuses `el` if it is still on the page, else the page's `<h1>` (never leaving focus on `<body>`). */
export function focusOr(el: HTMLElement | null): void {
  if (el?.isConnected) el.focus();
  else document.querySelector("h1")?.focus();
}

/** Copies `text`: the async clipboard API, else a selection and execCommand. */
async function copy(text: string, fallbackNode: HTMLElement | null): Promise<boolean> {
  try {
    if (navigator.clipboard) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // Not allowed here (no focus, no permission, not a secure context): fall back.
  }
  if (!fallbackNode) return false;
  const selection = window.getSelection();
  const range = document.createRange();
  range.selectNodeContents(fallbackNode);
  selection?.removeAllRanges();
  selection?.addRange(range);
  try {
    return document.execCommand("copy");
  } catch {
    return false;
  }
}

/**
 * A secret shown once (a new API key, a webhook signing secret). The caller
 * holds the secret and drops it in `onDone`, so that afterwards it is in
 * neither the DOM nor any state. Focus that was in it goes to the page's
 * `<h1>` when it closes (a new page's heading takes it after that).
 */
export function SecretReveal(props: {
  title: string;
  label: string;
  secret: string;
  children?: ComponentChildren;
  doneLabel?: string;
  onDone: () => void;
}) {
  const code = useRef<HTMLElement>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  const box = useRef<HTMLElement>(null);
  const [copied, setCopied] = useState<"" | "copied" | "manual">("");
  useEffect(() => {
    heading.current?.focus();
    const section = box.current;
    return () => {
      if (section?.contains(document.activeElement)) focusOr(null);
    };
  }, []);
  return (
    <section class="reveal" aria-labelledby="reveal-title" ref={box}>
      <h2 id="reveal-title" tabIndex={-1} ref={heading}>
        {props.title}
      </h2>
      {props.children}
      <p class="reveal-warning">
        <strong>Copy it now: you will not see it again.</strong> nodai stores only a hash of it; if you lose it,
        rotate the key to get a new one.
      </p>
      <p class="secret-label" id="secret-label">
        {props.label}
      </p>
      <div class="secret-row">
        <code class="secret" ref={code} aria-labelledby="secret-label">
          {props.secret}
        </code>
        <button
          type="button"
          class="btn"
          onClick={async () => setCopied((await copy(props.secret, code.current)) ? "copied" : "manual")}
        >
          Copy
        </button>
      </div>
      <p class="copy-status" role="status" aria-live="polite">
        {copied === "copied"
          ? "Copied to the clipboard."
          : copied === "manual"
            ? "The browser blocked copying: the text is selected, press Ctrl+C (⌘C)."
            : ""}
      </p>
      <button type="button" class="btn btn-primary" onClick={props.onDone}>
        {props.doneLabel ?? "Done, I have stored it"}
      </button>
    </section>
  );
}

export interface Notice {
  text: string;
  /** The route (hash) it belongs to; it hides elsewhere. */
  at: string;
}

export const NoticeContext = createContext<(text: string, at?: string) => void>(() => {});

/** Shows `text` on route `at` (default: the current one) until the next notice or dismissal. */
export const useNotify = () => useContext(NoticeContext);

/** A labelled form row; `error` shows under it (its input says aria-invalid, see `describe`). */
export function Field(props: {
  label: string;
  hint?: ComponentChildren;
  id: string;
  error?: string | null;
  children: ComponentChildren;
}) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.error && (
        <p class="field-error" id={`${props.id}-error`}>
          {props.error}
        </p>
      )}
      {props.hint && (
        <p class="hint" id={`${props.id}-hint`}>
          {props.hint}
        </p>
      )}
    </div>
  );
}

/** The input's aria-invalid and aria-describedby (its error, then its hint) for a `Field`. */
export const describe = (id: string, error: unknown, hint = true) => ({
  "aria-invalid": error ? true : undefined,
  "aria-describedby": [error && `${id}-error`, hint && `${id}-hint`].filter(Boolean).join(" ") || undefined,
});
