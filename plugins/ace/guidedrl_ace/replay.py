"""Mixed replay (ACE §replay): D_RL and D_LLM sampled at ratio β, with a reward-based importance
weight that both prioritises sampling and weights the policy loss.

The buffer is the core's :class:`~guidedrl.train.buffers.MixedReplayBuffer` (Tianshou's buffer
manager with a second source); its ``batch.weight`` reaches SAC's critic losses the way Tianshou's
prioritized replay does. SAC's actor loss does not read ``batch.weight``, so the policy side gets an
importance-weighted imitation term toward the LLM's actions (``guidance.imitation_loss``) on the D_LLM
rows of each batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tianshou.data import Batch

from guidedrl import guidance
from guidedrl.types import PolicyUpdate
from guidedrl_ace.config import AceConfig

if TYPE_CHECKING:
    from guidedrl.context import RunContext

METHOD = "ace"


def make_buffer(ctx: RunContext, config: AceConfig, size: int, num_envs: int) -> Any:
    """The run's replay buffer: D_RL (one sub-buffer per env) + D_LLM at ratio ``config.beta``."""
    from guidedrl.train.buffers import MixedReplayBuffer

    buffer = MixedReplayBuffer(
        size, num_envs, config.llm_buffer_size, ratio=config.beta, alpha=config.alpha or None, beta=ctx.config.replay.beta
    )
    ctx.counters[f"{METHOD}/beta"] = config.beta
    return buffer


def importance_weight(config: AceConfig, r_llm: float, r_executed: float) -> float:
    """``clip(1 + weight_scale * (r_llm - r_executed), 1, max_weight)``: how much better the LLM's
    action did than the executed one, in the simulator."""
    return float(np.clip(1.0 + config.weight_scale * (r_llm - r_executed), 1.0, config.max_weight))


def add_llm_transitions(ctx: RunContext, config: AceConfig, rows: list[dict[str, Any]]) -> int:
    """Put checked transitions (``obs, act, rew, obs_next, weight``) into D_LLM: each is its own
    one-step trajectory (truncated, so its target bootstraps from ``obs_next``), marked as advised by
    ACE; its importance weight is both its loss weight and its sampling priority. Returns how many."""
    buffer = ctx.replay
    if not rows or buffer is None or not hasattr(buffer, "add_second"):
        return 0
    n = len(rows)
    code = guidance.advising_method_code(ctx, METHOD)
    batch = Batch(
        obs=np.stack([np.asarray(r["obs"]) for r in rows]),
        act=np.asarray([r["act"] for r in rows]),
        rew=np.asarray([r["rew"] for r in rows], dtype=np.float64),
        obs_next=np.stack([np.asarray(r["obs_next"]) for r in rows]),
        terminated=np.zeros(n, dtype=bool),
        truncated=np.ones(n, dtype=bool),
        policy=Batch(
            advised=np.ones(n, dtype=bool),
            **{guidance.ADVISED_BY_KEY: np.full(n, code, dtype=np.int64), guidance.BONUS_KEY: np.zeros(n)},
        ),
    )
    weights = np.asarray([r["weight"] for r in rows], dtype=np.float64)
    indices = buffer.add_second(batch, weight=weights)
    buffer.set_priority(indices, weights * buffer.max_priority)  # new rows' priority, scaled by w
    ctx.counters[f"{METHOD}/llm_transitions"] += n
    return n


def policy_loss(ctx: RunContext, config: AceConfig, batch: Any, algorithm: Any) -> PolicyUpdate | None:
    """Importance-weighted imitation of the LLM's actions on the batch's D_LLM rows."""
    if config.imitation_coef <= 0:
        return None
    rows = guidance.advised_by(ctx, batch, METHOD)
    if not rows.any():
        return None
    weight = batch.get("sample_weight", None)
    w = np.ones(len(batch)) if weight is None else np.asarray(_numpy(weight), dtype=np.float64).reshape(-1)
    loss = guidance.imitation_loss(algorithm.policy, batch.obs[rows], batch.act[rows], weights=w[rows])
    return PolicyUpdate(
        losses={"llm_imitation": config.imitation_coef * loss},
        stats={"llm_rows": float(rows.sum()), "llm_weight": float(w[rows].mean())},
    )


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
