"""The simple_spread expert: an optimal assignment of agents to landmarks, then a move toward each one's.

Agents are matched to landmarks by :func:`scipy.optimize.linear_sum_assignment` on the agent-landmark
distances (the matching with the least total distance, so no landmark is left uncovered and no two
agents head for the same one); each agent then takes the discrete move along the larger gap to its
landmark, aiming half a step of velocity short (the particles coast: without the damping they
overshoot), and stays put once within ``arrive`` of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from guidedrl.envs import Expert


def assignment(state: dict[str, Any]) -> dict[int, int]:
    """Agent index → landmark index, with the least total distance."""
    pos = np.asarray([a["pos"] for a in state["agents"]], dtype=float)
    lms = np.asarray(state["landmarks"], dtype=float)
    cost = np.linalg.norm(pos[:, None, :] - lms[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return dict(zip(rows.tolist(), cols.tolist(), strict=True))


def move_toward(agent: dict[str, Any], target: Any, arrive: float = 0.05) -> int:
    """The discrete action (0 no-op, 1 left, 2 right, 3 down, 4 up) that moves ``agent`` to ``target``."""
    delta = np.asarray(target, dtype=float) - np.asarray(agent["pos"], dtype=float) - 0.5 * np.asarray(agent["vel"], dtype=float)
    if np.max(np.abs(delta)) < arrive:
        return 0
    if abs(delta[0]) >= abs(delta[1]):
        return 2 if delta[0] > 0 else 1
    return 4 if delta[1] > 0 else 3


class SpreadExpert(Expert):
    """Assignment (Hungarian method) + move toward the assigned landmark (see the module docstring)."""

    def __init__(self, *, arrive: float = 0.05) -> None:
        self.arrive = arrive

    def plan(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """One ``{"command": "MoveTo", "parameter": "Landmark_k", "agent": "Agent_i"}`` per agent."""
        goal = assignment(state)
        return [
            {"command": "MoveTo", "parameter": f"Landmark_{goal[i]}", "agent": "Agent_" + a["id"].split("_")[-1]}
            for i, a in enumerate(state["agents"]) if i in goal
        ]

    def act(self, state: dict[str, Any]) -> dict[str, int]:
        """Every agent's move toward its assigned landmark."""
        goal = assignment(state)
        return {
            a["id"]: move_toward(a, state["landmarks"][goal[i]], self.arrive) if i in goal else 0
            for i, a in enumerate(state["agents"])
        }
