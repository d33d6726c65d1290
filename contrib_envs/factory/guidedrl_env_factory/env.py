"""PettingZoo parallel API over :class:`~guidedrl_env_factory.sim.FactorySim` (one floor)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from guidedrl_env_factory.domains import DOMAINS, Domain
from guidedrl_env_factory.sim import FactorySim


class FactoryParallelEnv(ParallelEnv):
    """A shop floor as a PettingZoo ``ParallelEnv``.

    Agents are ``agent_0 .. agent_{N-1}`` in every domain (humans first); each observes its own
    state, every station and the time (``Box(0, 1, (4 + 7M,))``) and picks one of ``2M + 1``
    actions (rest, work at a station, maintain a station). All agents are truncated together after
    ``horizon`` steps. ``info[agent]["metrics"]`` holds the episode-so-far metrics (task completion,
    jobs done, conflicts, overwork steps, broken stations).
    """

    metadata = {"render_modes": ["ansi"], "name": "factory_v0", "is_parallelizable": True}

    def __init__(
        self, domain: str | Domain = "human-machine", *, n_agents: int = 4, n_stations: int | None = None,
        horizon: int | None = None, render_mode: str | None = None,
    ) -> None:
        dom = DOMAINS[domain] if isinstance(domain, str) else domain
        if horizon is not None:
            import attrs

            dom = attrs.evolve(dom, horizon=horizon)
        self.domain = dom
        self.sim = FactorySim(dom, n_agents=n_agents, n_stations=n_stations, n_envs=1)
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self.render_mode = render_mode
        self._obs_space = spaces.Box(0.0, 1.0, shape=(self.sim.obs_dim,), dtype=np.float32)
        self._act_space = spaces.Discrete(self.sim.n_actions)
        self._seeded = False
        self.metadata = {**self.metadata, "name": f"factory_{dom.name.replace('-', '_')}_v0"}

    @functools.lru_cache(maxsize=None)  # noqa: B019 - PettingZoo asks for the same object every call
    def observation_space(self, agent: str) -> spaces.Box:
        return self._obs_space

    @functools.lru_cache(maxsize=None)  # noqa: B019
    def action_space(self, agent: str) -> spaces.Discrete:
        return self._act_space

    @property
    def n_stations(self) -> int:
        return self.sim.n_stations

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.sim.reset_all(seed=seed)
            for i, agent in enumerate(self.possible_agents):
                self._act_space.seed(seed + i)
        else:
            if not self._seeded:
                self.sim.reset_all()
            else:
                self.sim.reset_envs(np.ones(1, dtype=bool))
        self._seeded = True
        self.agents = list(self.possible_agents)
        return self._observations(), self._infos()

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("step() called after the episode ended; call reset()")
        agents = self.possible_agents
        row = []
        for agent in agents:  # an agent left out rests (action 0)
            v = actions.get(agent, 0)
            row.append(v if type(v) is int else int(np.asarray(v).item()))  # numpy ints, 0-d arrays, ...
        rew, done = self.sim.step_one(row)  # the one-floor step in plain Python: lists in, lists out
        obs = self._observations()
        infos = self._infos()
        rewards = dict(zip(agents, rew, strict=True))
        terminations = dict.fromkeys(agents, False)
        truncations = dict.fromkeys(agents, done)
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def _observations(self) -> dict[str, np.ndarray]:
        o = self.sim.observe()[0]  # a new array every step: earlier observations stay as they were
        return dict(zip(self.possible_agents, o, strict=True))

    def _infos(self) -> dict[str, dict]:
        sim = self.sim
        completed = sim.completed.item()
        m = {
            "task_completion": completed / max(sim.arrived.item(), 1.0),
            "jobs_done": completed,
            "conflicts": sim.conflicts.item(),
            "overwork_steps": sim.overworked.item(),
            "broken_stations": float(np.count_nonzero(sim.broken)),
        }
        return {agent: {"metrics": m} for agent in self.possible_agents}

    def state(self) -> np.ndarray:
        """The joint observation (all agents' observations, concatenated)."""
        return self.sim.observe()[0].reshape(-1)

    def state_dict(self) -> dict[str, Any]:
        """The exact floor state as JSON-able data."""
        return self.sim.state_dict(0)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        from guidedrl_env_factory.adapter import describe_state

        return describe_state(self.state_dict(), self.domain)

    def close(self) -> None:
        pass
