"""What a backend's reply or error says: is the error worth retrying, the error as one safe log line,
the tokens it reports, and the messages as the log and the cache key see them."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence

from guidedrl.llm.safety import clean_text, redact
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, BaseMessage

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


def prompt_data(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """Messages as the call log and the cache key see them."""
    return [{"role": m.type, "content": m.text} for m in messages]


def reported_tokens(message: AIMessage) -> int | None:
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


def short_error(exc: BaseException, limit: int = 500, secrets: Sequence[str] = ()) -> str:
    """``exc`` as one line: LangChain's troubleshooting link dropped, surrogate-free, secrets redacted."""
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
