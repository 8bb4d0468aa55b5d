#!/usr/bin/env python3
"""Where a drain's time goes, per job: the worker's user and system CPU, its system calls
by kind, its context switches, the rounds (script calls) per job and Redis' time per
command, for any checkout of this repository (before and after a change, side by side).

    python bench/drain_cost.py REDIS_URL TREE [TREE ...] [--jobs N] [--pairs P] [--no-syscalls] [--per-script]

For each TREE in turn (P times, alternating), it runs that checkout's own
`bench/drain_once.py REDIS_URL --jobs N` (so old trees are measured with their own
enqueue and worker) and, beside it:
- finds the worker (the drain script's child process) and, once its enqueue is done,
  resets Redis' INFO commandstats: Redis figures cover the drain only;
- when the first job has run, reads the worker's utime/stime (/proc/PID/stat), attaches
  `perf stat` (software events and the syscalls:sys_enter_* tracepoints: they count
  every system call, kernel side, without slowing the process as strace does) to the
  worker and to redis-server, and stops both when the last job has run;
- prints per job: the worker's user/system CPU, its context switches and system calls
  (total and the commonest kinds), redis-server's CPU (task-clock: command execution,
  parsing and socket I/O) and its system calls, Redis' own `usec` per command
  (commands called by a script are counted under their own name as well as within the
  EVALSHA that ran them), EVALSHA calls per job (a worker's round is one) and the
  bytes Redis read and wrote per job (INFO stats, reset with commandstats);
- with --per-script, Redis' time and calls per job of each script, from SLOWLOG with
  its threshold at 0 for the drain (every command logged with its duration; the
  script named by the SHA1 of the tree's own script texts).
Then the medians per tree. Timing moves with the machine's load; the counts (syscalls,
rounds, context switches) move much less, which is why they are here.
Loopback Redis only; each drain bounded in time. Needs `perf` with tracepoint access.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from jobqueue.redis_server import is_loopback_url

COUNT_KEY = "bench:count"  # the harness's no-op job INCRs it
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SHOWN_SYSCALLS = 8
EVENTS = "task-clock,context-switches,cpu-migrations,raw_syscalls:sys_enter,syscalls:sys_enter_*"


@dataclass
class Drain:
    tree: str
    rate: str = ""
    jobs: int = 0
    user_us: float = 0.0
    system_us: float = 0.0
    worker_events: dict[str, float] = field(default_factory=dict)
    redis_events: dict[str, float] = field(default_factory=dict)
    commands: dict[str, tuple[int, int]] = field(default_factory=dict)  # name: (calls, usec)
    scripts: dict[str, tuple[int, int]] = field(default_factory=dict)  # script name: (calls, usec)
    net_bytes: tuple[int, int] = (0, 0)  # what Redis read and wrote on its sockets

    def per_job(self, value: float) -> float:
        return value / self.jobs if self.jobs else 0.0

    def summary(self) -> dict[str, float]:
        figures = {
            "user_us": self.user_us,
            "sys_us": self.system_us,
            "ctx_switches": self.per_job(self.worker_events.get("context-switches", 0)),
            "syscalls": self.per_job(self.worker_events.get("raw_syscalls:sys_enter", 0)),
            "redis_cpu_us": self.per_job(self.redis_events.get("task-clock", 0)) * 1000,
            "redis_syscalls": self.per_job(self.redis_events.get("raw_syscalls:sys_enter", 0)),
            "redis_usec": self.per_job(
                sum(usec for name, (_, usec) in self.commands.items() if not scripted(name))
            ),
            "evalsha_usec": self.per_job(self.commands.get("evalsha", (0, 0))[1]),
            "rounds": self.per_job(self.commands.get("evalsha", (0, 0))[0]),
            "bytes_in": self.per_job(self.net_bytes[0]),
            "bytes_out": self.per_job(self.net_bytes[1]),
        }
        return figures


def scripted(name: str) -> bool:
    """Commands Redis counts twice: once in commandstats under their own name (a script
    called them) and once inside the EVALSHA's usec. Anything but a script or a
    worker's own non-script command is taken as called by a script."""
    return name not in {
        "evalsha",
        "eval",
        "info",
        "config",
        "get",
        "incr",
        "incrby",
        "ping",
        "client",
        "hello",
        "select",
    }


