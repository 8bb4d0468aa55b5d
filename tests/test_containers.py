"""Checks of the container setup: docker/Dockerfile, compose.yaml,
compose.cluster.yaml and .dockerignore.

No Docker engine is needed. The Dockerfile is read by a small parser here; its
targets `server` and `worker` are checked with what they inherit from earlier
stages. The compose files are read with PyYAML when it is installed, else through
`docker compose config --format json` when a Compose v2 client answers; with
neither, the compose tests skip. The checks common to both files run on each. The
images' HEALTHCHECK commands are also run here, against a real server and Redis
(the conftest fixtures), and so are compose.cluster.yaml's node commands and its
cluster-forming script (on loopback): a typo in them would otherwise only show as a
container that never becomes healthy.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis import Redis
from redis.cluster import RedisCluster

from jobqueue.redis_server import RedisServer, find_server_binary, free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
TARGETS = ("server", "worker")


# --- Dockerfile --------------------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _logical_lines(text: str) -> list[str]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages in order)."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name=name, base=words[0]))
        elif not stages:
            if keyword == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    return parse_dockerfile(DOCKERFILE.read_text())


def chain(stages: list[Stage], target: str) -> list[Stage]:
    """The target stage and the stages it is built FROM, the root first."""
    by_name = {s.name: s for s in stages if s.name}
    assert target in by_name, f"docker/Dockerfile has no stage named {target!r}"
    result = [by_name[target]]
    while result[0].base in by_name:
        result.insert(0, by_name[result[0].base])
        assert len(result) <= len(stages), "FROM cycle"
    return result


def effective(stages: list[Stage], target: str, keyword: str) -> list[str]:
    """The arguments of every `keyword` instruction that applies to the target, in order."""
    return [rest for stage in chain(stages, target) for kw, rest in stage.instructions if kw == keyword]


def exec_form(rest: str) -> list[str]:
    """The JSON array of an exec-form instruction; fails on the shell form."""
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        pytest.fail(f"not exec form (a JSON array): {rest}")
    assert isinstance(value, list) and value and all(isinstance(v, str) for v in value), rest
    return value


def healthcheck_command(stages: list[Stage], target: str) -> list[str]:
    checks = effective(stages, target, "HEALTHCHECK")
    assert checks, f"target {target} has no HEALTHCHECK"
    words = checks[-1].split()
    assert words[0].upper() != "NONE", f"target {target} disables its HEALTHCHECK"
    options = [w for w in words if w.startswith("--")]
    assert any(o.startswith("--timeout=") for o in options), f"{target}: HEALTHCHECK without --timeout"
    cmd_at = checks[-1].find("CMD")
    assert cmd_at >= 0, checks[-1]
    return exec_form(checks[-1][cmd_at + 3 :].strip())


def run_command(stages: list[Stage], target: str) -> list[str]:
    entrypoint = effective(stages, target, "ENTRYPOINT")
    cmd = effective(stages, target, "CMD")
    assert entrypoint or cmd, f"target {target} has neither ENTRYPOINT nor CMD"
    return (exec_form(entrypoint[-1]) if entrypoint else []) + (exec_form(cmd[-1]) if cmd else [])


def test_targets_use_python_312_slim(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    args, stages = dockerfile
    names = {s.name for s in stages}
    for target in TARGETS:
        root = chain(stages, target)[0].base
        if root.startswith("${") and root.endswith("}"):
            root = args.get(root[2:-1], root)
        assert root == "python:3.12-slim", f"{target} is built on {root}"
    for stage in stages:  # every FROM is a known stage or the Python image
        assert stage.base in names or stage.base in ("python:3.12-slim", "${PYTHON_IMAGE}"), stage.base


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_as_a_non_root_user(dockerfile: tuple[dict[str, str], list[Stage]], target: str) -> None:
    users = effective(dockerfile[1], target, "USER")
    assert users, f"target {target} has no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0", ""), f"target {target} runs as {users[-1]}"


@pytest.mark.parametrize("target", TARGETS)
def test_target_has_exec_form_commands_and_sigterm(
    dockerfile: tuple[dict[str, str], list[Stage]], target: str
) -> None:
    stages = dockerfile[1]
    for keyword in ("ENTRYPOINT", "CMD"):
        for rest in effective(stages, target, keyword):
            exec_form(rest)  # shell form would make /bin/sh PID 1, and SIGTERM would not reach jobqueue
    signals = effective(stages, target, "STOPSIGNAL")
    assert signals and signals[-1] == "SIGTERM", f"{target}: STOPSIGNAL {signals}"
    env = " ".join(effective(stages, target, "ENV"))
    assert "PYTHONUNBUFFERED=1" in env, f"{target}: PYTHONUNBUFFERED=1 is not set"


def test_server_target_runs_the_server_on_8080(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    stages = dockerfile[1]
    assert run_command(stages, "server") == ["jobqueue", "server"]
    assert "8080" in " ".join(effective(stages, "server", "EXPOSE")).split()
    assert "health.v1.Health/Check" in " ".join(healthcheck_command(stages, "server"))


def test_worker_target_runs_the_print_worker(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    stages = dockerfile[1]
    command = run_command(stages, "worker")
    assert command == ["jobqueue", "worker", "jobqueue.examples.print_worker"], command
    assert (ROOT / (command[-1].replace(".", "/") + ".py")).is_file()  # in the package the image installs


def test_build_installs_without_cache_and_checks_generated_code(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    runs = [rest for stage in dockerfile[1] for kw, rest in stage.instructions if kw == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert installs, "no pip install"
    assert all("--no-cache-dir" in r for r in installs), installs
    assert any("import jobqueue._gen.mpataki.jobqueue.v1.jobqueue_connect" in r for r in runs)


def _ignore_patterns() -> list[str]:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing"
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line.strip("/") for line in lines if line and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    """A close enough reading of .dockerignore: a path is out when it or a parent matches (no `!`)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(prefix.split("/")[-1], pattern[3:])
            ):
                return True
    return False


