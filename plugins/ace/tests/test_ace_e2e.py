"""ACE end to end through guidedrl's runner on Grid2Op with the simulated LLM.

All slow (Grid2Op runs: the 400-step case14 run takes about 2 minutes on the loaded 2-core
machine). The fast checks are test_ace_units.py and test_ace_hostile.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from guidedrl.config import from_dict
from guidedrl.train import train
from guidedrl_ace import finetune

pytest.importorskip("grid2op")

ACTOR_PROMPT_BOUND = 12_000
"""Characters of an actor prompt on any grid (documented in plugins/ace/README.md): the vocabulary's
structure (< 4,000, the adapter's PROMPT_BOUND) plus one state with its <= 12-candidate shortlist."""


def grid_config(out: Path, env: str = "grid2op:l2rpn_case14_sandbox", steps: int = 400, **extra):
    data = {
        "env": env,
        "algo": "sac",
        "steps": steps,
        "seed": 0,
        "out": str(out),
        "methods": ["ace"],
        "env_kwargs": {"max_steps": 40, **({"opponent": True} if "case14" in env else {})},
        "llm": {"backend": "simulated", "cache": "off"},
        "sac": {"start_steps": 100, "batch_size": 32},
        "train": {"epoch_steps": steps, "test_episodes": 1},
    }
    for key, value in extra.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return from_dict(data)


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_ace_short_run_on_case14_uses_both_llm_roles_and_the_mixed_replay(tmp_path):
    result = train(grid_config(tmp_path / "run"))
    s = summary_of(result.run_dir)
    c = s["counters"]
    assert s["status"] == "finished"
    assert c["ace/actor_proposals"] > 0 and c["ace/actor_accepted"] > 0
    assert c["ace/llm_transitions"] == c["ace/actor_accepted"]
    assert c["ace/critic_trajectories"] > 0 and c["ace/critic_reassigned"] > 0
    assert c["ace/beta"] == 0.25
    assert s["method_counters"]["ace"]["actor_accepted"] == c["ace/actor_accepted"]
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(row.get("methods/ace/llm_rows", 0) > 0 for row in rows)  # D_LLM rows reached the loss
    examples = finetune.read(result.run_dir / finetune.FILENAME)
    assert {e["kind"] for e in examples} == {"actor", "critic"}
    from guidedrl.registry import make_adapter

    vocab = make_adapter("grid2op:l2rpn_case14_sandbox").vocabulary
    for e in examples:
        answer = json.loads(e["messages"][2]["content"])
        if e["kind"] == "actor":
            vocab.parse(answer["action"])  # a legal action, as accepted
        else:
            assert all(r["level"] in (-2, -1, 1, 2) for r in answer["rewards"])
    state = torch.load(result.run_dir / "checkpoint.pt", weights_only=True)["methods"]["ace"]
    assert state["actor_calls"] == c["ace/actor_rounds"] and state["exported"] == len(examples)


@pytest.mark.slow
def test_ace_done_when_command(tmp_path):
    """The issue's command, verbatim (plus --out/--quiet)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "guidedrl.cli", "run", "--env", "grid2op:l2rpn_case14_sandbox", "--algo", "sac",
           "--methods", "ace", "--llm", "simulated", "--steps", "5000", "--out", str(out), "--quiet", "--no-plot"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ace: actor accepted" in done.stdout and "critic reassigned" in done.stdout and "beta 0.25" in done.stdout
    c = summary_of(out)["counters"]
    assert c["ace/actor_proposals"] > 0 and c["ace/critic_reassigned"] > 0


@pytest.mark.slow
def test_ace_on_the_67k_grid_never_lists_the_action_space(tmp_path):
    result = train(
        grid_config(tmp_path / "run", env="grid2op:l2rpn_neurips_2020_track1", steps=300, llm={"log": "full"})
    )
    s = summary_of(result.run_dir)
    assert s["status"] == "finished" and s["counters"]["ace/actor_proposals"] > 0
    events = [json.loads(line) for line in (result.run_dir / "llm_calls.jsonl").read_text().splitlines()]
    prompts = [(e.get("kind"), e["prompt"]) for e in events if e.get("prompt")]
    assert prompts
    for kind, prompt in prompts:
        text = prompt if isinstance(prompt, str) else json.dumps(prompt)
        assert "66929" not in text.replace(",", "") or "actions" in text  # the size may be named...
        assert text.count('"action":') <= 40  # ...but never one entry per action
        if kind == "action":
            assert len(text) < ACTOR_PROMPT_BOUND, len(text)


@pytest.mark.slow
def test_ace_mixes_with_ultra_on_case14(tmp_path):
    result = train(
        grid_config(tmp_path / "run", steps=600, methods=["ace", "ultra"], ultra={"episodes": 2, "variant": "ra"})
    )
    s = summary_of(result.run_dir)
    c = s["counters"]
    assert s["status"] == "finished"
    assert c["ace/actor_accepted"] > 0 and c["ace/critic_reassigned"] > 0
    assert c["ultra/critical_states"] > 0
    assert set(s["method_counters"]) == {"ace", "ultra"}
