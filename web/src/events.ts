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

export async function followEvents(onEvent: (event: JobEvent) => void): Promise<void> {
  let cursor = "";
  let pause = FIRST_PAUSE_MS;
  for (;;) {
    await untilVisible();
    const hidden = whileVisible();
    try {
      for await (const message of api.watchJobs({ cursor }, { signal: hidden.signal })) {
        const event = message.event;
        // Over HTTP/1.1 a quiet stream repeats its last event (a keepalive).
        if (event === undefined || event.cursor === cursor) continue;
        cursor = event.cursor;
        if (event.id === "") continue; // the first message: where the watch starts, no job
        pause = FIRST_PAUSE_MS;
        onEvent(event);
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