def test_dockerignore_keeps_what_the_images_copy_and_drops_the_rest(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    patterns = _ignore_patterns()
    sources: list[str] = []
    for stage in dockerfile[1]:
        for keyword, rest in stage.instructions:
            if keyword == "COPY" and "--from=" not in rest:
                words = [w for w in rest.split() if not w.startswith("--")]
                sources += [w for w in words[:-1] if not any(c in w for c in "*?[")]
    assert {"pyproject.toml", "jobqueue"} <= set(sources), sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not _ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for kept in (
        "jobqueue/_gen/mpataki/jobqueue/v1/jobqueue_connect.py",
        "jobqueue/examples/print_worker.py",
    ):
        assert (ROOT / kept).is_file(), kept
        assert not _ignored(kept, patterns), f"{kept} is excluded by .dockerignore"
    for dropped in (".git", ".venv", "venv", "jobqueue/__pycache__", ".pytest_cache", "bench/results"):
        assert _ignored(dropped, patterns), f"{dropped} is not excluded by .dockerignore"


# --- the HEALTHCHECK commands, run for real ----------------------------------------------------------------


def _run_check(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    assert command[0] == "python", command
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JOBQUEUE_", "REDIS_"))}
    return subprocess.run(
        [sys.executable, *command[1:]],
        env=clean | env, cwd=cwd, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_server_healthcheck_passes_on_a_serving_server(
    dockerfile: tuple[dict[str, str], list[Stage]], server_url: str, tmp_path: Path
) -> None:
    command = healthcheck_command(dockerfile[1], "server")
    port = str(urlsplit(server_url).port)
    done = _run_check(command, {"JOBQUEUE_PORT": port}, tmp_path)
    assert done.returncode == 0, done.stderr
    done = _run_check(command, {"JOBQUEUE_PORT": str(free_port())}, tmp_path)
    assert done.returncode != 0, "the healthcheck passed with no server listening"


@pytest.mark.parametrize("target", ["single", "cluster"])
def test_worker_healthcheck_follows_redis(
    dockerfile: tuple[dict[str, str], list[Stage]],
    target: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """On a Redis, and on a node of a cluster as compose.cluster.yaml names one."""
    redis_url = request.getfixturevalue(f"{target}_redis_url")
    command = healthcheck_command(dockerfile[1], "worker")
    cluster_flag = "1" if target == "cluster" else "0"
    done = _run_check(command, {"REDIS_URL": redis_url, "JOBQUEUE_REDIS_CLUSTER": cluster_flag}, tmp_path)
    assert done.returncode == 0, done.stderr
    done = _run_check(command, {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, tmp_path)
    assert done.returncode != 0, "the healthcheck passed with no Redis answering"


# --- compose.yaml and compose.cluster.yaml -----------------------------------------------------------------


@dataclass(frozen=True)
class ComposeFile:
    """A compose file of the repository, and where its server and worker find Redis."""

    name: str
    redis_nodes: tuple[str, ...]  # its Redis services
    redis_url: str  # the REDIS_URL its server and worker are given
    cluster: bool  # whether they are told it names a Redis Cluster

    @property
    def path(self) -> Path:
        return ROOT / self.name


COMPOSE_FILES = (
    ComposeFile("compose.yaml", ("redis",), "redis://redis:6379/0", cluster=False),
    ComposeFile(
        "compose.cluster.yaml", ("redis-1", "redis-2", "redis-3"), "redis://redis-1:6379/0", cluster=True
    ),
)
CLUSTER_COMPOSE = COMPOSE_FILES[1]
# The one-shot service of compose.cluster.yaml that forms the cluster.
CLUSTER_CREATE = "redis-cluster-create"


def _load_compose(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"{path.name} is missing"
    try:
        import yaml  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError:
        pass
    else:
        loaded = yaml.safe_load(path.read_text())
        assert isinstance(loaded, dict), f"{path.name} is not a mapping"
        return loaded
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip(f"neither PyYAML nor a docker client to read {path.name}")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"neither PyYAML nor Compose v2 (`docker compose`) to read {path.name}")
    done = subprocess.run(
        [docker, "compose", "-f", str(path), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"docker compose config failed:\n{done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module", params=COMPOSE_FILES, ids=[f.name for f in COMPOSE_FILES])
def compose_file(request: pytest.FixtureRequest) -> tuple[ComposeFile, dict[str, Any]]:
    """Each compose file, with what it holds: the tests taking it check both."""
    spec: ComposeFile = request.param
    return spec, _load_compose(spec.path)


@pytest.fixture(scope="module")
def compose(compose_file: tuple[ComposeFile, dict[str, Any]]) -> dict[str, Any]:
    return compose_file[1]


@pytest.fixture(scope="module")
def cluster_compose() -> dict[str, Any]:
    return _load_compose(CLUSTER_COMPOSE.path)


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services = compose.get("services") or {}
    assert name in services, f"the compose file has no service {name!r}"
    return services[name]


def _words(value: Any) -> list[str]:
    """A command or healthcheck test, as a list of words (the short form is a string)."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return [word for item in value for word in str(item).split()]


def _option(command: list[str], name: str) -> str | None:
    """The value after `name` in a command line, None without it."""
    return command[command.index(name) + 1] if name in command else None


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {k: str(v) for k, v in env.items()}


def _conditions(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):  # the short form means service_started
        return dict.fromkeys(depends, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in depends.items()}


def test_redis_persists_and_has_a_healthcheck(compose_file: tuple[ComposeFile, dict[str, Any]]) -> None:
    spec, compose = compose_file
    volumes_used = []
    for name in spec.redis_nodes:
        redis = _service(compose, name)
        assert redis.get("image") == "redis:7-alpine", name
        command = _words(redis.get("command"))
        assert _option(command, "--appendonly") == "yes", command
        # Evicting keys loses jobs: the default policy (noeviction) or that one, spelled out.
        assert _option(command, "--maxmemory-policy") in (None, "noeviction"), command
        volumes = redis.get("volumes") or []
        named = []
        for volume in volumes:
            source, target = (
                (volume.get("source"), volume.get("target"))
                if isinstance(volume, dict)
                else (volume.split(":")[0], volume.split(":")[1])
            )
            if target == "/data":
                named.append(source)
        assert named, f"{name}: no volume on /data: {volumes}"
        assert named[0] in (compose.get("volumes") or {}), f"volume {named[0]} is not a declared named volume"
        volumes_used.append(named[0])
        test = " ".join(_words((redis.get("healthcheck") or {}).get("test")))
        assert "redis-cli ping" in test, f"{name} healthcheck: {test!r}"
    assert len(set(volumes_used)) == len(volumes_used), f"Redis nodes share a volume: {volumes_used}"


@pytest.mark.parametrize("name", TARGETS)
def test_jobqueue_services_build_their_target_and_wait_for_redis(
    compose_file: tuple[ComposeFile, dict[str, Any]],
    dockerfile: tuple[dict[str, str], list[Stage]],
    name: str,
) -> None:
    spec, compose = compose_file
    service = _service(compose, name)
    build = service.get("build")
    assert isinstance(build, dict), f"{name}: build must name the Dockerfile and the target"
    assert Path(build.get("context", ".")).resolve() in (ROOT, Path(".").resolve()), build
    assert Path(build.get("dockerfile", "")).as_posix().endswith("docker/Dockerfile"), build
    assert build.get("target") == name, build
    chain(dockerfile[1], name)  # the target exists
    env = _environment(service)
    assert env.get("REDIS_URL") == spec.redis_url
    assert env.get("JOBQUEUE_REDIS_CLUSTER", "0") == ("1" if spec.cluster else "0"), env
    conditions = _conditions(service)
    named_node = urlsplit(spec.redis_url).hostname
    assert named_node in spec.redis_nodes, spec.redis_url
    assert conditions.get(named_node) == "service_healthy", f"{name} does not wait for a healthy {named_node}"
    if spec.cluster:
        assert conditions.get(CLUSTER_CREATE) == "service_completed_successfully", (
            f"{name} does not wait for the cluster to be formed"
        )
    assert service.get("restart") == "unless-stopped"


def test_server_publishes_8080(compose: dict[str, Any]) -> None:
    ports = _service(compose, "server").get("ports") or []
    published = set()
    for port in ports:
        if isinstance(port, dict):
            published.add((str(port.get("published")), str(port.get("target"))))
        else:
            host, _, container = str(port).rpartition(":")
            published.add((host.rpartition(":")[2], container))
    assert ("8080", "8080") in published, ports


def test_worker_runs_the_print_worker_after_the_server_starts(
    compose: dict[str, Any], dockerfile: tuple[dict[str, str], list[Stage]]
) -> None:
    worker = _service(compose, "worker")
    command = _words(worker.get("command")) or run_command(dockerfile[1], "worker")[1:]
    assert command == ["worker", "jobqueue.examples.print_worker"], command
    assert _conditions(worker).get("server") in ("service_started", "service_healthy")


# --- compose.cluster.yaml's cluster ------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLUSTER_COMPOSE.redis_nodes)
def test_cluster_nodes_announce_their_service_names(cluster_compose: dict[str, Any], name: str) -> None:
    command = _words(_service(cluster_compose, name).get("command"))
    assert command[0] == "redis-server", command
    assert _option(command, "--cluster-enabled") == "yes", command
    assert _option(command, "--cluster-config-file"), "nodes.conf must be named to live in /data"
    # The slot map and MOVED name a node as the other containers reach it.
    assert _option(command, "--cluster-announce-hostname") == name, command
    assert _option(command, "--cluster-preferred-endpoint-type") == "hostname", command
    assert _option(command, "--port") in (None, "6379"), command


def test_cluster_create_waits_for_every_node_and_names_them_all(cluster_compose: dict[str, Any]) -> None:
    create = _service(cluster_compose, CLUSTER_CREATE)
    assert create.get("image") == "redis:7-alpine"
    assert _conditions(create) == dict.fromkeys(CLUSTER_COMPOSE.redis_nodes, "service_healthy")
    nodes = _environment(create).get("NODES", "").split()
    assert sorted(nodes) == [f"{name}:6379" for name in CLUSTER_COMPOSE.redis_nodes], nodes
    script = " ".join(_words(create.get("command")))
    assert "--cluster create" in script and "--cluster-yes" in script, script
    assert str(create.get("restart", "no")) == "no", "a one-shot service must not restart"


def _cluster_create_script(compose: dict[str, Any]) -> list[str]:
    """The create service's command as a shell runs it (Compose turns `$$` into `$`)."""
    command = _service(compose, CLUSTER_CREATE).get("command")
    assert isinstance(command, list) and command[:2] == ["sh", "-c"], command
    return ["sh", "-c", command[2].replace("$$", "$")]


@pytest.mark.skipif(
    find_server_binary() is None or shutil.which("redis-cli") is None,
    reason="needs redis-server and redis-cli",
)
def test_cluster_create_forms_the_cluster_of_the_node_commands_once(
    cluster_compose: dict[str, Any], tmp_path: Path
) -> None:
    """The file's node commands and create script, run here: each node's hostname is
    `localhost` instead of its service name, each listens on a port of its own."""
    nodes = []
    try:
        for name in CLUSTER_COMPOSE.redis_nodes:
            args = _words(_service(cluster_compose, name).get("command"))[1:]
            args[args.index("--cluster-announce-hostname") + 1] = "localhost"
            node = RedisServer(tmp_path / name, extra_args=[*args, "--cluster-port", str(free_port())])
            node.start()
            nodes.append(node)
        env = dict(os.environ, NODES=" ".join(f"localhost:{node.port}" for node in nodes))
        script = _cluster_create_script(cluster_compose)
        done = subprocess.run(script, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "the cluster is formed" in done.stdout, done.stdout
        with Redis(port=nodes[0].port, socket_timeout=5) as first:
            # Clients are given the announced hostname as each master's endpoint, not an address.
            slots = first.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
            endpoints = {(master[0], master[1]) for _, _, master, *_ in slots}
            assert endpoints == {(b"localhost", node.port) for node in nodes}, slots
        with RedisCluster(host="localhost", port=nodes[0].port, socket_timeout=5) as cluster:
            for key in ("{a}", "{b}", "{c}"):  # three slots on three masters
                cluster.set(key, key)
                assert cluster.get(key) == key.encode()
        again = subprocess.run(script, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already formed" in again.stdout, again.stdout
    finally:
        for node in nodes:
            node.stop()
