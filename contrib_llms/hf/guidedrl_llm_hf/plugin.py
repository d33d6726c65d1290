"""Entry point of group ``guidedrl.llms``: registers the ``hf`` backend."""

from __future__ import annotations

from collections.abc import Callable

import guidedrl

from guidedrl_llm_hf.model import make_hf


@guidedrl.hookimpl
def register_llms(register: Callable[..., None]) -> None:
    register(
        "hf",
        make_hf,
        summary="Local Hugging Face causal LM (+ LoRA adapter from `guidedrl finetune`), via langchain-huggingface.",
    )
