// A hand-drawn SVG bar chart: y axis with gridlines, x labels thinned to
// fit, an optional limit drawn as a dashed line, drawn at the container's
// real pixel width (so text stays legible on a phone). A bar may stack
// the parts of its value (input and output tokens; or groups, such as
// workflows, each its own colour), with a legend. Its
// text alternative is the `summary` (the SVG's accessible name) and a
// data table behind a disclosure.

import { useEffect, useRef, useState } from "preact/hooks";
import { axis } from "./ticks";

export interface Point {
  /** The period in full, for the table and tooltip: `2026-11-25 14:00 UTC`. */
  label: string;
  /** The short x-axis label: `14:00`, `Nov 25`. */
  tick: string;
  value: number;
  /** A period number (hours or days since the epoch): labels go where it divides by the step. */
  order?: number;
  /** More table cells (after the value), matching `extraColumns`. */
  extra?: string[];
  /** With `series`: the value's parts, stacked bottom up in that order. */
  parts?: number[];
}

export interface ChartProps {
  id: string;
  title: string;
  /** Oldest first. */
  points: Point[];
  format: (value: number) => string;
  /** Whole numbers only on the y axis (counts); else USD, in whole micro-dollars. */
  integer?: boolean;
  /** What the chart says, in a sentence: the SVG's accessible name. */
  summary: string;
  limit?: { value: number; label: string } | null;
  /** Table headers: the period, the value, then any extra columns. */
  columns: string[];
  /** Label spacings to choose from, in periods (24 h: 1, 2, 3, 4, 6, 12, 24). */
  steps?: number[];
  /** The names of the points' `parts`, shown as a legend: at most 2 (shades of one colour), or 8 when `categorical`. */
  series?: string[];
  /** The parts are groups (keys, workflows…), each its own hue, rather than the two shares of one total. */
  categorical?: boolean;
}

const HEIGHT = 190;
const TOP = 22;
const BOTTOM = 24;
const RIGHT = 6;

function useWidth(): [{ current: HTMLDivElement | null }, number] {
  const ref = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(0);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    let frame = 0;
    const measure = () => {
      cancelAnimationFrame(frame);
      // Outside the observer callback, so a re-render never loops it.
      frame = requestAnimationFrame(() => setWidth(Math.floor(el.clientWidth)));
    };
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => {
      cancelAnimationFrame(frame);
      observer.disconnect();
    };
  }, []);
  return [ref, width];
}

