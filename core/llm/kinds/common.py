"""What the question-kind modules share: the :class:`Asker` they ask through, and helpers to show
actions, states and trajectories in a question."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import pydantic
from guidedrl.llm.questions import Answer, Question

#: One step of a trajectory as a question shows it: (description, action as JSON, action in words, reward).
Step = tuple[Any, Any, str, float]


class Asker(Protocol):
    """What a question kind needs of the client (:class:`guidedrl.llm.LLMClient` is one)."""

    adapter: Any

    def ask(self, question: Question) -> Answer: ...

    def ask_many(self, questions: Sequence[Question]) -> list[Answer]: ...

    def context_tokens(self) -> int | None: ...

    def fits(self, question: Question) -> bool: ...


def vocabulary(adapter: Any, kind: str) -> Any:
    """``adapter.vocabulary``, or a ``TypeError`` naming the fix for kinds that need one."""
    vocab = getattr(adapter, "vocabulary", None)
    if vocab is None:
        raise TypeError(
            f"question kind {kind!r} needs an action vocabulary, but adapter {adapter!r} has "
            "no `vocabulary`; give the adapter one (guidedrl.envs.DiscreteActions / BoxActions)."
        )
    return vocab


def action_words(vocab: Any, action_json: Any) -> str:
    """An action for the prompt's text: ``2 (right)`` for a named discrete action, else its JSON."""
    names = getattr(vocab, "names", None)
    if (
        getattr(vocab, "kind", None) == "discrete"
        and isinstance(action_json, int)
        and names
        and 0 <= action_json < len(names)
    ):
        return f"{action_json} ({names[action_json]})"
    return json.dumps(action_json)


def plain(action: Any) -> Any:
    """An action without a vocabulary as plain JSON data."""
    arr = np.asarray(action)
    return arr.item() if arr.ndim == 0 else arr.tolist()


def info_at(infos: Any, i: int) -> dict[str, Any] | None:
    """Row ``i`` of a batch of infos: ``None``, a list of dicts, or a Tianshou ``Batch``."""
    if infos is None:
        return None
    item = infos[i]
    if hasattr(item, "to_dict"):
        item = item.to_dict()
    return item if isinstance(item, dict) else None


def trajectory(adapter: Any, episode: Any) -> list[Step]:
    """Every step of ``episode`` as a question shows it."""
    vocab = getattr(adapter, "vocabulary", None)
    infos = episode.infos
    steps = []
    for t in range(len(episode)):
        desc = adapter.describe(episode.obs[t], infos[t] if infos else None)
        action = vocab.to_json(episode.act[t]) if vocab is not None else plain(episode.act[t])
        steps.append((desc, action, action_words(vocab, action), round(float(episode.rew[t]), 4)))
    return steps


def episode_end(episode: Any, stop: int) -> str:
    """How the part of ``episode`` ending at ``stop`` ends: terminated, truncated or continues."""
    if stop < len(episode):
        return "continues"
    return "terminated" if episode.terminated else "truncated"


def trajectory_question(
    kind: str,
    steps: list[Step],
    schema: type[pydantic.BaseModel],
    *,
    validator: Callable[[Any], Any],
    payload_extra: dict[str, Any],
    extra: str,
    template: str | None,
) -> Question:
    """A question about ``steps``: states, actions and rewards in words and in the JSON block."""
    payload = {
        "states": [s[0].state for s in steps],
        "actions": [s[1] for s in steps],
        "rewards": [s[3] for s in steps],
        **payload_extra,
    }
    words = "\n".join(f"t={t}: {s[0].text}; action {s[2]}; reward {s[3]:g}" for t, s in enumerate(steps))
    return Question(
        kind=kind,
        payload=payload,
        description=words,
        schema=schema,
        validator=validator,
        extra=extra,
        template=template,
    )


def fitting_chunks(
    asker: Asker,
    length: int,
    chunk_len: int,
    overlap: int,
    build: Callable[[int, int], Question | None],
) -> tuple[list[int], list[Question | None]]:
    """Chunk starts and questions over ``length`` steps, ``chunk_len`` steps each overlapping by
    ``overlap``; the chunks are halved until every prompt fits the model's context (a chunk of
    one step that still does not fit is asked anyway, and the transport reports it)."""
    chunk_len = max(1, min(chunk_len, length))
    while True:
        starts = [0]
        while starts[-1] + chunk_len < length:
            starts.append(starts[-1] + chunk_len - overlap)
        questions = [build(start, min(start + chunk_len, length)) for start in starts]
        if chunk_len == 1 or asker.context_tokens() is None:
            return starts, questions
        if all(q is None or asker.fits(q) for q in questions):
            return starts, questions
        chunk_len = max(1, chunk_len // 2)
        overlap = min(overlap, chunk_len // 5)
