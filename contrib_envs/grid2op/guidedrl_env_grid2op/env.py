"""A Gymnasium env over Grid2Op (LightSim2Grid backend, the ``test=True`` datasets shipped with grid2op).

Hand-written rather than ``grid2op.gym_compat.GymnasiumEnv``: its ``DiscreteActSpace`` materialises
one Grid2Op action object per action (about 12 s and 0.4 GB on the 67k-action grid) and has no hook
for the factored vocabulary; here an index becomes a Grid2Op action only when it is played.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from guidedrl_env_grid2op.vocabulary import GridActions

GRIDS = ("l2rpn_case14_sandbox", "l2rpn_neurips_2020_track1")
LOAD_SCALE_MW = 100.0
STEPS_PER_DAY = 288
"""The step index enters the observation in days (``t / 288``), on the scale of the other features: raw
(0..288) it dominated the first layer of the policy and critic networks (every trained policy then
played one constant action)."""


# The line attacker of Grid2Op's documentation for the 14-bus grid: one of these lines is cut for an
# hour (12 steps), at most every two hours on average (NeurIPS 2020 track 1 ships its own attacker).
CASE14_ATTACKED_LINES = ["1_3_3", "1_4_4", "3_6_15", "9_10_12", "11_12_13", "12_13_14"]


def make_grid2op(grid: str, *, opponent: bool = False) -> Any:
    """A Grid2Op env on the dataset shipped with the package, LightSim2Grid backend, L2RPNReward;
    ``opponent=True`` adds a random line attacker on case14.

    The chronics are held in memory (Grid2Op's ``MultifolderWithCache``, every shipped chronic
    loaded once): a plain ``Multifolder`` re-reads the chronic's CSV files with pandas on every
    reset, 15 ms (case14) / 94 ms (NeurIPS 2020) per reset, which dominated early training where
    random actions end episodes within a few steps; cached: 3-4 ms, the same episodes."""
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; the grids shipped for offline use are {', '.join(GRIDS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # grid2op warns that test=True datasets are small
        import grid2op
        from grid2op.Chronics import MultifolderWithCache
        from grid2op.Reward import L2RPNReward
        from lightsim2grid import LightSimBackend

        kwargs: dict[str, Any] = {"chronics_class": MultifolderWithCache}
        if opponent and grid == "l2rpn_case14_sandbox":
            from grid2op.Action import PowerlineSetAction
            from grid2op.Opponent import BaseActionBudget, RandomLineOpponent

            kwargs |= {
                "opponent_attack_cooldown": 12, "opponent_attack_duration": 12, "opponent_budget_per_ts": 0.5,
                "opponent_init_budget": 0.0, "opponent_action_class": PowerlineSetAction,
                "opponent_class": RandomLineOpponent, "opponent_budget_class": BaseActionBudget,
                "kwargs_opponent": {"lines_attacked": CASE14_ATTACKED_LINES},
            }
        g2env = grid2op.make(grid, test=True, backend=LightSimBackend(), reward_class=L2RPNReward, **kwargs)
        g2env.chronics_handler.real_data.set_filter(lambda path: True)
        g2env.chronics_handler.reset()  # loads every chronic into the cache (Grid2Op requires this call)
        return g2env


def grid_vocabulary(g2env: Any, grid: str) -> GridActions:
    """The factored vocabulary of a Grid2Op env's grid (from its class attributes only)."""
    cls = type(g2env)
    names: list[list[str]] = [[""] * int(n) for n in cls.sub_info]
    lines: list[list[int]] = [[] for _ in cls.sub_info]
    for i, (s, p) in enumerate(zip(cls.load_to_subid, cls.load_to_sub_pos, strict=True)):
        names[s][p] = f"load {i}"
    for i, (s, p) in enumerate(zip(cls.gen_to_subid, cls.gen_to_sub_pos, strict=True)):
        names[s][p] = f"gen {i}"
    for i, (s, p) in enumerate(zip(cls.storage_to_subid, cls.storage_to_sub_pos, strict=True)):
        names[s][p] = f"storage {i}"
    ends = ((cls.line_or_to_subid, cls.line_or_to_sub_pos, cls.line_ex_to_subid),
            (cls.line_ex_to_subid, cls.line_ex_to_sub_pos, cls.line_or_to_subid))
    for subs, positions, others in ends:
        for i, (s, p, other) in enumerate(zip(subs, positions, others, strict=True)):
            names[s][p] = f"line {i} (to sub {other})"
            lines[s].append(int(p))
    return GridActions(grid_name=grid, n_line=int(cls.n_line), element_names=names, line_positions=lines)


