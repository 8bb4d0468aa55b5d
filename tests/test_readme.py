"""Every jobqueue, grpcurl and curl command in the README's "Try it" section and in
docs/api.md works as written."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from jobqueue.model import JobStatus

from .conftest import ROOT, Spawn, eventually, json_documents, status_is
from .harness import Harness

README = (ROOT / "README.md").read_text()
SECTION = README.split("## Try it", 1)[1].split("\n## ", 1)[0]
API_PAGE = (ROOT / "docs" / "api.md").read_text()
BLOCKS = [
    b
    for b in re.findall(r"```bash\n(.*?)```", SECTION + API_PAGE, flags=re.DOTALL)
    if "localhost:8080" in b or b.startswith("jobqueue ")
]
# curl exits 0 on HTTP errors unless told otherwise; the README shows plain curl.
STRICT_CURL = 'curl() { command curl --fail-with-body -sS "$@"; }\n'


def test_the_section_and_the_api_page_have_the_original_examples() -> None:
    section = "".join(re.findall(r"```bash\n(.*?)```", SECTION, flags=re.DOTALL))
    for command in ("jobqueue enqueue print hello", "jobqueue get JOB_ID_HERE", "--in 5s"):
        assert command in section
    assert "EnqueueJob" in section and "execution_time_ms" in section
    original = API_PAGE.split("## The original README's calls", 1)[1].split("\n## ", 1)[0]
    for method in ("EnqueueJob", "GetJob", "CancelJob", "Health/Check", " list"):
        assert method in original
    assert original.count("grpcurl") >= 6 and original.count("curl -H") >= 5


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("block", BLOCKS, ids=[b.split("\n", 1)[0][:40] for b in BLOCKS])
async def test_readme_commands_work_as_written(block: str, server_url: str, store: Harness) -> None:
    now = (await store.enqueue("warmup", b"")).created_at
    job = await store.enqueue("send_email", b"", now + 3_600_000)
    address = urlparse(server_url).netloc
    script = STRICT_CURL + block.replace("localhost:8080", address).replace("JOB_ID_HERE", job.id)
    # The CLI of this venv, calling the test's server.
    env = os.environ | {
        "JOBQUEUE_URL": server_url,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    result = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-e", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, f"{block}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    if block.startswith("jobqueue "):
        assert result.stdout.count("status") == block.count("\njobqueue ") + 1, result.stdout
        return
    outputs = json_documents(result.stdout)
    assert outputs or "JobService" in result.stdout
    for output in outputs:
        assert "code" not in output, output


WORKER_SECTION = README.split("## Writing a worker", 1)[1].split("\n## ", 1)[0]


async def test_the_worker_of_writing_a_worker_runs_as_written(
    spawn: Spawn, store: Harness, tmp_path: Path
) -> None:
    """my_worker.py, copied from the README, under `jobqueue worker`: a job with a
    recipient completes, one without fails at once (PermanentError)."""
    [source] = re.findall(r"```python\n# my_worker.py\n(.*?)```", WORKER_SECTION, flags=re.DOTALL)
    module = tmp_path / "my_worker.py"
    module.write_text(source)
    spawn(target=str(module))
    sent = await store.enqueue("send_email", b'{"to": "a@example.com"}')
    refused = await store.enqueue("send_email", b"{}")
    await eventually(status_is(store, sent.id, JobStatus.COMPLETED), timeout=60, what="the mail sent")
    await eventually(status_is(store, refused.id, JobStatus.FAILED), timeout=60, what="the refusal")
    failed = await store.get(refused.id)
    assert failed.attempt == 1 and failed.last_error.endswith("PermanentError: no recipient")
