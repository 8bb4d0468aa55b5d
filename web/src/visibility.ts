// Whether the tab shows. A hidden tab polls nothing and holds no stream: a browser
// opens at most six HTTP/1.1 connections to a server, for all its tabs, and each
// open stream keeps one.

// Resolves when the tab shows (at once if it does).
export function untilVisible(): Promise<void> {
  if (!document.hidden) return Promise.resolve();
  return new Promise((resolve) => {
    const shown = (): void => {
      if (document.hidden) return;
      document.removeEventListener("visibilitychange", shown);
      resolve();
    };
    document.addEventListener("visibilitychange", shown);
  });
}

// A signal aborted when the tab hides; call done() when it is no longer needed.
export function whileVisible(): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const hidden = (): void => {
    if (document.hidden) controller.abort();
  };
  document.addEventListener("visibilitychange", hidden);
  return { signal: controller.signal, done: () => document.removeEventListener("visibilitychange", hidden) };
}

// Calls `run` whenever the tab shows again.
export function onShown(run: () => void): void {
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) run();
  });
}
