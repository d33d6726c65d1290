"""What the LLM layer is asked and what it answers: :class:`Question` and :class:`Answer`.

The answer schemas of the built-in question kinds live with their kind in :mod:`guidedrl.llm.kinds`.
A schema is the JSON object an LLM must answer with; it is shown to the LLM (format instructions),
used for constrained decoding by backends that support it, and parsed by LangChain's
``PydanticOutputParser``. A question's ``validator`` then turns the parsed object into the value the
caller gets (e.g. a legal action), raising ``ValueError`` / :class:`guidedrl.envs.InvalidAction` with
a reason that is fed back to the LLM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import attrs
from pydantic import AfterValidator, BaseModel, Field

#: The built-in question kinds, one prompt template each.
KINDS = ("action", "critical_states", "implicit_reward", "instructions", "reward_critique")

#: Longest ``reason`` kept; a longer one is cut here, not rejected (the answer's value is what counts).
REASON_CHARS = 200


def _truncate_reason(text: str) -> str:
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "\u2026"


Reason = Annotated[
    str,
    AfterValidator(_truncate_reason),
    Field(description=f"One short sentence (cut at {REASON_CHARS} characters)."),
]


@attrs.frozen(kw_only=True)
class Question:
    """One question to the LLM about the env.

    The prompt is the template of ``kind`` (or ``template``) filled with the env's task, the
    natural-language ``description``, the action vocabulary, the fenced JSON block
    ``{"question": kind, "env": env_id, **payload}`` and the schema's format instructions.
    """

    kind: str
    """Question kind: one of :data:`KINDS`, or a custom kind (then ``template`` is required)."""
    payload: dict[str, Any]
    """Exact JSON data merged into the prompt's JSON block (``state`` or ``states``/``actions``/...)."""
    description: str
    """The state(s) in words, from ``adapter.describe()``."""
    schema: type[BaseModel]
    """Pydantic model of the answer (shown to the LLM, parsed with ``PydanticOutputParser``)."""
    validator: Callable[[Any], Any] | None = None
    """Turns the parsed answer into the value returned; raises ``ValueError`` with a reason when invalid."""
    template: str | None = None
    """Overrides the client's template for this question (same variables, see ``docs/llm.md``)."""
    extra: str = ""
    """Kind-specific instructions filled into the template's ``{extra}``."""
    fallback: Any = None
    """Value returned when no valid answer is had."""


@attrs.frozen(kw_only=True)
class Answer:
    """What :meth:`guidedrl.llm.LLMClient.ask` returns; never an exception for LLM misbehaviour."""

    value: Any
    """The validated value, or the question's fallback."""
    ok: bool
    """Whether ``value`` comes from a valid LLM answer (or a cached one)."""
    cached: bool = False
    """Answered from the response cache (no backend call)."""
    fallback: bool = False
    """``value`` is the fallback: the answer stayed invalid, the backend failed, or a budget is spent."""
    error: str | None = None
    """Why the answer fell back (last validation error, backend error, or the spent budget)."""
    raw: str | None = None
    """The LLM's raw text of the last attempt."""
    attempts: int = 0
    """Backend calls made for this question."""
