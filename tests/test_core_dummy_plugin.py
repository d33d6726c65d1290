"""A third-party method plugin, installed with pip and discovered through its entry point.

``tests/fixtures/dummy_plugin`` is a distribution of its own (``guidedrl-dummy``, entry point
``dummy = "guidedrl_dummy:DummyMethod"`` in group ``guidedrl.methods``). The ``dummy_site`` fixture
pip-installs it into a target directory once; ``dummy_installed`` puts that directory on
``sys.path`` for one test. All five of its hooks must fire in a real CartPole run.
"""

from __future__ import annotations

import json

import pytest
from guidedrl_core_testkit import read_json, tiny_ppo

from guidedrl import hookspecs
from guidedrl.cli import main
from guidedrl.config import from_dict
from guidedrl.plugins import discover, make_manager
from guidedrl.records import read_metrics
from guidedrl.train import train


def test_dummy_plugin_is_not_importable_without_installing():
    # The fixture is only reachable through its installation, so the tests below really use pip's copy.
    with pytest.raises(ImportError):
        __import__("guidedrl_dummy")
    assert "dummy" not in discover("methods")


def test_installed_dummy_plugin_is_discovered(dummy_installed):
    info = discover("methods")["dummy"]
    assert (info.dist, info.version, info.value) == ("guidedrl-dummy", "0.0.1", "guidedrl_dummy:DummyMethod")
    pm = make_manager(["dummy"], {"dummy": {"bonus": 0.5}})
    plugin = pm.get_plugin("dummy")
    assert plugin.config.bonus == 0.5
    assert type(plugin).__module__ == "guidedrl_dummy"
    import guidedrl_dummy

    assert guidedrl_dummy.__file__.startswith(str(dummy_installed))


def test_installed_dummy_plugin_is_listed_by_the_cli(dummy_installed, capsys):
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    (row,) = [m for m in rows["methods"] if m["id"] == "dummy"]
    assert row["distribution"] == "guidedrl-dummy" and row["version"] == "0.0.1"
    assert row["hooks"] == list(hookspecs.GUIDANCE_HOOKS)


def test_dummy_plugin_settings_are_validated(dummy_installed):
    from guidedrl.errors import ConfigError

    with pytest.raises(ConfigError, match="Did you mean 'bonus'"):
        make_manager(["dummy"], {"dummy": {"bonuss": 1.0}})


@pytest.mark.slow
def test_dummy_plugin_hooks_all_fire_in_a_cartpole_run(dummy_installed, tmp_path):
    cfg = tiny_ppo(
        tmp_path / "run",
        steps=2048,
        methods=["dummy"],
        dummy={"bonus": 0.02, "demo_episodes": 2},
        pretrain={"steps": 20},
    )
    result = train(from_dict(cfg))
    summary = read_json(result.run_dir / "summary.json")
    assert summary["status"] == "finished" and summary["methods"] == ["dummy"]
    counters = summary["counters"]
    # generate_demonstrations (+ pre-training on them)
    assert counters["demo_transitions"] >= 2 * 400
    rows = read_metrics(result.run_dir)
    assert rows[0]["env_steps"] == 0 and "pretrain/loss_first" in rows[0]
    # refine_action: env 0 of 4 is advised at every step
    assert counters["dummy/advised_steps"] == counters["advised_steps"] == summary["env_steps"] // 4
    # identify_critical_states: the last step of every finished episode
    assert counters["critical_states"] > 0
    train_episodes = rows[-1]["train/episodes"]  # cumulative: training episodes finished so far
    # ... and of every episode cut at an epoch boundary (2048 steps, epochs of 1024: one boundary, 4 envs)
    assert summary["epochs"] == 2
    assert counters["critical_states"] == train_episodes + cfg["train"]["num_envs"]
    # shape_reward: every transition, once (after its collection)
    assert counters["dummy/shaped_transitions"] == summary["env_steps"]
    assert counters["shaped_transitions"] == summary["env_steps"]
    # update_policy: its loss and stats are logged under methods/dummy/
    epoch_rows = [r for r in rows if r["env_steps"] > 0]  # row 0: the policy after pre-training
    assert epoch_rows and all(r["methods/dummy/l2"] > 0 for r in epoch_rows)
    assert all(r["methods/dummy/batch"] == cfg["ppo"]["steps_per_collect"] for r in epoch_rows)
