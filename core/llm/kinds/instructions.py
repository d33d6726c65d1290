"""Kind ``instructions``: a plan for a team of agents, ``[{"command", "parameter", "agent"}]``
(LEED's and LCIL's executable plans). The adapter's ``validate_plan(plan)``, when it has one, checks
every item and raises ``InvalidAction`` with the reason that is fed back to the LLM."""

from __future__ import annotations

from typing import Any

from guidedrl.llm.kinds.common import Asker
from guidedrl.llm.questions import Question
from pydantic import BaseModel

KIND = "instructions"


class Instruction(BaseModel):
    command: str
    parameter: str | int
    agent: str


class InstructionsAnswer(BaseModel):
    """A plan for the team: instructions executed in order."""

    instructions: list[Instruction]


def question(
    asker: Asker,
    observations: Any,
    info: dict[str, Any] | None = None,
    *,
    history: str | None = None,
    template: str | None = None,
) -> Question:
    """The question behind :func:`ask`."""
    adapter = asker.adapter
    desc = adapter.describe(observations, info)
    validate_plan = getattr(adapter, "validate_plan", None)

    def validator(answer: InstructionsAnswer) -> list[dict[str, Any]]:
        plan = [item.model_dump() for item in answer.instructions]
        return list(validate_plan(plan)) if validate_plan is not None else plan

    return Question(
        kind=KIND,
        payload={"state": desc.state},
        description=desc.text,
        schema=InstructionsAnswer,
        validator=validator,
        extra=f"Recent history:\n{history}" if history else "",
        template=template,
    )


def ask(
    asker: Asker,
    observations: Any,
    info: dict[str, Any] | None = None,
    *,
    history: str | None = None,
    template: str | None = None,
) -> list[dict[str, Any]] | None:
    """A checked plan, or ``None`` (the fallback)."""
    return asker.ask(question(asker, observations, info, history=history, template=template)).value
