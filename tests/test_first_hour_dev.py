"""`jobqueue dev` as a host (issue 15, point 1): real dev processes on free ports, each
with a data directory of its own (XDG_DATA_HOME), restarted, doubled, crowded out and
with their Redis killed; and `jobqueue server` on a taken port."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobqueue.redis_server import find_server_binary, free_port

from .conftest import ROOT, until

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists() or find_server_binary() is None,
    reason="needs Linux's /proc and a redis-server",
)

DEADLINE_S = 60.0  # for what takes a second or two: generous, for a loaded machine


def dev_env(data_home: Path, **extra: str) -> dict[str, str]:
    """The environment of a dev with a data directory of its own and no Redis named."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "JOBQUEUE_REDIS_URL", "REDIS_ADDR")}
    return env | {"XDG_DATA_HOME": str(data_home), "HOME": str(data_home), **extra}


def post_json(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def serving(api: str) -> bool:
    try:
        return post_json(f"{api}/grpc.health.v1.Health/Check", {}).get("status") == "SERVING"
    except (OSError, urllib.error.URLError):
        return False


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def children(pid: int) -> list[tuple[int, str, str]]:
    """(pid, command name, state) of the processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, parent = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(parent) == pid:
            found.append((int(entry.name), name, state))
    return found


class Dev:
    """A `jobqueue dev` subprocess and its log."""

    def __init__(self, log: Path, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str) -> None:
        def seen() -> bool:
            assert self.process.poll() is None or text in self.output(), f"dev exited:\n{self.output()}"
            return text in self.output()

        until(seen, f"{text!r} in dev's log")

    def wait_serving(self, api: str) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"dev exited:\n{self.output()}"
            return serving(api)

        until(ready, f"dev's API {api} serving")

    def stop(self) -> int:
        """SIGINT, as Ctrl-C: dev must stop everything and exit."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(DEADLINE_S)


@contextlib.contextmanager
def dev(
    tmp_path: Path, name: str, args: list[str], *, env: dict[str, str], cwd: Path = ROOT
) -> Iterator[Dev]:
    process = Dev(tmp_path / f"{name}.log", [sys.executable, "-m", "jobqueue.cli", "dev", *args], env, cwd)
    try:
        yield process
    finally:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait(DEADLINE_S)


def dev_to_the_end(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A dev expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "dev", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=DEADLINE_S, check=False,
    )  # fmt: skip


def enqueue(api: str, job_type: str, payload: bytes = b"") -> str:
    import base64  # noqa: PLC0415

    body = {"type": job_type, "payload": base64.b64encode(payload).decode()}
    job = post_json(f"{api}/mpataki.jobqueue.v1.JobService/EnqueueJob", body)["job"]
    assert isinstance(job, dict)
    return str(job["id"])


def wait_completed(api: str, job_id: str) -> None:
    def completed() -> bool:
        job = post_json(f"{api}/mpataki.jobqueue.v1.JobService/GetJob", {"id": job_id})["job"]
        assert isinstance(job, dict)
        return job["status"] == "JOB_STATUS_COMPLETED"

    until(completed, f"job {job_id} COMPLETED")


def test_a_restarted_dev_keeps_its_redis_port_while_a_worker_of_its_is_connected(tmp_path: Path) -> None:
    """The bug: a worker in another terminal keeps connections to dev's Redis; when dev
    stops, they are left in TIME_WAIT on that port, and dev, checking the port without
    SO_REUSEADDR, moved its next Redis elsewhere and the worker's jobs stayed PENDING."""
    api, redis_port = free_port(), free_port()
    args = ["--port", str(api), "--redis-port", str(redis_port), "--worker", "jobqueue.examples.print_worker"]
    base = f"http://127.0.0.1:{api}"
    module = tmp_path / "outside_worker.py"
    module.write_text(
        "from jobqueue.worker import Job, Worker\n"
        "async def noop(job: Job) -> None: ...\n"
        "worker = Worker('outside', noop)\n"
    )
    worker_env = dev_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0")
    with (tmp_path / "worker.log").open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "jobqueue.cli", "worker", str(module)],
            env=worker_env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        with dev(tmp_path, "dev1", args, env=dev_env(tmp_path)) as first:
            first.wait_serving(base)
            wait_completed(base, enqueue(base, "outside"))  # the outside worker is connected
            assert first.stop() == 0, first.output()
        # The condition of the bug: the port looks busy to a bind without SO_REUSEADDR.
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", redis_port))

        with dev(tmp_path, "dev2", args, env=dev_env(tmp_path)) as second:
            second.wait_serving(base)
            assert f"Redis: redis://127.0.0.1:{redis_port}/0 " in second.output(), second.output()
            assert "is in use" not in second.output()
            wait_completed(base, enqueue(base, "outside"))  # the worker found it again
            assert second.stop() == 0, second.output()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(DEADLINE_S)


