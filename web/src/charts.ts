// Line charts drawn as SVG: one line per job type over the last minutes.
import { h, replaceChildren } from "./dom";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 480;
const HEIGHT = 160;
const LEFT = 44;
const BOTTOM = 18;
const TOP = 8;
const RIGHT = 8;
// Colour-blind-safe (Okabe-Ito), then greys.
const PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"];
const LINES_SHOWN = PALETTE.length;

export interface Series {
  name: string;
  points: Array<[number, number]>; // [Unix ms, value]
}

// Each type keeps its colour on every chart, in the order types were first seen.
const colours = new Map<string, string>();
function colourOf(name: string): string {
  let colour = colours.get(name);
  if (colour === undefined) {
    colour = PALETTE[colours.size % PALETTE.length] ?? "#888888";
    colours.set(name, colour);
  }
  return colour;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attributes: Record<string, string | number>): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  return element;
}

// 1, 2, 5 times a power of ten, at least `value`.
function niceCeiling(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function label(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(value < 1 ? 2 : 1);
}

export function drawChart(
  container: HTMLElement,
  series: Series[],
  options: { windowMs: number; now: number; unit: string; empty: string },
): void {
  // The busiest lines, when there are more types than colours.
  const peak = (s: Series): number => Math.max(0, ...s.points.map(([, v]) => v));
  const shown = [...series].sort((a, b) => peak(b) - peak(a) || a.name.localeCompare(b.name)).slice(0, LINES_SHOWN);
  shown.sort((a, b) => a.name.localeCompare(b.name));
  const top = niceCeiling(Math.max(0, ...shown.map(peak)));
  const start = options.now - options.windowMs;
  const x = (t: number): number => LEFT + ((t - start) / options.windowMs) * (WIDTH - LEFT - RIGHT);
  const y = (v: number): number => HEIGHT - BOTTOM - (v / top) * (HEIGHT - BOTTOM - TOP);

  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img" });
  for (const value of [0, top / 2, top]) {
    chart.appendChild(svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y(value), y2: y(value), class: "grid" }));
    const text = svg("text", { x: LEFT - 4, y: y(value) + 4, "text-anchor": "end", class: "axis" });
    text.textContent = label(value);
    chart.appendChild(text);
  }
  const span = options.windowMs < 120_000 ? `−${Math.round(options.windowMs / 1000)} s` : `−${Math.round(options.windowMs / 60_000)} min`;
  for (const [t, text] of [[start, span], [options.now, "now"]] as const) {
    const anchor = t === start ? "start" : "end";
    const element = svg("text", { x: x(t), y: HEIGHT - 4, "text-anchor": anchor, class: "axis" });
    element.textContent = text;
    chart.appendChild(element);
  }
  for (const line of shown) {
    const points = line.points.filter(([t]) => t >= start);
    if (points.length === 0) continue;
    const path = points.map(([t, v], i) => `${i === 0 ? "M" : "L"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
    chart.appendChild(svg("path", { d: path, fill: "none", stroke: colourOf(line.name), "stroke-width": 2 }));
  }
  const legend = h("ul", { class: "legend" });
  for (const line of shown) {
    const last = line.points[line.points.length - 1]?.[1] ?? 0;
    const swatch = svg("svg", { viewBox: "0 0 10 10", class: "swatch" });
    swatch.appendChild(svg("rect", { width: 10, height: 10, fill: colourOf(line.name) }));
    legend.appendChild(h("li", {}, swatch, ` ${line.name}: ${label(last)} ${options.unit}`));
  }
  if (shown.length === 0) legend.appendChild(h("li", { class: "muted" }, options.empty));
  replaceChildren(container, chart, legend);
}

// The last hour of a count per minute, as small bars (the queue table's column).
export function sparkline(perMinute: bigint[]): SVGSVGElement {
  const values = perMinute.map(Number);
  const top = Math.max(1, ...values);
  const width = values.length * 2;
  const chart = svg("svg", { viewBox: `0 0 ${Math.max(width, 1)} 16`, class: "sparkline", preserveAspectRatio: "none" });
  values.forEach((value, i) => {
    if (value === 0) return;
    const height = Math.max(1, (value / top) * 16);
    chart.appendChild(svg("rect", { x: i * 2, y: 16 - height, width: 1.6, height }));
  });
  return chart;
}
