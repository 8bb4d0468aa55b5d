"""jobqueue in the shared peer benchmark (../shared/bench-peers): same driver, same job bodies.

    BENCH_REDIS_URL=redis://127.0.0.1:6390/0 python bench/peer_jobqueue.py [s1 s2 s3]

The worker runs as `jobqueue worker bench/peer_jobqueue.py` (one process). The driver
enqueues through the SDK (Producer) straight into Redis or, with BENCH_JQ_VIA=rpc,
through the API: a `jobqueue server` (Hypercorn) it starts on a free loopback port,
called with `SyncClient` (Connect, binary protobuf over HTTP/1.1; EnqueueJobs in
batches of 1,000 for S1, one EnqueueJob per job for S2 and S3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = Path(os.environ.get("BENCH_PEERS_DIR", HERE.parent.parent / "shared" / "bench-peers"))
sys.path.insert(0, str(PEERS))

import common  # noqa: E402
from connectrpc.code import Code  # noqa: E402
from connectrpc.errors import ConnectError  # noqa: E402

from jobqueue import Producer, Settings, __version__  # noqa: E402
from jobqueue.client import SyncClient  # noqa: E402
from jobqueue.model import EnqueueRequest  # noqa: E402
from jobqueue.redis_server import free_port  # noqa: E402
from jobqueue.worker import Job, Worker  # noqa: E402

CONCURRENCY = int(os.environ.get("BENCH_JQ_CONCURRENCY", "10"))
PREFETCH = int(os.environ.get("BENCH_JQ_PREFETCH", "0"))
VIA_RPC = os.environ.get("BENCH_JQ_VIA", "sdk") == "rpc"
# The worker with tracing on (a span per run: docs/performance.md, "Tracing off and on").
TRACING = os.environ.get("BENCH_JQ_TRACING", "") == "1"
# "thread" or "process": a sync handler (a plain function, run in the worker's pool of
# that kind) with the harness's sync job body: docs/performance.md, "Sync handlers and
# the drain".
SYNC = os.environ.get("BENCH_JQ_SYNC", "")
# Calls of job.set_progress each run makes before its job body, in a loop
# (docs/performance.md, "Progress and the drain"); 0: none.
PROGRESS_CALLS = int(os.environ.get("BENCH_JQ_PROGRESS", "0"))
RPC_BATCH = 1000


async def run_bench_job(job: Job) -> None:
    # The harness's job body on the worker's own client (Worker.redis), as arq's
    # peer passes ctx["redis"]; the other peers leave it to the harness's client.
    for i in range(PROGRESS_CALLS):
        job.set_progress(i / PROGRESS_CALLS, "working")
    if job.payload == b"noop":
        await common.ajob_noop(worker.redis)
    else:
        await common.ajob_lat(json.loads(job.payload)["t"], worker.redis)


def run_bench_job_sync(job: Job) -> None:
    if job.payload == b"noop":
        common.sjob_noop()
    else:
        common.sjob_lat(json.loads(job.payload)["t"])


worker = Worker(
    "bench",
    run_bench_job_sync if SYNC else run_bench_job,
    concurrency=CONCURRENCY,
    prefetch=PREFETCH,
    executor="process" if SYNC == "process" else "thread",
    settings=Settings(
        redis_url=common.REDIS_URL,
        tracing=TRACING,
        redis_cluster=os.environ.get("JOBQUEUE_REDIS_CLUSTER", "") == "1",  # drain_once.py --cluster
    ),
)


class JobqueuePeer(common.Peer):
    def __init__(self) -> None:
        super().__init__(
            name="jobqueue",
            variant=os.environ.get("BENCH_JQ_VARIANT", "sdk"),
            version=__version__,
            settings={
                "worker": "jobqueue worker bench/peer_jobqueue.py --processes 1",
                "concurrency": CONCURRENCY,
                "prefetch": PREFETCH,
                "enqueue_s1": "EnqueueJobs RPC, 1,000 jobs per call"
                if VIA_RPC
                else "Producer.enqueue_many (the batch API)",
                "enqueue_s2_s3": "EnqueueJob RPC (SyncClient, Connect over HTTP/1.1)"
                if VIA_RPC
                else "Producer.enqueue",
            },
        )
        self.producer: Producer | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.client: SyncClient | None = None

    def worker_cmds(self, scenario: str) -> list[list[str]]:
        command = [sys.executable, "-m", "jobqueue.cli", "worker", str(HERE / "peer_jobqueue.py")]
        return [[*command, "--processes", "1"]]  # one process a command, as before the option

    async def setup(self) -> None:
        if VIA_RPC:
            if self.client is None:
                self.client = self._start_server()
        elif self.producer is None:
            self.producer = Producer.connect(Settings(redis_url=common.REDIS_URL))

    def _start_server(self) -> SyncClient:
        """A `jobqueue server` on a free loopback port, answering once it is up."""
        port = free_port()
        env = dict(os.environ, JOBQUEUE_REDIS_URL=common.REDIS_URL)
        command = [sys.executable, "-m", "jobqueue.cli", "server", "--host", "127.0.0.1", "--port", str(port)]
        self.server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = SyncClient(f"http://127.0.0.1:{port}", timeout_s=10)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.get("00000000-0000-4000-8000-000000000000")
            except ConnectError as exc:  # unavailable until it listens
                if exc.code == Code.NOT_FOUND:  # it answers
                    return client
                if time.monotonic() > deadline or self.server.poll() is not None:
                    raise RuntimeError(f"jobqueue server did not start: {exc}") from exc
                time.sleep(0.1)
            else:
                return client  # (no such job can exist; an answer is all that counts)

    async def teardown(self) -> None:
        if self.producer is not None:
            await self.producer.aclose()
            self.producer = None
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.server is not None:
            self.server.terminate()
            self.server.wait(30)
            self.server = None

    # The RPC calls block the driver's event loop while they run: it has nothing
    # else to do meanwhile, and a thread hop would add to S2's latency.

    async def enqueue_noop_bulk(self, n: int) -> None:
        requests = [EnqueueRequest("bench", b"noop")] * n
        if self.client is not None:
            for i in range(0, n, RPC_BATCH):
                self.client.enqueue_many(requests[i : i + RPC_BATCH])
            return
        assert self.producer is not None
        await self.producer.enqueue_many(requests)

    async def enqueue_lat(self, t_ref: float) -> None:
        await self._enqueue(json.dumps({"t": t_ref}).encode(), None)

    async def enqueue_lat_at(self, t_sched: float) -> None:
        await self._enqueue(json.dumps({"t": t_sched}).encode(), int(t_sched * 1000))

    async def _enqueue(self, payload: bytes, execution_time_ms: int | None) -> None:
        await self.setup()
        if self.client is not None:
            self.client.enqueue("bench", payload, execution_time_ms)
            return
        assert self.producer is not None
        await self.producer.enqueue("bench", payload, execution_time_ms)


if __name__ == "__main__":
    common.run_peer(JobqueuePeer())
