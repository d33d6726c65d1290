"""LEED's instruction sequences for the road network: parsing, validation and execution.

A plan is a list of items ``[Command, Parameter, AgentID]`` — ``["MoveTo", "Intersection_5",
"Agent_3"]`` — or the same as objects ``{"command", "parameter", "agent"}`` (also wrapped as
``{"instructions": [...]}``). The only command is ``MoveTo``: an agent's items, in order, are the
intersections it drives through, each a neighbour of the one before (the first a neighbour of its
start). Intersections may be named ``Intersection_5``, ``intersection 5``, ``I5``, ``"5"`` or ``5``;
agents ``Agent_3``, ``agent_3``, ``vehicle_3`` or ``3``.

- :func:`validate_plan` is strict and stateless (the :class:`~guidedrl.envs.PlanExecutor` protocol):
  the normalised items, or :class:`~guidedrl.envs.InvalidAction` naming the first malformed one.
- :func:`parse_plan` is lenient: every well-formed item is kept, every other one is rejected with a
  reason (malformed item, unknown command, unknown intersection, unknown agent, too many items).
- :class:`PlanExecutor` turns a plan into one step's actions in a state, rejecting moves that do not
  join up (non-adjacent) with a reason. It is stateless: each call finds every vehicle's place on its
  route from the state, so it is called again every step with the new state.

Nothing here evaluates or formats the raw answer beyond a bounded excerpt (``guidedrl.envs.excerpt``): hostile input
(garbage strings, deep nesting, huge lists or numbers) is rejected, never crashes.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

from guidedrl.envs import InvalidAction, PlanStep, excerpt, instruction_fields


COMMAND = "MoveTo"
_COMMANDS = {"moveto", "move_to", "move to", "move", "goto", "go_to", "go to", "driveto", "drive_to"}
_NODE = re.compile(r"\s*(?:intersection|node|inter|i|n)?[\s_#:]*(\d{1,6})\s*", re.IGNORECASE)
_AGENT = re.compile(r"\s*(?:agent|vehicle|car|veh|a|v)?[\s_#:]*(\d{1,6})\s*", re.IGNORECASE)
_MAX_TEXT = 64


show = excerpt  # a bounded excerpt of an answer item for a reason


def node_name(k: int) -> str:
    return f"Intersection_{k}"


def parse_node(value: Any, n_nodes: int) -> int:
    """An intersection id from ``5``, ``"5"``, ``"Intersection_5"``, ``"I5"``; :class:`InvalidAction` if not."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and len(value) <= _MAX_TEXT:
        found = _NODE.fullmatch(value)
        if found:
            value = int(found.group(1))
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAction(f"{show(value)} does not name an intersection; use Intersection_0 .. Intersection_{n_nodes - 1}")
    if not 0 <= value < n_nodes:
        raise InvalidAction(f"unknown intersection {node_name(value) if abs(value) < 10**9 else show(value)}: "
                            f"intersections are Intersection_0 .. Intersection_{n_nodes - 1}")
    return value


def parse_agent(value: Any, agents: list[str]) -> str:
    """An agent id from ``"Agent_3"``, ``"agent_3"``, ``"vehicle_3"``, ``3``; :class:`InvalidAction` if not."""
    k: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        k = value
    elif isinstance(value, str) and len(value) <= _MAX_TEXT:
        found = _AGENT.fullmatch(value)
        if found:
            k = int(found.group(1))
    if k is None or not 0 <= k < len(agents):
        raise InvalidAction(f"unknown agent {show(value)}; agents are Agent_0 .. Agent_{len(agents) - 1}")
    return agents[k]


def parse_item(item: Any, agents: list[str], n_nodes: int) -> dict[str, Any]:
    """One normalised item ``{"command": "MoveTo", "parameter": <int>, "agent": "agent_3"}``."""
    item = instruction_fields(item)
    command = item["command"]
    if not (isinstance(command, str) and len(command) <= _MAX_TEXT and command.strip().lower() in _COMMANDS):
        raise InvalidAction(f"unknown command {show(command)}; the only command is {COMMAND}")
    agent = parse_agent(item["agent"], agents)
    node = parse_node(item["parameter"], n_nodes)
    return {"command": COMMAND, "parameter": node, "agent": agent}


def _items(instructions: Any) -> list[Any]:
    if isinstance(instructions, dict) and "instructions" in instructions:
        instructions = instructions["instructions"]
    if not isinstance(instructions, (list, tuple)):
        raise InvalidAction(f"the answer must be a list of [Command, Parameter, AgentID] items, got {show(instructions)}")
    return list(instructions)


def max_items(n_agents: int, n_nodes: int) -> int:
    """The longest plan accepted: every agent visiting every intersection twice."""
    return 2 * n_agents * n_nodes


