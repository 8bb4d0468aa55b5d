#!/usr/bin/env python3
"""What TLS costs, with plain and TLS side by side on this machine (loopback only).

    python bench/tls_cost.py [ROUNDS]

- API: a `jobqueue server` (Hypercorn) without and one with --tls-cert, on one Redis;
  SyncClient GetJob calls one after another on a kept-alive connection, and calls
  each on a new client (a new connection: TCP, and the TLS handshake).
- Redis: a redis-server without and one with TLS; one command after another on a
  pooled connection of `store.client.connect`, and new connections.

Each figure is the median of ROUNDS (default 5) rounds, plain and TLS alternating;
the ratio is TLS over plain. Certificates: made by tests/tls_certs.py (openssl).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from connectrpc.errors import ConnectError

from jobqueue.client import SyncClient
from jobqueue.redis_server import RedisServer, RedisTLS, free_port
from jobqueue.store.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.tls_certs import Certs, make_certs

CALLS = 300
NEW_CONNECTIONS = 50


@contextmanager
def api_server(redis_url: str, folder: Path, tls: Certs | None) -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "jobqueue.cli", "server", "--host", "127.0.0.1", "--port", str(port)]
    if tls is not None:
        args += ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
    log = (folder / f"server-{port}.log").open("wb")
    env = {**os.environ, "REDIS_URL": redis_url, "JOBQUEUE_LOG_LEVEL": "warning"}
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with SyncClient(url, timeout_s=2, ca_file=tls.ca if tls else None) as client:
                    client.stats()
                break
            except ConnectError:  # not up yet
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def per_call_us(run: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        run()
    return (time.perf_counter() - start) / n * 1e6


def api_figures(plain: str, tls: str, ca: Path, rounds: int) -> dict[str, tuple[float, float]]:
    kept: dict[str, list[float]] = {plain: [], tls: []}
    fresh: dict[str, list[float]] = {plain: [], tls: []}
    for _ in range(rounds):
        for url in (plain, tls):
            ca_file = ca if url.startswith("https") else None
            with SyncClient(url, ca_file=ca_file) as client:
                job_id = client.enqueue("tls-cost", b"x").id
                kept[url].append(per_call_us(lambda c=client, j=job_id: c.get(j), CALLS))  # type: ignore[misc]

            def once(u: str = url, f: Path | None = ca_file, j: str = job_id) -> None:
                with SyncClient(u, ca_file=f) as client:
                    client.get(j)

            fresh[url].append(per_call_us(once, NEW_CONNECTIONS))
    return {
        "API GetJob, kept-alive connection": (statistics.median(kept[plain]), statistics.median(kept[tls])),
        "API GetJob, a new client each": (statistics.median(fresh[plain]), statistics.median(fresh[tls])),
    }


async def redis_figures(plain: str, tls: str, rounds: int) -> dict[str, tuple[float, float]]:
    command: dict[str, list[float]] = {plain: [], tls: []}
    connection: dict[str, list[float]] = {plain: [], tls: []}
    for _ in range(rounds):
        for url in (plain, tls):
            client = connect(url, timeout_s=5)
            try:
                await client.exists("tls-cost")
                start = time.perf_counter()
                for _ in range(CALLS):
                    await client.exists("tls-cost")
                command[url].append((time.perf_counter() - start) / CALLS * 1e6)
                start = time.perf_counter()
                for _ in range(NEW_CONNECTIONS):
                    made = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
                    await made.connect()
                    await made.disconnect()
                connection[url].append((time.perf_counter() - start) / NEW_CONNECTIONS * 1e6)
            finally:
                await client.aclose()
    return {
        "Redis EXISTS, pooled connection": (
            statistics.median(command[plain]),
            statistics.median(command[tls]),
        ),
        "Redis new connection": (statistics.median(connection[plain]), statistics.median(connection[tls])),
    }


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        certs = make_certs(folder / "certs")
        redis_tls = RedisTLS(cert=certs.server_cert, key=certs.server_key, ca=certs.ca)
        with (
            RedisServer(folder / "redis") as redis_plain,
            RedisServer(folder / "redis-tls", tls=redis_tls) as redis_secure,
            api_server(redis_plain.url, folder, None) as api_plain,
            api_server(redis_plain.url, folder, certs) as api_tls,
        ):
            figures = api_figures(api_plain, api_tls, certs.ca, rounds)
            figures |= asyncio.run(redis_figures(redis_plain.url, redis_secure.url, rounds))
    print(f"median of {rounds} rounds (µs per call; plain and TLS alternating)")
    print(f"{'':38} {'plain':>9} {'TLS':>9} {'TLS/plain':>10}")
    for name, (plain_us, tls_us) in figures.items():
        print(f"{name:38} {plain_us:9.0f} {tls_us:9.0f} {tls_us / plain_us:10.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
