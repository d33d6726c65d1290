"""Damaged run files and caches (issue 15): each yields one sentence naming the file, what is wrong
and the way forward, or a counted fallback; never a traceback, and nothing more is lost.

| damaged file | test |
|---|---|
| ``checkpoint.pt`` empty / garbage / truncated | ``test_damaged_checkpoint_*`` |
| ``buffer.npz`` garbage / truncated | ``test_damaged_buffer_*`` |
| LLM cache garbage / truncated / other schema | ``test_damaged_llm_cache_*`` |
| ``metrics.jsonl`` torn / garbage line | ``test_metrics_*`` |
| a full disk while writing a checkpoint | ``test_full_disk_*`` |
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from guidedrl_core_testkit import read_json, tiny_ppo

from guidedrl.cli import main
from guidedrl.config import from_dict
from guidedrl.errors import RunFileError, RunFileWarning
from guidedrl.llm.cache import ResponseCache
from guidedrl.records import RunRecorder, read_buffer_file, read_metrics
from guidedrl.train import train

QUIET = ["--quiet", "--no-plot"]


def tiny_dqn(out: Path) -> dict:
    return {
        "env": "CartPole-v1",
        "algo": "dqn",
        "preset": "none",  # the plain defaults: 128-step epochs give the two checkpoint pairs these tests read
        "steps": 256,
        "seed": 0,
        "out": str(out),
        "train": {"num_envs": 2, "num_test_envs": 1, "test_episodes": 1, "epoch_steps": 128},
        "dqn": {"start_steps": 64, "buffer_size": 512, "batch_size": 32},
    }


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory) -> Path:
    """A finished PPO run with two checkpoints: checkpoint.pt (1024 steps) and checkpoint.prev.pt (512)."""
    out = tmp_path_factory.mktemp("ppo") / "run"
    train(from_dict(tiny_ppo(out, steps=1024, train={"epoch_steps": 512}, ppo={"repeat": 1})))
    return out


@pytest.fixture(scope="module")
def dqn_run(tmp_path_factory) -> Path:
    """A finished DQN run with two checkpoint + buffer pairs (256 and 128 steps)."""
    out = tmp_path_factory.mktemp("dqn") / "run"
    train(from_dict(tiny_dqn(out)))
    return out


def copy_run(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


def damage(path: Path, how: str) -> bytes:
    """Damage ``path`` the way a kill, a full disk or a bad copy does; returns the new bytes."""
    data = path.read_bytes()
    new = {
        "empty": b"",
        "garbage": os.urandom(len(data) // 2 or 64),
        "truncated": data[: len(data) // 2],
    }[how]
    path.write_bytes(new)
    return new


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["run", *argv, *QUIET])
    return rc, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    errors = [line for line in lines if line.startswith("guidedrl: error: ")]
    assert len(errors) == 1, err
    return errors[0]


WORDS = {"empty": "is empty", "garbage": "is not a", "truncated": "is truncated"}


# -- checkpoint.pt ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["empty", "garbage", "truncated"])
def test_damaged_checkpoint_falls_back_to_the_previous_one(ppo_run, tmp_path, capsys, how):
    run = copy_run(ppo_run, tmp_path)
    bad = damage(run / "checkpoint.pt", how)
    rc, err = run_cli(capsys, "--out", str(run), "--resume", "--steps", "1536")
    assert rc == 0, err
    assert "Traceback" not in err
    warning = [line for line in err.splitlines() if line.startswith("guidedrl: warning: ")]
    assert len(warning) == 1 and "checkpoint.pt " + WORDS[how] in warning[0], err
    assert "using the previous checkpoint" in warning[0] and "env step 512" in warning[0]
    summary = read_json(run / "summary.json")
    assert summary["status"] == "finished" and summary["checkpoint_fallbacks"] == 1
    assert summary["segments"][-1]["from_env_steps"] == 512
    assert summary["segments"][-1]["resumed_from"] == "checkpoint.prev.pt"
    assert [r["env_steps"] for r in read_metrics(run)] == [512, 1024, 1536]  # redone from 512, once
    aside = list(run.glob("checkpoint.pt.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bad  # kept for inspection, not deleted
    # the new pair rotated the good checkpoint (not the damaged one) into checkpoint.prev.pt
    assert torch.load(run / "checkpoint.prev.pt", weights_only=True)["env_steps"] == 1024


@pytest.mark.slow
@pytest.mark.parametrize("how", ["empty", "garbage", "truncated"])
def test_damaged_checkpoint_without_a_previous_one_is_one_sentence(ppo_run, tmp_path, capsys, how):
    run = copy_run(ppo_run, tmp_path)
    (run / "checkpoint.prev.pt").unlink()
    damage(run / "checkpoint.pt", how)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    rc, err = run_cli(capsys, "--out", str(run), "--resume")
    assert rc == 2
    line = one_error_line(err)
    assert "checkpoint.pt " + WORDS[how] in line and "--overwrite" in line and "checkpoint_keep" in line
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before, "a refused resume must change nothing in the run directory"


def test_checkpoint_with_a_pickle_payload_is_not_loaded(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    run = tmp_path / "run"
    run.mkdir()
    from guidedrl.records import load_checkpoint_file

    torch.save({"env_steps": 1, "x": Payload(marker)}, run / "checkpoint.pt")
    with pytest.raises(RunFileError, match="checkpoint.pt holds Python objects .* not loaded"):
        load_checkpoint_file(run / "checkpoint.pt")
    assert not marker.exists()


@pytest.mark.slow
def test_eval_and_init_from_name_a_damaged_checkpoint(ppo_run, tmp_path, capsys):
    run = copy_run(ppo_run, tmp_path)
    (run / "checkpoint.prev.pt").unlink()
    damage(run / "checkpoint.pt", "truncated")
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1"]) == 2
    assert "checkpoint.pt is truncated" in one_error_line(capsys.readouterr().err)
    rc, err = run_cli(capsys, "--env", "CartPole-v1", "--steps", "512", "--out", str(tmp_path / "new"),
                      "--set", f'train.init_from="{run / "checkpoint.pt"}"')
    assert rc == 2
    line = one_error_line(err)
    assert "train.init_from" in line and "checkpoint.pt is truncated" in line
    assert not (tmp_path / "new").exists()


# -- buffer.npz --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_damaged_buffer_falls_back_to_the_previous_pair(dqn_run, tmp_path, capsys, how):
    run = copy_run(dqn_run, tmp_path)
    damage(run / "buffer.npz", how)
    rc, err = run_cli(capsys, "--out", str(run), "--resume", "--steps", "384")
    assert rc == 0, err
    warning = " ".join(line for line in err.splitlines() if line.startswith("guidedrl: warning: "))
    assert "buffer.npz " + WORDS[how] in warning and "using the previous checkpoint" in warning
    summary = read_json(run / "summary.json")
    assert summary["checkpoint_fallbacks"] == 1 and summary["segments"][-1]["from_env_steps"] == 128
    assert [r["env_steps"] for r in read_metrics(run)] == [128, 256, 384]
    # the restored buffer (128 steps) plus 256 new steps: nothing of the previous pair was lost
    assert read_buffer_file(run / "buffer.npz")["lengths"].sum() == 384


@pytest.mark.slow
@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_damaged_buffer_without_a_previous_pair_is_one_sentence(dqn_run, tmp_path, capsys, how):
    run = copy_run(dqn_run, tmp_path)
    (run / "checkpoint.prev.pt").unlink()
    (run / "buffer.prev.npz").unlink()
    damage(run / "buffer.npz", how)
    rc, err = run_cli(capsys, "--out", str(run), "--resume", "--steps", "384")
    assert rc == 2
    line = one_error_line(err)
    assert "buffer.npz " + WORDS[how] in line and "--resume-without-buffer" in line


class Payload:
    """Unpickling this creates ``marker`` (a stand-in for any code an attacker would run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_buffer_with_a_pickle_payload_is_rejected_and_runs_nothing(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "buffer.npz"
    payload = np.empty(1, dtype=object)
    payload[0] = Payload(marker)
    np.savez(
        path,
        allow_pickle=True,
        **{"format": np.asarray("guidedrl-replay-buffer"), "version": np.asarray(1), "pair_id": np.asarray("x"),
           "sizes": np.asarray([4]), "lengths": np.asarray([1]), "data/obs": payload},
    )
    with pytest.raises(RunFileError, match="buffer.npz holds pickled Python objects; loading them could run code"):
        read_buffer_file(path)
    assert not marker.exists(), "the payload ran"
    # the crafted file is a real attack: unpickling its array does run the payload
    with np.load(path, allow_pickle=True) as npz:
        npz["data/obs"]
    assert marker.exists()


@pytest.mark.slow
def test_legacy_pickled_buffer_h5_is_never_opened(dqn_run, tmp_path, capsys):
    """A run from before buffer.npz: its checkpoint has no pair id, its buffer.h5 is Tianshou's
    pickling format. A crafted buffer.h5 is refused without being read."""
    import h5py
    from tianshou.data import VectorReplayBuffer

    run = copy_run(dqn_run, tmp_path)
    for name in ("checkpoint.prev.pt", "buffer.npz", "buffer.prev.npz"):
        (run / name).unlink()
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    for key in ("pair_id", "has_buffer", "segments"):
        state.pop(key)
    torch.save(state, run / "checkpoint.pt")
    marker = tmp_path / "payload-ran"
    with h5py.File(run / "buffer.h5", "w") as f:
        f.attrs["__data_type__"] = "dict"
        ds = f.create_dataset("maxsize", data=np.void(pickle.dumps(Payload(marker))))
        ds.attrs["__data_type__"] = "object"
    rc, err = run_cli(capsys, "--out", str(run), "--resume", "--steps", "384")
    assert rc == 2
    line = one_error_line(err)
    assert "buffer.h5 was written by an older guidedrl through pickle" in line and "--resume-without-buffer" in line
    assert not marker.exists()
    try:  # the crafted file is a real attack: Tianshou's loader runs the payload
        VectorReplayBuffer.load_hdf5(str(run / "buffer.h5"))
    except Exception:
        pass
    assert marker.exists()


# -- a full disk -------------------------------------------------------------------------------------


def small_buffer(n: int):
    from tianshou.data import Batch, VectorReplayBuffer

    buf = VectorReplayBuffer(8, 2)
    for t in range(n):
        buf.add(
            Batch(obs=np.full((2, 3), t, np.float32), act=np.array([t, t]), rew=np.ones(2), terminated=np.array([t % 3 == 2] * 2),
                  truncated=np.zeros(2, bool), obs_next=np.full((2, 3), t + 1, np.float32), info=Batch()),
            buffer_ids=[0, 1],
        )
    return buf


def test_full_disk_keeps_the_previous_checkpoint_pair(tmp_path, monkeypatch):
    rec = RunRecorder(tmp_path, tensorboard=False)
    rec.save_checkpoint({"env_steps": 5, "w": torch.ones(3)}, buffer=small_buffer(5))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != "metrics.jsonl"}

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(RunFileError) as info:
        rec.save_checkpoint({"env_steps": 9, "w": torch.zeros(3)}, buffer=small_buffer(9))
    message = str(info.value)
    assert "buffer.npz: the disk is full" in message and "checkpoint.pt (env step 5) is kept as it was" in message
    assert "--resume" in message
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != "metrics.jsonl"}
    assert after == before, "the previous pair must be untouched and no temporary file left"
    rec.close()
    again = RunRecorder(tmp_path, tensorboard=False)
    state = again.resume(need_buffer=True)
    assert state["env_steps"] == 5 and again.resumed_buffer["lengths"].tolist() == [4, 4]
    again.close()


