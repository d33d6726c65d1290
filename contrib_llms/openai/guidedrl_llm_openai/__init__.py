"""The ``openai`` LLM backend: LangChain's ``ChatOpenAI`` for OpenAI and OpenAI-compatible servers
(vLLM, Ollama, llama.cpp server) through ``base_url``."""

from guidedrl_llm_openai.backend import make_openai

__all__ = ["make_openai"]
