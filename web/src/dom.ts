// Small DOM helpers: elements built in code (no innerHTML, so no markup from data),
// and the formats the views share.
import { JobStatus } from "./gen/mpataki/jobqueue/v1/jobqueue_pb";

type Child = Node | string | null | undefined | false;
type Attributes = Record<string, string | number | boolean | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`no element #${id}`);
  return element as T;
}

export function replaceChildren(parent: Node, ...children: Child[]): void {
  while (parent.firstChild !== null) parent.removeChild(parent.firstChild);
  append(parent, children);
}

export function statusName(status: JobStatus): string {
  return JobStatus[status] ?? String(status);
}

export function statusBadge(status: JobStatus): HTMLSpanElement {
  const name = statusName(status);
  return h("span", { class: `badge status-${name.toLowerCase()}`, "data-testid": "status" }, name);
}

function pad(value: number): string {
  return String(value).padStart(2, "0");
}

// Unix ms as local date and time to the second; 0 (never) as a dash.
export function time(ms: bigint | number): string {
  if (Number(ms) === 0) return "–";
  const date = new Date(Number(ms));
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

export function duration(ms: bigint | number): string {
  const value = Number(ms);
  if (value < 1000) return `${value} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(1)} s`;
  if (value < 3_600_000) return `${Math.floor(value / 60_000)} min ${Math.floor((value % 60_000) / 1000)} s`;
  return `${Math.floor(value / 3_600_000)} h ${Math.floor((value % 3_600_000) / 60_000)} min`;
}

// Calls `run` at most once per `ms`, the last request winning: for refreshes that
// events ask for faster than they are worth doing.
export function throttle(ms: number, run: () => void): () => void {
  let timer: number | null = null;
  let last = 0;
  return () => {
    if (timer !== null) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = window.setTimeout(() => {
      timer = null;
      last = Date.now();
      run();
    }, wait);
  };
}
