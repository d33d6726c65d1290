"""Fixtures of the LLM layer's tests: toy adapters, clients with a throw-away cache and run dir,
and a scripted chat model for errors, delays and answers computed from the prompt's JSON block."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from guidedrl.config import LLMConfig
from guidedrl.llm import LLMClient
from guidedrl.llm.testing import CorridorAdapter, TeamCorridorAdapter
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the user's ~/.cache/guidedrl."""
    monkeypatch.setenv("GUIDEDRL_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def corridor() -> CorridorAdapter:
    return CorridorAdapter()


@pytest.fixture
def team() -> TeamCorridorAdapter:
    return TeamCorridorAdapter()


class Recorder(BaseCallbackHandler):
    """Records the messages of every chat-model call (LangChain's callback API)."""

    def __init__(self) -> None:
        self.prompts: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: Any, messages: list[list[BaseMessage]], **kwargs: Any) -> None:
        self.prompts.extend(messages)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def json_block(messages: list[BaseMessage]) -> dict[str, Any]:
    """The fenced JSON block of the first human message."""
    text = next(m.text for m in messages if m.type == "human")
    return json.loads(text.split("```json", 1)[1].split("```", 1)[0])


class ScriptedModel(BaseChatModel):
    """Each call takes the next script item: a string (the answer), an exception (raised), or a
    callable ``(block, messages) -> str``; the last item repeats. ``delay_s`` sleeps first
    (``asyncio.sleep``; ``time.sleep`` when ``blocking``). Counts calls and the most in flight."""

    script: list[Any]
    delay_s: float = 0.0
    blocking: bool = False
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    model_name: str = "scripted"
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _next(self, messages: list[BaseMessage]) -> ChatResult:
        item = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        self.seen.append(list(messages))
        if isinstance(item, BaseException):
            raise item
        text = item(json_block(messages), messages) if callable(item) else item
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        time.sleep(self.delay_s)
        return self._next(messages)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        if self.blocking:
            return await super()._agenerate(messages, stop, run_manager, **kwargs)  # sync in a thread
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            return self._next(messages)
        finally:
            self.in_flight -= 1


@pytest.fixture
def make_client(tmp_path: Path, corridor: CorridorAdapter) -> Callable[..., LLMClient]:
    """``make_client(model=None, adapter=None, run_dir=tmp/run, **llm_config)``; closed afterwards.
    The default model is the simulated backend; the cache is off unless asked for."""
    from guidedrl_llm_simulated import SimulatedChatModel

    clients: list[LLMClient] = []

    def make(
        model: BaseChatModel | None = None,
        *,
        adapter: Any = None,
        run_dir: Any = "default",
        label: str | None = None,
        **cfg: Any,
    ) -> LLMClient:
        adapter = adapter if adapter is not None else corridor
        cfg.setdefault("cache", "off")
        cfg.setdefault("backoff_s", 0.01)
        if cfg["cache"] != "off":
            cfg.setdefault("cache_path", str(tmp_path / "llm_cache.sqlite"))
        if model is None:
            model = SimulatedChatModel(adapter=adapter, **cfg.pop("options", {}))
        client = LLMClient(
            model,
            adapter=adapter,
            config=LLMConfig(**cfg),
            label=label,
            run_dir=tmp_path / "run" if run_dir == "default" else run_dir,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
