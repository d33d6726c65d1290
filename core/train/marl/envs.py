"""A PettingZoo parallel env's agents as Tianshou sub-envs (the parameter-sharing pattern of SuperSuit).

``n`` parallel envs with ``N`` agents each become ``n·N`` sub-envs, sub-env ``e·N + i`` being agent
``i`` of env ``e``, so Tianshou's ``Collector`` and ``VectorReplayBuffer`` hold one trajectory per
agent. Each sub-env's observation is one flat vector (:class:`ObsLayout`): the agent's own
observation zero-padded to the widest, its one-hot id, the joint observation (every agent's, for the
centralised critic) and an ``alive`` flag.

- An env's episode ends for all its agents together: every sub-env of the env returns ``done`` at the
  step the last agent leaves, and the collector's reset of those ids resets the env once.
- An agent that leaves before the others (terminated or truncated on its own) ends its trajectory at
  that step; the collector then resets its sub-env alone, which does not touch the env: the sub-env
  shows zeros with ``alive = 0`` until the env's episode ends (so do agents not spawned yet). The
  learner leaves those padding steps out of the loss.

Written here rather than with SuperSuit's ``pettingzoo_env_to_vec_env_v1`` because SuperSuit's
"black death" keeps absent agents as live sub-envs without a flag the loss can read, resets through
its own vector env rather than per env with a seed, and has no joint observation for a CTDE critic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np


class ObsLayout:
    """Where the parts of a sub-env's flat observation sit: ``[own | one-hot id | joint | alive]``.

    ``joint`` (``N·obs_dim``) is there only for a centralised critic.
    """

    def __init__(self, n_agents: int, obs_dim: int, joint: bool) -> None:
        self.n_agents = n_agents
        self.obs_dim = obs_dim
        self.joint = joint
        self.own = slice(0, obs_dim)
        self.onehot = slice(obs_dim, obs_dim + n_agents)
        end = obs_dim + n_agents
        self.joint_part = slice(end, end + n_agents * obs_dim) if joint else slice(end, end)
        self.alive_col = self.joint_part.stop
        self.width = self.alive_col + 1

    def flat(self, joint_obs: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """Sub-env observations ``(..., N, width)`` from joint observations ``(..., N, obs_dim)`` and
        alive flags ``(..., N)``; absent agents' own parts are zero."""
        n, d = self.n_agents, self.obs_dim
        lead = joint_obs.shape[:-2]
        out = np.zeros((*lead, n, self.width), dtype=np.float32)
        own = joint_obs * alive[..., None]
        out[..., self.own] = own
        out[..., self.onehot] = np.eye(n, dtype=np.float32)
        if self.joint:
            out[..., self.joint_part] = own.reshape(*lead, 1, n * d)
        out[..., self.alive_col] = alive
        return out


def episode_metrics(infos: dict[str, Any]) -> dict[str, float]:
    """Numbers an env reports under ``info[agent]["metrics"]`` (first agent that has them)."""
    for info in infos.values():
        if isinstance(info, dict) and isinstance(info.get("metrics"), dict):
            return {k: float(v) for k, v in info["metrics"].items() if isinstance(v, (int, float, np.number))}
    return {}


