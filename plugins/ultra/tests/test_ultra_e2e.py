"""ULTRA end to end through guidedrl's runner with the simulated LLM (slow: trains small policies)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import guidedrl
from guidedrl.config import from_dict
from guidedrl.train import train

pytestmark = pytest.mark.slow


def cartpole_config(out: Path, **extra):
    data = {
        "env": "CartPole-v1",
        "algo": "ppo",
        "steps": 4096,
        "seed": 0,
        "out": str(out),
        "methods": ["ultra"],
        "ultra": {"variant": "ra", "episodes": 4},
        "llm": {"backend": "simulated", "cache": "off"},
        "ppo": {"steps_per_collect": 512, "repeat": 2},
        "train": {"num_envs": 4, "epoch_steps": 2048, "test_episodes": 2, "num_test_envs": 2},
    }
    for key, value in extra.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return from_dict(data)


def test_ultra_ra_on_cartpole_applies_guidance(tmp_path):
    result = train(cartpole_config(tmp_path / "run"))
    summary = json.loads((result.run_dir / "summary.json").read_text())
    counters = summary["counters"]
    assert summary["status"] == "finished"
    assert counters["ultra/critical_states"] > 0
    assert counters["ultra/advised_steps"] > 0
    assert counters["ultra/implicit_rewards"] > 0
    assert counters["ultra/reward_ratings"] > 0
    assert summary["llm_calls"] > 0 and summary["llm_failures"] == 0
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(row.get("methods/ultra/imitation", 0) > 0 for row in rows)
    # the table is checkpointed and loads without running code
    state = torch.load(result.run_dir / "checkpoint.pt", weights_only=True)["methods"]["ultra"]
    assert len(state["table"]["score"]) == counters["ultra/critical_states"]
    assert state["analysed"] == 4


class ConstantBonus:
    """Another method in the same run: a reward bonus everywhere."""

    @guidedrl.hookimpl
    def shape_reward(self, ctx, batch):
        return np.full(len(batch), 0.01)


def test_ultra_mixes_with_other_methods(tmp_path):
    config = cartpole_config(tmp_path / "run", steps=2048, methods=["ultra", "bonus"], ultra={"variant": "r"})
    summary = train(config, extra_plugins={"bonus": ConstantBonus()}).summary
    counters = summary["counters"]
    assert counters["ultra/implicit_rewards"] > 0
    assert counters["bonus/shaped_transitions"] > 0
    assert counters.get("ultra/advised_steps", 0) == 0  # variant r never advises


def test_pong_ultra_ra_from_the_command_line(tmp_path):
    out = tmp_path / "pong"
    cmd = [
        str(Path(sys.executable).parent / "guidedrl"), "run", "--env", "ALE/Pong-v5", "--methods", "ultra",
        "--set", "ultra.variant=ra", "--llm", "simulated", "--llm-cache", "off", "--steps", "2048", "--seed", "0",
        "--out", str(out), "--quiet", "--no-plot",
        "--set", "train.num_envs=1", "--set", "ppo.steps_per_collect=256", "--set", "ppo.repeat=1",
        "--set", "train.test_episodes=1", "--set", "train.num_test_envs=1", "--set", "train.epoch_steps=2048",
        "--set", "ultra.episodes=1", "--set", "ultra.max_states=50", "--set", "ultra.tolerance=0.5",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert str(out / "summary.json") in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counters"]["ultra/critical_states"] > 0
    assert summary["counters"]["ultra/advised_steps"] > 0
