"""``openai:MODEL``: ``ChatOpenAI`` with the key read from an environment variable, never from config."""

from __future__ import annotations

import os
from typing import Any

from guidedrl.errors import ConfigError
from guidedrl.llm.options import check_options
from langchain_openai import ChatOpenAI

OPTIONS = ("model", "base_url", "api_key_env", "timeout", "temperature", "max_tokens", "json_mode", "seed")


def make_openai(
    *,
    adapter: Any = None,
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 60.0,
    temperature: float = 0.0,
    max_tokens: int | None = 512,
    json_mode: bool = False,
    seed: int | None = None,
    **unknown: Any,
) -> ChatOpenAI:
    """An OpenAI chat model (``llm.backend = "openai:gpt-4o-mini"``).

    :param model: The model name (the part after ``openai:``).
    :param base_url: An OpenAI-compatible server, e.g. ``http://localhost:8000/v1`` (vLLM),
        ``http://localhost:11434/v1`` (Ollama), ``http://localhost:8080/v1`` (llama.cpp server).
    :param api_key_env: The environment variable holding the API key (keys never go in config files,
        which are saved with every run). Local servers without a key get a placeholder.
    :param timeout: HTTP timeout of one request; the LLM layer's ``llm.timeout_s`` applies too.
    :param json_mode: Ask the server for JSON output (``response_format={"type": "json_object"}``);
        most servers support it, leave it off for those that do not.
    """
    if "api_key" in unknown:
        raise ConfigError(
            "do not put an API key in llm.options (configs are saved with every run); export it as an "
            f"environment variable and name it with llm.options.api_key_env (default {api_key_env!r})."
        )
    check_options("openai", unknown, OPTIONS)
    if not model:
        raise ConfigError(
            "the openai backend needs a model: llm.backend = 'openai:MODEL', e.g. 'openai:gpt-4o-mini'"
        )
    api_key = os.environ.get(api_key_env)
    if not api_key:
        if base_url is None:
            raise ConfigError(
                f"the openai backend needs an API key in the environment variable {api_key_env} (or set "
                "llm.options.base_url to a local OpenAI-compatible server, which needs none)."
            )
        api_key = "not-needed"  # local servers (vLLM, Ollama, llama.cpp) ignore it
    kwargs: dict[str, Any] = {}
    if json_mode:
        kwargs["model_kwargs"] = {"response_format": {"type": "json_object"}}
    return ChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=api_key,
        timeout=timeout,
        max_retries=0,  # the LLM layer retries transient errors itself, with backoff and a budget
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        **kwargs,
    )
