"""Phase 3 — lightweight multi-agent PPO fine-tuning of the cloned actors.

The fine-tuning itself is the multi-agent runner's RL phase (MAPPO with the centralised critic,
``marl.centralized_critic = true``) for a small ``steps`` budget, starting from the actors of
phase 2. LCIL adds one thing: an imitation term on the demonstrations, weighted by

    c(t) = max(bc_min, bc_coef · exp(−t / bc_decay_steps)),   t = online env steps,

so the policy is held near the demonstrated coordination early on (when the advantages are still
noisy) and is free to improve on it later (cf. LLM4Teach's decaying teacher loss).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from guidedrl.types import PolicyUpdate
from guidedrl_lcil.imitation import DemoSampler, imitation_loss

if TYPE_CHECKING:
    from guidedrl.context import RunContext


def bc_weight(env_steps: int, *, coef: float, decay_steps: float, floor: float) -> float:
    """The imitation weight after ``env_steps`` online steps."""
    if coef <= 0:
        return 0.0
    return max(floor, coef * math.exp(-env_steps / decay_steps)) if decay_steps > 0 else coef


def regularise(ctx: RunContext, algorithm: Any, agent: str | None, *, name: str, cfg: Any) -> PolicyUpdate | None:
    """The decaying imitation term for one agent's update (``None`` when it does not apply)."""
    if agent is None or cfg.bc_coef <= 0:
        return None
    state = ctx.state[name]
    sampler = state.get("sampler")
    if sampler is None:
        sampler = DemoSampler(ctx.demos, source=name, device=ctx.device, seed=ctx.config.seed)
        state["sampler"] = sampler
    if agent not in sampler:
        return None
    w = bc_weight(ctx.env_steps, coef=cfg.bc_coef, decay_steps=cfg.bc_decay_steps, floor=cfg.bc_min)
    if w <= 0:
        return None
    obs, act = sampler.sample(agent, cfg.bc_batch)
    loss = imitation_loss(algorithm.policy, obs, act, agent)
    return PolicyUpdate(losses={"imitation": w * loss}, stats={"bc_weight": w})
