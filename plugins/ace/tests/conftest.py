"""ACE's tests: the ``ace`` entry point for a checkout that has not installed ``guidedrl-ace``, and
helpers shared by the test files.

The shared venv of this repository installs every ``plugins/*`` distribution (``scripts/setup.sh``);
a worktree that only puts the import packages on ``PYTHONPATH`` has no entry point, so this conftest
writes a minimal ``.dist-info`` (metadata + ``entry_points.txt``) to a temporary folder on ``sys.path``.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

ENTRY = "[guidedrl.methods]\nace = guidedrl_ace:Ace\n"


def _ensure_entry_point() -> None:
    from importlib import metadata as md

    if any(ep.name == "ace" for ep in md.entry_points(group="guidedrl.methods")):
        return
    root = Path(tempfile.mkdtemp(prefix="guidedrl-ace-ep-"))
    info = root / "guidedrl_ace-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: guidedrl-ace\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(ENTRY)
    sys.path.append(str(root))
    importlib.invalidate_caches()


_ensure_entry_point()
