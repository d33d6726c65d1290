"""A multi-agent LCIL run SIGKILLed after its demonstrations resumes without asking the LLM again, and
``guidedrl eval`` reads its checkpoint."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal

import pytest

import guidedrl
from guidedrl.cli import main
from guidedrl.config import from_dict
from guidedrl.train import train


def _cfg(out):
    return from_dict({
        "env": "factory:maintenance-v0", "steps": 512, "seed": 0, "methods": ["lcil"], "out": str(out),
        "env_kwargs": {"horizon": 32},
        "train": {"num_envs": 2, "epoch_steps": 256, "test_episodes": 2, "num_test_envs": 2},
        "marl": {"steps_per_collect": 128, "batch_size": 128, "repeat": 1},
        "llm": {"backend": "simulated", "cache": "off"},
        "lcil": {"episodes": 2, "imitation_steps": 50},
    })


class KillAtFirstUpdate:
    """Kills its own process (SIGKILL, nothing flushed) the first time an update shapes rewards."""

    @guidedrl.hookimpl
    def shape_reward(self, ctx, batch):
        os.kill(os.getpid(), signal.SIGKILL)


def _killed_run(out):
    train(_cfg(out), extra_plugins={"killer": KillAtFirstUpdate()})


def _llm_lines(out):
    return (out / "llm_calls.jsonl").read_text().splitlines()


@pytest.mark.slow
def test_killed_after_demonstrations_resumes_without_new_llm_calls(tmp_path, capsys):
    out = tmp_path / "run"
    child = multiprocessing.get_context("fork").Process(target=_killed_run, args=(out,))
    child.start()
    child.join(300)
    assert child.exitcode == -signal.SIGKILL
    asked = _llm_lines(out)
    assert asked, "the demonstrations were asked for before the kill"
    assert (out / "checkpoint.pt").exists() and not (out / "summary.json").exists()

    result = train(_cfg(out), resume=True)
    s = result.summary
    assert s["status"] == "finished" and s["env_steps"] == 512
    assert _llm_lines(out) == asked, "the resumed run asked the LLM again"
    assert s["llm_calls"] == len(asked) and s["demo_transitions"] == 2 * 32 * 4  # restored, not re-collected
    assert s["pretrain_steps"] == 50

    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["episodes"] == 2 and evaluated["env_steps"] == 512
    assert isinstance(evaluated["mean_return"], float) and "mean_task_completion" in evaluated
