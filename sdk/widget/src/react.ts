// `<NodaiQuery …/>`: the widget as a React component. It renders one `<div>`
// and mounts the framework-free widget (core.ts) into it; option changes are
// passed on with `update`, unmounting destroys it. React renders nothing
// inside the div (the widget lives in the div's shadow root), so server
// rendering gives an empty div that the widget fills once hydrated.
//
// Written with `createElement` rather than JSX so the file compiles the same
// whatever JSX runtime the including project is set up for.

import { createElement, useEffect, useRef, type CSSProperties, type ReactElement } from "react";
import { mountNodaiQuery, type NodaiQueryOptions, type NodaiQueryWidget } from "./core.js";

export interface NodaiQueryProps extends NodaiQueryOptions {
  /** Added to the host `<div>`'s class `nodai-query`; set `--nodai-*` custom properties in its CSS, or in `style`. */
  className?: string;
  style?: CSSProperties;
}

export function NodaiQuery(props: NodaiQueryProps): ReactElement {
  const { className, style, onResult, workflowId, apiKey, baseUrl, placeholder, label, buttonText, theme } = props;
  const host = useRef<HTMLDivElement>(null);
  const widget = useRef<NodaiQueryWidget | null>(null);
  // The latest callback, so a new function each render needs no update.
  const latestOnResult = useRef(onResult);
  useEffect(() => {
    latestOnResult.current = onResult;
  });
  // A theme written inline is a new object each render: compare its content.
  const themeKey = theme === undefined ? "" : JSON.stringify(theme);

  useEffect(() => {
    if (host.current === null) return;
    const mounted = mountNodaiQuery(host.current, {
      workflowId,
      apiKey,
      baseUrl,
      placeholder,
      label,
      buttonText,
      theme,
      onResult: (result) => latestOnResult.current?.(result),
    });
    widget.current = mounted;
    return () => {
      mounted.destroy();
      widget.current = null;
    };
    // Mounted once per host with the first options; the effect below passes
    // later changes on.
  }, []);

  useEffect(() => {
    widget.current?.update({
      workflowId,
      apiKey,
      baseUrl,
      placeholder,
      label,
      buttonText,
      theme: themeKey === "" ? undefined : (JSON.parse(themeKey) as NodaiQueryOptions["theme"]),
    });
  }, [workflowId, apiKey, baseUrl, placeholder, label, buttonText, themeKey]);

  // The same class as the script tag's host, so one page rule styles both.
  return createElement("div", { ref: host, className: className ? `nodai-query ${className}` : "nodai-query", style });
}
