"""Public building blocks for method plugins: the one imitation / expert loss.

Every method that pulls a policy toward demonstrated or advised actions (pre-training on
demonstrations, ULTRA's advice, LCIL's decaying regulariser, LEED's similarity-weighted expert loss,
ACE's importance-weighted LLM transitions) calls :func:`imitation_loss`, so the loss is written once.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch


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


__all__ = ["imitation_loss"]
