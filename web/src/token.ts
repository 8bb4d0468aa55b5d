// The bearer token, kept for the browser session (sessionStorage): asked for once,
// forgotten on sign-out or when the tab closes.
const KEY = "jobqueue.token";

export const token = {
  get(): string | null {
    return sessionStorage.getItem(KEY);
  },
  set(value: string): void {
    sessionStorage.setItem(KEY, value);
  },
  clear(): void {
    sessionStorage.removeItem(KEY);
  },
};
