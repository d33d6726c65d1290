"""What LEED keeps during a run, in ``ctx.state["leed"]`` (never in globals: it mixes with other
methods, and two runs in one process share nothing). Everything here is in the checkpoint (plain
values and tensors, for ``weights_only`` loading); the demonstrations themselves are restored by the
core with ``ctx.demos``."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch

if TYPE_CHECKING:
    from guidedrl.context import RunContext

KEY = "leed"


@attrs.define(kw_only=True)
class LeedState:
    iteration: int = 0
    """Training iterations seen (collections that finished at least one episode)."""
    refinements: int = 0
    """Prompt-refinement rounds done (round 0, the first DG, not counted)."""
    last_refine_iteration: int = 0
    rounds: list[dict[str, Any]] = attrs.field(factory=list)
    """Per DG round: validity, demo return, cut plans, ... of the new answers and of the kept set."""
    best: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    """Per demonstration episode: the kept plan's ``validity``, ``team_return``, ``round``."""
    feedback: dict[int, str] = attrs.field(factory=dict)
    """Per demonstration episode: what went wrong with the kept plan (rejected items, cuts, travel times)."""
    similarity: dict[str, float] = attrs.field(factory=dict)
    weight: dict[str, float] = attrs.field(factory=dict)
    recent: dict[str, deque] = attrs.field(factory=dict)
    """Per agent: its most recent finished trajectories (observation sequences, float32)."""
    recent_returns: dict[str, deque] = attrs.field(factory=dict)
    demo_version: int = 0
    """Bumped when the demonstration set changes (the expert-loss sampler is rebuilt)."""
    sampler: Any = None
    gen: torch.Generator = attrs.field(factory=lambda: torch.Generator(device="cpu"))

    def push_trajectory(self, agent: str, obs: np.ndarray, ret: float, keep: int) -> None:
        self.recent.setdefault(agent, deque(maxlen=keep)).append(np.asarray(obs, dtype=np.float32).reshape(len(obs), -1))
        self.recent_returns.setdefault(agent, deque(maxlen=keep)).append(float(ret))

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration, "refinements": self.refinements,
            "last_refine_iteration": self.last_refine_iteration, "rounds": list(self.rounds),
            "best": {int(k): dict(v) for k, v in self.best.items()}, "feedback": dict(self.feedback),
            "similarity": dict(self.similarity), "weight": dict(self.weight),
            "recent": {a: [torch.from_numpy(np.ascontiguousarray(x)) for x in q] for a, q in self.recent.items()},
            "recent_returns": {a: list(q) for a, q in self.recent_returns.items()},
            "demo_version": self.demo_version, "gen": self.gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any], keep: int) -> None:
        self.iteration = int(state["iteration"])
        self.refinements = int(state["refinements"])
        self.last_refine_iteration = int(state["last_refine_iteration"])
        self.rounds = list(state["rounds"])
        self.best = {int(k): dict(v) for k, v in state["best"].items()}
        self.feedback = {int(k): str(v) for k, v in state["feedback"].items()}
        self.similarity = {str(k): float(v) for k, v in state["similarity"].items()}
        self.weight = {str(k): float(v) for k, v in state["weight"].items()}
        self.recent = {a: deque((t.numpy() for t in q), maxlen=keep) for a, q in state["recent"].items()}
        self.recent_returns = {a: deque(q, maxlen=keep) for a, q in state["recent_returns"].items()}
        self.demo_version = int(state["demo_version"])
        self.gen.set_state(state["gen"])
        self.sampler = None


def state_of(ctx: RunContext) -> LeedState:
    """LEED's state of this run, created on first use."""
    slot = ctx.state[KEY]
    if "run" not in slot:
        st = LeedState()
        st.gen.manual_seed(int(ctx.config.seed))
        slot["run"] = st
    return slot["run"]
