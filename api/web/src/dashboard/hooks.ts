// Hash routing (`#/keys/<id>`: a reload keeps the place, and the server
// only ever serves `/`), a poll that runs while the page is visible, and a
// load that ignores answers arriving after the page has gone.

import { useEffect, useRef, useState } from "preact/hooks";

/** The route's segments: `#/keys/key_1` → `["keys", "key_1"]`. */
function parse(hash: string): string[] {
  return hash
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .map((part) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return part;
      }
    });
}

export function useRoute(): string[] {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return parse(hash);
}

/** `#/keys/…` from segments, each escaped. */
export const href = (...parts: string[]): string => `#/${parts.map(encodeURIComponent).join("/")}`;

/** Goes to `target` (a `#/…` href); `replace` leaves no history entry for where we were. */
export function navigate(target: string, replace = false): void {
  if (replace) {
    history.replaceState(null, "", target);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    location.hash = target;
  }
}

/**
 * Calls `run` every `ms` while the page is visible, and at once when it
 * becomes visible again; never two at a time. `enabled: false` pauses it.
 */
export function usePoll(run: () => Promise<unknown>, ms: number, enabled = true): void {
  const latest = useRef(run);
  latest.current = run;
  useEffect(() => {
    if (!enabled) return;
    let busy = false;
    const tick = async () => {
      if (busy || document.visibilityState !== "visible") return;
      busy = true;
      try {
        await latest.current();
      } catch {
        // The page shows its own errors; a poll just tries again.
      } finally {
        busy = false;
      }
    };
    const timer = window.setInterval(tick, ms);
    const visible = () => {
      if (document.visibilityState === "visible") void tick();
    };
    document.addEventListener("visibilitychange", visible);
    return () => {
      window.clearInterval(timer);
      document.removeEventListener("visibilitychange", visible);
    };
  }, [ms, enabled]);
}

/** False once the component has unmounted: a late answer must not set state. */
export function useMounted(): { current: boolean } {
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);
  return mounted;
}

/**
 * Numbers a page's loads and changes, so that an answer cannot overwrite a
 * newer one: `start()` before each load (and before and after a save, a
 * rotate or an action), then keep the load's answer only if `latest(n)`.
 * A background refresh that was already on its way when the user saved
 * carries the state from before the save; it is dropped.
 */
export function useSequence(): { start: () => number; latest: (n: number) => boolean } {
  const last = useRef(0);
  return { start: () => ++last.current, latest: (n) => n === last.current };
}

/**
 * Runs `fetch` now (and whenever `deps` change); returns its latest value
 * (null until the first answer), its latest error (cleared by a success)
 * and `reload`. A late answer after unmounting, or from a load that a later
 * one overtook, is dropped.
 */
export function useLoad<T>(
  fetch: () => Promise<T>,
  deps: unknown[] = [],
): { value: T | null; error: unknown; reload: () => Promise<void> } {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const mounted = useMounted();
  const sequence = useSequence();
  const reload = async () => {
    const n = sequence.start();
    try {
      const next = await fetch();
      if (mounted.current && sequence.latest(n)) {
        setValue(next);
        setError(null);
      }
    } catch (e) {
      if (mounted.current && sequence.latest(n)) setError(e);
    }
  };
  useEffect(() => {
    void reload();
  }, deps);
  return { value, error, reload };
}
