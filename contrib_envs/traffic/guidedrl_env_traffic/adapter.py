"""The guidedrl adapter of the road networks (``traffic:grid<R>x<C>-v0``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from guidedrl.envs import Description, MultiAgentEnvAdapter
from guidedrl.errors import ConfigError
from guidedrl.types import Demonstrations

from guidedrl_env_traffic.env import TrafficParallelEnv
from guidedrl_env_traffic.expert import RoutingExpert
from guidedrl_env_traffic.plans import PlanExecutor, PlanStep, node_name, validate_plan
from guidedrl_env_traffic.sim import TrafficConfig, TrafficSim

INSTRUCTIONS_HELP = (
    'Answer with a JSON list of instructions [Command, Parameter, AgentID], e.g. ["MoveTo", "Intersection_5", '
    '"Agent_3"], or objects {"command": "MoveTo", "parameter": "Intersection_5", "agent": "Agent_3"}. '
    "Each agent's MoveTo items, in order, are the intersections it drives through from its start to its goal; "
    "each must be a neighbour (a road) of the one before. Roads slow down with the vehicles on them: "
    "spread the vehicles over different roads."
)


class PlanVocabulary:
    """What an LLM may answer: the command, intersection ids and agent ids (``prompt_text`` heads prompts)."""

    def __init__(self, agents: list[str], n_nodes: int) -> None:
        self.agents, self.n_nodes = agents, n_nodes

    def prompt_text(self) -> str:
        n = len(self.agents)
        return (
            "Commands (each instruction is [Command, Parameter, AgentID]):\n"
            f"- MoveTo: Parameter = an intersection Intersection_0 .. Intersection_{self.n_nodes - 1}, next on the "
            "agent's route (a neighbour of its previous one, the first a neighbour of its start)\n"
            f"Agents: Agent_0 .. Agent_{n - 1}. Give every agent its whole route, in order."
        )


@attrs.frozen(kw_only=True)
class PlanRollout:
    """An episode driven by a plan: what LEED's demonstration generation keeps and counts."""

    demonstrations: list[Demonstrations]
    """One per agent that was on its way: its own (obs, act, rew, ...) transitions."""
    items: int
    """Items in the plan (as answered)."""
    rejected: list[tuple[Any, str]]
    """Each rejected item once, with the reason (malformed, unknown id, non-adjacent)."""
    stuck: dict[str, str]
    """Agents the plan left waiting short of their goal, with the reason (first time seen)."""
    cut: str | None
    """Why the rollout was cut (deadlock, horizon), ``None`` when every vehicle arrived."""
    team_return: float
    arrived: int
    travel_times: dict[str, int]
    """Steps on the way of each vehicle that arrived."""

    @property
    def valid_fraction(self) -> float:
        return 1.0 - len(self.rejected) / self.items if self.items else 0.0


