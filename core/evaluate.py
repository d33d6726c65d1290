"""Evaluate a finished (or interrupted) run's last checkpoint, single- or multi-agent alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np

from guidedrl.config import from_dict, load
from guidedrl.errors import GuidedRLError
from guidedrl.records import find_checkpoint
from guidedrl.registry import make_adapter


def evaluate_run(run_dir: str | Path, *, episodes: int = 10, seed: int = 12345, env: str | None = None) -> dict[str, Any]:
    """Mean ± std return of the checkpointed policy over ``episodes`` deterministic episodes (team
    return in multi-agent runs), with the means of what the env reports as metrics.

    ``env`` evaluates on another env id whose agents have the same interface (zero-shot transfer,
    e.g. from one factory domain to another)."""
    from guidedrl.context import RunContext
    from guidedrl.plugins import make_manager
    from guidedrl.train import make_learner, resolve_device
    from guidedrl.train.loop import learner_state_of

    run_dir = Path(run_dir)
    found = find_checkpoint(run_dir, fix="this run cannot be evaluated; train it again")
    if found is None:
        raise GuidedRLError(f"{str(run_dir)!r} has no checkpoint.pt (was train.checkpoint off?)")
    checkpoint = found[0]
    config = from_dict(load(run_dir / "config.toml"))
    if env is not None and env != config.env:
        config = attrs.evolve(config, env=env, env_kwargs={})
    adapter = make_adapter(config.env, **config.env_kwargs)
    ctx = RunContext(
        config=config, adapter=adapter, pm=make_manager(()), run_dir=run_dir, device=resolve_device(config.train.device)
    )
    learner = make_learner(ctx)  # no training envs: start() is not called
    learner.load_state_dict(learner_state_of(checkpoint))
    try:
        result = learner.evaluate(episodes, seed)
    finally:
        learner.close()
    return {
        "run_dir": str(run_dir),
        "env_steps": int(checkpoint["env_steps"]),
        "episodes": int(len(result.returns)),
        "mean_return": float(np.mean(result.returns)),
        "std_return": float(np.std(result.returns)),
        "return_kind": learner.return_kind,
        **{f"mean_{k}": v for k, v in result.metrics.items()},
    }
