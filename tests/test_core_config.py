"""Run configuration: TOML files, ``--set`` overrides, method sections and error messages."""

from __future__ import annotations

import attrs
import pytest

from guidedrl.config import (
    RunConfig,
    apply_overrides,
    from_dict,
    load,
    parse_override,
)
from guidedrl.errors import ConfigError

TOML = """
env = "Pendulum-v1"
algo = "sac"
steps = 12000
seed = 3
methods = ["ultra", "leed"]

[train]
num_envs = 2
stop_return = -200

[sac]
hidden = [32, 32]
actor_lr = 3e-4

[ultra]
variant = "ra"
budget = 5

[leed]
weight = 0.5
"""


def test_toml_file_loads_into_a_run_config(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(TOML)
    cfg = from_dict(load(path))
    assert (cfg.env, cfg.algo, cfg.steps, cfg.seed) == ("Pendulum-v1", "sac", 12000, 3)
    assert cfg.methods == ("ultra", "leed")
    assert cfg.train.num_envs == 2 and cfg.train.num_test_envs == 4  # unset fields keep defaults
    assert cfg.train.stop_return == -200.0 and isinstance(cfg.train.stop_return, float)
    assert cfg.sac.hidden == (32, 32)
    assert cfg.sac.actor_lr == pytest.approx(3e-4)
    assert cfg.method_config == {"ultra": {"variant": "ra", "budget": 5}, "leed": {"weight": 0.5}}


def test_load_accepts_a_run_directory(tmp_path):
    (tmp_path / "config.toml").write_text('env = "Acrobot-v1"\n')
    assert load(tmp_path) == {"env": "Acrobot-v1"}


def test_missing_and_invalid_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad)


@pytest.mark.parametrize(
    ("item", "path", "value"),
    [
        ("ppo.lr=3e-4", ["ppo", "lr"], 3e-4),
        ("steps=100", ["steps"], 100),
        ("train.checkpoint=false", ["train", "checkpoint"], False),
        ("ppo.hidden=[32, 16]", ["ppo", "hidden"], [32, 16]),
        ('llm.backend="openai:gpt-4o-mini"', ["llm", "backend"], "openai:gpt-4o-mini"),
        ("llm.backend=simulated", ["llm", "backend"], "simulated"),  # not a TOML literal: a string
        ("llm.options={error_rate = 0.2}", ["llm", "options"], {"error_rate": 0.2}),
        (" train.num_envs = 3", ["train", "num_envs"], 3),
    ],
)
def test_set_values_are_toml_literals_else_strings(item, path, value):
    assert parse_override(item) == (path, value)


def test_overrides_apply_on_top_of_file_data_without_mutating_it():
    data = {"env": "CartPole-v1", "ppo": {"lr": 1e-3}}
    new = apply_overrides(data, ["ppo.lr=3e-4", "ppo.repeat=4", "train.num_envs=2", "seed=9"])
    assert data == {"env": "CartPole-v1", "ppo": {"lr": 1e-3}}
    cfg = from_dict(new)
    assert cfg.ppo.lr == pytest.approx(3e-4) and cfg.ppo.repeat == 4 and cfg.train.num_envs == 2 and cfg.seed == 9


def test_set_into_a_value_is_an_error():
    with pytest.raises(ConfigError, match="'steps' is a value, not a table"):
        apply_overrides({"steps": 5}, ["steps.x=1"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("ppo.lr")


def test_method_settings_by_set_and_by_table():
    cfg = from_dict(apply_overrides({"methods": "ultra, leed"}, ["ultra.variant=ra", "leed.weight=2"]))
    assert cfg.methods == ("ultra", "leed")
    assert cfg.method_config == {"ultra": {"variant": "ra"}, "leed": {"weight": 2}}


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"ppo": {"lrr": 1e-3}}, ["ppo.lrr", "Did you mean 'lr'"]),
        ({"stpes": 10}, ["'stpes'", "Did you mean 'steps'"]),
        ({"trian": {"num_envs": 2}}, ["'trian'", "Did you mean 'train'"]),
        ({"train": {"num_env": 2}}, ["train.num_env", "Did you mean 'num_envs'"]),
        ({"ultra": {"variant": "ra"}}, ["'ultra'", "add 'ultra' to `methods`"]),
    ],
)
def test_unknown_settings_name_the_field_and_suggest(data, fragments):
    with pytest.raises(ConfigError) as err:
        from_dict(data)
    for fragment in fragments:
        assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"steps": -5}, ["steps", "> 0", "-5"]),
        ({"steps": 0}, ["steps", "> 0"]),
        ({"seed": -1}, ["seed"]),
        ({"ppo": {"gamma": 1.5}}, ["[ppo]", "gamma"]),
        ({"train": {"num_envs": 0}}, ["[train]", "num_envs"]),
        ({"algo": ""}, ["algo"]),  # a name unknown to the registry fails in train(), test_core_runner.py
        ({"train": {"vector": "threads"}}, ["vector", "threads"]),
        ({"steps": "many"}, ["steps must be a number", "'many'"]),
        ({"train": {"checkpoint": "yes"}}, ["train.checkpoint must be true or false"]),
        ({"ppo": {"hidden": 64}}, ["ppo.hidden must be a list"]),
        ({"train": 3}, ["train must be a table"]),
        ({"methods": 3}, ["methods must be a list"]),
    ],
)
def test_bad_values_are_config_errors_naming_the_field(data, fragments):
    with pytest.raises(ConfigError) as err:
        from_dict(data)
    for fragment in fragments:
        assert fragment in str(err.value), f"{fragment!r} not in {err.value}"


def test_numbers_are_coerced_where_exact():
    cfg = from_dict({"steps": 100.0, "ppo": {"lr": 1}})
    assert cfg.steps == 100 and isinstance(cfg.steps, int)
    assert cfg.ppo.lr == 1.0 and isinstance(cfg.ppo.lr, float)
    with pytest.raises(ConfigError, match="steps must be an integer, got 100.5"):
        from_dict({"steps": 100.5})
    with pytest.raises(ConfigError, match="train.num_envs must be an integer"):
        from_dict(apply_overrides({}, ["train.num_envs=2.5"]))


def test_save_then_load_round_trips(tmp_path):
    cfg = from_dict(
        {
            "env": "Pendulum-v1",
            "algo": "sac",
            "steps": 777,
            "methods": ["ultra"],
            "ultra": {"variant": "ra", "weights": [1, 2]},
            "env_kwargs": {"g": 9.5},
            "train": {"stop_return": -150.0, "num_envs": 3},
            "sac": {"hidden": [16, 16]},
            "llm": {"options": {"error_rate": 0.1}, "max_calls": 10},
        }
    )
    path = tmp_path / "config.toml"
    cfg.save(path)
    again = from_dict(load(path))
    assert again == cfg
    assert attrs.asdict(again) == attrs.asdict(cfg)
    # None values are left out of the file (TOML has no null) and come back as defaults
    default_path = tmp_path / "default.toml"
    RunConfig().save(default_path)
    assert "init_from" not in default_path.read_text()
    assert from_dict(load(default_path)) == RunConfig()
