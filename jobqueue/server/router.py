"""Routes each request to the ASGI app of its gRPC service, by path prefix.

connectrpc serves one service per app; gRPC paths are `/package.Service/Method`.
The router answers ASGI lifespan itself, running the server's startup and
shutdown hooks (Redis, scheduler, reaper); the service apps hold no state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

Hook = Callable[[], Awaitable[None]]


class ServiceApp(Protocol):
    @property
    def path(self) -> str: ...

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


class Router:
    def __init__(
        self, apps: Iterable[ServiceApp], *, on_startup: Hook | None = None, on_shutdown: Hook | None = None
    ) -> None:
        self.routes = {app.path + "/": app for app in apps}
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # A coroutine function, as ASGI servers check (Hypercorn takes anything else for WSGI).
        await self.route(scope, receive, send)

    def route(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        """The router inside another layer: not a coroutine, it returns the app's,
        adding no frame to the request's task (see edge.py)."""
        if scope["type"] == "lifespan":
            return self._lifespan(receive, send)
        if "root_path" not in scope:
            # Optional in ASGI, and h2corn leaves it out; connectrpc reads it for
            # an unknown method, and would answer `unknown` with a KeyError's text.
            scope = {**scope, "root_path": ""}
        path: str = scope.get("path", "")
        # `/Service/Method` goes to the app at `/Service`, `/page` (e.g. /metrics) to the
        # app at `/page`, and `/` to the app at `` (the dashboard).
        prefix = path[: path.find("/", 1) + 1] if path.count("/") >= 2 else path.rstrip("/") + "/"
        app = self.routes.get(prefix)
        if app is None:
            return _not_found(send)
        return app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.on_startup:
                    await self.on_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.on_shutdown:
                    await self.on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _not_found(send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"no such service\n"})
