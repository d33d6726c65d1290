"""Phase 1 helpers: explicit conflict resolution and the rolling coordination history.

**Conflict resolution.** A plan is repaired item by item against the current state:

1. an agent the plan leaves out keeps its previous instruction (or rests when it has none);
2. an item the env's executor would reject in this state (work on a broken machine, a machine in
   use by another agent, ...) is displaced;
3. two or more agents claiming the same equipment: the strongest claim keeps it (the adapter's
   ``claim_priority``: already there > faster > less tired; without one, the first item wins); the
   other claimants are displaced;
4. a displaced agent gets the same command on the free equipment where its claim is strongest
   (positive priority: legal and useful), or rests.

Every repair is a sentence (fed to the coordination history and logged), so the LLM sees next time
what went wrong.
"""

from __future__ import annotations

from collections import deque
from typing import Any


def _claim(adapter: Any, item: dict[str, Any]) -> Any:
    fn = getattr(adapter, "claim", None)
    if fn is not None:
        return fn(item)
    return None if item.get("command") == "rest" else item.get("parameter")


def _priority(adapter: Any, item: dict[str, Any], state: dict[str, Any]) -> float:
    fn = getattr(adapter, "claim_priority", None)
    return float(fn(item, state)) if fn is not None else 0.0


def _rest(agent: str) -> dict[str, Any]:
    return {"command": "rest", "parameter": None, "agent": agent}


def resolve_conflicts(
    plan: list[dict[str, Any]], state: dict[str, Any], *, adapter: Any, agents: list[str],
    previous: dict[str, dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """A conflict-free plan with one instruction per agent, and the repairs made (as sentences)."""
    previous = previous or {}
    repairs: list[str] = []
    by_agent = {item["agent"]: dict(item) for item in plan}
    for agent in agents:
        if agent not in by_agent:
            prev = previous.get(agent)
            by_agent[agent] = dict(prev) if prev is not None else _rest(agent)
            repairs.append(f"{agent} had no instruction; it " + ("kept its previous one" if prev else "rests"))
    # items the env would reject in this state, whatever the rest of the plan (broken, in use, ...)
    illegal: dict[str, str] = {}
    execute = getattr(adapter, "execute_plan", None)
    if execute is not None:
        for agent in agents:
            _, rejected = execute([by_agent[agent]], state)
            if rejected:
                illegal[agent] = rejected[0][1]
    # conflicts among the legal claims: the strongest claim keeps the equipment
    claims: dict[Any, list[str]] = {}
    for agent in agents:
        res = _claim(adapter, by_agent[agent])
        if res is not None and agent not in illegal:
            claims.setdefault(res, []).append(agent)
    taken: set[Any] = set()
    displaced: list[tuple[str, str]] = [(a, f"{a}: {why}") for a, why in illegal.items()]
    for res, who in claims.items():
        ranked = sorted(who, key=lambda a: -_priority(adapter, by_agent[a], state))
        taken.add(res)
        displaced += [(loser, f"{ranked[0]} and {loser} both claimed {res}; {ranked[0]} keeps it") for loser in ranked[1:]]
    # displaced agents: to the free equipment where their claim is strongest, else rest
    for agent, why in sorted(displaced, key=lambda d: agents.index(d[0])):
        item = by_agent[agent]
        best, best_p = None, 0.0
        for other in _all_resources(adapter):
            if other in taken:
                continue
            cand = {**item, "parameter": other}
            p = _priority(adapter, cand, state)
            if p > best_p:
                best, best_p = cand, p
        if best is not None:
            by_agent[agent] = best
            taken.add(_claim(adapter, best))
            repairs.append(f"{why}, {agent} moves to {best['parameter']}")
        else:
            by_agent[agent] = _rest(agent)
            repairs.append(f"{why}, {agent} rests")
    return [by_agent[a] for a in agents], repairs


def _all_resources(adapter: Any) -> list[Any]:
    n = getattr(adapter, "n_stations", None)
    return list(range(int(n))) if n is not None else []


def describe_plan(plan: list[dict[str, Any]]) -> str:
    parts = []
    for item in plan:
        if item["command"] == "rest":
            parts.append(f"{item['agent']}→rest")
        else:
            parts.append(f"{item['agent']}→{item['command']}@{item['parameter']}")
    return ", ".join(parts)


class CoordinationHistory:
    """The last ``size`` plans, their repairs and outcomes, as text for the next prompt."""

    def __init__(self, size: int) -> None:
        self.entries: deque[str] = deque(maxlen=max(size, 0))

    def add(self, t: int, plan: list[dict[str, Any]], repairs: list[str], outcome: str) -> None:
        if self.entries.maxlen == 0:
            return
        text = f"t={t}: {describe_plan(plan)}"
        if repairs:
            text += "; repaired: " + "; ".join(repairs)
        if outcome:
            text += f"; outcome: {outcome}"
        self.entries.append(text)

    def text(self) -> str | None:
        return "\n".join(self.entries) if self.entries else None

    def clear(self) -> None:
        self.entries.clear()
