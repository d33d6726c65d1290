"""LLM plans for the shop floor: validation (structure) and execution (legality in a state).

A plan is a list of instructions ``{"command": "work" | "maintain" | "rest", "parameter": <station
id>, "agent": "agent_3"}`` — LEED's ``[Command, Parameter, AgentID]`` items as objects. Validation is
stateless and strict: a malformed item raises :class:`~guidedrl.envs.InvalidAction` with a reason
that is fed back to the LLM. Two agents claiming one station is *not* a validation error — it is a
coordination conflict, for the method to resolve (LCIL repairs it) or for the executor to reject.
Execution checks each item against the current state and rejects illegal ones with a reason; a
rejected or missing agent rests.
"""

from __future__ import annotations

import re
from typing import Any

from guidedrl.envs import InvalidAction, PlanStep

from guidedrl_env_factory.expert import instruction_action

COMMANDS = ("work", "maintain", "rest")
_SYNONYMS = {"produce": "work", "operate": "work", "repair": "maintain", "fix": "maintain", "idle": "rest"}


def parse_station(value: Any, n_stations: int) -> int:
    """A station id from an int or a name like ``"station_3"``, ``"M3"``, ``"3"``."""
    if isinstance(value, bool) or value is None:
        raise InvalidAction(f"parameter must be a station id in 0..{n_stations - 1}, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        found = re.fullmatch(r"\s*(?:[A-Za-z_ ]*?)[_ ]?(\d+)\s*", value)
        if not found:
            raise InvalidAction(f"parameter {value!r} does not name a station; use an integer id in 0..{n_stations - 1}")
        value = int(found.group(1))
    if not isinstance(value, int):
        raise InvalidAction(f"parameter must be a station id in 0..{n_stations - 1}, got {value!r}")
    if not 0 <= value < n_stations:
        raise InvalidAction(f"station {value} is out of range: stations are 0..{n_stations - 1}")
    return value


def validate_plan(instructions: Any, agents: list[str], n_stations: int) -> list[dict[str, Any]]:
    """Normalised instructions, or :class:`InvalidAction` naming the first malformed item.

    Accepts ``[Command, Parameter, AgentID]`` triples as well as objects. Agents may be left out
    (they keep their previous instruction or rest); an agent given two instructions is an error.
    """
    if isinstance(instructions, dict) and "instructions" in instructions:
        instructions = instructions["instructions"]
    if not isinstance(instructions, (list, tuple)) or not instructions:
        raise InvalidAction("the answer must be a non-empty list of instructions {command, parameter, agent}")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for k, item in enumerate(instructions):
        if isinstance(item, (list, tuple)) and len(item) == 3:
            item = {"command": item[0], "parameter": item[1], "agent": item[2]}
        if not isinstance(item, dict):
            raise InvalidAction(f"instruction {k} must be an object with command, parameter, agent; got {item!r}")
        missing = [key for key in ("command", "agent") if key not in item]
        if missing:
            raise InvalidAction(f"instruction {k} lacks {', '.join(missing)}")
        command = str(item["command"]).strip().lower()
        command = _SYNONYMS.get(command, command)
        if command not in COMMANDS:
            raise InvalidAction(f"instruction {k}: unknown command {item['command']!r}; use one of {list(COMMANDS)}")
        agent = str(item["agent"]).strip()
        if agent not in agents:
            m = re.fullmatch(r"(?:agent)?[_ ]?(\d+)", agent, flags=re.IGNORECASE)
            if m and f"agent_{int(m.group(1))}" in agents:
                agent = f"agent_{int(m.group(1))}"
            else:
                raise InvalidAction(f"instruction {k}: unknown agent {item['agent']!r}; agents are {agents}")
        if agent in seen:
            raise InvalidAction(f"instruction {k}: {agent} already has an instruction; give each agent one")
        seen.add(agent)
        if command == "rest":
            station = None
        else:
            if "parameter" not in item:
                raise InvalidAction(f"instruction {k}: {command} needs a station id as parameter")
            try:
                station = parse_station(item["parameter"], n_stations)
            except InvalidAction as exc:
                raise InvalidAction(f"instruction {k} ({agent}): {exc}") from None
        out.append({"command": command, "parameter": station, "agent": agent})
    return out


def check_item(item: dict[str, Any], state: dict[str, Any]) -> str | None:
    """Why a validated instruction is illegal in ``state`` (``None`` when it is legal)."""
    if item["command"] == "rest":
        return None
    agent = next(a for a in state["agents"] if a["id"] == item["agent"])
    station = state["stations"][item["parameter"]]
    if agent["kind"] == "human" and float(agent["fatigue"]) >= 0.999:
        return f"{agent['id']} is exhausted and must rest"
    holder = next((a["id"] for a in state["agents"] if a["location"] == station["id"] and a["id"] != agent["id"]), None)
    if holder is not None:
        return f"station {station['id']} is in use by {holder}"
    if item["command"] == "work" and station["broken"]:
        return f"station {station['id']} is broken; it must be maintained before {agent['id']} can work there"
    if item["command"] == "maintain" and float(station["health"]) >= 0.999:
        return f"station {station['id']} is at full health; there is nothing to maintain"
    return None


class PlanExecutor:
    """Turns a validated plan into the joint action of each step, rejecting illegal items.

    The plan stays in force until a new one is given; each call re-checks every item against the
    current state. Rejected items and agents without an instruction rest.
    """

    def __init__(self, agents: list[str], n_stations: int) -> None:
        self.agents = list(agents)
        self.n_stations = n_stations

    def actions(self, plan: list[dict[str, Any]], state: dict[str, Any]) -> PlanStep:
        """``PlanStep(actions={agent: action}, rejected=[(item, reason), ...])`` for one step."""
        acts = dict.fromkeys(self.agents, 0)
        rejected: list[tuple[dict, str]] = []
        claimed: dict[int, str] = {}
        for item in plan:
            reason = check_item(item, state)
            if reason is None and item["parameter"] is not None:
                holder = claimed.get(item["parameter"])
                if holder is not None:
                    reason = f"station {item['parameter']} is already claimed by {holder}"
            if reason is not None:
                rejected.append((item, reason))
                continue
            if item["parameter"] is not None:
                claimed[item["parameter"]] = item["agent"]
            acts[item["agent"]] = instruction_action(item, self.n_stations)
        return PlanStep(acts, rejected)
