"""MAPPO presets of the multi-agent adapters (factory floors, MPE): found, chosen by ``--preset auto``
for a multi-agent run (whose algo is ``ppo``: its ``[marl]`` settings train MAPPO), applied, saved."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from guidedrl import presets
from guidedrl.cli import main
from guidedrl.config import MARLConfig, from_dict, load

REPO = Path(__file__).resolve().parents[1]
FLOORS = ("human-machine", "maintenance", "warehouse", "manufacturing")
#: (preset name, env id, distribution) of every MAPPO preset shipped in this repository.
MARL_SHIPPED = {
    *((f"factory-{f}-v0-mappo", f"factory:{f}-v0", "guidedrl-env-factory") for f in FLOORS),
    ("mpe2-simple-spread-v3-mappo", "mpe2:simple_spread-v3", "guidedrl-env-mpe"),
}


@pytest.fixture(autouse=True)
def _fresh_presets():
    presets.available.cache_clear()
    yield
    presets.available.cache_clear()


@pytest.mark.parametrize(("name", "env", "origin"), sorted(MARL_SHIPPED))
def test_each_mappo_preset_is_shipped_by_its_adapter_cites_its_search_and_is_auto_for_ppo(name, env, origin):
    from guidedrl.registry import ENVS

    preset = presets.available()[name]
    assert (preset.env, preset.algo, preset.origin) == (env, "ppo", origin)
    assert set(preset.settings) <= {"marl", "train"} and preset.settings["marl"]
    factory = ENVS.get(env).factory
    package = getattr(factory, "func", factory).__module__.split(".")[0]  # the factory floors register partials
    assert preset.path.parent.parent.name == package, f"{name}: ship it with the adapter of {env!r}"
    assert preset.source.startswith("benchmarks/mappo_search")
    searched = REPO / preset.source.split()[0]
    assert searched.is_file(), f"{name}: its source names the search file, {searched} is missing"
    text = preset.path.read_text()
    for needed in ("Search:", "Grid:", "Seeds:", "Result:"):
        assert needed in text, f"{name}: the comment block must say {needed!r} (the search, its grid, seeds and result)"
    assert presets.for_run(env, "ppo") == preset, "--preset auto picks it for a multi-agent run of its env"
    assert presets.for_run(env, "dqn") is None


def test_the_four_factory_floors_share_one_setting_since_they_share_one_agent_interface():
    settings = [presets.available()[f"factory-{f}-v0-mappo"].settings for f in FLOORS]
    assert all(s == settings[0] for s in settings)


@pytest.mark.parametrize(("name", "env"), sorted((n, e) for n, e, _ in MARL_SHIPPED))
def test_auto_applies_the_mappo_preset_and_explicit_marl_settings_still_win(name, env):
    config = from_dict({"env": env})  # algo defaults to ppo; a multi-agent adapter trains MAPPO with [marl]
    assert config.preset == name
    for key, value in presets.available()[name].settings["marl"].items():
        assert getattr(config.marl, key) == (tuple(value) if isinstance(value, list) else value), key
    assert config.marl != MARLConfig(), "the preset changes something"
    mine = from_dict({"env": env, "marl": {"lr": 1.234e-4}})
    assert mine.marl.lr == 1.234e-4 and mine.preset == name
    assert from_dict({"env": env, "preset": "none"}).marl == MARLConfig()


def test_a_factory_run_saves_the_preset_it_used_and_reruns_identically(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--env", "factory:maintenance-v0", "--steps", "64", "--out", str(out), "--quiet", "--no-plot",
                 "--set", "env_kwargs.horizon=8", "--set", "train.num_envs=2", "--set", "train.num_test_envs=1",
                 "--set", "train.test_episodes=1", "--set", "train.epoch_steps=64",
                 "--set", "marl.steps_per_collect=32", "--set", "marl.batch_size=32"]) == 0
    text = (out / "config.toml").read_text()
    preset = presets.available()["factory-maintenance-v0-mappo"]
    assert text.startswith("# preset 'factory-maintenance-v0-mappo' (guidedrl-env-factory)")
    saved = tomllib.loads(text)
    assert saved["preset"] == preset.name and saved["marl"]["steps_per_collect"] == 32, "explicit settings win"
    for key, value in preset.settings["marl"].items():
        if key not in ("steps_per_collect", "batch_size"):
            assert saved["marl"][key] == value, key
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"
    assert from_dict(load(out / "config.toml")).marl == from_dict(saved).marl


def test_presets_command_lists_the_mappo_presets(capsys):
    assert main(["presets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {(n, rows[n]["env"], rows[n]["origin"]) for n, _, _ in MARL_SHIPPED} == MARL_SHIPPED
    assert all(rows[n]["algo"] == "ppo" and "marl" in rows[n]["settings"] for n, _, _ in MARL_SHIPPED)


def test_every_adapter_with_presets_declares_them_as_package_data():
    for pyproject in sorted(REPO.glob("contrib_envs/*/pyproject.toml")):
        data = tomllib.loads(pyproject.read_text())
        for package in data["tool"]["setuptools"]["packages"]:
            if list((pyproject.parent / package / "presets").glob("*.toml")):
                declared = data["tool"]["setuptools"].get("package-data", {}).get(package, [])
                assert "presets/*.toml" in declared, f"{pyproject}: declare presets/*.toml as package data of {package}"
