"""The expert coordinator: a rule-based scheduler that reads the JSON state alone.

It is the reference that "% of optimal" is measured against in the benchmarks (a strong heuristic,
not a proven optimum) and what the ``simulated`` LLM answers with. Each step it scores every
(agent, station, task) pair and assigns greedily, best pair first, one agent per station:

- a human whose fatigue reached ``rest_at`` rests, and keeps resting until it is below ``resume_at``;
- *work* is worth the jobs per step the agent can sustain there over the next ``lookahead`` steps
  (skill × fatigue slowdown, capped by the waiting and expected arriving jobs), times
  ``travel_discount`` when it must walk there first (so agents stay put unless moving pays);
- *maintain* is worth ``broken_value`` on a broken station (plus a little per waiting job) and
  ``worn_value`` on one below ``maintain_below`` health, scaled by the agent's repair rate;
- a station another agent stands at is not offered to anyone else (it is in use);
- an agent left without a task: a robot parks at its best free station, a human rests.
"""

from __future__ import annotations

from typing import Any

from guidedrl.envs import Expert


class Coordinator(Expert):
    """Greedy one-step assignment of agents to stations (see the module docstring)."""

    def __init__(
        self, *, rest_at: float = 0.8, resume_at: float = 0.2, maintain_below: float = 0.15,
        travel_discount: float = 0.5, broken_value: float = 0.8, worn_value: float = 0.25,
        lookahead: int = 5,
    ) -> None:
        self.lookahead = lookahead
        self.rest_at = rest_at
        self.resume_at = resume_at
        self.maintain_below = maintain_below
        self.travel_discount = travel_discount
        self.broken_value = broken_value
        self.worn_value = worn_value

    def plan(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """One instruction per agent: ``{"command": "work"|"maintain"|"rest", "parameter", "agent"}``."""
        agents, stations = state["agents"], state["stations"]
        skill = state["skill"]
        rules = state["rules"]
        slow = float(rules["fatigue_slowdown"])
        repair = rules["repair_per_step"]
        max_q = float(rules.get("max_queue", 10.0))
        arrival = float(rules.get("arrival", 0.0))
        k = self.lookahead
        resting: set[int] = set()
        for i, ag in enumerate(agents):
            if ag["kind"] == "human":
                f = float(ag["fatigue"])
                if f >= self.rest_at or (ag["location"] is None and f > self.resume_at):
                    resting.add(i)
        held = {ag["location"]: i for i, ag in enumerate(agents) if ag["location"] is not None}
        cands: list[tuple[float, int, int, str]] = []
        for i, ag in enumerate(agents):
            if i in resting:
                continue
            human = ag["kind"] == "human"
            speed = 1.0 - slow * float(ag["fatigue"]) if human else 1.0
            for j, st in enumerate(stations):
                if j in held and held[j] != i:
                    continue  # in use by another agent
                walk = 1.0 if ag["location"] == j else self.travel_discount
                q = float(st["queue"])
                if not st["broken"] and q > 0:
                    v = min((q + k * arrival) / k, float(skill[i][j]) * speed) + 0.02 * q / max_q
                    cands.append((v * walk, i, j, "work"))
                need = self.broken_value + 0.05 * q if st["broken"] else (
                    self.worn_value if float(st["health"]) < self.maintain_below else 0.0)
                if need > 0:
                    cands.append((need * float(repair[i]) / max(repair) * walk, i, j, "maintain"))
        cands.sort(key=lambda c: (-c[0], c[1], c[2]))
        task: dict[int, tuple[str, int | None]] = {}
        taken: set[int] = set()
        for v, i, j, what in cands:
            if v <= 0 or i in task or j in taken:
                continue
            task[i] = (what, j)
            taken.add(j)
        for i, ag in enumerate(agents):
            if i in task:
                continue
            if ag["kind"] == "robot":
                free = [j for j in range(len(stations)) if j not in taken and not stations[j]["broken"]
                        and held.get(j, i) == i]
                if free:
                    j = max(free, key=lambda j: (float(skill[i][j]), ag["location"] == j, -j))
                    task[i] = ("work", j)
                    taken.add(j)
                    continue
            task[i] = ("rest", None)
        return [
            {"command": task[i][0], "parameter": "rest_area" if task[i][1] is None else task[i][1],
             "agent": ag["id"]}
            for i, ag in enumerate(agents)
        ]

    def act(self, state: dict[str, Any]) -> dict[str, int]:
        """The joint action of :meth:`plan` (``{agent: action index}``)."""
        m = len(state["stations"])
        return {item["agent"]: instruction_action(item, m) for item in self.plan(state)}


def instruction_action(item: dict[str, Any], n_stations: int) -> int:
    """The env action of a *validated* instruction."""
    if item["command"] == "rest":
        return 0
    j = int(item["parameter"])
    return 1 + j if item["command"] == "work" else 1 + n_stations + j
