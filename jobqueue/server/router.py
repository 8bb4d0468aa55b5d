"""Routes each request to the ASGI app of its gRPC service, by path prefix.

connectrpc serves one service per app; gRPC paths are `/package.Service/Method`.
The router answers ASGI lifespan itself: the apps hold no startup state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class ServiceApp(Protocol):
    @property
    def path(self) -> str: ...

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


class Router:
    def __init__(self, apps: Iterable[ServiceApp]) -> None:
        self.routes = {app.path + "/": app for app in apps}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        prefix = path[: path.find("/", 1) + 1] if path.count("/") >= 2 else path
        app = self.routes.get(prefix)
        if app is None:
            await _not_found(send)
            return
        await app(scope, receive, send)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _not_found(send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"no such service\n"})