class TrafficAdapter(MultiAgentEnvAdapter):
    """A grid road network for guided multi-agent RL: describe, validate and execute LEED's instruction
    sequences, roll a plan out into demonstrations, and a congestion-aware routing expert.

    Keyword arguments (``env_kwargs``): ``n_vehicles`` (default 8), ``horizon`` (default
    ``5 · (rows + cols)``), and the rules of :class:`~guidedrl_env_traffic.sim.TrafficConfig`
    (``capacity``, ``alpha``, ``beta``, ``step_cost``, ``arrival_bonus``, ``depart_window``).
    """

    def __init__(self, rows: int = 4, cols: int = 4, **make_kwargs: Any) -> None:
        super().__init__(**make_kwargs)
        self.rows, self.cols = rows, cols
        self.env_id = f"traffic:grid{rows}x{cols}-v0"
        self.task = (
            f"Vehicle routing on a {rows}x{cols} grid of intersections: every vehicle (agent) leaves its start at its "
            "departure step and must reach its goal as quickly as possible; at each intersection it picks the next "
            "road. A road's travel time grows with the vehicles on it. Reward: -step_cost per step on the way, "
            f"+arrival_bonus on arrival; the episode ends when all have arrived or at the horizon."
        )
        rules = {k: v for k, v in make_kwargs.items() if k != "render_mode"}
        try:
            self.config = TrafficConfig(rows=rows, cols=cols, **{**rules, "horizon": rules.get("horizon") or 0})
        except (TypeError, ValueError) as exc:
            allowed = [f.name for f in attrs.fields(TrafficConfig) if f.name not in ("rows", "cols")]
            raise ConfigError(f"{self.env_id}: bad env_kwargs {rules}: {exc}. Allowed: {', '.join(allowed)}, render_mode") from None
        self.n_agents = self.config.n_vehicles
        self.agents = [f"agent_{i}" for i in range(self.n_agents)]
        self._probe = TrafficSim(self.config, n_envs=1, seed=0)
        self.n_nodes = self._probe.n_nodes
        self.executor = PlanExecutor(self.agents, self._probe.nbr)
        self._expert = RoutingExpert()
        self.instructions_help = INSTRUCTIONS_HELP
        self.vocabulary = PlanVocabulary(self.agents, self.n_nodes)

    def make(self, **kwargs: Any) -> TrafficParallelEnv:
        return TrafficParallelEnv(self.rows, self.cols, **{**self.make_kwargs, **kwargs})

    @property
    def expert(self) -> RoutingExpert:
        return self._expert

    # -- what the LLM reads ---------------------------------------------------------------------
    def describe(self, observations: dict[str, Any], info: dict[str, Any] | None = None) -> Description:
        """The network in words and as exact JSON (adjacency with free-flow times and vehicles per road,
        every vehicle's status, position, start, goal and departure). The state comes from the env's
        ``info[agent]["snapshot"]`` (the observations are local and do not hold it)."""
        snap = None
        for v in (info or {}).values():
            if isinstance(v, dict) and "snapshot" in v:
                snap = v["snapshot"]
                break
        if snap is None:
            raise ValueError(
                f"{self.env_id}: describe() needs the env's infos (info[agent]['snapshot']): pass the infos "
                "returned by reset()/step() with the observations"
            )
        state = snap.state_dict()
        return Description(text=describe_state(state), state=state)

    # -- plans ----------------------------------------------------------------------------------
    def validate_plan(self, instructions: Any) -> list[dict[str, Any]]:
        """Normalised items, or :class:`~guidedrl.envs.InvalidAction` naming the first malformed one."""
        return validate_plan(instructions, self.agents, self.n_nodes)

    def execute_plan(self, plan: Any, state: dict[str, Any]) -> PlanStep:
        """One step of a plan in ``state``: every agent's action (0 = wait) and the rejected items with
        reasons. Any input is accepted: malformed items are rejected here too, never raised."""
        return self.executor.actions(plan, state)

    def stuck_agents(self, plan: Any, state: dict[str, Any]) -> dict[str, str]:
        """Agents at an intersection whom ``plan`` leaves waiting for good in ``state`` (route ending
        short of the goal, or off the route), with the reason: for a loop that calls
        :meth:`execute_plan` step by step and wants to cut a deadlocked plan."""
        return self.executor.stuck(plan, state)

    def rollout_plan(
        self, plan: Any, *, seed: int | None = None, env: TrafficParallelEnv | None = None,
        on_step: Callable[[dict[str, Any]], None] | None = None,
    ) -> PlanRollout:
        """Drive one episode (``env.reset(seed=seed)``) by ``plan`` and return each agent's transitions,
        the rejected items (each once), the agents left stuck and why the rollout was cut.

        ``plan`` may also be a callable ``state -> plan`` (asked once, at the start: LEED's LLM writes
        the whole sequence from the initial state). A deadlock — every vehicle on its way waiting at an
        intersection its route does not leave, none on a road or still to depart — cuts the rollout.
        """
        env = env or self.make()
        obs, infos = env.reset(seed=seed)
        state = self.describe(obs, infos).state
        if callable(plan):
            plan = plan(state)
        _, rejected = self.executor.routes(plan, state)
        body = plan.get("instructions") if isinstance(plan, dict) else plan
        n_items = len(body) if isinstance(body, (list, tuple)) else 1  # not a list: one bad "item"
        rec: dict[str, dict[str, list]] = {}
        stuck: dict[str, str] = {}
        cut, total = None, 0.0
        while env.agents:
            acts, _ = self.executor.actions(plan, state)
            for a, why in self.executor.stuck(plan, state).items():
                stuck.setdefault(a, why)
            may_change = any(v["status"] in ("waiting", "on_road") for v in state["vehicles"])
            if not may_change and all(a in stuck and acts[a] == 0 for a in env.agents):
                cut = "deadlock: " + "; ".join(stuck[a] for a in env.agents)
                break
            step_acts = {a: acts[a] for a in env.agents}
            nobs, rew, term, trunc, infos = env.step(step_acts)
            for a, act in step_acts.items():
                r = rec.setdefault(a, {k: [] for k in ("obs", "act", "rew", "obs_next", "term", "trunc")})
                r["obs"].append(obs[a])
                r["act"].append(act)
                r["rew"].append(rew[a])
                r["obs_next"].append(nobs[a])
                r["term"].append(term[a])
                r["trunc"].append(trunc[a])
            total += float(sum(rew.values()))
            if on_step is not None:
                on_step(state)
            obs = nobs
            if env.agents:
                state = self.describe(obs, infos).state
        final = env.state_dict()
        left = [v["id"] for v in final["vehicles"] if v["status"] != "arrived"]
        if cut is None and left:
            cut = f"cut at the horizon (step {final['t']} of {final['horizon']}): {len(left)} of {self.n_agents} vehicles had not arrived"
        meta = {"items": n_items, "rejected": len(rejected), "cut": cut}
        demos = [
            Demonstrations(
                obs=np.stack(r["obs"]), act=np.asarray(r["act"], dtype=np.int64),
                rew=np.asarray(r["rew"], dtype=np.float32), obs_next=np.stack(r["obs_next"]),
                terminated=np.asarray(r["term"]), truncated=np.asarray(r["trunc"]), agent=a, meta=meta,
            )
            for a, r in rec.items()
        ]
        arrived = {v["id"]: v["travel_time"] for v in final["vehicles"] if v["status"] == "arrived"}
        return PlanRollout(
            demonstrations=demos, items=n_items, rejected=rejected, stuck=stuck, cut=cut,
            team_return=total, arrived=len(arrived), travel_times=arrived,
        )

    @staticmethod
    def task_completion(infos: dict[str, Any]) -> float:
        """Vehicles arrived / vehicles, from any agent's ``info``."""
        for info in infos.values():
            if isinstance(info, dict) and "metrics" in info:
                return float(info["metrics"]["arrival_rate"])
        raise KeyError("no metrics in infos")


