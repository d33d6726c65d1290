"""The guidedrl adapters of the four shop floors (``factory:<domain>-v0``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from guidedrl.envs import Description, MultiAgentEnvAdapter, PlanStep

from guidedrl_env_factory.domains import DOMAINS, Domain
from guidedrl_env_factory.env import FactoryParallelEnv
from guidedrl_env_factory.expert import Coordinator
from guidedrl_env_factory.plans import PlanExecutor, validate_plan
from guidedrl_env_factory.sim import FactorySim, n_stations_for

INSTRUCTIONS_HELP = (
    "Answer with a JSON list with one instruction per agent: "
    '{"command": "work" | "maintain" | "rest", "parameter": <station id>, "agent": "<agent id>"}. '
    "work = produce jobs at the station (not while it is broken); maintain = repair it; "
    "rest = go to the rest area (parameter ignored). At most one agent per station: two agents "
    "claiming the same station block it and are both penalised. Moving to another station costs one step."
)


class PlanVocabulary:
    """What an LLM may answer: the commands, station ids and agent ids (``prompt_text`` heads prompts)."""

    def __init__(self, agents: list[str], n_stations: int, domain: Domain) -> None:
        self.agents, self.n_stations, self.domain = agents, n_stations, domain

    def prompt_text(self) -> str:
        w = self.domain.station_word
        return (
            "Commands (each instruction is {command, parameter, agent}):\n"
            f"- work: parameter = a {w} id 0..{self.n_stations - 1}; the agent produces jobs there\n"
            f"- maintain: parameter = a {w} id 0..{self.n_stations - 1}; the agent repairs it\n"
            "- rest: parameter = \"rest_area\"; the agent goes to the rest area and recovers\n"
            f"Agents: {', '.join(self.agents)}. One instruction per agent; at most one agent per {w}."
        )


class FactoryAdapter(MultiAgentEnvAdapter):
    """A shop floor for guided multi-agent RL: describe, validate and execute plans, expert coordinator.

    Keyword arguments (``env_kwargs``): ``n_agents`` (default 4), ``n_stations`` (default
    ``n_agents + 2``), ``horizon`` (default 100).
    """

    def __init__(self, domain: str = "human-machine", **make_kwargs: Any) -> None:
        super().__init__(**make_kwargs)
        if domain not in DOMAINS:
            raise ValueError(f"unknown factory domain {domain!r}; choose one of {sorted(DOMAINS)}")
        self.domain: Domain = DOMAINS[domain]
        self.env_id = f"factory:{domain}-v0"
        self.task = (
            f"{self.domain.title} Assign every agent to work at, maintain, or rest from a {self.domain.station_word} "
            "each step to finish as many jobs as possible over the shift, without two agents claiming the "
            "same equipment, without overworking humans, and keeping equipment from breaking down."
        )
        self.n_agents = int(make_kwargs.get("n_agents", 4))
        self.n_stations = int(make_kwargs.get("n_stations") or n_stations_for(self.n_agents))
        self.agents = [f"agent_{i}" for i in range(self.n_agents)]
        self._probe = FactorySim(self.domain, n_agents=self.n_agents, n_stations=self.n_stations, n_envs=1)
        self._expert = Coordinator()
        self.executor = PlanExecutor(self.agents, self.n_stations)
        self.instructions_help = INSTRUCTIONS_HELP
        self.vocabulary = PlanVocabulary(self.agents, self.n_stations, self.domain)

    def make(self, **kwargs: Any) -> FactoryParallelEnv:
        return FactoryParallelEnv(self.domain, **{**self.make_kwargs, **kwargs})

    @property
    def expert(self) -> Coordinator:
        return self._expert

    # -- what the LLM reads ---------------------------------------------------------------------
    def state_from_observations(self, observations: dict[str, Any]) -> dict[str, Any]:
        """The exact floor state, rebuilt from the agents' joint observation."""
        sim = self._probe
        m = self.n_stations
        obs = np.stack([np.asarray(observations[a], dtype=np.float64) for a in self.agents if a in observations])
        if obs.shape[1] != sim.obs_dim:
            raise ValueError(f"observations of size {obs.shape[1]} do not fit {self.env_id} with {m} stations")
        n = self.n_agents
        board = obs[0, 3 + m : (n + 1) * (3 + m)].reshape(n, 3 + m)
        st = obs[0, (n + 1) * (3 + m) : (n + 1) * (3 + m) + 6 * m].reshape(m, 6)
        d = self.domain
        sim.queue[0] = np.round(st[:, 0] * d.max_queue, 6)
        sim.health[0] = st[:, 1]
        sim.broken[0] = st[:, 2] > 0.5
        sim.fatigue[0] = board[:, 1]
        pos = board[:, 3:]
        sim.loc[0] = np.where(pos.max(axis=1) > 0.5, pos.argmax(axis=1) + 1, 0)
        sim.t[0] = int(round(float(obs[0, -1]) * d.horizon))
        return sim.state_dict(0)

    def describe(self, observations: dict[str, Any], info: dict[str, Any] | None = None) -> Description:
        state = self.state_from_observations(observations)
        return Description(text=describe_state(state, self.domain), state=state)

    # -- plans ----------------------------------------------------------------------------------
    def validate_plan(self, instructions: Any) -> list[dict[str, Any]]:
        """Normalised instructions, or :class:`~guidedrl.envs.InvalidAction` with the reason."""
        return validate_plan(instructions, self.agents, self.n_stations)

    def execute_plan(self, plan: list[dict[str, Any]], state: dict[str, Any]) -> PlanStep:
        """The joint action of a validated plan in ``state``, and the rejected items with reasons
        (the :class:`~guidedrl.envs.PlanExecutor` protocol; unpacks as ``actions, rejected``)."""
        return self.executor.actions(plan, state)

    @staticmethod
    def claim(item: dict[str, Any]) -> int | None:
        """The equipment a validated instruction claims (``None``: it claims nothing)."""
        return None if item["command"] == "rest" else int(item["parameter"])

    def claim_priority(self, item: dict[str, Any], state: dict[str, Any]) -> float:
        """How strong an agent's claim on a station is (for conflict resolution): an agent already
        standing there first, then the faster (work) or better-repairing (maintain) agent, then the
        less tired one. Negative when the instruction is illegal in ``state``."""
        from guidedrl_env_factory.plans import check_item

        if item["command"] == "rest":
            return 0.0
        if check_item(item, state) is not None:
            return -1.0
        i = self.agents.index(item["agent"])
        j = int(item["parameter"])
        agent = state["agents"][i]
        there = 1.0 if agent["location"] == j else 0.0
        rate = state["skill"][i][j] if item["command"] == "work" else state["rules"]["repair_per_step"][i]
        return 10.0 * there + 5.0 * float(rate) - float(agent["fatigue"])

    @staticmethod
    def task_completion(infos: dict[str, Any]) -> float:
        """Jobs done / jobs arrived so far, from any agent's ``info``."""
        for info in infos.values():
            if isinstance(info, dict) and "metrics" in info:
                return float(info["metrics"]["task_completion"])
        raise KeyError("no metrics in infos")


