// Who the user is: WhoAmI on load; with auth on, a token asked for once and kept for
// the session (token.ts). Every action button names its method (data-method) and is
// hidden unless WhoAmI lists that method.
import { Code } from "@connectrpc/connect";
import { api, describeError, isConnectError } from "./api";
import { byId } from "./dom";
import type { WhoAmIResponse } from "./gen/mpataki/jobqueue/v1/jobqueue_pb";
import { token } from "./token";

let methods = new Set<string>();

export function allowed(method: string): boolean {
  return methods.has(method);
}

export function applyPermissions(root: ParentNode = document): void {
  for (const element of root.querySelectorAll<HTMLElement>("[data-method]")) {
    element.hidden = !allowed(element.dataset.method ?? "");
  }
}

// A button that calls `method`: hidden when the user may not call it.
export function actionButton(
  method: string,
  label: string,
  testId: string,
  onClick: (button: HTMLButtonElement) => void,
): HTMLButtonElement {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.dataset.method = method;
  button.dataset.testid = testId;
  button.hidden = !allowed(method);
  button.addEventListener("click", () => onClick(button));
  return button;
}

// The token the user enters in the token form (shown until they submit one).
function askForToken(refused: string): Promise<string> {
  const form = byId<HTMLFormElement>("token-form");
  const input = byId<HTMLInputElement>("token-input");
  byId("token-error").textContent = refused;
  form.hidden = false;
  input.focus();
  return new Promise((resolve) => {
    const submit = (event: Event): void => {
      event.preventDefault();
      const entered = input.value.trim();
      if (entered === "") return;
      form.removeEventListener("submit", submit);
      form.hidden = true;
      input.value = "";
      resolve(entered);
    };
    form.addEventListener("submit", submit);
  });
}

// WhoAmI, asking for a token while the server answers unauthenticated.
export async function signIn(): Promise<WhoAmIResponse> {
  for (;;) {
    try {
      const me = await api.whoAmI({});
      methods = new Set(me.methods);
      showIdentity(me);
      return me;
    } catch (error) {
      if (!isConnectError(error, Code.Unauthenticated)) throw error;
      const refused = token.get() === null ? "" : describeError("WhoAmI", error);
      token.clear();
      token.set(await askForToken(refused));
    }
  }
}

function showIdentity(me: WhoAmIResponse): void {
  byId("whoami").textContent = me.authEnabled ? `role: ${me.role}` : `role: ${me.role} (auth off)`;
  byId("sign-out").hidden = token.get() === null;
  applyPermissions();
}

export function signOut(): void {
  token.clear();
  window.location.reload();
}
