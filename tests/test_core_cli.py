"""The ``guidedrl`` command, in-process through ``guidedrl.cli.main`` and once as the real script."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from guidedrl_core_testkit import read_json

from guidedrl.cli import main
from guidedrl.records import SUMMARY_KEYS, read_metrics

PNG = b"\x89PNG\r\n\x1a\n"

FAST = [
    "--set", "train.epoch_steps=1024",
    "--set", "train.num_envs=4",
    "--set", "train.test_episodes=2",
    "--set", "train.num_test_envs=2",
    "--set", "ppo.steps_per_collect=512",
    "--set", "ppo.repeat=2",
]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Two short runs (seeds 0 and 1) made by ``guidedrl run``."""
    root = tmp_path_factory.mktemp("cli")
    dirs = []
    for seed in (0, 1):
        out = root / f"seed{seed}"
        argv = ["run", "--env", "CartPole-v1", "--algo", "ppo", "--steps", "2048", "--seed", str(seed), "--out", str(out), "--quiet", *FAST]
        assert main(argv) == 0
        dirs.append(out)
    return dirs


@pytest.mark.slow
def test_run_writes_everything_a_run_leaves_behind(cli_runs, capsys):
    run = cli_runs[0]
    summary = read_json(run / "summary.json")
    for key in SUMMARY_KEYS:
        assert key in summary, f"summary.json lacks {key}"
    assert summary["env_steps"] >= 2048
    assert summary["best_return"] >= summary["final_return"] > 0
    assert summary["wall_s"] > 0
    assert (summary["llm_calls"], summary["llm_cache_hits"], summary["llm_failures"]) == (0, 0, 0)
    assert summary["status"] == "finished"
    config = (run / "config.toml").read_text()
    assert 'env = "CartPole-v1"' in config and "steps_per_collect = 512" in config and f'out = "{run}"' in config
    rows = read_metrics(run)
    assert [r["env_steps"] for r in rows] == sorted({r["env_steps"] for r in rows})
    assert rows[-1]["env_steps"] == summary["env_steps"]
    assert max(r["test/return"] for r in rows) == summary["best_return"]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run / "tb"))
    assert (run / "checkpoint.pt").stat().st_size > 0
    assert (run / "learning_curve.png").read_bytes()[:8] == PNG


@pytest.mark.slow
def test_saved_config_toml_holds_the_set_overrides(cli_runs):
    from guidedrl.config import from_dict, load

    saved = from_dict(load(cli_runs[0] / "config.toml"))
    assert saved.ppo.steps_per_collect == 512 and saved.train.epoch_steps == 1024 and saved.seed == 0


def test_plugins_json_lists_cartpole_with_its_distribution(capsys):
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert set(rows) == {"methods", "envs", "llms"}
    (cartpole,) = [e for e in rows["envs"] if e["id"] == "CartPole-v1"]
    assert cartpole["distribution"] == "guidedrl-env-classic"
    assert cartpole["version"] and cartpole["summary"]
    assert main(["envs", "--json"]) == 0
    assert "CartPole-v1" in {e["id"] for e in json.loads(capsys.readouterr().out)}


@pytest.mark.slow
def test_eval_reports_the_checkpoint(cli_runs, capsys):
    capsys.readouterr()
    assert main(["eval", str(cli_runs[0]), "--episodes", "4"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 4
    assert result["env_steps"] == read_json(cli_runs[0] / "summary.json")["env_steps"]
    assert 0 < result["mean_return"] <= 500 and result["std_return"] >= 0


@pytest.mark.slow
def test_compare_writes_a_table_with_mean_and_std_and_curves(cli_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, cli_runs), "--out", str(out)]) == 0
    table = (out / "compare.md").read_text()
    assert table == capsys.readouterr().out.split("table: ")[0].rstrip("\n") + "\n"
    header, _, *rows = table.strip().splitlines()
    assert "final return" in header and "best return" in header and "env steps to 475" in header
    assert len(rows) == 1, "runs that differ only in seed form one group"
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[0] == "no method" and cells[1] == "2"
    finals = [read_json(d / "summary.json")["final_return"] for d in cli_runs]
    mean, std = sum(finals) / 2, abs(finals[0] - finals[1]) / 2
    assert cells[2] == f"{mean:.1f} ± {std:.1f}"
    assert (out / "curves.png").read_bytes()[:8] == PNG


def test_compare_of_a_directory_that_is_not_a_run_is_an_error(tmp_path, capsys):
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "cmp")]) == 2
    assert "not a finished run directory" in capsys.readouterr().err


def test_unknown_env_exits_2_with_did_you_mean(tmp_path, capsys):
    assert main(["run", "--env", "CartPol-v1", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("guidedrl: error:") and "Did you mean 'CartPole-v1'" in err
    assert "Traceback" not in err


def test_bad_set_exits_2_naming_the_field(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "x"), "--set", "ppo.lrr=1e-3"]) == 2
    assert "Did you mean 'lr'" in capsys.readouterr().err


def test_guidedrl_script_runs_as_a_subprocess(guidedrl_script, tmp_path):
    version = subprocess.run([str(guidedrl_script), "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("guidedrl ")
    proc = subprocess.run(
        [str(guidedrl_script), "run", "--env", "CartPol-v1", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Did you mean 'CartPole-v1'" in proc.stderr