export function BarChart(props: ChartProps) {
  const [box, measured] = useWidth();
  const width = measured || 600;
  const { points, format, integer = false, limit } = props;
  const max = Math.max(0, ...points.map((p) => p.value), limit ? limit.value : 0);
  const ticks = axis(max, integer);
  const top = ticks[ticks.length - 1];
  const left = Math.max(...ticks.map((t) => format(t).length)) * 6.5 + 10;
  const plotW = Math.max(10, width - left - RIGHT);
  const plotH = HEIGHT - TOP - BOTTOM;
  const y = (v: number) => TOP + plotH - (v / top) * plotH;
  const slot = plotW / Math.max(1, points.length);
  const barW = Math.max(1, Math.min(slot * 0.72, 28));
  // Labels at least 44 px apart: every `step`-th bar, where `order`
  // divides by it (on the clock's hours), else counting back from the newest.
  const least = Math.max(1, Math.ceil(44 / slot));
  const step = (props.steps ?? []).find((s) => s >= least) ?? least;
  const labelled = (p: Point, i: number) =>
    p.order !== undefined && props.steps ? p.order % step === 0 : (points.length - 1 - i) % step === 0;
  // A label near the right edge ends there rather than overflowing it.
  const tickX = (p: Point, i: number): [number, string] => {
    const x = left + i * slot + slot / 2;
    const half = p.tick.length * 3.2;
    if (x + half > width - 1) return [width - 1, "end"];
    if (x - half < left) return [left, "start"];
    return [x, "middle"];
  };
  const titleId = `${props.id}-title`;
  return (
    <figure class={props.categorical ? "chart chart-categorical" : "chart"}>
      <figcaption id={titleId} class="chart-title">
        {props.title}
      </figcaption>
      <div class="chart-box" ref={box}>
        <svg
          role="img"
          aria-label={props.summary}
          width={width}
          height={HEIGHT}
          viewBox={`0 0 ${width} ${HEIGHT}`}
          data-chart={props.id}
        >
          {ticks.map((t) => (
            <g key={t}>
              <line class="grid" x1={left} x2={left + plotW} y1={y(t)} y2={y(t)} />
              <text class="axis" x={left - 6} y={y(t) + 4} text-anchor="end">
                {format(t)}
              </text>
            </g>
          ))}
          {points.map((p, i) => {
            const h = TOP + plotH - y(p.value);
            const over = limit != null && limit.value > 0 && p.value >= limit.value;
            const x = left + i * slot + (slot - barW) / 2;
            const series = props.series;
            return (
              <g key={p.label}>
                {p.value > 0 && series && p.parts ? (
                  <Stack
                    x={x}
                    width={barW}
                    parts={p.parts}
                    names={series}
                    y={y}
                    over={over}
                    title={(name, v) =>
                      props.categorical ? `${p.label}, ${name}: ${format(v)}` : `${p.label}: ${format(v)} ${name.toLowerCase()}`
                    }
                  />
                ) : p.value > 0 && (
                  <rect
                    class={over ? "bar bar-over" : "bar"}
                    x={left + i * slot + (slot - barW) / 2}
                    y={y(p.value)}
                    width={barW}
                    height={Math.max(1, h)}
                    rx={barW > 4 ? 2 : 0}
                  >
                    <title>{`${p.label}: ${format(p.value)}`}</title>
                  </rect>
                )}
                {labelled(p, i) && (
                  <text class="axis" x={tickX(p, i)[0]} y={HEIGHT - 6} text-anchor={tickX(p, i)[1]}>
                    {p.tick}
                  </text>
                )}
              </g>
            );
          })}
          <line class="baseline" x1={left} x2={left + plotW} y1={y(0)} y2={y(0)} />
          {limit && (
            <g class="limit">
              <line x1={left} x2={left + plotW} y1={y(limit.value)} y2={y(limit.value)} />
              <text x={left + plotW} y={y(limit.value) - 5} text-anchor="end">
                {limit.label}
              </text>
            </g>
          )}
        </svg>
      </div>
      {props.series && (
        <ul class="chart-legend" aria-hidden="true">
          {props.series.map((name, i) => (
            <li key={name}>
              <span class={`swatch bar-part-${i}`} />
              {name}
            </li>
          ))}
        </ul>
      )}
      <p class="chart-summary" aria-hidden="true">
        {props.summary}
      </p>
      <details class="chart-table">
        <summary>Show data as a table</summary>
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">{props.title}</caption>
            <thead>
              <tr>
                {props.columns.map((c) => (
                  <th scope="col" key={c}>
                    {c}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {points.map((p) => (
                <tr key={p.label}>
                  <th scope="row">{p.label}</th>
                  <td class="num">{format(p.value)}</td>
                  {(p.extra ?? []).map((cell, i) => (
                    <td class="num" key={i}>
                      {cell}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </figure>
  );
}

/** One bar's parts, stacked bottom up; each at least a pixel tall when not 0. */
function Stack(props: {
  x: number;
  width: number;
  parts: number[];
  names: string[];
  y: (v: number) => number;
  over: boolean;
  title: (name: string, value: number) => string;
}) {
  let below = 0;
  return (
    <>
      {props.parts.map((part, i) => {
        const bottom = props.y(below);
        below += part;
        if (part <= 0) return null;
        const top = props.y(below);
        return (
          <rect
            key={i}
            class={`bar bar-part-${i}${props.over ? " bar-over" : ""}`}
            x={props.x}
            y={Math.min(top, bottom - 1)}
            width={props.width}
            height={Math.max(1, bottom - top)}
          >
            <title>{props.title(props.names[i] ?? "", part)}</title>
          </rect>
        );
      })}
    </>
  );
}
