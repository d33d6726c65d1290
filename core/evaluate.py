"""Evaluate a finished (or interrupted) run's last checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from guidedrl.config import from_dict, load
from guidedrl.errors import GuidedRLError
from guidedrl.records import find_checkpoint
from guidedrl.registry import make_adapter


def evaluate_run(run_dir: str | Path, *, episodes: int = 10, seed: int = 12345) -> dict[str, Any]:
    """Mean ± std return of the checkpointed policy over ``episodes`` deterministic episodes."""
    from tianshou.data import Collector

    from guidedrl.train import resolve_device
    from guidedrl.train.algorithms import build_algorithm
    from guidedrl.train.single import evaluate
    from guidedrl.train.vector import make_vector_env

    run_dir = Path(run_dir)
    found = find_checkpoint(run_dir, fix="this run cannot be evaluated; train it again")
    if found is None:
        raise GuidedRLError(f"{str(run_dir)!r} has no checkpoint.pt (was train.checkpoint off?)")
    checkpoint = found[0]
    config = from_dict(load(run_dir / "config.toml"))
    adapter = make_adapter(config.env, **config.env_kwargs)
    if getattr(adapter, "multi_agent", False):
        from guidedrl.train.multiagent import evaluate_checkpoint

        return evaluate_checkpoint(config, adapter, checkpoint, episodes=episodes, seed=seed)
    device = resolve_device(config.train.device)
    probe = adapter.make()
    try:
        algorithm, _ = build_algorithm(config, probe, device)
    finally:
        probe.close()
    algorithm.load_state_dict(checkpoint["algorithm"])
    envs = make_vector_env(adapter, min(episodes, config.train.num_test_envs), "dummy", seed=seed)
    try:
        returns = evaluate(algorithm, Collector(algorithm, envs), episodes, seed)
    finally:
        envs.close()
    return {
        "run_dir": str(run_dir),
        "env_steps": int(checkpoint["env_steps"]),
        "episodes": int(len(returns)),
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
    }
