"""What each method did: ``summary.json`` groups the ``<method>/<what>`` counters under
``method_counters`` and ``guidedrl run`` prints one line per method."""

from __future__ import annotations

import pytest
from guidedrl_core_testkit import read_json

from guidedrl.cli import main, method_lines
from guidedrl.context import counters_by_method

FAST = [
    "--set", "train.epoch_steps=1024",
    "--set", "train.num_envs=4",
    "--set", "train.test_episodes=2",
    "--set", "train.num_test_envs=2",
    "--set", "ppo.steps_per_collect=512",
    "--set", "ppo.repeat=2",
    "--set", "dummy.demo_episodes=1",
]


def test_counters_are_grouped_per_method_in_the_runs_method_order():
    counters = {"advised_steps": 7, "b/advised_steps": 7, "a/plans_ok": 3, "a/plans_rejected": 1, "elsewhere/x": 2}
    grouped = counters_by_method(counters, ["b", "a", "c"])
    assert grouped == {"b": {"advised_steps": 7}, "a": {"plans_ok": 3, "plans_rejected": 1}, "c": {}}
    assert list(grouped) == ["b", "a", "c"]  # core counters and unknown prefixes stay out


def test_method_lines_name_every_counter_of_every_method():
    summary = {"method_counters": {"ultra": {"critical_states": 12, "advised_steps": 30}, "quiet": {}}}
    assert method_lines(summary) == ["  ultra: critical states 12, advised steps 30", "  quiet: nothing counted"]
    assert method_lines({"method_counters": {}}) == [] == method_lines({})  # an unguided run prints none


@pytest.mark.slow
def test_a_guided_run_reports_what_its_method_did(dummy_installed, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--env", "CartPole-v1", "--methods", "dummy", "--steps", "1024", "--out", str(out), "--quiet", "--no-plot", *FAST]
    assert main(argv) == 0
    summary = read_json(out / "summary.json")
    dummy = summary["method_counters"]["dummy"]
    assert dummy == {k.split("/", 1)[1]: v for k, v in summary["counters"].items() if k.startswith("dummy/")}
    assert dummy["advised_steps"] == summary["env_steps"] // 4  # env 0 of 4, every step
    assert dummy["shaped_transitions"] == summary["env_steps"]
    printed = capsys.readouterr().out
    assert f"  dummy: advised steps {dummy['advised_steps']}, shaped transitions {summary['env_steps']}\n" in printed