@pytest.mark.slow
def test_full_disk_during_a_run_is_one_sentence_and_resumable(tmp_path, capsys, monkeypatch):
    import guidedrl.records

    calls = {"n": 0}
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second epoch's checkpoint: the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(guidedrl.records.torch, "save", save)
    out = tmp_path / "run"
    rc, err = run_cli(capsys, "--env", "CartPole-v1", "--steps", "1024", "--out", str(out), "--set", "train.epoch_steps=512",
                      "--set", "train.num_envs=4", "--set", "train.test_episodes=2", "--set", "train.num_test_envs=2",
                      "--set", "ppo.steps_per_collect=512", "--set", "ppo.repeat=1")
    assert rc == 2
    line = one_error_line(err)
    assert "checkpoint.pt: the disk is full; checkpoint.pt (env step 512) is kept as it was" in line
    assert torch.load(out / "checkpoint.pt", weights_only=True)["env_steps"] == 512
    assert not list(out.glob("*.tmp"))
    assert read_json(out / "summary.json")["status"] == "failed"
    monkeypatch.undo()
    rc, err = run_cli(capsys, "--out", str(out), "--resume")
    assert rc == 0, err
    assert read_json(out / "summary.json")["status"] == "finished"


# -- the LLM response cache --------------------------------------------------------------------------