def validate_plan(instructions: Any, agents: list[str], n_nodes: int) -> list[dict[str, Any]]:
    """Normalised items, or :class:`InvalidAction` naming the first malformed one (stateless, strict)."""
    items = _items(instructions)
    if not items:
        raise InvalidAction("the plan is empty: give each agent MoveTo items from its start to its goal")
    limit = max_items(len(agents), n_nodes)
    if len(items) > limit:
        raise InvalidAction(f"the plan has {len(items)} items; at most {limit} are accepted")
    out = []
    for k, item in enumerate(items):
        try:
            out.append(parse_item(item, agents, n_nodes))
        except InvalidAction as exc:
            raise InvalidAction(f"item {k}: {exc}") from None
    return out


def parse_plan(instructions: Any, agents: list[str], n_nodes: int) -> tuple[list[dict[str, Any]], list[tuple[Any, str]]]:
    """``(well-formed items, [(rejected item, reason), ...])``; never raises on any input."""
    try:
        items = _items(instructions)
    except InvalidAction as exc:
        return [], [(show(instructions), str(exc))]
    limit = max_items(len(agents), n_nodes)
    rejected: list[tuple[Any, str]] = []
    if len(items) > limit:
        rejected.append((f"items {limit}..{len(items) - 1}", f"the plan has {len(items)} items; only the first {limit} are read"))
        items = items[:limit]
    ok = []
    for k, item in enumerate(items):
        try:
            ok.append(parse_item(item, agents, n_nodes))
        except InvalidAction as exc:
            rejected.append((show(item), f"item {k}: {exc}"))
    return ok, rejected


class Route(NamedTuple):
    """An agent's accepted route: the intersections from its start, and the items that failed."""

    nodes: list[int]
    rejected: list[tuple[Any, str]]


class PlanExecutor:
    """Routes from a plan, and each step's actions from the routes (see the module docstring).

    A route starts at the vehicle's start; an item whose intersection is not a neighbour of the route's
    last intersection is rejected (and the route goes on from where it was). Each step, a vehicle at
    an intersection on its route takes the road to the route's next intersection (a route through an
    intersection twice continues from its last visit); a vehicle whose route ends short of its goal, or
    who is off its route, waits — and :meth:`stuck` says so.
    """

    def __init__(self, agents: list[str], nbr: Any) -> None:
        self.agents = list(agents)
        #: neighbour of each intersection per direction (−1 none), as lists
        self.nbr = [list(map(int, row)) for row in nbr]
        self.n_nodes = len(self.nbr)
        self._dir = [{j: d for d, j in enumerate(row) if j >= 0} for row in self.nbr]

    def routes(self, plan: Any, state: dict[str, Any]) -> tuple[dict[str, Route], list[tuple[Any, str]]]:
        """Every agent's route, and the items rejected while building them (malformed ones included)."""
        items, rejected = parse_plan(plan, self.agents, self.n_nodes)
        starts = {v["id"]: int(v["start"]) for v in state["vehicles"]}
        routes = {a: Route([starts[a]], []) for a in self.agents if a in starts}
        for item in items:
            route = routes.get(item["agent"])
            if route is None:
                rejected.append((item, f"{item['agent']} is not in this network"))
                continue
            last, nxt = route.nodes[-1], item["parameter"]
            if nxt not in self._dir[last]:
                reason = (f"{node_name(nxt)} is not adjacent to {node_name(last)}, where the route of {item['agent']} "
                          f"is (its neighbours: {', '.join(node_name(j) for j in sorted(self._dir[last]))})")
                route.rejected.append((item, reason))
                rejected.append((item, reason))
                continue
            route.nodes.append(nxt)
        return routes, rejected

    def actions(self, plan: Any, state: dict[str, Any]) -> PlanStep:
        """``PlanStep(actions={agent: action} for every agent (0 = wait), rejected=[(item, reason)])``."""
        routes, rejected = self.routes(plan, state)
        acts = dict.fromkeys(self.agents, 0)
        for v in state["vehicles"]:
            if v["status"] != "at_intersection" or v["id"] not in routes:
                continue
            nodes = routes[v["id"]].nodes
            here = int(v["at"])
            k = _last_index(nodes, here)
            if k is not None and k + 1 < len(nodes):
                acts[v["id"]] = 1 + self._dir[here][nodes[k + 1]]
        return PlanStep(acts, rejected)

    def stuck(self, plan: Any, state: dict[str, Any]) -> dict[str, str]:
        """Agents at an intersection whom the plan leaves waiting for good, with the reason."""
        routes, _ = self.routes(plan, state)
        out = {}
        for v in state["vehicles"]:
            if v["status"] != "at_intersection" or v["id"] not in routes:
                continue
            nodes, here = routes[v["id"]].nodes, int(v["at"])
            k = _last_index(nodes, here)
            if k is None:
                out[v["id"]] = f"{v['id']} is at {node_name(here)}, off its route"
            elif k + 1 == len(nodes):
                out[v["id"]] = (f"the route of {v['id']} ends at {node_name(here)}, short of its goal "
                                f"{node_name(int(v['goal']))}")
        return out


def _last_index(nodes: list[int], node: int) -> int | None:
    for k in range(len(nodes) - 1, -1, -1):
        if nodes[k] == node:
            return k
    return None
