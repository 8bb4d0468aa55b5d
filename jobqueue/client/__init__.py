"""Clients of the JobService API: `Client` (asyncio) and `SyncClient` (blocking; the CLI's).

    async with Client("http://localhost:8080") as client:
        job = await client.enqueue("print", "hello")

    with SyncClient("http://localhost:8080") as client:
        job = client.get(job.id)

Both speak the Connect protocol over HTTP/1.1 (binary protobuf, or JSON with
`json=True`). Arguments that cannot be sent raise TypeError or ValueError
before any call. The server's refusals arrive as
`connectrpc.errors.ConnectError` with the server's code; a server that cannot
be reached as `ServerUnreachable` (a ConnectError, code UNAVAILABLE).
"""

from ..settings import DEFAULT_API_URL
from .async_client import Client
from .endpoint import ServerUnreachable
from .sync_client import SyncClient
from .waiting import WaitTimeout
from .watch import AsyncEventStream, EventStream, WatchEvent

DEFAULT_URL = DEFAULT_API_URL

__all__ = [
    "DEFAULT_URL",
    "AsyncEventStream",
    "Client",
    "EventStream",
    "ServerUnreachable",
    "SyncClient",
    "WaitTimeout",
    "WatchEvent",
]
