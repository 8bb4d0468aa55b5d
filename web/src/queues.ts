// The queues: live counts per type (GetQueueStats), pause/resume, bulk retry of the
// dead letters, the charts of throughput and depth sampled in the page, and the
// workers (ListWorkers). Refreshed every REFRESH_MS, and soon after a job event.
import { actionButton, allowed } from "./auth";
import { api } from "./api";
import { drawChart, sparkline, type Series } from "./charts";
import { byId, duration, h, replaceChildren, throttle, time } from "./dom";
import { JobStatus, type QueueStats } from "./gen/mpataki/jobqueue/v1/jobqueue_pb";
import { attempt, showError, showInfo } from "./notices";
import { onShown } from "./visibility";

const REFRESH_MS = 2_000;
// After a job event: soon, but not for each event of a busy queue.
const EVENT_REFRESH_MS = 300;
// The charts show the samples since the page opened, at least the first and at most the last.
const CHART_WINDOW_MS = [30_000, 5 * 60_000] as const;
const SAMPLES_KEPT = 1_000;
// The charts' samples are this far apart at least.
const SAMPLE_EVERY_MS = 1_500;
// Pages of RetryJobs one bulk retry goes through at most (1,000 jobs each).
const RETRY_PAGES = 1_000;

type ShowJobs = (type: string, status: JobStatus) => void;

interface Sample {
  at: number;
  depth: Map<string, number>; // PENDING jobs by type
  rate: Map<string, number>; // jobs finished (completed or failed) per second since the last sample
}

interface Row {
  row: HTMLTableRowElement;
  cells: Record<string, HTMLElement>;
  pause: HTMLButtonElement;
  resume: HTMLButtonElement;
  retry: HTMLButtonElement;
  spark: HTMLElement;
}

const COUNTS = [
  "pending", "scheduled", "ready", "running", "completed", "failed", "cancelled", "expired", "workers",
] as const;
// Which jobs a click on a count lists.
const COUNT_STATUS: Partial<Record<(typeof COUNTS)[number], JobStatus>> = {
  pending: JobStatus.PENDING,
  running: JobStatus.RUNNING,
  completed: JobStatus.COMPLETED,
  failed: JobStatus.FAILED,
  cancelled: JobStatus.CANCELLED,
  expired: JobStatus.EXPIRED,
};

const rows = new Map<string, Row>();
const samples: Sample[] = [];
let lastFinished: { readAt: number; byType: Map<string, Map<number, number>> } | null = null;
let showJobs: ShowJobs = () => undefined;
let refreshing = false;
let again = false;

// Jobs finished (completed + failed for good) in each minute (Unix ms // 60000) of the stats.
function finishedByMinute(stats: QueueStats, readAt: number): Map<number, number> {
  const minutes = new Map<number, number>();
  const last = Math.floor(readAt / 60_000);
  const count = stats.completedPerMinute.length;
  for (let i = 0; i < count; i++) {
    const done = Number(stats.completedPerMinute[i] ?? 0n) + Number(stats.failedPerMinute[i] ?? 0n);
    minutes.set(last - (count - 1 - i), done);
  }
  return minutes;
}

// Jobs finished between two reads of the per-minute counts: the growth of each minute's count.
function finishedBetween(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [minute, count] of after) total += Math.max(0, count - (before.get(minute) ?? 0));
  return total;
}

function sample(queues: QueueStats[], readAt: number): Sample {
  const byType = new Map(queues.map((q) => [q.type, finishedByMinute(q, readAt)]));
  const rate = new Map<string, number>();
  if (lastFinished !== null && readAt > lastFinished.readAt) {
    const seconds = (readAt - lastFinished.readAt) / 1000;
    for (const [type, after] of byType) {
      const before = lastFinished.byType.get(type);
      rate.set(type, before === undefined ? 0 : finishedBetween(before, after) / seconds);
    }
  }
  lastFinished = { readAt, byType };
  return { at: readAt, depth: new Map(queues.map((q) => [q.type, Number(q.pending)])), rate };
}

function seriesOf(pick: (s: Sample) => Map<string, number>): Series[] {
  const byType = new Map<string, Array<[number, number]>>();
  for (const s of samples) {
    for (const [type, value] of pick(s)) {
      const points = byType.get(type) ?? [];
      points.push([s.at, value]);
      byType.set(type, points);
    }
  }
  return [...byType].map(([name, points]) => ({ name, points }));
}

