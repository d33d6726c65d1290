"""The one LLM client of a run: prompts, parsing, validation, retries, cache, budgets, call log.

Method plugins call it from synchronous training code (``ctx.llm``). Calls run on the client's own
asyncio event loop in a background thread, so it works from any thread, any number of times, and
from code that already runs an event loop; batched questions run concurrently up to
``max_concurrency``. Nothing an LLM writes is executed: answers are JSON, parsed by LangChain's
``PydanticOutputParser`` and validated by the env adapter's vocabulary.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import itertools
import json
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pydantic
from guidedrl.config import LLMConfig
from guidedrl.llm import prompts
from guidedrl.llm.cache import ResponseCache, cache_key
from guidedrl.llm.calllog import CallLog
from guidedrl.llm.safety import clean_text, load_answer_json, redact, secrets_of
from guidedrl.llm.questions import (
    Answer,
    CriticalStatesAnswer,
    ImplicitRewardAnswer,
    InstructionsAnswer,
    Question,
    RewardCritiqueAnswer,
    action_schema,
)
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.outputs import Generation
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

#: Errors that mean "the LLM answered, but not usably": the answer is re-asked, then falls back.
#: Parsing and validation catch every ``Exception`` (an answer must never stop training); these are
#: the expected ones, the others are logged with their type name so that a validator's bug shows.
INVALID_ERRORS = (OutputParserException, ValueError, TypeError, KeyError, IndexError)

logger = logging.getLogger("guidedrl.llm")

#: Failures and fallbacks announced on the console (with their reason) before the rest are only counted.
ANNOUNCED_FAILURES = 3

_TRANSIENT_NAMES = {
    "APIConnectionError",
    "APITimeoutError",
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "TransportError",
    "RemoteProtocolError",
}


def is_transient(exc: BaseException) -> bool:
    """Whether a backend error is worth retrying: timeouts, connection errors, 408/409/429, 5xx."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError)):
        return True
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status in (408, 409, 429) or status >= 500
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


class StrictPydanticOutputParser(PydanticOutputParser):
    """LangChain's parser, but truncated JSON is an error (its default silently completes it), size
    and nesting depth are bounded before parsing, NaN/Infinity are rejected and strings are made
    surrogate-free (:func:`guidedrl.llm.safety.load_answer_json`)."""

    def parse_result(self, result: list[Generation], *, partial: bool = False) -> Any:
        return self._parse_obj(load_answer_json(clean_text(result[0].text)))


class _BudgetSpent(Exception):
    pass


@attrs.define
class _Prepared:
    """A question rendered to messages, with its cache key and parser."""

    number: int
    question: Question
    messages: list[BaseMessage]
    key: str
    prompt_sha256: str
    parser: StrictPydanticOutputParser
    json_schema: dict[str, Any]
    too_long: str | None = None
    """Why the prompt is not sent (it does not fit the model's context), or ``None``."""


