// The enqueue form: EnqueueJob with a type, a payload (text, hex or base64), a delay
// or a time, a maximum of attempts and an idempotency key; the new job then opens.
import { api } from "./api";
import { byId } from "./dom";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { EnqueueJobRequestSchema } from "./gen/mpataki/jobqueue/v1/jobqueue_pb";
import { attempt, showInfo } from "./notices";

type Request = MessageInitShape<typeof EnqueueJobRequestSchema>;

class FormError extends Error {}

function value(id: string): string {
  return byId<HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement>(id).value.trim();
}

export function payloadBytes(text: string, encoding: string): Uint8Array {
  if (encoding === "hex") {
    const digits = text.replace(/\s+/g, "");
    if (!/^([0-9a-fA-F]{2})*$/.test(digits)) throw new FormError("payload: not hex (pairs of 0-9 a-f)");
    return Uint8Array.from(digits.match(/../g) ?? [], (pair) => parseInt(pair, 16));
  }
  if (encoding === "base64") {
    try {
      return Uint8Array.from(atob(text.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
    } catch {
      throw new FormError("payload: not base64");
    }
  }
  return new TextEncoder().encode(text);
}

// The request the form describes; a FormError names the field that is wrong.
function request(): Request {
  const delay = value("enqueue-delay");
  const at = value("enqueue-at");
  const maxAttempts = value("enqueue-max-attempts");
  const req: Request = {
    type: value("enqueue-type"),
    payload: payloadBytes(byId<HTMLTextAreaElement>("enqueue-payload").value, value("enqueue-encoding")),
    idempotencyKey: value("enqueue-idempotency-key"),
  };
  if (delay !== "" && at !== "") throw new FormError("give a delay or a time, not both");
  // The browser's clock: due times are compared with the server's, which may differ a little.
  if (delay !== "") {
    const seconds = Number(delay);
    if (!Number.isFinite(seconds) || seconds < 0) throw new FormError("delay: a number of seconds, 0 or more");
    req.executionTimeMs = BigInt(Date.now() + Math.round(seconds * 1000));
  } else if (at !== "") {
    const ms = new Date(at).getTime();
    if (Number.isNaN(ms)) throw new FormError("time: not a date and time");
    req.executionTimeMs = BigInt(ms);
  }
  if (maxAttempts !== "") {
    const count = Number(maxAttempts);
    if (!Number.isInteger(count)) throw new FormError("max attempts: a whole number");
    req.maxAttempts = count;
  }
  return req;
}

export function startEnqueue(onEnqueued: (id: string) => void): void {
  const form = byId<HTMLFormElement>("enqueue-form");
  const problem = byId("enqueue-problem");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    let req: Request;
    try {
      req = request();
    } catch (error) {
      if (!(error instanceof FormError)) throw error;
      problem.textContent = error.message;
      return;
    }
    const answer = await attempt("EnqueueJob", () => api.enqueueJob(req));
    const job = answer?.job;
    if (job === undefined) return;
    showInfo(`EnqueueJob: ${job.id} enqueued (${job.type})`);
    byId("enqueued-id").textContent = job.id;
    onEnqueued(job.id);
  });
}
