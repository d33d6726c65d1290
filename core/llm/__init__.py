"""The LLM layer: the one place where guidedrl talks to language models.

Method plugins reach it as ``ctx.llm`` (an :class:`LLMClient`, a thin facade). Every backend is a
LangChain ``BaseChatModel`` from the ``guidedrl.llms`` registry. The layer is split in two: the
transport (:mod:`guidedrl.llm.transport`: retries, timeouts, concurrency, budgets, the SQLite response
cache, the call log) and the question kinds (:mod:`guidedrl.llm.kinds`: one module per kind of
question, with its answer schema and validation). See ``docs/llm.md``.
"""

from guidedrl.llm.cache import ResponseCache, cache_key, default_cache_path
from guidedrl.llm.calllog import LOG_NAME, CallLog, summarize_log
from guidedrl.llm.client import LLMClient
from guidedrl.llm.jsondata import jsonable
from guidedrl.llm.kinds import (
    CriticalStatesAnswer,
    ImplicitRewardAnswer,
    InstructionsAnswer,
    RewardCritiqueAnswer,
    action_schema,
)
from guidedrl.llm.options import check_options
from guidedrl.llm.parsing import StrictPydanticOutputParser
from guidedrl.llm.prompts import DEFAULT_TEMPLATES
from guidedrl.llm.questions import KINDS, Answer, Question
from guidedrl.llm.transport import Transport, is_transient

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
    "Transport",
    "action_schema",
    "cache_key",
    "check_options",
    "default_cache_path",
    "is_transient",
    "jsonable",
    "summarize_log",
]
