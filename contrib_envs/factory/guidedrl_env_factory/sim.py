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

A one-floor simulator (``n_envs == 1``, what the PettingZoo env steps) runs the same step on plain
Python scalars (:meth:`FactorySim.step_one`): at one floor the ~60 numpy calls of the vectorised step
cost far more than its arithmetic. Both paths give bit-for-bit the same states, rewards and random
draws (``tests/test_factory_golden.py`` holds them to each other and to recorded rollouts).

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


def _pairwise_sum(xs: list[float]) -> float:
    """``sum`` of a list of floats in the order numpy's ``add.reduce`` sums one contiguous float64 row.

    numpy sums fewer than 8 numbers left to right and up to 128 with eight interleaved partial sums
    (pairwise summation); floating-point addition is not associative, so the order decides the last
    bit. :class:`FactorySim` checks this function against numpy for its row length before using it.
    """
    n = len(xs)
    if n < 8:
        s = 0.0
        for x in xs:
            s += x
        return s
    r = xs[:8]
    stop = n - n % 8
    for i in range(8, stop, 8):
        for k in range(8):
            r[k] += xs[i + k]
    s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for x in xs[stop:]:
        s += x
    return 0.0 + s


def _numpy_row_sum(xs: list[float]) -> float:
    return float(np.array([xs]).sum(axis=1)[0])


def _row_sum_for(n: int):
    """The cheapest function that sums ``n`` floats exactly as ``FactorySim.step`` does with numpy."""
    if n > 128:
        return _numpy_row_sum
    rng = np.random.default_rng(n)
    for _ in range(64):
        xs = (rng.random(n) * rng.integers(0, 2, n) * 10.0 ** rng.integers(-3, 3, n)).tolist()
        if _pairwise_sum(xs) != _numpy_row_sum(xs):
            return _numpy_row_sum
    return _pairwise_sum


