"""Resume that cannot run code, cannot lose accounting, and refuses to guess (issue 16).

The crafted-buffer test (no code runs on load) is in ``test_run_files_damage.py``
(``test_buffer_with_a_pickle_payload_is_rejected_and_runs_nothing``, and the legacy ``buffer.h5``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from guidedrl_core_testkit import read_json, tiny_ppo

import guidedrl
from guidedrl.cli import main
from guidedrl.config import find_secrets, from_dict
from guidedrl.errors import ConfigError
from guidedrl.llm import summarize_log
from guidedrl.records import read_metrics
from guidedrl.train import train

QUIET = ["--quiet", "--no-plot"]
KEY = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX1234"


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["run", *argv, *QUIET])
    return rc, capsys.readouterr().err


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("guidedrl: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def every_byte_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory) -> Path:
    """A finished PPO run: checkpoint.pt at 1024 steps, checkpoint.prev.pt at 512."""
    out = tmp_path_factory.mktemp("ppo") / "run"
    train(from_dict(tiny_ppo(out, steps=1024, train={"epoch_steps": 512}, ppo={"repeat": 1})))
    return out


@pytest.fixture(scope="module")
def dqn_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dqn") / "run"
    train(
        from_dict(
            {
                "env": "CartPole-v1",
                "algo": "dqn",
                "preset": "none",  # the plain defaults: 128-step epochs give two checkpoint pairs
                "steps": 256,
                "out": str(out),
                "train": {"num_envs": 2, "num_test_envs": 1, "test_episodes": 1, "epoch_steps": 128},
                "dqn": {"start_steps": 64, "buffer_size": 512, "batch_size": 32},
            }
        )
    )
    return out


def copy_run(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


# -- secrets -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "named", "secret"),
    [
        (f'llm.options.api_key="{KEY}"', "llm.options.api_key", KEY),
        (f'llm.options.base_url="https://example.invalid/v1?key={KEY}"', "llm.options.base_url", KEY),
        (f'llm.options.default_headers={{Authorization="Bearer {KEY}"}}', "llm.options.default_headers.Authorization", KEY),
        ('llm.options.password="hunter2hunter2"', "llm.options.password", "hunter2hunter2"),
    ],
)
def test_secrets_are_refused_before_anything_is_written(tmp_path, capsys, setting, named, secret):
    out = tmp_path / "run"
    rc, err = run_cli(capsys, "--env", "CartPole-v1", "--steps", "512", "--out", str(out), "--set", setting)
    assert rc == 2
    line = one_error_line(err)
    assert line.startswith(f"guidedrl: error: {named} holds a secret") and "environment variable" in line
    assert secret not in err, "the error message must not repeat the secret"
    assert not out.exists()
    assert secret.encode() not in every_byte_under(tmp_path)


@pytest.mark.slow
def test_a_secret_on_resume_leaves_the_saved_config_alone(ppo_run, tmp_path, capsys):
    run = copy_run(ppo_run, tmp_path)
    before = (run / "config.toml").read_bytes()
    rc, err = run_cli(capsys, "--out", str(run), "--resume", "--set", f'llm.options.api_key="{KEY}"')
    assert rc == 2 and "llm.options.api_key holds a secret" in one_error_line(err)
    assert (run / "config.toml").read_bytes() == before
    assert KEY.encode() not in every_byte_under(run)


def test_what_is_not_a_secret_passes():
    data = {"llm": {"max_tokens": 256, "options": {"api_key_env": "OPENAI_API_KEY", "model": "gpt-4o-mini",
                                                   "base_url": "http://localhost:8000/v1", "stop_token": "</s>"}}}
    assert find_secrets(data) == []
    cfg = from_dict({"llm": {"options": {"api_key_env": "MY_KEY"}}})
    with pytest.raises(ConfigError, match="llm.options.token holds a secret"):
        from_dict({"llm": {"options": {"token": "abc"}}}).save("/nonexistent/config.toml")
    assert cfg.llm.options["api_key_env"] == "MY_KEY"


# -- summary totals across resumes -------------------------------------------------------------------


class Asker:
    """Asks the LLM once per collection that finished episodes, while ``ctx.env_steps < until``."""

    def __init__(self, until: int) -> None:
        self.until = until

    @guidedrl.hookimpl
    def identify_critical_states(self, ctx, episodes):
        if ctx.env_steps < self.until:
            ctx.llm.suggest_action(episodes[0].obs[0])
        return None


def guided(out: Path, steps: int) -> object:
    return from_dict(
        tiny_ppo(
            out,
            steps=steps,
            seed=1,
            train={"epoch_steps": 512, "num_envs": 2},
            ppo={"steps_per_collect": 256, "repeat": 1},
            llm={"backend": "simulated", "cache": "off", "options": {"invalid_rate": 0.3, "seed": 2}},
        )
    )


@pytest.mark.slow
@pytest.mark.parametrize("until", [10**9, 512], ids=["every segment asks", "only the first segment asks"])
def test_summary_totals_survive_two_resumes_and_match_the_log(tmp_path, until):
    out = tmp_path / "run"
    first = train(guided(out, 512), extra_plugins={"asker": Asker(until)}).summary
    assert first["llm_calls"] > 0
    train(guided(out, 1024), extra_plugins={"asker": Asker(until)}, resume=True)
    s = train(guided(out, 1536), extra_plugins={"asker": Asker(until)}, resume=True).summary
    logged = summarize_log(out / "llm_calls.jsonl")
    assert {k: s[k] for k in logged} == logged, "summary totals differ from what llm_calls.jsonl says"
    if until > 1536:
        assert s["llm_calls"] > first["llm_calls"]
    else:
        assert s["llm_calls"] == first["llm_calls"]
    assert s["llm_failures"] == logged["llm_failures"] and s["llm_tokens"] == logged["llm_tokens"]
    assert s["llm_backend"].startswith("simulated")
    segments = s["segments"]
    assert [seg["status"] for seg in segments] == ["finished"] * 3
    assert [seg.get("from_env_steps", 0) for seg in segments] == [0, 512, 1024]
    assert segments[0]["wall_s"] == first["wall_s"]
    assert s["wall_s"] == pytest.approx(sum(seg["wall_s"] for seg in segments), abs=2e-3)
    assert s["wall_s"] > max(seg["wall_s"] for seg in segments) > 0
    assert s["llm_wall_s"] == pytest.approx(sum(seg["llm_wall_s"] for seg in segments), abs=1e-3)
    assert s["llm_questions"] == sum(seg["llm_questions"] for seg in segments) > 0
    assert [r["env_steps"] for r in read_metrics(out)] == [512, 1024, 1536]


# -- refusing to guess -------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_without_config_toml_is_refused_unless_told(ppo_run, tmp_path, capsys):
    run = copy_run(ppo_run, tmp_path)
    (run / "config.toml").unlink()
    metrics = (run / "metrics.jsonl").read_bytes()
    rc, err = run_cli(capsys, "--out", str(run), "--resume")
    assert rc == 2
    line = one_error_line(err)
    assert "has no config.toml" in line and "--resume-without-config" in line
    assert not (run / "config.toml").exists() and (run / "metrics.jsonl").read_bytes() == metrics
    original = tmp_path / "original.toml"
    original.write_text(tomli_w.dumps({k: v for k, v in tiny_ppo(run, train={"epoch_steps": 512}, ppo={"repeat": 1}).items() if k != "out"}))
    rc, err = run_cli(capsys, str(original), "--out", str(run), "--resume", "--resume-without-config", "--steps", "1536")
    assert rc == 0, err
    summary = read_json(run / "summary.json")
    assert summary["segments"][-1]["flags"] == ["--resume-without-config"]
    assert (run / "config.toml").exists()


@pytest.mark.slow
def test_off_policy_resume_without_its_buffer_is_refused_unless_told(dqn_run, tmp_path, capsys):
    run = copy_run(dqn_run, tmp_path)
    (run / "buffer.npz").unlink()
    (run / "buffer.prev.npz").unlink()
    rc, err = run_cli(capsys, "--out", str(run), "--resume", "--steps", "384")
    assert rc == 2
    line = one_error_line(err)
    assert "buffer.npz (the replay buffer of this off-policy run) is missing" in line
    assert "resuming would continue with an empty replay buffer" in line and "--resume-without-buffer" in line
    rc, err = run_cli(capsys, "--out", str(run), "--resume", "--steps", "384", "--resume-without-buffer")
    assert rc == 0, err
    assert "continuing with an empty replay buffer" in err
    summary = read_json(run / "summary.json")
    assert summary["segments"][-1]["flags"] == ["--resume-without-buffer"]
    assert summary["segments"][-1]["from_env_steps"] == 256


@pytest.mark.slow
def test_a_new_run_refuses_a_killed_runs_directory_unless_told(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.toml").write_text('env = "CartPole-v1"\n')
    (out / "metrics.jsonl").write_text('{"env_steps": 999, "test/return": 1.0}\n')
    (out / "notes.txt").write_text("mine")
    args = ["--env", "CartPole-v1", "--steps", "512", "--out", str(out), "--set", "train.epoch_steps=512",
            "--set", "ppo.steps_per_collect=512", "--set", "ppo.repeat=1", "--set", "train.test_episodes=1"]
    rc, err = run_cli(capsys, *args)
    assert rc == 2
    line = one_error_line(err)
    assert "already holds a run (config.toml, metrics.jsonl)" in line and "--resume" in line and "--overwrite" in line
    rc, err = run_cli(capsys, *args, "--resume")
    assert rc == 2 and "has no checkpoint.pt to continue from" in one_error_line(err)
    rc, err = run_cli(capsys, *args, "--overwrite")
    assert rc == 0, err
    assert [r["env_steps"] for r in read_metrics(out)] == [512]  # the killed run's rows are gone
    assert (out / "notes.txt").read_text() == "mine"  # only run files are replaced
    assert read_json(out / "summary.json")["segments"][-1]["flags"] == ["--overwrite"]


# -- stale temporary files and TensorBoard -----------------------------------------------------------


@pytest.mark.slow
def test_stale_temporary_files_are_removed_on_start(ppo_run, tmp_path, capsys):
    run = copy_run(ppo_run, tmp_path)
    stale = ["checkpoint.pt.k2j3h4.tmp", "buffer.npz.abc.tmp", "metrics.jsonl.x1.tmp", "summary.json.q.tmp"]
    for name in stale:
        (run / name).write_bytes(b"half a file")
    (run / "notes.tmp").write_text("not ours")
    rc, err = run_cli(capsys, "--out", str(run), "--resume", "--steps", "1536")
    assert rc == 0, err
    assert "removed 4 temporary file(s) left by an interrupted write" in err
    assert not any((run / name).exists() for name in stale)
    assert (run / "notes.tmp").read_text() == "not ours"
    assert read_json(run / "summary.json")["segments"][-1]["stale_tmp_removed"] == sorted(stale)


@pytest.mark.slow
def test_tensorboard_points_after_the_checkpoint_are_purged_on_resume(ppo_run, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = copy_run(ppo_run, tmp_path)
    # killed after the 1024-step row reached metrics and TensorBoard, before its checkpoint was in place
    (run / "checkpoint.pt").unlink()
    rc, err = run_cli(capsys, "--out", str(run), "--resume")
    assert rc == 0, err
    rows = read_metrics(run)
    assert [r["env_steps"] for r in rows] == [512, 1024]
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    points = acc.Scalars("test/return")
    assert [p.step for p in points] == [512, 1024], "TensorBoard shows the abandoned 1024-step point too"
    assert np.isclose(points[-1].value, rows[-1]["test/return"])
