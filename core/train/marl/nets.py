"""Decentralised actors, a centralised (or local) critic, and the Tianshou policy around the actors.

The networks read the flat sub-env observation of :class:`~guidedrl.train.marl.envs.ObsLayout`;
plugins reach the actors with each agent's own observation through ``policy.logits(obs, agent)`` and
``policy.log_prob(obs, act, agent)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy
from torch import nn

from guidedrl.train.marl.envs import ObsLayout


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, out_gain: float) -> nn.Sequential:
    """Tanh MLP with orthogonal init (gain sqrt 2 inside, ``out_gain`` on the output), as MAPPO's."""
    layers: list[nn.Module] = []
    last = in_dim
    for h in hidden:
        lin = nn.Linear(last, h)
        nn.init.orthogonal_(lin.weight, math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.Tanh()]
        last = h
    out = nn.Linear(last, out_dim)
    nn.init.orthogonal_(out.weight, out_gain)
    nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _tensor(x: Any, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32, device=device)


class MultiAgentActor(nn.Module):
    """Decentralised actors: logits from an agent's own observation.

    Shared (``share``): one network whose input is the own observation plus the one-hot id. Not
    shared: one network per agent. Actions beyond an agent's action space are masked out.
    ``forward`` takes the flat sub-env observation (Tianshou's actor interface).
    """

    def __init__(
        self, agents: Sequence[str], layout: ObsLayout, n_actions: Sequence[int], hidden: Sequence[int], share: bool
    ) -> None:
        super().__init__()
        self.agents = list(agents)
        self.n_agents = len(self.agents)
        self.layout = layout
        self.obs_dim = layout.obs_dim
        self.share = share
        self.n_actions = max(n_actions)
        mask = torch.zeros(self.n_agents, self.n_actions, dtype=torch.bool)
        for i, n in enumerate(n_actions):
            mask[i, n:] = True
        self.register_buffer("invalid", mask)
        if share:
            self.net = mlp(self.obs_dim + self.n_agents, hidden, self.n_actions, 0.01)
        else:
            self.nets = nn.ModuleList(mlp(self.obs_dim, hidden, self.n_actions, 0.01) for _ in self.agents)

    def index(self, agent: str | int) -> int:
        return agent if isinstance(agent, int) else self.agents.index(agent)

    def own_logits(self, own: torch.Tensor, agent_idx: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_actions)`` for own observations ``(B, obs_dim)`` of agents ``(B,)``."""
        if self.share:
            onehot = nn.functional.one_hot(agent_idx, self.n_agents).to(own.dtype)
            logits = self.net(torch.cat([own, onehot], dim=-1))
        else:
            logits = own.new_empty(own.shape[0], self.n_actions)
            for i, net in enumerate(self.nets):
                sel = agent_idx == i
                if bool(sel.any()):
                    logits[sel] = net(own[sel])
        return logits.masked_fill(self.invalid[agent_idx], -1e9)

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[torch.Tensor, Any]:
        x = _tensor(obs, _device(self))
        idx = x[:, self.layout.onehot].argmax(-1)
        return self.own_logits(x[:, self.layout.own], idx), state

    def logits(self, obs: Any, agent: str | int) -> torch.Tensor:
        """Logits of one agent for a batch of its own observations ``(B, obs_dim)``."""
        x = _tensor(obs, _device(self))
        idx = torch.full((x.shape[0],), self.index(agent), dtype=torch.long, device=x.device)
        return self.own_logits(x, idx)

    def log_prob(self, obs: Any, act: Any, agent: str | int) -> torch.Tensor:
        """``log π(act | obs)`` for one agent (what an imitation or expert loss needs)."""
        logp = torch.log_softmax(self.logits(obs, agent), dim=-1)
        a = torch.as_tensor(np.asarray(act) if not isinstance(act, torch.Tensor) else act, device=logp.device)
        return logp.gather(-1, a.long().view(-1, 1)).squeeze(-1)


class MultiAgentCritic(nn.Module):
    """``V(joint observation, agent id)`` (CTDE) or ``V(own observation, agent id)`` (IPPO), read from
    the flat sub-env observation."""

    def __init__(self, layout: ObsLayout, hidden: Sequence[int], centralized: bool) -> None:
        super().__init__()
        self.layout = layout
        self.centralized = centralized
        n, d = layout.n_agents, layout.obs_dim
        self.net = mlp((n * d if centralized else d) + n, hidden, 1, 1.0)

    def inputs(self, obs: torch.Tensor) -> torch.Tensor:
        lay = self.layout
        part = obs[:, lay.joint_part] if self.centralized else obs[:, lay.own]
        return torch.cat([part, obs[:, lay.onehot]], dim=-1)

    def forward(self, obs: Any, **_: Any) -> torch.Tensor:
        return self.net(self.inputs(_tensor(obs, _device(self)))).squeeze(-1)


def _categorical(logits: torch.Tensor) -> torch.distributions.Categorical:
    return torch.distributions.Categorical(logits=logits)


class MultiAgentPolicy(DiscreteActorPolicy):
    """Tianshou's discrete actor policy over :class:`MultiAgentActor`, with the per-agent calls plugins
    use: ``logits(obs, agent)``, ``log_prob(obs, act, agent)``, ``agents``, ``obs_dim``."""

    actor: MultiAgentActor

    def __init__(self, actor: MultiAgentActor, action_space: Any, deterministic_eval: bool = True) -> None:
        super().__init__(actor=actor, dist_fn=_categorical, deterministic_eval=deterministic_eval, action_space=action_space)

    @property
    def agents(self) -> list[str]:
        return self.actor.agents

    @property
    def obs_dim(self) -> int:
        return self.actor.obs_dim

    @property
    def n_agents(self) -> int:
        return self.actor.n_agents

    def logits(self, obs: Any, agent: str | int) -> torch.Tensor:
        return self.actor.logits(obs, agent)

    def log_prob(self, obs: Any, act: Any, agent: str | int) -> torch.Tensor:
        return self.actor.log_prob(obs, act, agent)

    @torch.no_grad()
    def act_dict(self, observations: dict[str, Any], *, deterministic: bool = True) -> dict[str, int]:
        """``{agent: action}`` for one env's observation dict (for scripts and benchmarks)."""
        out = {}
        for a in self.agents:
            if a in observations:
                o = np.zeros((1, self.obs_dim), dtype=np.float32)
                v = np.asarray(observations[a], dtype=np.float32).reshape(-1)
                o[0, : v.size] = v
                logits = self.logits(o, a)
                out[a] = int(logits.argmax(-1) if deterministic else _categorical(logits).sample())
        return out


__all__ = ["MultiAgentActor", "MultiAgentCritic", "MultiAgentPolicy", "mlp"]
