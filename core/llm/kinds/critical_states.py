"""Kind ``critical_states``: which steps of an episode are critical? (ULTRA's identification.)

The answer is ``{"critical_states": [{"t", "score": 0..1, "reason"}]}`` with ``t`` inside the asked
chunk. Long episodes are asked in overlapping chunks (concurrently, halved until they fit the model's
context) and merged with the maximum score per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guidedrl.llm.kinds.common import Asker, episode_end, fitting_chunks, trajectory, trajectory_question
from guidedrl.llm.questions import Question, Reason
from pydantic import BaseModel, Field

KIND = "critical_states"


class CriticalStep(BaseModel):
    t: int = Field(ge=0, description="Index into the `states` list of the JSON block.")
    score: float = Field(ge=0.0, le=1.0, description="How critical, 0..1.")
    reason: Reason = ""


class CriticalStatesAnswer(BaseModel):
    """The critical steps of the trajectory, most critical first."""

    critical_states: list[CriticalStep]


def validator(n: int) -> Callable[[CriticalStatesAnswer], list[dict[str, Any]]]:
    """Checks that every ``t`` is a step of an ``n``-step chunk; keeps the max score per step."""

    def validate(answer: CriticalStatesAnswer) -> list[dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for item in answer.critical_states:
            if item.t >= n:
                raise ValueError(f"t={item.t} is not a step of this trajectory; t must be in 0..{n - 1}")
            if item.t not in out or item.score > out[item.t]["score"]:
                out[item.t] = {"t": item.t, "score": float(item.score), "reason": item.reason}
        return sorted(out.values(), key=lambda d: (-d["score"], d["t"]))

    return validate


def ask(
    asker: Asker,
    episode: Any,
    *,
    max_states: int = 5,
    chunk_len: int = 50,
    overlap: int = 10,
    template: str | None = None,
) -> list[dict[str, Any]] | None:
    """The most critical steps of ``episode``: ``[{"t", "score", "reason"}]``, most critical first.

    ``t`` indexes the whole episode and a step found in two chunks keeps its max score. ``None`` when
    no chunk got a valid answer; chunks that fell back are left out.
    """
    if chunk_len <= overlap or overlap < 0:
        raise ValueError(
            f"critical_states needs 0 <= overlap < chunk_len, got overlap={overlap}, chunk_len={chunk_len}"
        )
    if max_states < 1:
        raise ValueError(f"max_states must be >= 1, got {max_states}")
    length = len(episode)
    if length == 0:
        return []
    steps = trajectory(asker.adapter, episode)

    def chunk(start: int, stop: int) -> Question:
        return trajectory_question(
            KIND,
            steps[start:stop],
            CriticalStatesAnswer,
            validator=validator(stop - start),
            payload_extra={"max_states": max_states, "end": episode_end(episode, stop)},
            extra=f"Give at most {max_states} steps.",
            template=template,
        )

    starts, questions = fitting_chunks(asker, length, chunk_len, overlap, chunk)
    answers = asker.ask_many(questions)
    if not any(a.ok for a in answers):
        return None
    best: dict[int, dict[str, Any]] = {}
    for start, answer in zip(starts, answers, strict=True):
        for item in answer.value or []:
            t = start + item["t"]
            if t not in best or item["score"] > best[t]["score"]:
                best[t] = {**item, "t": t}
    return sorted(best.values(), key=lambda d: (-d["score"], d["t"]))[:max_states]