class AgentVectorEnv:
    """``n`` PettingZoo parallel envs × ``N`` agents as a Tianshou (synchronous) vector env of ``n·N``
    sub-envs. Implements what Tianshou's ``Collector`` calls: ``reset(env_id)``, ``step(action, id)``,
    ``seed``, ``len``, ``env_num``, ``action_space``, ``is_async``, ``close``.

    Env ``e`` is reset with the seed given to :meth:`seed` for it (once), else continues its own RNG.
    Finished env episodes (team return, length, metrics) are kept until :meth:`pop_finished`.
    """

    is_async = False

    def __init__(self, make: Callable[[], Any], n: int, agents: Sequence[str], layout: ObsLayout) -> None:
        self.envs = [make() for _ in range(n)]
        self.agents = list(agents)
        self.n = n
        self.n_agents = len(self.agents)
        self.layout = layout
        self.env_num = n * self.n_agents
        env0 = self.envs[0]
        self.n_actions = [int(env0.action_space(a).n) for a in self.agents]
        space = gym.spaces.Discrete(max(self.n_actions))
        self.action_space = [space] * self.env_num
        self.observation_space = [
            gym.spaces.Box(-np.inf, np.inf, (layout.width,), np.float32) for _ in range(self.env_num)
        ]
        d = layout.obs_dim
        self.joint = np.zeros((n, self.n_agents, d), dtype=np.float32)
        """Current own observations of every agent (zeros when absent)."""
        self.alive = np.zeros((n, self.n_agents), dtype=bool)
        self.infos: list[dict[str, Any]] = [{} for _ in range(n)]
        """Each env's latest info dict (``{agent: info}``), for ``refine_action``."""
        self.needs_reset = np.ones(n, dtype=bool)
        self.env_done = np.zeros(n, dtype=bool)
        """Which envs finished their episode in the last :meth:`step`."""
        self.ep_return = np.zeros(n)
        self.ep_len = np.zeros(n, dtype=np.int64)
        self.finished: list[tuple[int, float, int, dict[str, float]]] = []
        self._seeds: list[int | None] = [None] * n

    def __len__(self) -> int:
        return self.env_num

    def env_of(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(ids) // self.n_agents

    # -- seeding and reset ------------------------------------------------------------------
    def seed(self, seed: int | Sequence[int] | None = None) -> list[Any]:
        """Seeds for the next reset of each env: a list of ``n`` seeds, or ``seed + e``."""
        if seed is None:
            self._seeds = [None] * self.n
        elif isinstance(seed, (int, np.integer)):
            self._seeds = [int(seed) + e for e in range(self.n)]
        else:
            seeds = list(seed)
            if len(seeds) != self.n:
                raise ValueError(f"AgentVectorEnv.seed: {len(seeds)} seeds for {self.n} envs")
            self._seeds = [int(s) for s in seeds]
        return list(self._seeds)

    def _write(self, e: int, obs: dict[str, Any], live: Sequence[str]) -> None:
        self.joint[e] = 0.0
        self.alive[e] = False
        for i, a in enumerate(self.agents):
            if a in obs and a in live:
                o = np.asarray(obs[a], dtype=np.float32).reshape(-1)
                self.joint[e, i, : o.size] = o
                self.alive[e, i] = True

    def _reset_env(self, e: int) -> None:
        seed, self._seeds[e] = self._seeds[e], None
        obs, infos = self.envs[e].reset(seed=seed)
        self._write(e, obs, self.envs[e].agents)
        self.infos[e] = infos
        self.needs_reset[e] = False
        self.ep_return[e] = 0.0
        self.ep_len[e] = 0

    def _info(self, ids: np.ndarray) -> np.ndarray:
        # empty: the env's own infos stay in ``self.infos`` (hooks read them there); Tianshou turns an
        # array of empty dicts into its info batch without stacking anything
        out = np.empty(len(ids), dtype=object)
        out[:] = [{} for _ in range(len(ids))]
        return out

    def reset(self, env_id: int | Sequence[int] | np.ndarray | None = None, **_: Any) -> tuple[np.ndarray, np.ndarray]:
        """Reset the envs of ``env_id`` (all when ``None``): an env whose episode ended (or every env,
        when ``env_id`` is ``None``) is reset once; sub-envs of agents that left an env still running
        restart as padding (zeros, ``alive = 0``)."""
        ids = np.arange(self.env_num) if env_id is None else np.atleast_1d(np.asarray(env_id, dtype=np.int64))
        envs = sorted(set(self.env_of(ids).tolist()))
        for e in envs:
            if env_id is None or self.needs_reset[e]:
                self._reset_env(e)
        flat = self.layout.flat(self.joint, self.alive).reshape(self.env_num, -1)
        obs = flat[ids].copy()
        for r, k in enumerate(ids.tolist()):
            e, i = divmod(k, self.n_agents)
            if env_id is not None and not self.alive[e, i]:
                obs[r, self.layout.alive_col] = 0.0
        return obs, self._info(ids)

    # -- stepping -----------------------------------------------------------------------------
    def step(self, action: np.ndarray, id: int | Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, ...]:  # noqa: A002 - Tianshou's name
        """Step the envs of ``id`` (every agent of each of them must be in ``id``) with ``action``."""
        ids = np.arange(self.env_num) if id is None else np.atleast_1d(np.asarray(id, dtype=np.int64))
        action = np.asarray(action).reshape(len(ids), -1)[:, 0]
        na = self.n_agents
        rew = np.zeros(len(ids), dtype=np.float32)
        term = np.zeros(len(ids), dtype=bool)
        trunc = np.zeros(len(ids), dtype=bool)
        row_of = {int(k): r for r, k in enumerate(ids.tolist())}
        envs = sorted(set(self.env_of(ids).tolist()))
        self.env_done[:] = False
        was_alive = self.alive.copy()
        for e in envs:
            env = self.envs[e]
            rows = [row_of.get(e * na + i) for i in range(na)]
            if any(r is None for r in rows):
                raise ValueError(f"AgentVectorEnv.step: env {e} stepped without all of its agents")
            act = {a: int(action[rows[i]]) for i, a in enumerate(self.agents) if was_alive[e, i]}
            obs, r, te, tr, infos = env.step(act)
            for i, a in enumerate(self.agents):
                if not was_alive[e, i]:
                    continue
                rew[rows[i]] = float(r.get(a, 0.0))
                term[rows[i]] = bool(te.get(a, False))
                trunc[rows[i]] = bool(tr.get(a, False)) and not term[rows[i]]
            self.ep_return[e] += float(sum(float(v) for v in r.values()))
            self.ep_len[e] += 1
            # the agents' final observations (also of agents that just left), for bootstrapping
            self._write(e, obs, [a for a in self.agents if a in obs])
            self.infos[e] = infos
            if not env.agents:
                self.env_done[e] = True
                self.needs_reset[e] = True
                self.finished.append((e, float(self.ep_return[e]), int(self.ep_len[e]), episode_metrics(infos)))
                for i in range(na):  # the env's episode ends for every agent (padding sub-envs too)
                    if not term[rows[i]]:
                        trunc[rows[i]] = True
        # next observations: an agent that left keeps its last observation in its own transition
        flat = self.layout.flat(self.joint, self.alive).reshape(self.env_num, -1)
        obs_next = flat[ids].copy()
        for e in envs:
            live = set(self.envs[e].agents) if not self.env_done[e] else set()
            for i, a in enumerate(self.agents):
                if self.alive[e, i] and a not in live:
                    self.alive[e, i] = False  # left: later steps of this sub-env are padding
        return obs_next, rew, term, trunc, self._info(ids)

    def pop_finished(self) -> list[tuple[int, float, int, dict[str, float]]]:
        """``(env, team return, length, metrics)`` of every env episode finished since the last call."""
        out, self.finished = self.finished, []
        return out

    def render(self, **_: Any) -> None:
        return None

    def close(self) -> None:
        for env in self.envs:
            try:
                env.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


__all__ = ["AgentVectorEnv", "ObsLayout", "episode_metrics"]