def filled_cache(path: Path, n: int = 300) -> None:
    cache = ResponseCache(path)
    for i in range(n):
        cache.put(f"k{i}", "answer " * 40 + str(i), backend="b", model="m", kind="action")
    cache.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def other_schema(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, value BLOB)")
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("how", ["garbage", "truncated", "other schema"])
def test_damaged_llm_cache_is_moved_aside_and_a_fresh_one_used(tmp_path, how):
    path = tmp_path / "llm_cache.sqlite"
    if how == "other schema":
        other_schema(path)
    else:
        filled_cache(path)
        damage(path, how)
    bad = path.read_bytes()
    with pytest.warns(RunFileWarning) as caught:
        cache = ResponseCache(path)
    message = str(caught[0].message)
    assert str(path) in message and "moved it to llm_cache.sqlite.corrupt-" in message and "the run goes on" in message
    assert ("another guidedrl version" if how == "other schema" else "is damaged") in message
    aside = list(tmp_path.glob("llm_cache.sqlite.corrupt-*"))
    assert [p.read_bytes() for p in aside if not p.name.endswith(("-wal", "-shm"))] == [bad]
    assert len(cache) == 0
    cache.put("k", "fresh", backend="b", model="m", kind="action")
    assert cache.get("k") == "fresh"
    cache.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fresh file opens without complaint
        assert ResponseCache(path).get("k") == "fresh"


