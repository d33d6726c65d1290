"""Public building blocks for method plugins.

- :func:`imitation_loss`: the one imitation / expert loss. Every method that pulls a policy toward
  demonstrated or advised actions (pre-training on demonstrations, ULTRA's advice, LCIL's decaying
  regulariser, LEED's similarity-weighted expert loss, ACE's importance-weighted LLM transitions)
  calls it, so the loss is written once.
- The **bonus column** (:func:`set_bonus`, :func:`bonus_of`, :func:`env_reward`): every transition
  of a single-agent run's replay buffer carries its reward bonus in ``batch.policy.bonus``, and its
  stored ``rew`` is always *env reward + bonus*. The core fills the column once per transition, right
  after it is collected, with the summed ``shape_reward`` of the run's methods; every later target
  (PPO's GAE, DQN's and SAC's n-step returns) reads the shaped ``rew``, whichever neighbours a
  minibatch happens to sample. A method that re-assigns rewards later (ACE's critic) overwrites
  bonuses with :func:`set_bonus`.
- **Who advised a step** (:func:`advised_by`): the collector stores, next to ``batch.policy.advised``,
  the index in ``ctx.methods`` of the method whose ``refine_action`` advised it
  (``batch.policy.advised_by``, ``-1``: the policy's own action).
- :class:`~guidedrl.train.buffers.MixedReplayBuffer`: the agent's replay buffer and a second source
  (LLM-refined or demonstrated transitions), sampled at a fixed ratio with per-transition weights that
  reach the loss.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from tianshou.data import Batch


def imitation_loss(
    policy: Any,
    obs: Any,
    act: Any,
    *,
    agent: str | None = None,
    weights: Any = None,
    continuous: Literal["mse", "nll"] = "mse",
) -> torch.Tensor:
    """Behaviour-cloning loss of ``policy`` toward env-space actions ``act`` at observations ``obs``.

    - discrete actions: negative log-likelihood of ``act`` (cross-entropy with the policy's logits;
      DQN: with the Q-values as logits);
    - continuous actions: ``continuous="mse"`` (default) — squared error between the policy's mean
      action (SAC: the squashed mean) and ``act`` mapped into the policy's action range; ``"nll"`` —
      negative log-likelihood under the policy's distribution (it also shrinks the learnt standard
      deviation toward the imitation error, which stops PPO's exploration on Hopper);
    - ``agent``: a multi-agent policy (``policy.logits(obs, agent)``) is cloned for that agent;
    - ``weights``: optional per-sample weights, shape ``(len(act),)`` (LEED's similarity weights,
      ACE's importance weights); the loss is their weighted mean.

    Returns a scalar tensor on the policy's device.
    """
    from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
    from tianshou.algorithm.modelfree.sac import SACPolicy
    from tianshou.data import Batch

    if agent is not None:
        obs_t = _tensor(obs, policy)
        pad = getattr(policy, "obs_dim", obs_t.shape[-1]) - obs_t.shape[-1]
        if pad > 0:  # agents with smaller observations are zero-padded to the shared width
            obs_t = torch.nn.functional.pad(obs_t, (0, pad))
        logits = policy.logits(obs_t, agent)
        target = torch.as_tensor(np.asarray(act) if not isinstance(act, torch.Tensor) else act, device=logits.device)
        per_sample = torch.nn.functional.cross_entropy(logits, target.long().reshape(-1), reduction="none")
        return _weighted_mean(per_sample, weights)
    obs = np.asarray(obs)
    act = np.asarray(act)
    if isinstance(policy, DiscreteQLearningPolicy):
        logits = policy(Batch(obs=obs, info={})).logits
        target = torch.as_tensor(act, dtype=torch.long, device=logits.device).reshape(-1)
        return _weighted_mean(torch.nn.functional.cross_entropy(logits, target, reduction="none"), weights)
    continuous_actions = getattr(policy, "action_type", None) == "continuous"
    raw = policy.map_action_inverse(act) if continuous_actions else act
    if isinstance(policy, SACPolicy):
        (loc, _scale), _ = policy.actor(obs)
        target = torch.as_tensor(np.asarray(raw), dtype=torch.float32, device=loc.device).clamp(-0.999, 0.999)
        return _weighted_mean((torch.tanh(loc) - target).pow(2).mean(-1), weights)
    dist = policy(Batch(obs=obs, info={})).dist
    device = dist.mean.device if hasattr(dist, "mean") else None
    if not continuous_actions:
        target = torch.as_tensor(np.asarray(raw), device=device).long().reshape(-1)
        return _weighted_mean(-dist.log_prob(target), weights)
    target = torch.as_tensor(np.asarray(raw), dtype=torch.float32, device=device)
    if continuous == "mse":
        return _weighted_mean((dist.mean - target).pow(2).mean(-1), weights)
    return _weighted_mean(-dist.log_prob(target), weights)


def _tensor(x: Any, policy: Any) -> torch.Tensor:
    device = next(iter(policy.parameters())).device if hasattr(policy, "parameters") else None
    return torch.as_tensor(x, dtype=torch.float32, device=device)


def _weighted_mean(per_sample: torch.Tensor, weights: Any) -> torch.Tensor:
    if weights is None:
        return per_sample.mean()
    w = torch.as_tensor(np.asarray(weights) if not isinstance(weights, torch.Tensor) else weights,
                        dtype=per_sample.dtype, device=per_sample.device).reshape(-1)
    if w.shape != per_sample.shape:
        raise ValueError(f"imitation_loss: {w.numel()} weights for {per_sample.numel()} samples; give one weight per sample")
    return (per_sample * w).sum() / w.sum().clamp(min=1e-8)


# -- the bonus column ------------------------------------------------------------------------------

BONUS_KEY = "bonus"
"""Key under ``batch.policy`` of the reward bonus (the replay buffer keeps ``policy``, not extra
top-level keys)."""
ADVISED_BY_KEY = "advised_by"
"""Key under ``batch.policy`` of the advising method's index in ``ctx.methods`` (-1: none)."""


def bonus_of(batch: Any) -> np.ndarray:
    """The reward bonus of each transition of ``batch`` (a buffer slice or a sampled batch); zeros
    where the batch has no bonus column (e.g. data that never went through a guided collector)."""
    policy = batch.get("policy", None) if hasattr(batch, "get") else None
    bonus = policy.get(BONUS_KEY, None) if policy is not None and hasattr(policy, "get") else None
    if bonus is None:
        return np.zeros(len(batch), dtype=np.float64)
    return np.asarray(bonus, dtype=np.float64).reshape(-1)


def env_reward(batch: Any) -> np.ndarray:
    """The env's own reward of each transition: the stored (shaped) ``rew`` minus its bonus."""
    return np.asarray(batch.rew, dtype=np.float64).reshape(-1) - bonus_of(batch)


def set_bonus(buffer: Any, indices: Any, values: Any) -> None:
    """Set (overwrite) the reward bonus of the transitions at ``indices`` of a Tianshou replay buffer.

    ``rew`` at those indices becomes env reward + ``values`` (the previous bonus is taken out first),
    so every later target uses the new bonus; ``values`` is one number or one per index. Indices are
    the buffer's own (what ``buffer.sample`` returns, or ``collector.new_indices``). The buffer must
    hold the bonus column, i.e. be filled by the training collector (:class:`GuidedCollector`).

    Example (ACE re-assigning the rewards of one finished trajectory)::

        from guidedrl import guidance
        guidance.set_bonus(buffer, episode_indices, critic_rewards - guidance.env_reward(buffer[episode_indices]))
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    values = np.broadcast_to(np.asarray(values, dtype=np.float64), indices.shape)
    if not np.isfinite(values).all():
        raise ValueError("set_bonus: bonuses must be finite")
    policy = getattr(buffer, "policy", None)
    if not isinstance(policy, Batch) or BONUS_KEY not in policy.get_keys():
        raise ValueError("set_bonus: this buffer has no bonus column (batch.policy.bonus); fill it with guidedrl's training collector")
    if len(set(indices.tolist())) != len(indices):
        raise ValueError("set_bonus: indices must be distinct")
    old = np.asarray(policy.bonus[indices], dtype=np.float64)
    rew = buffer.rew
    rew[indices] = (np.asarray(rew[indices], dtype=np.float64) - old + values).astype(rew.dtype)
    policy.bonus[indices] = values.astype(policy.bonus.dtype)


# -- who advised a step ----------------------------------------------------------------------------


def advised_by(ctx: Any, batch: Any, method: str) -> np.ndarray:
    """Boolean mask: which transitions of ``batch`` were advised by ``method``'s ``refine_action``
    (as opposed to another method's advice or the policy's own action). All ``False`` when the batch
    has no advice record or ``method`` is not one of the run's methods."""
    policy = batch.get("policy", None) if hasattr(batch, "get") else None
    codes = policy.get(ADVISED_BY_KEY, None) if policy is not None and hasattr(policy, "get") else None
    if codes is None or method not in ctx.methods:
        return np.zeros(len(batch), dtype=bool)
    return np.asarray(codes).reshape(-1) == ctx.methods.index(method)


def advising_method_code(ctx: Any, name: str | None) -> int:
    """The code stored in ``batch.policy.advised_by`` for advice from plugin ``name``: its index in
    ``ctx.methods`` (which also lists plugins a run was given directly), ``-1`` for no advice."""
    if name is None:
        return -1
    methods = ctx.methods
    return methods.index(name) if name in methods else len(methods)


def __getattr__(name: str) -> Any:  # the buffer class imports tianshou; only load it when asked for
    if name == "MixedReplayBuffer":
        from guidedrl.train.buffers import MixedReplayBuffer

        return MixedReplayBuffer
    raise AttributeError(name)


__all__ = [
    "ADVISED_BY_KEY",
    "BONUS_KEY",
    "MixedReplayBuffer",
    "advised_by",
    "bonus_of",
    "env_reward",
    "imitation_loss",
    "set_bonus",
]
