"""``SimulatedChatModel``: a LangChain chat model whose answers come from the env adapter's expert."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import numpy as np
import pydantic
from guidedrl.errors import ConfigError
from guidedrl.llm.jsondata import jsonable
from guidedrl.llm.options import check_options
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, SecretStr

OPTIONS = ("error_rate", "invalid_rate", "latency_ms", "seed")

#: The reply to a prompt that is not a guidedrl question (no ```json block with a "question" key).
NOT_A_QUESTION = (
    "I am guidedrl's simulated LLM: I answer only guidedrl questions, which carry the exact state in a "
    '```json block with a "question" key.'
)
_CHUNK_CHARS = 16


class SimulatedChatModel(BaseChatModel):
    """Answers guidedrl questions from ``adapter.expert``.

    The answer to a prompt is deterministic given ``seed`` and the prompt (the random draws are
    seeded by both), so concurrent and repeated runs agree. A prompt that is not a guidedrl question
    gets :data:`NOT_A_QUESTION`. LangChain's standard parameters are honoured (``stop``,
    ``max_tokens``, ``timeout``, ``streaming``) or checked (``temperature`` must be 0: the answers are
    deterministic); unknown arguments are rejected.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    adapter: Any = Field(exclude=True)
    """The env adapter whose ``expert`` answers (and whose ``vocabulary`` samples wrong actions)."""
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Fraction of answers that are valid but wrong (random legal action, random steps, random sign)."""
    invalid_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Fraction of answers that are invalid (malformed JSON or text, out-of-range values)."""
    latency_ms: float = Field(default=0.0, ge=0.0)
    """Simulated latency per call (real ``asyncio.sleep``/``time.sleep``)."""
    seed: int = 0
    model_name: str = Field(default="simulated", alias="model")
    temperature: float = Field(default=0.0, ge=0.0, le=0.0)
    """Only 0: the simulated expert is deterministic (use ``error_rate`` for wrong answers)."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Answers are cut to this many tokens (4 characters a token), like a real model's limit."""
    timeout: float | None = Field(default=None, gt=0.0)
    """A call whose ``latency_ms`` exceeds this raises ``TimeoutError`` after ``timeout`` seconds."""
    stop: list[str] | None = None
    """Default stop sequences: the answer is cut before the first one (per-call ``stop`` wins)."""
    max_retries: int = Field(default=0, ge=0)
    """Accepted as LangChain's standard parameter; the simulated backend never fails transiently,
    so there is nothing to retry."""
    api_key: SecretStr | None = Field(default=None, exclude=True)
    """Accepted as LangChain's standard parameter and never used (no service is called)."""
    streaming: bool = False
    """``invoke`` streams (LangChain's standard parameter); the answer is the same."""

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
            **({"max_tokens": self.max_tokens} if self.max_tokens is not None else {}),
            **({"stop": self.stop} if self.stop else {}),
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "guidedrl-simulated"
        params["ls_model_name"] = kwargs.get("model") or self.model_name
        params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = list(stop or self.stop or [])
        return params

    def _delay(self) -> tuple[float, bool]:
        """Seconds to wait, and whether the call then times out."""
        delay = self.latency_ms / 1000
        if self.timeout is not None and delay > self.timeout:
            return self.timeout, True
        return delay, False

    def _timed_out(self) -> TimeoutError:
        return TimeoutError(f"simulated latency {self.latency_ms:g} ms exceeds timeout {self.timeout:g} s")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        delay, timed_out = self._delay()
        if delay:
            time.sleep(delay)
        if timed_out:
            raise self._timed_out()
        return ChatResult(generations=[ChatGeneration(message=self._answer(messages, stop))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        delay, timed_out = self._delay()
        if delay:
            await asyncio.sleep(delay)
        if timed_out:
            raise self._timed_out()
        return ChatResult(generations=[ChatGeneration(message=self._answer(messages, stop))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        delay, timed_out = self._delay()
        if delay:
            time.sleep(delay)
        if timed_out:
            raise self._timed_out()
        for chunk in _chunks(self._answer(messages, stop)):
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        delay, timed_out = self._delay()
        if delay:
            await asyncio.sleep(delay)
        if timed_out:
            raise self._timed_out()
        for chunk in _chunks(self._answer(messages, stop)):
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    # -- answering -----------------------------------------------------------------------------
    def _answer(self, messages: list[BaseMessage], stop: list[str] | None = None) -> AIMessage:
        text = self._text(messages)
        for sequence in stop or self.stop or []:
            if sequence and sequence in text:
                text = text[: text.index(sequence)]
        if self.max_tokens is not None:
            text = text[: 4 * self.max_tokens]
        prompt_chars = sum(len(m.text) for m in messages)
        usage = {"input_tokens": prompt_chars // 4, "output_tokens": len(text) // 4 + 1}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        return AIMessage(
            content=text,
            usage_metadata=usage,
            response_metadata={"model_name": self.model_name, "model_provider": "guidedrl-simulated"},
        )

    def _text(self, messages: list[BaseMessage]) -> str:
        try:
            block = find_block(messages)
        except ValueError:
            return NOT_A_QUESTION
        digest = hashlib.sha256("\n".join(m.text for m in messages).encode("utf-8", "replace")).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(digest[:8], "little")])
        kind = block["question"]
        expert = self.adapter.expert
        vocab = getattr(self.adapter, "vocabulary", None)
        if kind not in _ANSWERS:
            raise ValueError(
                f"the simulated backend cannot answer question kind {kind!r}; it answers {sorted(_ANSWERS)}"
            )
        if rng.random() < self.invalid_rate:
            return _invalid(kind, block, vocab, rng)
        wrong = rng.random() < self.error_rate
        return json.dumps(_ANSWERS[kind](block, expert, vocab, rng, wrong), default=jsonable)


def _chunks(message: AIMessage) -> Iterator[ChatGenerationChunk]:
    """``message`` as stream chunks of a few characters; the last one carries the usage."""
    text = message.text
    pieces = [text[i : i + _CHUNK_CHARS] for i in range(0, len(text), _CHUNK_CHARS)] or [""]
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content=piece,
                usage_metadata=message.usage_metadata if last else None,
                response_metadata=message.response_metadata if last else {},
                **({"chunk_position": "last"} if last and _HAS_CHUNK_POSITION else {}),
            )
        )


_HAS_CHUNK_POSITION = "chunk_position" in AIMessageChunk.model_fields


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
