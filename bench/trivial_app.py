"""The ceiling for S4: the same server stack (ASGI server, connectrpc, router,
interceptor) with an EnqueueJob handler that touches nothing and answers a
constant job. `python bench/trivial_app.py PORT [hypercorn|h2corn]`."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from typing import Any

from connectrpc.request import RequestContext

from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue._gen.mpataki.jobqueue.v1.jobqueue_connect import JobService, JobServiceASGIApplication
from jobqueue.server.errors import ErrorInterceptor
from jobqueue.server.router import Router

REPLY = pb.EnqueueJobResponse(job=pb.Job(id="00000000-0000-4000-8000-000000000000", type="bench"))


class Trivial(JobService):
    async def enqueue_job(
        self, request: pb.EnqueueJobRequest, ctx: RequestContext[Any, Any]
    ) -> pb.EnqueueJobResponse:
        return REPLY


def build() -> Any:
    return Router([JobServiceASGIApplication(Trivial(), interceptors=[ErrorInterceptor()])])


def main() -> None:
    port, server = int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "hypercorn"
    if server == "h2corn":
        h2corn = shutil.which("h2corn") or "h2corn"
        here = os.path.dirname(os.path.abspath(__file__))
        os.execv(h2corn, [h2corn, "--factory", "trivial_app:build", "--app-dir", here, "--grpc", "--http1",
                          "--host", "127.0.0.1", "--port", str(port), "--no-access-log"])  # fmt: skip
    from hypercorn.asyncio import serve  # noqa: PLC0415

    from jobqueue.server.main import hypercorn_config  # noqa: PLC0415
    from jobqueue.settings import Settings  # noqa: PLC0415

    asyncio.run(serve(build(), hypercorn_config(Settings(host="127.0.0.1", port=port))))


if __name__ == "__main__":
    main()
