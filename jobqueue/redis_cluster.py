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
from redis.crc import key_slot

from .ports import port_free
from .redis_server import HOST, RedisServer, free_port, serve_until_stopped

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
        """The first live node's URL: any node's names the cluster (the first master's
        until a fault kills it)."""
        return (self.live() or self.nodes)[0].url

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
                        # A replica's first sync now, not after 5 s (the default delay
                        # waits for more replicas to share one transfer).
                        "--repl-diskless-sync-delay", "0",
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
            # A replica that never synced would never take over (its data counts as
            # too old): a cluster is formed once every replica has its master's data.
            self._until(deadline, "every replica synced", lambda: all(
                c.info("replication").get("master_link_status") == "up"
                for c in clients[self.masters_count :]
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
        raise ClusterDidNotForm(f"local Redis Cluster in {self.data_dir}: not in time ({what})")

    # -- faults: what the failover tests and the fault-injection suite do to a cluster ----

    def client(self, node: RedisServer) -> redis.Redis:
        """A plain (single-node) client of `node`, for cluster commands; the caller closes it."""
        return redis.Redis(host=HOST, port=node.port, socket_timeout=5)

    def live(self) -> list[RedisServer]:
        """The nodes whose process runs (all but those killed and not restarted)."""
        return [node for node in self.nodes if node.process is not None and node.process.poll() is None]

    def node_id(self, node: RedisServer) -> str:
        with self.client(node) as client:
            return str(_call(client, "CLUSTER MYID").decode())

    def _by_port(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def owner(self, slot: int) -> RedisServer:
        """The master that serves `slot`, as a live node sees the cluster now."""
        with self.client(self.live()[0]) as client:
            for first, last, master, *_ in _call(client, "CLUSTER SLOTS"):
                if first <= slot <= last:
                    return self._by_port(int(master[1]))
        raise LookupError(f"slot {slot} is served by no master")

    def _serves_slots(self, master: RedisServer) -> bool:
        with self.client(master) as client:
            return any(int(owner[1]) == master.port for _, _, owner, *_ in _call(client, "CLUSTER SLOTS"))

    def owner_of(self, key: str) -> RedisServer:
        return self.owner(key_slot(key.encode()))

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """The live replicas of `master`, as each says itself (a master learns of a new
        replica by gossip, a moment later)."""
        found = []
        for node in self.live():
            with self.client(node) as client:
                replication = client.info("replication")
            if replication["role"] == "slave" and int(replication["master_port"]) == master.port:
                found.append(node)
        return found

    def role(self, node: RedisServer) -> str:
        with self.client(node) as client:
            return str(_call(client, "ROLE")[0].decode())

    def settled(self) -> bool:
        """Every live node says the cluster is ok, the live nodes agree on who serves
        every slot, and every live replica is in sync with its master (a failover, or
        a node's return, is over once all that holds)."""
        try:
            views = [self._view(node) for node in self.live()]
        except redis.RedisError:
            return False
        return all(view is not None and view == views[0] for view in views)

    def _view(self, node: RedisServer) -> list[tuple[int, int, int]] | None:
        """The current epoch and who serves which slots, as `node` sees it; None while
        it is not settled."""
        with self.client(node) as client:
            info = _call(client, "CLUSTER INFO")
            if not _ready(info):
                return None
            replication = client.info("replication")
            if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                return None
            live = {f"{HOST}:{other.port}" for other in self.live()}
            for address, seen in _call(client, "CLUSTER NODES").items():  # parsed: {"host:port": ...}
                flags = seen["flags"].split(",")
                if address.split("@")[0] in live and (
                    not seen["connected"] or "fail" in flags or "fail?" in flags
                ):
                    return None  # a bus link not up again yet: a manual failover would time out
            # The epoch with the map: a failover right after another, before every node
            # learned the last epoch, can leave the cluster split on who serves a slot.
            slots = sorted(
                (first, last, int(master[1])) for first, last, master, *_ in _call(client, "CLUSTER SLOTS")
            )
            return [(-1, -1, int(info["cluster_current_epoch"])), *slots]

    def wait_until(self, check: object, what: str, timeout: float = 30.0) -> float:
        """Polls `check` until it holds; returns how long it took."""
        started = time.monotonic()
        self._until(started + timeout, what, check)
        return time.monotonic() - started

    def kill_master(self, master: RedisServer) -> RedisServer:
        """SIGKILL of `master`; returns its replica, which will take over (`promoted`)."""
        replicas = self.replicas_of(master)
        if not replicas:
            raise ClusterDidNotForm(f"master on port {master.port} has no replica to take over")
        master.kill()
        replica = replicas[0]
        return replica

    def promoted(self, replica: RedisServer, timeout: float = 30.0) -> float:
        """Waits until `replica` is a master and the cluster settled; returns the wait."""
        return self.wait_until(
            lambda: self.role(replica) == "master" and self.settled(), "a replica promoted", timeout
        )

    def restart(self, node: RedisServer, timeout: float = 30.0) -> None:
        """Starts a killed node again on its port and data: it rejoins from its nodes.conf
        (a master whose replica was promoted meanwhile comes back as that one's replica)."""
        node.start()
        self.wait_until(
            lambda: self.settled() and (self.role(node) == "slave" or self._serves_slots(node)),
            "a restarted node rejoined",
            timeout,
        )

    def failover(self, replica: RedisServer, timeout: float = 30.0) -> float:
        """A manual CLUSTER FAILOVER on `replica` (its master alive: no write is lost);
        returns the seconds until it is a master, its old master its replica, and the
        cluster settled."""
        with self.client(replica) as client:
            master = self._by_port(int(client.info("replication")["master_port"]))
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            # A request its master did not hear (a bus link just restored) times out
            # in Redis after 5 s; a new one replaces it: asked again every 2 s.
            self._ask_failover(replica)
            with contextlib.suppress(ClusterDidNotForm):
                self._until(min(deadline, time.monotonic() + 2), "a manual failover", lambda: (
                    self.role(replica) == "master" and self.role(master) == "slave" and self.settled()
                ))  # fmt: skip
                return time.monotonic() - started
        raise ClusterDidNotForm(f"local Redis Cluster in {self.data_dir}: not in time (a manual failover)")

    def _ask_failover(self, replica: RedisServer) -> None:
        """CLUSTER FAILOVER on `replica`, unless it is a master already: an earlier
        request took effect and only the cluster's settling is awaited (a loaded machine
        can take more than the 2 s between requests), and asked then, it would refuse
        ("You should send CLUSTER FAILOVER to a replica")."""
        with self.client(replica) as client:
            try:
                _call(client, "CLUSTER FAILOVER")
            except redis.ResponseError:
                if self.role(replica) != "master":
                    raise

    def migrate_slot(self, slot: int, target: RedisServer, batch: int = 100) -> int:
        """Moves `slot` to the master `target`, as `redis-cli --cluster reshard` does:
        IMPORTING on the target, MIGRATING on the source, MIGRATE of its keys in batches
        (a client meanwhile gets ASK for a key already moved, TRYAGAIN for a multi-key
        command over both), then SETSLOT NODE on every master. Returns the keys moved."""
        source = self.owner(slot)
        if source is target:
            return 0
        source_id, target_id = self.node_id(source), self.node_id(target)
        moved = 0
        with self.client(source) as src, self.client(target) as dst:
            _call(dst, "CLUSTER SETSLOT", slot, "IMPORTING", source_id)
            _call(src, "CLUSTER SETSLOT", slot, "MIGRATING", target_id)
            for _ in range(100_000):
                keys = _call(src, "CLUSTER GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                _call(src, "MIGRATE", HOST, target.port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
            for master in [target, source, *(m for m in self.live() if m not in (source, target))]:
                if self.role(master) == "master":
                    with self.client(master) as client:
                        _call(client, "CLUSTER SETSLOT", slot, "NODE", target_id)
        return moved

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
    serve_until_stopped(LocalCluster, "jobqueue-cluster-")


if __name__ == "__main__":
    main()
