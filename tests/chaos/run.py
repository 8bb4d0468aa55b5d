#!/usr/bin/env python3
"""The fault-injection suite: jobs through a real deployment while it is being broken.

    python tests/chaos/run.py             # the full run (a few minutes)
    python tests/chaos/run.py --small     # the bounded run the test suite does (about a minute)
    python tests/chaos/run.py --cluster   # the same on a local Redis Cluster (3 masters, a replica each)
    python tests/chaos/run.py --partitions 4   # its type spread over 4 partitions, changed mid-run

It starts a redis-server (AOF, fsync on every write) on a free loopback port, a
`jobqueue server` and K `jobqueue worker tests/chaos/worker.py` processes, and
enqueues N jobs through the server's HTTP + JSON API (each with an idempotency
key, retried until acknowledged): random durations, some scheduled ahead, some
failing on their first attempts, a few failing on every attempt, some with a short
expiry before start (expires_in_ms). Meanwhile it
injects faults at random moments: SIGKILL of a worker, a worker killed by itself
at a named point (JOBQUEUE_CRASH_AT: between pop and claim, between claim and
handler, between handler and acknowledgement), SIGSTOP past the liveness
deadline then SIGCONT, SIGTERM (graceful hand-back), SIGKILL and restart of
Redis, SIGKILL and restart of the server. Dead workers are restarted.

With --cluster, Redis is a local Redis Cluster (jobqueue/redis_cluster.py: 3
masters with a replica each, a node deemed failed after 1 s) and the Redis faults
are the cluster's: SIGKILL of a master (its replica is promoted; the killed process
is then restarted and rejoins as a replica), a manual CLUSTER FAILOVER on a replica,
and the migration of the busy partition's slot to another master while jobs flow
(SETSLOT IMPORTING/MIGRATING, MIGRATE ... KEYS in batches, SETSLOT NODE). Without
WAIT, an enqueue acknowledged by a master killed before its replica copied it can
be lost: such a loss (the job's hash absent, acknowledged within a second of a
master's kill) is counted apart ("lost: unreplicated"), not as a violation.

With --partitions N (N > 1), the type is spread over N partitions (SetQueuePartitions,
before the first enqueue), and the count changes while jobs flow, one more fault:
N -> N//2+1 a third of the way through the enqueues, back to N at two thirds, so
jobs left in the partitions the shrink removed must still be run. Every check below
holds over every partition the type covers. A retried enqueue whose attempts straddle
a change may land in another partition than its first, stored attempt and make a
second job (docs/design.md, "Partitions of a type": a change of N moves keys): such
a job is counted apart ("duplicate enqueues across a count change"), not as a violation.

It records a history (acknowledged enqueues, faults, and every handler start and
end with its attempt and fencing token, written by the workers) and checks:
- every acknowledged enqueue reached a terminal state: none lost;
- one job per acknowledged enqueue (the idempotency keys held through retries);
- no job COMPLETED by a stale lease holder: the completing token is the one of a
  run whose handler succeeded, and the job's result is that run's (a result is
  written only by the current lease holder; a job that did not complete has none),
  and so is its last progress; any job's progress was written by the run whose
  token it carries (a stale holder's progress is refused);
- every duplicate execution follows a fault that hit the earlier run (its worker
  was killed, paused or stopped, or Redis restarted);
- jobs FAILED only when planned or when faults used up their attempts;
- the stored sets agree with the job states (nothing left in schedule, ready,
  prio, popped or leases; the failed index is exactly the FAILED jobs), and no unique
  key is held by a final job (a quarter of the jobs have one: tests/store_audit.py);
- priorities hold after every redelivery: jobs have priorities 3, 5 and 7, and
  every job waiting in line (sampled about every second while faults go on, and
  at the end) waits in its own priority's line (store_audit.misplaced).
- an expired job never starts after its expiry: every first run (attempt 1) was
  claimed before its job's expires_at_ms, and an EXPIRED job has no attempt.
- on a cluster, no process logged an ERROR (its faults are outages, not bugs).
It prints the figures and exits 1 if any check fails. Only loopback addresses are
used; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import http.client
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobqueue.model import MAX_PARTITIONS, partition_of_id, partitions_of_type  # noqa: E402
from jobqueue.redis_cluster import LocalCluster  # noqa: E402
from jobqueue.redis_server import RedisServer, free_port  # noqa: E402
from jobqueue.store.keys import Keyspace, wake_marker  # noqa: E402
from tests.store_audit import audit, misplaced  # noqa: E402

JOB_TYPE = "chaos"
FINAL = (b"3", b"4", b"6")  # COMPLETED, FAILED, EXPIRED
EXPIRED_ERROR = b"expired before start"
CRASH_POINTS = ("after_pop", "after_claim", "before_finish")
FAULT_WEIGHTS = {
    "kill_worker": 4,
    "crash_point": 3,
    "pause_worker": 2,
    "stop_worker": 1,
    "restart_redis": 1,
    "restart_server": 1,
}
# On a cluster: its own faults instead of a restart of the one Redis.
CLUSTER_FAULT_WEIGHTS = {
    **{kind: weight for kind, weight in FAULT_WEIGHTS.items() if kind != "restart_redis"},
    "kill_master": 1,
    "failover": 1,
    "migrate_slot": 1,
}
CLUSTER_FAULTS = ("kill_master", "migrate_slot", "failover")
# Redis 7.0 seen on the local cluster: a master killed a moment after a manual failover
# made it one let its replica (the old master) claim the slots without the others'
# votes, and the cluster stayed down. A cluster fault waits this long after a failover.
FAILOVER_SPACING_S = 6.0
PLANNED_EVERY_S = 2.0
# An acknowledged enqueue missing after a master's kill, acknowledged this close to
# it: the master's write its replica had not copied yet (no WAIT).
UNREPLICATED_WINDOW_S = 1.0
LIVENESS_S = 2.0  # as in tests/chaos/worker.py
CLAIM_LEAD_S = 1.0
ENV = {
    "JOBQUEUE_REAPER_INTERVAL_S": "0.5",
    "JOBQUEUE_CLAIM_TIMEOUT_S": "2",
    "JOBQUEUE_RESTART_GRACE_S": "3",
    "PYTHONUNBUFFERED": "1",
}


@dataclasses.dataclass
class Plan:
    jobs: int
    workers: int
    seconds: float  # how long enqueues and faults go on
    fault_every_s: float  # mean time between faults
    drain_s: float  # how long the jobs may take to finish afterwards
    seed: int
    partitions: int = 1  # the type's partition count (changed mid-run when > 1)


@dataclasses.dataclass
class Fault:
    kind: str
    t: float
    pid: int | None = None
    until: float | None = None  # end of a pause; when Redis was back from a restart; a cluster settled
    detail: str = ""  # a cluster fault's: which node, which slot


class Deployment:
    """Redis, the server and the workers, as child processes of this script."""

    def __init__(self, workdir: Path, workers: int, *, cluster: bool = False) -> None:
        self.workdir = workdir
        self.history = workdir / "history"
        self.history.mkdir()
        self.logs: list[Path] = []
        self.crash_points: dict[int, str] = {}  # worker pid -> the crash point it was started with
        self.paused: set[int] = set()
        self.lock = threading.Lock()
        self.cluster: LocalCluster | None = None
        self.masters_killed = 0
        if cluster:
            self.cluster = LocalCluster(workdir / "cluster", node_timeout_ms=1000)
            self.cluster.start()
        else:
            self.redis = RedisServer(
                workdir / "redis", appendonly=True, extra_args=["--appendfsync", "always"]
            )
            self.redis.start()
        self.port = free_port()
        self.env = dict(
            os.environ,
            **ENV,
            CHAOS_HISTORY_DIR=str(self.history),
            JOBQUEUE_REDIS_CLUSTER="1" if cluster else "0",
        )
        self.server = self._start_server()
        self.workers: list[subprocess.Popen[bytes]] = [self.start_worker() for _ in range(workers)]

    @property
    def redis_url(self) -> str:
        """Redis' URL: on a cluster, a live node's (the one first named may be killed)."""
        return self.cluster.url if self.cluster is not None else self.redis.url

    def client(self) -> redis.Redis:
        """A client of Redis for the checks (a cluster client on a cluster)."""
        if self.cluster is not None:
            return redis.RedisCluster.from_url(self.redis_url, socket_timeout=5)  # type: ignore[return-value]
        return redis.Redis.from_url(self.redis_url, socket_timeout=5)

    def _spawn(self, args: list[str], name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}-{time.monotonic_ns()}.log"
        env = dict(env, JOBQUEUE_REDIS_URL=self.redis_url)
        with log.open("wb") as out:
            process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.logs.append(log)
        return process

    def _start_server(self) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-m",
            "jobqueue.cli",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        return self._spawn(command, "server", self.env)

    def start_worker(self, crash_at: str = "") -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-m",
            "jobqueue.cli",
            "worker",
            "tests/chaos/worker.py",
            "--processes",
            "1",
        ]
        process = self._spawn(command, "worker", dict(self.env, JOBQUEUE_CRASH_AT=crash_at))
        self.crash_points[process.pid] = crash_at
        return process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restart_server(self) -> None:
        self.server.kill()
        self.server.wait(10)
        self.server = self._start_server()

    def restart_redis(self, down_s: float) -> None:
        self.redis.kill()
        time.sleep(down_s)
        self.redis = RedisServer(
            self.redis.data_dir, port=self.redis.port, appendonly=True, extra_args=["--appendfsync", "always"]
        )
        self.redis.start()

    def kill_master(self, rng: random.Random, busy_slot: int) -> Fault:
        """SIGKILL of a master (the busy partition's the first time, then half the time);
        its replica takes over; the killed process is restarted and rejoins as a replica."""
        assert self.cluster is not None
        cluster = self.cluster
        masters = [node for node in cluster.live() if cluster.role(node) == "master"]
        busy = cluster.owner(busy_slot)
        master = busy if not self.masters_killed or rng.random() < 0.5 else rng.choice(masters)
        self.masters_killed += 1
        fault = Fault("kill_master", time.time(), detail="busy" if master is busy else "other")
        replica = cluster.kill_master(master)
        cluster.promoted(replica)
        fault.until = time.time()
        cluster.restart(master)
        return fault

    def failover(self, rng: random.Random) -> Fault:
        """A manual CLUSTER FAILOVER on a replica."""
        assert self.cluster is not None
        cluster = self.cluster
        replica = rng.choice([node for node in cluster.live() if cluster.role(node) == "slave"])
        fault = Fault("failover", time.time())
        cluster.failover(replica)
        fault.until = time.time()
        return fault

    def migrate_slot(self, rng: random.Random, slot: int) -> Fault:
        """The busy partition's slot moved to another master while jobs flow."""
        assert self.cluster is not None
        cluster = self.cluster
        source = cluster.owner(slot)
        target = rng.choice([n for n in cluster.live() if n is not source and cluster.role(n) == "master"])
        fault = Fault("migrate_slot", time.time())
        moved = cluster.migrate_slot(slot, target, batch=10)  # small batches: a longer migration
        fault.until, fault.detail = time.time(), f"{moved} keys"
        return fault

    def revive_dead_workers(self) -> list[int]:
        """Restarts workers that exited (killed, or by a crash point); returns their pids."""
        dead = []
        with self.lock:
            for i, process in enumerate(self.workers):
                if process.poll() is not None:
                    dead.append(process.pid)
                    self.workers[i] = self.start_worker()
        return dead

    def stop(self) -> None:
        for process in [*self.workers, self.server]:
            if process.poll() is None:
                if process.pid in self.paused:
                    process.send_signal(signal.SIGCONT)
                process.kill()
            process.wait(10)
        if self.cluster is not None:
            self.cluster.stop()
        else:
            self.redis.stop()


class Chaos:
    def __init__(self, plan: Plan, deployment: Deployment) -> None:
        self.plan = plan
        self.d = deployment
        self.rng = random.Random(plan.seed)
        self.acks: dict[int, str] = {}  # job number -> id
        self.acked_at: dict[int, float] = {}  # job number -> when its enqueue was acknowledged
        self.last_failover = -FAILOVER_SPACING_S  # when the last manual failover ended (monotonic)
        # On a cluster, each of its faults once first, PLANNED_EVERY_S apart (then at
        # random): a short run has each.
        self.planned = list(CLUSTER_FAULTS) if deployment.cluster is not None else []
        self.specs: dict[int, dict[str, int]] = {}
        self.enqueue_failures = 0
        self.faults: list[Fault] = []
        self.unexpected_exits: list[str] = []  # processes that died without a fault: "no process exits"
        self.misplaced: list[str] = []  # jobs seen waiting in another priority's line
        self.lines_sampled = 0  # ids seen waiting in `ready` and `prio` by those samples
        self.first_try: dict[int, float] = {}  # job number -> when its enqueue was first sent
        self.pending_at_shrink = 0  # jobs PENDING in the partitions the shrink removed, as it began
        self.tags = partitions_of_type(JOB_TYPE, plan.partitions)  # every partition covered
        self.lock = threading.Lock()

    # -- load --------------------------------------------------------------------------

    def job_spec(self, n: int) -> dict[str, int]:
        roll = self.rng.random()
        fails = 99 if roll < 0.03 else (self.rng.randint(1, 2) if roll < 0.15 else 0)
        ms = int(self.rng.choice([0, 5, 20, 50, 100, 200, 500, 1000, 2000]))
        spec = {"n": n, "ms": ms, "fails": fails}
        if n % 5 == 2 and fails != 99:  # an expiry before start; a scheduled one's is past its time
            spec["expires_in"] = int(self.rng.choice([30, 100, 300, 1000, 5000] if n % 10 else [3500, 5000]))
        return spec

    def enqueue(self, n: int, start_at: float) -> None:
        time.sleep(max(0.0, start_at - time.monotonic()))
        spec = self.specs[n]
        body: dict[str, Any] = {
            "type": JOB_TYPE,
            "payload": _b64(json.dumps(spec).encode()),
            "idempotencyKey": f"chaos-{n}",
        }
        if spec["fails"] == 99:
            body["maxAttempts"] = 3
        priority = (7, None, 3, 5)[n % 4]  # None: unset (5); redeliveries must keep each
        if priority is not None:
            body["priority"] = priority
        if n % 4 == 1:  # a unique key of its own: each final transition must release it
            body["uniqueKey"], body["uniqueMode"] = f"chaos-u-{n}", "UNIQUE_MODE_WHILE_ACTIVE"
        if n % 10 == 0:  # scheduled 0.5 to 3 s ahead
            body["executionTimeMs"] = int((time.time() + 0.5 + self.rng.random() * 2.5) * 1000)
        if "expires_in" in spec:
            body["expiresInMs"] = spec["expires_in"]
        deadline = time.monotonic() + 90
        self.first_try[n] = time.time()
        while time.monotonic() < deadline:
            try:
                job = _post(f"{self.d.url}/mpataki.jobqueue.v1.JobService/EnqueueJob", body)["job"]
            except (*CALL_FAILED, KeyError):
                with self.lock:
                    self.enqueue_failures += 1
                time.sleep(0.1 + self.rng.random() * 0.3)
                continue
            with self.lock:
                self.acks[n] = job["id"]
                self.acked_at[n] = time.time()
            return
        print(f"enqueue {n} never acknowledged in 90 s (not counted as lost: never acknowledged)")

    def set_partitions(self, count: int) -> None:
        """SetQueuePartitions through the server, retried until acknowledged (the server
        may be down: a fault)."""
        body = {"type": JOB_TYPE, "partitions": count}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                _post(f"{self.d.url}/mpataki.jobqueue.v1.JobService/SetQueuePartitions", body)
            except CALL_FAILED:
                time.sleep(0.2)
            else:
                return
        raise RuntimeError(f"SetQueuePartitions({count}) never acknowledged in 60 s")

    def repartition(self, start: float) -> None:
        """The count's change while jobs flow: N -> N//2+1 -> N, at a third and two
        thirds of the enqueues (a fault: jobs left in a removed partition must run).
        The shrink waits (a sixth of the enqueues at most) for a job pending in a
        partition it removes, so that it strands some."""
        wide, narrow = self.plan.partitions, self.plan.partitions // 2 + 1
        for at, before, after in ((1 / 3, wide, narrow), (2 / 3, narrow, wide)):
            time.sleep(max(0.0, start + at * self.plan.seconds - time.monotonic()))
            if after < before:
                self.pending_at_shrink = self._pending_in(
                    self.tags[after:], until=time.monotonic() + self.plan.seconds / 6
                )
            fault = Fault("repartition", time.time(), detail=f"{before} -> {after}")
            self.set_partitions(after)
            fault.until = time.time()
            self.faults.append(fault)

    def _pending_in(self, tags: tuple[str, ...], until: float) -> int:
        """How many jobs are PENDING in these partitions (their `stats`), once some are
        or at `until`."""
        client = self.d.client()
        pending = 0
        while time.monotonic() < until and not pending:
            with contextlib.suppress(redis.RedisError):
                stats = [client.hget(Keyspace().queue(JOB_TYPE, tag).stats, "pending") for tag in tags]
                pending = sum(int(count or 0) for count in stats)  # type: ignore[arg-type]
            time.sleep(0.05)
        return pending

    # -- faults --------------------------------------------------------------------------

    def inject_faults(self, until: float) -> None:
        table = FAULT_WEIGHTS if self.d.cluster is None else CLUSTER_FAULT_WEIGHTS
        kinds, weights = zip(*table.items(), strict=True)
        next_planned = time.monotonic() + PLANNED_EVERY_S
        count = 0
        while count < 1000:
            wait = self.rng.expovariate(1 / self.plan.fault_every_s)
            if self.planned:
                wait = min(wait, max(0.0, next_planned - time.monotonic()))
            time.sleep(wait)
            if time.monotonic() >= until and not self.planned:  # the planned ones all happen
                return
            if self.planned and time.monotonic() >= next_planned:
                kind = self.planned.pop(0)
            else:
                kind = self.rng.choices(kinds, weights)[0]
                if kind in CLUSTER_FAULTS and (
                    self.planned or time.monotonic() - self.last_failover < FAILOVER_SPACING_S
                ):
                    kind = "kill_worker"
            self.inject(kind)
            if kind in CLUSTER_FAULTS:
                next_planned = time.monotonic() + PLANNED_EVERY_S
            count += 1

    def inject(self, kind: str) -> None:
        d = self.d
        now = time.time()
        if kind == "restart_redis":
            fault = Fault(kind, now)
            self.faults.append(fault)
            d.restart_redis(down_s=0.2 + self.rng.random())
            fault.until = time.time()
            return
        if kind in CLUSTER_FAULTS:  # on a spread type, each partition's slot in turn
            busy = self.tags[len(self.faults) % len(self.tags)]
            busy_slot = key_slot(Keyspace().queue(JOB_TYPE, busy).ready.encode())
            if kind == "kill_master":
                self.faults.append(d.kill_master(self.rng, busy_slot))
            elif kind == "failover":
                self.faults.append(d.failover(self.rng))
                self.last_failover = time.monotonic()
            else:
                self.faults.append(d.migrate_slot(self.rng, busy_slot))
            return
        if kind == "restart_server":
            self.faults.append(Fault(kind, now))
            with d.lock:
                d.restart_server()
            return
        with d.lock:
            candidates = [p for p in d.workers if p.poll() is None and p.pid not in d.paused]
            if not candidates:
                return
            victim = self.rng.choice(candidates)
            if kind == "kill_worker":
                victim.send_signal(signal.SIGKILL)
            elif kind == "stop_worker":
                victim.send_signal(signal.SIGTERM)
            elif kind == "crash_point":
                victim.send_signal(signal.SIGKILL)
                index = d.workers.index(victim)
                d.workers[index] = d.start_worker(crash_at=self.rng.choice(CRASH_POINTS))
            elif kind == "pause_worker":
                victim.send_signal(signal.SIGSTOP)
                d.paused.add(victim.pid)
        pause_s = LIVENESS_S + 1 + self.rng.random() * 2
        self.faults.append(Fault(kind, now, victim.pid, now + pause_s if kind == "pause_worker" else None))
        if kind == "pause_worker":
            threading.Timer(pause_s, self._resume, args=(victim,)).start()

    def _resume(self, process: subprocess.Popen[bytes]) -> None:
        with self.d.lock:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
            self.d.paused.discard(process.pid)

    def supervise(self, stop: threading.Event) -> None:
        """Restarts dead workers. A worker may die on its own only at its crash point.
        Samples where the waiting jobs wait, about every second."""
        client = self.d.client()
        for beat in itertools.count():
            if stop.wait(0.2):
                break
            if beat % 5 == 0:
                with contextlib.suppress(redis.RedisError):
                    for tag in self.tags:
                        queue = Keyspace().queue(JOB_TYPE, tag)
                        self.lines_sampled += client.llen(queue.ready) + client.zcard(queue.prio)
                    self.misplaced += misplaced(client, Keyspace(), JOB_TYPE)
            killed = {f.pid for f in self.faults if f.pid is not None}
            for pid in self.d.revive_dead_workers():
                if pid in killed:
                    continue
                if self.d.crash_points.get(pid):
                    self.faults.append(Fault("crash_point_hit", time.time(), pid))
                else:
                    self.unexpected_exits.append(f"worker {pid}")
            with self.d.lock:
                if self.d.server.poll() is not None:
                    self.unexpected_exits.append(f"server {self.d.server.pid}")
                    self.d.restart_server()

    # -- the run -------------------------------------------------------------------------

    def run(self) -> None:
        plan = self.plan
        self.specs = {n: self.job_spec(n) for n in range(plan.jobs)}
        _wait_for_server(self.d.url, 30)
        if plan.partitions > 1:
            self.set_partitions(plan.partitions)
        start = time.monotonic()
        stop_supervisor = threading.Event()
        supervisor = threading.Thread(target=self.supervise, args=(stop_supervisor,), daemon=True)
        supervisor.start()
        repartition = threading.Thread(target=self.repartition, args=(start,), daemon=True)
        if plan.partitions > 1:
            repartition.start()
        spacing = plan.seconds / max(1, plan.jobs)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            enqueued = [pool.submit(self.enqueue, n, start + n * spacing) for n in range(plan.jobs)]
            # Faults from this (the main) thread: a restarted redis-server is tied to the
            # thread that started it (PR_SET_PDEATHSIG), and this one outlives the run.
            self.inject_faults(start + plan.seconds)
            concurrent.futures.wait(enqueued)
            for future in enqueued:
                future.result()  # an enqueue that died of something unforeseen is the suite's bug: say so
        if plan.partitions > 1:
            repartition.join(90)
        time.sleep(LIVENESS_S + 4)  # the last pause ends
        stop_supervisor.set()
        supervisor.join(10)
        self.d.revive_dead_workers()
        self.drain(time.monotonic() + plan.drain_s)

    def drain(self, deadline: float) -> None:
        client = self.d.client()
        keys = Keyspace()
        while time.monotonic() < deadline:
            try:
                states = _statuses(client, keys, list(self.acks.values()))
            except redis.RedisError:
                time.sleep(0.5)
                continue
            queues = [keys.queue(JOB_TYPE, tag) for tag in self.tags]
            # The ids of jobs a reaper expired stay in `ready` until a worker skips them.
            if all(s in FINAL for s in states) and not any(
                client.llen(queue.ready) + client.llen(queue.popped) for queue in queues
            ):
                return
            self.d.revive_dead_workers()
            time.sleep(0.5)


# -- the checks -------------------------------------------------------------------------------


def verify(chaos: Chaos) -> tuple[dict[str, Any], list[str]]:
    client = chaos.d.client()
    keys = Keyspace()
    violations: list[str] = []
    history = _read_history(chaos.d.history)
    starts: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    ends: dict[tuple[str, int], dict[str, Any]] = {}
    for event in history:
        if event["e"] == "start":
            starts[event["id"]].append(event)
        else:
            ends[(event["id"], event["tok"])] = event
    jobs = {}
    for n, job_id in chaos.acks.items():
        fields = client.hgetall(keys.job(job_id))
        jobs[n] = {k.decode(): v for k, v in fields.items()}

    # 1. Nothing lost; one job per acknowledged enqueue. On a cluster without WAIT, an
    # enqueue acknowledged by a master killed before its replica copied it is lost:
    # counted apart (see the module's docstring).
    kills = [f.t for f in chaos.faults if f.kind == "kill_master"]
    unreplicated = [
        n for n, job in jobs.items()
        if not job and any(abs(chaos.acked_at[n] - t) <= UNREPLICATED_WINDOW_S for t in kills)
    ]  # fmt: skip
    for n in unreplicated:
        del jobs[n]
    lost = [n for n, job in jobs.items() if job.get("status") not in FINAL]
    if lost:
        violations.append(f"{len(lost)} acknowledged jobs not finished: {lost[:10]}")
    stored = {k.decode().rsplit(":", 1)[1] for k in client.scan_iter(match=keys.job("*"), count=1000)}
    extra = stored - set(chaos.acks.values())
    moved = _moved_by_a_count_change(chaos, client, keys, extra)
    extra -= moved
    if extra:
        violations.append(f"{len(extra)} jobs stored that no acknowledgement returned (duplicate enqueues)")

    # 2. COMPLETED only by the holder of the current lease, after its handler succeeded.
    for n, job in jobs.items():
        if job.get("status") == b"3":
            token, token_bytes = int(job["lease_token"]), job["lease_token"]
            end = ends.get((chaos.acks[n], token))
            if end is None or not end["ok"]:
                violations.append(f"job {n} COMPLETED with token {token}, whose run did not succeed")
            # A result is written only by the current lease holder: that run's own.
            elif job.get("result") != f"{token}:{end['pid']}".encode():
                violations.append(f"job {n} COMPLETED with token {token} holds {job.get('result')!r}")
            elif (job.get("progress_message"), job.get("progress_token")) != (job["result"], token_bytes):
                violations.append(f"job {n} COMPLETED with token {token} shows another run's progress")
        elif "result" in job:
            violations.append(f"job {n} did not complete but holds a result")
        # Progress is written only by the holder of the lease its token names.
        if "progress_message" in job and job["progress_message"].split(b":")[0] != job.get("progress_token"):
            violations.append(f"job {n} holds progress {job['progress_message']!r} of another run")

    # 3. FAILED only when planned, or when faults used up the attempts.
    failed_by_faults = 0
    for n, job in jobs.items():
        if job.get("status") != b"4":
            continue
        attempts, allowed = int(job["attempt"]), int(job["max_attempts"])
        if chaos.specs[n]["fails"] < allowed:
            failed_by_faults += 1
        if attempts != allowed:
            violations.append(f"job {n} FAILED after {attempts} of {allowed} attempts")
    for n, spec in chaos.specs.items():
        if spec["fails"] == 99 and n in jobs and jobs[n].get("status") != b"4":
            violations.append(f"job {n} always fails but ended {jobs[n].get('status')!r}")

    # 4. Every duplicate execution follows a fault that hit the earlier run.
    duplicates, unexplained = 0, []
    restarts = sorted(f.t for f in chaos.faults if f.kind in ("restart_redis", *CLUSTER_FAULTS))
    hit: dict[int, list[Fault]] = collections.defaultdict(list)
    for fault in chaos.faults:
        if fault.pid is not None:
            hit[fault.pid].append(fault)
    for job_id, runs in starts.items():
        runs.sort(key=lambda e: e["tok"])
        for earlier, later in itertools.pairwise(runs):
            end = ends.get((job_id, earlier["tok"]))
            if end is not None and not end["ok"]:
                continue  # a planned failure, retried
            duplicates += 1
            # The fault may come before the earlier run's start: a worker paused
            # between its claim and its handler starts that run late, after the
            # job ran elsewhere. A claim precedes its run by less than CLAIM_LEAD_S.
            first, last = min(earlier["t"], later["t"]), max(earlier["t"], later["t"])
            explained = any(
                f.t <= last and (f.until or f.t) >= first - CLAIM_LEAD_S for f in hit.get(earlier["pid"], [])
            ) or any(first - CLAIM_LEAD_S <= t <= last for t in restarts)
            if not explained:
                unexplained.append(f"{job_id} token {earlier['tok']} -> {later['tok']}")
    if unexplained:
        violations.append(f"{len(unexplained)} duplicate executions without a fault: {unexplained[:5]}")

    # 5. The stored sets agree with the states, in every partition.
    leftovers: collections.Counter[str] = collections.Counter()
    failed_index: set[str] = set()
    for tag in chaos.tags:
        queue = keys.queue(JOB_TYPE, tag)
        marker = wake_marker(JOB_TYPE, tag).encode()  # a stale one may wait for an idle worker to drop it
        leftovers += {
            "scheduled": client.zcard(queue.scheduled),
            "ready": sum(1 for i in client.lrange(queue.ready, 0, -1) if i != marker),
            "prio": client.zcard(queue.prio),
            "popped": client.llen(queue.popped),
            "leases": client.zcard(queue.leases),
        }
        failed_index |= {m.decode() for m in client.zrange(queue.failed, 0, -1)}
    for name, size in leftovers.items():
        if size:
            violations.append(f"{size} ids left in {name} after every job finished")
    failed_jobs = {chaos.acks[n] for n, job in jobs.items() if job.get("status") == b"4"}
    if failed_index != failed_jobs:
        violations.append(f"failed index has {len(failed_index)} ids, {len(failed_jobs)} jobs FAILED")
    # The counters and indexes the scripts keep agree with the jobs, after every fault.
    violations += [f"counts: {problem}" for problem in audit(client, keys, JOB_TYPE)]

    # 6. Priorities hold after redeliveries: no job ever seen waiting in another's line.
    if chaos.misplaced:
        seen = chaos.misplaced
        violations.append(f"{len(seen)} jobs seen out of their priority's line: {seen[:3]}")

    # 7. An expired job never starts after its expiry (the Redis clock): a first run was
    # claimed before it, and an EXPIRED job has no attempt. A first run claimed ahead
    # (prefetch) may begin its handler after the expiry: counted, not a violation.
    late_handlers = 0
    for runs in starts.values():
        for run in runs:
            expires_at = run.get("x")
            if expires_at and run["a"] == 1:
                if run["sa"] >= expires_at:
                    violations.append(f"job {run['id']} claimed at {run['sa']}, past its expiry {expires_at}")
                elif run["t"] * 1000 >= expires_at:
                    late_handlers += 1
    expired = {n: job for n, job in jobs.items() if job.get("status") == b"6"}
    for n, job in expired.items():
        if "expires_in" not in chaos.specs[n]:
            violations.append(f"job {n} without an expiry ended EXPIRED")
            continue
        in_time = int(job["finished_at"]) >= int(job["expires_at_ms"])
        if (job["attempt"], job.get("last_error"), in_time) != (b"0", EXPIRED_ERROR, True):
            violations.append(f"job {n} EXPIRED at attempt {job['attempt']!r}, {job.get('last_error')!r}")
    for n, job in jobs.items():
        stored = int(job.get("expires_at_ms", 0)) - int(job.get("created_at", 0))
        if stored != chaos.specs[n].get("expires_in", stored):
            violations.append(f"job {n} stores an expiry {stored} ms after its creation, not as enqueued")

    if chaos.unexpected_exits:
        violations.append(f"processes exited without a fault: {chaos.unexpected_exits}")

    # 8. On a cluster, its faults are outages, not bugs: no process logs an ERROR.
    error_lines = sum(
        log.read_text(errors="replace").count(" ERROR ") for log in chaos.d.logs if log.exists()
    )
    if chaos.d.cluster is not None and error_lines:
        violations.append(f"{error_lines} ERROR lines in the processes' logs")

    recovery = _recovery_times(chaos.faults, starts, ends)
    refused = sum(log.read_text(errors="replace").count("refused") for log in chaos.d.logs if log.exists())
    kinds = collections.Counter(f.kind for f in chaos.faults)
    figures = {
        "jobs": len(chaos.specs),
        "acknowledged": len(chaos.acks),
        "enqueue retries": chaos.enqueue_failures,
        "faults": dict(sorted(kinds.items())),
        "lost": len(lost),
        "completed": sum(1 for j in jobs.values() if j.get("status") == b"3"),
        "failed (planned)": sum(1 for n in jobs if chaos.specs[n]["fails"] == 99),
        "failed (attempts used up by faults)": failed_by_faults,
        "duplicate executions": duplicates,
        "with an expiry": sum(1 for spec in chaos.specs.values() if "expires_in" in spec),
        "expired": len(expired),
        "first runs claimed ahead that began after their expiry": late_handlers,
        "waiting ids sampled for their priority's line": chaos.lines_sampled,
        "stale results refused": refused,
        "recovery after a kill (s)": recovery,
        "first start after Redis is back (s)": _back_to_work(chaos.faults, starts),
        "ERROR lines in the logs": error_lines,
    }
    if chaos.d.cluster is not None:
        figures |= _cluster_figures(chaos.faults, len(unreplicated))
    if chaos.plan.partitions > 1:
        spread = _partition_figures(chaos, starts, len(moved))
        violations += [
            f"partition {tag} received no job"
            for tag, count in spread["jobs per partition"].items()
            if not count
        ]
        figures |= spread
    return figures, violations


def _moved_by_a_count_change(chaos: Chaos, client: redis.Redis, keys: Keyspace, extra: set[str]) -> set[str]:
    """The stored jobs no acknowledgement returned that a retried enqueue made in
    another partition after a change of the count (documented: a change of N moves
    keys): the enqueue of the same job number was first sent before a change and
    acknowledged after it with another id."""
    changes = [f.t for f in chaos.faults if f.kind == "repartition"]
    moved = set()
    for job_id in extra:
        payload = client.hget(keys.job(job_id), "payload")
        n = json.loads(payload)["n"] if payload else None
        if n in chaos.acks and any(chaos.first_try[n] <= t <= chaos.acked_at[n] for t in changes):
            moved.add(job_id)
    return moved


def _partition_figures(chaos: Chaos, starts: dict[str, list[dict[str, Any]]], moved: int) -> dict[str, Any]:
    """How the jobs spread over the partitions, and how many jobs of a partition the
    shrink removed were acknowledged before it and ran (a first run, a retry or a
    redelivery) after it: its partition was still served."""
    removed = set(chaos.tags[chaos.plan.partitions // 2 + 1 :])
    shrink = next((f.t for f in chaos.faults if f.kind == "repartition"), None)  # the first change
    spread = collections.Counter(partition_of_id(job_id) for job_id in chaos.acks.values())
    served = [
        job_id for n, job_id in chaos.acks.items()
        if shrink is not None and chaos.acked_at[n] < shrink and partition_of_id(job_id) in removed
        and any(run["t"] > shrink for run in starts.get(job_id, []))
    ]  # fmt: skip
    return {
        "partition count changes": [f.detail for f in chaos.faults if f.kind == "repartition"],
        "jobs per partition": {tag: spread[tag] for tag in chaos.tags},
        "jobs pending in a removed partition at the shrink": chaos.pending_at_shrink,
        "jobs of a removed partition, acknowledged before the shrink, run after it": len(served),
        "duplicate enqueues across a count change": moved,
    }


def _cluster_figures(faults: list[Fault], unreplicated: int) -> dict[str, Any]:
    """What the cluster's faults cost: how long each took to settle (a replica promoted
    after a master's SIGKILL, a manual failover, a slot migrated)."""

    def took(kind: str) -> dict[str, float | int]:
        return _distribution([f.until - f.t for f in faults if f.kind == kind and f.until is not None])

    return {
        "lost: unreplicated (acknowledged by a killed master, not copied; no WAIT)": unreplicated,
        "time to promote a replica after a master's SIGKILL (s)": took("kill_master"),
        "masters killed: the busy partition's / another's": [
            sum(1 for f in faults if f.kind == "kill_master" and f.detail == which)
            for which in ("busy", "other")
        ],
        "manual failover (s)": took("failover"),
        "slot migration (s)": took("migrate_slot"),
        "slot migrations (keys moved)": [f.detail for f in faults if f.kind == "migrate_slot"],
    }


def _recovery_times(
    faults: list[Fault], starts: dict[str, list[dict[str, Any]]], ends: dict[tuple[str, int], dict[str, Any]]
) -> dict[str, float | int]:
    """For each job running in a worker when it was SIGKILLed: the time until it started again."""
    delays = []
    for fault in faults:
        if fault.kind not in ("kill_worker", "crash_point") or fault.pid is None:
            continue
        for runs in starts.values():
            for i, run in enumerate(runs):
                if run["pid"] != fault.pid or run["t"] > fault.t:
                    continue
                end = ends.get((run["id"], run["tok"]))
                if end is not None and end["t"] <= fault.t:
                    continue
                later = [r["t"] for r in runs[i + 1 :] if r["t"] > fault.t]
                if later:
                    delays.append(min(later) - fault.t)
    return _distribution(delays)


def _distribution(delays: list[float]) -> dict[str, float | int]:
    if not delays:
        return {"samples": 0}
    delays.sort()
    return {
        "samples": len(delays),
        "p50": round(statistics.median(delays), 2),
        "p99": round(delays[min(len(delays) - 1, int(len(delays) * 0.99))], 2),
        "max": round(delays[-1], 2),
    }


def _back_to_work(faults: list[Fault], starts: dict[str, list[dict[str, Any]]]) -> dict[str, float | int]:
    """For each Redis restart: the time from Redis back to the first handler start after it
    (jobs were ready throughout: they keep being enqueued)."""
    every_start = sorted(run["t"] for runs in starts.values() for run in runs)
    delays = []
    for fault in faults:
        if fault.kind == "restart_redis" and fault.until is not None:
            later = [t for t in every_start if t > fault.until]
            if later:
                delays.append(later[0] - fault.until)
    return _distribution(delays)


def _read_history(folder: Path) -> list[dict[str, Any]]:
    events = []
    for path in folder.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                events.append(json.loads(line))
    return events


def _statuses(client: redis.Redis, keys: Keyspace, job_ids: list[str]) -> list[bytes | None]:
    with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(keys.job(job_id), "status")
        return list(pipe.execute())


# A call to a server that a fault cut off: refused, reset, a reply cut short
# (http.client.IncompleteRead is no OSError), an error answer (HTTPError), or a body
# that is not the answer.
CALL_FAILED = (OSError, ValueError, http.client.HTTPException)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def _b64(data: bytes) -> str:
    import base64  # noqa: PLC0415

    return base64.b64encode(data).decode()


def _wait_for_server(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _post(f"{url}/grpc.health.v1.Health/Check", {}).get("status") == "SERVING":
                return
        except CALL_FAILED:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become SERVING")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="the bounded run of the test suite")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--seconds", type=float, help="how long enqueues and faults go on")
    parser.add_argument("--fault-every", type=float, help="mean seconds between faults")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, history)")
    parser.add_argument("--cluster", action="store_true", help="on a local Redis Cluster, with its faults")
    parser.add_argument(
        "--partitions", type=int, default=1, help="spread the type over N partitions (changed once mid-run)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.partitions <= MAX_PARTITIONS:
        parser.error(f"--partitions: must be 1 to {MAX_PARTITIONS}")
    if args.small and args.cluster:  # the suite's: well under a minute, each cluster fault once
        base = Plan(jobs=150, workers=2, seconds=10, fault_every_s=2.0, drain_s=40, seed=args.seed)
    elif args.small:
        base = Plan(jobs=300, workers=3, seconds=25, fault_every_s=2.0, drain_s=60, seed=args.seed)
    else:
        base = Plan(jobs=5000, workers=4, seconds=150, fault_every_s=3.0, drain_s=180, seed=args.seed)
    plan = dataclasses.replace(
        base,
        **{k: v for k, v in (("jobs", args.jobs), ("workers", args.workers), ("seconds", args.seconds),
                             ("fault_every_s", args.fault_every), ("partitions", args.partitions))
           if v is not None},
    )  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="jobqueue-chaos-"))
    print(f"chaos: {plan} in {workdir}", flush=True)
    deployment = Deployment(workdir, plan.workers, cluster=args.cluster)
    started = time.monotonic()
    try:
        chaos = Chaos(plan, deployment)
        chaos.run()
        figures, violations = verify(chaos)
    finally:
        deployment.stop()
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["seed"] = plan.seed
    print(json.dumps(figures, indent=2))
    (workdir / "figures.json").write_text(json.dumps(figures, indent=2))
    for violation in violations:
        print(f"VIOLATION: {violation}")
    print(f"{len(violations)} violations; lost: {figures['lost']}")
    if not args.keep and not violations:
        import shutil  # noqa: PLC0415

        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
