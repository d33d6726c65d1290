"""Does a prompt fit the model's context? The window, token counts, and what a server's error says.

Hand-written: LangChain has no portable way to ask a server its context size, and its token counters
(``get_num_tokens``) need the model's own tokenizer, which most backends cannot run here.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage

logger = logging.getLogger("guidedrl.llm")

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


def model_context(model: Any) -> int | None:
    """The model's context window if it can say (``context_window()``), else ``None``."""
    ask = getattr(model, "context_window", None)
    if not callable(ask):
        return None
    try:
        value = ask()
    except Exception:  # noqa: BLE001 - a server that cannot say is a server of unknown context
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


class ContextWindow:
    """The context of ``model`` in tokens and whether messages fit it, leaving room for the answer.

    The window is ``configured`` (``llm.context_tokens``), else what the model says (asked once),
    else what a context error of the server said (:meth:`learn`), else unknown (everything fits).
    """

    def __init__(self, model: Any, configured: int | None, label: str) -> None:
        self.model = model
        self.label = label
        self._context: int | None | bool = configured or False  # False: not asked yet

    def tokens(self) -> int | None:
        """The window in tokens, or ``None`` when unknown."""
        if self._context is False:
            self._context = model_context(self.model)
        return self._context or None

    def answer_reserve(self) -> int:
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

    def too_long(self, messages: Sequence[BaseMessage]) -> str | None:
        """Why ``messages`` cannot be sent (they do not fit the context), or ``None``."""
        context = self.tokens()
        if context is None:
            return None
        reserve = min(self.answer_reserve(), context // 2)
        tokens = self.prompt_tokens(messages)
        if tokens + reserve <= context:
            return None
        return (
            f"prompt too long: about {tokens} tokens, but the model's context is {context} tokens "
            f"({reserve} kept for the answer). Give the model a longer context (llama.cpp server "
            "--n_ctx, vLLM --max-model-len, Ollama num_ctx) and set llm.context_tokens to it, or "
            "shorten the prompt (a shorter template; fewer steps per chunk)"
        )

    def learn(self, error: str) -> None:
        """A server that says its context size in an error teaches it to the later questions."""
        match = _CONTEXT_IN_ERROR.search(error)
        if match is None:
            return
        context = int(match.group(1))
        known = self.tokens()
        if known is None or context < known:
            self._context = context
            logger.warning(
                "LLM %s: the server says its context is %d tokens; later prompts are fitted to it "
                "(set llm.context_tokens = %d to start with it).",
                self.label,
                context,
                context,
            )
