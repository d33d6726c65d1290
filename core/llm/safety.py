"""What keeps text from an LLM or a server harmless inside the LLM layer.

- :func:`clean_text`: a plain ``str`` without lone surrogates (a raw ``"\\ud800"`` in a response, or one
  decoded from a ``\\ud800`` escape in JSON, cannot be written as UTF-8: the call log, the SQLite
  cache and LangChain messages would raise on it). Valid surrogate pairs are joined, lone ones
  become U+FFFD.
- :func:`load_answer_json`: JSON parsing with the size and nesting depth bounded *before* parsing
  (``"[" * 5000`` raises ``RecursionError`` in ``json.loads``), every string cleaned afterwards.
- :func:`redact`: API keys and ``Authorization`` / ``api-key`` / bearer values cut out of error texts
  before they are logged (a server may echo the request's headers in its error body).

Hand-written because no library bounds JSON depth before parsing; each helper is a few lines.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.utils.json import parse_json_markdown

#: Longest answer parsed (characters); longer answers are invalid without being parsed.
MAX_ANSWER_CHARS = 65_536
#: Deepest nesting of ``[``/``{`` parsed; the built-in answer schemas need 4.
MAX_DEPTH = 32

_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def clean_text(text: Any) -> str:
    """``text`` as a plain ``str`` that encodes as UTF-8 (lone surrogates replaced by U+FFFD)."""
    s = text if type(text) is str else str.__str__(text) if isinstance(text, str) else str(text)
    if _SURROGATE.search(s) is None:
        return s
    return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_obj(obj: Any) -> Any:
    """Parsed JSON with every string (keys too) passed through :func:`clean_text`."""
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, list):
        return [clean_obj(v) for v in obj]
    if isinstance(obj, dict):
        return {clean_text(k): clean_obj(v) for k, v in obj.items()}
    return obj


def nesting_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting of ``text``, brackets inside JSON strings not counted."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(depth - 1, 0)
    return deepest


def check_answer_shape(text: str) -> None:
    """Raise :class:`OutputParserException` when ``text`` is too long or nested too deeply to parse."""
    if len(text) > MAX_ANSWER_CHARS:
        raise OutputParserException(
            f"answer too long ({len(text)} characters, at most {MAX_ANSWER_CHARS}); answer with one short "
            "JSON object",
            llm_output=text[:200],
        )
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise OutputParserException(
            f"answer nested too deeply ({depth} levels, at most {MAX_DEPTH}); answer with one flat JSON object",
            llm_output=text[:200],
        )


def _strict_loads(text: str) -> Any:
    return json.loads(text, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    # NaN / Infinity are not JSON; rejecting them here gives a clear reason instead of a range error
    raise ValueError(f"{name} is not a JSON number")


def load_answer_json(text: str) -> Any:
    """The JSON object of an answer (fenced in a markdown ``json`` block or bare), size and depth
    bounded before parsing, strings cleaned; raises :class:`OutputParserException` with a reason."""
    check_answer_shape(text)
    try:
        obj = parse_json_markdown(text.strip(), parser=_strict_loads)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise OutputParserException(
            f"not valid JSON ({clean_text(exc)}): {clean_text(text[:200])!r}", llm_output=text[:200]
        ) from None
    return clean_obj(obj)


# -- secrets -----------------------------------------------------------------------------------
_HEADER_VALUE = re.compile(
    r"(?i)(\b(?:authorization|proxy-authorization|api[-_]?key|x-api-key|openai[-_]api[-_]key)\b"
    r"[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+)?[^\s\"',;}]+"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{4,}")
_KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_-]{8,})")
REDACTED = "[redacted]"


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """``text`` with every known secret, ``Authorization``/``api-key`` header value, bearer token and
    ``sk-…`` key replaced by ``[redacted]``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _HEADER_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _KEY_LIKE.sub(REDACTED, text)


def secrets_of(model: Any, env_names: tuple[str, ...] = ("OPENAI_API_KEY",)) -> tuple[str, ...]:
    """The secret values a backend may hold: its ``SecretStr`` fields and the named environment
    variables (the value, never the name, is what must not be logged)."""
    found: list[str] = []
    for name in ("openai_api_key", "api_key", "anthropic_api_key", "google_api_key"):
        value = getattr(model, name, None)
        getter = getattr(value, "get_secret_value", None)
        if callable(getter):
            try:
                value = getter()
            except Exception:  # noqa: BLE001 - a key we cannot read is a key we need not redact
                value = None
        if isinstance(value, str) and value:
            found.append(value)
    env_name = getattr(model, "api_key_env", None)
    for name in (*env_names, *([env_name] if isinstance(env_name, str) else [])):
        value = os.environ.get(name)
        if value:
            found.append(value)
    return tuple(dict.fromkeys(found))
