"""The ``hf`` LLM backend: a local Hugging Face causal LM, optionally with a LoRA adapter written by
``guidedrl finetune``, through langchain-huggingface's ``ChatHuggingFace`` over a transformers
``text-generation`` pipeline."""

from guidedrl_llm_hf.model import ChatHF, make_hf, resolve_paths

__all__ = ["ChatHF", "make_hf", "resolve_paths"]