class LLMClient:
    """Asks an LLM questions about env states; every answer is validated, cached and logged.

    Build it with :meth:`from_config` (what ``ctx.llm`` does) or directly around any LangChain
    ``BaseChatModel`` (tests, notebooks). ``templates`` (kind → template) is the client's prompt
    wording: the defaults updated with the adapter's ``prompt_templates``; edit it, or pass
    ``template=`` to a question, to override (see :mod:`guidedrl.llm.prompts`).
    """

    def __init__(
        self,
        model: BaseChatModel,
        *,
        adapter: Any,
        config: LLMConfig | None = None,
        run_dir: str | Path | None = None,
        label: str | None = None,
        cache: ResponseCache | None = None,
        templates: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model
        self.adapter = adapter
        self.config = config = config or LLMConfig()
        self.label = label or config.backend
        self.model_name = str(
            getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__
        )
        self.templates = prompts.merge_templates(getattr(adapter, "prompt_templates", None), templates)
        if cache is None:
            cache = ResponseCache(config.cache_path, mode=config.cache)
        self.cache = cache
        self.log = CallLog(run_dir, full=config.log == "full")
        self._params = model._get_llm_string()  # what LangChain's own caches key on
        self._accepts_schema = bool(getattr(model, "accepts_json_schema", False))
        self._parsers: dict[type, tuple[StrictPydanticOutputParser, str, dict[str, Any]]] = {}
        self._action_schema: type[pydantic.BaseModel] | None = None
        self._numbers = itertools.count(1)  # question numbers in the log (thread-safe in CPython)
        self._questions = 0
        self._calls_started = 0
        self._exhausted: dict[str, Any] | None = None
        self._wall_s = 0.0
        self._waiting = 0
        self._waiting_since = 0.0
        self._wall_lock = threading.Lock()
        self._closed = False
        self._secrets = secrets_of(model)
        self._announced = 0
        self._first_error: str | None = None
        self._timeouts_in_a_row = 0  # shared backoff: a slow server is not hit by a retry storm
        self._backoff_until = 0.0
        self._context: int | None | bool = config.context_tokens or False  # False: not asked yet
        # Own event loop in a daemon thread: callable from any sync code, repeatedly; async
        # clients (httpx) stay bound to one loop for the client's life.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.max_concurrency + 2, thread_name_prefix="guidedrl-llm"
        )
        self._loop = asyncio.new_event_loop()
        self._loop.set_default_executor(self._executor)
        self._thread = threading.Thread(target=self._loop.run_forever, name="guidedrl-llm-loop", daemon=True)
        self._thread.start()
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self._finalizer = weakref.finalize(
            self, _shutdown, self._loop, self._thread, self._executor, self.cache, self.log
        )

    @classmethod
    def from_config(cls, config: LLMConfig, *, adapter: Any, run_dir: Path | None) -> LLMClient:
        """The client of a run: the backend ``config.backend`` made through the LLM registry."""
        from guidedrl.registry import make_llm

        model = make_llm(config.backend, adapter=adapter, **config.options)
        if not isinstance(model, BaseChatModel):
            raise TypeError(
                f"LLM backend {config.backend!r} returned {type(model).__name__}, not a LangChain "
                "BaseChatModel; its factory must return a chat model (see docs/llm.md, 'Adding a backend')."
            )
        return cls(model, adapter=adapter, config=config, run_dir=run_dir, label=config.backend)

    # -- asking ------------------------------------------------------------------------------
    def ask(self, question: Question) -> Answer:
        """Ask one question; returns its fallback (``ok=False``) instead of raising for LLM errors."""
        return self.ask_many([question])[0]

    def ask_many(self, questions: Sequence[Question]) -> list[Answer]:
        """Ask several questions concurrently (at most ``max_concurrency`` calls in flight)."""
        if self._closed:
            raise RuntimeError("this LLMClient is closed; create a new one")
        if threading.current_thread() is self._thread:
            raise RuntimeError("LLMClient.ask* cannot be called from the client's own event loop thread")
        if not questions:
            return []
        prepared = [self._prepare(q) for q in questions]
        self._start_waiting()
        try:
            future = asyncio.run_coroutine_threadsafe(self._ask_all(prepared), self._loop)
            return future.result()
        finally:
            self._stop_waiting()

    # -- question kinds used by method plugins --------------------------------------------------
    def suggest_action(
        self,
        obs: Any,
        info: dict[str, Any] | None = None,
        *,
        bad_action: Any = None,
        history: str | None = None,
        template: str | None = None,
    ) -> Any | None:
        """A legal action for ``obs`` (parsed by ``adapter.vocabulary``), or ``None`` (fallback).

        ``bad_action``: a sub-optimal action shown as a negative example (ACE's bad-case reasoning).
        ``history``: recent steps in words, added to the prompt.
        """
        return self.ask(
            self.action_question(obs, info, bad_action=bad_action, history=history, template=template)
        ).value

    def suggest_actions(
        self,
        obs_batch: Sequence[Any] | np.ndarray,
        infos: Any = None,
        *,
        bad_actions: Sequence[Any] | None = None,
        template: str | None = None,
    ) -> list[Any | None]:
        """:meth:`suggest_action` for a batch of observations, asked concurrently."""
        n = len(obs_batch)
        questions = [
            self.action_question(
                obs_batch[i],
                _info_at(infos, i),
                bad_action=None if bad_actions is None else bad_actions[i],
                template=template,
            )
            for i in range(n)
        ]
        return [a.value for a in self.ask_many(questions)]

    def implicit_reward(
        self, obs: Any, action: Any, info: dict[str, Any] | None = None, *, template: str | None = None
    ) -> float | None:
        """How good ``action`` is in ``obs``, in [-1, 1] (ULTRA's implicit reward), or ``None``."""
        vocab = self._vocabulary("implicit_reward")
        desc = self.adapter.describe(obs, info)
        action_json = vocab.to_json(action)
        question = Question(
            kind="implicit_reward",
            payload={"state": desc.state, "action": action_json},
            description=desc.text,
            schema=ImplicitRewardAnswer,
            validator=lambda a: float(a.reward),
            extra=f"Action taken: {_action_words(vocab, action_json)}.",
            template=template,
        )
        return self.ask(question).value

    def critical_states(
        self,
        episode: Any,
        *,
        max_states: int = 5,
        chunk_len: int = 50,
        overlap: int = 10,
        template: str | None = None,
    ) -> list[dict[str, Any]] | None:
        """The most critical steps of ``episode``: ``[{"t", "score", "reason"}]``, most critical first.

        Episodes longer than ``chunk_len`` are asked in chunks overlapping by ``overlap`` steps
        (concurrently); ``t`` indexes the whole episode and a step found twice keeps its max score.
        ``None`` when no chunk got a valid answer; chunks that fell back are left out.
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
        steps = self._trajectory(episode)

        def chunk(start: int, stop: int) -> Question:
            end = ("terminated" if episode.terminated else "truncated") if stop == length else "continues"
            return self._trajectory_question(
                "critical_states",
                steps[start:stop],
                CriticalStatesAnswer,
                validator=_critical_validator(stop - start),
                payload_extra={"max_states": max_states, "end": end},
                extra=f"Give at most {max_states} steps.",
                template=template,
            )

        starts, questions = self._fitting_chunks(length, chunk_len, overlap, chunk)
        answers = self.ask_many(questions)
        if not any(a.ok for a in answers):
            return None
        best: dict[int, dict[str, Any]] = {}
        for start, answer in zip(starts, answers, strict=True):
            for item in answer.value or []:
                t = start + item["t"]
                if t not in best or item["score"] > best[t]["score"]:
                    best[t] = {**item, "t": t}
        return sorted(best.values(), key=lambda d: (-d["score"], d["t"]))[:max_states]

    def instructions(
        self,
        observations: Any,
        info: dict[str, Any] | None = None,
        *,
        history: str | None = None,
        template: str | None = None,
    ) -> list[dict[str, Any]] | None:
        """A multi-agent plan ``[{"command", "parameter", "agent"}]``, checked by the adapter's
        ``validate_plan(plan)`` when it has one (it raises ``InvalidAction`` with a reason), or ``None``."""
        desc = self.adapter.describe(observations, info)
        validate_plan = getattr(self.adapter, "validate_plan", None)

        def validator(answer: InstructionsAnswer) -> list[dict[str, Any]]:
            plan = [item.model_dump() for item in answer.instructions]
            return list(validate_plan(plan)) if validate_plan is not None else plan

        question = Question(
            kind="instructions",
            payload={"state": desc.state},
            description=desc.text,
            schema=InstructionsAnswer,
            validator=validator,
            extra=f"Recent history:\n{history}" if history else "",
            template=template,
        )
        return self.ask(question).value

    def critique_rewards(
        self,
        episode: Any,
        key_steps: Sequence[int],
        *,
        k: float = 1.0,
        template: str | None = None,
    ) -> dict[int, float] | None:
        """ACE's value critic: a reassigned reward for every key step, one of ``{-2k, -k, +k, +2k}``.

        The whole episode is shown; the LLM answers a level in {-2, -1, 1, 2} per key step (every key
        step, no other), multiplied by ``k``. ``None`` when no valid answer is had.
        """
        keys = sorted({int(t) for t in key_steps})
        if not keys:
            return {}
        if keys[0] < 0 or keys[-1] >= len(episode):
            raise ValueError(f"key_steps must index the episode (0..{len(episode) - 1}), got {keys}")

        steps = self._trajectory(episode)
        length = len(episode)

        def chunk(start: int, stop: int) -> Question | None:
            local = [t - start for t in keys if start <= t < stop]
            if not local:
                return None
            end = ("terminated" if episode.terminated else "truncated") if stop == length else "continues"
            return self._trajectory_question(
                "reward_critique",
                steps[start:stop],
                RewardCritiqueAnswer,
                validator=_critique_validator(local, start, k),
                payload_extra={"key_steps": local, "end": end},
                extra=f"Key steps: {local}.",
                template=template,
            )

        # the whole episode in one question when it fits the context, else chunks holding key steps
        starts, questions = self._fitting_chunks(length, length, 0, chunk)
        answers = self.ask_many([q for q in questions if q is not None])
        if not all(a.ok for a in answers):
            return None
        out: dict[int, float] = {}
        for answer in answers:
            out.update(answer.value)
        return dict(sorted(out.items()))

    def action_question(
        self,
        obs: Any,
        info: dict[str, Any] | None = None,
        *,
        bad_action: Any = None,
        history: str | None = None,
        template: str | None = None,
    ) -> Question:
        """The :class:`Question` behind :meth:`suggest_action` (to batch it with others in :meth:`ask_many`)."""
        vocab = self._vocabulary("action")
        if self._action_schema is None:
            self._action_schema = action_schema(vocab.json_schema())
        desc = self.adapter.describe(obs, info)
        payload: dict[str, Any] = {"state": desc.state}
        extra = []
        bad_words, bad_parsed = "", None
        if bad_action is not None:
            bad = vocab.to_json(bad_action)
            payload["bad_action"] = bad
            bad_words = _action_words(vocab, bad)
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
            kind="action",
            payload=payload,
            description=desc.text,
            schema=self._action_schema,
            validator=validator,
            extra="\n".join(extra),
            template=template,
        )

    # -- budgets and summary -------------------------------------------------------------------
    @property
    def exhausted(self) -> bool:
        """A budget (calls, tokens or wall time) is spent: every further question falls back at once."""
        return self._check_budget() is not None

    def summary(self) -> dict[str, Any]:
        """Counters for ``summary.json``; they equal what ``llm_calls.jsonl`` says."""
        return {
            "llm_backend": self.label,
            "llm_questions": self._questions,
            "llm_calls": self.log.calls,
            "llm_cache_hits": self.log.cache_hits,
            "llm_failures": self.log.failures,
            "llm_invalid": self.log.invalid,
            "llm_fallbacks": self.log.fallbacks,
            "llm_tokens": self.log.tokens,
            "llm_wall_s": round(self._wall_now(), 4),
            "llm_budget_exhausted": dict(self._exhausted) if self._exhausted else None,
            "llm_first_error": self._first_error,
        }

    def close(self) -> None:
        """Stop the event loop thread and close the cache and the log. Idempotent."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    def _vocabulary(self, kind: str) -> Any:
        vocab = getattr(self.adapter, "vocabulary", None)
        if vocab is None:
            raise TypeError(
                f"question kind {kind!r} needs an action vocabulary, but adapter {self.adapter!r} has "
                "no `vocabulary`; give the adapter one (guidedrl.envs.DiscreteActions / BoxActions)."
            )
        return vocab

    def _vocabulary_text(self) -> str:
        vocab = getattr(self.adapter, "vocabulary", None)
        if vocab is not None and hasattr(vocab, "prompt_text"):
            return vocab.prompt_text()
        return "Instructions are objects {command, parameter, agent}."

    def _trajectory(self, episode: Any) -> list[tuple[Any, Any, Any, float]]:
        """(description, action as JSON, action in words, reward) per step."""
        vocab = getattr(self.adapter, "vocabulary", None)
        infos = episode.infos
        steps = []
        for t in range(len(episode)):
            desc = self.adapter.describe(episode.obs[t], infos[t] if infos else None)
            action = vocab.to_json(episode.act[t]) if vocab is not None else _plain(episode.act[t])
            steps.append((desc, action, _action_words(vocab, action), round(float(episode.rew[t]), 4)))
        return steps

    def _trajectory_question(
        self,
        kind: str,
        steps: list[tuple[Any, Any, Any, float]],
        schema: type[pydantic.BaseModel],
        *,
        validator: Callable[[Any], Any],
        payload_extra: dict[str, Any],
        extra: str,
        template: str | None,
    ) -> Question:
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

    def _parser(
        self, schema: type[pydantic.BaseModel]
    ) -> tuple[StrictPydanticOutputParser, str, dict[str, Any]]:
        if schema not in self._parsers:
            parser = StrictPydanticOutputParser(pydantic_object=schema)
            self._parsers[schema] = (parser, parser.get_format_instructions(), schema.model_json_schema())
        return self._parsers[schema]

    # -- fitting the context -------------------------------------------------------------------
    def context_tokens(self) -> int | None:
        """The model's context window in tokens: ``llm.context_tokens``, else what the backend says
        (``model.context_window()``, asked once), else what a context error of the server said, else
        ``None`` (unknown: prompts are sent as they are)."""
        if self._context is False:
            self._context = _model_context(self.model)
        return self._context or None

    def _answer_reserve(self) -> int:
        value = getattr(self.model, "max_tokens", None)
        return int(value) if isinstance(value, int) and value > 0 else 512

    def prompt_tokens(self, messages: Sequence[BaseMessage]) -> int:
        """Tokens of ``messages`` as the backend will see them: ``model.count_prompt_tokens(messages)``
        where the backend can count, else :func:`estimate_tokens`."""
        count = getattr(self.model, "count_prompt_tokens", None)
        if callable(count):
            try:
                return int(count(messages))
            except Exception:  # noqa: BLE001 - fall back to the estimate
                pass
        return estimate_tokens(messages)

    def _too_long(self, messages: Sequence[BaseMessage]) -> str | None:
        """Why ``messages`` cannot be sent (they do not fit the context), or ``None``."""
        context = self.context_tokens()
        if context is None:
            return None
        reserve = min(self._answer_reserve(), context // 2)
        tokens = self.prompt_tokens(messages)
        if tokens + reserve <= context:
            return None
        return (
            f"prompt too long: about {tokens} tokens, but the model's context is {context} tokens "
            f"({reserve} kept for the answer). Give the model a longer context (llama.cpp server "
            "--n_ctx, vLLM --max-model-len, Ollama num_ctx) and set llm.context_tokens to it, or "
            "shorten the prompt (a shorter template; fewer steps per chunk)"
        )

    def _fitting_chunks(
        self,
        length: int,
        chunk_len: int,
        overlap: int,
        build: Callable[[int, int], Question | None],
    ) -> tuple[list[int], list[Question | None]]:
        """Chunk starts and questions over ``length`` steps, ``chunk_len`` steps each overlapping by
        ``overlap``; the chunks are halved until every prompt fits the model's context (a chunk of
        one step that still does not fit is sent to :meth:`ask_many`, which reports it)."""
        chunk_len = max(1, min(chunk_len, length))
        while True:
            starts = [0]
            while starts[-1] + chunk_len < length:
                starts.append(starts[-1] + chunk_len - overlap)
            questions = [build(start, min(start + chunk_len, length)) for start in starts]
            if chunk_len == 1 or self.context_tokens() is None:
                return starts, questions
            if all(q is None or self._too_long(self._render(q)[0]) is None for q in questions):
                return starts, questions
            chunk_len = max(1, chunk_len // 2)
            overlap = min(overlap, chunk_len // 5)

    def _learn_context(self, error: str) -> None:
        """A server that says its context size in an error teaches it to the later questions."""
        match = _CONTEXT_IN_ERROR.search(error)
        if match is None:
            return
        context = int(match.group(1))
        known = self.context_tokens()
        if known is None or context < known:
            self._context = context
            logger.warning(
                "LLM %s: the server says its context is %d tokens; later prompts are fitted to it "
                "(set llm.context_tokens = %d to start with it).",
                self.label,
                context,
                context,
            )

    # -- rendering and asking ------------------------------------------------------------------
    def _render(
        self, question: Question
    ) -> tuple[list[BaseMessage], StrictPydanticOutputParser, dict[str, Any]]:
        template = question.template or self.templates.get(question.kind)
        if template is None:
            raise ValueError(
                f"no prompt template for question kind {question.kind!r}; pass Question(template=...) "
                f"or add LLMClient.templates[{question.kind!r}]. Kinds with a template: "
                f"{', '.join(k for k in self.templates if k != 'system')}."
            )
        if question.template is not None:
            prompts.check_template(question.kind, question.template)
        parser, instructions, json_schema = self._parser(question.schema)
        messages = prompts.render(
            system=self.templates["system"],
            template=template,
            task=getattr(self.adapter, "task", "") or "",
            description=question.description,
            vocabulary=self._vocabulary_text(),
            state_json=prompts.state_block(
                question.kind, getattr(self.adapter, "env_id", ""), question.payload
            ),
            format_instructions=instructions,
            extra=question.extra,
        )
        return messages, parser, json_schema

    def _prepare(self, question: Question) -> _Prepared:
        messages, parser, json_schema = self._render(question)
        prompt = _prompt_data(messages)
        number = next(self._numbers)
        self._questions = max(self._questions, number)
        return _Prepared(
            number=number,
            question=question,
            messages=messages,
            key=cache_key(backend=self.label, model=self.model_name, params=self._params, prompt=prompt),
            prompt_sha256=hashlib.sha256(
                json.dumps(prompt, ensure_ascii=False).encode("utf-8", "surrogatepass")
            ).hexdigest(),
            parser=parser,
            json_schema=json_schema,
            too_long=self._too_long(messages),
        )

    async def _ask_all(self, prepared: list[_Prepared]) -> list[Answer]:
        return list(await asyncio.gather(*(self._ask_one(p) for p in prepared)))

    def _line(self, p: _Prepared, **fields: Any) -> dict[str, Any]:
        return {
            "q": p.number,
            "kind": p.question.kind,
            "prompt_sha256": p.prompt_sha256,
            "backend": self.label,
            "model": self.model_name,
            **fields,
        }

    def _validate(self, p: _Prepared, raw: str) -> Any:
        parsed = p.parser.parse(raw)
        return p.question.validator(parsed) if p.question.validator is not None else parsed

    def _error_text(self, exc: BaseException) -> str:
        """An exception as one loggable line: surrogate-free, secrets redacted, at most 500 characters."""
        return _short(exc, secrets=self._secrets)

    def _announce(self, p: _Prepared, what: str, error: str) -> None:
        """The first failures and fallbacks of a run, with their reason, on the console."""
        if self._first_error is None:
            self._first_error = error
        if self._announced >= ANNOUNCED_FAILURES:
            return
        self._announced += 1
        more = (
            "; later ones are only counted (summary.json llm_failures/llm_fallbacks, reasons in "
            "llm_calls.jsonl)"
            if self._announced == ANNOUNCED_FAILURES
            else ""
        )
        line = " ".join(error.split())
        line = line if len(line) <= 300 else line[:297] + "..."
        logger.warning("LLM %s (%s, %s question): %s%s", what, self.label, p.question.kind, line, more)

    async def _ask_one(self, p: _Prepared) -> Answer:
        question = p.question
        reason = self._check_budget()
        if reason is not None:
            return self._skip(p, attempt=0, error=f"budget exhausted: {reason['reason']}")
        if self.cache.readable:
            started = time.perf_counter()
            raw = self.cache.get(p.key)
            if raw is not None:
                try:
                    value = self._validate(p, raw)
                except Exception:  # noqa: BLE001 - a stale entry (e.g. a changed vocabulary): ask again
                    pass
                else:
                    latency = round(time.perf_counter() - started, 6)
                    self.log.write(
                        "cache_hit",
                        **self._line(
                            p,
                            attempt=0,
                            latency_s=latency,
                            tokens=None,
                            cache_hit=True,
                            valid=True,
                            failed=False,
                            fallback=False,
                            error=None,
                        ),
                        answer=raw,
                    )
                    return Answer(value=value, ok=True, cached=True, raw=raw)
        if p.too_long is not None:
            self._announce(p, "question not asked", p.too_long)
            return self._skip(p, attempt=0, error=p.too_long)
        messages = list(p.messages)
        calls = [0]  # backend calls made for this question (transient retries included)
        raw = None
        last_attempt = self.config.retries + 1
        for attempt in range(1, last_attempt + 1):
            try:
                result = await self._call(p, messages, attempt, calls)
            except _BudgetSpent as exc:
                error = f"budget exhausted: {exc.args[0]['reason']}"
                return self._skip(p, attempt=attempt, error=error, raw=raw, attempts=calls[0])
            except _CallFailed as exc:
                return Answer(
                    value=question.fallback,
                    ok=False,
                    fallback=True,
                    error=str(exc),
                    raw=raw,
                    attempts=calls[0],
                )
            raw = result.raw

            def log_call(*, valid: bool, fallback: bool, error: str | None) -> None:
                self.log.write(
                    "call",
                    **self._line(
                        p,
                        attempt=attempt,
                        latency_s=result.latency_s,
                        tokens=result.tokens,
                        cache_hit=False,
                        valid=valid,
                        failed=False,
                        fallback=fallback,
                        error=error,
                    ),
                    prompt=_prompt_data(messages),
                    answer=raw,
                )

            try:
                value = self._validate(p, raw)
            except Exception as exc:  # noqa: BLE001 - no answer may stop training: every error is invalid
                error = self._error_text(exc)
                final = attempt == last_attempt
                log_call(valid=False, fallback=final, error=error)
                if final:
                    self._announce(p, "answer invalid after re-asking", error)
                    return Answer(
                        value=question.fallback,
                        ok=False,
                        fallback=True,
                        error=error,
                        raw=raw,
                        attempts=calls[0],
                    )
                # re-ask with the validation error fed back
                messages = [*messages, AIMessage(content=raw), HumanMessage(content=_feedback(error))]
                continue
            log_call(valid=True, fallback=False, error=None)
            if self.cache.writable:
                self.cache.put(p.key, raw, backend=self.label, model=self.model_name, kind=question.kind)
            return Answer(value=value, ok=True, raw=raw, attempts=calls[0])
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(
        self, p: _Prepared, messages: list[BaseMessage], attempt: int, calls: list[int]
    ) -> _CallResult:
        """One answer from the backend, retrying transient errors with exponential backoff (tenacity).
        Every errored call is logged here; the caller logs the call that returned text.

        A timeout or transient error also holds back every later call of the client for a while
        (``backoff_s``, doubling with each round of such errors in a row, at most 30 s), so that the
        next questions do not pile onto a slow server; a call that answers resets it."""
        n_tries = self.config.transient_retries + 1

        def worth_retrying(exc: BaseException) -> bool:
            return is_transient(exc) and self._check_budget() is None

        retrying = AsyncRetrying(
            retry=retry_if_exception(worth_retrying),
            stop=stop_after_attempt(n_tries),
            wait=wait_exponential_jitter(
                multiplier=self.config.backoff_s, max=30.0, jitter=self.config.backoff_s / 2
            ),
            reraise=True,
        )
        async for retry_attempt in retrying:
            with retry_attempt:
                # a call counts against max_calls when it gets a slot, not while it waits for one
                async with self._semaphore:
                    hold = self._backoff_until - time.monotonic()
                    if hold > 0:
                        await asyncio.sleep(hold)
                    reason = self._check_budget()
                    if reason is not None:
                        raise _BudgetSpent(reason)
                    self._calls_started += 1
                    calls[0] += 1
                    started = time.perf_counter()
                    timeout, cut_by_wall = self._call_timeout()
                    try:
                        message = await asyncio.wait_for(self._invoke(p, messages), timeout=timeout)
                        raw, tokens = clean_text(message.text), _tokens(message)
                    except Exception as exc:
                        latency = round(time.perf_counter() - started, 6)
                        if cut_by_wall and isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
                            raise self._cut_by_wall(p, messages, attempt, latency) from exc
                        error = self._error_text(exc)
                        self._learn_context(error)
                        if is_transient(exc):
                            self._hold_back()
                        final = not (
                            worth_retrying(exc) and retry_attempt.retry_state.attempt_number < n_tries
                        )
                        self._log_unanswered(p, messages, attempt, latency, error, failed=final, fallback=final)
                        if final:
                            self._announce(p, "call failed", error)
                            raise _CallFailed(error) from exc
                        raise
                    self._timeouts_in_a_row = 0
                    return _CallResult(raw, round(time.perf_counter() - started, 6), tokens)
        raise AssertionError("unreachable")  # pragma: no cover

    def _hold_back(self) -> None:
        """Start a hold-back window after a timeout or transient error; errors of calls that were in
        flight together count once, so the window doubles per round of errors, not per call."""
        now = time.monotonic()
        if now < self._backoff_until:
            return
        self._timeouts_in_a_row += 1
        wait = min(self.config.backoff_s * 2 ** (self._timeouts_in_a_row - 1), 30.0)
        self._backoff_until = now + wait

    def _cut_by_wall(
        self, p: _Prepared, messages: list[BaseMessage], attempt: int, latency: float
    ) -> _CallFailed:
        """A call cut because ``max_wall_s`` ran out: a budget stop, logged as one (not a timeout)."""
        if self._exhausted is None:
            self._exhausted = {
                "reason": "max_wall_s",
                "limit": self.config.max_wall_s,
                "at_call": self._calls_started,
            }
        error = "budget exhausted: max_wall_s (the call in flight was cut)"
        self._log_unanswered(p, messages, attempt, latency, error, failed=False, fallback=True)
        return _CallFailed(error)

    def _log_unanswered(
        self,
        p: _Prepared,
        messages: list[BaseMessage],
        attempt: int,
        latency: float,
        error: str,
        *,
        failed: bool,
        fallback: bool,
    ) -> None:
        """The call-log line of a call that brought back no answer (an error, or cut by the budget)."""
        self.log.write(
            "call",
            **self._line(
                p,
                attempt=attempt,
                latency_s=latency,
                tokens=None,
                cache_hit=False,
                valid=None,
                failed=failed,
                fallback=fallback,
                error=error,
            ),
            prompt=_prompt_data(messages),
        )

    async def _invoke(self, p: _Prepared, messages: list[BaseMessage]) -> AIMessage:
        kwargs = {"json_schema": p.json_schema} if self._accepts_schema else {}
        return await self.model.ainvoke(messages, **kwargs)

    def _skip(
        self, p: _Prepared, *, attempt: int, error: str, raw: str | None = None, attempts: int = 0
    ) -> Answer:
        self.log.write(
            "skipped",
            **self._line(
                p,
                attempt=attempt,
                latency_s=0.0,
                tokens=None,
                cache_hit=False,
                valid=None,
                failed=False,
                fallback=True,
                error=error,
            ),
        )
        return Answer(
            value=p.question.fallback, ok=False, fallback=True, error=error, raw=raw, attempts=attempts
        )

    def _check_budget(self) -> dict[str, Any] | None:
        if self._exhausted is not None:
            return self._exhausted
        cfg = self.config
        reason = None
        if cfg.max_calls is not None and self._calls_started >= cfg.max_calls:
            reason = ("max_calls", cfg.max_calls)
        elif cfg.max_tokens is not None and self.log.tokens >= cfg.max_tokens:
            reason = ("max_tokens", cfg.max_tokens)
        elif cfg.max_wall_s is not None and self._wall_now() >= cfg.max_wall_s:
            reason = ("max_wall_s", cfg.max_wall_s)
        if reason is not None:
            self._exhausted = {"reason": reason[0], "limit": reason[1], "at_call": self._calls_started}
        return self._exhausted

    def _call_timeout(self) -> tuple[float, bool]:
        """The timeout of the next call, and whether it is cut short by what is left of ``max_wall_s``."""
        timeout = self.config.timeout_s
        if self.config.max_wall_s is not None:
            left = max(self.config.max_wall_s - self._wall_now(), 1e-3)
            if left < timeout:
                return left, True
        return timeout, False

    def _start_waiting(self) -> None:
        with self._wall_lock:
            if self._waiting == 0:
                self._waiting_since = time.monotonic()
            self._waiting += 1

    def _stop_waiting(self) -> None:
        with self._wall_lock:
            self._waiting -= 1
            if self._waiting == 0:
                self._wall_s += time.monotonic() - self._waiting_since

    def _wall_now(self) -> float:
        """Seconds during which some caller was waiting on this client (overlapping waits count once)."""
        with self._wall_lock:
            return self._wall_s + (time.monotonic() - self._waiting_since if self._waiting else 0.0)


class _CallFailed(Exception):
    """The backend errored and will not be retried."""


@attrs.frozen
class _CallResult:
    raw: str
    latency_s: float
    tokens: int | None


def _shutdown(
    loop: asyncio.AbstractEventLoop,
    thread: threading.Thread,
    executor: Any,
    cache: ResponseCache,
    log: CallLog,
) -> None:
    async def cancel_all() -> None:  # a caller still waiting gets CancelledError, not a hang
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    if threading.current_thread() is thread:  # garbage-collected on the loop's own thread
        loop.stop()
        executor.shutdown(wait=False, cancel_futures=True)
        cache.close()
        log.close()
        return
    if loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=5)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    executor.shutdown(wait=False, cancel_futures=True)  # a hung sync backend must not block exit
    if not loop.is_running():
        loop.close()
    cache.close()
    log.close()


def _critical_validator(n: int) -> Callable[[CriticalStatesAnswer], list[dict[str, Any]]]:
    def validate(answer: CriticalStatesAnswer) -> list[dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for item in answer.critical_states:
            if item.t >= n:
                raise ValueError(f"t={item.t} is not a step of this trajectory; t must be in 0..{n - 1}")
            if item.t not in out or item.score > out[item.t]["score"]:
                out[item.t] = {"t": item.t, "score": float(item.score), "reason": item.reason}
        return sorted(out.values(), key=lambda d: (-d["score"], d["t"]))

    return validate


def _critique_validator(
    local: list[int], start: int, k: float
) -> Callable[[RewardCritiqueAnswer], dict[int, float]]:
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


_DIGITS = re.compile(r"\d")
_CONTEXT_IN_ERROR = re.compile(
    r"(?i)(?:context window of|maximum context length is|context size of|n_ctx(?:_slot)?\W+)\s*(\d{3,7})"
)


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    """A generous token count of ``messages`` for tokenizers we cannot run: every digit one token
    (Gemma, Llama 3 and others split numbers into digits), other text 3 characters a token."""
    total = 0
    for message in messages:
        text = message.text
        digits = len(_DIGITS.findall(text))
        total += digits + math.ceil((len(text) - digits) / 3) + 8
    return total


def _model_context(model: Any) -> int | None:
    """The model's context window if it can say (``context_window()``), else ``None``."""
    ask = getattr(model, "context_window", None)
    if not callable(ask):
        return None
    try:
        value = ask()
    except Exception:  # noqa: BLE001 - a server that cannot say is a server of unknown context
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def _prompt_data(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    return [{"role": m.type, "content": m.text} for m in messages]


def _tokens(message: AIMessage) -> int | None:
    """Total tokens the backend reports, or ``None``; a count that is not a whole number
    ``0 <= n < 10**9`` (a hostile or broken server) counts as unreported."""
    usage = getattr(message, "usage_metadata", None)
    total = usage.get("total_tokens") if isinstance(usage, Mapping) else None
    if total is None:
        metadata = getattr(message, "response_metadata", None)
        token_usage = metadata.get("token_usage") if isinstance(metadata, Mapping) else None
        total = token_usage.get("total_tokens") if isinstance(token_usage, Mapping) else None
    if isinstance(total, bool) or not isinstance(total, (int, float)):
        return None
    if not math.isfinite(total) or total < 0 or total >= 1e9 or total != int(total):
        return None
    return int(total)


def _short(exc: BaseException, limit: int = 500, secrets: Sequence[str] = ()) -> str:
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose text cannot be built
        message = "(no message)"
    message = message.split("\nFor troubleshooting, visit:", 1)[0]  # LangChain's link, on every parse error
    text = (
        f"{type(exc).__name__}: {message}"
        if not isinstance(exc, (ValueError, OutputParserException))
        else message
    )
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and not message:
        text = "TimeoutError: the call took longer than llm.timeout_s"
    text = redact(clean_text(text), secrets)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _feedback(error: str) -> str:
    return (
        f"That answer cannot be used: {error}\n"
        "Answer the same question again with one JSON object that follows the schema, and nothing else."
    )


def _plain(action: Any) -> Any:
    arr = np.asarray(action)
    return arr.item() if arr.ndim == 0 else arr.tolist()


def _action_words(vocab: Any, action_json: Any) -> str:
    names = getattr(vocab, "names", None)
    if (
        getattr(vocab, "kind", None) == "discrete"
        and isinstance(action_json, int)
        and names
        and 0 <= action_json < len(names)
    ):
        return f"{action_json} ({names[action_json]})"
    return json.dumps(action_json)


def _info_at(infos: Any, i: int) -> dict[str, Any] | None:
    """Row ``i`` of a batch of infos: ``None``, a list of dicts, or a Tianshou ``Batch``."""
    if infos is None:
        return None
    item = infos[i]
    if hasattr(item, "to_dict"):
        item = item.to_dict()
    return item if isinstance(item, dict) else None
