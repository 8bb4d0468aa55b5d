"""The committed generated code is what scripts/gen_proto.sh makes from proto/ now."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import ROOT


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    fresh = tmp_path / "gen"
    subprocess.run(["bash", "scripts/gen_proto.sh", str(fresh)], cwd=ROOT, check=True, timeout=120)
    committed = _files(ROOT / "jobqueue" / "_gen")
    regenerated = _files(fresh)
    assert committed.keys() == regenerated.keys(), "run scripts/gen_proto.sh and commit jobqueue/_gen"
    stale = [name for name in committed if committed[name] != regenerated[name]]
    assert not stale, f"stale generated files {stale}: run scripts/gen_proto.sh and commit jobqueue/_gen"
