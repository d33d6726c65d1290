"""guidedrl adapters for MPE2 (the maintained Multi-Particle Environments), PettingZoo parallel API.

Registers ``mpe2:simple_spread-v3``: N agents (default 3; 3 … 12 tested) must cover N landmarks without
colliding; every agent is rewarded by how close the landmarks are covered (shared) minus its own
collisions. The adapter carries LEED's instruction vocabulary ``[MoveTo, Landmark_k, Agent_i]``
(``validate_plan`` / ``execute_plan``) and an assignment expert (``SpreadExpert``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import guidedrl
from guidedrl.envs import Description, MultiAgentEnvAdapter
from guidedrl.envs.base import round_floats

from guidedrl_env_mpe.expert import SpreadExpert
from guidedrl_env_mpe.plans import PlanExecutor, PlanStep, validate_plan

__all__ = ["PlanExecutor", "PlanVocabulary", "SimpleSpreadAdapter", "SpreadExpert", "validate_plan"]

ACTIONS = ["no_op", "move_left", "move_right", "move_down", "move_up"]
INSTRUCTIONS_HELP = (
    'Answer with a JSON list of instructions [Command, Parameter, AgentID], one per agent, e.g. ["MoveTo", '
    '"Landmark_2", "Agent_0"] (or objects {"command", "parameter", "agent"}): each agent heads for its '
    "landmark until the next plan. Cover every landmark, one agent each."
)


class PlanVocabulary:
    """What an LLM may answer (``prompt_text`` heads prompts)."""

    def __init__(self, n_agents: int) -> None:
        self.n = n_agents

    def prompt_text(self) -> str:
        return (
            "Commands (each instruction is [Command, Parameter, AgentID]):\n"
            f"- MoveTo: Parameter = a landmark Landmark_0 .. Landmark_{self.n - 1}; the agent moves to it\n"
            f"Agents: Agent_0 .. Agent_{self.n - 1}. One instruction per agent."
        )


class SimpleSpreadAdapter(MultiAgentEnvAdapter):
    """``mpe2:simple_spread-v3``. Keyword arguments go to ``simple_spread_v3.parallel_env`` (``N``,
    ``local_ratio``, ``max_cycles``); actions are discrete (``continuous_actions`` is forced off)."""

    env_id = "mpe2:simple_spread-v3"
    task = (
        "Cooperative navigation: N agents must spread out so that every landmark is covered by an "
        "agent, while not colliding with each other. Episodes last max_cycles steps (default 25)."
    )

    def __init__(self, **make_kwargs: Any) -> None:
        make_kwargs = {"N": 3, "max_cycles": 25, **make_kwargs, "continuous_actions": False}
        super().__init__(**make_kwargs)
        self.n_agents = int(make_kwargs["N"])
        self.agents = [f"agent_{i}" for i in range(self.n_agents)]
        self.executor = PlanExecutor(self.agents, self.n_agents)
        self.vocabulary = PlanVocabulary(self.n_agents)
        self.instructions_help = INSTRUCTIONS_HELP
        self._expert = SpreadExpert()

    def make(self, **kwargs: Any) -> Any:
        from mpe2 import simple_spread_v3

        return simple_spread_v3.parallel_env(**{**self.make_kwargs, **kwargs})

    def describe(self, observations: dict[str, Any], info: dict[str, Any] | None = None) -> Description:
        # Observation of agent i: self vel (2), self pos (2), landmark rel pos (2N), others rel pos
        # (2(N-1)), communication (2(N-1)).
        n = self.n_agents
        agents, landmarks = [], None
        for name in self.agents:
            o = np.asarray(observations[name], dtype=float)
            pos = o[2:4]
            agents.append({"id": name, "pos": round_floats(pos), "vel": round_floats(o[0:2])})
            if landmarks is None:
                landmarks = [round_floats(pos + o[4 + 2 * k : 6 + 2 * k]) for k in range(n)]
        text = "Agents: " + "; ".join(f"Agent_{a['id'].split('_')[-1]} at {a['pos']}" for a in agents)
        text += ". Landmarks: " + "; ".join(f"Landmark_{k} at {lm}" for k, lm in enumerate(landmarks or [])) + "."
        text += " Actions: " + ", ".join(f"{i}={a}" for i, a in enumerate(ACTIONS)) + ". " + INSTRUCTIONS_HELP
        return Description(text=text, state={"agents": agents, "landmarks": landmarks})

    @property
    def expert(self) -> SpreadExpert:
        return self._expert

    # -- plans ----------------------------------------------------------------------------------
    def validate_plan(self, instructions: Any) -> list[dict[str, Any]]:
        """Normalised ``[MoveTo, Landmark_k, Agent_i]`` items, or ``InvalidAction`` naming the first bad one."""
        return validate_plan(instructions, self.agents, self.n_agents)

    def execute_plan(self, plan: Any, state: dict[str, Any]) -> PlanStep:
        """Every agent's move toward its landmark in ``state`` (no-op without an instruction), and the
        rejected items with reasons. Any input is accepted: bad items are rejected, never raised."""
        return self.executor.actions(plan, state)


@guidedrl.hookimpl
def register_envs(register) -> None:
    register(SimpleSpreadAdapter.env_id, SimpleSpreadAdapter, summary="MPE2 simple_spread (cooperative navigation), parallel API")
