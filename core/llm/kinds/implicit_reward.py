"""Kind ``implicit_reward``: how good is this action in this state, from -1 to 1? (ULTRA's implicit
reward.) The answer is ``{"reward": -1..1, "reason"}``; the range is checked by the schema."""

from __future__ import annotations

from typing import Any

from guidedrl.llm.kinds.common import Asker, action_words, vocabulary
from guidedrl.llm.questions import Question, Reason
from pydantic import BaseModel, Field

KIND = "implicit_reward"


class ImplicitRewardAnswer(BaseModel):
    """How good the action is in this state."""

    reward: float = Field(ge=-1.0, le=1.0, description="-1 (harmful) .. 1 (ideal).")
    reason: Reason = ""


def question(
    asker: Asker, obs: Any, action: Any, info: dict[str, Any] | None = None, *, template: str | None = None
) -> Question:
    """The question behind :func:`ask`."""
    vocab = vocabulary(asker.adapter, KIND)
    desc = asker.adapter.describe(obs, info)
    action_json = vocab.to_json(action)
    return Question(
        kind=KIND,
        payload={"state": desc.state, "action": action_json},
        description=desc.text,
        schema=ImplicitRewardAnswer,
        validator=lambda a: float(a.reward),
        extra=f"Action taken: {action_words(vocab, action_json)}.",
        template=template,
    )


def ask(
    asker: Asker, obs: Any, action: Any, info: dict[str, Any] | None = None, *, template: str | None = None
) -> float | None:
    """How good ``action`` is in ``obs``, in [-1, 1], or ``None`` (the fallback)."""
    return asker.ask(question(asker, obs, action, info, template=template)).value
