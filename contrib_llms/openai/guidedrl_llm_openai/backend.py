"""``openai:MODEL``: ``ChatOpenAI`` with the key read from an environment variable, never from config."""

from __future__ import annotations

import os
from typing import Any

from guidedrl.errors import ConfigError
from guidedrl.llm.options import check_options
from langchain_openai import ChatOpenAI

OPTIONS = ("model", "base_url", "api_key_env", "temperature", "max_tokens", "json_mode", "seed", "stream")


class GuidedChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` that can tell the LLM layer its server's context window (:meth:`context_window`)."""

    api_key_env: str = "OPENAI_API_KEY"
    """The environment variable the key came from (its value is redacted from logged errors)."""

    def context_window(self) -> int | None:
        """The context of a local server, asked once: vLLM's ``max_model_len`` (``/v1/models``),
        llama.cpp server's ``n_ctx`` (``/props``), Ollama's ``num_ctx`` (``/api/show``); ``None`` when
        the server does not say (then set ``llm.context_tokens``). Never asks api.openai.com."""
        if not self.openai_api_base:
            return None
        import httpx

        base = self.openai_api_base.rstrip("/")
        root = base[: -len("/v1")] if base.endswith("/v1") else base
        key = self.openai_api_key.get_secret_value() if self.openai_api_key else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            with httpx.Client(timeout=3.0, headers=headers) as http:
                for model in _json(http.get(f"{base}/models")).get("data") or []:
                    if isinstance(model, dict) and isinstance(model.get("max_model_len"), int):
                        return model["max_model_len"]
                settings = _json(http.get(f"{root}/props")).get("default_generation_settings") or {}
                if isinstance(settings.get("n_ctx"), int):
                    return settings["n_ctx"]
                params = str(_json(http.post(f"{root}/api/show", json={"model": self.model_name})).get("parameters") or "")
                for line in params.splitlines():
                    name, _, value = line.partition(" ")
                    if name == "num_ctx" and value.strip().isdigit():
                        return int(value.strip())
        except (httpx.HTTPError, ValueError):
            return None
        return None


def _json(response: Any) -> dict[str, Any]:
    if response.status_code != 200:
        return {}
    data = response.json()
    return data if isinstance(data, dict) else {}


def make_openai(
    *,
    adapter: Any = None,
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    temperature: float = 0.0,
    max_tokens: int | None = 512,
    json_mode: bool = False,
    seed: int | None = None,
    stream: bool = False,
    **unknown: Any,
) -> ChatOpenAI:
    """An OpenAI chat model (``llm.backend = "openai:gpt-4o-mini"``).

    :param model: The model name (the part after ``openai:``).
    :param base_url: An OpenAI-compatible server, e.g. ``http://localhost:8000/v1`` (vLLM),
        ``http://localhost:11434/v1`` (Ollama), ``http://localhost:8080/v1`` (llama.cpp server).
    :param api_key_env: The environment variable holding the API key (keys never go in config files,
        which are saved with every run). Local servers without a key get a placeholder.
    :param stream: Stream answers. A server that stops generating when its client goes away
        (llama.cpp server, vLLM) then stops work on a request the layer cancelled at ``llm.timeout_s``.
    :param json_mode: Ask the server for JSON output (``response_format={"type": "json_object"}``);
        most servers support it, leave it off for those that do not.
    """
    if "api_key" in unknown:
        raise ConfigError(
            "do not put an API key in llm.options (configs are saved with every run); export it as an "
            f"environment variable and name it with llm.options.api_key_env (default {api_key_env!r})."
        )
    if "timeout" in unknown:
        raise ConfigError(
            "llm.options.timeout is not an option of the openai backend: set llm.timeout_s, the one "
            "timeout of every LLM call (the request is cancelled when it passes)."
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
    return GuidedChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=api_key,
        api_key_env=api_key_env,
        # no HTTP timeout of its own: llm.timeout_s cancels the request (one setting, no silent cap)
        timeout=None,
        streaming=stream,
        max_retries=0,  # the LLM layer retries transient errors itself, with backoff and a budget
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        **kwargs,
    )
