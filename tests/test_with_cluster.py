"""scripts/with_cluster.py: a command run against a local Redis Cluster of its own.

CI runs the acceptance script through it (.ci/run); these tests check what CI relies
on: the command finds the cluster in its environment, its exit status comes back, and
the cluster's nodes are gone afterwards however the command ended.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jobqueue.redis_server import find_server_binary

from .conftest import until

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "with_cluster.py"

pytestmark = pytest.mark.skipif(find_server_binary() is None, reason="needs redis-server")

# Writes one key through redis-py's cluster client, from the environment alone.
WRITES_A_KEY = """
import os, redis.cluster
assert os.environ["JOBQUEUE_REDIS_CLUSTER"] == "1", os.environ.get("JOBQUEUE_REDIS_CLUSTER")
client = redis.cluster.RedisCluster.from_url(os.environ["JOBQUEUE_REDIS_URL"])
client.set("with-cluster-test", "1")
print("masters", len(client.get_primaries()))
"""

# Says it started, then waits for SIGTERM and says it got it.
WAITS_FOR_SIGTERM = """
import pathlib, signal, sys
marker = pathlib.Path(sys.argv[1])
def on_term(signum, frame):
    marker.write_text("terminated")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
marker.write_text("started")
for _ in range(600):
    signal.pause()
"""


def with_cluster(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--replicas", "0", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def node_ports(stderr: str) -> list[int]:
    found = re.search(r"\(nodes ([^)]*)\)", stderr)
    assert found, stderr
    return [int(node.rsplit(":", 1)[1]) for node in found.group(1).split()]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def assert_stopped(ports: list[int]) -> None:
    assert ports
    until(lambda: not any(listening(port) for port in ports), "every cluster node stopped", timeout=15)


def test_the_command_reaches_the_cluster_from_its_environment_and_the_cluster_stops_after() -> None:
    result = with_cluster("--", sys.executable, "-c", WRITES_A_KEY)
    assert result.returncode == 0, result.stderr
    assert "masters 3" in result.stdout
    counts = re.search(r"keys per master after the command: (.*)", result.stderr)
    assert counts, result.stderr
    assert sorted(int(entry.rsplit("=", 1)[1]) for entry in counts.group(1).split()) == [0, 0, 1]
    assert_stopped(node_ports(result.stderr))


def test_the_exit_status_is_the_commands_and_a_failing_command_stops_the_cluster_too() -> None:
    result = with_cluster("--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert result.returncode == 3, result.stderr
    assert_stopped(node_ports(result.stderr))


def test_expect_keys_fails_a_command_that_succeeds_without_using_the_cluster() -> None:
    result = with_cluster("--expect-keys", "--", sys.executable, "-c", "pass")
    assert result.returncode == 1
    assert "left no key on the cluster" in result.stderr
    used = with_cluster("--expect-keys", "--", sys.executable, "-c", WRITES_A_KEY)
    assert used.returncode == 0, used.stderr


def test_a_command_is_required() -> None:
    result = with_cluster("--")
    assert result.returncode == 2
    assert "a command to run is required" in result.stderr


def test_sigterm_passes_on_to_the_command_and_stops_the_cluster(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--replicas", "0", "--", sys.executable, "-c", WAITS_FOR_SIGTERM,
         str(marker)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    try:
        until(lambda: marker.exists() and marker.read_text() == "started", "the command started", timeout=60)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert marker.read_text() == "terminated"
    assert "interrupted: stopping the cluster" in stderr
    assert_stopped(node_ports(stderr))