def test_damaged_llm_cache_in_read_mode_is_left_alone(tmp_path):
    path = tmp_path / "llm_cache.sqlite"
    path.write_bytes(os.urandom(4096))
    bad = path.read_bytes()
    with pytest.warns(RunFileWarning, match="going on without a cache"):
        cache = ResponseCache(path, mode="read")
    assert cache.get("k") is None and not cache.readable
    assert path.read_bytes() == bad and not list(tmp_path.glob("*.corrupt-*"))


def test_cache_of_this_version_opens_without_a_warning(tmp_path):
    path = tmp_path / "c.sqlite"
    filled_cache(path, n=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache = ResponseCache(path)
    assert len(cache) == 3
    cache.close()


@pytest.mark.slow
def test_damaged_llm_cache_in_a_guided_run(tmp_path, capsys):
    cache = tmp_path / "cache.sqlite"
    cache.write_bytes(b"not a database at all" * 100)
    out = tmp_path / "run"
    rc, err = run_cli(capsys, "--env", "CartPole-v1", "--steps", "512", "--out", str(out), "--methods", "ultra",
                      "--set", "ultra.variant=\"ra\"", "--set", "ultra.episodes=1", "--set", f'llm.cache_path="{cache}"',
                      "--set", "train.num_envs=2", "--set", "train.epoch_steps=512", "--set", "train.test_episodes=1",
                      "--set", "train.num_test_envs=1", "--set", "ppo.steps_per_collect=256", "--set", "ppo.repeat=1")
    assert rc == 0, err
    assert "Traceback" not in err
    assert any(line.startswith("guidedrl: warning: LLM response cache") and "moved it to" in line for line in err.splitlines())
    summary = read_json(out / "summary.json")
    assert summary["llm_calls"] > 0 and summary["status"] == "finished"
    assert len(ResponseCache(cache)) > 0  # the fresh cache took the run's answers


# -- metrics.jsonl -----------------------------------------------------------------------------------


def test_metrics_torn_and_garbage_lines_are_skipped_with_a_count(tmp_path):
    (tmp_path / "metrics.jsonl").write_bytes(
        b'{"env_steps": 512, "test/return": 10.0}\n'
        b"\x00\xff garbage \x13\n"
        b'[1, 2]\n'
        b'{"env_steps": 1024, "test/return": 20.0}\n'
        b'{"env_steps": 1536, "test/ret'
    )
    with pytest.warns(RunFileWarning, match=r"metrics.jsonl: skipped 3 unreadable line\(s\) \(line 2, 3, 5"):
        rows = read_metrics(tmp_path)
    assert rows == [{"env_steps": 512, "test/return": 10.0}, {"env_steps": 1024, "test/return": 20.0}]


@pytest.mark.slow
def test_metrics_with_a_torn_line_resume_and_compare(ppo_run, tmp_path, capsys):
    run = copy_run(ppo_run, tmp_path)
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b"garbage\n{\"env_steps\": 20")
    rc, err = run_cli(capsys, "--out", str(run), "--resume", "--steps", "1536")
    assert rc == 0, err
    assert [r["env_steps"] for r in read_metrics(run)] == [512, 1024, 1536]
    assert b"garbage" not in (run / "metrics.jsonl").read_bytes()  # rewritten without the damage
    capsys.readouterr()
    assert main(["compare", str(run), "--out", str(tmp_path / "cmp")]) == 0
    (run / "summary.json").write_text('{"env_steps": 1')
    capsys.readouterr()
    assert main(["compare", str(run), "--out", str(tmp_path / "cmp")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "summary.json is damaged (not valid JSON" in line and "leave this run out" in line


# -- config.toml and llm_calls.jsonl ---------------------------------------------------------------


def test_damaged_config_toml_is_one_sentence(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_bytes(b"\x00\xff\xfe not toml")
    (run / "checkpoint.pt").write_bytes(b"")
    rc, err = run_cli(capsys, str(run / "config.toml"), "--resume")
    assert rc == 2
    line = one_error_line(err)
    assert "config.toml" in line and "is not valid TOML" in line and "restore it" in line


def test_llm_call_log_with_a_torn_line_still_adds_up(tmp_path):
    from guidedrl.records import llm_log_totals

    (tmp_path / "llm_calls.jsonl").write_bytes(
        b'{"event": "call", "backend": "simulated", "tokens": 5, "valid": true}\n'
        b'{"event": "cache_hit", "backend": "simulated"}\n'
        b'{"event": "call", "backend": "openai:x", "tokens": 7, "failed": true, "valid": null}\n'
        b'{"event": "call", "backend": "openai:x", "tok'
    )
    totals = llm_log_totals(tmp_path)
    assert (totals["llm_calls"], totals["llm_cache_hits"], totals["llm_failures"], totals["llm_tokens"]) == (2, 1, 1, 12)
    assert totals["llm_backend_logged"] == "openai:x"
