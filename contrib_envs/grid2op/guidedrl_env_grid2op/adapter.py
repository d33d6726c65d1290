"""Grid2Op adapters: describe() in words + JSON, simulate() through ``obs.simulate``, a greedy expert.

How a ``state`` maps to a Grid2Op observation (for :meth:`Grid2OpAdapter.simulate`): every env the
adapter makes reports each observation it returns to the adapter, which keeps the Grid2Op
observation (and the env that made it) in a bounded LRU cache keyed by a digest of the Box
observation (``info["snapshot"]``; :func:`~guidedrl_env_grid2op.env.snapshot_key`). ``describe()``
puts that key in the JSON state as ``"snapshot"``, so a state that went through a prompt and back
still finds its observation. States that were evicted (``cache_size`` observations back), come from
another process (``SubprocVectorEnv`` workers) or from a closed env cannot be simulated:
``simulate()`` then answers ``ok: false`` with that reason, never raises.
"""

from __future__ import annotations

import copy
import functools
from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np

from guidedrl.envs import Description, EnvAdapter, Expert, InvalidAction, SimResult
from guidedrl_env_grid2op.env import (
    STEPS_PER_DAY, Grid2OpEnv, grid_vocabulary, make_grid2op, obs_layout, snapshot_key,
)
from guidedrl_env_grid2op.vocabulary import GridActions

NEAR_LIMIT = 0.9


@functools.cache
def grid_structure(grid: str) -> tuple[GridActions, dict[str, Any]]:
    """The vocabulary and the static facts of a grid (built once per process: ~1-3 s, a Grid2Op make)."""
    g2env = make_grid2op(grid)
    try:
        cls = type(g2env)
        facts = {
            "n_line": int(cls.n_line), "n_sub": int(cls.n_sub), "n_load": int(cls.n_load), "n_gen": int(cls.n_gen),
            "dim_topo": int(cls.dim_topo),
            "line_or_sub": [int(s) for s in cls.line_or_to_subid],
            "line_ex_sub": [int(s) for s in cls.line_ex_to_subid],
            "line_or_pos": [int(p) for p in cls.line_or_to_sub_pos],
            "line_ex_pos": [int(p) for p in cls.line_ex_to_sub_pos],
            "gen_pmax": np.asarray(cls.gen_pmax, dtype=np.float64),
            "sub_start": np.concatenate([[0], np.cumsum(cls.sub_info)[:-1]]).astype(int),
        }
        return grid_vocabulary(g2env, grid), facts
    finally:
        g2env.close()


