"""``--resume`` after the run was killed with SIGKILL: the run finishes, metrics stay consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from guidedrl_core_testkit import read_json

from guidedrl.cli import main
from guidedrl.records import read_metrics


def _start(script: Path, args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [str(script), "run", *args, "--quiet", "--no-plot"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )


def _kill_after_checkpoint(proc: subprocess.Popen, run_dir: Path, log: Path, files: tuple[str, ...], rows: int = 2, timeout: float = 240) -> None:
    """SIGKILL ``proc`` once ``files`` exist in ``run_dir`` and metrics.jsonl has ``rows`` rows."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before it could be killed:\n{log.read_text()[-3000:]}")
            if all((run_dir / f).exists() for f in files) and len(read_metrics(run_dir)) >= rows:
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(timeout=30) == -signal.SIGKILL
                return
            time.sleep(0.1)
        pytest.fail(f"no checkpoint after {timeout}s:\n{log.read_text()[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _checkpoint_steps(run_dir: Path) -> int:
    return int(torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["env_steps"])


def _assert_consistent(run_dir: Path, kept: list[dict], steps: int) -> dict:
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "finished"
    assert summary["env_steps"] >= steps
    rows = read_metrics(run_dir)
    env_steps = [r["env_steps"] for r in rows]
    assert all(a < b for a, b in zip(env_steps, env_steps[1:], strict=False)), f"metrics rows not strictly increasing: {env_steps}"
    assert rows[: len(kept)] == kept, "rows written before the kill must be kept as they were"
    assert len(rows) > len(kept)
    assert env_steps[-1] == summary["env_steps"]
    # the killed segment is accounted for up to its last checkpoint
    segments = summary["segments"]
    assert [seg["status"] for seg in segments] == ["interrupted", "finished"]
    assert segments[0]["to_env_steps"] == segments[1]["from_env_steps"] == kept[-1]["env_steps"]
    assert summary["wall_s"] >= segments[0]["wall_s"] + segments[1]["wall_s"] - 2e-3 > segments[1]["wall_s"]
    return summary


@pytest.mark.slow
def test_ppo_resume_after_sigkill_with_the_saved_config(guidedrl_script, tmp_path):
    run_dir = tmp_path / "ppo"
    log = tmp_path / "first.log"
    proc = _start(
        guidedrl_script,
        ["--env", "CartPole-v1", "--algo", "ppo", "--steps", "30000", "--set", "train.epoch_steps=2000", "--out", str(run_dir)],
        log,
    )
    _kill_after_checkpoint(proc, run_dir, log, ("checkpoint.pt",))
    assert not (run_dir / "summary.json").exists() or read_json(run_dir / "summary.json")["status"] != "finished"
    at = _checkpoint_steps(run_dir)
    assert 2000 <= at < 30000
    kept = [r for r in read_metrics(run_dir) if r["env_steps"] <= at]
    assert len(kept) >= 1

    # `guidedrl run DIR/config.toml --resume` (in-process: the killed run was the real script)
    assert main(["run", str(run_dir / "config.toml"), "--resume", "--quiet", "--no-plot"]) == 0
    summary = _assert_consistent(run_dir, kept, 30000)
    assert summary["epochs"] > len(kept)


@pytest.mark.slow
def test_dqn_resume_after_sigkill_reloads_the_replay_buffer(guidedrl_script, tmp_path, monkeypatch):
    from guidedrl import records

    run_dir = tmp_path / "dqn"
    log = tmp_path / "first.log"
    proc = _start(
        guidedrl_script,
        ["--env", "CartPole-v1", "--algo", "dqn", "--steps", "8000", "--set", "train.epoch_steps=2000", "--out", str(run_dir)],
        log,
    )
    _kill_after_checkpoint(proc, run_dir, log, ("checkpoint.pt", "buffer.npz"))
    at = _checkpoint_steps(run_dir)
    kept = [r for r in read_metrics(run_dir) if r["env_steps"] <= at]

    loaded: list[int] = []
    original = records.restore_replay_buffer

    def spy(buffer, arrays, **kwargs):
        original(buffer, arrays, **kwargs)
        loaded.append(len(buffer))

    monkeypatch.setattr(records, "restore_replay_buffer", spy)
    monkeypatch.setattr("guidedrl.train.loop.restore_replay_buffer", spy)
    # `--out DIR --resume` continues the run in DIR with its saved config
    assert main(["run", "--out", str(run_dir), "--resume", "--quiet", "--no-plot"]) == 0
    assert loaded and loaded[0] >= at, f"the replay buffer was not restored (loaded {loaded}, checkpoint at {at})"
    _assert_consistent(run_dir, kept, 8000)


@pytest.mark.slow
def test_resume_with_a_different_config_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    fast = ["--set", "ppo.steps_per_collect=512", "--set", "train.epoch_steps=512", "--set", "train.test_episodes=1", "--set", "train.num_test_envs=1"]
    assert main(["run", "--steps", "512", "--out", str(run_dir), "--quiet", "--no-plot", *fast]) == 0
    capsys.readouterr()
    assert main(["run", str(run_dir / "config.toml"), "--resume", "--quiet", "--set", "ppo.lr=0.5"]) == 2
    assert "differs from the one saved" in capsys.readouterr().err
    # a longer run is not a different config: resuming with more steps continues it
    assert main(["run", str(run_dir / "config.toml"), "--resume", "--steps", "1024", "--quiet", "--no-plot"]) == 0
    rows = read_metrics(run_dir)
    assert [r["env_steps"] for r in rows] == [512, 1024]
