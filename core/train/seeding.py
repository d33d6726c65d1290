"""Random state a checkpoint carries, so that a resumed run reproduces the uninterrupted one.

Two parts (docs/faults.md, "Resume reproduces the uninterrupted run"):

- **Generators**: torch's CPU generator, numpy's global one (Tianshou shuffles minibatches and DQN
  explores with it), Python's ``random`` and the run context's ``ctx.rng`` are saved with every
  checkpoint and restored on resume, as plain tensors, numbers and a JSON string (the checkpoint is
  loaded with ``weights_only=True``, which refuses arbitrary objects).
- **Environments**: an env's mid-episode state cannot be saved in general (simulators, subprocess
  and Ray workers, C extensions), so every run restarts its training episodes at each epoch boundary
  (right after the checkpoint) with seeds derived from ``(seed, env_steps)``: the uninterrupted run
  and a run resumed from that checkpoint continue from the same env states.

CUDA generators are not saved: on GPU the reproduction is not exact (nor is it between two fresh GPU
runs, whose kernels are not deterministic).
"""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from guidedrl.context import RunContext


def rng_state(ctx: RunContext) -> dict[str, Any]:
    """Every generator the training loop draws from, in a form ``torch.load(weights_only=True)`` reads."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    plain = {
        "numpy": {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(py_state), "gauss": py_gauss},
        "ctx": ctx.rng.bit_generator.state,
    }
    return {"torch": torch.get_rng_state(), "plain": json.dumps(plain)}


def restore_rng_state(ctx: RunContext, state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    plain = json.loads(state["plain"])
    n = plain["numpy"]
    np.random.set_state((n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = plain["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    ctx.rng.bit_generator.state = plain["ctx"]


def episode_seeds(seed: int, env_steps: int, n: int) -> list[int]:
    """Seeds for ``n`` training envs whose episodes restart at ``env_steps`` (distinct per env and
    per boundary, the same in every run with this ``seed``)."""
    return [int(s) for s in np.random.SeedSequence([seed, env_steps]).generate_state(n)]