def test_a_second_dev_on_the_same_data_dir_is_refused_and_the_first_runs_on(tmp_path: Path) -> None:
    api, redis_port = free_port(), free_port()
    base = f"http://127.0.0.1:{api}"
    with dev(
        tmp_path, "first", ["--port", str(api), "--redis-port", str(redis_port)], env=dev_env(tmp_path)
    ) as first:
        first.wait_serving(base)
        other_api, other_redis = free_port(), free_port()
        second = dev_to_the_end(dev_env(tmp_path), "--port", str(other_api), "--redis-port", str(other_redis))
        data_dir = tmp_path / "jobqueue" / "redis"
        assert second.returncode == 1, second.stderr
        assert second.stderr.strip() == (
            f"jobqueue dev: another jobqueue dev (pid {first.process.pid}) uses the data dir {data_dir}: "
            "stop it first, or use the one that runs"
        )
        assert not listening(other_redis) and not listening(other_api)
        assert first.process.poll() is None and serving(base)
        redis_children = [c for c in children(first.process.pid) if c[1].endswith("-server")]
        assert len(redis_children) == 1, redis_children
        assert first.stop() == 0, first.output()


def test_a_busy_api_port_is_refused_before_redis_starts(tmp_path: Path) -> None:
    redis_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api = taken.getsockname()[1]
        result = dev_to_the_end(dev_env(tmp_path), "--port", str(api), "--redis-port", str(redis_port))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"jobqueue dev: port {api} on 127.0.0.1 is in use: is another jobqueue dev running? use --port"
    )
    assert not listening(redis_port)
    assert not (tmp_path / "jobqueue").exists(), "dev touched its Redis' data dir"


def test_dev_restarts_its_killed_redis_and_reaps_it(tmp_path: Path) -> None:
    api, redis_port = free_port(), free_port()
    base = f"http://127.0.0.1:{api}"
    args = ["--port", str(api), "--redis-port", str(redis_port), "--worker", "jobqueue.examples.print_worker"]
    with dev(tmp_path, "dev", args, env=dev_env(tmp_path)) as running:
        running.wait_serving(base)
        [(redis_pid, _, _)] = [c for c in children(running.process.pid) if c[1].endswith("-server")]
        os.kill(redis_pid, signal.SIGKILL)
        running.wait_for(f"Redis exited (killed by SIGKILL); restarting it on port {redis_port}")
        running.wait_for(f"Redis is back on redis://127.0.0.1:{redis_port}/0")
        wait_completed(base, enqueue(base, "print", b"after the kill"))
        assert "after the kill" in running.output()
        now = children(running.process.pid)
        assert [c for c in now if c[2] == "Z"] == [], f"defunct children: {now}"
        assert [c[0] for c in now if c[1].endswith("-server")] not in ([], [redis_pid]), now
        assert running.stop() == 0, running.output()
    assert "Redis stopped" in running.output()


def test_a_killed_dev_leaves_no_redis_behind(tmp_path: Path) -> None:
    """dev SIGKILLed (no chance to stop anything): its Redis dies with it (PR_SET_PDEATHSIG)."""
    api = free_port()
    args = ["--port", str(api), "--redis-port", "0", "--worker", "jobqueue.examples.print_worker"]
    with dev(tmp_path, "dev", args, env=dev_env(tmp_path)) as running:
        running.wait_serving(f"http://127.0.0.1:{api}")
        [(redis_pid, _, _)] = [c for c in children(running.process.pid) if c[1].endswith("-server")]
        running.process.kill()
        running.process.wait(DEADLINE_S)

    def gone() -> bool:  # or dead and not yet reaped by its new parent
        try:
            stat = Path(f"/proc/{redis_pid}/stat").read_text()
        except OSError:
            return True
        return stat[stat.rindex(")") + 2] in "ZX"

    until(gone, f"dev's Redis (pid {redis_pid}) gone")