class Grid2OpAdapter(EnvAdapter):
    """Shared by the Grid2Op grids. Options (``make_adapter(id, **options)``):

    - ``max_steps`` (288 = one day at 5 min; ``None`` = the whole chronic) and ``chronics`` (indices the
      episodes draw from) go to every env it makes;
    - ``danger`` (0.95): max line loading above which the expert acts;
    - ``shortlist_size`` (12): candidates listed in each state;
    - ``simulate_candidates`` (True): ``describe()`` simulates the candidates (and doing nothing) when
      the grid is in danger or a line/substation can be restored, and puts each one's simulated max
      loading in the JSON, so an expert (or LLM) can choose from the JSON alone;
    - ``cache_size`` (4096): Grid2Op observations kept for ``simulate()``.
    """

    grid: ClassVar[str] = ""

    def __init__(
        self,
        *,
        danger: float = 0.95,
        shortlist_size: int = 12,
        simulate_candidates: bool = True,
        cache_size: int = 4096,
        **make_kwargs: Any,
    ) -> None:
        super().__init__(**make_kwargs)
        self.danger = float(danger)
        self.shortlist_size = int(shortlist_size)
        self.simulate_candidates = bool(simulate_candidates)
        self.cache_size = int(cache_size)
        self._snapshots: OrderedDict[str, tuple[Any, list[int], Grid2OpEnv]] = OrderedDict()
        self._descriptions: OrderedDict[str, Description] = OrderedDict()

    # --- envs and vocabulary --------------------------------------------------------------------------
    def make(self, **kwargs: Any) -> Grid2OpEnv:
        options = {**self.make_kwargs, **kwargs}
        env = Grid2OpEnv(self.grid, vocabulary=self.vocabulary, **options)
        env.on_observation = functools.partial(self._remember, env=env)
        return env

    @property
    def vocabulary(self) -> GridActions:
        return grid_structure(self.grid)[0]

    def action_vocabulary(self, space: Any) -> GridActions:
        return self.vocabulary

    @property
    def facts(self) -> dict[str, Any]:
        return grid_structure(self.grid)[1]

    def _remember(self, key: str, g2obs: Any, recent: list[int], *, env: Grid2OpEnv) -> None:
        self._snapshots[key] = (g2obs, recent, env)
        self._descriptions.pop(key, None)  # a state seen again (other recent actions) is described anew
        self._snapshots.move_to_end(key)
        while len(self._snapshots) > self.cache_size:
            self._snapshots.popitem(last=False)

    def snapshot(self, state: Any) -> tuple[Any, list[int], Grid2OpEnv] | None:
        """The cached (Grid2Op observation, recent actions, env) of a JSON state or a Box observation."""
        if isinstance(state, dict):
            key = state.get("snapshot")
        else:
            key = snapshot_key(np.asarray(state, dtype=np.float32))
        return self._snapshots.get(key) if isinstance(key, str) else None

    # --- simulate -------------------------------------------------------------------------------------
    def simulate(self, state: Any, action: Any) -> SimResult:
        """One step of ``action`` from ``state`` through Grid2Op's ``obs.simulate`` (on the chronic's
        forecast), as core's :class:`~guidedrl.envs.SimResult`: ``ok``, ``reward`` (the env's per-step
        reward), ``done``, ``reason`` and ``info = {"max_rho", "overloaded_lines"}`` plus, when ``ok``,
        ``info["obs_next"]``: the simulated next observation, the env's Box vector as a list (results
        compare with ``==``). ``ok`` is false for an invalid or illegal action, a game over, or a
        state without a snapshot."""
        try:
            index = self.vocabulary.parse(action)
        except InvalidAction as exc:
            return _sim_result(False, reason=f"invalid action: {exc}")
        snap = self.snapshot(state)
        if snap is None:
            return _sim_result(
                False, reason="no Grid2Op snapshot for this state (evicted, from another process, or never seen)"
            )
        g2obs, _, env = snap
        if env.g2env is None:
            return _sim_result(False, reason="the env that produced this state is closed")
        try:
            sim_obs, reward, done, info = g2obs.simulate(env.grid2op_action(index), time_step=1)
        except Exception as exc:  # noqa: BLE001 - Grid2Op's own errors become a reason, never a crash
            return _sim_result(False, reason=f"Grid2Op could not simulate it: {type(exc).__name__}: {exc}")
        exceptions = info.get("exception") or []
        detail = str(exceptions[0]) if exceptions else ""
        if info.get("is_illegal"):
            return _sim_result(False, reason=f"illegal action (cooldown or too many changes) {detail}".strip())
        if done:
            return _sim_result(False, done=True, reason=f"game over: {detail or 'the grid collapsed'}")
        rho = np.asarray(sim_obs.rho)
        # the simulated next observation as the env's Box vector (ACE stores checked transitions)
        if isinstance(state, dict):
            step = int(state.get("step", 0))
        else:
            step = int(round(float(self.split(np.asarray(state, dtype=np.float32))["time"][2]) * STEPS_PER_DAY))
        return _sim_result(
            True,
            reward=round(float(reward) / self.facts["n_line"], 4),
            max_rho=round(float(rho.max()), 4),
            overloaded_lines=[int(i) for i in np.nonzero(rho > 1.0)[0]],
            obs_next=env.vector(sim_obs, step + 1).tolist(),
        )

    # --- describe -------------------------------------------------------------------------------------
    def split(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        f = self.facts
        layout = obs_layout(f["n_line"], f["dim_topo"], f["n_load"], f["n_gen"], f["n_sub"])
        obs = np.asarray(obs, dtype=np.float64).ravel()
        if obs.size != layout["time"].stop:
            raise ValueError(f"{self.env_id} observations have {layout['time'].stop} numbers, got {obs.size}")
        return {name: obs[sl] for name, sl in layout.items()}

    def candidates(self, parts: dict[str, np.ndarray]) -> list[int]:
        """A shortlist of action indices for a state: reconnect lines that may be, merge split
        substations back, and split the end substations of the most loaded lines (smallest splits that
        move the line onto the other bus first). Substations and lines in cooldown are left out."""
        f, vocab = self.facts, self.vocabulary
        rho, status = parts["rho"], parts["line_status"] > 0.5
        line_cd, sub_cd = parts["cooldown_line"], parts["cooldown_sub"]
        out: list[int] = []
        reconnectable = np.nonzero(~status & (line_cd == 0))[0]
        out += [vocab.index_of({"kind": "line", "line": int(line), "status": "on"}) for line in reconnectable]
        topo = parts["topo_vect"]
        for s in range(f["n_sub"]):
            sl = slice(f["sub_start"][s], f["sub_start"][s] + int(vocab.sub_size[s]))
            if sub_cd[s] == 0 and np.any(topo[sl] == 2) and vocab.n_layouts[s]:
                merge = {"kind": "substation", "substation": s, "bus_layout": [1] * int(vocab.sub_size[s])}
                out.append(vocab.index_of(merge))
        hot = [int(l) for l in np.argsort(-rho) if rho[l] > self.danger][:2]
        per_sub = max(2, self.shortlist_size // 3)
        for line in hot:
            ends = ((f["line_or_sub"][line], f["line_or_pos"][line]), (f["line_ex_sub"][line], f["line_ex_pos"][line]))
            for sub, pos in ends:
                if sub_cd[sub] != 0 or not vocab.n_layouts[sub]:
                    continue
                rng = vocab.substation_range(sub)
                if len(rng) > 4096:  # the 17-element substation of the 67k grid: only 1- and 2-element moves
                    picks = _small_splits(vocab, sub, pos)
                else:
                    masks = np.asarray([vocab.layout_mask(i) for i in rng])
                    n = int(vocab.sub_size[sub])
                    ones = np.array([bin(int(m)).count("1") for m in masks])
                    minority = np.minimum(ones, n - ones)
                    moves_line = ((masks >> pos) & 1).astype(bool) if pos else ones > 0
                    order = np.lexsort((minority, ~moves_line))
                    picks = [rng[int(k)] for k in order if ones[k] > 0]
                out += picks[:per_sub]
        seen: set[int] = set()
        return [i for i in out if not (i in seen or seen.add(i))][: self.shortlist_size]

    def describe(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> Description:
        """The state in words and JSON. Descriptions of states with a snapshot are kept (LRU,
        ``cache_size`` of them, the snapshot key being a digest of the whole observation): ACE's
        critic, its fine-tuning export and the action question describe the same past states again,
        and a description in danger simulates up to 13 actions (~70 ms on case14). Each call gets its
        own copy of the JSON state."""
        parts = self.split(obs)
        key = info.get("snapshot") if isinstance(info, dict) else None
        if not isinstance(key, str):
            key = snapshot_key(obs)
        snap = self.snapshot({"snapshot": key})
        if snap is None:
            return self._describe(parts, key, None)
        desc = self._descriptions.get(key)
        if desc is None:
            desc = self._descriptions[key] = self._describe(parts, key, snap)
            while len(self._descriptions) > self.cache_size:
                self._descriptions.popitem(last=False)
        else:
            self._descriptions.move_to_end(key)
        return Description(text=desc.text, state=copy.deepcopy(desc.state))

    def _describe(
        self, parts: dict[str, np.ndarray], key: str, snap: tuple[Any, list[int], Grid2OpEnv] | None
    ) -> Description:
        f, vocab = self.facts, self.vocabulary
        rho = parts["rho"]
        status = parts["line_status"] > 0.5
        max_line = int(np.argmax(rho))
        overloaded = [int(l) for l in np.nonzero(rho > 1.0)[0]]
        near = [int(l) for l in np.nonzero((rho > NEAR_LIMIT) & (rho <= 1.0))[0]]
        disconnected = [int(l) for l in np.nonzero(~status)[0]]
        topo = parts["topo_vect"].astype(int)
        split_subs = {}
        for s in range(f["n_sub"]):
            layout = topo[f["sub_start"][s] : f["sub_start"][s] + int(vocab.sub_size[s])]
            if np.any(layout == 2):
                split_subs[str(s)] = [int(b) for b in layout]
        load_mw = float(parts["load_p"].sum() * 100.0)
        gen_mw = float((parts["gen_p"] * f["gen_pmax"]).sum())
        recent = list(snap[1][-3:]) if snap is not None else []
        shortlist = self.candidates(parts)
        state: dict[str, Any] = {
            "grid": self.grid,
            "snapshot": key,
            "step": int(round(parts["time"][2] * STEPS_PER_DAY)),
            "max_rho": round(float(rho.max()), 4),
            "max_rho_line": max_line,
            "rho": [round(float(r), 3) for r in rho],
            "overloaded_lines": overloaded,
            "near_limit_lines": near,
            "disconnected_lines": disconnected,
            "split_substations": split_subs,
            "cooldown_lines": {str(l): int(c) for l, c in enumerate(parts["cooldown_line"]) if c > 0},
            "cooldown_substations": {str(s): int(c) for s, c in enumerate(parts["cooldown_sub"]) if c > 0},
            "total_load_mw": round(load_mw, 1),
            "total_generation_mw": round(gen_mw, 1),
            "recent_actions": [vocab.to_structured(i) for i in recent],
            "danger_threshold": self.danger,
            "candidates": [{"action": i, "what": vocab.describe_action(i)} for i in shortlist],
            "elements": {str(s): vocab.element_names[s] for s in sorted(_substations(vocab, shortlist))},
        }
        worth_simulating = shortlist and (rho.max() > self.danger or disconnected or split_subs)
        if self.simulate_candidates and snap is not None and worth_simulating:
            base = self.simulate(state, 0)
            state["do_nothing_sim"] = {"ok": base.ok, "max_rho": base.info["max_rho"]}
            for c in state["candidates"]:
                r = self.simulate(state, c["action"])
                c["sim_ok"], c["sim_max_rho"] = r.ok, r.info["max_rho"]
        return Description(text=self._text(state), state=state)

    def _text(self, s: dict[str, Any]) -> str:
        def pct(line: int) -> str:
            return f"line {line} ({s['rho'][line] * 100:.0f}%)"

        parts = [
            f"Step {s['step']}. Total load {s['total_load_mw']:.0f} MW, generation {s['total_generation_mw']:.0f} MW. "
            f"The most loaded line is {pct(s['max_rho_line'])} of its thermal limit."
        ]
        overloaded = ", ".join(pct(line) for line in s["overloaded_lines"]) or "none"
        near = ", ".join(pct(line) for line in s["near_limit_lines"]) or "none"
        parts.append(f"Overloaded lines (>100%): {overloaded}. Lines near their limit (>{NEAR_LIMIT * 100:.0f}%): {near}.")
        if s["disconnected_lines"]:
            parts.append("Disconnected lines: " + ", ".join(map(str, s["disconnected_lines"])) + ".")
        if s["split_substations"]:
            parts.append("Substations split on two buses: " + ", ".join(s["split_substations"]) + ".")
        if s["cooldown_substations"] or s["cooldown_lines"]:
            parts.append(
                "In cooldown (cannot act yet): "
                + ", ".join([f"sub {k} ({v} steps)" for k, v in s["cooldown_substations"].items()]
                            + [f"line {k} ({v} steps)" for k, v in s["cooldown_lines"].items()]) + "."
            )
        if s["recent_actions"]:
            vocab = self.vocabulary
            recent = "; ".join(vocab.describe_action(vocab.index_of(a)) for a in s["recent_actions"])
            parts.append(f"Recent actions: {recent}.")
        if s["candidates"]:
            rows = []
            for c in s["candidates"]:
                sim = ""
                if "sim_ok" in c:
                    sim = f" (simulated max loading {c['sim_max_rho'] * 100:.0f}%)" if c["sim_ok"] else " (simulation: fails)"
                rows.append(f"{c['action']} = {c['what']}{sim}")
            parts.append("Candidate actions: " + "; ".join(rows) + ".")
            base = s.get("do_nothing_sim")
            if base and base["ok"]:
                parts.append(f"Doing nothing (0) is simulated at {base['max_rho'] * 100:.0f}% max loading.")
        return " ".join(parts)

    @property
    def expert(self) -> GreedyExpert:
        return GreedyExpert(self, danger=self.danger)


def _substations(vocab: GridActions, indices: list[int]) -> set[int]:
    return {d["substation"] for d in map(vocab.to_structured, indices) if d["kind"] == "substation"}


def _small_splits(vocab: GridActions, sub: int, pos: int) -> list[int]:
    """Layouts of substation ``sub`` that move element ``pos`` (and at most one more) to the other bus."""
    n = int(vocab.sub_size[sub])
    out = []
    for other in [None, *range(n)]:
        bits = {pos} if other is None else {pos, other}
        if other == pos:
            continue
        layout = [2 if k in bits else 1 for k in range(n)]
        try:
            out.append(vocab.index_of({"kind": "substation", "substation": sub, "bus_layout": layout}))
        except InvalidAction:
            continue
    return out


def _sim_result(ok: bool, *, reward: float | None = None, done: bool = False, max_rho: float | None = None,
                overloaded_lines: list[int] | None = None, reason: str = "",
                obs_next: list[float] | None = None) -> SimResult:
    info: dict[str, Any] = {"max_rho": max_rho, "overloaded_lines": overloaded_lines or []}
    if obs_next is not None:
        info["obs_next"] = obs_next
    return SimResult(ok=ok, reason=reason, reward=reward, done=done, info=info)


class GreedyExpert(Expert):
    """Greedy on simulated max line loading; reads the JSON state.

    - Grid in danger (``max_rho`` above ``danger``): among the state's candidates, the one whose
      simulated max loading is lowest, if it beats doing nothing; else do nothing.
    - Grid safe: a candidate that restores the grid (reconnects a line or merges a substation back)
      if its simulated max loading stays below ``danger``; else do nothing.

    Simulated loadings come from the JSON (``describe()`` fills them); a candidate without one is
    simulated through the adapter when the state's snapshot is still cached. Without any simulation
    the expert does nothing (it does not guess a topology blind).
    """

    def __init__(self, adapter: Grid2OpAdapter | None = None, *, danger: float = 0.95) -> None:
        self.adapter = adapter
        self.danger = danger

    def _scores(self, state: dict[str, Any]) -> list[tuple[float, int, str]]:
        out = []
        for c in state.get("candidates", []):
            ok, rho = c.get("sim_ok"), c.get("sim_max_rho")
            if ok is None and self.adapter is not None:
                r = self.adapter.simulate(state, c["action"])
                if r.reason.startswith("no Grid2Op snapshot"):
                    continue
                ok, rho = r.ok, r.info["max_rho"]
            if ok and rho is not None:
                out.append((float(rho), int(c["action"]), str(c.get("what", ""))))
        return sorted(out)

    def act(self, state: dict[str, Any]) -> int:
        scores = self._scores(state)
        if not scores:
            return 0
        best_rho, best, what = scores[0]
        if state["max_rho"] > self.danger:
            base = state.get("do_nothing_sim")
            if base is None and self.adapter is not None:
                sim = self.adapter.simulate(state, 0)
                base = {"ok": sim.ok, "max_rho": sim.info["max_rho"]}
            base_rho = base["max_rho"] if base and base.get("ok") else float("inf")
            return best if best_rho < base_rho - 1e-3 else 0
        restoring = [(r, i) for r, i, w in scores if w.startswith(("switch line", "merge")) and r < self.danger]
        return min(restoring)[1] if restoring else 0

    def importance(self, state: dict[str, Any]) -> float:
        """0 while every line is below 80% of its limit, rising to 1 at 120%."""
        return float(np.clip((state["max_rho"] - 0.8) / 0.4, 0.0, 1.0))


class Case14Adapter(Grid2OpAdapter):
    grid = "l2rpn_case14_sandbox"
    env_id = "grid2op:l2rpn_case14_sandbox"
    task = (
        "Operate the IEEE 14-bus power grid (14 substations, 20 lines) for as long as possible by changing "
        "line status and substation bus layouts. A line above 100% of its thermal limit for 3 steps trips; "
        "the episode ends on a blackout (game over) or after the episode's time steps (5 min each). Reward "
        "per step: the mean over lines of 1 - min(loading, 1)^2 (L2RPN line margin), so keep every line "
        "well below its limit and survive. Acting on a line or substation puts it in a 3-step cooldown."
    )


class Neurips2020Adapter(Grid2OpAdapter):
    grid = "l2rpn_neurips_2020_track1"
    env_id = "grid2op:l2rpn_neurips_2020_track1"
    task = (
        "Operate the L2RPN NeurIPS 2020 track 1 grid (36 substations, 59 lines, ~67,000 topology actions) for "
        "as long as possible by changing line status and substation bus layouts. A line above 100% of its "
        "thermal limit for 3 steps trips; the episode ends on a blackout (game over) or after the episode's "
        "time steps (5 min each). Reward per step: the mean over lines of 1 - min(loading, 1)^2 (L2RPN line "
        "margin). Acting on a line or substation puts it in a 3-step cooldown."
    )
