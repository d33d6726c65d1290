"""What ACE keeps during a run, in ``ctx.state["ace"]`` (never in globals: it mixes with other methods
and two runs in one process share nothing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from guidedrl.context import RunContext

KEY = "ace"


@attrs.define(kw_only=True)
class AceState:
    """ACE's run state: LLM calls spent by each role (for the budgets) and the fine-tuning exchanges."""

    actor_calls: int = 0
    """LLM calls the actor made."""
    critic_calls: int = 0
    """Trajectories the critic read."""
    exported: int = 0
    """Exchanges appended to the fine-tuning file."""

    def state_dict(self) -> dict[str, Any]:
        return {"actor_calls": self.actor_calls, "critic_calls": self.critic_calls, "exported": self.exported}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor_calls = int(state.get("actor_calls", 0))
        self.critic_calls = int(state.get("critic_calls", 0))
        self.exported = int(state.get("exported", 0))


def state_of(ctx: RunContext) -> AceState:
    """ACE's state of this run, created on first use."""
    slot = ctx.state[KEY]
    if "run" not in slot:
        slot["run"] = AceState()
    return slot["run"]
