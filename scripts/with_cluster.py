#!/usr/bin/env python3
"""Runs a command against a local Redis Cluster of its own, then stops the cluster.

    python scripts/with_cluster.py [--masters N] [--replicas N] [--expect-keys] -- CMD [ARG...]

The cluster (jobqueue/redis_cluster.py: loopback nodes in a temporary directory) is
named to CMD the way a deployment names it, in the environment: JOBQUEUE_REDIS_URL
(one node's URL; it wins over REDIS_URL and REDIS_ADDR) and JOBQUEUE_REDIS_CLUSTER=1,
so every jobqueue process CMD starts, and that inherits its environment, uses the
cluster. CI runs the acceptance script this way a second time (.ci/run).

The exit status is CMD's. The cluster is stopped however CMD ends, and when this
script gets SIGTERM or SIGINT (passed on to CMD first); if this script is killed, the
nodes die with it (redis_server.py's parent-death signal). With --expect-keys, a CMD
that succeeds but left no key on any master fails: it did not use the cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile

import redis

from jobqueue.redis_cluster import LocalCluster
from jobqueue.redis_server import HOST

# How long CMD gets to finish after this script passes a SIGTERM on.
STOP_GRACE_S = 20.0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1, help="replicas per master")
    parser.add_argument(
        "--expect-keys", action="store_true", help="fail if CMD succeeds without writing to the cluster"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("a command to run is required (after --)")
    return args


def _keys_per_master(cluster: LocalCluster) -> dict[str, int]:
    counts = {}
    for node in cluster.masters:
        with redis.Redis(host=HOST, port=node.port, socket_timeout=5) as client:
            counts[f"{HOST}:{node.port}"] = int(client.dbsize())
    return counts


def _run(command: list[str], env: dict[str, str]) -> int:
    child = subprocess.Popen(command, env=env)
    try:
        return child.wait()
    except KeyboardInterrupt:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        raise


def main(argv: list[str]) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with (
        tempfile.TemporaryDirectory(prefix="jobqueue-with-cluster-") as data_dir,
        LocalCluster(data_dir, masters=args.masters, replicas=args.replicas) as cluster,
    ):
        nodes = " ".join(f"{HOST}:{node.port}" for node in cluster.nodes)
        print(f"with_cluster: {cluster.url} (nodes {nodes})", file=sys.stderr, flush=True)
        env = dict(os.environ, JOBQUEUE_REDIS_URL=cluster.url, JOBQUEUE_REDIS_CLUSTER="1")
        try:
            returncode = _run(args.command, env)
        except KeyboardInterrupt:
            print("with_cluster: interrupted: stopping the cluster", file=sys.stderr, flush=True)
            return 130
        counts = _keys_per_master(cluster)
    shown = " ".join(f"{node}={count}" for node, count in counts.items())
    print(f"with_cluster: keys per master after the command: {shown}", file=sys.stderr, flush=True)
    if returncode == 0 and args.expect_keys and not any(counts.values()):
        print("with_cluster: the command left no key on the cluster: it did not use it", file=sys.stderr)
        return 1
    return returncode


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
    sys.exit(130)
