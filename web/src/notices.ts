// What calls answered, shown at the top of the page: errors with their Connect code
// and message, and the outcome of actions.
import { describeError } from "./api";
import { byId, h } from "./dom";

const KEPT = 5;
// An outcome goes after a while; an error stays until dismissed.
const INFO_SHOWN_MS = 20_000;

function show(kind: "error" | "info", text: string): void {
  const list = byId("notices");
  // The same error again (a refresh that keeps failing) counts on the one shown.
  const newest = list.firstElementChild as HTMLElement | null;
  if (newest?.dataset.text === text) {
    const repeats = Number(newest.dataset.repeats ?? "1") + 1;
    newest.dataset.repeats = String(repeats);
    newest.querySelector("span")!.textContent = `${text} (×${repeats})`;
    return;
  }
  const item = h(
    "li",
    { class: `notice ${kind}`, "data-testid": `notice-${kind}`, "data-text": text },
    h("span", {}, text),
    " ",
  );
  const dismiss = h("button", { type: "button", class: "link", title: "dismiss" }, "×");
  dismiss.addEventListener("click", () => item.remove());
  item.appendChild(dismiss);
  list.prepend(item);
  if (kind === "info") window.setTimeout(() => item.remove(), INFO_SHOWN_MS);
  while (list.children.length > KEPT) list.lastElementChild?.remove();
}

export function showError(method: string, error: unknown): void {
  show("error", describeError(method, error));
}

export function showInfo(text: string): void {
  show("info", text);
}

// Runs a call, showing its error (if any) instead of throwing; undefined on error.
export async function attempt<T>(method: string, call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch (error) {
    showError(method, error);
    return undefined;
  }
}
