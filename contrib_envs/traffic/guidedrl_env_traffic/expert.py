"""The routing expert: congestion-aware shortest paths (networkx), from the JSON state alone.

It is what the ``simulated`` LLM answers plan questions with and the reference "% of expert" is
measured against (a strong heuristic, not an optimum). Vehicles are routed one after another, in order
of departure: each takes the quickest path (Dijkstra) where a road's cost is its BPR travel time
with the vehicles on it now plus the routes already planned through it (each weighted by
``planned_weight``, as it may be there at another time) — so later vehicles spread over other roads
instead of piling onto one.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from guidedrl.envs import Expert

from guidedrl_env_traffic.plans import COMMAND, node_name


class RoutingExpert(Expert):
    """Congestion-aware shortest paths (see the module docstring)."""

    def __init__(self, *, planned_weight: float = 0.5) -> None:
        self.planned_weight = planned_weight

    def routes(self, state: dict[str, Any]) -> dict[str, list[int]]:
        """Each vehicle still on or before its way: the intersections from where it decides next to its goal."""
        rules = state["rules"]
        cap, alpha, beta = float(rules["capacity"]), float(rules["alpha"]), float(rules["beta"])
        g = nx.DiGraph()
        extra: dict[tuple[int, int], float] = {}
        for road in state["roads"]:
            g.add_edge(int(road["from"]), int(road["to"]), free=float(road["free_flow"]), load=float(road["vehicles"]))

        def cost(u: int, v: int, e: dict[str, Any]) -> float:
            n = e["load"] + extra.get((u, v), 0.0) + 1.0  # the vehicle itself too
            return e["free"] * (1.0 + alpha * (n / cap) ** beta)

        todo = [v for v in state["vehicles"] if v["status"] != "arrived"]
        todo.sort(key=lambda v: (int(v["departure"]), v["id"]))
        out: dict[str, list[int]] = {}
        for v in todo:
            src = int(v["road"][1]) if v["status"] == "on_road" else int(v["at"])
            goal = int(v["goal"])
            path = nx.dijkstra_path(g, src, goal, weight=cost) if src != goal else [src]
            for u, w in zip(path, path[1:]):
                extra[(u, w)] = extra.get((u, w), 0.0) + self.planned_weight
            out[v["id"]] = path
        return out

    def plan(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """LEED's instruction sequence: ``{"command": "MoveTo", "parameter": "Intersection_k", "agent"}``
        for every intersection on every vehicle's route, vehicle by vehicle.

        A vehicle on a road first gets the end of its road (where its route must join on), so a plan
        made mid-episode is executable; at the start (all at their starts) it is a plain route.
        """
        items = []
        on_road = {v["id"]: int(v["road"][1]) for v in state["vehicles"] if v["status"] == "on_road"}
        starts = {v["id"]: int(v["start"]) for v in state["vehicles"]}
        for agent, path in self.routes(state).items():
            nodes = path[1:]
            if agent in on_road or path[0] != starts[agent]:
                nodes = self._join(starts[agent], path, state) + nodes
            items += [{"command": COMMAND, "parameter": node_name(k), "agent": _agent_name(agent)} for k in nodes]
        return items

    def _join(self, start: int, path: list[int], state: dict[str, Any]) -> list[int]:
        """Intersections from ``start`` to ``path[0]`` (fewest roads), ``path[0]`` included."""
        g = nx.Graph((int(r["from"]), int(r["to"])) for r in state["roads"])
        return nx.shortest_path(g, start, path[0])[1:] if start != path[0] else []

    def act(self, state: dict[str, Any]) -> dict[str, int]:
        """Every vehicle at an intersection: the road to the next intersection of its route (1..4 =
        N, E, S, W); every other vehicle: 0 (wait — its action is ignored on a road)."""
        cols = int(state["grid"]["cols"])
        out = {}
        for v in state["vehicles"]:
            if v["status"] in ("waiting", "arrived"):
                continue
            out[v["id"]] = 0
        for agent, path in self.routes(state).items():
            if agent in out and len(path) > 1 and _vehicle(state, agent)["status"] == "at_intersection":
                out[agent] = 1 + direction(path[0], path[1], cols)
        return out


def direction(u: int, v: int, cols: int) -> int:
    """The direction index (0 N, 1 E, 2 S, 3 W) of the road from ``u`` to neighbour ``v``."""
    dr, dc = v // cols - u // cols, v % cols - u % cols
    return {(-1, 0): 0, (0, 1): 1, (1, 0): 2, (0, -1): 3}[(dr, dc)]


def _vehicle(state: dict[str, Any], agent: str) -> dict[str, Any]:
    return next(v for v in state["vehicles"] if v["id"] == agent)


def _agent_name(agent: str) -> str:
    """``agent_3`` as LEED writes it: ``Agent_3``."""
    return "Agent_" + agent.split("_")[-1]

