"""The shop-floor simulator, vectorised with numpy over a batch of independent floors.

Each agent observes, all in [0, 1]: itself (human?, fatigue, in the rest area?, position one-hot),
the team board (the same four for every agent, in agent order — what a shop-floor display shows),
every station (queue, health, broken?, manual?, occupied by another agent?, own skill there) and
the time of the shift.

One step, for every floor of the batch at once:

1. every agent claims a station to *work* at or *maintain*, or goes to the rest area;
2. equipment is used by one agent at a time: an agent claiming a station that another agent stands
   at, or that a lower-numbered agent also claims this step, is **blocked** — a conflict: it stays
   where it was, does nothing and is penalised (so two agents never share a station);
3. an agent admitted to a station it is not standing at spends the step walking there;
4. agents at their station work (jobs done = skill × (1 − slowdown × fatigue), capped by the queue;
   nothing on a broken station) or maintain (health regained);
5. production wears equipment; a station at zero health breaks and stays broken until maintained
   back above 50% health;
6. human fatigue rises with work and recovers with rest; an exhausted human (fatigue 1) cannot work
   and costs an overwork penalty every step until they rest;
7. new jobs arrive.

Actions of agent ``i``: ``0`` rest, ``1..M`` work at station ``a − 1``, ``M+1..2M`` maintain station
``a − M − 1``.
"""

from __future__ import annotations

import numpy as np

from guidedrl_env_factory.domains import Domain

REST = 0
#: Health at which a broken station runs again.
RESTART_HEALTH = 0.5


def n_stations_for(n_agents: int) -> int:
    """Default station count: two more stations than agents (so there is something to choose)."""
    return n_agents + 2


def obs_dim(n_agents: int, n_stations: int) -> int:
    """Per-agent observation size: own (3 + M) + team board (N × (3 + M)) + 6 per station + time (1)."""
    return (n_agents + 1) * (3 + n_stations) + 6 * n_stations + 1