def process_cpu(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    stats: dict[str, tuple[int, int]] = {}
    for name, value in client.info("commandstats").items():
        stats[name.removeprefix("cmdstat_")] = (int(value["calls"]), int(value["usec"]))
    return stats


SCRIPT_SHAS = """
import hashlib, sys
from jobqueue.store import scripts
try:
    texts = {name: scripts.assembled(name)[0] for name in scripts.script_names()}
except AttributeError:  # before the loader assembled includes
    texts = {name: scripts.source(name) for name in scripts.NAMES}
for name, text in texts.items():
    print(hashlib.sha1(text.encode()).hexdigest(), name)
"""


def script_names(tree: str, python: str) -> dict[str, str]:
    """SHA1 -> name of the tree's scripts, as its own loader sends them."""
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run([python, "-c", SCRIPT_SHAS], cwd=tree, env=env, capture_output=True, check=True)
    return dict(line.split() for line in out.stdout.decode().splitlines())


def slowlog_scripts(client: redis.Redis, names: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Calls and microseconds per script of every EVALSHA in the slow log."""
    found: dict[str, tuple[int, int]] = {}
    for entry in client.slowlog_get(-1):
        command = entry["command"].split()
        if not command or command[0].upper() not in (b"EVALSHA", b"EVALSHA_RO"):
            continue
        name = names.get(command[1].decode(), command[1][:8].decode())
        calls, usec = found.get(name, (0, 0))
        found[name] = (calls + 1, usec + int(entry["duration"]))
    return found


def perf_attach(pids: list[int], out: Path) -> subprocess.Popen[bytes]:
    command = ["perf", "stat", "-x", ",", "-o", str(out), "-e", EVENTS, "-p", ",".join(map(str, pids))]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_read(process: subprocess.Popen[bytes] | None, out: Path) -> dict[str, float]:
    if process is None:
        return {}
    process.send_signal(signal.SIGINT)
    process.wait(30)
    counts: dict[str, float] = {}
    for line in out.read_text().splitlines():
        parts = line.split(",")
        if len(parts) > 3 and parts[0].replace(".", "", 1).isdigit():
            counts[parts[2]] = float(parts[0])
    return counts


def run_drain(tree: str, url: str, jobs: int, *, syscalls: bool, per_script: bool, timeout_s: float) -> Drain:
    client = redis.Redis.from_url(url)
    redis_pid = int(client.info("server")["process_id"])
    python = os.environ.get("BENCH_PYTHON", sys.executable)
    names = script_names(tree, python) if per_script else {}
    env = dict(os.environ, PYTHONPATH=tree)
    drain_script = subprocess.Popen(
        [python, "bench/drain_once.py", url, "--jobs", str(jobs)],
        cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    result = Drain(tree=tree)
    work = Path(tempfile.mkdtemp())
    worker_perf = redis_perf = None
    try:
        deadline = time.monotonic() + timeout_s
        worker = 0
        while not worker and time.monotonic() < deadline:
            found = children(drain_script.pid)
            worker = found[0] if found else 0
            time.sleep(0.002)
        client.config_resetstat()  # the enqueue is over once the worker is started
        if per_script:
            client.config_set("slowlog-max-len", 1_000_000)
            client.config_set("slowlog-log-slower-than", 0)
            client.slowlog_reset()
        first = 0
        while not first and time.monotonic() < deadline:
            first = int(client.get(COUNT_KEY) or 0)
            time.sleep(0.002)
        user0, system0 = process_cpu(worker)
        if syscalls:
            worker_perf = perf_attach([worker], work / "worker.csv")
            redis_perf = perf_attach([redis_pid], work / "redis.csv")
        last = first
        while last < jobs and time.monotonic() < deadline:
            last = int(client.get(COUNT_KEY) or 0)
            time.sleep(0.005)
        user1, system1 = process_cpu(worker)
        result.worker_events = perf_read(worker_perf, work / "worker.csv")
        result.redis_events = perf_read(redis_perf, work / "redis.csv")
        result.commands = commandstats(client)
        net = client.info("stats")
        result.net_bytes = (int(net["total_net_input_bytes"]), int(net["total_net_output_bytes"]))
        if per_script:
            client.config_set("slowlog-log-slower-than", 10_000)
            result.scripts = slowlog_scripts(client, names)
            client.slowlog_reset()
        result.jobs = last - first
        result.user_us = (user1 - user0) / result.jobs * 1e6
        result.system_us = (system1 - system0) / result.jobs * 1e6
        output, _ = drain_script.communicate(timeout=120)
        result.rate = output.decode().strip().splitlines()[-1] if output else ""
    finally:
        if drain_script.poll() is None:
            drain_script.kill()
            drain_script.wait()
        client.close()
    return result


def report(drain: Drain) -> str:
    s = drain.summary()
    line = (
        f"{Path(drain.tree).name}: {drain.rate} | worker user {s['user_us']:.0f} "
        f"sys {s['sys_us']:.0f} µs/job, {s['syscalls']:.2f} syscalls/job, "
        f"{s['ctx_switches']:.2f} ctx sw/job | rounds/job {s['rounds']:.3f} | "
        f"redis cpu {s['redis_cpu_us']:.1f} µs/job, {s['redis_syscalls']:.2f} syscalls/job, "
        f"commandstats {s['redis_usec']:.1f} µs/job (evalsha {s['evalsha_usec']:.1f}) | "
        f"bytes/job to Redis {s['bytes_in']:.0f}, from Redis {s['bytes_out']:.0f}"
    )
    kinds = sorted(
        ((name.removeprefix("syscalls:sys_enter_"), count) for name, count in drain.worker_events.items()
         if name.startswith("syscalls:") and count),
        key=lambda item: -item[1],
    )  # fmt: skip
    if kinds:
        line += "\n  worker syscalls/job: " + ", ".join(
            f"{n} {drain.per_job(c):.3f}" for n, c in kinds[:SHOWN_SYSCALLS]
        )
    commands = sorted(drain.commands.items(), key=lambda item: -item[1][1])
    line += "\n  redis usec/job (calls/job): " + ", ".join(
        f"{name} {drain.per_job(usec):.2f} ({drain.per_job(calls):.2f})"
        for name, (calls, usec) in commands[:12]
    )
    if drain.scripts:
        scripts = sorted(drain.scripts.items(), key=lambda item: -item[1][1])
        line += "\n  scripts usec/job (calls/job): " + ", ".join(
            f"{name} {drain.per_job(usec):.2f} ({drain.per_job(calls):.3f})"
            for name, (calls, usec) in scripts
        )
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("redis_url")
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--jobs", type=int, default=40_000)
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--no-syscalls", dest="syscalls", action="store_false", help="no perf (timing only)")
    parser.add_argument("--per-script", action="store_true", help="Redis time per script (SLOWLOG at 0)")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if not is_loopback_url(args.redis_url):
        parser.error("only a loopback Redis may be targeted")
    runs: dict[str, list[Drain]] = {tree: [] for tree in args.trees}
    for i in range(args.pairs):
        for tree in args.trees:
            drain = run_drain(
                tree, args.redis_url, args.jobs, syscalls=args.syscalls, per_script=args.per_script,
                timeout_s=args.timeout,
            )  # fmt: skip
            runs[tree].append(drain)
            print(f"{i + 1} {report(drain)}", flush=True)
    print("medians:")
    for tree, drains in runs.items():
        summaries = [d.summary() for d in drains]
        rates = [float(d.rate.split()[1]) for d in drains if d.rate.startswith("drain ")]
        medians = {key: statistics.median(s[key] for s in summaries) for key in summaries[0]}
        print(
            f"  {tree}: drain {statistics.median(rates) if rates else 0:.0f} jobs/s, "
            + ", ".join(f"{key} {value:.2f}" for key, value in medians.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
