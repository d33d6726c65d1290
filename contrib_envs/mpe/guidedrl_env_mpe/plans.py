"""LEED's instruction vocabulary for simple_spread: ``[MoveTo, Landmark_k, Agent_i]``.

Items are ``[Command, Parameter, AgentID]`` triples or objects ``{"command", "parameter", "agent"}``
(also wrapped as ``{"instructions": [...]}``). ``MoveTo Landmark_k`` sends an agent toward landmark ``k``
until a new plan is given. :func:`validate_plan` is strict (the first malformed item raises
:class:`~guidedrl.envs.InvalidAction` with the reason); :class:`PlanExecutor` accepts anything, rejects
each bad item with a reason (malformed, unknown command, unknown landmark or agent, a second
instruction for an agent) and moves every instructed agent; agents without an instruction stay (no-op).
"""

from __future__ import annotations

import math
import re
from typing import Any

from guidedrl.envs import InvalidAction, PlanStep, excerpt, instruction_fields

from guidedrl_env_mpe.expert import move_toward


_COMMANDS = {"moveto", "move_to", "move to", "move", "goto", "go_to", "go to"}
_LANDMARK = re.compile(r"\s*(?:landmark|lm|l)?[\s_#:]*(\d{1,6})\s*", re.IGNORECASE)
_AGENT = re.compile(r"\s*(?:agent|a)?[\s_#:]*(\d{1,6})\s*", re.IGNORECASE)
_MAX_TEXT = 64


show = excerpt  # a bounded excerpt of an answer item for a reason


def _index(value: Any, pattern: re.Pattern[str], n: int, what: str) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and len(value) <= _MAX_TEXT:
        found = pattern.fullmatch(value)
        if found:
            value = int(found.group(1))
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
        raise InvalidAction(f"unknown {what.lower()} {show(value)}; use {what}_0 .. {what}_{n - 1}")
    return value


def parse_item(item: Any, agents: list[str], n_landmarks: int) -> dict[str, Any]:
    """``{"command": "MoveTo", "parameter": <landmark index>, "agent": "agent_i"}``, or InvalidAction."""
    item = instruction_fields(item)
    command = item["command"]
    if not (isinstance(command, str) and len(command) <= _MAX_TEXT and command.strip().lower() in _COMMANDS):
        raise InvalidAction(f"unknown command {show(command)}; the only command is MoveTo")
    agent = agents[_index(item["agent"], _AGENT, len(agents), "Agent")]
    landmark = _index(item["parameter"], _LANDMARK, n_landmarks, "Landmark")
    return {"command": "MoveTo", "parameter": landmark, "agent": agent}


def _items(instructions: Any) -> list[Any]:
    if isinstance(instructions, dict) and "instructions" in instructions:
        instructions = instructions["instructions"]
    if not isinstance(instructions, (list, tuple)):
        raise InvalidAction(f"the answer must be a list of [Command, Parameter, AgentID] items, got {show(instructions)}")
    return list(instructions)


def validate_plan(instructions: Any, agents: list[str], n_landmarks: int) -> list[dict[str, Any]]:
    """Normalised items, or :class:`InvalidAction` naming the first malformed one."""
    items = _items(instructions)
    if not items:
        raise InvalidAction("the plan is empty: give each agent one MoveTo Landmark_k")
    if len(items) > 4 * len(agents):
        raise InvalidAction(f"the plan has {len(items)} items; give each agent one (at most {4 * len(agents)} are read)")
    out, seen = [], set()
    for k, item in enumerate(items):
        try:
            parsed = parse_item(item, agents, n_landmarks)
        except InvalidAction as exc:
            raise InvalidAction(f"item {k}: {exc}") from None
        if parsed["agent"] in seen:
            raise InvalidAction(f"item {k}: {parsed['agent']} already has an instruction; give each agent one")
        seen.add(parsed["agent"])
        out.append(parsed)
    return out


class PlanExecutor:
    """A plan → one step's actions in a state (every agent; no-op for agents without an instruction)."""

    def __init__(self, agents: list[str], n_landmarks: int) -> None:
        self.agents, self.n_landmarks = list(agents), n_landmarks

    def actions(self, plan: Any, state: dict[str, Any]) -> PlanStep:
        acts = dict.fromkeys(self.agents, 0)
        rejected: list[tuple[Any, str]] = []
        try:
            items = _items(plan)
        except InvalidAction as exc:
            return PlanStep(acts, [(show(plan), str(exc))])
        limit = 4 * len(self.agents)
        if len(items) > limit:
            rejected.append((f"items {limit}..{len(items) - 1}", f"the plan has {len(items)} items; only the first {limit} are read"))
            items = items[:limit]
        by_id = {a["id"]: a for a in state["agents"]}
        done: dict[str, int] = {}
        for k, item in enumerate(items):
            try:
                parsed = parse_item(item, self.agents, self.n_landmarks)
            except InvalidAction as exc:
                rejected.append((show(item), f"item {k}: {exc}"))
                continue
            agent = parsed["agent"]
            if agent in done:
                rejected.append((parsed, f"item {k}: {agent} already has an instruction (item {done[agent]}); the first one holds"))
                continue
            done[agent] = k
            if agent in by_id:
                acts[agent] = move_toward(by_id[agent], state["landmarks"][parsed["parameter"]])
        return PlanStep(acts, rejected)
