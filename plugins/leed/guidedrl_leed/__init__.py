"""LEED — "LLM-empowered expert demonstrations framework for multi-agent RL" (arXiv 2509.14680).

==========================================  ===============================  ==========================
LEED                                        hook                             module
==========================================  ===============================  ==========================
demonstration generation (DG)               ``generate_demonstrations``      :mod:`.demonstrations`
DG prompt refinement (+ the agents' own     ``identify_critical_states``     :mod:`.demonstrations`,
trajectories, their DTW similarity)         (returns ``None``)               :mod:`.optimisation`
policy optimisation (PO): expert loss       ``update_policy``                :mod:`.optimisation`
==========================================  ===============================  ==========================

Refinement runs from ``identify_critical_states`` because the epoch loop calls it once per
iteration between collection and update, with the finished episodes: exactly the agents' own recent
trajectories the refinement feedback and the similarity weights need, outside any gradient step.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import guidedrl
from guidedrl_leed import demonstrations, optimisation
from guidedrl_leed.config import LeedConfig
from guidedrl_leed.state import LeedState, state_of

if TYPE_CHECKING:
    from guidedrl.context import RunContext
    from guidedrl.types import Demonstrations, Episode, PolicyUpdate

log = logging.getLogger("guidedrl.leed")

__all__ = ["Leed", "LeedConfig", "demonstrations", "optimisation"]


class Leed:
    """LEED as a guidedrl method plugin (``--methods leed``). Its run state lives in ``ctx.state["leed"]``."""

    name = "leed"
    Config = LeedConfig

    def __init__(self, config: LeedConfig | None = None) -> None:
        self.config = config if config is not None else LeedConfig()
        self._state: LeedState | None = None  # the current run's state, for checkpoints only
        self._pending: dict[str, Any] | None = None

    def _st(self, ctx: RunContext) -> LeedState:
        st = state_of(ctx)
        if self._pending is not None:
            st.load_state_dict(self._pending, self.config.recent)
            self._pending = None
        self._state = st
        return st

    @guidedrl.hookimpl
    def generate_demonstrations(self, ctx: RunContext) -> list[Demonstrations]:
        """DG, round 0."""
        marl = getattr(ctx.config, "marl", None)
        if marl is not None and (marl.share_parameters or marl.centralized_critic):
            log.warning(
                "LEED trains decentralised in the paper (one PPO per agent, no centralised critic); this run has "
                "marl.share_parameters=%s, marl.centralized_critic=%s. For the paper's setting: --set "
                "marl.share_parameters=false --set marl.centralized_critic=false",
                marl.share_parameters, marl.centralized_critic,
            )
        return demonstrations.generate(ctx, self.config, self._st(ctx), name=self.name)

    @guidedrl.hookimpl
    def identify_critical_states(self, ctx: RunContext, episodes: list[Episode]) -> None:
        """Not critical states: one training iteration's finished episodes update the agents'
        similarity weights (PO) and, every ``refine_every`` iterations, DG refines its prompt."""
        st = self._st(ctx)
        st.iteration += 1
        optimisation.observe(ctx, self.config, st, episodes, name=self.name)
        demonstrations.refine(ctx, self.config, st, name=self.name)
        return None

    @guidedrl.hookimpl
    def update_policy(self, ctx: RunContext, batch: Any, algorithm: Any, agent: str | None) -> PolicyUpdate | None:
        """PO: the agent's similarity-weighted expert loss."""
        return optimisation.expert_loss(ctx, self.config, self._st(ctx), algorithm, agent, name=self.name)

    # checkpoints (the core saves these with checkpoint.pt; --resume restores them)
    def state_dict(self) -> dict[str, Any]:
        return self._state.state_dict() if self._state is not None else (self._pending or {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._pending = state
