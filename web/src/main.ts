// The dashboard: signs in (auth.ts), then starts the views. See docs/dashboard.md.
import { allowed, signIn, signOut } from "./auth";
import { byId } from "./dom";
import { startEnqueue } from "./enqueue";
import { followEvents } from "./events";
import { openJob, startJob } from "./job";
import { jobsChanged, showJobs, startJobs } from "./jobs";
import { showError } from "./notices";
import { refreshSoon, startQueues } from "./queues";

async function main(): Promise<void> {
  byId("sign-out").addEventListener("click", signOut);
  try {
    await signIn();
  } catch (error) {
    showError("WhoAmI", error);
    return;
  }
  startQueues(showJobs);
  startJobs((id) => void openJob(id));
  startJob();
  startEnqueue((id) => {
    void openJob(id);
    refreshSoon();
  });
  if (allowed("WatchJobs")) {
    void followEvents((events) => {
      refreshSoon();
      jobsChanged(events);
    });
  }
  document.body.dataset.ready = "true";
}

void main();
