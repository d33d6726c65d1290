"""Values that travel through the hooks. Kept small and explicit so plugins can build them by hand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

if TYPE_CHECKING:  # only an annotation here: importing the hook values must not pull torch
    import torch


@attrs.frozen(kw_only=True)
class Episode:
    """One finished episode (or a chunk of one) from a training or evaluation rollout.

    Arrays are aligned on the time axis: ``obs[t]`` was seen, ``act[t]`` taken, ``rew[t]`` received.
    """

    obs: np.ndarray
    """Observations, shape ``(T, *obs_shape)``."""
    act: np.ndarray
    """Executed actions, shape ``(T, *act_shape)``."""
    rew: np.ndarray
    """Environment rewards, shape ``(T,)``."""
    obs_next: np.ndarray | None = None
    """Next observations, shape ``(T, *obs_shape)``, when known."""
    terminated: bool = False
    """Whether the episode ended in a terminal state (rather than being truncated or cut)."""
    infos: list[dict[str, Any]] | None = None
    """Per-step ``info`` dicts where the collector kept them."""
    env_id: int = 0
    """Index of the vectorised environment the episode came from."""
    start_step: int = 0
    """Global env step at which the episode began (for bookkeeping and logs)."""
    seed: int | None = None
    """Reset seed that reproduces the episode, when known."""
    agent: str | None = None
    """For multi-agent runs: the agent whose trajectory this is (``None``: single-agent)."""
    indices: np.ndarray | None = None
    """Where each step was written in the run's replay buffer (single-agent training episodes), e.g.
    for :func:`guidedrl.guidance.set_bonus`; ``None`` where unknown. Off-policy buffers keep them until
    they wrap around (check ``buffer.obs[indices]`` before writing); on-policy buffers are emptied after
    every update, so there they go stale."""

    def __len__(self) -> int:
        return len(self.rew)

    @property
    def ret(self) -> float:
        """Undiscounted return."""
        return float(np.sum(self.rew))


@attrs.frozen(kw_only=True)
class CriticalState:
    """A timestep where the action strongly changes the future return (ULTRA's *critical state*)."""

    episode: int
    """Index of the episode in the list passed to ``identify_critical_states``."""
    t: int
    """Timestep inside that episode."""
    obs: np.ndarray
    """The observation at that timestep (so later rollouts can recognise the state)."""
    score: float = 1.0
    """How critical, in [0, 1]; merged across plugins by taking the max."""
    reason: str = ""
    """Why, in words (an LLM's explanation or a heuristic's name)."""
    source: str = ""
    """Name of the plugin that identified it; filled in by the core."""
    action: Any = None
    """A suggested better action at this state, when the identifier also proposes one."""
    reward: float | None = None
    """An implicit reward for this state, when the identifier also assigns one."""


@attrs.frozen(kw_only=True)
class ActionAdvice:
    """Replacement actions from ``refine_action`` for a vectorised step."""

    act: np.ndarray
    """Actions for every env in the step (unadvised entries are ignored)."""
    mask: np.ndarray
    """Boolean, shape ``(n_envs,)``: which envs take the advised action."""
    source: str = ""
    """Name of the advising plugin; filled in by the core."""


@attrs.frozen(kw_only=True)
class Demonstrations:
    """Expert trajectories from ``generate_demonstrations``, in the env's own (obs, act, rew) format."""

    obs: np.ndarray
    act: np.ndarray
    rew: np.ndarray
    obs_next: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    source: str = ""
    """Name of the generating plugin; filled in by the core."""
    agent: str | None = None
    """For multi-agent runs: the agent these transitions belong to (``None``: single-agent)."""
    meta: dict[str, Any] = attrs.field(factory=dict)
    """Provenance: prompts, plan ids, LLM backend, number of rejected plans, ..."""

    def __len__(self) -> int:
        return len(self.rew)


@attrs.frozen(kw_only=True)
class PolicyUpdate:
    """What ``update_policy`` adds to an update: loss terms and/or stats."""

    losses: dict[str, torch.Tensor] = attrs.field(factory=dict)
    """Scalar tensors added to the algorithm's loss (summed). Names appear under ``methods/<name>/``."""
    stats: dict[str, float] = attrs.field(factory=dict)
    """Numbers logged under ``methods/<name>/``."""