function drawCharts(now: number): void {
  const [shortest, longest] = CHART_WINDOW_MS;
  const windowMs = Math.min(longest, Math.max(shortest, now - (samples[0]?.at ?? now)));
  const empty = samples.length < 2 ? "measured from the second read of the counts" : "no queues yet";
  drawChart(byId("chart-throughput"), seriesOf((s) => s.rate), { windowMs, now, unit: "jobs/s", empty });
  drawChart(byId("chart-depth"), seriesOf((s) => s.depth), { windowMs, now, unit: "pending", empty: "no queues yet" });
}

// Jobs finished in the last 60 s, estimated from the per-minute counts: the current
// minute's, and the part of the previous minute's that is still within 60 s.
function lastMinute(stats: QueueStats, readAt: number): number {
  const count = stats.completedPerMinute.length;
  const finished = (i: number): number =>
    Number(stats.completedPerMinute[i] ?? 0n) + Number(stats.failedPerMinute[i] ?? 0n);
  const intoMinute = (readAt % 60_000) / 60_000;
  return Math.round(finished(count - 1) + finished(count - 2) * (1 - intoMinute));
}

async function retryDeadLetters(type: string, failed: number): Promise<void> {
  if (!window.confirm(`Retry the ${failed} dead letters (FAILED jobs) of ${type}?`)) return;
  let retried = 0;
  let pageToken = "";
  for (let page = 0; page < RETRY_PAGES; page++) {
    const answer = await attempt("RetryJobs", () =>
      api.retryJobs({ filter: { type, status: JobStatus.FAILED }, limit: 1000, pageToken }),
    );
    if (answer === undefined) break;
    retried += answer.count;
    pageToken = answer.nextPageToken;
    if (pageToken === "") break;
  }
  showInfo(`RetryJobs: ${retried} dead letters of ${type} retried`);
  refreshSoon();
}

async function setPaused(type: string, paused: boolean): Promise<void> {
  if (paused) await attempt("PauseQueue", () => api.pauseQueue({ type }));
  else await attempt("ResumeQueue", () => api.resumeQueue({ type }));
  refreshSoon();
}

function countCell(name: (typeof COUNTS)[number], type: string): HTMLElement {
  const status = COUNT_STATUS[name];
  if (status === undefined) return h("td", { class: "num", "data-testid": `count-${name}` });
  const link = h("a", { href: "#jobs", "data-testid": `count-${name}`, title: `list the ${name} jobs` });
  link.addEventListener("click", () => showJobs(type, status));
  return link;
}

function newRow(type: string): Row {
  const cells: Record<string, HTMLElement> = {};
  const row = h("tr", { "data-testid": `queue-${type}`, "data-type": type });
  const name = h("a", { href: "#jobs", title: "list its unfinished jobs" }, type);
  name.addEventListener("click", () => showJobs(type, JobStatus.UNSPECIFIED));
  row.appendChild(h("th", { scope: "row" }, name));
  cells.state = h("span", { "data-testid": "state" });
  row.appendChild(h("td", {}, cells.state));
  for (const count of COUNTS) {
    const cell = countCell(count, type);
    cells[count] = cell;
    row.appendChild(cell.tagName === "TD" ? cell : h("td", { class: "num" }, cell));
  }
  cells.age = h("td", { class: "num", "data-testid": "oldest-ready" });
  cells.throughput = h("td", { class: "num", "data-testid": "throughput" });
  const spark = h("td", { class: "spark" });
  row.append(cells.age, cells.throughput, spark);
  const pause = actionButton("PauseQueue", "Pause", `pause-${type}`, () => void setPaused(type, true));
  const resume = actionButton("ResumeQueue", "Resume", `resume-${type}`, () => void setPaused(type, false));
  const retry = actionButton("RetryJobs", "Retry dead letters", `retry-dead-${type}`, () =>
    void retryDeadLetters(type, Number(row.dataset.failed ?? "0")),
  );
  row.appendChild(h("td", { class: "actions" }, pause, resume, retry));
  return { row, cells, pause, resume, retry, spark };
}

