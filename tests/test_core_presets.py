"""Hyper-parameter presets: chosen per (env, algo), laid under the user's settings, saved with the run."""

from __future__ import annotations

import json

import attrs
import pytest

from guidedrl import presets
from guidedrl.cli import main
from guidedrl.config import PPOConfig, RunConfig, TrainConfig, apply_overrides, from_dict, load
from guidedrl.errors import ConfigError

SHIPPED = {
    ("cartpole-v1-ppo", "CartPole-v1", "ppo"),
    ("cartpole-v1-dqn", "CartPole-v1", "dqn"),
    ("cartpole-v1-sac", "CartPole-v1", "sac"),
    ("pendulum-v1-sac", "Pendulum-v1", "sac"),
}


@pytest.fixture(autouse=True)
def _fresh_presets():
    presets.available.cache_clear()
    yield
    presets.available.cache_clear()


def test_core_ships_the_classic_presets_each_citing_its_source():
    found = {(p.name, p.env, p.algo) for p in presets.available().values()}
    assert SHIPPED <= found
    for name, _, _ in SHIPPED:
        preset = presets.available()[name]
        assert preset.source.startswith(("https://github.com/DLR-RM/rl-baselines3-zoo/", "https://github.com/thu-ml/tianshou/"))
        assert "Source: https://" in preset.path.read_text(), f"{name}: cite the source in the file"


#: Presets the env adapters in this repository ship (name, env, algo, distribution).
ADAPTER_SHIPPED = {
    ("hopper-v5-ppo", "Hopper-v5", "ppo", "guidedrl-env-mujoco"),
    ("hopper-v5-sac", "Hopper-v5", "sac", "guidedrl-env-mujoco"),
    ("ale-pong-ram-v5-ppo", "ALE/Pong-ram-v5", "ppo", "guidedrl-env-atari"),
}


def test_adapters_ship_the_mujoco_and_atari_presets_each_citing_the_zoo_and_what_it_could_not_map():
    for name, env, algo, origin in ADAPTER_SHIPPED:
        preset = presets.available()[name]
        assert (preset.env, preset.algo, preset.origin) == (env, algo, origin)
        assert preset.source.startswith("https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/hyperparams/")
        text = preset.path.read_text()
        assert "Source: https://" in text and "Mapping:" in text, f"{name}: cite the source and say how it maps"
        assert presets.for_run(env, algo) == preset, "--preset auto picks it for its env and algo"
    hopper_ppo = presets.available()["hopper-v5-ppo"].path.read_text()
    assert "log_std_init" in hopper_ppo and "normalize" in hopper_ppo, "says which zoo options guidedrl cannot express"


def test_each_adapter_preset_is_for_an_env_its_own_distribution_registers():
    from guidedrl.registry import ENVS

    for name, env, _, _ in ADAPTER_SHIPPED:
        entry = ENVS.get(env)
        assert entry is not None, f"{name}: {env!r} is not a registered env id, so --preset auto never picks it"
        package = entry.factory.__module__.split(".")[0]
        assert presets.available()[name].path.parent.parent.name == package, f"{name}: ship it with the adapter of {env!r}"


ALL_SHIPPED = sorted(SHIPPED | {(n, e, a) for n, e, a, _ in ADAPTER_SHIPPED})


@pytest.mark.parametrize(("name", "env", "algo"), ALL_SHIPPED)
def test_every_shipped_preset_builds_a_valid_config(name, env, algo):
    config = from_dict({"env": env, "algo": algo, "preset": name})  # an unknown key would raise here
    assert config.preset == name
    for section_name, values in presets.available()[name].settings.items():
        section = getattr(config, section_name)
        for key, value in values.items():
            assert getattr(section, key) == (tuple(value) if isinstance(value, list) else value), f"{section_name}.{key}"


def test_auto_is_the_default_and_picks_the_preset_of_env_and_algo():
    config = from_dict({"env": "CartPole-v1", "algo": "ppo"})
    assert config.preset == "cartpole-v1-ppo"
    assert config.train.num_envs == 8
    assert (config.ppo.steps_per_collect, config.ppo.repeat, config.ppo.gamma, config.ppo.gae_lambda) == (256, 20, 0.98, 0.8)
    assert (config.ppo.lr_schedule, config.ppo.clip_schedule, config.ppo.advantage_normalization) == ("linear", "linear", True)
    assert from_dict({"env": "Pendulum-v1", "algo": "sac"}).preset == "pendulum-v1-sac"
    assert from_dict({}).preset == "cartpole-v1-ppo", "the default env and algo get their preset too"


def test_auto_without_a_matching_preset_keeps_the_defaults_and_says_none():
    config = from_dict({"env": "Acrobot-v1", "algo": "ppo"})
    assert config.preset == "none"
    assert config.ppo == PPOConfig() and config.train == TrainConfig()


def test_none_keeps_the_plain_defaults():
    config = from_dict({"env": "CartPole-v1", "algo": "ppo", "preset": "none"})
    assert config.preset == "none" and config.ppo == PPOConfig() and config.train == TrainConfig()


