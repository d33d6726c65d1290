"""Toy adapters for testing LLM backends and method plugins without a real environment.

``Corridor-v0``: walk along a corridor of ``length`` cells to a goal cell (actions left, stay,
right), with an exact expert. ``TeamCorridor-v0``: the multi-agent version, planned with
``goto``/``wait`` instructions and a ``validate_plan`` that rejects illegal items with a reason.
Both are what LangChain's fake chat models are to LangChain: small, exact and fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from guidedrl.envs import (
    Description,
    DiscreteActions,
    EnvAdapter,
    Expert,
    InvalidAction,
    MultiAgentEnvAdapter,
)


class CorridorEnv(gym.Env):
    """Position and goal on a line of ``length`` cells; reward 1 on reaching the goal."""

    def __init__(self, length: int = 10, goal: int = 7, max_steps: int = 50) -> None:
        self.length, self.goal, self.max_steps = length, goal, max_steps
        self.observation_space = gym.spaces.Box(0, length - 1, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.pos = 0
        self.t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos = int(self.np_random.integers(self.length))
        self.t = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.pos = int(np.clip(self.pos + int(action) - 1, 0, self.length - 1))
        self.t += 1
        done = self.pos == self.goal
        return self._obs(), float(done), done, self.t >= self.max_steps, {}

    def _obs(self) -> np.ndarray:
        return np.array([self.pos, self.goal], dtype=np.float32)


class CorridorExpert(Expert):
    def act(self, state: dict[str, Any]) -> int:
        return int(np.sign(state["goal"] - state["position"])) + 1

    def importance(self, state: dict[str, Any]) -> float:
        return 1.0 if state["position"] != state["goal"] else 0.2


class CorridorAdapter(EnvAdapter):
    """Single-agent toy adapter with a discrete vocabulary and an exact expert."""

    env_id = "Corridor-v0"
    task = "Walk along a corridor to the goal cell and stop there."

    def __init__(self, length: int = 10, goal: int = 7, *, with_expert: bool = True) -> None:
        super().__init__()
        self.length, self.goal, self.with_expert = length, goal, with_expert

    def make(self, **kwargs: Any) -> gym.Env:
        return CorridorEnv(self.length, self.goal, **kwargs)

    def action_vocabulary(self, space: gym.Space) -> DiscreteActions:
        return DiscreteActions(
            ["left", "stay", "right"], ["move one cell left", "do not move", "move one cell right"]
        )

    def describe(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> Description:
        pos, goal = int(obs[0]), int(obs[1])
        side = "left of" if pos < goal else "right of" if pos > goal else "at"
        return Description(
            text=f"The agent is at cell {pos}, {side} the goal cell {goal} (cells 0..{self.length - 1}).",
            state={"position": pos, "goal": goal},
        )

    @property
    def expert(self) -> Expert | None:
        return CorridorExpert() if self.with_expert else None


class _PlanVocabulary:
    def __init__(self, agents: Sequence[str], length: int) -> None:
        self.agents, self.length = list(agents), length

    def prompt_text(self) -> str:
        return (
            "Commands (each instruction is {command, parameter, agent}):\n"
            f"- goto: parameter = a cell 0..{self.length - 1}; the agent walks there\n"
            "- wait: parameter = number of steps 1..10\n"
            f"Agents: {', '.join(self.agents)}"
        )


class TeamCorridorExpert:
    def plan(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"command": "goto", "parameter": state["goal"], "agent": a} for a in sorted(state["positions"])
        ]


class TeamCorridorAdapter(MultiAgentEnvAdapter):
    """Multi-agent toy adapter: every agent should ``goto`` the goal; plans are validated."""

    env_id = "TeamCorridor-v0"
    task = "Bring every agent to the goal cell."

    def __init__(self, agents: Sequence[str] = ("a0", "a1"), length: int = 10, goal: int = 7) -> None:
        super().__init__()
        self.agents, self.length, self.goal = list(agents), length, goal
        self.vocabulary = _PlanVocabulary(self.agents, length)

    def describe(self, observations: dict[str, Any], info: dict[str, Any] | None = None) -> Description:
        positions = {a: int(np.asarray(o).ravel()[0]) for a, o in observations.items()}
        where = ", ".join(f"{a} at cell {p}" for a, p in positions.items())
        return Description(
            text=f"{where}; the goal is cell {self.goal}.", state={"positions": positions, "goal": self.goal}
        )

    @property
    def expert(self) -> TeamCorridorExpert:
        return TeamCorridorExpert()

    def validate_plan(self, plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Check every instruction; raise :class:`InvalidAction` naming the first illegal one."""
        if not plan:
            raise InvalidAction("the plan is empty; give at least one instruction")
        for i, item in enumerate(plan):
            if item["agent"] not in self.agents:
                raise InvalidAction(
                    f"instruction {i}: unknown agent {item['agent']!r}; agents are {self.agents}"
                )
            if item["command"] == "goto":
                if not (isinstance(item["parameter"], int) and 0 <= item["parameter"] < self.length):
                    raise InvalidAction(
                        f"instruction {i}: goto needs a cell 0..{self.length - 1}, got {item['parameter']!r}"
                    )
            elif item["command"] == "wait":
                if not (isinstance(item["parameter"], int) and 1 <= item["parameter"] <= 10):
                    raise InvalidAction(f"instruction {i}: wait needs 1..10 steps, got {item['parameter']!r}")
            else:
                raise InvalidAction(f"instruction {i}: unknown command {item['command']!r}; use goto or wait")
        return plan
