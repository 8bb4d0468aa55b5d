// The API client: Connect (binary) over fetch to the server that served the page,
// with the session's bearer token on every call.
import { ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { JobService } from "./gen/mpataki/jobqueue/v1/jobqueue_pb";
import { token } from "./token";

export type Api = Client<typeof JobService>;

const withToken: Interceptor = (next) => async (request) => {
  const held = token.get();
  if (held !== null) request.header.set("Authorization", `Bearer ${held}`);
  return next(request);
};

// The page's own folder: the API answers where the page is served (also behind a
// proxy that adds a path prefix).
const baseUrl = new URL(".", document.baseURI).href.replace(/\/$/, "");

export const api: Api = createClient(
  JobService,
  createConnectTransport({ baseUrl, useBinaryFormat: true, interceptors: [withToken] }),
);

export function isConnectError(error: unknown, code?: number): error is ConnectError {
  return error instanceof ConnectError && (code === undefined || error.code === code);
}

// "Method: code: message", the code as Connect names it (e.g. failed_precondition).
export function describeError(method: string, error: unknown): string {
  const connect = ConnectError.from(error);
  return `${method}: ${codeToString(connect.code)}: ${connect.rawMessage}`;
}
