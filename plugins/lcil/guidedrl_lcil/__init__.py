"""LCIL — language-conditioned imitation learning for multi-agent industrial digital twins.

Fan et al., "A unified framework for LLM-guided RL in digital twin industrial environments" (RCIM
2026). Three phases, one module each:

1. :mod:`guidedrl_lcil.demonstrations` — the LLM proposes per-agent assignments with explicit
   conflict resolution (:mod:`guidedrl_lcil.coordination`), conditioned on a rolling coordination
   history; the plans are executed offline to collect per-agent demonstrations;
2. :mod:`guidedrl_lcil.imitation` — offline supervised imitation with CTDE (the multi-agent runner's
   pre-training stage: decentralised actors cloned, centralised critic fitted to returns);
3. :mod:`guidedrl_lcil.finetune` — lightweight MAPPO fine-tuning with the centralised critic, from
   the cloned actors, with a decaying imitation term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

import guidedrl
from guidedrl_lcil import coordination, demonstrations, finetune, imitation
from guidedrl_lcil.demonstrations import LCIL_REQUIRES

if TYPE_CHECKING:
    from guidedrl.context import RunContext
    from guidedrl.types import Demonstrations, PolicyUpdate

__all__ = ["LCIL", "coordination", "demonstrations", "finetune", "imitation"]

_pos = attrs.validators.gt(0)
_nonneg = attrs.validators.ge(0)


class LCIL:
    """The LCIL method plugin (``--methods lcil``)."""

    name = "lcil"
    requires = LCIL_REQUIRES
    """Checked at start-up (guidedrl.envs.check_adapter): LCIL describes states and executes plans."""

    @attrs.frozen(kw_only=True)
    class Config:
        """Settings of LCIL (TOML table ``[lcil]``)."""

        episodes: int = attrs.field(default=20, validator=_pos)
        """Phase 1: LLM-coordinated demonstration episodes."""
        replan_every: int = attrs.field(default=1, validator=_pos)
        """Phase 1: env steps between LLM plans (a plan stays in force until the next)."""
        history: int = attrs.field(default=5, validator=_nonneg)
        """Phase 1: past plans (with repairs and outcomes) in the rolling coordination history."""
        max_repair_frac: float = attrs.field(default=0.5, validator=_nonneg)
        """Phase 1: a plan needing more repairs than this fraction of the agents is rejected."""
        seed_offset: int = attrs.field(default=50_000, validator=_nonneg)
        """Phase 1: demonstration episodes use reset seeds ``seed_offset + 1000·seed + k`` (apart
        from the runner's training and test seeds)."""
        imitation_steps: int = attrs.field(default=3000, validator=_nonneg)
        """Phase 2: offline imitation gradient steps (``pretrain.steps`` > 0 overrides it)."""
        bc_coef: float = attrs.field(default=0.5, validator=_nonneg)
        """Phase 3: initial weight of the imitation term in every agent's update (0: none)."""
        bc_decay_steps: float = attrs.field(default=20_000.0, validator=_pos)
        """Phase 3: online env steps over which the imitation weight falls by a factor e."""
        bc_min: float = attrs.field(default=0.0, validator=_nonneg)
        """Phase 3: floor of the imitation weight."""
        bc_batch: int = attrs.field(default=256, validator=_pos)
        """Phase 3: demonstration transitions per agent per optimiser step."""

    def __init__(self, config: LCIL.Config | None = None) -> None:
        self.config = config or LCIL.Config()

    @guidedrl.hookimpl
    def generate_demonstrations(self, ctx: RunContext) -> list[Demonstrations]:
        """Phase 1 (and the request for phase 2's offline imitation)."""
        return demonstrations.collect_demonstrations(ctx, self)

    @guidedrl.hookimpl
    def update_policy(self, ctx: RunContext, batch: Any, algorithm: Any, agent: str | None) -> PolicyUpdate | None:
        """Phase 3: the decaying imitation term."""
        return finetune.regularise(ctx, algorithm, agent, name=self.name, cfg=self.config)
