"""Runs a private Redis with Sentinel (a master, its replicas, three sentinels) as
child processes, on loopback.

Used by the test suite's sentinel tests and the failover benchmark. Every node is a
`RedisServer`; a sentinel is one too, started in sentinel mode from a config file of
its own (Sentinel rewrites it as it learns the deployment). Failovers are quick:
a master is thought down after `down_after_ms` without a reply.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import redis

from .redis_server import HOST, RedisServer, free_port, serve_until_stopped

MASTER_NAME = "mymaster"


class SentinelNotReady(RuntimeError):
    pass


class _SentinelProcess(RedisServer):
    """A redis-server in sentinel mode: its config file first on the command line."""

    def __init__(self, data_dir: Path, config: str, *, port: int, binary: str | None = None) -> None:
        super().__init__(data_dir, binary=binary, port=port)
        self.config = config

    def _listen_args(self) -> list[str]:
        path = self.data_dir / "sentinel.conf"
        path.write_text(self.config)
        return [str(path), "--sentinel", "--port", str(self.port)]


class LocalSentinel:
    """A master with `replicas` replicas, watched by `sentinels` sentinels (quorum: a
    majority), in `data_dir`."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        binary: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        master_name: str = MASTER_NAME,
        password: str = "",
    ) -> None:
        """`password`: the nodes' (requirepass); the sentinels take none."""
        self.data_dir = Path(data_dir)
        self.replicas_count = replicas
        self.sentinels_count = sentinels
        self.binary = binary
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.master_name = master_name
        self.password = password
        self.nodes: list[RedisServer] = []  # the first master first, then its replicas
        self.sentinels: list[RedisServer] = []

    @property
    def url(self) -> str:
        """redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,.../mymaster/0"""
        hosts = ",".join(f"{HOST}:{sentinel.port}" for sentinel in self.sentinels)
        credentials = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis+sentinel://{credentials}{hosts}/{self.master_name}/0"

    def start(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        try:
            # A replica's first sync starts at once (diskless, its default 5 s delay is for
            # several replicas to share one).
            quick_sync = ["--repl-diskless-sync-delay", "0"]
            if self.password:
                quick_sync += ["--requirepass", self.password, "--masterauth", self.password]
            master = RedisServer(self.data_dir / "node0", binary=self.binary, extra_args=quick_sync)
            master.start()
            self.nodes.append(master)
            for index in range(1, 1 + self.replicas_count):
                replica = RedisServer(
                    self.data_dir / f"node{index}",
                    binary=self.binary,
                    extra_args=[*quick_sync, "--replicaof", HOST, str(master.port)],
                )
                replica.start()
                self.nodes.append(replica)
            self._until(deadline, "the replicas are in sync", lambda: all(
                self._info(node, "replication").get("master_link_status") == "up" for node in self.nodes[1:]
            ))  # fmt: skip
            for sentinel in self._sentinel_processes(master.port):
                sentinel.start()
                self.sentinels.append(sentinel)
            self._until(deadline, "every sentinel knows the others and the replicas", self._settled)
        except BaseException:
            self.stop()
            raise

    def _sentinel_processes(self, master_port: int) -> list[_SentinelProcess]:
        """The sentinels, each told of the others and of the replicas up front (by their
        ids and ports): left to find them (hello messages, INFO), they take seconds."""
        ports = [free_port() for _ in range(self.sentinels_count)]
        ids = [secrets.token_hex(20) for _ in ports]
        name = self.master_name
        common = [
            f"sentinel monitor {name} {HOST} {master_port} {self.sentinels_count // 2 + 1}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
            *(f"sentinel known-replica {name} {HOST} {node.port}" for node in self.nodes[1:]),
            *([f"sentinel auth-pass {name} {self.password}"] if self.password else []),
        ]
        processes = []
        for index, (port, own_id) in enumerate(zip(ports, ids, strict=True)):
            others = [
                f"sentinel known-sentinel {name} {HOST} {other_port} {other_id}"
                for other_port, other_id in zip(ports, ids, strict=True)
                if other_id != own_id
            ]
            config = "\n".join([f"sentinel myid {own_id}", *common, *others, ""])
            processes.append(
                _SentinelProcess(self.data_dir / f"sentinel{index}", config, port=port, binary=self.binary)
            )
        return processes

    def _settled(self) -> bool:
        for sentinel in self.sentinels:
            with _client(sentinel) as client:
                state = client.sentinel_master(self.master_name)
            if int(state["num-other-sentinels"]) != self.sentinels_count - 1:
                return False
            if int(state["num-slaves"]) != self.replicas_count:
                return False
        return True

    def master_address(self) -> tuple[str, int]:
        """Where the sentinels say the master is (the first that answers)."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError), _client(sentinel) as client:
                host, port = client.sentinel_get_master_addr_by_name(self.master_name)
                return str(host), int(port)
        raise SentinelNotReady("no sentinel answers")

    def node_at(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def failover(self) -> None:
        """SENTINEL FAILOVER: a replica is promoted, the old master becomes its replica."""
        with _client(self.sentinels[0]) as client:
            client.execute_command("SENTINEL FAILOVER", self.master_name)

    def failed_over(self, old: tuple[str, int]) -> bool:
        """Whether every sentinel names a master other than `old`, which answers as one,
        and every other node replicates from it, in sync."""
        addresses = set()
        for sentinel in self.sentinels:
            with _client(sentinel) as client:
                host, port = client.sentinel_get_master_addr_by_name(self.master_name)
                addresses.add((str(host), int(port)))
        if len(addresses) != 1 or old in addresses:
            return False
        (_, port), *_ = addresses
        if self._info(self.node_at(port), "replication").get("role") != "master":
            return False
        return all(
            self._info(node, "replication").get("master_link_status") == "up"
            and int(str(self._info(node, "replication").get("master_port"))) == port
            for node in self.nodes
            if node.port != port and node.process is not None and node.process.poll() is None
        )

    def _info(self, node: RedisServer, section: str) -> dict[str, object]:
        with _client(node, self.password) as client:
            return dict(client.info(section))

    def _until(self, deadline: float, what: str, check: Callable[[], bool]) -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if check():
                    return
            time.sleep(0.05)
        raise SentinelNotReady(f"local Sentinel deployment in {self.data_dir}: not ready in time ({what})")

    def stop(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            process.stop()
        self.sentinels, self.nodes = [], []

    def __enter__(self) -> LocalSentinel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _client(server: RedisServer, password: str = "") -> redis.Redis:
    return redis.Redis(
        host=HOST, port=server.port, socket_timeout=5, decode_responses=True, password=password or None
    )


def main() -> None:
    """`python -m jobqueue.redis_sentinel [DIR]`: runs a master, a replica and three
    sentinels until Ctrl-C (or SIGTERM), the redis+sentinel:// URL on stdout."""
    serve_until_stopped(LocalSentinel, "jobqueue-sentinel-")


if __name__ == "__main__":
    main()
