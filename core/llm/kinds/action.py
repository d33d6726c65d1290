"""Kind ``action``: which action should the agent take now? (ULTRA's and ACE's action advice.)

The answer is ``{"action": <the vocabulary's JSON schema>, "reason"}``; ``adapter.vocabulary.parse``
turns it into a legal action or rejects it with a reason. With ``bad_action`` the question shows a
sub-optimal action as a negative example (ACE's bad-case reasoning) and rejects it as an answer.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pydantic
from guidedrl.llm.jsondata import jsonable
from guidedrl.llm.kinds.common import Asker, action_words, info_at, vocabulary
from guidedrl.llm.questions import Question, Reason
from pydantic import BaseModel, Field

KIND = "action"


def action_schema(action_json_schema: dict[str, Any]) -> type[BaseModel]:
    """The answer schema of an ``action`` question, with the vocabulary's JSON schema for ``action``."""
    return _schema(json.dumps(action_json_schema, default=jsonable))  # key order kept: it is in the prompt


@functools.lru_cache(maxsize=128)
def _schema(action_json_schema: str) -> type[BaseModel]:
    # one class per vocabulary schema: building it is slow, and the parser cache keys on it
    return pydantic.create_model(
        "ActionAnswer",
        __doc__="The action the agent should take now.",
        action=(Any, Field(json_schema_extra=json.loads(action_json_schema), description="The action.")),
        reason=(Reason, ""),
    )


def question(
    asker: Asker,
    obs: Any,
    info: dict[str, Any] | None = None,
    *,
    bad_action: Any = None,
    history: str | None = None,
    template: str | None = None,
) -> Question:
    """The question behind :func:`suggest` (to batch it with others in ``ask_many``)."""
    vocab = vocabulary(asker.adapter, KIND)
    desc = asker.adapter.describe(obs, info)
    payload: dict[str, Any] = {"state": desc.state}
    extra = []
    bad_words, bad_parsed = "", None
    if bad_action is not None:
        bad = vocab.to_json(bad_action)
        payload["bad_action"] = bad
        bad_words = action_words(vocab, bad)
        try:
            bad_parsed = vocab.parse(bad)
        except Exception:  # noqa: BLE001 - a bad action the vocabulary cannot read is never matched
            bad_parsed = None
        extra.append(
            f"The action {bad_words} (`bad_action`) was judged sub-optimal in this "
            "state. Say in `reason` why it is bad, then choose a different, better action."
        )

    def validator(answer: Any) -> Any:
        action = vocab.parse(answer.action)
        if bad_parsed is not None and np.array_equal(np.asarray(action), np.asarray(bad_parsed)):
            raise ValueError(
                f"{bad_words} is the action judged sub-optimal (`bad_action`); choose a different action"
            )
        return action

    if history:
        extra.append(f"Recent history:\n{history}")
    return Question(
        kind=KIND,
        payload=payload,
        description=desc.text,
        schema=action_schema(vocab.json_schema()),
        validator=validator,
        extra="\n".join(extra),
        template=template,
    )


def suggest(
    asker: Asker,
    obs: Any,
    info: dict[str, Any] | None = None,
    *,
    bad_action: Any = None,
    history: str | None = None,
    template: str | None = None,
) -> Any | None:
    """A legal action for ``obs``, or ``None`` (the fallback)."""
    q = question(asker, obs, info, bad_action=bad_action, history=history, template=template)
    return asker.ask(q).value


def suggest_many(
    asker: Asker,
    obs_batch: Sequence[Any] | np.ndarray,
    infos: Any = None,
    *,
    bad_actions: Sequence[Any] | None = None,
    template: str | None = None,
) -> list[Any | None]:
    """:func:`suggest` for a batch of observations, asked concurrently."""
    questions = [
        question(
            asker,
            obs_batch[i],
            info_at(infos, i),
            bad_action=None if bad_actions is None else bad_actions[i],
            template=template,
        )
        for i in range(len(obs_batch))
    ]
    return [a.value for a in asker.ask_many(questions)]
