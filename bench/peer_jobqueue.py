"""jobqueue in the shared peer benchmark (../shared/bench-peers): same driver, same job bodies.

    BENCH_REDIS_URL=redis://127.0.0.1:6390/0 python bench/peer_jobqueue.py [s1 s2 s3]

The worker runs as `jobqueue worker bench/peer_jobqueue.py` (one process); the
driver enqueues through the SDK (JobStore) straight into Redis.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = Path(os.environ.get("BENCH_PEERS_DIR", HERE.parent.parent / "shared" / "bench-peers"))
sys.path.insert(0, str(PEERS))

import common  # noqa: E402

from jobqueue import __version__  # noqa: E402
from jobqueue.config import Settings, connect  # noqa: E402
from jobqueue.model import EnqueueRequest  # noqa: E402
from jobqueue.store import JobStore  # noqa: E402
from jobqueue.worker import Job, Worker  # noqa: E402

CONCURRENCY = int(os.environ.get("BENCH_JQ_CONCURRENCY", "10"))
PREFETCH = int(os.environ.get("BENCH_JQ_PREFETCH", "0"))


async def run_bench_job(job: Job) -> None:
    # The harness's job body on the worker's own client (Worker.redis), as arq's
    # peer passes ctx["redis"]; the other peers leave it to the harness's client.
    if job.payload == b"noop":
        await common.ajob_noop(worker.redis)
    else:
        await common.ajob_lat(json.loads(job.payload)["t"], worker.redis)


worker = Worker(
    "bench",
    run_bench_job,
    concurrency=CONCURRENCY,
    prefetch=PREFETCH,
    settings=Settings.from_env({"JOBQUEUE_REDIS_URL": common.REDIS_URL}),
)


class JobqueuePeer(common.Peer):
    def __init__(self) -> None:
        super().__init__(
            name="jobqueue",
            variant=os.environ.get("BENCH_JQ_VARIANT", "sdk"),
            version=__version__,
            settings={
                "worker": "jobqueue worker bench/peer_jobqueue.py",
                "concurrency": CONCURRENCY,
                "prefetch": PREFETCH,
                "enqueue_s1": "JobStore.enqueue_many (the batch API)",
            },
        )
        self.store: JobStore | None = None

    def worker_cmds(self, scenario: str) -> list[list[str]]:
        return [[sys.executable, "-m", "jobqueue.cli", "worker", str(HERE / "peer_jobqueue.py")]]

    async def setup(self) -> None:
        if self.store is None:
            self.store = JobStore(connect(common.REDIS_URL))

    async def teardown(self) -> None:
        if self.store is not None:
            await self.store.redis.aclose()
            self.store = None

    async def enqueue_noop_bulk(self, n: int) -> None:
        assert self.store is not None
        await self.store.enqueue_many([EnqueueRequest("bench", b"noop")] * n)

    async def enqueue_lat(self, t_ref: float) -> None:
        await self.setup()
        assert self.store is not None
        await self.store.enqueue("bench", json.dumps({"t": t_ref}).encode())

    async def enqueue_lat_at(self, t_sched: float) -> None:
        await self.setup()
        assert self.store is not None
        await self.store.enqueue("bench", json.dumps({"t": t_sched}).encode(), int(t_sched * 1000))


if __name__ == "__main__":
    common.run_peer(JobqueuePeer())
