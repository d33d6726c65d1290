"""``SimulatedChatModel``: a LangChain chat model whose answers come from the env adapter's expert."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pydantic
from guidedrl.envs.base import _to_jsonable
from guidedrl.errors import ConfigError
from guidedrl.llm.options import check_options
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

OPTIONS = ("error_rate", "invalid_rate", "latency_ms", "seed")


class SimulatedChatModel(BaseChatModel):
    """Answers guidedrl questions from ``adapter.expert``.

    The answer to a prompt is deterministic given ``seed`` and the prompt (the random draws are
    seeded by both), so concurrent and repeated runs agree.
    """

    adapter: Any = Field(exclude=True)
    """The env adapter whose ``expert`` answers (and whose ``vocabulary`` samples wrong actions)."""
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Fraction of answers that are valid but wrong (random legal action, random steps, random sign)."""
    invalid_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Fraction of answers that are invalid (malformed JSON or text, out-of-range values)."""
    latency_ms: float = Field(default=0.0, ge=0.0)
    """Simulated latency per call (real ``asyncio.sleep``/``time.sleep``)."""
    seed: int = 0
    model_name: str = "simulated"

    @property
    def _llm_type(self) -> str:
        return "guidedrl-simulated"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # latency does not change answers, so it is not part of the cache key
        return {
            "env": getattr(self.adapter, "env_id", ""),
            "error_rate": self.error_rate,
            "invalid_rate": self.invalid_rate,
            "seed": self.seed,
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        return self._answer(messages)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        return self._answer(messages)

    # -- answering -----------------------------------------------------------------------------
    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        block = find_block(messages)
        digest = hashlib.sha256("\n".join(m.text for m in messages).encode()).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(digest[:8], "little")])
        kind = block["question"]
        expert = self.adapter.expert
        vocab = getattr(self.adapter, "vocabulary", None)
        if kind not in _ANSWERS:
            raise ValueError(
                f"the simulated backend cannot answer question kind {kind!r}; it answers {sorted(_ANSWERS)}"
            )
        if rng.random() < self.invalid_rate:
            text = _invalid(kind, block, vocab, rng)
        else:
            wrong = rng.random() < self.error_rate
            text = json.dumps(_ANSWERS[kind](block, expert, vocab, rng, wrong), default=_to_jsonable)
        prompt_chars = sum(len(m.text) for m in messages)
        usage = {"input_tokens": prompt_chars // 4, "output_tokens": len(text) // 4 + 1}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        message = AIMessage(
            content=text, usage_metadata=usage, response_metadata={"model_name": self.model_name}
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def find_block(messages: Sequence[BaseMessage]) -> dict[str, Any]:
    """The last fenced ```json block holding a ``"question"`` key in the human messages."""
    for message in reversed(messages):
        if message.type != "human":
            continue
        for segment in reversed(message.text.split("```json")[1:]):
            try:
                data = json.loads(segment.split("```", 1)[0])
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and "question" in data:
                return data
    raise ValueError(
        'the simulated backend answers only guidedrl prompts: no ```json block with a "question" key '
        "in the human messages (a custom template must keep the {state_json} block)"
    )


def _action(expert: Any, vocab: Any, state: dict[str, Any], rng: np.random.Generator, wrong: bool) -> Any:
    action = vocab.sample(rng) if wrong else expert.act(state)
    return vocab.to_json(action) if vocab is not None else action


def _answer_action(block: dict, expert: Any, vocab: Any, rng: np.random.Generator, wrong: bool) -> dict:
    return {
        "action": _action(expert, vocab, block["state"], rng, wrong),
        "reason": "random" if wrong else "expert action",
    }


def _answer_reward(block: dict, expert: Any, vocab: Any, rng: np.random.Generator, wrong: bool) -> dict:
    if wrong:
        reward = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 1.0))
    else:
        reward = float(np.clip(expert.implicit_reward(block["state"], block["action"]), -1.0, 1.0))
    return {"reward": reward, "reason": "random" if wrong else "expert judgement"}


def _answer_critical(block: dict, expert: Any, vocab: Any, rng: np.random.Generator, wrong: bool) -> dict:
    n, k = len(block["states"]), int(block.get("max_states", 5))
    if wrong:
        ts = rng.choice(n, size=min(k, n), replace=False)
        items = [{"t": int(t), "score": float(rng.uniform(0.1, 1.0)), "reason": "random"} for t in ts]
    else:
        items = [
            {
                "t": int(d["t"]),
                "score": float(np.clip(d["score"], 0.0, 1.0)),
                "reason": str(d.get("reason", ""))[:200],
            }
            for d in expert.critical_states(block["states"], block["actions"], block["rewards"])[:k]
        ]
    return {"critical_states": items}


