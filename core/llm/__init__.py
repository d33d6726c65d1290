"""The LLM layer: the one place where guidedrl talks to language models.

Method plugins reach it as ``ctx.llm`` (an :class:`LLMClient`, a thin facade). Every backend is a
LangChain ``BaseChatModel`` from the ``guidedrl.llms`` registry. The layer is split in two: the
transport (:mod:`guidedrl.llm.transport`: retries, timeouts, concurrency, budgets, the SQLite response
cache, the call log) and the question kinds (:mod:`guidedrl.llm.kinds`: one module per kind of
question, with its answer schema and validation). See ``docs/llm.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve on first use (PEP 562), so importing one small module of the layer
# (``guidedrl.llm.jsondata``, ``guidedrl.llm.calllog``) does not import LangChain.
_EXPORTS = {
    "ResponseCache": "cache", "cache_key": "cache", "default_cache_path": "cache",
    "LOG_NAME": "calllog", "CallLog": "calllog", "summarize_log": "calllog",
    "LLMClient": "client",
    "jsonable": "jsondata",
    "CriticalStatesAnswer": "kinds", "ImplicitRewardAnswer": "kinds", "InstructionsAnswer": "kinds",
    "RewardCritiqueAnswer": "kinds", "action_schema": "kinds",
    "check_options": "options",
    "StrictPydanticOutputParser": "parsing",
    "DEFAULT_TEMPLATES": "prompts",
    "KINDS": "questions", "Answer": "questions", "Question": "questions",
    "Transport": "transport", "is_transient": "transport",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'guidedrl.llm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"guidedrl.llm.{module}"), name)
    globals()[name] = value
    return value


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
