"""The ``ace`` method: ACE's roles wired to guidedrl's hooks.

==============================================  ============================  ===================
ACE (Wan et al., ICML 2025)                     where                         module
==============================================  ============================  ===================
LLM as policy actor (bad-case, multi-round)     ``identify_critical_states``  :mod:`.actor`
LLM as value critic (key-step reassignment)     ``identify_critical_states``  :mod:`.critic`
mixed replay D_RL + D_LLM at β, weights         ``replay_buffer``,            :mod:`.replay`
                                                ``update_policy``
fine-tuning data (chat JSONL)                   written as exchanges pass     :mod:`.finetune`
==============================================  ============================  ===================

Both LLM roles run between collection and update on the episodes that just finished (the core calls
``identify_critical_states`` with them), never inside a gradient step. ACE marks no critical states
itself (it returns ``None``), so it mixes with a method that does (ULTRA).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import guidedrl
from guidedrl.errors import ConfigError
from guidedrl.types import CriticalState, Episode, PolicyUpdate
from guidedrl_ace import actor, critic, replay
from guidedrl_ace.config import AceConfig
from guidedrl_ace.state import AceState, state_of

if TYPE_CHECKING:
    from guidedrl.context import RunContext


class Ace:
    """ACE as a guidedrl method plugin. Its run state lives in ``ctx.state["ace"]``."""

    Config = AceConfig
    requires = ("describe", "action_vocabulary", "simulate")
    """What ACE needs of the env adapter (checked at start-up by the core's ``check_adapter`` where it
    has one): states in words and JSON, a vocabulary to parse answers, a simulator for the actor."""

    def __init__(self, config: AceConfig | None = None) -> None:
        self.config = config if config is not None else AceConfig()
        self._state: AceState | None = None
        self._pending: dict[str, Any] | None = None

    def _st(self, ctx: RunContext) -> AceState:
        st = state_of(ctx)
        if self._pending is not None:
            st.load_state_dict(self._pending)
            self._pending = None
        self._state = st
        return st

    # the core asks a run's methods for its replay buffer (off-policy single-agent runs)
    def replay_buffer(self, ctx: RunContext, size: int, num_envs: int) -> Any:
        ctx.require_adapter("ace")
        self._st(ctx)
        return replay.make_buffer(ctx, self.config, size, num_envs)

    @guidedrl.hookimpl
    def identify_critical_states(self, ctx: RunContext, episodes: list[Episode]) -> list[CriticalState] | None:
        st = self._st(ctx)
        if not hasattr(ctx.replay, "add_second"):
            raise ConfigError(
                "method 'ace' trains an off-policy learner from a mixed replay (D_RL + D_LLM); run it with "
                "--algo sac (discrete SAC) on a single-agent env"
            )
        actor.refine(ctx, self.config, st, episodes)
        critic.reassign(ctx, self.config, st, episodes)
        return None

    @guidedrl.hookimpl
    def update_policy(self, ctx: RunContext, batch: Any, algorithm: Any) -> PolicyUpdate | None:
        return replay.policy_loss(ctx, self.config, batch, algorithm)

    # checkpoints (the core saves these with the run's checkpoint.pt; --resume restores them)
    def state_dict(self) -> dict[str, Any]:
        return self._state.state_dict() if self._state is not None else (self._pending or {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._pending = state
