"""The single-agent runner: evaluation, plain Gymnasium envs, early failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from guidedrl_core_testkit import read_json, tiny_ppo
from tianshou.data import Collector

from guidedrl import hookimpl
from guidedrl.config import from_dict
from guidedrl.envs import MissingAdapterError, PlainGymAdapter
from guidedrl.errors import ConfigError, GuidedRLError, PluginError
from guidedrl.registry import make_adapter
from guidedrl.train import train
from guidedrl.train.algorithms import build_algorithm
from guidedrl.train.single import evaluate
from guidedrl.train.vector import make_vector_env


def test_evaluation_episodes_differ_across_test_envs_and_are_reproducible():
    adapter = make_adapter("Pendulum-v1")
    cfg = from_dict({"env": "Pendulum-v1", "algo": "sac", "sac": {"hidden": [16]}})
    probe = adapter.make()
    algorithm, _ = build_algorithm(cfg, probe, torch.device("cpu"))
    probe.close()
    envs = make_vector_env(adapter, 4, "dummy", seed=0)
    collector = Collector(algorithm, envs)
    try:
        first = evaluate(algorithm, collector, 8, seed=123)
        again = evaluate(algorithm, collector, 8, seed=123)
        other = evaluate(algorithm, collector, 8, seed=456)
    finally:
        envs.close()
    assert len(first) == 8
    # Pendulum starts at a random angle: every test episode is its own start state
    assert len(np.unique(np.round(first, 6))) == 8, f"test episodes repeat: {first}"
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(np.sort(first), np.sort(other))


@pytest.mark.slow
def test_plain_gymnasium_id_without_adapter_trains(tmp_path):
    assert isinstance(make_adapter("Acrobot-v1"), PlainGymAdapter)
    cfg = tiny_ppo(tmp_path / "acrobot", env="Acrobot-v1", steps=2048)
    result = train(from_dict(cfg))
    s = read_json(result.run_dir / "summary.json")
    assert s["status"] == "finished" and s["env"] == "Acrobot-v1"
    assert s["env_steps"] >= 2048
    assert -500 <= s["final_return"] <= 0  # Acrobot: -1 per step, at most 500 steps


def test_method_that_needs_text_fails_early_on_a_plain_env(tmp_path):
    class NeedsText:
        @hookimpl
        def generate_demonstrations(self, ctx):
            ctx.require_adapter("needs-text")
            raise AssertionError("require_adapter must raise on a plain Gymnasium env")

    cfg = tiny_ppo(tmp_path / "run", env="Acrobot-v1", methods=["needs-text"])
    with pytest.raises(GuidedRLError) as err:
        train(from_dict(cfg), extra_plugins={"needs-text": NeedsText()})
    msg = str(err.value)
    assert "'needs-text'" in msg and "'Acrobot-v1'" in msg and "no guidedrl adapter" in msg
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "failed" and summary["env_steps"] == 0


def test_require_adapter_passes_with_an_adapter_and_plain_describe_names_the_env(tmp_path):
    from guidedrl_core_testkit import make_ctx

    make_ctx(tmp_path).require_adapter("needs-text")  # CartPole-v1 has one: no error
    with pytest.raises(MissingAdapterError, match="'Acrobot-v1' has no guidedrl adapter"):
        PlainGymAdapter("Acrobot-v1").describe(np.zeros(6))


def test_unknown_env_fails_before_the_run_directory_is_written(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(PluginError, match="Did you mean 'CartPole-v1'"):
        train(from_dict(tiny_ppo(out, env="CartPol-v1")))
    assert not out.exists()


def test_algo_that_does_not_fit_the_action_space_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="'dqn' needs discrete actions"):
        train(from_dict(tiny_ppo(tmp_path / "dqn", env="Pendulum-v1", algo="dqn")))
    with pytest.raises(ConfigError, match="unknown algo 'sca'.*Did you mean 'sac'"):
        train(from_dict(tiny_ppo(tmp_path / "sca", algo="sca")))
    assert not (tmp_path / "sca").exists()


def test_existing_run_directory_needs_resume(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"already holds a run \(checkpoint.pt\); pass --resume"):
        train(from_dict(tiny_ppo(out)))


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint.pt"):
        train(from_dict(tiny_ppo(tmp_path / "empty")), resume=True)


def test_subprocess_vector_envs_train(tmp_path):
    from guidedrl.config import from_dict
    from guidedrl.train import train

    cfg = from_dict(
        {
            "env": "CartPole-v1",
            "steps": 1024,
            "out": str(tmp_path / "run"),
            "ppo": {"steps_per_collect": 512, "repeat": 1},
            "train": {"vector": "subproc", "num_envs": 2, "epoch_steps": 512, "test_episodes": 2, "num_test_envs": 2},
        }
    )
    summary = train(cfg).summary
    assert summary["status"] == "finished" and summary["env_steps"] >= 1024


def test_ray_vector_envs_without_ray_say_what_to_install(tmp_path):
    import importlib.util

    from guidedrl.config import from_dict
    from guidedrl.errors import ConfigError
    from guidedrl.train import train

    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed: this test covers the message shown without it")
    cfg = from_dict({"env": "CartPole-v1", "steps": 512, "out": str(tmp_path / "run"), "train": {"vector": "ray"}})
    with pytest.raises(ConfigError, match=r"guidedrl\[ray\]"):
        train(cfg)
