"""Sweeps and vector envs on a real local Ray instance (started by the tests, 2 CPUs, a small object
store, no dashboard): the 2×2 sweep of ``test_sweep.py`` with its resume checks, parallel trials
sharing one LLM response cache, and ``train.vector = "ray"`` against the in-process vector env."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="Ray is part of the test extra: pip install -e '.[test]'")

_spec = importlib.util.spec_from_file_location("_sweep_checks", Path(__file__).with_name("test_sweep.py"))
checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checks)  # the shared 2×2 checks (importlib import mode: no test-to-test imports)

from guidedrl.sweep import Sweep, run_sweep  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


def test_2x2_sweep_on_local_ray_skips_finished_and_resumes_killed_trials(local_ray, tmp_path):
    out = tmp_path / "sweep"
    record = run_sweep(checks.tiny_2x2(), out, backend="ray", parallel=2, progress=False)
    assert record["backend"] == "ray"
    checks.check_2x2(out, record)
    pids = {json.loads((out / "runs" / t["id"] / "summary.json").read_text())["pid"] for t in record["trials"]}
    assert len(pids) == 2 and os.getpid() not in pids, "trials run in the two Ray workers, side by side"
    checks.check_rerun_skips_finished_and_resumes_killed(
        out, lambda: run_sweep(checks.tiny_2x2(), out, backend="ray", parallel=2, progress=False)
    )


def ultra_sweep(cache: Path) -> Sweep:
    base = {
        "env": "CartPole-v1",
        "steps": 1024,
        "methods": ["ultra"],
        "ultra": {"variant": "ra", "episodes": 3},
        "llm": {"backend": "simulated", "cache_path": str(cache), "backoff_s": 0.01},
        "ppo": {"steps_per_collect": 512, "repeat": 1},
        "train": {"num_envs": 4, "epoch_steps": 512, "test_episodes": 2, "num_test_envs": 2},
    }
    return Sweep(base=base, seeds=(0, 1))


def test_parallel_trials_share_the_llm_cache_and_an_identical_trial_hits_it(local_ray, tmp_path):
    cache = tmp_path / "llm_cache.sqlite"
    first = run_sweep(ultra_sweep(cache), tmp_path / "one", backend="ray", parallel=2, progress=False, report=False)
    assert first["counts"]["finished"] == 2, first
    sums = {t["id"]: json.loads((Path(t["run_dir"]) / "summary.json").read_text()) for t in first["trials"]}
    assert all(s["llm_calls"] > 0 and s["llm_failures"] == 0 for s in sums.values()), sums
    assert len({s["pid"] for s in sums.values()}) == 2, "the two trials ran side by side in two workers"
    for t in first["trials"]:
        assert "locked" not in Path(t["log"]).read_text().lower()
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] >= max(s["llm_calls"] for s in sums.values())

    second = run_sweep(ultra_sweep(cache), tmp_path / "two", backend="ray", parallel=2, progress=False, report=False)
    assert second["counts"]["finished"] == 2
    for t in second["trials"]:
        again = json.loads((Path(t["run_dir"]) / "summary.json").read_text())
        before = sums[t["id"]]
        assert again["llm_calls"] == 0, "an identical trial is answered from the shared cache"
        assert again["llm_cache_hits"] == before["llm_questions"] > 0
        assert again["final_return"] == before["final_return"]


def test_ray_vector_envs_give_the_same_run_as_in_process_ones(local_ray, tmp_path):
    from guidedrl.config import from_dict
    from guidedrl.records import read_metrics
    from guidedrl.train import train

    def run(vector: str) -> tuple[dict, list[dict]]:
        cfg = from_dict(
            {
                "env": "CartPole-v1",
                "steps": 1024,
                "seed": 7,
                "out": str(tmp_path / vector),
                "ppo": {"steps_per_collect": 256, "repeat": 2},
                "train": {"vector": vector, "num_envs": 2, "num_test_envs": 2, "epoch_steps": 512, "test_episodes": 2},
            }
        )
        result = train(cfg)
        return result.summary, read_metrics(result.run_dir)

    ray_summary, ray_rows = run("ray")
    dummy_summary, dummy_rows = run("dummy")
    assert ray_summary["status"] == "finished"
    assert ray_summary["env_steps"] == dummy_summary["env_steps"]
    assert ray_summary["final_return"] == dummy_summary["final_return"]
    keys = ("env_steps", "test/return", "train/episodes")
    assert [{k: r.get(k) for k in keys} for r in ray_rows] == [{k: r.get(k) for k in keys} for r in dummy_rows]
    assert any(k.startswith("loss") or "/loss" in k for k in ray_rows[-1])
    loss = next(k for k in ray_rows[-1] if "loss" in k)
    assert ray_rows[-1][loss] == pytest.approx(dummy_rows[-1][loss])