def test_explicit_settings_win_over_the_preset_whatever_their_source():
    toml_data = {"env": "CartPole-v1", "ppo": {"repeat": 3}, "train": {"num_envs": 2}}
    config = from_dict(apply_overrides(toml_data, ["ppo.gamma=0.9"]))
    assert (config.ppo.repeat, config.train.num_envs, config.ppo.gamma) == (3, 2, 0.9)
    assert config.ppo.gae_lambda == 0.8 and config.preset == "cartpole-v1-ppo", "the rest still comes from the preset"


def test_a_named_preset_for_another_algo_is_an_error_that_names_the_fix():
    with pytest.raises(ConfigError, match="is for algo 'dqn'.*--algo dqn"):
        from_dict({"env": "CartPole-v1", "algo": "ppo", "preset": "cartpole-v1-dqn"})


def test_an_unknown_preset_suggests_the_close_match():
    with pytest.raises(ConfigError, match="Did you mean 'cartpole-v1-ppo'.*guidedrl presets"):
        from_dict({"env": "CartPole-v1", "preset": "cartpole-ppo"})


def test_saved_config_names_the_preset_lists_its_values_and_reruns_identically(tmp_path):
    config = from_dict({"env": "CartPole-v1", "algo": "ppo", "ppo": {"repeat": 4}})
    config.save(tmp_path / "config.toml")
    text = (tmp_path / "config.toml").read_text()
    assert text.startswith("# preset 'cartpole-v1-ppo'") and "ppo.repeat=20" in text and "source: https://" in text
    assert 'preset = "cartpole-v1-ppo"' in text and "repeat = 4" in text
    assert from_dict(load(tmp_path / "config.toml")) == config


def test_saved_config_reruns_identically_even_if_the_preset_changed_since(tmp_path, monkeypatch):
    config = from_dict({"env": "CartPole-v1", "algo": "ppo"})
    config.save(tmp_path / "config.toml")
    changed = attrs.evolve(presets.available()["cartpole-v1-ppo"], settings={"ppo": {"repeat": 99, "lr": 0.5}})
    monkeypatch.setitem(presets.available(), "cartpole-v1-ppo", changed)
    assert from_dict(load(tmp_path / "config.toml")) == config, "every resolved value is in the saved file"


def test_run_preset_flag_reaches_the_config(tmp_path, monkeypatch):
    seen = []

    def fake_train(config, **kwargs):
        seen.append(config)
        raise ConfigError("stop here")

    monkeypatch.setattr("guidedrl.train.train", fake_train)
    assert main(["run", "--env", "CartPole-v1", "--preset", "none", "--out", str(tmp_path / "x")]) == 2
    assert main(["run", "--env", "CartPole-v1", "--out", str(tmp_path / "y"), "--set", "ppo.repeat=2"]) == 2
    assert seen[0].preset == "none" and seen[0].ppo == PPOConfig()
    assert seen[1].preset == "cartpole-v1-ppo" and seen[1].ppo.repeat == 2


