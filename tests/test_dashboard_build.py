"""The committed dashboard is what scripts/build_dashboard.sh makes from web/ and
proto/ now: the TypeScript generated from the proto (web/src/gen) and the bundle
the server ships (jobqueue/dashboard/app.js). The build type-checks web/src too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT

needs_npm = pytest.mark.skipif(
    shutil.which("npm") is None or shutil.which("node") is None,
    reason="no node/npm (Debian: apt install npm; .ci/run installs it)",
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@needs_npm
def test_the_committed_dashboard_is_up_to_date(tmp_path: Path) -> None:
    fresh = tmp_path / "build"
    subprocess.run(["bash", "scripts/build_dashboard.sh", str(fresh)], cwd=ROOT, check=True, timeout=300)
    hint = "run scripts/build_dashboard.sh and commit web/src/gen and jobqueue/dashboard/app.js"
    committed = _files(ROOT / "web" / "src" / "gen")
    regenerated = _files(fresh / "gen")
    assert committed.keys() == regenerated.keys(), hint
    stale = [name for name in committed if committed[name] != regenerated[name]]
    assert not stale, f"stale generated files {stale}: {hint}"
    assert (ROOT / "jobqueue" / "dashboard" / "app.js").read_bytes() == (fresh / "app.js").read_bytes(), (
        f"stale bundle: {hint}"
    )