def describe_state(state: dict[str, Any]) -> str:
    """The road network in plain language."""
    g = state["grid"]
    rows, cols = int(g["rows"]), int(g["cols"])
    lines = [
        f"A {rows}x{cols} grid of intersections Intersection_0 .. Intersection_{rows * cols - 1} "
        f"(Intersection_k is at row k // {cols}, column k % {cols}; north is row - 1). Step {state['t']} of {state['horizon']}.",
    ]
    busy = [r for r in state["roads"] if r["vehicles"]]
    roads = ", ".join(f"{node_name(r['from'])}->{node_name(r['to'])} ({r['free_flow']:g})" for r in state["roads"]
                      if r["from"] < r["to"])
    lines.append(f"Two-way roads with free-flow travel time in steps (the same both ways): {roads}.")
    if busy:
        lines.append("Vehicles on roads now: " + ", ".join(
            f"{node_name(r['from'])}->{node_name(r['to'])}: {r['vehicles']}" for r in busy) + ".")
    for v in state["vehicles"]:
        agent = "Agent_" + v["id"].split("_")[-1]
        trip = f"from {node_name(v['start'])} to {node_name(v['goal'])}, departs at step {v['departure']}"
        if v["status"] == "waiting":
            where = "not yet departed"
        elif v["status"] == "arrived":
            where = f"arrived at step {v['arrival']}"
        elif v["status"] == "on_road":
            where = f"on the road {node_name(v['road'][0])}->{node_name(v['road'][1])}, {v['remaining']:g} free-flow steps left"
        else:
            where = f"at {node_name(v['at'])}"
        lines.append(f"- {agent}: {trip}; {where}.")
    r = state["rules"]
    lines.append(
        f"A road with n vehicles takes free_flow * (1 + {r['alpha']:g} * (n / {r['capacity']:g})^{r['beta']:g}) steps."
    )
    lines.append(INSTRUCTIONS_HELP)
    return "\n".join(lines)