def test_presets_command_lists_them_as_json(capsys):
    assert main(["presets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {(n, rows[n]["env"], rows[n]["algo"]) for n, _, _ in SHIPPED} == SHIPPED
    assert rows["cartpole-v1-ppo"]["settings"]["ppo"]["repeat"] == 20 and rows["cartpole-v1-ppo"]["origin"] == "guidedrl"


ADAPTER_PRESET = """
[preset]
env = "Fake-v0"
algo = "ppo"
description = "a fake adapter's preset"
source = "tests"

[ppo]
repeat = 7
"""


def test_an_env_adapter_ships_presets_in_its_package_without_being_imported(make_dist):
    site = make_dist("guidedrl-env-fake", "1.0", entry_points={"guidedrl.envs": {"fake": "fake_presets_pkg"}})
    pkg = site / "fake_presets_pkg"
    (pkg / "presets").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('listing presets must not import the adapter')\n")
    (pkg / "presets" / "fake-v0-ppo.toml").write_text(ADAPTER_PRESET)
    preset = presets.available()["fake-v0-ppo"]
    assert preset.origin == "guidedrl-env-fake"
    assert from_dict({"env": "Fake-v0", "algo": "ppo"}).ppo.repeat == 7


def test_a_preset_that_sets_something_else_than_algorithm_and_training_tables_is_an_error(make_dist):
    site = make_dist("guidedrl-env-bad", "1.0", entry_points={"guidedrl.envs": {"bad": "bad_presets_pkg"}})
    (site / "bad_presets_pkg" / "presets").mkdir(parents=True)
    (site / "bad_presets_pkg" / "__init__.py").write_text("")
    (site / "bad_presets_pkg" / "presets" / "bad.toml").write_text(ADAPTER_PRESET + '\n[llm]\nbackend = "openai:x"\n')
    with pytest.raises(ConfigError, match=r"sets 'llm'.*\[train\]"):
        presets.available()



def _algorithm(data):
    import gymnasium as gym
    import torch

    from guidedrl.train.algorithms import build_algorithm

    config = from_dict(data)
    env = gym.make(config.env)
    try:
        return build_algorithm(config, env, torch.device("cpu"))[0], config
    finally:
        env.close()


def test_ppo_linear_schedules_fall_to_zero_over_the_run_and_constant_ones_stay():
    from guidedrl.train.algorithms import apply_schedules

    algorithm, config = _algorithm({"env": "CartPole-v1", "algo": "ppo", "steps": 1000, "ppo": {"lr": 1e-3, "eps_clip": 0.2}})
    lrs = []
    for steps in (0, 250, 1000):
        apply_schedules(algorithm, config, steps)
        lrs.append((algorithm.optim._optim.param_groups[0]["lr"], algorithm.eps_clip))
    assert lrs == [pytest.approx((1e-3, 0.2)), pytest.approx((0.75e-3, 0.15)), (0.0, 0.0)]
    plain, config = _algorithm({"env": "CartPole-v1", "algo": "ppo", "steps": 1000, "preset": "none"})
    apply_schedules(plain, config, 500)
    assert (plain.optim._optim.param_groups[0]["lr"], plain.eps_clip) == (1e-3, 0.2)


def test_dqn_exploration_decays_linearly_then_stays():
    from guidedrl.train.algorithms import apply_schedules

    algorithm, config = _algorithm({"env": "CartPole-v1", "algo": "dqn", "dqn": {"eps_decay_steps": 1000, "eps_train": 0.1}})
    assert algorithm.policy.eps_training == 1.0, "the first collection explores fully"
    for steps, eps in ((500, 0.55), (1000, 0.1), (5000, 0.1)):
        apply_schedules(algorithm, config, steps)
        assert algorithm.policy.eps_training == pytest.approx(eps)


def test_dqn_preset_has_sb3s_target_loss_and_clipping_and_clipping_bounds_the_gradient():
    import torch

    algorithm, _ = _algorithm({"env": "CartPole-v1", "algo": "dqn"})  # the preset: SB3's DQN choices
    assert (algorithm.is_double, algorithm.huber_loss_delta, algorithm.optim._max_grad_norm) == (False, 1.0, 10.0)
    plain, _ = _algorithm({"env": "CartPole-v1", "algo": "dqn", "preset": "none"})
    assert (plain.is_double, plain.huber_loss_delta, plain.optim._max_grad_norm) == (True, None, None)

    clipped, _ = _algorithm({"env": "CartPole-v1", "algo": "dqn", "preset": "none", "dqn": {"max_grad_norm": 0.01}})
    for algo, bounded in ((clipped, True), (plain, False)):
        q = algo.policy.model(torch.ones(4, 4))[0]
        algo.optim.step((q * 1000).pow(2).mean())  # a huge loss: gradient norm far above 0.01
        norm = torch.nn.utils.get_total_norm([p.grad for p in algo.policy.model.parameters()])
        assert (float(norm) <= 0.01 + 1e-6) is bounded, float(norm)


def test_ppo_default_init_and_log_std_init_match_sb3s_ortho_init_false_and_log_std_init():
    import torch

    def first_layer(algorithm):
        return next(m for m in algorithm.policy.actor.modules() if isinstance(m, torch.nn.Linear)).weight.detach()

    cfg = {"env": "Pendulum-v1", "algo": "ppo", "preset": "none"}
    orthogonal, _ = _algorithm(cfg)
    default, _ = _algorithm({**cfg, "ppo": {"init": "default", "log_std_init": -2.0}})
    w = first_layer(orthogonal)  # 64 x 3: orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(3), atol=1e-5)
    w = first_layer(default)  # PyTorch's kaiming-uniform: entries within 1/sqrt(fan_in), not orthonormal
    assert w.abs().max() <= 1 / 3**0.5 and not torch.allclose(w.T @ w, torch.eye(3), atol=0.1)
    assert torch.equal(orthogonal.policy.actor.sigma_param, torch.zeros(1, 1))
    assert torch.equal(default.policy.actor.sigma_param, torch.full((1, 1), -2.0))
    std = default.policy(__import__("tianshou").data.Batch(obs=torch.zeros(1, 3), info={})).dist.stddev
    assert float(std) == pytest.approx(float(torch.tensor(-2.0).exp()))


def test_ppo_init_and_activation_settings_build_the_sb3_style_networks():
    import torch

    algorithm, _ = _algorithm({"env": "CartPole-v1", "algo": "ppo"})  # the preset: tanh, ppo init
    actor, critic = algorithm.policy.actor, algorithm.critic
    assert any(isinstance(m, torch.nn.Tanh) for m in actor.modules())
    head = actor.last.model[0].weight
    assert head.abs().max() < 0.05, "policy output starts near zero (gain 0.01): a near-uniform first policy"
    assert critic.last.model[0].weight.norm() > 0.5
    assert algorithm.optim._optim.param_groups[0]["eps"] == 1e-5, "SB3's Adam epsilon for PPO"
    plain, _ = _algorithm({"env": "CartPole-v1", "algo": "ppo", "preset": "none"})
    assert plain.optim._optim.param_groups[0]["eps"] == 1e-8
    assert any(isinstance(m, torch.nn.ReLU) for m in plain.policy.actor.modules())
    assert plain.policy.actor.last.model[0].weight.abs().max() > 0.05
