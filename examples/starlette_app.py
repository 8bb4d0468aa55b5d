"""A worker inside a Starlette app's lifespan, and endpoints that enqueue and look up its jobs.

    pip install starlette
    hypercorn examples/starlette_app.py:app --bind 127.0.0.1:8000    # Redis from REDIS_URL
    curl -X POST localhost:8000/signups -d ada@example.com            # {"job_id": "..."}
    curl localhost:8000/jobs/JOB_ID                                   # {"status": "COMPLETED", ...}

The app enqueues straight into Redis with a `Producer`; an app that only
reaches the API server would use `jobqueue.client.Client` the same way. The
worker runs in the app's event loop until the app shuts down, then stops
gracefully (running jobs get `shutdown_grace_s` to finish). Run it in its
own process (`jobqueue worker`) instead when the jobs are heavy: they would
take the event loop's time from the requests.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jobqueue import Producer
from jobqueue.errors import InvalidInput, JobNotFound
from jobqueue.worker import Job, Worker

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("starlette_app")


async def send_welcome_email(job: Job) -> None:
    log.info("welcome email sent to %s", job.payload.decode())


worker = Worker("welcome_email", send_welcome_email)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Producer]]:
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    async with Producer.connect() as producer:  # Redis and key prefix from the environment, as the worker's
        yield {"producer": producer}  # request.state.producer in the endpoints
    stop.set()
    await serving


async def signup(request: Request) -> JSONResponse:
    email = (await request.body()).decode()
    job = await request.state.producer.enqueue("welcome_email", email)
    return JSONResponse({"job_id": job.id}, status_code=202)


async def job_status(request: Request) -> JSONResponse:
    try:
        job = await request.state.producer.get(request.path_params["job_id"])
    except (JobNotFound, InvalidInput) as error:
        return JSONResponse({"error": str(error)}, status_code=404)
    return JSONResponse({"status": job.status.name, "attempt": job.attempt})


app = Starlette(
    routes=[Route("/signups", signup, methods=["POST"]), Route("/jobs/{job_id}", job_status)],
    lifespan=lifespan,
)
