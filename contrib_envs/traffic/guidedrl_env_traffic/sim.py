"""The road-network routing twin: a grid of intersections, vectorised with numpy over a batch of networks.

**Network.** ``rows × cols`` intersections, ``Intersection_k`` at row ``k // cols``, column
``k % cols``; a two-way road joins each pair of neighbours (north, east, south, west). Road ``k·4 + d``
leaves intersection ``k`` in direction ``d`` (0 N, 1 E, 2 S, 3 W). Each road has a free-flow travel time
of 1, 2 or 3 steps (the same both ways), drawn once from the grid size, so a grid id is one fixed map.

**Vehicles** (the agents) each have a start, a goal and a departure step (drawn at reset). A vehicle is
*waiting* before its departure, then *at an intersection* or *on a road*, then *arrived* at its goal.

**One step**, for every network of the batch at once:

1. a vehicle at an intersection picks the next road (actions ``1..4`` = N, E, S, W) or waits (``0``);
   a move off the grid is treated as waiting (it costs the step). Vehicles on a road go on whatever
   they pick (their action is ignored until they reach the next intersection);
2. congestion (BPR-style): every vehicle on a road advances by ``1 / (1 + alpha · (n / capacity)^beta)``
   free-flow steps, ``n`` being the number of vehicles on that road now (itself included) — so travel
   time grows with the load (defaults: a lone vehicle 1.25× the free-flow time, two 2×, four 5×);
3. a vehicle at the end of its road is at the next intersection (it picks its next road next step);
   reaching its goal it has arrived;
4. reward: ``-step_cost`` for every vehicle on its way (so the return is −travel time × step_cost),
   plus ``arrival_bonus`` on arrival;
5. time advances; vehicles whose departure has come appear. When no vehicle is on its way but some are
   still to depart, time skips ahead to the next departure (so the PettingZoo env never has an empty
   ``agents`` list mid-episode). The episode ends when every vehicle has arrived or at ``horizon``.

Each vehicle observes (``Box(-1, 1, (21,))``): its position (row, column, interpolated along a road),
whether it is at an intersection, its goal and the offset to it, for each of the four roads out of the
intersection it is at or heading to: exists?, free-flow time, vehicles on it (÷ 4·capacity, clipped);
the time; and the part of its current road still to drive.

Hand-written, not SUMO: SUMO (eclipse-sumo) is a large C++ install whose steps cost milliseconds; this
twin needs only grid routing with BPR congestion, at thousands of joint steps per second.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np

WAITING, AT_NODE, ON_ROAD, ARRIVED = 0, 1, 2, 3
STATUS = ("waiting", "at_intersection", "on_road", "arrived")
DIRECTIONS = ("N", "E", "S", "W")
ACTIONS = ("wait", "north", "east", "south", "west")
#: (row, column) step of each direction
_STEP = ((-1, 0), (0, 1), (1, 0), (0, -1))
OBS_DIM = 21
#: the state arrays that change during an episode (a snapshot copies them) ...
STEP_FIELDS = ("status", "node", "road", "remaining", "arrival", "travel", "t")
#: ... and all of them (``start``, ``goal``, ``departure`` are replaced, never written into, at reset)
FIELDS = (*STEP_FIELDS, "start", "goal", "departure")
_EPS = 1e-9


@attrs.frozen(kw_only=True)
class TrafficConfig:
    """The rules of a network (everything but the map and the vehicles)."""

    rows: int = attrs.field(default=4, validator=attrs.validators.ge(2))
    """Intersections per column of the grid."""
    cols: int = attrs.field(default=4, validator=attrs.validators.ge(2))
    """Intersections per row of the grid."""
    n_vehicles: int = attrs.field(default=8, validator=[attrs.validators.ge(1), attrs.validators.le(256)])
    """Vehicles (agents); 2 … 64 in the registered ids' tests and benchmarks."""
    horizon: int = attrs.field(default=0)
    """Steps per episode; 0 = ``5 · (rows + cols)``."""
    capacity: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))
    """Vehicles a road carries before it slows down much (the BPR capacity)."""
    alpha: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    """BPR alpha: travel time = free-flow time · (1 + alpha · (n / capacity)^beta)."""
    beta: float = attrs.field(default=2.0, validator=attrs.validators.ge(0))
    """BPR beta."""
    step_cost: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))
    """Reward per step on the way, negated (the return is −travel time × step_cost)."""
    arrival_bonus: float = attrs.field(default=1.0)
    """Reward on reaching the goal."""
    depart_window: float = attrs.field(default=0.25, validator=[attrs.validators.ge(0), attrs.validators.lt(1)])
    """Departures are drawn in ``0 .. depart_window · horizon`` (the first vehicle leaves at step 0)."""

    @property
    def steps(self) -> int:
        return self.horizon or 5 * (self.rows + self.cols)


