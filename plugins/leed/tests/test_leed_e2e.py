"""LEED end to end on the traffic twin: the summary shows demonstrations, refinements and weights;
a hostile simulated LLM never crashes a run; LEED mixes with LCIL; its state survives ``--resume``."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal

import pytest

import guidedrl
from guidedrl.cli import main
from guidedrl.config import from_dict
from guidedrl.records import read_metrics
from guidedrl.train import train


def _cfg(out, *, steps=1024, methods=("leed",), llm_options=None, **extra):
    return from_dict({
        "env": "traffic:grid4x4-v0", "steps": steps, "seed": 0, "methods": list(methods), "out": str(out),
        "train": {"num_envs": 2, "epoch_steps": 512, "test_episodes": 2, "num_test_envs": 2},
        "marl": {"steps_per_collect": 256, "batch_size": 256, "repeat": 1,
                 "share_parameters": False, "centralized_critic": False},
        "llm": {"backend": "simulated", "cache": "off", "options": llm_options or {}},
        "leed": {"episodes": 2, "refine_every": 1, "max_refinements": 2, "decay_steps": 1024},
        **extra,
    })


def test_summary_shows_demonstrations_refinements_and_weights(tmp_path):
    s = train(_cfg(tmp_path / "run")).summary
    assert s["status"] == "finished" and s["env_steps"] == 1024
    leed = s["method_counters"]["leed"]
    assert leed["plans"] == 2 * 3 and leed["refinements"] == 2 and s["llm_calls"] == 6
    assert leed["demo_transitions"] > 0 and s["demo_transitions"] > 0
    assert leed["validity_first"] == 1.0 and leed["items_rejected"] == 0  # the simulated expert's plans
    weights = {k: v for k, v in leed.items() if k.startswith("weight_agent_")}
    assert len(weights) == 8 and all(0 < w <= 10 for w in weights.values())
    rows = read_metrics(tmp_path / "run")
    assert any(k == "methods/leed/agent_0/weight" for r in rows for k in r)
    assert rows[-1]["counters/leed/refinements"] == 2
    rounds = json.loads((tmp_path / "run" / "leed_rounds.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1, 2] and all(r["validity"] == 1.0 for r in rounds)


def test_a_hostile_simulated_llm_is_counted_never_fatal(tmp_path):
    s = train(_cfg(tmp_path / "run", steps=512, llm_options={"error_rate": 0.6, "invalid_rate": 0.5, "seed": 3})).summary
    assert s["status"] == "finished"
    leed = s["method_counters"]["leed"]
    assert leed["plans"] == 2 * 3
    assert leed.get("items_rejected", 0) + leed.get("plans_failed", 0) > 0
    assert s["llm_invalid"] > 0


def test_leed_mixes_with_lcil(tmp_path):
    s = train(_cfg(tmp_path / "run", steps=512, methods=("leed", "lcil"),
                   lcil={"episodes": 1, "imitation_steps": 10, "bc_coef": 0.2})).summary
    assert s["status"] == "finished"
    mc = s["method_counters"]
    assert mc["leed"]["plans"] == 6 and sum(v for k, v in mc["lcil"].items() if k.startswith("plans_")) > 0
    rows = read_metrics(tmp_path / "run")
    keys = {k for r in rows for k in r}
    assert "methods/leed/agent_0/expert_loss" in keys and "methods/lcil/agent_0/imitation" in keys


class KillAfterFirstEpoch:
    """SIGKILLs its own process (nothing flushed) in the update after the first checkpoint."""

    @guidedrl.hookimpl
    def shape_reward(self, ctx, batch):
        if ctx.env_steps > 512:
            os.kill(os.getpid(), signal.SIGKILL)


def _killed(out):
    train(_cfg(out, steps=1536), extra_plugins={"killer": KillAfterFirstEpoch()})


def _calls(out):
    return (out / "llm_calls.jsonl").read_text().splitlines()


@pytest.mark.slow
def test_state_survives_resume(tmp_path):
    whole = train(_cfg(tmp_path / "whole", steps=1536)).summary
    out = tmp_path / "killed"
    child = multiprocessing.get_context("fork").Process(target=_killed, args=(out,))
    child.start()
    child.join(300)
    assert child.exitcode == -signal.SIGKILL
    before = _calls(out)
    assert len(before) == 2 * 3  # round 0 and the refinements of iterations 1 and 2
    s = train(_cfg(out, steps=1536), resume=True).summary
    assert s["status"] == "finished" and s["env_steps"] == 1536
    assert _calls(out)[: len(before)] == before  # nothing asked again
    assert s["llm_calls"] == whole["llm_calls"] == 6  # max_refinements holds across the resume
    assert s["method_counters"]["leed"] == whole["method_counters"]["leed"]
    assert s["final_return"] == pytest.approx(whole["final_return"])


@pytest.mark.slow
def test_the_issue_command_runs_offline(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--env", "traffic:grid4x4-v0", "--methods", "leed", "--llm", "simulated", "--steps", "20000",
                 "--out", str(out), "--set", "llm.cache=off"]) == 0
    s = json.loads((out / "summary.json").read_text())
    leed = s["method_counters"]["leed"]
    assert s["env_steps"] >= 20000 and leed["refinements"] == 2 and leed["demo_transitions"] > 0
    assert sum(k.startswith("weight_agent_") for k in leed) == 8
    printed = capsys.readouterr().out
    assert "refinements 2" in printed and "weight agent 0" in printed
