"""Kind ``reward_critique``: ACE's value critic, a reassigned reward for every key step of an episode.

The answer is ``{"rewards": [{"t", "level": -2/-1/1/2, "reason"}]}`` covering exactly the key steps;
the reward is ``level * k``. The whole episode is one question when it fits the model's context,
else chunks holding key steps; ``None`` unless every chunk got a valid answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from guidedrl.llm.kinds.common import Asker, episode_end, fitting_chunks, trajectory, trajectory_question
from guidedrl.llm.questions import Question, Reason
from pydantic import BaseModel, Field

KIND = "reward_critique"


class CritiquedStep(BaseModel):
    t: int = Field(ge=0, description="A key step (index into `states`).")
    level: Literal[-2, -1, 1, 2] = Field(
        description="-2 very harmful, -1 harmful, 1 helpful, 2 very helpful; reward = level * K."
    )
    reason: Reason = ""


class RewardCritiqueAnswer(BaseModel):
    """A reassigned reward for every key step."""

    rewards: list[CritiquedStep]


def validator(local: list[int], start: int, k: float) -> Callable[[RewardCritiqueAnswer], dict[int, float]]:
    """Checks that the answer covers exactly the chunk's key steps ``local``; rewards by episode step."""

    def validate(answer: RewardCritiqueAnswer) -> dict[int, float]:
        got = {item.t: item.level for item in answer.rewards}
        missing, extra = sorted(set(local) - set(got)), sorted(set(got) - set(local))
        if missing or extra:
            raise ValueError(
                "answer exactly the key steps "
                + str(local)
                + (f"; missing {missing}" if missing else "")
                + (f"; not key steps: {extra}" if extra else "")
            )
        return {start + t: float(got[t]) * k for t in local}

    return validate


def ask(
    asker: Asker,
    episode: Any,
    key_steps: Sequence[int],
    *,
    k: float = 1.0,
    template: str | None = None,
) -> dict[int, float] | None:
    """``{t: reward}`` for every key step, each one of ``{-2k, -k, +k, +2k}``, or ``None``."""
    keys = sorted({int(t) for t in key_steps})
    if not keys:
        return {}
    if keys[0] < 0 or keys[-1] >= len(episode):
        raise ValueError(f"key_steps must index the episode (0..{len(episode) - 1}), got {keys}")
    steps = trajectory(asker.adapter, episode)
    length = len(episode)

    def chunk(start: int, stop: int) -> Question | None:
        local = [t - start for t in keys if start <= t < stop]
        if not local:
            return None
        return trajectory_question(
            KIND,
            steps[start:stop],
            RewardCritiqueAnswer,
            validator=validator(local, start, k),
            payload_extra={"key_steps": local, "end": episode_end(episode, stop)},
            extra=f"Key steps: {local}.",
            template=template,
        )

    # the whole episode in one question when it fits the context, else chunks holding key steps
    starts, questions = fitting_chunks(asker, length, length, 0, chunk)
    answers = asker.ask_many([q for q in questions if q is not None])
    if not all(a.ok for a in answers):
        return None
    out: dict[int, float] = {}
    for answer in answers:
        out.update(answer.value)
    return dict(sorted(out.items()))
