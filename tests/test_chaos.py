"""The bounded runs of the fault-injection suite (tests/chaos/run.py --small) on every
change: on a single Redis, on a local Redis Cluster with its own faults (a master
killed, a manual failover, a slot migrated while jobs flow), and with its type spread
over partitions whose count changes mid-run. Each runs once: the suite's Redis targets
do not apply (each run starts its own Redis)."""

from __future__ import annotations

import re
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


@pytest.mark.timeout(150)
def test_no_job_is_lost_under_faults_on_a_cluster() -> None:
    ran = subprocess.run(
        [sys.executable, "tests/chaos/run.py", "--small", "--cluster"],
        cwd=ROOT, capture_output=True, text=True, timeout=140, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-4000:]
    assert "0 violations; lost: 0" in ran.stdout
    # Each cluster fault happened (the small run plans one of each).
    for fault in ("kill_master", "failover", "migrate_slot"):
        assert re.search(rf'"{fault}": [1-9]', ran.stdout), ran.stdout[-4000:]


@pytest.mark.timeout(150)
def test_no_job_is_lost_under_faults_over_partitions() -> None:
    ran = subprocess.run(
        [sys.executable, "tests/chaos/run.py", "--small", "--partitions", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=140, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-4000:]
    assert "0 violations; lost: 0" in ran.stdout
    # The count shrank (3 -> 2) while a job waited in the partition it removed, then grew back.
    assert '"repartition": 2' in ran.stdout, ran.stdout[-4000:]
    stranded = re.search(r'"jobs pending in a removed partition at the shrink": [1-9]', ran.stdout)
    assert stranded, ran.stdout[-4000:]