def obs_layout(n_line: int, dim_topo: int, n_load: int, n_gen: int, n_sub: int) -> dict[str, slice]:
    """Where each feature sits in the Box observation."""
    sizes = [
        ("rho", n_line), ("line_status", n_line), ("topo_vect", dim_topo), ("load_p", n_load),
        ("gen_p", n_gen), ("cooldown_line", n_line), ("cooldown_sub", n_sub), ("time", 3),
    ]
    out, start = {}, 0
    for name, size in sizes:
        out[name] = slice(start, start + size)
        start += size
    return out


class Grid2OpEnv(gym.Env):
    """Grid2Op as a Gymnasium env with a Discrete action space over :class:`GridActions`.

    Observation (float32 Box, :func:`obs_layout`): line loadings ``rho`` (flow / thermal limit),
    line status (0/1), topology vector (bus 1/2, -1 = disconnected), loads (MW / 100), generation
    (share of ``gen_pmax``), cooldowns of lines and substations (steps), hour/24, minute/60 and the
    step index within the episode in days (``t / 288``).

    Reward: Grid2Op's ``L2RPNReward`` divided by the number of lines: each step scores the mean over
    lines of ``max(0, 1 - min(rho, 1)^2)`` (the L2RPN "line margin" reward), in [0, 1]; 0 on the step
    that ends the game (blackout) or the data. Episode reward therefore grows with survival.

    Episodes: ``reset(seed=...)`` draws a chronic from ``chronics`` (default: all shipped with the
    test dataset) with the Gymnasium RNG, or ``options={"chronic": i}`` picks one; an episode ends on
    game over (``terminated``), at the end of the chronic or after ``max_steps`` steps (``truncated``).
    ``info["metrics"]`` holds the episode so far: ``survival_steps``, ``survived`` (1 while no game
    over), ``max_rho``, ``illegal_actions``.

    ``opponent=True`` (case14 only; NeurIPS 2020 track 1 always has its own) cuts one of
    :data:`CASE14_ATTACKED_LINES` for an hour every two hours on average: without reconnecting lines
    and re-routing flows the grid does not last a day, which makes survival a real test.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        grid: str = "l2rpn_case14_sandbox",
        *,
        max_steps: int | None = 288,
        chronics: Sequence[int] | None = None,
        opponent: bool = False,
        vocabulary: GridActions | None = None,
        on_observation: Callable[[str, Any, list[int]], None] | None = None,
    ) -> None:
        self.grid = grid
        self.g2env = make_grid2op(grid, opponent=opponent)
        self.vocabulary = vocabulary if vocabulary is not None else grid_vocabulary(self.g2env, grid)
        cls = type(self.g2env)
        n_chronics = len(self.g2env.chronics_handler.real_data.subpaths)
        self.chronics = list(range(n_chronics)) if chronics is None else [int(c) for c in chronics]
        bad = [c for c in self.chronics if not 0 <= c < n_chronics]
        if bad or not self.chronics:
            raise ValueError(f"chronics must be a non-empty list within 0..{n_chronics - 1} for {grid}, got {chronics}")
        self.max_steps = max_steps
        self.on_observation = on_observation
        self.layout = obs_layout(cls.n_line, cls.dim_topo, cls.n_load, cls.n_gen, cls.n_sub)
        size = self.layout["time"].stop
        low = np.full(size, -np.inf, dtype=np.float32)
        high = np.full(size, np.inf, dtype=np.float32)
        bounds = (("rho", 0, np.inf), ("line_status", 0, 1), ("topo_vect", -1, 2),
                  ("cooldown_line", 0, np.inf), ("cooldown_sub", 0, np.inf), ("time", 0, np.inf))
        for name, lo, hi in bounds:
            low[self.layout[name]], high[self.layout[name]] = lo, hi
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space = gym.spaces.Discrete(self.vocabulary.n)
        self._gen_pmax = np.maximum(np.asarray(cls.gen_pmax, dtype=np.float64), 1e-3)
        self._actions: dict[int, Any] = {}
        self.obs: Any = None
        self.recent: deque[int] = deque(maxlen=5)
        self._t = 0
        self._chronic = -1
        self._metrics: dict[str, float] = {}

    # --- Grid2Op <-> vectors ------------------------------------------------------------------------
    def grid2op_action(self, index: int) -> Any:
        """The Grid2Op action of an index (built once, on first use)."""
        act = self._actions.get(index)
        if act is None:
            d = self.vocabulary.to_structured(index)
            space = self.g2env.action_space
            if d["kind"] == "do_nothing":
                act = space({})
            elif d["kind"] == "line":
                status = np.zeros(self.vocabulary.n_line, dtype=np.int32)
                status[d["line"]] = 1 if d["status"] == "on" else -1
                act = space({"set_line_status": status})
            else:
                act = space({"set_bus": {"substations_id": [(d["substation"], np.asarray(d["bus_layout"]))]}})
            self._actions[index] = act
        return act

    def vector(self, g2obs: Any, t: int) -> np.ndarray:
        out = np.empty(self.observation_space.shape, dtype=np.float32)
        lay = self.layout
        out[lay["rho"]] = g2obs.rho
        out[lay["line_status"]] = g2obs.line_status
        out[lay["topo_vect"]] = g2obs.topo_vect
        out[lay["load_p"]] = g2obs.load_p / LOAD_SCALE_MW
        out[lay["gen_p"]] = g2obs.gen_p / self._gen_pmax
        out[lay["cooldown_line"]] = g2obs.time_before_cooldown_line
        out[lay["cooldown_sub"]] = g2obs.time_before_cooldown_sub
        out[lay["time"]] = (g2obs.hour_of_day / 24.0, g2obs.minute_of_hour / 60.0, t / STEPS_PER_DAY)
        return out

    # --- Gymnasium ----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = options or {}
        chronic = options.get("chronic")
        if chronic is None:
            chronic = self.chronics[int(self.np_random.integers(len(self.chronics)))]
        g2seed = int(self.np_random.integers(2**31 - 1))
        self.obs = self.g2env.reset(seed=g2seed, options={"time serie id": int(chronic)})
        self._t = 0
        self._chronic = int(chronic)
        self.recent.clear()
        self._metrics = {
            "survival_steps": 0.0, "survived": 1.0, "max_rho": float(self.obs.rho.max()), "illegal_actions": 0.0,
        }
        obs = self.vector(self.obs, 0)
        return obs, self._info(obs, illegal=False, chronic=int(chronic))

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.obs is None:
            raise RuntimeError("call reset() before step()")
        index = int(np.asarray(action).item())
        g2obs, reward, done, g2info = self.g2env.step(self.grid2op_action(index))
        self._t += 1
        self.recent.append(index)
        game_over = bool(done and g2info.get("exception"))
        illegal = bool(g2info.get("is_illegal", False))
        self._metrics["survival_steps"] = float(self._t)
        self._metrics["survived"] = 0.0 if game_over else 1.0
        self._metrics["illegal_actions"] += float(illegal)
        if not game_over:
            self._metrics["max_rho"] = max(self._metrics["max_rho"], float(g2obs.rho.max()))
            self.obs = g2obs
        obs = self.vector(self.obs, self._t)
        truncated = not game_over and bool(done or (self.max_steps is not None and self._t >= self.max_steps))
        info = self._info(obs, illegal=illegal, chronic=self._chronic)
        return obs, float(reward) / self.vocabulary.n_line, game_over, truncated, info

    def _info(self, obs: np.ndarray, *, illegal: bool, chronic: int) -> dict[str, Any]:
        key = snapshot_key(obs)
        if self.on_observation is not None:
            self.on_observation(key, self.obs, list(self.recent))
        return {"snapshot": key, "is_illegal": illegal, "chronic": chronic, "metrics": dict(self._metrics)}

    def close(self) -> None:
        if getattr(self, "g2env", None) is not None:
            self.g2env.close()
            self.g2env = None


def snapshot_key(obs: np.ndarray) -> str:
    """The key of a Box observation in the adapter's snapshot cache (a digest of its float32 bytes)."""
    return hashlib.blake2b(np.ascontiguousarray(obs, dtype=np.float32).tobytes(), digest_size=8).hexdigest()
