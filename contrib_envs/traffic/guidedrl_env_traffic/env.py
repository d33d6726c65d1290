"""PettingZoo parallel API over :class:`~guidedrl_env_traffic.sim.TrafficSim` (one network)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from guidedrl_env_traffic.sim import AT_NODE, FIELDS, OBS_DIM, ON_ROAD, STEP_FIELDS, TrafficConfig, TrafficSim


class TrafficParallelEnv(ParallelEnv):
    """A grid road network as a PettingZoo ``ParallelEnv``; vehicles are the agents.

    Agents are ``agent_0 .. agent_{N-1}``; an agent is in ``agents`` only between its departure and its
    arrival (PettingZoo semantics: a vehicle appears when it departs, with reward 0 and its first
    observation; it leaves with ``terminations[agent] = True`` on arrival; those still on their way at
    the horizon are truncated). Actions ``Discrete(5)``: 0 wait, 1 north, 2 east, 3 south, 4 west; a move
    off the grid counts as waiting, and a vehicle on a road keeps driving whatever it picks.
    ``info[agent]["action_mask"]`` marks the moves that go somewhere from the intersection the vehicle
    is at (all but wait are masked while it is on a road); ``info[agent]["metrics"]`` holds the episode
    metrics; ``info[agent]["snapshot"]`` the exact state of the network, which the adapter's
    ``describe()`` turns into JSON (one shared object per step).
    """

    metadata = {"render_modes": ["ansi"], "name": "traffic_v0", "is_parallelizable": True}

    def __init__(
        self, rows: int = 4, cols: int = 4, *, n_vehicles: int = 8, horizon: int | None = None,
        render_mode: str | None = None, **rules: Any,
    ) -> None:
        self.config = TrafficConfig(rows=rows, cols=cols, n_vehicles=n_vehicles, horizon=horizon or 0, **rules)
        self.sim = TrafficSim(self.config, n_envs=1)
        self.possible_agents = [f"agent_{i}" for i in range(n_vehicles)]
        self._index = {a: i for i, a in enumerate(self.possible_agents)}
        self.agents: list[str] = []
        self.render_mode = render_mode
        self._obs_space = spaces.Box(-1.0, 1.0, shape=(OBS_DIM,), dtype=np.float32)
        self._act_space = spaces.Discrete(self.sim.n_actions)
        self._seeded = False
        self.metadata = {**self.metadata, "name": f"traffic_grid{rows}x{cols}_v0"}
        # the action mask at each intersection (wait is always allowed), and on a road (wait only)
        self._masks = [np.concatenate([[1], row]).astype(np.int8) for row in self.sim.legal]
        self._on_road_mask = np.array([1, 0, 0, 0, 0], dtype=np.int8)

    @functools.lru_cache(maxsize=None)  # noqa: B019 - PettingZoo asks for the same object every call
    def observation_space(self, agent: str) -> spaces.Box:
        return self._obs_space

    @functools.lru_cache(maxsize=None)  # noqa: B019
    def action_space(self, agent: str) -> spaces.Discrete:
        return self._act_space

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.sim.reset_all(seed=seed)
            for i, agent in enumerate(self.possible_agents):
                self.action_space(agent).seed(seed + i)
        elif not self._seeded:
            self.sim.reset_all()
        else:
            self.sim.reset_envs(np.ones(1, dtype=bool))
        self._seeded = True
        present = self.sim.present[0]
        self.agents = [a for a, p in zip(self.possible_agents, present.tolist(), strict=True) if p]
        return self._observations(self.agents), self._infos(self.agents)

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("step() called after the episode ended; call reset()")
        index = self._index
        row = [0] * len(self.possible_agents)
        for agent in self.agents:  # a present agent left out waits; absent agents' actions are ignored
            v = actions.get(agent, 0)
            row[index[agent]] = v if type(v) is int else int(np.asarray(v).item())
        if not all(0 <= v < 5 for v in row):
            raise ValueError(f"actions must be in 0..4 (wait, north, east, south, west), got {row}")
        before = self.agents
        rew, arrived, done = self.sim.step_one(row)  # the one-network step on Python scalars
        status = self.sim.status[0].tolist()
        now = [a for a, s in zip(self.possible_agents, status, strict=True) if s == AT_NODE or s == ON_ROAD]
        # the dicts cover the agents that acted this step and those that just departed
        acted = set(before)
        keys = before + [a for a in now if a not in acted]
        rewards = {a: rew[index[a]] for a in keys}
        terminations = {a: arrived[index[a]] for a in keys}
        truncations = {a: done and not terminations[a] for a in keys}
        self.agents = [] if done else now
        return self._observations(keys), rewards, terminations, truncations, self._infos(keys)

    def _observations(self, agents: list[str]) -> dict[str, np.ndarray]:
        obs = self.sim.observe_vehicles([self._index[a] for a in agents])  # a new array every step
        return dict(zip(agents, obs, strict=True))

    def _infos(self, agents: list[str]) -> dict[str, dict]:
        sim = self.sim
        snap = TrafficSnapshot(sim)
        node, status = sim.node[0].tolist(), sim.status[0].tolist()
        metrics = sim.metrics(0, status)
        out = {}
        for a in agents:
            i = self._index[a]
            mask = self._masks[node[i]] if status[i] == AT_NODE else self._on_road_mask  # on a road, arrived: wait
            out[a] = {"metrics": metrics, "action_mask": mask, "snapshot": snap}
        return out

    def state(self) -> np.ndarray:
        """Every vehicle's observation, concatenated (absent vehicles included)."""
        return self.sim.observe()[0].reshape(-1)

    def state_dict(self) -> dict[str, Any]:
        """The exact network state as JSON-able data."""
        return self.sim.state_dict(0)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        from guidedrl_env_traffic.adapter import describe_state

        return describe_state(self.state_dict())

    def close(self) -> None:
        pass


class TrafficSnapshot:
    """A copy of one network's state at one step, made cheaply every step; :meth:`state_dict` builds
    the JSON only when someone (the adapter's ``describe()``) asks for it. (A copy, not the JSON: the
    JSON costs ~100x more and is wanted only when an LLM or the expert is asked.)"""

    __slots__ = ("_arrays", "_sim")

    def __init__(self, sim: TrafficSim) -> None:
        self._sim = sim
        self._arrays = {f: getattr(sim, f) if f not in STEP_FIELDS else getattr(sim, f).copy() for f in FIELDS}

    def state_dict(self) -> dict[str, Any]:
        return self._sim.state_dict(0, self._arrays)

    def __eq__(self, other: object) -> bool:  # equal states (PettingZoo's seed test compares infos)
        if not isinstance(other, TrafficSnapshot):
            return NotImplemented
        return self._sim.config_key == other._sim.config_key and all(
            np.array_equal(v, other._arrays[k]) for k, v in self._arrays.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TrafficSnapshot(t={int(self._arrays['t'][0])})"
