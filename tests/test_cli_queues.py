"""The queue commands as a user runs them: `stats`, `workers`, `pause`, `resume` (tables
with ISO times and aligned counts, or --json), against the suite's server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import time

import pytest

from jobqueue.cli import ExitCode

from .conftest import Spawn, until
from .harness import Harness
from .test_api import new_type
from .test_cli import jobqueue, one_line_error

HOUR_MS = 3_600_000


def spans(line: str) -> list[tuple[str, int]]:
    """A table line's cells (two spaces or more apart) and where each ends."""
    return [(m[0], m.end()) for m in re.finditer(r"\S+(?: \S+)*", line)]


def columns(header: str, row: str, text_columns: int = 2) -> dict[str, str]:
    """A row's cells by column name; the counts (after the text columns) end where their
    name ends: aligned right."""
    names, cells = spans(header), spans(row)
    assert len(names) == len(cells), (header, row)
    for (name, name_end), (cell, cell_end) in list(zip(names, cells, strict=True))[text_columns:]:
        assert cell_end == name_end, f"{cell!r} is not aligned under {name!r}"
    return {name: cell for (name, _), (cell, _) in zip(names, cells, strict=True)}


def is_iso_time(text: str) -> bool:
    return dt.datetime.fromisoformat(text).tzinfo is not None


@pytest.mark.parametrize("command", [["stats"], ["workers"], ["pause"], ["resume"]])
def test_help(command: list[str]) -> None:
    result = jobqueue(*command, "--help")
    assert result.returncode == 0 and "usage: jobqueue" in result.stdout and "--url" in result.stdout


async def test_stats_table_and_json(server_url: str, store: Harness) -> None:
    job_type = new_type()
    for _ in range(12):
        await store.enqueue(job_type, "")
    await store.enqueue(job_type, "", int(time.time() * 1000) + HOUR_MS)
    result = await asyncio.to_thread(jobqueue, "stats", "--type", job_type, "--url", server_url)
    assert result.returncode == 0, result
    read_at, header, row, total = result.stdout.splitlines()
    assert read_at.startswith("read at ") and is_iso_time(read_at.removeprefix("read at "))
    assert [name for name, _ in spans(header)] == [
        "TYPE", "STATE", "PENDING", "SCHEDULED", "READY", "RUNNING", "COMPLETED", "FAILED", "CANCELLED",
        "EXPIRED", "OLDEST READY", "DONE 1H", "FAILED 1H", "WORKERS", "MAX DEPTH",
    ]  # fmt: skip
    cells = columns(header, row)
    assert cells["TYPE"] == job_type and cells["STATE"] == "active"
    assert (cells["PENDING"], cells["SCHEDULED"], cells["READY"], cells["RUNNING"]) == ("13", "1", "12", "0")
    assert cells["MAX DEPTH"] == "—"
    assert columns(header, total)["PENDING"] == "13" and total.startswith("(total)")

    as_json = await asyncio.to_thread(jobqueue, "stats", "--type", job_type, "--json", "--url", server_url)
    body = json.loads(as_json.stdout)
    assert body["queues"][0]["pending"] == "13" and body["total"]["ready"] == "12"


async def test_pause_and_resume_show_in_stats(server_url: str, store: Harness) -> None:
    job_type = new_type()
    paused = await asyncio.to_thread(jobqueue, "pause", job_type, "--url", server_url)
    assert paused.returncode == 0 and paused.stdout.startswith(f"paused {job_type}"), paused
    stats = await asyncio.to_thread(jobqueue, "stats", "--url", server_url)
    header, *rows = stats.stdout.splitlines()[1:]
    [row] = [r for r in rows if r.startswith(job_type + " ")]
    assert columns(header, row)["STATE"] == "paused"
    resumed = await asyncio.to_thread(jobqueue, "resume", job_type, "--url", server_url)
    assert resumed.returncode == 0 and resumed.stdout == f"resumed {job_type}\n", resumed
    assert await store.redis.hget(store.keys.queue(job_type).stats, "paused") is None


def test_a_malformed_type_exits_3_with_the_servers_message(server_url: str) -> None:
    for command in (
        ["pause", "a b"],
        ["resume", "a b"],
        ["stats", "--type", "a b"],
        ["workers", "--type", "a b"],
    ):
        line = one_line_error(jobqueue(*command, "--url", server_url), ExitCode.REFUSED)
        assert line.startswith("jobqueue: invalid_argument: type: "), line


def test_workers_table_and_json(server_url: str, spawn: Spawn, store: Harness) -> None:
    none = jobqueue("workers", "--type", "nobody-here", "--url", server_url)
    assert none.returncode == 0 and none.stdout == "no live workers of nobody-here\n"
    process = spawn()  # tests/worker_apps.py: `sleepy`, concurrency 4

    def listed() -> list[str]:
        result = jobqueue("workers", "--type", "sleepy", "--url", server_url)
        return [line for line in result.stdout.splitlines()[1:] if f"  {process.pid}  " in line]

    [row] = until(listed, "the worker listed")  # type: ignore[misc]
    header = jobqueue("workers", "--type", "sleepy", "--url", server_url).stdout.splitlines()[0]
    assert header.split() == [
        "ID",
        "HOST",
        "PID",
        "TYPES",
        "CONCURRENCY",
        "HELD",
        "STARTED",
        "LAST",
        "HEARTBEAT",
    ]
    cells = row.split()
    assert cells[3] == "sleepy" and (cells[4], cells[5]) == ("4", "0")
    assert is_iso_time(cells[6]) and is_iso_time(cells[7])
    assert row.index(" 4 ") + 2 == header.index("CONCURRENCY") + len("CONCURRENCY")  # counts align right
    body = json.loads(jobqueue("workers", "--type", "sleepy", "--json", "--url", server_url).stdout)
    [worker] = [w for w in body["workers"] if w["pid"] == process.pid]
    assert (
        worker["types"] == ["sleepy"] and worker["concurrency"] == 4 and worker["host"] == os.uname().nodename
    )
