"""The server's check of bearer tokens (docs/security.md), on when the setting
`auth_tokens_file` names a file.

- JobService: `RoleCheck`, a connectrpc metadata interceptor placed first, so
  that connectrpc runs it before it reads the request's body, for every protocol
  (gRPC, gRPC-Web, Connect JSON and binary) and every kind of RPC, streams
  included: a refused call stores nothing, and its body is read and dropped by
  the edge (drain.py). No token, or not a bearer one: `unauthenticated` "missing
  bearer token"; a token not listed: `unauthenticated` "invalid token"; a role
  without the method: `permission_denied` naming both.
- Health is never checked; reflection is unless `auth_reflection_open` (the
  default: it describes only the public API, as the shipped proto does, and lets
  grpcurl list and describe without a token).
- Non-RPC paths in GATED_PATHS (`/metrics`) need a valid token of any role, checked
  by `PathGate` at the HTTP layer: 401 with `WWW-Authenticate: Bearer`. Any other
  path (the dashboard's `/` and assets) is open.

A refusal is logged at INFO, at most one line every LOG_EVERY_S (the others
counted in the next), never with the token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.interceptor import Interceptor
from connectrpc.request import RequestContext

from ..auth import ADMIN, TokensFile, may_call, methods_of, service_methods
from ..settings import Settings

log = logging.getLogger("jobqueue.server.auth")

GATED_PATHS = ("/metrics",)
_UNDER_GATED = tuple(f"{path}/" for path in GATED_PATHS)
LOG_EVERY_S = 1.0
MISSING = "missing bearer token"
INVALID = "invalid token"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header's value; None for none."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class Access:
    """Who a request's Authorization header says its caller is."""

    def __init__(self, tokens: TokensFile, *, reflection_open: bool = True) -> None:
        self.tokens = tokens
        self.reflection_open = reflection_open
        self._log = _RefusalLog()

    def role_of(self, authorization: str | None, what: str, client: str | None) -> str:
        """The caller's role; `unauthenticated` without a listed token (`what` and the
        client's address are for the log)."""
        token = bearer_token(authorization)
        role = None if token is None else self.tokens.current().role_of(token)
        if role is None:
            reason = MISSING if token is None else INVALID
            self._log.refused(what, client, reason)
            raise ConnectError(Code.UNAUTHENTICATED, reason)
        return role

    def check(self, method: str, authorization: str | None, client: str | None) -> str:
        """The caller's role, if it may call `method`; else `unauthenticated` or `permission_denied`."""
        role = self.role_of(authorization, method, client)
        if not may_call(role, method):
            self._log.refused(method, client, f"role {role}")
            raise ConnectError(Code.PERMISSION_DENIED, f"role {role} may not call {method}")
        return role


class RoleCheck:
    """The JobService methods for the roles that may call them (a connectrpc metadata interceptor)."""

    def __init__(self, access: Access) -> None:
        self.access = access

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        self.access.check(ctx.method.name, ctx.request_headers.get("authorization"), ctx.client_address)

    async def on_end(self, token: None, ctx: RequestContext[Any, Any], error: Exception | None) -> None:
        return


class AnyRole:
    """A service for every valid token (reflection, when it is not open)."""

    def __init__(self, access: Access) -> None:
        self.access = access

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        self.access.role_of(ctx.request_headers.get("authorization"), ctx.method.name, ctx.client_address)

    async def on_end(self, token: None, ctx: RequestContext[Any, Any], error: Exception | None) -> None:
        return


class Guard:
    """Where create_app puts the checks; with auth off (no `access`) it changes nothing."""

    def __init__(self, access: Access | None) -> None:
        self.access = access

    @classmethod
    def from_settings(cls, settings: Settings) -> Guard:
        """Reads the tokens file (a TokensFileError, naming the line, for a malformed one)."""
        if not settings.auth_tokens_file:
            return cls(None)
        tokens = TokensFile(settings.auth_tokens_file)
        reflection = "open" if settings.auth_reflection_open else "for any valid token"
        log.info(
            "auth on: %d token(s) from %s; health open, reflection %s",
            len(tokens.current().entries), tokens.path, reflection,
        )  # fmt: skip
        return cls(Access(tokens, reflection_open=settings.auth_reflection_open))

    def jobs(self, interceptors: Sequence[Interceptor]) -> list[Interceptor]:
        """JobService's interceptors: the role check first, before the body is read."""
        return [RoleCheck(self.access), *interceptors] if self.access else list(interceptors)

    def reflection(self, interceptors: Sequence[Interceptor]) -> list[Interceptor]:
        if self.access is None or self.access.reflection_open:
            return list(interceptors)
        return [AnyRole(self.access), *interceptors]

    def paths(self, app: Any) -> Any:
        """`app`, with GATED_PATHS behind a token."""
        return app if self.access is None else PathGate(app, self.access)

    def who_am_i(self, ctx: RequestContext[Any, Any]) -> tuple[bool, str, tuple[str, ...]]:
        """Whether auth is on, the caller's role and its methods."""
        if self.access is None:  # every caller is an admin
            return False, ADMIN, service_methods()
        authorization = ctx.request_headers.get("authorization")
        role = self.access.role_of(authorization, ctx.method.name, ctx.client_address)
        return True, role, methods_of(role)


def check_auth(settings: Settings) -> None:
    """Refuses a tokens file that cannot be read or is malformed (a TokensFileError naming
    the line), at startup, before the server listens."""
    if settings.auth_tokens_file:
        TokensFile(settings.auth_tokens_file)


class PathGate:
    """GATED_PATHS for a valid token of any role; other paths as they are."""

    def __init__(self, app: Any, access: Access) -> None:
        self.app = app
        self.access = access

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        # Not a coroutine: it returns the app's, adding no frame to the request's task (see edge.py).
        path = scope.get("path", "")
        # A gated path, or one under it (`/metrics/x`: whatever serves the path might serve it).
        if scope["type"] == "http" and (path in GATED_PATHS or path.startswith(_UNDER_GATED)):
            authorization = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
            client = scope.get("client")
            try:
                self.access.role_of(authorization, scope["path"], client and f"{client[0]}:{client[1]}")
            except ConnectError as refused:
                return _unauthorized(send, refused.message)
        return self.app(scope, receive, send)  # type: ignore[no-any-return]


async def _unauthorized(send: Any, reason: str) -> None:
    challenge = b'Bearer realm="jobqueue"' + (b', error="invalid_token"' if reason == INVALID else b"")
    headers = [(b"content-type", b"text/plain"), (b"www-authenticate", challenge)]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": f"{reason}\n".encode()})


class _RefusalLog:
    """Refusals at INFO, at most one line every LOG_EVERY_S; the others are counted in it."""

    def __init__(self) -> None:
        self._next = 0.0
        self._unlogged = 0

    def refused(self, what: str, client: str | None, reason: str) -> None:
        now = time.monotonic()
        if now < self._next:
            self._unlogged += 1
            return
        self._next = now + LOG_EVERY_S
        more = f" (and {self._unlogged} more refusal(s) since the last line)" if self._unlogged else ""
        self._unlogged = 0
        log.info("refused %s from %s: %s%s", what, client or "(unknown)", reason, more)
