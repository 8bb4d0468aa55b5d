"""The bearer token a client sends with every call (`token=`): `Authorization: Bearer <token>`."""

from __future__ import annotations

import re
from typing import Any

from connectrpc.request import RequestContext

# What an HTTP header value can carry as a token (RFC 6750's b64token, and more:
# any printable ASCII without spaces); a newline would end the header.
_TOKEN = re.compile(r"[\x21-\x7e]+")


def check_token(token: str) -> str:
    """`token`, or a ValueError that does not repeat it."""
    if not isinstance(token, str):
        raise TypeError(f"token must be str, not {type(token).__name__}")
    if not _TOKEN.fullmatch(token):
        raise ValueError("token must be printable ASCII without spaces (as `jobqueue token new` makes them)")
    return token


class BearerToken:
    """A connectrpc client interceptor that adds the token to each call's headers."""

    def __init__(self, token: str) -> None:
        self._authorization = f"Bearer {check_token(token)}"

    def on_start_sync(self, ctx: RequestContext[Any, Any]) -> None:
        ctx.request_headers["authorization"] = self._authorization

    def on_end_sync(self, token: None, ctx: RequestContext[Any, Any], error: Exception | None) -> None:
        return
