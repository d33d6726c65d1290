"""Phase 2 — offline supervised imitation with centralised training, decentralised execution.

The demonstrations of phase 1 ask the multi-agent runner for ``imitation_steps`` steps of offline
imitation (``meta["pretrain_steps"]``; an explicit ``pretrain.steps`` wins). There, every
decentralised actor is cloned on its own agent's (local observation, action) pairs, and the
centralised critic — which sees the joint observation — is fitted to the demonstrations' discounted
returns, so phase 3 starts from the cloned actors *and* a critic that already knows their value.

This module holds the imitation loss itself, used again in phase 3 as a decaying regulariser.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from guidedrl import guidance
from guidedrl.types import Demonstrations


class DemoSampler:
    """Per-agent demonstration tensors on the policy's device, sampled in minibatches."""

    def __init__(self, demos: list[Demonstrations], *, source: str, device: torch.device, seed: int = 0) -> None:
        self.obs: dict[str, torch.Tensor] = {}
        self.act: dict[str, torch.Tensor] = {}
        for d in demos:
            if d.source != source or d.agent is None:
                continue
            o = torch.as_tensor(np.asarray(d.obs, dtype=np.float32).reshape(len(d), -1), device=device)
            a = torch.as_tensor(np.asarray(d.act, dtype=np.int64).reshape(-1), device=device)
            if d.agent in self.obs:
                o, a = torch.cat([self.obs[d.agent], o]), torch.cat([self.act[d.agent], a])
            self.obs[d.agent], self.act[d.agent] = o, a
        self.gen = torch.Generator(device="cpu").manual_seed(seed)

    def __contains__(self, agent: str) -> bool:
        return agent in self.obs

    def sample(self, agent: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        size = len(self.act[agent])
        idx = torch.randint(0, size, (min(n, size),), generator=self.gen).to(self.act[agent].device)
        return self.obs[agent][idx], self.act[agent][idx]


def imitation_loss(policy: Any, obs: torch.Tensor, act: torch.Tensor, agent: str) -> torch.Tensor:
    """Cross-entropy of the agent's actor against the demonstrated actions (behaviour cloning)."""
    return guidance.imitation_loss(policy, obs, act, agent=agent)
