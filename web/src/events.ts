// Job events of every type (WatchJobs), so that the views refresh when something
// happens rather than only on their timers. The stream is resumed from its last
// cursor when it breaks (a server restart) after a pause that grows to MAX_PAUSE_MS.
// A hidden tab holds no stream (see whileVisible): it starts again, from now,
// when the tab shows.
import { api } from "./api";
import { showError } from "./notices";
import { untilVisible, whileVisible } from "./visibility";
import type { JobEvent } from "./gen/mpataki/jobqueue/v1/jobqueue_pb";

const FIRST_PAUSE_MS = 500;
const MAX_PAUSE_MS = 10_000;
// Events per message at most: the page wants to know that something happened, and a
// busy queue's events in batches cost the server a message per batch, not per event.
const MAX_BATCH = 1000;

export async function followEvents(onEvents: (events: JobEvent[]) => void): Promise<void> {
  let cursor = "";
  let pause = FIRST_PAUSE_MS;
  for (;;) {
    await untilVisible();
    const hidden = whileVisible();
    try {
      for await (const message of api.watchJobs({ cursor, maxBatch: MAX_BATCH }, { signal: hidden.signal })) {
        const events = message.events.length > 0 ? message.events : message.event ? [message.event] : [];
        const last = events[events.length - 1];
        // Over HTTP/1.1 a quiet stream repeats its last message (a keepalive).
        if (last === undefined || last.cursor === cursor) continue;
        cursor = last.cursor;
        pause = FIRST_PAUSE_MS;
        // The first message says where the watch starts: a cursor, no job.
        const jobs = events.filter((event) => event.id !== "");
        if (jobs.length > 0) onEvents(jobs);
      }
    } catch (error) {
      if (hidden.signal.aborted) {
        cursor = ""; // the views refresh when the tab shows: no need for what it missed
        continue;
      }
      showError("WatchJobs", error);
    } finally {
      hidden.done();
    }
    await new Promise((resolve) => window.setTimeout(resolve, pause));
    pause = Math.min(MAX_PAUSE_MS, pause * 2);
  }
}
