"""The LLM layer: the one place where guidedrl talks to language models.

Method plugins reach it as ``ctx.llm`` (an :class:`LLMClient`). Every backend is a LangChain
``BaseChatModel`` from the ``guidedrl.llms`` registry; the layer owns prompts, parsing and
validation, retries, timeouts, concurrency, budgets, the SQLite response cache and the call log.
See ``docs/llm.md``.
"""

from guidedrl.llm.cache import ResponseCache, cache_key, default_cache_path
from guidedrl.llm.calllog import LOG_NAME, CallLog, summarize_log
from guidedrl.llm.client import LLMClient, StrictPydanticOutputParser, is_transient
from guidedrl.llm.options import check_options
from guidedrl.llm.prompts import DEFAULT_TEMPLATES
from guidedrl.llm.questions import (
    KINDS,
    Answer,
    CriticalStatesAnswer,
    ImplicitRewardAnswer,
    InstructionsAnswer,
    Question,
    RewardCritiqueAnswer,
    action_schema,
)

__all__ = [
    "DEFAULT_TEMPLATES",
    "KINDS",
    "LOG_NAME",
    "Answer",
    "CallLog",
    "CriticalStatesAnswer",
    "ImplicitRewardAnswer",
    "InstructionsAnswer",
    "LLMClient",
    "Question",
    "ResponseCache",
    "RewardCritiqueAnswer",
    "StrictPydanticOutputParser",
    "action_schema",
    "cache_key",
    "check_options",
    "default_cache_path",
    "is_transient",
    "summarize_log",
]
