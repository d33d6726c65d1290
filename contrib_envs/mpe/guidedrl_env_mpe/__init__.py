"""guidedrl adapters for MPE2 (the maintained Multi-Particle Environments), PettingZoo parallel API.

Registers ``mpe2:simple_spread-v3``: N agents (default 3) must cover N landmarks without colliding;
every agent is rewarded by how close the landmarks are covered (shared) minus its own collisions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import guidedrl
from guidedrl.envs import Description, Expert, MultiAgentEnvAdapter
from guidedrl.envs.base import round_floats

ACTIONS = ["no_op", "move_left", "move_right", "move_down", "move_up"]


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
        text = "Agents: " + "; ".join(f"{a['id']} at {a['pos']}" for a in agents)
        text += ". Landmarks at " + "; ".join(str(lm) for lm in landmarks or []) + "."
        text += " Actions: " + ", ".join(f"{i}={a}" for i, a in enumerate(ACTIONS)) + "."
        return Description(text=text, state={"agents": agents, "landmarks": landmarks})

    @property
    def expert(self) -> Expert:
        return SpreadExpert()


class SpreadExpert(Expert):
    """Agents take landmarks in a greedy nearest-pair order and move along the larger axis gap."""

    def act(self, state: dict[str, Any]) -> dict[str, int]:
        agents, landmarks = state["agents"], [np.asarray(lm) for lm in state["landmarks"]]
        pairs = sorted(
            (float(np.linalg.norm(np.asarray(a["pos"]) - lm)), i, k)
            for i, a in enumerate(agents) for k, lm in enumerate(landmarks)
        )
        goal: dict[int, int] = {}
        used: set[int] = set()
        for _, i, k in pairs:
            if i not in goal and k not in used:
                goal[i] = k
                used.add(k)
        out = {}
        for i, a in enumerate(agents):
            delta = landmarks[goal[i]] - np.asarray(a["pos"]) - 0.5 * np.asarray(a["vel"])
            if np.max(np.abs(delta)) < 0.05:
                out[a["id"]] = 0
            elif abs(delta[0]) >= abs(delta[1]):
                out[a["id"]] = 2 if delta[0] > 0 else 1
            else:
                out[a["id"]] = 4 if delta[1] > 0 else 3
        return out


@guidedrl.hookimpl
def register_envs(register) -> None:
    register(SimpleSpreadAdapter.env_id, SimpleSpreadAdapter, summary="MPE2 simple_spread (cooperative navigation), parallel API")