class TrafficSim:
    """``n_envs`` independent copies of one road network with ``n_vehicles`` vehicles each.

    State arrays, shape ``(n_envs, n_vehicles)``: ``status``, ``node`` (the intersection a vehicle is at,
    or the start of its road), ``road`` (its road id while on a road), ``remaining`` (free-flow steps
    left on the road), ``start``, ``goal``, ``departure``, ``arrival`` (−1 until arrived); ``t`` per env.
    They may be read and edited between steps; call :meth:`observe` after an edit.
    """

    def __init__(self, config: TrafficConfig, *, n_envs: int = 1, seed: int | None = None) -> None:
        self.cfg = config
        self.config_key = attrs.astuple(config)
        self.rows, self.cols = config.rows, config.cols
        self.n_nodes = self.rows * self.cols
        self.n_roads = 4 * self.n_nodes
        self.n_vehicles = config.n_vehicles
        self.n_envs = n_envs
        self.horizon = config.steps
        self.n_actions = len(ACTIONS)
        self.obs_dim = OBS_DIM
        self._build_map()
        self._rows = np.arange(n_envs)[:, None]
        #: one network steps on Python scalars (:meth:`step_one`); false forces the vectorised step
        self.scalar_path = True
        self.rng = np.random.default_rng(seed)
        self.reset_all()

    # -- the map -------------------------------------------------------------------------------
    def _build_map(self) -> None:
        r, c = self.rows, self.cols
        k = np.arange(self.n_nodes)
        self.node_rc = np.stack([k // c, k % c], axis=1)
        #: neighbour of each intersection in each direction, −1 off the grid, shape (nodes, 4)
        self.nbr = np.full((self.n_nodes, 4), -1, dtype=np.int64)
        for d, (dr, dc) in enumerate(_STEP):
            rr, cc = self.node_rc[:, 0] + dr, self.node_rc[:, 1] + dc
            ok = (rr >= 0) & (rr < r) & (cc >= 0) & (cc < c)
            self.nbr[ok, d] = rr[ok] * c + cc[ok]
        self.road_to = self.nbr.reshape(-1)  # end of road k·4 + d (−1: no such road)
        # free-flow times: fixed per grid size; the road back has the same time
        rng = np.random.default_rng(1000 * r + c)
        length = np.zeros((self.n_nodes, 4))
        for node in range(self.n_nodes):
            for d in (1, 2):  # east and south; west and north mirror them
                j = self.nbr[node, d]
                if j >= 0:
                    length[node, d] = length[j, (d + 2) % 4] = float(rng.integers(1, 4))
        self.length = length.reshape(-1)
        self.legal = self.nbr >= 0
        self._py_nbr, self._py_length, self._py_road_to = self.nbr.tolist(), self.length.tolist(), self.road_to.tolist()
        pos = self.node_rc / np.array([max(r - 1, 1), max(c - 1, 1)], dtype=np.float64)
        self._pos = pos
        self._out_feat = np.stack([self.legal.astype(np.float64), length / 3.0], axis=-1)  # (nodes, 4, 2)
        self._out_roads = k[:, None] * 4 + np.arange(4)
        self._py_pos = pos.tolist()
        self._py_legal = self._out_feat[..., 0].tolist()
        self._py_ff = self._out_feat[..., 1].tolist()

    def roads(self) -> list[tuple[int, int, int, float]]:
        """Every road as ``(road id, from, to, free-flow time)``."""
        return [(int(q), int(q // 4), int(self.road_to[q]), float(self.length[q]))
                for q in range(self.n_roads) if self.road_to[q] >= 0]

    # -- state ---------------------------------------------------------------------------------
    def reset_all(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        b, n = self.n_envs, self.n_vehicles
        self.status = np.zeros((b, n), dtype=np.int64)
        self.node = np.zeros((b, n), dtype=np.int64)
        self.road = np.zeros((b, n), dtype=np.int64)
        self.remaining = np.zeros((b, n))
        self.start = np.zeros((b, n), dtype=np.int64)
        self.goal = np.zeros((b, n), dtype=np.int64)
        self.departure = np.zeros((b, n), dtype=np.int64)
        self.arrival = np.full((b, n), -1, dtype=np.int64)
        self.t = np.zeros(b, dtype=np.int64)
        self.travel = np.zeros((b, n))  # steps on the way so far
        self.reset_envs(np.ones(b, dtype=bool))

    def reset_envs(self, mask: np.ndarray) -> None:
        """New vehicles (starts, goals, departures) in the networks where ``mask`` is true."""
        idx = np.nonzero(mask)[0]
        if idx.size == 0:
            return
        n, m = self.n_vehicles, self.n_nodes
        start = self.rng.integers(0, m, size=(idx.size, n))
        # goal: at least max(2, (rows + cols) // 3) roads away (a trip worth routing)
        rc = self.node_rc
        dist = np.abs(rc[:, None, :] - rc[None, :, :]).sum(-1)  # (nodes, nodes) in roads
        far = dist >= max(2, (self.rows + self.cols) // 3)
        u = self.rng.random((idx.size, n))
        choices = far[start]  # (k, n, nodes)
        counts = choices.sum(-1)
        pick = np.minimum((u * counts).astype(np.int64), counts - 1)
        goal = np.argmax(np.cumsum(choices, axis=-1) > pick[..., None], axis=-1)
        dep = self.rng.integers(0, int(self.cfg.depart_window * self.horizon) + 1, size=(idx.size, n))
        dep -= dep.min(axis=1, keepdims=True)  # someone leaves at step 0
        # new arrays, not writes into the old ones: snapshots (env.TrafficSnapshot) share these three
        self.start, self.goal, self.departure = self.start.copy(), self.goal.copy(), self.departure.copy()
        self.start[idx], self.goal[idx], self.departure[idx] = start, goal, dep
        self.node[idx] = start
        self.road[idx] = 0
        self.remaining[idx] = 0.0
        self.arrival[idx] = -1
        self.travel[idx] = 0.0
        self.t[idx] = 0
        self.status[idx] = np.where(dep == 0, AT_NODE, WAITING)

    @property
    def present(self) -> np.ndarray:
        """Vehicles on their way (departed, not arrived): the PettingZoo env's ``agents``."""
        return (self.status == AT_NODE) | (self.status == ON_ROAD)

    def road_loads(self, status: np.ndarray | None = None, road: np.ndarray | None = None) -> np.ndarray:
        """Vehicles on each road, shape ``(n_envs, n_roads)`` (of the given state arrays, or the current)."""
        status = self.status if status is None else status
        road = self.road if road is None else road
        b = status.shape[0]
        on = status == ON_ROAD
        flat = (np.arange(b)[:, None] * self.n_roads + road)[on]
        return np.bincount(flat, minlength=b * self.n_roads).reshape(b, self.n_roads)

    # -- dynamics ------------------------------------------------------------------------------
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance every network one step. ``actions``: ``(n_envs, n_vehicles)`` ints in ``0..4``.

        Returns ``(rewards, arrived_now, done)``: ``(n_envs, n_vehicles)`` floats and bools, and
        ``(n_envs,)`` bools (every vehicle arrived, or the horizon reached).
        """
        a = np.asarray(actions, dtype=np.int64).reshape(self.n_envs, self.n_vehicles)
        if a.size and a.view(np.uint64).max() >= self.n_actions:  # negatives wrap to huge values
            raise ValueError(f"actions must be in 0..{self.n_actions - 1}")
        if self.n_envs == 1 and self.scalar_path:
            rew, arrived, done = self.step_one(a[0].tolist())
            return np.array([rew]), np.array([arrived]), np.array([done])
        return self._step_batched(a)

    def _step_batched(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.cfg
        present = self.present
        # 1. vehicles at an intersection take the road they picked, if there is one
        d = np.maximum(a - 1, 0)
        nxt = self.nbr[self.node, d]
        move = (self.status == AT_NODE) & (a > 0) & (nxt >= 0)
        road = self.node * 4 + d
        self.road = np.where(move, road, self.road)
        self.remaining = np.where(move, self.length[road], self.remaining)
        self.status = np.where(move, ON_ROAD, self.status)
        # 2. everyone on a road advances at the speed its load allows
        on = self.status == ON_ROAD
        load = self.road_loads()[self._rows, self.road]
        speed = 1.0 / (1.0 + cfg.alpha * (load / cfg.capacity) ** cfg.beta)
        self.remaining = np.where(on, self.remaining - speed, self.remaining)
        # 3. the end of a road is the next intersection; the goal means arrival
        reach = on & (self.remaining <= _EPS)
        self.node = np.where(reach, self.road_to[self.road], self.node)
        self.remaining = np.where(reach, 0.0, self.remaining)
        arrived = reach & (self.node == self.goal)
        self.status = np.where(reach, np.where(arrived, ARRIVED, AT_NODE), self.status)
        # 4. reward
        rew = np.where(present, -cfg.step_cost, 0.0) + np.where(arrived, cfg.arrival_bonus, 0.0)
        self.travel += present
        # 5. time; departures; skip empty time
        self.t += 1
        self.arrival = np.where(arrived, self.t[:, None], self.arrival)
        self._depart()
        done = (self.t >= self.horizon) | (self.status == ARRIVED).all(axis=1)
        return rew, arrived, done

    def step_one(self, actions: list[int]) -> tuple[list[float], list[bool], bool]:
        """The same step for one network (``n_envs == 1``) on Python scalars: at 1–64 vehicles the
        ~40 numpy calls of the vectorised step cost more than its arithmetic. Same results, bit for
        bit (``tests/test_traffic_env.py`` holds the two paths to each other)."""
        cfg = self.cfg
        status, node, road = self.status[0].tolist(), self.node[0].tolist(), self.road[0].tolist()
        rem, goal, travel = self.remaining[0].tolist(), self.goal[0].tolist(), self.travel[0].tolist()
        nbr, length, road_to = self._py_nbr, self._py_length, self._py_road_to
        n = self.n_vehicles
        present = [s == AT_NODE or s == ON_ROAD for s in status]
        for i in range(n):  # 1. take the road picked
            a = actions[i]
            if status[i] == AT_NODE and a > 0 and nbr[node[i]][a - 1] >= 0:
                road[i] = node[i] * 4 + a - 1
                rem[i] = length[road[i]]
                status[i] = ON_ROAD
        load: dict[int, int] = {}
        for i in range(n):
            if status[i] == ON_ROAD:
                load[road[i]] = load.get(road[i], 0) + 1
        rew = [0.0] * n
        arrived = [False] * n
        t = int(self.t[0]) + 1
        for i in range(n):  # 2. advance; 3. reach the next intersection
            if status[i] == ON_ROAD:
                rem[i] = rem[i] - 1.0 / (1.0 + cfg.alpha * (load[road[i]] / cfg.capacity) ** cfg.beta)
                if rem[i] <= _EPS:
                    node[i] = road_to[road[i]]
                    rem[i] = 0.0
                    arrived[i] = node[i] == goal[i]
                    status[i] = ARRIVED if arrived[i] else AT_NODE
            if present[i]:  # 4. reward
                rew[i] = -cfg.step_cost + (cfg.arrival_bonus if arrived[i] else 0.0)
                travel[i] += 1.0
            else:
                rew[i] = 0.0 + (cfg.arrival_bonus if arrived[i] else 0.0)
        self.status[0], self.node[0], self.road[0] = status, node, road
        self.remaining[0], self.travel[0], self.t[0] = rem, travel, t
        if any(arrived):
            self.arrival[0] = [t if arr else x for arr, x in zip(arrived, self.arrival[0].tolist(), strict=True)]
        if WAITING in status:  # 5. departures; with nobody on the way, skip to the next one
            dep = self.departure[0].tolist()
            if not any(s == AT_NODE or s == ON_ROAD for s in status):
                t = max(t, min(d for s, d in zip(status, dep, strict=True) if s == WAITING))
                self.t[0] = t
            status = [AT_NODE if s == WAITING and d <= t else s for s, d in zip(status, dep, strict=True)]
            self.status[0] = status
        done = int(self.t[0]) >= self.horizon or all(s == ARRIVED for s in status)
        return rew, arrived, done

    def _depart(self) -> None:
        waiting = self.status == WAITING
        idle = ~self.present.any(axis=1) & waiting.any(axis=1)
        if idle.any():  # nobody on the way: jump to the next departure
            nxt = np.where(waiting, self.departure, np.iinfo(np.int64).max).min(axis=1)
            self.t = np.where(idle, np.maximum(self.t, nxt), self.t)
        self.status = np.where(waiting & (self.departure <= self.t[:, None]), AT_NODE, self.status)

    # -- what the vehicles see -----------------------------------------------------------------
    def decision_node(self) -> np.ndarray:
        """The intersection each vehicle is at or driving to (its goal once arrived)."""
        on = self.status == ON_ROAD
        node = np.where(on, self.road_to[self.road], self.node)
        return np.where(self.status == ARRIVED, self.goal, node)

    def observe(self) -> np.ndarray:
        """Every vehicle's observation, ``(n_envs, n_vehicles, 21)`` float32 (a new array)."""
        if self.n_envs == 1 and self.scalar_path:
            return self.observe_vehicles(range(self.n_vehicles))[None]
        cfg = self.cfg
        on = self.status == ON_ROAD
        dn = self.decision_node()
        here = self._pos[self.node]
        frac = np.where(on, 1.0 - self.remaining / np.maximum(self.length[self.road], _EPS), 0.0)[..., None]
        pos = here + (self._pos[dn] - here) * frac
        goal = self._pos[self.goal]
        loads = self.road_loads()
        out_load = np.take_along_axis(loads, self._out_roads[dn].reshape(self.n_envs, -1), axis=1)
        out_load = np.minimum(out_load.reshape(self.n_envs, self.n_vehicles, 4) / (4.0 * cfg.capacity), 1.0)
        feat = self._out_feat[dn]  # (b, n, 4, 2)
        left = np.where(on, self.remaining / np.maximum(self.length[self.road], _EPS), 0.0)
        o = np.concatenate([
            pos, (self.status == AT_NODE)[..., None], goal, goal - pos,
            feat[..., 0], feat[..., 1], out_load,
            np.broadcast_to((self.t / self.horizon)[:, None, None], (self.n_envs, self.n_vehicles, 1)),
            left[..., None],
        ], axis=-1)
        return o.astype(np.float32)

    def observe_vehicles(self, vehicles: Iterable[int]) -> np.ndarray:
        """The observations of the given vehicles of a one-network sim, ``(k, 21)`` float32, on Python
        scalars (the same numbers as :meth:`observe`; the env asks only for the vehicles on their way)."""
        vehicles = list(vehicles)
        status, node, road = self.status[0].tolist(), self.node[0].tolist(), self.road[0].tolist()
        rem, goal = self.remaining[0].tolist(), self.goal[0].tolist()
        pos, length, road_to, legal, ff = self._py_pos, self._py_length, self._py_road_to, self._py_legal, self._py_ff
        load: dict[int, int] = {}
        for i, s in enumerate(status):
            if s == ON_ROAD:
                load[road[i]] = load.get(road[i], 0) + 1
        scale = 4.0 * self.cfg.capacity
        t = int(self.t[0]) / self.horizon
        flat: list[float] = []
        for i in vehicles:
            s = status[i]
            on = s == ON_ROAD
            dn = road_to[road[i]] if on else (goal[i] if s == ARRIVED else node[i])
            hr, hc = pos[node[i]]
            if on:
                left = rem[i] / max(length[road[i]], _EPS)
                frac = 1.0 - left
                tr, tc = pos[dn]
                pr, pc = hr + (tr - hr) * frac, hc + (tc - hc) * frac
            else:
                left, pr, pc = 0.0, hr, hc
            gr, gc = pos[goal[i]]
            q = dn * 4
            flat += (pr, pc, 1.0 if s == AT_NODE else 0.0, gr, gc, gr - pr, gc - pc)
            flat += legal[dn]
            flat += ff[dn]
            if load:
                flat += (min(load.get(q, 0) / scale, 1.0), min(load.get(q + 1, 0) / scale, 1.0),
                         min(load.get(q + 2, 0) / scale, 1.0), min(load.get(q + 3, 0) / scale, 1.0))
            else:
                flat += (0.0, 0.0, 0.0, 0.0)
            flat += (t, left)
        return np.fromiter(flat, dtype=np.float32, count=len(flat)).reshape(len(vehicles), OBS_DIM)

    # -- the exact state -----------------------------------------------------------------------
    def state_dict(self, b: int = 0, arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """Network ``b``'s exact state as JSON-able data (what ``describe()`` shows an LLM); of the
        given state arrays (:data:`FIELDS`, e.g. a snapshot) or the current ones."""
        s = arrays if arrays is not None else {f: getattr(self, f) for f in FIELDS}
        if arrays is not None:
            b = 0
        loads = self.road_loads(s["status"][b : b + 1], s["road"][b : b + 1])[0]
        status, node, road = s["status"][b].tolist(), s["node"][b].tolist(), s["road"][b].tolist()
        vehicles = []
        for i in range(self.n_vehicles):
            on = status[i] == ON_ROAD
            arrival = int(s["arrival"][b, i])
            vehicles.append({
                "id": f"agent_{i}",
                "status": STATUS[status[i]],
                "at": None if on else node[i],
                "road": [node[i], int(self.road_to[road[i]])] if on else None,
                "remaining": round(float(s["remaining"][b, i]), 4) if on else 0.0,
                "start": int(s["start"][b, i]),
                "goal": int(s["goal"][b, i]),
                "departure": int(s["departure"][b, i]),
                "arrival": arrival if arrival >= 0 else None,
                "travel_time": int(s["travel"][b, i]),
            })
        cfg = self.cfg
        return {
            "t": int(s["t"][b]),
            "horizon": self.horizon,
            "grid": {"rows": self.rows, "cols": self.cols},
            "roads": [
                {"from": fr, "to": to, "free_flow": ff, "vehicles": int(loads[q])}
                for q, fr, to, ff in self.roads()
            ],
            "vehicles": vehicles,
            "rules": {"capacity": cfg.capacity, "alpha": cfg.alpha, "beta": cfg.beta,
                      "step_cost": cfg.step_cost, "arrival_bonus": cfg.arrival_bonus},
        }

    def metrics(self, b: int = 0, status: list[int] | None = None) -> dict[str, float]:
        """Episode-so-far numbers of network ``b``: vehicles arrived (count and share), their mean travel
        time (steps), vehicles on their way."""
        status = self.status[b].tolist() if status is None else status
        travel = self.travel[b].tolist()
        arr = [tt for s, tt in zip(status, travel, strict=True) if s == ARRIVED]
        return {
            "arrived": float(len(arr)),
            "arrival_rate": len(arr) / self.n_vehicles,
            "mean_travel_time": sum(arr) / len(arr) if arr else 0.0,
            "on_the_way": float(sum(s == AT_NODE or s == ON_ROAD for s in status)),
        }
