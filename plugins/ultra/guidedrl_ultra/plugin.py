"""The ``ultra`` method: the three phases of ULTRA wired to guidedrl's hooks.

=====================================  ==============================  ========================
ULTRA (Tan, Yan, Yang 2025)            hook                            module
=====================================  ==============================  ========================
critical state identification          ``identify_critical_states``    :mod:`.identification`
policy improvement (A: action)         ``refine_action``               :mod:`.improvement`
policy improvement (R: implicit rew.)  ``shape_reward``                :mod:`.improvement`
further updates on the new data        ``update_policy``               :mod:`.update`
=====================================  ==============================  ========================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

import guidedrl
from guidedrl.types import ActionAdvice, CriticalState, Episode, PolicyUpdate
from guidedrl_ultra import identification, improvement, update
from guidedrl_ultra.config import UltraConfig
from guidedrl_ultra.state import UltraState, state_of

if TYPE_CHECKING:
    from guidedrl.context import RunContext


class Ultra:
    """ULTRA as a guidedrl method plugin. Its run state lives in ``ctx.state["ultra"]``."""

    Config = UltraConfig
    requires = ("describe", "action_vocabulary")
    """Checked at start-up (guidedrl.envs.check_adapter): ULTRA describes states and parses actions."""

    def __init__(self, config: UltraConfig | None = None) -> None:
        self.config = config if config is not None else UltraConfig()
        self._state: UltraState | None = None  # the current run's state, for checkpoints only
        self._pending: dict[str, Any] | None = None

    def _st(self, ctx: RunContext) -> UltraState:
        st = state_of(ctx, self.config)
        if self._pending is not None:
            st.load_state_dict(self._pending)
            self._pending = None
        self._state = st
        return st

    @guidedrl.hookimpl
    def identify_critical_states(self, ctx: RunContext, episodes: list[Episode]) -> list[CriticalState] | None:
        return identification.identify(ctx, self.config, self._st(ctx), episodes)

    @guidedrl.hookimpl
    def refine_action(self, ctx: RunContext, obs: np.ndarray, act: np.ndarray) -> ActionAdvice | None:
        return improvement.refine_action(ctx, self.config, self._st(ctx), obs, act)

    @guidedrl.hookimpl
    def shape_reward(self, ctx: RunContext, batch: Any) -> np.ndarray | None:
        return improvement.shape_reward(ctx, self.config, self._st(ctx), batch)

    @guidedrl.hookimpl
    def update_policy(self, ctx: RunContext, batch: Any, algorithm: Any) -> PolicyUpdate | None:
        return update.update_policy(ctx, self.config, self._st(ctx), batch, algorithm)

    # checkpoints (the core saves these with the run's checkpoint.pt; --resume restores them)
    def state_dict(self) -> dict[str, Any]:
        return self._state.state_dict() if self._state is not None else (self._pending or {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._pending = state