def test_dev_gives_up_on_a_redis_that_keeps_dying(tmp_path: Path) -> None:
    """A Redis that cannot start again (as with a broken AOF) is not restarted forever."""
    real = find_server_binary()
    assert real is not None
    wrapper = tmp_path / "redis-once"
    wrapper.write_text(f'#!/bin/sh\n[ -e "$0.started" ] && exit 3\ntouch "$0.started"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    api, redis_port = free_port(), free_port()
    args = ["--port", str(api), "--redis-port", str(redis_port), "--worker", "jobqueue.examples.print_worker"]
    with dev(tmp_path, "dev", args, env=dev_env(tmp_path, REDIS_SERVER=str(wrapper))) as running:
        running.wait_serving(f"http://127.0.0.1:{api}")
        [(redis_pid, _, _)] = [c for c in children(running.process.pid) if c[1].endswith("-server")]
        os.kill(redis_pid, signal.SIGKILL)
        code = running.process.wait(DEADLINE_S * 2)
    output = running.output()
    assert code == 1, output
    assert output.count("restarting it on port") == 4, output
    assert output.count("Redis exited (exit status 3); restarting") == 3, output
    assert "Redis exited (exit status 3), 5 times in a row within 30 s of starting: giving up" in output


def test_dev_from_any_directory_runs_the_packaged_worker_and_says_where_redis_went(tmp_path: Path) -> None:
    """run_dev(worker_specs=None), from a directory without examples/, with its Redis port taken."""
    api = free_port()
    base = f"http://127.0.0.1:{api}"
    program = (
        "import sys\n"
        "from jobqueue.dev import run_dev\n"
        "from jobqueue.settings import Settings\n"
        f"settings = Settings(host='127.0.0.1', port={api})\n"
        "sys.exit(run_dev(settings, worker_specs=None, redis_port=int(sys.argv[1])))\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        redis_port = taken.getsockname()[1]
        running = Dev(
            tmp_path / "dev.log",
            [sys.executable, "-c", program, str(redis_port)],
            dev_env(tmp_path),
            tmp_path,
        )
        try:
            running.wait_serving(base)
            wait_completed(base, enqueue(base, "print", b"from anywhere"))
            assert running.stop() == 0, running.output()
        finally:
            if running.process.poll() is None:
                running.process.kill()
                running.process.wait(DEADLINE_S)
    output = running.output()
    moved = re.search(
        rf"WARNING jobqueue.dev: port {redis_port} is in use, so this Redis runs on port (\d+): "
        r"give other processes REDIS_URL=redis://127.0.0.1:(\d+)/0\n",
        output,
    )
    assert moved and moved[1] == moved[2] != str(redis_port), output
    assert "workers: 'print' from jobqueue.examples.print_worker\n" in output
    assert f"API: http://127.0.0.1:{api} " in output
    assert f"dashboard: http://127.0.0.1:{api}/\n" in output
    binary = Path(str(find_server_binary())).name
    assert (
        f"Redis: redis://127.0.0.1:{moved[1]}/0 ({binary}, data in {tmp_path / 'jobqueue' / 'redis'})"
        in output
    )
    assert "from anywhere" in output


@pytest.mark.parametrize("server", ["hypercorn", "h2corn"])
def test_jobqueue_server_on_a_taken_port_names_it_and_never_says_it_runs(server: str, tmp_path: Path) -> None:
    if server == "h2corn" and shutil.which("h2corn") is None:
        pytest.skip("h2corn is not installed")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "jobqueue.cli", "server", "--server", server, "--host", "127.0.0.1",
             "--port", str(port)],
            env=dev_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"), cwd=ROOT,
            capture_output=True, text=True, timeout=DEADLINE_S, check=False,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"jobqueue server: port {port} on 127.0.0.1 is in use: "
        "is another jobqueue server running? use --port (or JOBQUEUE_PORT)"
    )


def test_dev_on_a_redis_the_environment_names_starts_none_and_says_whose(
    redis_url: str, tmp_path: Path
) -> None:
    api = free_port()
    base = f"http://127.0.0.1:{api}"
    env = dev_env(tmp_path, REDIS_URL=redis_url, JOBQUEUE_PREFIX=f"dev-{tmp_path.name}")
    args = ["--port", str(api), "--worker", "jobqueue.examples.print_worker"]
    with dev(tmp_path, "dev", args, env=env) as running:
        running.wait_serving(base)
        wait_completed(base, enqueue(base, "print", b"on a named Redis"))
        assert children(running.process.pid) == []
        assert running.stop() == 0, running.output()
    output = running.output()
    assert "INFO jobqueue.dev: Redis: the one REDIS_URL names\n" in output
    assert "on a named Redis" in output and "Redis stopped" not in output
    assert not (tmp_path / "jobqueue").exists()


def test_dev_cluster_runs_everything_on_a_local_redis_cluster_and_removes_it(tmp_path: Path) -> None:
    api = free_port()
    base = f"http://127.0.0.1:{api}"
    with dev(tmp_path, "dev", ["--port", str(api), "--cluster"], env=dev_env(tmp_path)) as cluster_dev:
        cluster_dev.wait_serving(base)
        found = re.search(
            r"Redis Cluster: (\S+) \(nodes on ports ([\d, ]+); data in (\S+);", cluster_dev.output()
        )
        assert found, cluster_dev.output()
        ports = [int(port) for port in found[2].split(", ")]
        assert len(ports) == 6
        nodes = redis.RedisCluster.from_url(found[1])
        try:
            info = nodes.cluster_info()
            assert (info["cluster_state"], info["cluster_size"]) == ("ok", "3")  # 3 masters
            # Jobs of types whose partitions lie on different masters all run.
            ids = [enqueue(base, "print", b"on a cluster")]
            ids += [enqueue(base, job_type) for job_type in ("a", "b", "c")]
            assert len({nodes.get_node_from_key(f"{{{job_id[:4]}}}").name for job_id in ids}) > 1
            wait_completed(base, ids[0])
        finally:
            nodes.close()
        assert Path(found[3]).is_dir()
        assert cluster_dev.stop() == 0, cluster_dev.output()
    assert "Redis Cluster stopped" in cluster_dev.output()
    assert not any(listening(port) for port in ports)
    assert not Path(found[3]).exists()
