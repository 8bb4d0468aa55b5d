"""Runs a private Redis Cluster (masters with replicas) as child processes.

Used by the test suite (its cluster target) and `jobqueue dev --cluster`. Each node
is a `RedisServer` on loopback with `--cluster-enabled yes`; the cluster is then
formed with cluster commands (slots split evenly over the masters, MEET, REPLICATE)
rather than `redis-cli --cluster create`, which sleeps a second per step and is
named differently in Valkey. Every node's cluster bus listens on its port + 10000,
so ports are picked with both free.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import redis

from .ports import port_free
from .redis_server import HOST, RedisServer, free_port

SLOTS = 16384
BUS_OFFSET = 10000  # Redis Cluster's bus port is the node's port + 10000


def _call(client: redis.Redis, *command: object) -> Any:
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


def _ready(info: dict[str, object]) -> bool:
    return info.get("cluster_state") == "ok" and int(str(info.get("cluster_slots_ok"))) == SLOTS


class ClusterDidNotForm(RuntimeError):
    pass


def _cluster_port(taken: set[int]) -> int:
    """A free port whose bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + BUS_OFFSET < 65536 and port not in taken and port_free(HOST, port + BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair (port, port + 10000) for a cluster node")


class LocalCluster:
    """`masters` masters with `replicas` replicas each, on 127.0.0.1, in `data_dir`."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        binary: str | None = None,
        node_timeout_ms: int = 2000,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.masters_count = masters
        self.replicas_count = replicas
        self.binary = binary
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        """The first master's URL: any node's names the cluster."""
        return self.nodes[0].url

    @property
    def masters(self) -> list[RedisServer]:
        return self.nodes[: self.masters_count]

    def start(self, timeout: float = 30.0) -> None:
        taken: set[int] = set()
        try:
            for index in range(self.masters_count * (1 + self.replicas_count)):
                port = _cluster_port(taken)
                taken.add(port)
                node = RedisServer(
                    self.data_dir / f"node{index}",
                    binary=self.binary,
                    port=port,
                    extra_args=[
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", str(self.node_timeout_ms),
                    ],
                )  # fmt: skip
                node.start()
                self.nodes.append(node)
            self._form(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def _form(self, deadline: float) -> None:
        clients = [redis.Redis(host=HOST, port=node.port, socket_timeout=5) for node in self.nodes]
        try:
            ids = [_call(client, "CLUSTER MYID").decode() for client in clients]
            per_master = SLOTS // self.masters_count
            for index, client in enumerate(clients[: self.masters_count]):
                first = index * per_master
                last = SLOTS - 1 if index == self.masters_count - 1 else first + per_master - 1
                _call(client, "CLUSTER ADDSLOTSRANGE", first, last)
            for node in self.nodes[1:]:
                _call(clients[0], "CLUSTER MEET", HOST, node.port)
            self._until(deadline, "every node knows every other", lambda: all(
                len(_call(c, "CLUSTER NODES")) == len(clients)
                for c in clients
            ))  # fmt: skip
            for index, client in enumerate(clients[self.masters_count :]):
                _call(client, "CLUSTER REPLICATE", ids[index % self.masters_count])
            self._until(deadline, "the cluster state is ok with its replicas", lambda: all(
                _ready(_call(c, "CLUSTER INFO")) for c in clients
            ) and all(
                len(_call(c, "CLUSTER REPLICAS", ids[i])) == self.replicas_count
                for i, c in enumerate(clients[: self.masters_count])
            ))  # fmt: skip
        finally:
            for client in clients:
                client.close()

    def _until(self, deadline: float, what: str, check: object) -> None:
        assert callable(check)
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise ClusterDidNotForm(f"local Redis Cluster in {self.data_dir}: not formed in time ({what})")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """`python -m jobqueue.redis_cluster [DIR]`: runs a local cluster until Ctrl-C (or
    SIGTERM), its first master's URL on stdout (for benchmarks and trying things)."""
    import signal  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="jobqueue-cluster-"))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with LocalCluster(data_dir) as cluster:
        print(cluster.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
