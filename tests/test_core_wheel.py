"""The core distribution builds as a wheel that works without the source tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys
# The venv may hold an editable install of guidedrl that maps the package to <repo>/core:
# drop such finders so that only the wheel's copy can be imported.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
import os
def _source(p):
    p = os.path.abspath(p or ".")
    return (p == REPO or p.startswith(REPO + os.sep)) and not p.startswith(os.path.join(REPO, ".venv"))
sys.path[:] = [p for p in sys.path if not _source(p)]
try:
    import importlib.util
    assert importlib.util.find_spec("guidedrl") is not None
    import guidedrl, guidedrl.train, guidedrl.cli, guidedrl.train.single, guidedrl.presets
    print(json.dumps({"file": guidedrl.__file__, "version": guidedrl.__version__,
                      "parser": guidedrl.cli.build_parser().prog,
                      "presets": sorted(guidedrl.presets.available())}))
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
""".strip()


@pytest.mark.slow
def test_core_wheel_installs_and_imports_outside_the_source_tree(tmp_path):
    # Build from a copy of the project so the build leaves nothing (build/, *.egg-info) in the repo.
    src = tmp_path / "src"
    src.mkdir()
    for name in os.listdir(REPO):
        path = REPO / name
        if path.is_file() and (name in ("pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in") or name.startswith(("README", "LICENSE"))):
            shutil.copy(path, src / name)
    shutil.copytree(REPO / "core", src / "core", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("guidedrl-*.whl")

    # Every module of core/ is in the wheel, under guidedrl/ (catches a package missing from pyproject).
    sources = {str(p.relative_to(src / "core")) for p in (src / "core").rglob("*.py")}
    with zipfile.ZipFile(wheel) as zf:
        packaged = {n[len("guidedrl/"):] for n in zf.namelist() if n.startswith("guidedrl/") and n.endswith(".py")}
        preset_files = {n[len("guidedrl/presets/"):] for n in zf.namelist() if n.startswith("guidedrl/presets/") and n.endswith(".toml")}
        entry_points = next(zf.read(n).decode() for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert sources <= packaged, f"modules missing from the wheel: {sorted(sources - packaged)}"
    assert "guidedrl = guidedrl.cli:main" in entry_points
    shipped = {p.name for p in (src / "core" / "presets").glob("*.toml")}
    assert shipped and shipped <= preset_files, f"preset files missing from the wheel: {sorted(shipped - preset_files)}"

    target = tmp_path / "target"
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(target)
    probe = subprocess.run(
        [sys.executable, "-c", f"REPO = {str(REPO)!r}\n" + PROBE],
        cwd=run_dir, env=env, capture_output=True, text=True, timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    assert Path(result["file"]).resolve().is_relative_to(target.resolve()), result["file"]
    assert result["parser"] == "guidedrl"
    assert {p.removesuffix(".toml") for p in shipped} <= set(result["presets"])
    import guidedrl

    assert result["version"] == guidedrl.__version__
