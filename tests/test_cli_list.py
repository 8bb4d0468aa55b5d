"""`jobqueue list`, and `retry`, `cancel` and `delete` with filter options, against the
suite's server."""

from __future__ import annotations

import json
import re

import pytest

from jobqueue.cli import ExitCode
from jobqueue.model import EnqueueRequest, JobStatus

from .harness import Harness
from .test_api import new_type
from .test_bulk import failed_jobs, statuses
from .test_cli import jobqueue, one_line_error

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


async def test_list_prints_an_aligned_table_and_the_next_page(server_url: str, store: Harness) -> None:
    job_type = new_type()
    ids = await failed_jobs(store, job_type, 3)
    listed = jobqueue("list", "--type", job_type, "--status", "FAILED", "--limit", "2", "--url", server_url)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "TYPE", "STATUS", "ATTEMPT", "FINISHED", "LAST", "ERROR"]
    assert len(rows) == 2
    for row in rows:
        assert re.fullmatch(rf"[0-9a-f-]{{36}}  {job_type}  FAILED        1  {ISO}  boom", row), row
        assert row.index("FAILED") == header.index("STATUS")
    token = re.fullmatch(r"jobqueue: more: the same command with --page-token (\S+)\n", listed.stderr)
    assert token is not None, listed.stderr
    rest = jobqueue("list", "--type", job_type, "--status", "failed", "--limit", "2", "--url", server_url,
                    "--page-token", token[1], "-q")  # fmt: skip
    assert rest.returncode == 0 and rest.stderr == ""
    assert {row.split()[0] for row in rows} | set(rest.stdout.split()) == set(ids)


async def test_list_json_is_the_api_reply(server_url: str, store: Harness) -> None:
    job_type = new_type()
    created = await store.enqueue_many([EnqueueRequest(job_type, b"hi") for _ in range(2)])
    listed = jobqueue("list", "--type", job_type, "--oldest-first", "--json", "--url", server_url)
    assert listed.returncode == 0, listed.stderr
    reply = json.loads(listed.stdout)
    assert sorted(j["id"] for j in reply["jobs"]) == sorted(j.id for j in created)
    assert all(j["status"] == "JOB_STATUS_PENDING" for j in reply["jobs"])
    assert "nextPageToken" not in reply


def test_list_with_nothing_selected_says_so(server_url: str) -> None:
    listed = jobqueue("list", "--type", new_type(), "--since", "1h", "--url", server_url)
    assert listed.returncode == 0 and listed.stdout == ""
    assert listed.stderr == "jobqueue: no jobs match\n"


async def test_retry_cancel_and_delete_by_filter(server_url: str, store: Harness) -> None:
    job_type = new_type()
    ids = await failed_jobs(store, job_type, 2)
    retried = jobqueue("retry", "--type", job_type, "--url", server_url)  # FAILED by default
    assert (retried.returncode, retried.stdout) == (0, "retried 2 jobs\n"), retried.stderr
    cancelled = jobqueue("cancel", "--type", job_type, "--status", "pending", "--json", "--url", server_url)
    assert (cancelled.returncode, json.loads(cancelled.stdout)) == (0, {"count": 2}), cancelled.stderr
    assert await statuses(store, ids) == {JobStatus.CANCELLED}
    deleted = jobqueue("delete", "--type", job_type, "--status", "cancelled", "-q", "--url", server_url)
    assert (deleted.returncode, deleted.stdout) == (0, "2\n"), deleted.stderr
    again = jobqueue("delete", "--type", job_type, "--status", "cancelled", "--url", server_url)
    assert again.stdout == "deleted 0 jobs\n"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["cancel"], "give a job id, or filter options"),
        (["retry", "00000000-0000-4000-8000-000000000000", "--type", "t"], "not both"),
    ],
)
def test_an_id_or_filter_options(args: list[str], complaint: str) -> None:
    assert complaint in one_line_error(jobqueue(*args), ExitCode.USAGE)


def test_a_refused_filter_exits_3_naming_the_field(server_url: str) -> None:
    line = one_line_error(
        jobqueue("retry", "--status", "cancelled", "--idempotency-key", "k", "--url", server_url),
        ExitCode.REFUSED,
    )
    assert line == "jobqueue: invalid_argument: filter.idempotency_key: needs filter.type (keys are per type)"


def test_delete_needs_a_status() -> None:
    result = jobqueue("delete", "--type", "t")
    assert result.returncode == ExitCode.USAGE and "--status" in result.stderr


@pytest.mark.parametrize("command", ["list", "delete", "cancel", "retry"])
def test_help_names_the_filter_options(command: str) -> None:
    result = jobqueue(command, "--help")
    assert result.returncode == 0
    for option in ("--type", "--status", "--since", "--until", "--error-contains"):
        assert option in result.stdout