class FactorySim:
    """``n_envs`` independent shop floors with ``n_agents`` agents and ``n_stations`` stations."""

    def __init__(
        self, domain: Domain, *, n_agents: int = 4, n_stations: int | None = None, n_envs: int = 1,
        seed: int | None = None,
    ) -> None:
        if n_agents < 1:
            raise ValueError("n_agents must be at least 1")
        self.domain = domain
        self.n_agents = n_agents
        self.n_stations = n_stations or n_stations_for(n_agents)
        self.n_envs = n_envs
        self.n_actions = 2 * self.n_stations + 1
        self.obs_dim = obs_dim(n_agents, self.n_stations)
        n_h = int(round(domain.human_frac * n_agents))
        n_h = min(max(n_h, 1 if domain.human_frac > 0 else 0), n_agents)
        #: 0 = human, 1 = robot, per agent (humans first).
        self.agent_kind = (np.arange(n_agents) >= n_h).astype(np.int64)
        n_m = int(round(domain.manual_frac * self.n_stations))
        #: 0 = manual, 1 = automated, per station (manual first).
        self.station_kind = (np.arange(self.n_stations) >= n_m).astype(np.int64)
        eff = np.asarray(domain.eff, dtype=np.float64)
        #: Jobs per step of each agent at each station, shape (N, M).
        self.skill = eff[self.agent_kind][:, self.station_kind]
        self.repair_skill = np.asarray(domain.repair_skill, dtype=np.float64)[self.agent_kind]
        self.is_human = self.agent_kind == 0
        self.rng = np.random.default_rng(seed)
        # index arrays reused every step (numpy call overhead dominates at small batch sizes)
        self._st = np.arange(self.n_stations)
        self._st1 = self._st + 1
        self._ag = np.arange(n_agents)
        self._rows = np.arange(n_envs)[:, None]
        self._skill_feat = self.skill / max(float(np.max(domain.eff)), 1e-9)
        self._manual = (self.station_kind == 0).astype(np.float64)
        self._human_f = self.is_human.astype(np.float64)
        self.reset_all()

    # -- state ---------------------------------------------------------------------------------
    def reset_all(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        b, n, m = self.n_envs, self.n_agents, self.n_stations
        self.queue = np.zeros((b, m))
        self.health = np.ones((b, m))
        self.broken = np.zeros((b, m), dtype=bool)
        self.fatigue = np.zeros((b, n))
        self.loc = np.zeros((b, n), dtype=np.int64)  # 0 = rest area, j + 1 = station j
        self.t = np.zeros(b, dtype=np.int64)
        self.completed = np.zeros(b)
        self.arrived = np.zeros(b)
        self.conflicts = np.zeros(b)
        self.overworked = np.zeros(b)
        self.reset_envs(np.ones(b, dtype=bool))

    def reset_envs(self, mask: np.ndarray) -> None:
        """Start new episodes in the floors where ``mask`` is true."""
        idx = np.nonzero(mask)[0]
        if idx.size == 0:
            return
        d, m = self.domain, self.n_stations
        q0 = self.rng.integers(0, d.init_queue + 1, size=(idx.size, m)).astype(np.float64)
        self.queue[idx] = q0
        self.health[idx] = self.rng.uniform(0.4, 1.0, size=(idx.size, m))
        self.broken[idx] = False
        self.fatigue[idx] = 0.0
        self.loc[idx] = 0
        self.t[idx] = 0
        self.completed[idx] = 0.0
        self.arrived[idx] = q0.sum(axis=1)
        self.conflicts[idx] = 0.0
        self.overworked[idx] = 0.0

    # -- dynamics ------------------------------------------------------------------------------
    def decode(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(target station or -1, is_maintain)`` for an action array."""
        m = self.n_stations
        a = np.asarray(actions, dtype=np.int64)
        target = np.where(a == REST, -1, (a - 1) % m)
        return target, a > m

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every floor one step. ``actions``: ``(n_envs, n_agents)`` ints.

        Returns ``(rewards (n_envs, n_agents), truncated (n_envs,))``.
        """
        d, m = self.domain, self.n_stations
        actions = np.asarray(actions, dtype=np.int64).reshape(self.n_envs, self.n_agents)
        if np.any((actions < 0) | (actions >= self.n_actions)):
            raise ValueError(f"actions must be in 0..{self.n_actions - 1}")
        target, maint = self.decode(actions)
        claim = target[:, :, None] == self._st  # (B, N, M)
        occ = self.loc[:, :, None] == self._st1  # who stands at which station
        occupied = occ.any(axis=1)  # (B, M)
        entrant = claim & ~occ
        first = np.argmax(entrant, axis=1)  # lowest-index entrant per station
        admitted = entrant & (self._ag[None, :, None] == first[:, None, :]) & ~occupied[:, None, :]
        conflict = (entrant & ~admitted).any(axis=2)  # blocked: equipment in use or claimed by a lower index
        tgt = np.maximum(target, 0)
        new_loc = np.where(target < 0, 0, np.where(conflict, self.loc, target + 1))
        there = (self.loc == target + 1) & (target >= 0)
        exhausted = self.is_human & (self.fatigue >= 1.0 - 1e-9)
        acting = there & ~exhausted
        broken_at = self.broken[self._rows, tgt]
        working = acting & ~maint & ~broken_at
        repairing = acting & maint

        # production: at most one acting agent per station (conflicts act nowhere)
        rate = self.skill[self._ag[None, :], tgt]  # (B, N)
        rate = rate * np.where(self.is_human, 1.0 - d.fatigue_slowdown * self.fatigue, 1.0)
        prod = np.einsum("bnm,bn->bm", claim, np.where(working, rate, 0.0))
        done = np.minimum(self.queue, prod)
        self.queue -= done
        self.completed += done.sum(axis=1)

        # wear and breakdowns
        running = prod > 0
        wear = d.wear * self.rng.uniform(1 - d.wear_noise, 1 + d.wear_noise, size=prod.shape)
        self.health = np.where(running, self.health - wear, self.health)
        if d.hazard > 0:
            snap = running & (self.health < 0.3) & (self.rng.random(prod.shape) < d.hazard)
            self.health = np.where(snap, 0.0, self.health)
        self.broken |= self.health <= 0.0
        self.health = np.maximum(self.health, 0.0)
        fix = np.einsum("bnm,bn->bm", claim, np.where(repairing, d.repair * self.repair_skill, 0.0))
        self.health = np.minimum(self.health + fix, 1.0)
        self.broken &= self.health < RESTART_HEALTH

        # fatigue (humans only)
        walking = (target >= 0) & ~there & ~conflict
        gain = np.where(working | repairing, d.fatigue_work, 0.0) + np.where(walking, 0.5 * d.fatigue_work, 0.0)
        gain += np.where((target >= 0) & ~walking & ~(working | repairing), 0.25 * d.fatigue_work, 0.0)
        df = np.where(target < 0, -d.fatigue_rest, gain)
        self.fatigue = np.where(self.is_human, np.clip(self.fatigue + df, 0.0, 1.0), 0.0)
        overwork = self.is_human & (self.fatigue >= 1.0 - 1e-9) & (target >= 0)

        self.loc = new_loc
        # arrivals
        new = (self.rng.random((self.n_envs, m)) < d.arrival).astype(np.float64)
        self.arrived += new.sum(axis=1)
        self.queue = np.minimum(self.queue + new, d.max_queue)
        self.t += 1

        n_conf = conflict.sum(axis=1)
        self.conflicts += n_conf
        self.overworked += overwork.sum(axis=1)
        team = d.job_reward * done.sum(axis=1) - d.breakdown_penalty * self.broken.sum(axis=1)
        rew = team[:, None] / self.n_agents - d.conflict_penalty * conflict - d.overwork_penalty * overwork
        return rew, self.t >= d.horizon

    # -- observations and metrics --------------------------------------------------------------
    def observe(self) -> np.ndarray:
        """Per-agent observations, shape ``(n_envs, n_agents, obs_dim)``, every feature in [0, 1]."""
        b, n, m = self.n_envs, self.n_agents, self.n_stations
        d = self.domain
        k = 3 + m
        out = np.empty((b, n, (n + 1) * k + 6 * m + 1), dtype=np.float32)
        me = out[:, :, :k]
        me[..., 0] = self._human_f
        me[..., 1] = self.fatigue
        me[..., 2] = self.loc == 0
        pos = self.loc[:, :, None] == self._st1  # (B, N, M)
        me[..., 3:] = pos
        out[:, :, k : (n + 1) * k] = me.reshape(b, 1, n * k)
        st = out[:, :, (n + 1) * k : (n + 1) * k + 6 * m].reshape(b, n, m, 6)
        st[..., 0] = (self.queue / d.max_queue)[:, None, :]
        st[..., 1] = self.health[:, None, :]
        st[..., 2] = self.broken[:, None, :]
        st[..., 3] = self._manual
        st[..., 4] = pos.any(axis=1, keepdims=True) & ~pos  # occupied by another agent
        st[..., 5] = self._skill_feat
        out[:, :, -1] = (self.t / d.horizon)[:, None]
        return out

    def state_dict(self, b: int = 0) -> dict:
        """The exact state of floor ``b`` as JSON-able data (what the expert and the LLM read)."""
        d = self.domain
        return {
            "domain": d.name,
            "t": int(self.t[b]),
            "horizon": d.horizon,
            "agents": [
                {
                    "id": f"agent_{i}",
                    "kind": "human" if self.is_human[i] else "robot",
                    "fatigue": round(float(self.fatigue[b, i]), 3),
                    "location": None if self.loc[b, i] == 0 else int(self.loc[b, i] - 1),
                }
                for i in range(self.n_agents)
            ],
            "stations": [
                {
                    "id": j,
                    "kind": "manual" if self.station_kind[j] == 0 else "automated",
                    "queue": round(float(self.queue[b, j]), 3),
                    "health": round(float(self.health[b, j]), 3),
                    "broken": bool(self.broken[b, j]),
                }
                for j in range(self.n_stations)
            ],
            "skill": [[round(float(x), 3) for x in row] for row in self.skill],
            "rules": {
                "repair_per_step": [round(float(d.repair * r), 3) for r in self.repair_skill],
                "fatigue_work": d.fatigue_work,
                "fatigue_rest": d.fatigue_rest,
                "fatigue_slowdown": d.fatigue_slowdown,
                "restart_health": RESTART_HEALTH,
                "max_queue": d.max_queue,
                "arrival": d.arrival,
            },
        }

    def metrics(self) -> dict[str, np.ndarray]:
        """Episode-so-far metrics per floor: ``task_completion`` = jobs done / jobs that arrived."""
        return {
            "task_completion": self.completed / np.maximum(self.arrived, 1.0),
            "jobs_done": self.completed.copy(),
            "conflicts": self.conflicts.copy(),
            "overwork_steps": self.overworked.copy(),
            "broken_stations": self.broken.sum(axis=1).astype(np.float64),
        }
