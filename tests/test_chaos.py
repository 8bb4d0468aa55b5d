"""The bounded run of the fault-injection suite (tests/chaos/run.py --small) on every change."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT


@pytest.mark.timeout(240)
def test_no_job_is_lost_under_faults() -> None:
    ran = subprocess.run(
        [sys.executable, "tests/chaos/run.py", "--small"],
        cwd=ROOT, capture_output=True, text=True, timeout=230, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-4000:]
    assert "0 violations; lost: 0" in ran.stdout
