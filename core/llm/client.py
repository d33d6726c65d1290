"""The one LLM client of a run (``ctx.llm``): a thin facade over the transport and the question kinds.

Method plugins call it from synchronous training code. Each convenience method (``suggest_action``,
``critical_states``, ...) is one question kind of :mod:`guidedrl.llm.kinds`; rendering a question is
:mod:`guidedrl.llm.prompts`; getting a valid answer safely (cache, budgets, concurrency, retries with
timeouts, call log) is :class:`guidedrl.llm.transport.Transport`. Nothing an LLM writes is executed:
answers are JSON, parsed by LangChain's ``PydanticOutputParser`` and validated by the env adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from guidedrl.config import LLMConfig
from guidedrl.errors import ConfigError
from guidedrl.llm import prompts
from guidedrl.llm.cache import ResponseCache
from guidedrl.llm.calllog import CallLog
from guidedrl.llm.kinds import action, critical_states, implicit_reward, instructions, reward_critique
from guidedrl.llm.questions import Answer, Question
from guidedrl.llm.transport import Prepared, Transport
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage


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
        self.adapter = adapter
        self.config = config = config or LLMConfig()
        self.label = label or config.backend
        self.templates = prompts.merge_templates(getattr(adapter, "prompt_templates", None), templates)
        self.transport = Transport(model, config=config, run_dir=run_dir, label=self.label, cache=cache)

    @classmethod
    def from_config(cls, config: LLMConfig, *, adapter: Any, run_dir: Path | None) -> LLMClient:
        """The client of a run: the backend ``config.backend`` made through the LLM registry."""
        from guidedrl.registry import make_llm

        if "adapter" in config.options:  # would clash with the factory's `adapter` argument (a TypeError)
            raise ConfigError(
                "llm.options.adapter is reserved: a backend's factory gets the env adapter under that name "
                "(the hf backend's LoRA adapter is llm.options.lora)"
            )
        model = make_llm(config.backend, adapter=adapter, **config.options)
        if not isinstance(model, BaseChatModel):
            raise TypeError(
                f"LLM backend {config.backend!r} returned {type(model).__name__}, not a LangChain "
                "BaseChatModel; its factory must return a chat model (see docs/llm.md, 'Adding a backend')."
            )
        return cls(model, adapter=adapter, config=config, run_dir=run_dir, label=config.backend)

    @property
    def model(self) -> BaseChatModel:
        """The backend's chat model."""
        return self.transport.model

    @model.setter
    def model(self, model: BaseChatModel) -> None:
        self.transport.model = model

    @property
    def model_name(self) -> str:
        return self.transport.model_name

    @property
    def cache(self) -> ResponseCache:
        return self.transport.cache

    @property
    def log(self) -> CallLog:
        return self.transport.log

    # -- asking ------------------------------------------------------------------------------
    def ask(self, question: Question) -> Answer:
        """Ask one question; returns its fallback (``ok=False``) instead of raising for LLM errors."""
        return self.ask_many([question])[0]

    def ask_many(self, questions: Sequence[Question]) -> list[Answer]:
        """Ask several questions concurrently (at most ``max_concurrency`` calls in flight)."""
        self.transport.check_caller()
        return self.transport.ask_many([self._prepare(q) for q in questions])

    # -- question kinds used by method plugins (guidedrl.llm.kinds) -----------------------------
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
        return action.suggest(self, obs, info, bad_action=bad_action, history=history, template=template)

    def suggest_actions(
        self,
        obs_batch: Sequence[Any] | np.ndarray,
        infos: Any = None,
        *,
        bad_actions: Sequence[Any] | None = None,
        template: str | None = None,
    ) -> list[Any | None]:
        """:meth:`suggest_action` for a batch of observations, asked concurrently."""
        return action.suggest_many(self, obs_batch, infos, bad_actions=bad_actions, template=template)

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
        return action.question(self, obs, info, bad_action=bad_action, history=history, template=template)

    def implicit_reward(
        self, obs: Any, action: Any, info: dict[str, Any] | None = None, *, template: str | None = None
    ) -> float | None:
        """How good ``action`` is in ``obs``, in [-1, 1] (ULTRA's implicit reward), or ``None``."""
        return implicit_reward.ask(self, obs, action, info, template=template)

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
        return critical_states.ask(
            self, episode, max_states=max_states, chunk_len=chunk_len, overlap=overlap, template=template
        )

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
        return instructions.ask(self, observations, info, history=history, template=template)

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
        return reward_critique.ask(self, episode, key_steps, k=k, template=template)

    # -- budgets, context and summary ----------------------------------------------------------
    @property
    def exhausted(self) -> bool:
        """A budget (calls, tokens or wall time) is spent: every further question falls back at once."""
        return self.transport.budget.check() is not None

    def context_tokens(self) -> int | None:
        """The model's context window in tokens: ``llm.context_tokens``, else what the backend says
        (``model.context_window()``, asked once), else what a context error of the server said, else
        ``None`` (unknown: prompts are sent as they are)."""
        return self.transport.context.tokens()

    def prompt_tokens(self, messages: Sequence[BaseMessage]) -> int:
        """Tokens of ``messages`` as the backend will see them (counted by the backend where it can,
        else estimated)."""
        return self.transport.context.prompt_tokens(messages)

    def fits(self, question: Question) -> bool:
        """Whether ``question``'s prompt fits the model's context (always, when the context is unknown)."""
        messages = prompts.render_question(question, self.templates, self.adapter)[0]
        return self.transport.context.too_long(messages) is None

    def summary(self) -> dict[str, Any]:
        """Counters for ``summary.json``; they equal what ``llm_calls.jsonl`` says."""
        t, log = self.transport, self.transport.log
        exhausted = t.budget.exhausted
        return {
            "llm_backend": self.label,
            "llm_questions": t.questions,
            "llm_calls": log.calls,
            "llm_cache_hits": log.cache_hits,
            "llm_failures": log.failures,
            "llm_invalid": log.invalid,
            "llm_fallbacks": log.fallbacks,
            "llm_tokens": log.tokens,
            "llm_wall_s": round(t.budget.wall_s(), 4),
            "llm_budget_exhausted": dict(exhausted) if exhausted else None,
            "llm_first_error": t.first_error,
        }

    def close(self) -> None:
        """Stop the event loop thread and close the cache and the log. Idempotent."""
        self.transport.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    def _prepare(self, question: Question) -> Prepared:
        messages, parser, json_schema = prompts.render_question(question, self.templates, self.adapter)
        return self.transport.prepare(question, messages, parser, json_schema)

    def _validate(self, p: Prepared, raw: str) -> Any:
        return self.transport.validate(p, raw)
