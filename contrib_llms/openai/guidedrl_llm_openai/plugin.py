"""Entry point of group ``guidedrl.llms``: registers the ``openai`` backend."""

from __future__ import annotations

from collections.abc import Callable

import guidedrl

from guidedrl_llm_openai.backend import make_openai


@guidedrl.hookimpl
def register_llms(register: Callable[..., None]) -> None:
    register(
        "openai",
        make_openai,
        summary="OpenAI or an OpenAI-compatible server (vLLM, Ollama, llama.cpp) via base_url.",
    )
