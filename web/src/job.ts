// A job's detail: GetJob, then kept current through WatchJob (each change of status
// reads the job again, for the fields events do not carry; a progress report, asked
// for with `progress`, updates the progress shown in place), with cancel and retry
// buttons.
// The payload shows as text, hex or pretty JSON; the result (if any) as text.
import { Code } from "@connectrpc/connect";
import { allowed } from "./auth";
import { api, isConnectError } from "./api";
import { byId, duration, h, replaceChildren, statusBadge, statusName, time } from "./dom";
import { JobStatus, type Job, type JobEvent } from "./gen/mpataki/jobqueue/v1/jobqueue_pb";
import { attempt, showError, showInfo } from "./notices";
import { onShown } from "./visibility";

type PayloadView = "text" | "hex" | "json";

// Times a watch that broke (not ended) is started again, from its last cursor.
const WATCH_RESTARTS = 20;
const WATCH_PAUSE_MS = 1_000;
// Bytes of a payload the hex view shows.
const HEX_BYTES = 64 * 1024;

let shown: Job | null = null;
let watch: AbortController | null = null;
let view: PayloadView = "text";

function hexDump(bytes: Uint8Array): string {
  const lines: string[] = [];
  const end = Math.min(bytes.length, HEX_BYTES);
  for (let offset = 0; offset < end; offset += 16) {
    const chunk = bytes.subarray(offset, Math.min(offset + 16, end));
    const hex = [...chunk].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = [...chunk].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${offset.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`);
  }
  if (bytes.length > end) lines.push(`… ${bytes.length - end} more bytes`);
  return lines.join("\n");
}

export function payloadText(bytes: Uint8Array, as: PayloadView): string {
  if (bytes.length === 0) return "(empty)";
  if (as === "hex") return hexDump(bytes);
  const text = new TextDecoder().decode(bytes);
  if (as === "text") return text;
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch (error) {
    return `not JSON: ${String(error)}`;
  }
}

function renderPayload(): void {
  byId("job-payload").textContent = shown === null ? "" : payloadText(shown.payload, view);
  for (const button of byId("payload-views").querySelectorAll<HTMLButtonElement>("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.view === view));
  }
}

// A result's first characters, as text (the CLI's `wait --result` and GetJob give it whole).
const RESULT_CHARS = 500;

function resultText(bytes: Uint8Array): string {
  if (bytes.length === 0) return "–";
  const text = new TextDecoder().decode(bytes.subarray(0, RESULT_CHARS * 4));
  return text.length > RESULT_CHARS ? `${text.slice(0, RESULT_CHARS)}… (${bytes.length} bytes)` : text;
}

// The last progress its run reported: "40% copying part 4 (at 12:00:01)", or "–".
function progressText(job: Job): string {
  if (job.progressAt === 0n) return "–";
  const percent = `${Math.round(job.progress * 1000) / 10}%`;
  return `${percent}${job.progressMessage ? ` ${job.progressMessage}` : ""} (at ${time(job.progressAt)})`;
}

function field(name: string, value: string | Node, testId: string): HTMLElement[] {
  return [h("dt", {}, name), h("dd", { "data-testid": testId }, value)];
}

function render(job: Job): void {
  shown = job;
  byId("job-id").textContent = job.id;
  const attempts = job.maxAttempts === 0 ? `${job.attempt} (no maximum known yet)` : `${job.attempt} of ${job.maxAttempts}`;
  const error =
    job.lastError === ""
      ? "–"
      : job.lastErrorAttempt === 0
        ? job.lastError
        : `attempt ${job.lastErrorAttempt}: ${job.lastError}`;
  const ran = job.startedAt !== 0n && job.finishedAt !== 0n ? duration(job.finishedAt - job.startedAt) : "–";
  const waited = job.startedAt !== 0n ? duration(job.startedAt - job.executionTimeMs) : "–";
  replaceChildren(
    byId("job-fields"),
    ...field("status", statusBadge(job.status), "job-status"),
    ...field("type", job.type, "job-type"),
    ...field("attempts", attempts, "job-attempts"),
    ...field("last error", error, "job-error"),
    ...field("result", resultText(job.result), "job-result"),
    ...field("progress", progressText(job), "job-progress"),
    ...field("worker", job.workerId || "–", "job-worker"),
    ...field("created", time(job.createdAt), "job-created"),
    ...field("due", time(job.executionTimeMs), "job-due"),
    ...field("started", `${time(job.startedAt)} (waited ${waited})`, "job-started"),
    ...field("finished", `${time(job.finishedAt)} (ran ${ran})`, "job-finished"),
    ...field("updated", time(job.updatedAt), "job-updated"),
    ...field("timeout", job.timeoutMs === 0n ? "the worker's default" : duration(job.timeoutMs), "job-timeout"),
    ...field("idempotency key", job.idempotencyKey || "–", "job-idempotency-key"),
    ...field("priority", String(job.priority), "job-priority"),
    ...field("expires", job.expiresAtMs === 0n ? "never" : `${time(job.expiresAtMs)} unless started by then`, "job-expires"),
  );
  const unfinished = job.status === JobStatus.PENDING || job.status === JobStatus.RUNNING;
  const finishedBadly =
    job.status === JobStatus.FAILED || job.status === JobStatus.CANCELLED || job.status === JobStatus.EXPIRED;
  byId("job-cancel").hidden = !allowed("CancelJob") || !unfinished;
  byId("job-retry").hidden = !allowed("RetryJob") || !finishedBadly;
  renderPayload();
}

function logEvent(event: JobEvent, gap: boolean): void {
  const text =
    `${time(event.at)} ${statusName(event.status)} attempt ${event.attempt}` +
    (event.workerId ? ` on ${event.workerId}` : "") +
    (event.error ? `: ${event.error}` : "") +
    (gap ? " (events were lost before this one)" : "");
  byId("job-events").appendChild(h("li", { "data-testid": "job-event" }, text));
}

// A progress report of the job shown: its fields as GetJob would show them, no read.
function showProgress(id: string, event: JobEvent): void {
  if (shown?.id !== id || event.progress === undefined) return;
  shown.progress = event.progress;
  shown.progressMessage = event.progressMessage;
  shown.progressAt = event.at;
  render(shown);
}

async function read(id: string): Promise<void> {
  const answer = await attempt("GetJob", () => api.getJob({ id }));
  if (answer?.job !== undefined && shown?.id === id) render(answer.job);
}

// Follows the job until it is finished (the stream ends), the view closes or
// another job opens (the signal).
async function follow(id: string, signal: AbortSignal): Promise<void> {
  let cursor = "";
  for (let restart = 0; restart <= WATCH_RESTARTS && !signal.aborted; restart++) {
    try {
      for await (const message of api.watchJob({ id, cursor, progress: true }, { signal })) {
        const event = message.event;
        // Over HTTP/1.1 a quiet stream repeats its last event (a keepalive).
        if (event === undefined || event.cursor === cursor) continue;
        // A report; not the job's state (the first message, or one after a gap), which
        // carries the current run's progress too.
        const report = event.progress !== undefined && cursor !== "" && !message.gap;
        cursor = event.cursor;
        if (report) {
          showProgress(id, event);
          continue;
        }
        logEvent(event, message.gap);
        await read(id);
      }
      return;
    } catch (error) {
      if (signal.aborted) return;
      showError("WatchJob", error);
      if (!isConnectError(error, Code.Unavailable)) return;
    }
    await new Promise((resolve) => window.setTimeout(resolve, WATCH_PAUSE_MS));
  }
}

function startWatch(id: string): void {
  watch?.abort();
  if (!allowed("WatchJob")) return;
  watch = new AbortController();
  void follow(id, watch.signal);
}

export async function openJob(id: string): Promise<void> {
  if (window.location.hash !== `#job=${id}`) history.replaceState(null, "", `#job=${id}`);
  watch?.abort();
  shown = null;
  const answer = await attempt("GetJob", () => api.getJob({ id }));
  if (answer?.job === undefined) return;
  byId("job-detail").hidden = false;
  replaceChildren(byId("job-events"));
  render(answer.job);
  startWatch(id);
  byId("job-detail").scrollIntoView({ block: "nearest" });
}

function closeJob(): void {
  watch?.abort();
  shown = null;
  byId("job-detail").hidden = true;
  history.replaceState(null, "", window.location.pathname);
}

export function startJob(): void {
  byId("job-cancel").addEventListener("click", async () => {
    const id = shown?.id;
    if (id === undefined) return;
    if ((await attempt("CancelJob", () => api.cancelJob({ id }))) !== undefined) {
      showInfo(`CancelJob: ${id} cancelled`);
      await read(id);
    }
  });
  byId("job-retry").addEventListener("click", async () => {
    const id = shown?.id;
    if (id === undefined) return;
    const answer = await attempt("RetryJob", () => api.retryJob({ id }));
    if (answer?.job !== undefined) {
      showInfo(`RetryJob: ${id} is PENDING again`);
      render(answer.job);
      startWatch(id); // the last watch ended with the job's final state
    }
  });
  byId("job-close").addEventListener("click", closeJob);
  for (const button of byId("payload-views").querySelectorAll<HTMLButtonElement>("button")) {
    button.addEventListener("click", () => {
      view = (button.dataset.view as PayloadView | undefined) ?? "text";
      renderPayload();
    });
  }
  const fromHash = (): void => {
    const match = /^#job=([0-9a-f-]+)$/.exec(window.location.hash);
    if (match?.[1] !== undefined && match[1] !== shown?.id) void openJob(match[1]);
  };
  window.addEventListener("hashchange", fromHash);
  // A hidden tab holds no stream (visibility.ts); the job is read again when it shows.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) watch?.abort();
  });
  onShown(() => {
    if (shown !== null) startWatch(shown.id);
  });
  fromHash();
}