def _answer_instructions(block: dict, expert: Any, vocab: Any, rng: np.random.Generator, wrong: bool) -> dict:
    if not hasattr(expert, "plan"):
        raise ValueError("the simulated backend needs expert.plan(state) to answer 'instructions'")
    plan = [_instruction(item) for item in expert.plan(block["state"])]
    if wrong and plan:
        plan = [plan[i] for i in rng.permutation(len(plan))][: max(1, len(plan) - 1)]
    return {"instructions": plan}


def _instruction(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return {"command": item["command"], "parameter": item["parameter"], "agent": item["agent"]}
    command, parameter, agent = item  # [Command, Parameter, AgentID]
    return {"command": command, "parameter": parameter, "agent": agent}


def _answer_critique(block: dict, expert: Any, vocab: Any, rng: np.random.Generator, wrong: bool) -> dict:
    keys = [int(t) for t in block["key_steps"]]
    if wrong:
        levels = {t: int(rng.choice([-2, -1, 1, 2])) for t in keys}
    elif hasattr(expert, "critique"):
        levels = {
            int(t): int(v)
            for t, v in dict(
                expert.critique(block["states"], block["actions"], block["rewards"], keys)
            ).items()
        }
    else:  # the expert's action is helpful, any other harmful; important states count double
        levels = {}
        for t in keys:
            state, action = block["states"][t], block["actions"][t]
            sign = 1 if expert.implicit_reward(state, action) > 0 else -1
            levels[t] = sign * (2 if expert.importance(state) >= 0.5 else 1)
    return {
        "rewards": [
            {"t": t, "level": levels[t], "reason": "random" if wrong else "expert critique"} for t in keys
        ]
    }


_ANSWERS = {
    "action": _answer_action,
    "implicit_reward": _answer_reward,
    "critical_states": _answer_critical,
    "instructions": _answer_instructions,
    "reward_critique": _answer_critique,
}


def _invalid(kind: str, block: dict, vocab: Any, rng: np.random.Generator) -> str:
    """Malformed text (half the time), else well-formed JSON with an out-of-range value."""
    if rng.random() < 0.5:
        return str(
            rng.choice(
                ["I think the agent should be careful here.", '{"answer": ', '```json\n{"action": [1, \n```']
            )
        )
    if kind == "action":
        if getattr(vocab, "kind", None) == "discrete":
            bad: Any = int(vocab.n + rng.integers(1, 5))
        elif vocab is not None and hasattr(vocab, "high"):
            bad = [float(h) + 1.0 for h in vocab.high]
        else:
            bad = None
        return json.dumps({"action": bad, "reason": "out of range"})
    if kind == "implicit_reward":
        return json.dumps({"reward": 1.5 + float(rng.random()), "reason": "out of range"})
    if kind == "critical_states":
        return json.dumps(
            {"critical_states": [{"t": len(block["states"]) + 3, "score": 0.9, "reason": "no such step"}]}
        )
    if kind == "instructions":
        return json.dumps({"instructions": [{"command": "teleport", "parameter": -1, "agent": "nobody"}]})
    return json.dumps(
        {"rewards": [{"t": int(t), "level": 3, "reason": "out of range"} for t in block["key_steps"]]}
    )


def make_simulated(*, adapter: Any = None, model: str | None = None, **options: Any) -> SimulatedChatModel:
    """The ``simulated`` backend. Options: ``error_rate``, ``invalid_rate``, ``latency_ms``, ``seed``."""
    if adapter is None or getattr(adapter, "expert", None) is None:
        raise ConfigError(
            f"llm.backend = 'simulated' answers from the env adapter's expert, but {adapter!r} has none. "
            "Give the adapter an `expert` property (a guidedrl.envs.Expert), or use a real backend, e.g. "
            "llm.backend = 'openai:gpt-4o-mini' or 'llamacpp:gemma3-270m'."
        )
    if model:
        raise ConfigError(
            f"the simulated backend takes no model name; write llm.backend = 'simulated', not 'simulated:{model}'"
        )
    check_options("simulated", options, OPTIONS)
    try:
        return SimulatedChatModel(adapter=adapter, **options)
    except pydantic.ValidationError as exc:
        raise ConfigError(
            f"bad option for the simulated backend: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}"
        ) from exc