function fill(row: Row, stats: QueueStats, readAt: number, rate: number | undefined): void {
  for (const count of COUNTS) row.cells[count]!.textContent = String(stats[count]);
  row.cells.state!.textContent = stats.paused ? "paused" : "active";
  row.cells.state!.className = stats.paused ? "badge paused" : "badge active";
  row.cells.age!.textContent = stats.oldestReadyAgeMs === 0n ? "–" : duration(stats.oldestReadyAgeMs);
  row.cells.throughput!.textContent =
    `${lastMinute(stats, readAt)}/min` + (rate === undefined ? "" : ` · ${rate.toFixed(rate < 10 ? 1 : 0)}/s`);
  replaceChildren(row.spark, sparkline(stats.completedPerMinute));
  row.row.dataset.failed = String(stats.failed);
  row.row.dataset.paused = String(stats.paused);
  // A button the user may not call stays hidden; the others show as the state allows.
  row.pause.hidden = !allowed("PauseQueue") || stats.paused;
  row.resume.hidden = !allowed("ResumeQueue") || !stats.paused;
  row.retry.disabled = stats.failed === 0n;
  row.retry.textContent = stats.failed === 0n ? "Retry dead letters" : `Retry ${stats.failed} dead letters`;
}

async function refreshWorkers(): Promise<void> {
  if (!allowed("ListWorkers")) return;
  const answer = await attempt("ListWorkers", () => api.listWorkers({}));
  if (answer === undefined) return;
  const body = byId("workers-body");
  replaceChildren(
    body,
    ...answer.workers.map((w) =>
      h(
        "tr",
        { "data-testid": "worker" },
        h("td", { class: "mono" }, w.id),
        h("td", {}, w.host),
        h("td", { class: "num" }, String(w.pid)),
        h("td", {}, w.types.join(", ")),
        h("td", { class: "num" }, `${w.jobsHeld} / ${w.concurrency}`),
        h("td", {}, time(w.startedAt)),
        h("td", {}, time(w.lastHeartbeatAt)),
      ),
    ),
  );
  if (answer.workers.length === 0) body.appendChild(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "no live workers")));
  byId("workers-count").textContent = String(answer.workers.length);
}

export async function refresh(): Promise<void> {
  if (!allowed("GetQueueStats")) return; // the view is hidden (auth.ts)
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = true;
  try {
    const answer = await api.getQueueStats({});
    const readAt = Number(answer.readAt);
    // A read soon after the last sample (one an event asked for) shows its counts, and
    // the charts keep their pace: a rate over a short interval is mostly noise.
    const last = samples[samples.length - 1];
    let taken = last;
    if (last === undefined || readAt - last.at >= SAMPLE_EVERY_MS) {
      taken = sample(answer.queues, readAt);
      samples.push(taken);
      if (samples.length > SAMPLES_KEPT) samples.splice(0, samples.length - SAMPLES_KEPT);
    }
    const body = byId("queues-body");
    for (const stats of answer.queues) {
      let row = rows.get(stats.type);
      if (row === undefined) {
        row = newRow(stats.type);
        rows.set(stats.type, row);
      }
      fill(row, stats, readAt, taken?.rate.get(stats.type));
    }
    // In the order GetQueueStats gives (by name); types that went away leave.
    replaceChildren(body, ...answer.queues.map((q) => rows.get(q.type)!.row));
    if (answer.queues.length === 0) body.appendChild(h("tr", {}, h("td", { colspan: 15, class: "muted" }, "no queues yet: enqueue a job")));
    const total = answer.total;
    if (total !== undefined) {
      for (const count of COUNTS) byId(`total-${count}`).textContent = String(total[count]);
    }
    byId("stats-read-at").textContent = time(readAt);
    byId("types").replaceChildren(...answer.queues.map((q) => h("option", { value: q.type })));
    drawCharts(readAt);
    await refreshWorkers();
  } catch (error) {
    showError("GetQueueStats", error);
  } finally {
    refreshing = false;
    if (again) {
      again = false;
      refreshSoon();
    }
  }
}

export const refreshSoon = throttle(EVENT_REFRESH_MS, () => void refresh());

export function startQueues(onShowJobs: ShowJobs): void {
  showJobs = onShowJobs;
  void refresh();
  window.setInterval(() => {
    if (!document.hidden) void refresh();
  }, REFRESH_MS);
  onShown(() => void refresh());
}
