"""CONTRIBUTING.md, followed verbatim: its method and adapter code blocks, written into a package with
its ``pyproject.toml``, installed with pip, and run with ``guidedrl run``. When this test fails, the
text a newcomer follows is wrong: fix CONTRIBUTING.md (or the core), not the test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def section(heading: str) -> str:
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    for part in parts:
        if part.startswith(heading + "\n"):
            return part
    raise AssertionError(f"CONTRIBUTING.md has no section '## {heading}'")


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def write_distribution(root: Path) -> Path:
    """The package exactly as CONTRIBUTING.md lays it out."""
    method, adapter = section("Writing a method plugin"), section("Writing an environment adapter")
    code = blocks(method, "python") + blocks(adapter, "python")
    pyproject = blocks(method, "toml") + blocks(adapter, "toml")
    assert len(code) == 2 and len(pyproject) == 1, "expected one method block, one adapter block, one pyproject.toml"
    pkg = root / "src"
    (pkg / "my_package").mkdir(parents=True)
    (pkg / "my_package" / "__init__.py").write_text("\n\n".join(code))
    (pkg / "pyproject.toml").write_text(pyproject[0])
    return pkg


def test_contributing_blocks_are_found():
    method, adapter = section("Writing a method plugin"), section("Writing an environment adapter")
    assert "class MyMethod" in blocks(method, "python")[0]
    assert "class MyAdapter" in blocks(adapter, "python")[0]
    assert '"guidedrl.envs"' in blocks(method, "toml")[0]


@pytest.mark.slow
def test_a_newcomer_following_contributing_verbatim_gets_a_guided_run(tmp_path):
    pkg = write_distribution(tmp_path)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-t", str(target), str(pkg)],
        check=True, capture_output=True, text=True,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [env.get("PYTHONPATH")])])
    env["GUIDEDRL_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("GUIDEDRL_PLUGINS", None)
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "guidedrl.cli", "run", "--env", "MyCartPole-v0", "--methods", "mymethod",
        "--set", "mymethod.advise_prob=0.05", "--steps", "512", "--out", str(out), "--quiet", "--no-plot",
        "--llm-log", "full",
        "--set", "ppo.steps_per_collect=256", "--set", "ppo.repeat=2", "--set", "train.num_envs=4",
        "--set", "train.epoch_steps=512", "--set", "train.test_episodes=2", "--set", "train.num_test_envs=2",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    counters = summary["method_counters"]["mymethod"]
    assert counters["updates"] > 0 and counters["advised"] > 0, counters
    assert summary["llm_calls"] > 0
    calls = (out / "llm_calls.jsonl").read_text()
    assert "The pole leans" in calls  # the adapter's describe() wrote the prompts
    saved = (out / "config.toml").read_text()
    assert "advise_prob = 0.05" in saved and "weight = 0.0001" in saved  # defaults saved too

    # a setting of the wrong type: one sentence, no traceback
    bad = subprocess.run(
        [*cmd[:9], "mymethod.advise_prob=often", "--out", str(tmp_path / "bad"), "--quiet", "--no-plot"],
        env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "mymethod.advise_prob must be a number, got 'often'" in bad.stderr