def describe_state(state: dict[str, Any], domain: Domain) -> str:
    """The shop floor in plain language."""
    d = domain
    lines = [d.title, f"Step {state['t']} of {state['horizon']}."]
    for i, ag in enumerate(state["agents"]):
        role = d.human_word if ag["kind"] == "human" else d.robot_word
        where = "in the rest area" if ag["location"] is None else f"at {d.station_word} {ag['location']}"
        fat = f", fatigue {ag['fatigue']:.2f}" if ag["kind"] == "human" else ""
        best = max(range(len(state["stations"])), key=lambda j: state["skill"][i][j])
        lines.append(f"- {ag['id']}: {role}{fat}, {where}; fastest at {d.station_word} {best} "
                     f"({state['skill'][i][best]:.2f} jobs/step).")
    for st in state["stations"]:
        kind = d.manual_word if st["kind"] == "manual" else d.auto_word
        status = "BROKEN" if st["broken"] else f"health {st['health']:.2f}"
        lines.append(f"- {d.station_word} {st['id']} ({kind}): {st['queue']:.1f} jobs waiting, {status}.")
    lines.append(
        f"Humans tire by {d.fatigue_work:.2f} per working step and recover {d.fatigue_rest:.2f} per rest step; "
        "an exhausted human cannot work. Broken equipment runs again once maintained to half health."
    )
    lines.append(INSTRUCTIONS_HELP)
    return "\n".join(lines)