class FactorySim:
    """``n_envs`` independent shop floors with ``n_agents`` agents and ``n_stations`` stations.

    The floor's state (``queue``, ``health``, ``broken``, ``fatigue``, ``loc``, ``t`` and the
    episode counters) may be read and edited between steps; the domain, the agent and station kinds
    and ``skill`` are fixed at construction (lookup tables are built from them).
    """

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
        self._build_tables()
        self.reset_all()

    def _build_tables(self) -> None:
        """Lookup tables over actions and locations, so that a step costs few numpy calls.

        At small batch sizes (the PettingZoo env steps one floor) the cost of a step is the number
        of numpy calls, not the arithmetic; every table below replaces several elementwise calls
        per step by one indexing call and yields exactly the values the elementwise code did.
        """
        m, n = self.n_stations, self.n_agents
        acts = np.arange(self.n_actions)
        target, maint = self.decode(acts)
        #: per action: the station claimed, one-hot (all false for rest), shape (A, M)
        self._a_claim = target[:, None] == self._st
        self._a_maint = maint
        self._a_has = target >= 0
        #: per action: the station index, 0 for rest (only read where the agent claims a station)
        self._a_tgt0 = np.maximum(target, 0)
        #: per action: the location after an admitted move (0 = the rest area for rest)
        self._a_loc = np.where(target < 0, 0, target + 1)
        #: per action: the location at which the agent is already "there" (-1, never, for rest)
        self._a_there = np.where(target < 0, -1, target + 1)
        #: per agent and action: jobs per step at the claimed station, shape (N, A)
        self._a_skill = self.skill[:, self._a_tgt0]
        #: per location (0 = rest area, j + 1 = station j): the station one-hot, shape (M + 1, M)
        self._loc_pos = np.arange(m + 1)[:, None] == self._st1
        self._ag3 = self._ag[None, :, None]
        self._repair_amt = self.domain.repair * self.repair_skill
        # the observation's constant features, copied into every new observation
        k = 3 + m
        tpl = np.zeros((1, n, obs_dim(n, m)), dtype=np.float32)
        tpl[..., 0] = self._human_f
        st = tpl[:, :, (n + 1) * k : (n + 1) * k + 6 * m].reshape(1, n, m, 6)
        st[..., 3] = self._manual
        st[..., 5] = self._skill_feat
        self._obs_tpl = tpl
        # the same, as Python lists, for the one-floor step (:meth:`step_one`)
        self._py_tgt = target.tolist()
        self._py_maint = maint.tolist()
        self._py_skill = self._a_skill.tolist()
        self._py_human = self.is_human.tolist()
        self._py_repair = self._repair_amt.tolist()
        self._row_sum = _row_sum_for(m)

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
        a = np.asarray(actions, dtype=np.int64).reshape(self.n_envs, self.n_agents)
        if a.size and a.view(np.uint64).max() >= self.n_actions:  # negatives wrap to huge values
            raise ValueError(f"actions must be in 0..{self.n_actions - 1}")
        if self.n_envs == 1:
            rew, trunc = self.step_one(a[0].tolist())
            return np.array([rew]), np.array([trunc])
        return self._step_batched(a)

    def step_one(self, actions: list[int]) -> tuple[list[float], bool]:
        """Advance a one-floor simulator (``n_envs == 1``) one step, in plain Python.

        ``actions``: one int per agent. Returns ``(rewards, truncated)`` as a list of floats and a
        bool. Bit for bit the same state, rewards and random draws as :meth:`step` on a batch (tests
        hold the two to it); at one floor the numpy calls of the batched step cost more than the
        arithmetic, so this path does the per-agent and per-station logic on Python scalars.
        """
        if self.n_envs != 1:
            raise ValueError("step_one() steps a one-floor simulator (n_envs == 1)")
        n, m, n_act = self.n_agents, self.n_stations, self.n_actions
        if len(actions) != n:
            raise ValueError(f"expected {n} actions, got {len(actions)}")
        for v in actions:
            if not 0 <= v < n_act:
                raise ValueError(f"actions must be in 0..{n_act - 1}")
        loc = self.loc[0].tolist()
        at = [x for x in loc if x]
        if len(set(at)) != len(at):  # two agents at one station: only a hand-edited state gets here
            rew, trunc = self._step_batched(np.array([actions], dtype=np.int64))
            return rew[0].tolist(), bool(trunc[0])
        d = self.domain
        fatigue = self.fatigue[0].tolist()
        broken = self.broken[0].tolist()
        queue = self.queue[0].tolist()
        health = self.health[0].tolist()
        tgt_of, maint_of, skill, human = self._py_tgt, self._py_maint, self._py_skill, self._py_human
        fw = d.fatigue_work
        occupied = set(at)  # locations (station + 1) someone stands at
        claimed: set[int] = set()  # stations an earlier (lower-index) agent tries to enter
        prod = [0.0] * m
        fix = [0.0] * m
        conflict = [False] * n
        new_loc = list(loc)
        df = [0.0] * n
        exhausted_at = 1.0 - 1e-9
        for i in range(n):
            a = actions[i]
            j = tgt_of[a]
            if j < 0:  # rest
                new_loc[i] = 0
                df[i] = -d.fatigue_rest
            elif loc[i] == j + 1:  # at the claimed station: act, unless exhausted (or it is broken)
                if human[i] and fatigue[i] >= exhausted_at:
                    df[i] = 0.25 * fw
                elif maint_of[a]:
                    fix[j] = self._py_repair[i]
                    df[i] = fw
                elif broken[j]:
                    df[i] = 0.25 * fw
                else:
                    rate = skill[i][a]
                    prod[j] = rate * (1.0 - d.fatigue_slowdown * fatigue[i] if human[i] else 1.0)
                    df[i] = fw
            else:  # entering: blocked when in use or entered by a lower index this step, else walk
                if j + 1 in occupied or j in claimed:
                    conflict[i] = True
                    df[i] = 0.25 * fw
                else:
                    new_loc[i] = j + 1
                    df[i] = 0.5 * fw
                claimed.add(j)

        done = [0.0] * m
        for j in range(m):
            q, p = queue[j], prod[j]
            done[j] = dn = q if q <= p else p  # np.minimum
            queue[j] = q - dn
        done_sum = self._row_sum(done)

        # wear and breakdowns (the same random draws, in the same order, as the batched step)
        wear = self.rng.uniform(1 - d.wear_noise, 1 + d.wear_noise, size=(1, m))[0].tolist()
        hazard = self.rng.random((1, m))[0].tolist() if d.hazard > 0 else None
        for j in range(m):
            h = health[j]
            if prod[j] > 0:
                h = h - d.wear * wear[j]
                if hazard is not None and h < 0.3 and hazard[j] < d.hazard:
                    h = 0.0
            b = broken[j] or h <= 0.0
            h = h if h >= 0.0 else 0.0  # np.maximum
            h = h + fix[j]
            h = h if h <= 1.0 else 1.0  # np.minimum
            health[j] = h
            broken[j] = b and h < RESTART_HEALTH

        overwork = [False] * n
        for i in range(n):
            if human[i]:
                f = fatigue[i] + df[i]
                f = f if f >= 0.0 else 0.0  # np.clip
                f = f if f <= 1.0 else 1.0
                fatigue[i] = f
                overwork[i] = f >= exhausted_at and tgt_of[actions[i]] >= 0
            else:
                fatigue[i] = 0.0

        arrivals = self.rng.random((1, m))[0].tolist()
        n_new = 0
        max_q = d.max_queue
        for j in range(m):
            q = queue[j]
            if arrivals[j] < d.arrival:
                n_new += 1
                q = q + 1.0
            else:
                q = q + 0.0
            queue[j] = q if q <= max_q else max_q

        # write the state back (rebinding or in place, as the batched step does)
        self.queue = np.array([queue])
        self.health = np.array([health])
        self.broken[0] = broken
        self.fatigue = np.array([fatigue])
        self.loc = np.array([new_loc], dtype=np.int64)
        t = self.t[0] = self.t.item() + 1
        self.completed[0] = self.completed.item() + done_sum
        self.arrived[0] = self.arrived.item() + n_new
        self.conflicts[0] = self.conflicts.item() + sum(conflict)
        self.overworked[0] = self.overworked.item() + sum(overwork)

        team = d.job_reward * done_sum - d.breakdown_penalty * sum(broken)
        team_n = team / n
        cp, op = d.conflict_penalty, d.overwork_penalty
        rew = [team_n - cp * c - op * o for c, o in zip(conflict, overwork, strict=True)]
        return rew, t >= d.horizon

    def _step_batched(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`step` on validated ``(n_envs, n_agents)`` int64 actions, vectorised over floors."""
        d = self.domain
        claim = self._a_claim[a]  # (B, N, M)
        maint = self._a_maint[a]
        has = self._a_has[a]  # claims a station (does not rest)
        loc = self.loc
        occ = self._loc_pos[loc]  # who stands at which station
        occupied = occ.any(axis=1)  # (B, M)
        entrant = claim > occ  # claims a station it does not stand at
        first = entrant.argmax(axis=1)  # lowest-index entrant per station
        # blocked: equipment in use, or claimed by a lower index (the entrant is not the admitted one)
        conflict = (entrant & ((self._ag3 != first[:, None, :]) | occupied[:, None, :])).any(axis=2)
        new_loc = np.where(conflict, loc, self._a_loc[a])
        there = loc == self._a_there[a]
        fatigue = self.fatigue
        exhausted = self.is_human & (fatigue >= 1.0 - 1e-9)
        acting = there > exhausted
        broken_at = self.broken[self._rows, self._a_tgt0[a]]
        working = acting > (maint | broken_at)
        repairing = acting & maint

        # production: at most one acting agent per station (conflicts act nowhere)
        rate = self._a_skill[self._ag, a]  # (B, N)
        rate = rate * np.where(self.is_human, 1.0 - d.fatigue_slowdown * fatigue, 1.0)
        prod = np.einsum("bnm,bn->bm", claim, np.where(working, rate, 0.0))
        done = np.minimum(self.queue, prod)
        self.queue -= done
        done_sum = done.sum(axis=1)
        self.completed += done_sum

        # wear and breakdowns
        running = prod > 0
        wear = d.wear * self.rng.uniform(1 - d.wear_noise, 1 + d.wear_noise, size=prod.shape)
        health = np.where(running, self.health - wear, self.health)
        if d.hazard > 0:
            snap = running & (health < 0.3) & (self.rng.random(prod.shape) < d.hazard)
            health = np.where(snap, 0.0, health)
        self.broken |= health <= 0.0
        health = np.maximum(health, 0.0)
        fix = np.einsum("bnm,bn->bm", claim, np.where(repairing, self._repair_amt, 0.0))
        self.health = health = np.minimum(health + fix, 1.0)
        self.broken &= health < RESTART_HEALTH

        # fatigue (humans only): rest recovers; work or maintenance tires, travel half as much,
        # standing idle at a claimed station (blocked, exhausted, broken equipment) a quarter
        walking = has > (there | conflict)
        fw = d.fatigue_work
        df = np.where(working | repairing, fw, np.where(walking, 0.5 * fw, np.where(has, 0.25 * fw, -d.fatigue_rest)))
        self.fatigue = fatigue = np.where(self.is_human, np.minimum(np.maximum(fatigue + df, 0.0), 1.0), 0.0)
        overwork = self.is_human & (fatigue >= 1.0 - 1e-9) & has

        self.loc = new_loc
        # arrivals
        new = self.rng.random((self.n_envs, self.n_stations)) < d.arrival
        self.arrived += new.sum(axis=1)
        self.queue = np.minimum(self.queue + new, d.max_queue)
        self.t += 1

        self.conflicts += conflict.sum(axis=1)
        self.overworked += overwork.sum(axis=1)
        team = d.job_reward * done_sum - d.breakdown_penalty * self.broken.sum(axis=1)
        rew = team[:, None] / self.n_agents - d.conflict_penalty * conflict - d.overwork_penalty * overwork
        return rew, self.t >= d.horizon

    # -- observations and metrics --------------------------------------------------------------
    def observe(self) -> np.ndarray:
        """Per-agent observations, shape ``(n_envs, n_agents, obs_dim)``, every feature in [0, 1].

        A new array every call (callers keep observations across steps).
        """
        b, n, m = self.n_envs, self.n_agents, self.n_stations
        d = self.domain
        k = 3 + m
        out = self._obs_tpl.repeat(b, axis=0) if b > 1 else self._obs_tpl.copy()
        me = out[:, :, :k]
        me[..., 1] = self.fatigue
        me[..., 2] = self.loc == 0
        pos = self._loc_pos[self.loc]  # (B, N, M)
        me[..., 3:] = pos
        out[:, :, k : (n + 1) * k] = me.reshape(b, 1, n * k)
        st = out[:, :, (n + 1) * k : (n + 1) * k + 6 * m].reshape(b, n, m, 6)
        st[..., 0] = (self.queue / d.max_queue)[:, None, :]
        st[..., 1] = self.health[:, None, :]
        st[..., 2] = self.broken[:, None, :]
        st[..., 4] = np.logical_or.reduce(pos, axis=1, keepdims=True) > pos  # occupied by another agent
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
