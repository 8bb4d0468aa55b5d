// Jobs by state: ListJobs with the filters of the form, a page at a time (the
// tokens of the pages before are kept for "previous"). The first page refreshes
// after job events of the types it lists.
import { allowed } from "./auth";
import { api } from "./api";
import { byId, h, replaceChildren, statusBadge, throttle, time } from "./dom";
import { JobStatus, ListOrder, type Job, type JobEvent } from "./gen/mpataki/jobqueue/v1/jobqueue_pb";
import { attempt } from "./notices";

const PAGE_SIZE = 20;
const EVENT_REFRESH_MS = 1_000;

interface Filter {
  type: string;
  status: JobStatus;
  errorContains: string;
  order: ListOrder;
}

let filter: Filter = { type: "", status: JobStatus.UNSPECIFIED, errorContains: "", order: ListOrder.NEWEST_FIRST };
// The token of each page shown so far: tokens[i] lists page i + 1.
let tokens: string[] = [""];
let nextToken = "";
let openJob: (id: string) => void = () => undefined;

function readForm(): Filter {
  return {
    type: byId<HTMLInputElement>("filter-type").value.trim(),
    status: Number(byId<HTMLSelectElement>("filter-status").value) as JobStatus,
    errorContains: byId<HTMLInputElement>("filter-error").value,
    order: Number(byId<HTMLSelectElement>("filter-order").value) as ListOrder,
  };
}

function row(job: Job): HTMLTableRowElement {
  const link = h("a", { href: `#job=${job.id}`, class: "mono", "data-testid": "job-link" }, job.id);
  link.addEventListener("click", (event) => {
    event.preventDefault();
    openJob(job.id);
  });
  const attempts = job.maxAttempts === 0 ? String(job.attempt) : `${job.attempt} / ${job.maxAttempts}`;
  return h(
    "tr",
    { "data-testid": "job-row", "data-id": job.id },
    h("td", {}, link),
    h("td", {}, job.type),
    h("td", {}, statusBadge(job.status)),
    h("td", { class: "num" }, attempts),
    h("td", {}, time(job.createdAt)),
    h("td", {}, time(job.finishedAt !== 0n ? job.finishedAt : job.executionTimeMs)),
    h("td", { class: "error-text", title: job.lastError }, job.lastError),
  );
}

async function load(): Promise<void> {
  const page = tokens.length;
  const answer = await attempt("ListJobs", () =>
    api.listJobs({
      filter: { type: filter.type, status: filter.status, errorContains: filter.errorContains },
      order: filter.order,
      pageSize: PAGE_SIZE,
      pageToken: tokens[page - 1] ?? "",
    }),
  );
  if (answer === undefined) return;
  nextToken = answer.nextPageToken;
  const body = byId("jobs-body");
  replaceChildren(body, ...answer.jobs.map(row));
  if (answer.jobs.length === 0) body.appendChild(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "no jobs on this page")));
  byId("jobs-page").textContent = `page ${page}`;
  byId<HTMLButtonElement>("jobs-prev").disabled = page === 1;
  byId<HTMLButtonElement>("jobs-first").disabled = page === 1;
  byId<HTMLButtonElement>("jobs-next").disabled = nextToken === "";
}

const refreshFirstPage = throttle(EVENT_REFRESH_MS, () => {
  if (tokens.length === 1) void load();
});

export function jobsChanged(events: JobEvent[]): void {
  if (!allowed("ListJobs")) return;
  if (filter.type === "" || events.some((event) => event.type === filter.type)) refreshFirstPage();
}

// Lists a type's jobs in a status (from the queue table).
export function showJobs(type: string, status: JobStatus): void {
  byId<HTMLInputElement>("filter-type").value = type;
  byId<HTMLSelectElement>("filter-status").value = String(status);
  byId<HTMLInputElement>("filter-error").value = "";
  if (allowed("ListJobs")) apply();
}

function apply(): void {
  filter = readForm();
  tokens = [""];
  void load();
}

export function startJobs(onOpenJob: (id: string) => void): void {
  openJob = onOpenJob;
  const statuses = byId<HTMLSelectElement>("filter-status");
  const names: Array<[JobStatus, string]> = [
    [JobStatus.UNSPECIFIED, "unfinished (pending or running)"],
    [JobStatus.PENDING, "PENDING"],
    [JobStatus.RUNNING, "RUNNING"],
    [JobStatus.COMPLETED, "COMPLETED"],
    [JobStatus.FAILED, "FAILED"],
    [JobStatus.CANCELLED, "CANCELLED"],
    [JobStatus.EXPIRED, "EXPIRED"],
  ];
  statuses.replaceChildren(...names.map(([value, name]) => h("option", { value }, name)));
  byId("jobs-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  byId("jobs-first").addEventListener("click", () => {
    tokens = [""];
    void load();
  });
  byId("jobs-prev").addEventListener("click", () => {
    if (tokens.length > 1) tokens.pop();
    void load();
  });
  byId("jobs-next").addEventListener("click", () => {
    if (nextToken === "") return;
    tokens.push(nextToken);
    void load();
  });
  if (allowed("ListJobs")) apply();
}
