"""Entry point of group ``guidedrl.llms``: registers the ``llamacpp`` backend."""

from __future__ import annotations

from collections.abc import Callable

import guidedrl

from guidedrl_llm_llamacpp.model import make_llamacpp


@guidedrl.hookimpl
def register_llms(register: Callable[..., None]) -> None:
    register(
        "llamacpp",
        make_llamacpp,
        summary="In-process GGUF model (llama.cpp) with JSON-schema constrained decoding.",
    )
