"""The ``llamacpp`` LLM backend: a GGUF model in-process via llama-cpp-python, completion-style
prompts (works with base models) and JSON-schema constrained decoding."""

from guidedrl_llm_llamacpp.model import MODELS, ChatLlamaCpp, make_llamacpp, resolve_model

__all__ = ["MODELS", "ChatLlamaCpp", "make_llamacpp", "resolve_model"]
